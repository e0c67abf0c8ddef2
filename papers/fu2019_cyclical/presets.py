"""Presets for Fu et al. 2019 on PTB: `smoke` (seconds), `cpu` (2 cores), `paper` (the code's).

Every setting is `haofuml/cyclical_annealing`'s PTB scripts' (docs/papers/fu2019_cyclical.md
§Training, verified from code): sizes 256 / 256 / 256 / 32 (embedding / encoder / decoder /
latent), z into every decoder input and the initial state, decoder dropout 0.5, every parameter
initialised uniformly in +-0.1, batch 32, Adam 1e-3, gradient clip 5, 40 epochs, the best
validation bound tested.

- `cyclical`: M = 4 cycles of 10 epochs. The KL weight restarts at 0.1 each cycle and rises by
  1 / (5 epochs) until it reaches 1, after 4.5 epochs (R = 0.45); the learning rate restarts at
  1e-3 each cycle and follows half a cosine, one value per epoch.
- `cyclical-sigmoid`, `cyclical-cosine`: the same with the notebook's other ramp shapes over the
  same stretch (ours: the PTB script has only the linear ramp).
- `monotonic`: the same script with one ramp, 0.1 rising by 1 / (10 epochs) to 1 (after 9
  epochs), and a constant rate.

The schedules are in updates, so each preset converts epochs with PTB's updates per epoch at
its training fraction (`repro.data.planned_updates_per_epoch`: 1,315 at batch 32); a `--set
data.train_fraction=...` or `data.batch_size=...` override leaves them in the old units.

Reductions in `cpu`: every epoch count times 0.3 -- 12 epochs in 4 cycles of 3, the cyclical
weight reaching 1 after 1.35 epochs of each cycle, the monotonic one after 2.7 epochs -- so the
schedules keep their shape at a third of the time; IW-NLL with K = 100 instead of 500. Sizes
and data are the paper's.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from repro.config import DataConfig, EvalConfig, KLScheduleConfig, OptimConfig, RunConfig, TrainConfig
from repro.data import planned_updates_per_epoch
from repro.sentence_models import TextVAEConfig

NAME = "fu2019_cyclical"
SHAPES = {"cyclical": "linear", "cyclical-sigmoid": "sigmoid", "cyclical-cosine": "cosine"}
VARIANTS = (*SHAPES, "monotonic")
KL_START = 0.1                  # both scripts: the weight at step 0 and at every restart
DECODER_DROPOUT = 0.5
INIT_RANGE = 0.1                # every parameter uniform in +-0.1


@dataclass(frozen=True, kw_only=True)
class Scale:
    embed_size: int
    hidden_size: int             # encoder and decoder LSTM
    latent_size: int
    data: DataConfig             # PTB, batch 32
    cycle_epochs: int            # one cycle: KL restart and learning-rate restart
    cycles: int                  # M; the run is cycles x cycle_epochs epochs for every variant
    cyclical_warmup_epochs: float   # `--warmup` of the cyclical script: +1/warmup per epoch
    monotonic_warmup_epochs: float  # `--warmup` of the monotonic script
    iw_samples: int
    iw_chunk: int
    max_examples: int | None = None


SCALES = {
    "smoke": Scale(embed_size=16, hidden_size=16, latent_size=4,
                   data=DataConfig(train_fraction=0.005, max_vocab=500), cycle_epochs=1, cycles=1,
                   cyclical_warmup_epochs=0.5, monotonic_warmup_epochs=1, iw_samples=4, iw_chunk=2,
                   max_examples=40),
    "cpu": Scale(embed_size=256, hidden_size=256, latent_size=32, data=DataConfig(),
                 cycle_epochs=3, cycles=4, cyclical_warmup_epochs=1.5, monotonic_warmup_epochs=3,
                 iw_samples=100, iw_chunk=50),
    "paper": Scale(embed_size=256, hidden_size=256, latent_size=32, data=DataConfig(),
                   cycle_epochs=10, cycles=4, cyclical_warmup_epochs=5, monotonic_warmup_epochs=10,
                   iw_samples=500, iw_chunk=100),
}


def kl_schedule(variant: str, scale: Scale) -> KLScheduleConfig:
    """The weight rises by 1 / warmup per epoch from KL_START, so it reaches 1 after
    (1 - KL_START) x warmup epochs: a fraction of the cycle (R), or of the run (monotonic)."""
    epoch = planned_updates_per_epoch(scale.data)
    if variant == "monotonic":
        return KLScheduleConfig(kind="linear", start_weight=KL_START,
                                warmup_steps=round((1 - KL_START) * scale.monotonic_warmup_epochs * epoch))
    return KLScheduleConfig(kind="cyclical", start_weight=KL_START, cycle_shape=SHAPES[variant],
                            cycles=scale.cycles, cycle_total_steps=scale.cycles * scale.cycle_epochs * epoch,
                            cycle_ramp=(1 - KL_START) * scale.cyclical_warmup_epochs / scale.cycle_epochs)


def optimiser(variant: str, scale: Scale) -> OptimConfig:
    if variant == "monotonic":
        return OptimConfig(name="adam", lr=1e-3, grad_clip=5.0)
    epoch = planned_updates_per_epoch(scale.data)
    return OptimConfig(name="adam", lr=1e-3, grad_clip=5.0, lr_schedule="cosine_restarts",
                       lr_cycle_steps=scale.cycle_epochs * epoch, lr_hold_steps=epoch)


def _run(variant: str, preset: str) -> RunConfig:
    scale = SCALES[preset]
    model = TextVAEConfig(embed_size=scale.embed_size, encoder_hidden=scale.hidden_size,
                          decoder_hidden=scale.hidden_size, latent_size=scale.latent_size,
                          z_mode="both", decoder_dropout=DECODER_DROPOUT, init_range=INIT_RANGE,
                          kl=kl_schedule(variant, scale))
    return RunConfig(
        paper=NAME, variant=variant, preset=preset, model=model,
        data=replace(scale.data), optim=optimiser(variant, scale),
        train=TrainConfig(epochs=scale.cycles * scale.cycle_epochs),
        eval=EvalConfig(iw_samples=scale.iw_samples, iw_chunk=scale.iw_chunk,
                        max_examples=scale.max_examples))


PRESETS = {preset: functools.partial(_run, preset=preset) for preset in SCALES}


def fit_protocol(cfg: RunConfig, proto) -> RunConfig:
    """The method under a benchmark protocol (`repro.protocols`), whose run length and optimiser
    every method shares: the KL schedule keeps its shape over the protocol's run (M cycles over
    all its updates, each ramping for the same fraction R; the monotonic ramp over the same
    fraction of the run), while the learning rate is the protocol's, without restarts."""
    scale = SCALES[proto.scale]
    steps = cfg.train.epochs * planned_updates_per_epoch(cfg.data)
    if cfg.train.max_steps:
        steps = min(steps, cfg.train.max_steps)
    if cfg.model.kl.kind == "cyclical":
        kl = replace(cfg.model.kl, cycle_total_steps=steps)
    else:
        ramp = (1 - KL_START) * scale.monotonic_warmup_epochs / (scale.cycles * scale.cycle_epochs)
        kl = replace(cfg.model.kl, warmup_steps=max(1, round(ramp * steps)))
    return replace(cfg, model=replace(cfg.model, kl=kl))

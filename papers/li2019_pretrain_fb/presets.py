"""Presets for Li et al. 2019 on PTB: `smoke` (seconds), `cpu` (2 cores), `paper` (its settings).

Every row is He et al.'s LSTM-VAE at Li et al.'s PTB sizes 256 / 256 / 256 / 32 with decoder
dropout 0.5, uniform initialisation ±0.01 (embeddings ±0.1), batch 32, SGD at rate 0.5 with
gradient clipping 5 (docs/papers/li2019_pretrain_fb.md §Architecture, §Training; verified from
the official code). The rows differ in the KL term:

- `ae-pretrain`: KL weight 0 throughout, checkpoint selected by the validation reconstruction.
- `pretrain-fb-dim` / `-sentence` / `-batch`: the encoder of `ae-pretrain`'s finished run (same
  preset and seed), a fresh decoder, the KL weight rising linearly from 0, and free bits with
  target λ in the code's `--fb 2` / `--fb 1` / `--fb 3` form.
- `vae-anneal`, `vae-anneal-fb`: the same without pretraining (annealing alone; annealing and
  `--fb 2` free bits).

λ is 8 nats for latent 32 (the README's `--target_kl 8`): a sentence's total for `--fb 1` and
`--fb 3`, λ / d = 0.25 nats per dimension for `--fb 2`.

`paper`: 100 epochs at most, the KL weight reaching 1 after 10 epochs (13,150 updates), the rate
halved after 5 epochs without a better validation loss (none in the first 15 epochs) with the
best model reloaded, stopping after the 5th halving (the code's rule), IW-NLL with K = 500.

Reductions in `cpu`: 6 epochs for every row (the autoencoder included) instead of up to 100, the
KL weight reaching 1 after 2 epochs (2,630 updates) instead of 10, no learning-rate decay (it
would not start within 6 epochs), and IW-NLL with K = 100 instead of 500 (`repro eval RUN --set
eval.iw_samples=500` re-scores a run). Sizes, dropout, optimiser, batch and λ are the paper's.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from papers.li2019_pretrain_fb.model import LiVAEConfig
from repro.config import (DataConfig, EvalConfig, FreeBitsConfig, KLScheduleConfig, OptimConfig,
                          RunConfig, TrainConfig)

NAME = "li2019_pretrain_fb"
PRETRAIN = "ae-pretrain"          # the row whose finished run gives the others their encoder
PTB_UPDATES_PER_EPOCH = 1_315     # 42,068 training sentences in batches of 32 (measured)

# Row -> the free-bits rule of the code's `--fb` form it trains with (None: no free bits), and
# whether its encoder comes from the `ae-pretrain` run.
FREE_BITS = {
    PRETRAIN: None,
    "pretrain-fb-dim": "li_example_dim",          # --fb 2
    "pretrain-fb-sentence": "li_example_total",   # --fb 1
    "pretrain-fb-batch": "li_batchmean",          # --fb 3
    "vae-anneal": None,
    "vae-anneal-fb": "li_example_dim",            # --fb 2, no pretraining
}
PRETRAINED = ("pretrain-fb-dim", "pretrain-fb-sentence", "pretrain-fb-batch")
TARGET_KL_PER_DIMENSION = 0.25    # λ = 8 nats per sentence at latent 32
VARIANTS = tuple(FREE_BITS)       # `ae-pretrain` first: `repro reproduce` trains it first


@dataclass(frozen=True, kw_only=True)
class Scale:
    """Everything that differs between presets."""

    embed_size: int
    hidden_size: int          # encoder and decoder
    latent_size: int
    anneal_steps: int         # updates for the KL weight to rise from 0 to 1
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig

    @property
    def target_kl(self) -> float:
        """λ in nats per sentence: the paper's 0.25 per latent dimension."""
        return TARGET_KL_PER_DIMENSION * self.latent_size


def _sgd(**changes) -> OptimConfig:
    return OptimConfig(name="sgd", lr=0.5, grad_clip=5.0, **changes)


SCALES = {
    "smoke": Scale(embed_size=16, hidden_size=16, latent_size=4, anneal_steps=5,
                   data=DataConfig(train_fraction=0.005, max_vocab=500), optim=_sgd(),
                   # One thread: on tensors this small, intra-op threads only add overhead.
                   train=TrainConfig(epochs=1, threads=1),
                   eval=EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40)),
    "cpu": Scale(embed_size=256, hidden_size=256, latent_size=32,
                 anneal_steps=2 * PTB_UPDATES_PER_EPOCH, data=DataConfig(batch_size=32),
                 optim=_sgd(), train=TrainConfig(epochs=6),
                 eval=EvalConfig(iw_samples=100, iw_chunk=50)),
    "paper": Scale(embed_size=256, hidden_size=256, latent_size=32,
                   anneal_steps=10 * PTB_UPDATES_PER_EPOCH, data=DataConfig(batch_size=32),
                   optim=_sgd(plateau_decay=0.5, plateau_patience=5, plateau_after_epoch=15,
                              plateau_restores_best=True),
                   train=TrainConfig(epochs=100, stop_after_decays=5),
                   eval=EvalConfig(iw_samples=500, iw_chunk=100)),
}


def free_bits(variant: str, s: Scale) -> FreeBitsConfig:
    """The row's free-bits rule; `--fb 2` tests each dimension against λ / d."""
    rule = FREE_BITS[variant]
    if rule is None:
        return FreeBitsConfig()
    lam = s.target_kl / s.latent_size if rule == "li_example_dim" else s.target_kl
    return FreeBitsConfig(variant=rule, lam=lam)


def model_config(variant: str, s: Scale) -> LiVAEConfig:
    kl = (KLScheduleConfig(kind="constant", max_weight=0.0) if variant == PRETRAIN
          else KLScheduleConfig(kind="linear", warmup_steps=s.anneal_steps, start_weight=0.0))
    return LiVAEConfig(embed_size=s.embed_size, encoder_hidden=s.hidden_size,
                       decoder_hidden=s.hidden_size, latent_size=s.latent_size, z_mode="both",
                       decoder_dropout=0.5, init_range=0.01, embed_init_range=0.1, kl=kl,
                       free_bits=free_bits(variant, s),
                       pretrained_encoder=PRETRAIN if variant in PRETRAINED else None)


def _run_config(variant: str, preset: str) -> RunConfig:
    s = SCALES[preset]
    # The autoencoder's KL grows unchecked: it is judged by its reconstruction, as in the code.
    train = replace(s.train, select_by="rec") if variant == PRETRAIN else replace(s.train)
    return RunConfig(paper=NAME, variant=variant, preset=preset, model=model_config(variant, s),
                     data=replace(s.data), optim=replace(s.optim), train=train, eval=replace(s.eval))


# Preset name -> function of the variant name (`repro.registry.presets_of_variant`).
PRESETS = {preset: functools.partial(_run_config, preset=preset) for preset in SCALES}


def fit_protocol(cfg: RunConfig, proto) -> RunConfig:
    """The method under a benchmark protocol (`repro.protocols`), whose sizes, optimiser and
    training section every method shares: λ keeps the paper's 0.25 nats per latent dimension at
    the protocol's latent size (8 nats per sentence at 32, as the paper; 1 at the synthetic
    protocol's 4), and the autoencoder keeps its selection by reconstruction."""
    scale = replace(SCALES[proto.scale], latent_size=cfg.model.latent_size)
    train = replace(cfg.train, select_by="rec") if cfg.variant == PRETRAIN else cfg.train
    return replace(cfg, model=replace(cfg.model, free_bits=free_bits(cfg.variant, scale)), train=train)

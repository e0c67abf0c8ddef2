"""Presets for He et al. 2019 on PTB, which stands in for Yahoo: `smoke`, `cpu`, `paper`.

He et al.'s protocol (docs/papers/he2019_lagging.md §Training, verified from their code): SGD at
rate 1.0, gradient-norm clip 5, batch 32, every parameter U(±0.01) and embeddings U(±0.1),
decoder dropout 0.5 on inputs and outputs; the rate halved, with the best epoch's parameters
put back, when validation has not improved for 2 epochs, only from the 16th epoch on, and
training stopped at the 5th halving or after 100 epochs; KL annealing (the "+ anneal" rows)
linear from 0.1 to 1 over 10 epochs, per update. Evaluation: IW-NLL with K = 500 in chunks of
100, MI pooled within batches of at most 32 sentences of one length, AU at δ = 0.01.

`paper`: all of the above on the whole PTB at Li et al. 2019's PTB sizes 256 / 256 / 256 / 32
(embedding / encoder / decoder / latent); He et al.'s own sizes 512 / 1024 / 1024 / 32 are for
Yahoo and Yelp, whose training splits are not here (docs/papers/he2019_lagging.md §Substitutes).

Reductions in `cpu` (2 cores, see the cost below):
- a tenth of PTB's training sentences (the first 4,206; 132 updates per epoch) and 10 epochs
  instead of up to 100, since each update of the aggressive phase does the work of 31 to 100;
- KL annealing over the first 3 of the 10 epochs (396 updates) instead of 10 epochs, so the
  annealed rows train at full weight for most of the run;
- no learning-rate halving can fire: the 10 epochs end before He et al.'s epoch-15 gate (the
  setting is kept, so `--set train.epochs=...` runs the protocol);
- the test bound on the first 1,000 test sentences with K = 100 (MI and AU on all 3,761);
  validation on the first 1,000 validation sentences.
Cost at these sizes: about 0.2 s per update on a free core (Chen et al.'s `ptb-gauss` cpu
record, same sizes: 10,520 updates in 1,992 s with its evaluations), 0.75 s timed here with both
cores busy. A VAE row is 1,320 updates (5-15 min) plus its test evaluation (a few minutes); each
update of the aggressive phase does 31-100 updates' work, so an aggressive row takes about
45-75 min on free cores when the phase lasts 2-4 epochs, three times that on a busy machine.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

from papers.he2019_lagging.model import LaggingVAEConfig
from repro.config import (ConfigError, DataConfig, EvalConfig, KLScheduleConfig, OptimConfig, RunConfig,
                          TrainConfig)
from repro.data import planned_updates_per_epoch
from repro.sentence_models import LSTMLMConfig

NAME = "he2019_lagging"
BETAS = (0.2, 0.4, 0.6, 0.8)
VARIANTS = ("lstm-lm", "vae", "vae-anneal", *(f"beta-{b}" for b in BETAS), "aggressive",
            "aggressive-anneal")

# He et al.'s decoder and initialisation (`dec_lstm.py`, `text.py`).
HE_DECODER = {"z_mode": "both", "decoder_dropout": 0.5, "init_range": 0.01, "embed_init_range": 0.1}
HE_OPTIM = OptimConfig(name="sgd", lr=1.0, grad_clip=5.0, plateau_decay=0.5, plateau_patience=2,
                       plateau_after_epoch=15, plateau_restores_best=True)
HE_EVAL = {"mi_pool": "batch", "mi_pool_max": 32, "au_threshold": 0.01}


@dataclass(frozen=True, kw_only=True)
class Scale:
    embed_size: int
    encoder_hidden: int
    decoder_hidden: int
    latent_size: int
    anneal_epochs: int
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig


SCALES = {
    "smoke": Scale(embed_size=16, encoder_hidden=16, decoder_hidden=16, latent_size=4, anneal_epochs=1,
                   data=DataConfig(train_fraction=0.005, max_vocab=500),
                   train=TrainConfig(epochs=1),
                   eval=EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40, **HE_EVAL)),
    "cpu": Scale(embed_size=256, encoder_hidden=256, decoder_hidden=256, latent_size=32, anneal_epochs=3,
                 data=DataConfig(train_fraction=0.1, substitute_for="yahoo"),
                 train=TrainConfig(epochs=10, stop_after_decays=5),
                 eval=EvalConfig(iw_samples=100, iw_chunk=50, max_examples=1000,
                                 mi_au_whole_split=True, **HE_EVAL)),
    "paper": Scale(embed_size=256, encoder_hidden=256, decoder_hidden=256, latent_size=32,
                   anneal_epochs=10, data=DataConfig(substitute_for="yahoo"),
                   train=TrainConfig(epochs=100, stop_after_decays=5),
                   eval=EvalConfig(iw_samples=500, iw_chunk=100, **HE_EVAL)),
}




def kl_schedule(variant: str, scale: Scale) -> KLScheduleConfig:
    if variant.startswith("beta-"):
        return KLScheduleConfig(kind="constant", max_weight=float(variant.removeprefix("beta-")))
    if variant.endswith("-anneal"):      # `--kl_start 0.1 --warm_up 10`
        return KLScheduleConfig(kind="linear", start_weight=0.1, max_weight=1.0,
                                warmup_steps=scale.anneal_epochs
                                * planned_updates_per_epoch(scale.data))
    return KLScheduleConfig()


def model_config(variant: str, scale: Scale) -> LaggingVAEConfig | LSTMLMConfig:
    if variant == "lstm-lm":     # the decoder without z (`modules/lm/lm_lstm.py`)
        return LSTMLMConfig(embed_size=scale.embed_size, hidden_size=scale.decoder_hidden,
                            dropout=HE_DECODER["decoder_dropout"], init_range=HE_DECODER["init_range"],
                            embed_init_range=HE_DECODER["embed_init_range"])
    return LaggingVAEConfig(embed_size=scale.embed_size, encoder_hidden=scale.encoder_hidden,
                            decoder_hidden=scale.decoder_hidden, latent_size=scale.latent_size,
                            kl=kl_schedule(variant, scale), aggressive=variant.startswith("aggressive"),
                            **HE_DECODER)


def _run(variant: str, preset: str) -> RunConfig:
    scale = SCALES[preset]
    if variant not in VARIANTS:
        raise ConfigError(f"{NAME} has no variant {variant!r}; variants: {VARIANTS}")
    return RunConfig(paper=NAME, variant=variant, preset=preset, model=model_config(variant, scale),
                     data=replace(scale.data), optim=replace(HE_OPTIM), train=replace(scale.train),
                     eval=replace(scale.eval))


# Preset name -> function of the variant name (the one preset idiom, docs/adding_a_paper.md).
PRESETS = {preset: partial(_run, preset=preset) for preset in ("smoke", "cpu", "paper")}

"""Presets for Zhu et al. 2020 (BN-VAE): `smoke` (seconds), `cpu` (2 cores), `paper`.

Variants `bn-vae-<gamma>`, gamma 0.5 (the README's example), 0.6 and 0.7.

`paper`: the README's training arguments (`--kl_start 0 --warm_up 10 --fb 0 --lr 0.5`) on the
official repository's PTB config (docs/papers/zhu2020_bnvae.md §Training, verified from code):
sizes 256 / 256 / 256 / 32, decoder dropout 0.5 in and out, batch 32, SGD 0.5, clip 5, KL weight
linear from 0 to 1 over 10 epochs (13,150 updates), the rate halved with the best model reloaded
after 5 epochs without a better validation bound but not before the 16th epoch, stop after 5
halvings or 100 epochs; IW-NLL with K = 500. Initialisation uniform in +-0.01, embeddings +-0.1
(He et al.'s; the official BN-VAE encoder keeps PyTorch's, a deviation). PTB is the declared
substitute for the README's Yahoo (`data.substitute_for`).

Reductions in `cpu`: 12 epochs instead of up to 100, with the KL warm-up over the first 3
(3,945 updates) so the last three quarters train at weight 1; IW-NLL with K = 100 instead of
500. The plateau rule stays as it is, so it never acts within 12 epochs: the rate is 0.5
throughout. Sizes and data as `paper`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

from papers.zhu2020_bnvae.model import BNVAEConfig
from repro.config import DataConfig, EvalConfig, KLScheduleConfig, OptimConfig, RunConfig, TrainConfig
from repro.data import planned_updates_per_epoch

NAME = "zhu2020_bnvae"
GAMMAS = {"bn-vae-0.5": 0.5, "bn-vae-0.6": 0.6, "bn-vae-0.7": 0.7}


@dataclass(frozen=True, kw_only=True)
class Scale:
    embed_size: int
    hidden_size: int             # encoder and decoder LSTM
    latent_size: int
    train_fraction: float
    max_vocab: int
    epochs: int
    kl_warmup_epochs: int
    iw_samples: int
    iw_chunk: int
    max_examples: int | None = None


SCALES = {
    "smoke": Scale(embed_size=16, hidden_size=16, latent_size=4, train_fraction=0.005,
                   max_vocab=500, epochs=1, kl_warmup_epochs=1, iw_samples=4, iw_chunk=2,
                   max_examples=40),
    "cpu": Scale(embed_size=256, hidden_size=256, latent_size=32, train_fraction=1.0,
                 max_vocab=10_000, epochs=12, kl_warmup_epochs=3, iw_samples=100, iw_chunk=50),
    "paper": Scale(embed_size=256, hidden_size=256, latent_size=32, train_fraction=1.0,
                   max_vocab=10_000, epochs=100, kl_warmup_epochs=10, iw_samples=500, iw_chunk=100),
}


def model_config(variant: str, scale: Scale, data: DataConfig) -> BNVAEConfig:
    warmup = scale.kl_warmup_epochs * planned_updates_per_epoch(data)
    return BNVAEConfig(embed_size=scale.embed_size, encoder_hidden=scale.hidden_size,
                       decoder_hidden=scale.hidden_size, latent_size=scale.latent_size,
                       z_mode="both", decoder_dropout=0.5, init_range=0.01, embed_init_range=0.1,
                       gamma=GAMMAS[variant],
                       kl=KLScheduleConfig(kind="linear", start_weight=0.0, warmup_steps=warmup))


def _run(variant: str, preset: str) -> RunConfig:
    scale = SCALES[preset]
    data = DataConfig(batch_size=32, train_fraction=scale.train_fraction, max_vocab=scale.max_vocab,
                      substitute_for="yahoo")
    return RunConfig(
        paper=NAME, variant=variant, preset=preset, model=model_config(variant, scale, data), data=data,
        optim=OptimConfig(name="sgd", lr=0.5, grad_clip=5.0, plateau_decay=0.5, plateau_patience=5,
                          plateau_after_epoch=15, plateau_restores_best=True),
        train=TrainConfig(epochs=scale.epochs, stop_after_decays=5),
        eval=EvalConfig(iw_samples=scale.iw_samples, iw_chunk=scale.iw_chunk,
                        max_examples=scale.max_examples))


PRESETS = {preset: functools.partial(_run, preset=preset) for preset in SCALES}

"""The demo's three LSTM-VAEs (same architecture, three treatments of the KL term) and its two
presets: `smoke` (seconds, what `repro demo --quick` runs) and `cpu` (a few minutes)."""
from __future__ import annotations

from dataclasses import replace

from repro.config import (DataConfig, EvalConfig, FreeBitsConfig, KLScheduleConfig, OptimConfig,
                          RunConfig, SyntheticConfig, TrainConfig)
from repro.sentence_models import TextVAEConfig

NAME = "demo"


def _model(**changes) -> TextVAEConfig:
    return replace(TextVAEConfig(embed_size=64, encoder_hidden=64, decoder_hidden=64,
                                 latent_size=4, z_mode="both"), **changes)


MODELS = {
    "vae": _model(),
    "vae-anneal-worddrop": _model(word_keep_rate=0.5,
                                  kl=KLScheduleConfig(kind="logistic", logistic_k=0.005,
                                                      logistic_x0=1000)),
    "vae-freebits": _model(free_bits=FreeBitsConfig(variant="kingma_group_batchmean", lam=0.5)),
}

DESCRIPTIONS = {
    "vae": "plain LSTM-VAE, KL weight 1 throughout",
    "vae-anneal-worddrop": "logistic KL annealing + word dropout (keep 0.5)",
    "vae-freebits": "free bits, Kingma's rule, 0.5 nats per latent dimension",
}


def _config(variant: str, preset: str, synthetic: SyntheticConfig, epochs: int, iw_samples: int,
            iw_chunk: int) -> RunConfig:
    return RunConfig(
        paper=NAME, variant=variant, preset=preset, model=MODELS[variant],
        data=DataConfig(dataset="synthetic", batch_size=32, eval_batch_size=200, synthetic=synthetic),
        optim=OptimConfig(lr=1e-3, grad_clip=5.0),
        train=TrainConfig(epochs=epochs),
        eval=EvalConfig(iw_samples=iw_samples, iw_chunk=iw_chunk))


def smoke(variant: str) -> RunConfig:
    return _config(variant, "smoke", SyntheticConfig(num_train=2000, num_valid=200, num_test=200),
                   epochs=1, iw_samples=10, iw_chunk=10)


def cpu(variant: str) -> RunConfig:
    return _config(variant, "cpu", SyntheticConfig(num_train=10_000, num_valid=1_000, num_test=1_000),
                   epochs=12, iw_samples=200, iw_chunk=50)


PRESETS = {"smoke": smoke, "cpu": cpu}

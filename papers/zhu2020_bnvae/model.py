"""Zhu et al. 2020 (BN-VAE): batch normalisation with a fixed scale on the posterior mean.

The LSTM-VAE of He et al.'s protocol with one change, here; the settings are in `presets.py`:

- Encoder: one-layer LSTM; its last state gives (mu, log sigma^2), diagonal Gaussian, prior
  N(0, I). (docs/papers/zhu2020_bnvae.md §Architecture, verified from code)
- mu -> gamma * (mu - batch mean) / sqrt(batch var + eps) + shift, per latent dimension, in
  training; gamma a constant (not a parameter, no gradient), shift a parameter from 0; eps
  1e-5 and running-statistics momentum 0.1, `BatchNorm1d`'s defaults, as the official code.
  log sigma^2 is untouched. (§Method, verified from code, `modules/encoders/enc_lstm.py`)
- Evaluation mode normalises with the running mean and variance, so a sentence's posterior does
  not depend on its batch (§Evaluation). A one-sentence training batch has no batch variance:
  it is normalised with the running statistics too (ours; the official code skips such batches).
- Consequence (arithmetic, §Method): on every training batch the mean KL is at least
  n gamma^2 / 2 (n = latent size), since KL >= sum mu^2 / 2 and mu^2 averages to shift^2 +
  gamma^2 per dimension.
- Decoder: z concatenated to every input and mapped into the initial state (the core's
  `z_mode="both"`), dropout 0.5 on its inputs and outputs (§Architecture).
- Objective: the plain ELBO with the KL weight rising linearly from 0 over 10 epochs, no free
  bits (§Training, the README's arguments).
- Initialisation: the decoder uniform in +-0.01, its embeddings +-0.1 (He et al.'s); the
  encoder PyTorch's own, as in the official code, which matters here (`BNTextVAE.__init__`);
  the shift starts at 0. (§Architecture, verified from code)
- The floor needs the encoder's mu to vary across sentences by much more than eps = 1e-5: the
  normalised variance is gamma^2 v / (v + eps), not gamma^2 (§Pitfalls).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from repro.config import bounded
from repro.nn.distributions import DiagonalGaussian
from repro.sentence_models import TextVAE, TextVAEConfig


@dataclass
class BNVAEConfig(TextVAEConfig):
    gamma: float = bounded(0.5, lo=0.0)   # the fixed scale of the normalised posterior mean


class FixedScaleBatchNorm(nn.Module):
    """Batch normalisation of `(B, d)` with the scale fixed to `gamma` and a learned shift."""

    def __init__(self, size: int, gamma: float, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.gamma, self.eps, self.momentum = gamma, eps, momentum
        self.shift = nn.Parameter(torch.zeros(size))
        self.register_buffer("running_mean", torch.zeros(size))
        self.register_buffer("running_var", torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch_statistics = self.training and x.shape[0] > 1
        scale = torch.full_like(self.shift, self.gamma)     # a constant: nothing to train
        return F.batch_norm(x, self.running_mean, self.running_var, weight=scale, bias=self.shift,
                            training=batch_statistics, momentum=self.momentum, eps=self.eps)


class BNTextVAE(TextVAE):
    """`TextVAE` whose posterior mean goes through `FixedScaleBatchNorm`."""

    def __init__(self, cfg: BNVAEConfig, vocab):
        super().__init__(cfg, vocab)
        self.mu_norm = FixedScaleBatchNorm(cfg.latent_size, cfg.gamma)
        # The official encoder skips He et al.'s uniform initialisation (the call is commented
        # out) and keeps PyTorch's. At +-0.01 the pre-normalisation mu varies by ~1e-8 across
        # sentences, far below the layer's eps: the normalised variance gamma^2 v / (v + eps) is
        # then ~0 and the KL floor with it (measured: KL 0.01 nats against a floor of 1.44).
        for part in self.encoder.modules():
            if part is not self.encoder and hasattr(part, "reset_parameters"):
                part.reset_parameters()

    def posterior(self, batch) -> DiagonalGaussian:
        q = super().posterior(batch)
        return DiagonalGaussian(self.mu_norm(q.mu), q.logvar)


def build(cfg, corpus) -> BNTextVAE:
    return BNTextVAE(cfg.model, corpus.vocab)

"""The learned prior of lossy codes (Chen et al. 2017, VLAE): an autoregressive-flow p(z).

`AFPrior`: an autoregressive-flow prior p(z). A flow step maps z to eps in ONE parallel MADE pass
(the density direction; the inverse of an IAF step, which maps noise to z):
    eps_i = (z_i - m_i(z_<i)) * exp(-s_i(z_<i)),      log|det d eps / d z| = -sum_i s_i,
so with eps = f_K(...f_1(z)) and eps ~ N(0, I),
    log p(z) = log N(eps; 0, I) + sum_k log|det d f_k / d z_{k-1}|.
Chen et al.'s prior is mean-only (s = 0, unit determinant); `scale=True` adds s (the
"optionally with scale" of the text adaptation, docs/papers/chen2017_vlae.md §Substitutes).
Sampling inverts each step coordinate by coordinate:
z_i = m_i(z_<i) + exp(s_i(z_<i)) eps_i needs z_<i first, so it costs d MADE passes a step.
Steps alternate ascending and descending MADE order (no permutation of z), as `repro.nn.flows.IAF`.
A fresh prior is the identity map (zero MADE outputs), i.e. exactly N(0, I).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import bounded
from repro.nn.distributions import LOG_2PI, StandardNormal
from repro.nn.flows import MADE


@dataclass
class AFPriorConfig:
    """The prior over z; `steps=0` is N(0, I)."""

    steps: int = bounded(0, lo=0)                    # flow steps (Chen et al.: 4)
    hidden_sizes: tuple[int, ...] = (640, 640)       # MADE hidden layers per step
    scale: bool = False                              # False: mean-only, as the paper


class AFStep(nn.Module):
    """One step in the density direction, `z (..., d) -> (eps (..., d), log|det| (...))`."""

    def __init__(self, latent_size: int, hidden_sizes: Sequence[int], order: Sequence[int],
                 scale: bool):
        super().__init__()
        self.scale = scale
        # ReLU MADE (the paper: 3-layer MADEs of 640 ReLU units, docs/papers/chen2017_vlae.md
        # §Architecture).
        self.made = MADE(latent_size, hidden_sizes, 2 if scale else 1, order=order,
                         activation=F.relu)
        # Zero outputs: m = s = 0 for every z, so a fresh step is the identity and the prior
        # starts as N(0, I) (the Gaussian-prior VAE the flow should improve on).
        nn.init.zeros_(self.made.output.weight)
        nn.init.zeros_(self.made.output.bias)

    def shift_and_log_scale(self, z: torch.Tensor):
        """`(m, s)`, each `(..., d)` (s is None when mean-only), in fp32 so the density stays
        exact under autocast."""
        out = self.made(z).float()
        return out[..., 0, :], (out[..., 1, :] if self.scale else None)

    def forward(self, z: torch.Tensor):
        shift, log_scale = self.shift_and_log_scale(z)
        if log_scale is None:
            return z - shift, z.new_zeros(z.shape[:-1])
        return (z - shift) * torch.exp(-log_scale), -log_scale.sum(-1)

    def inverse(self, eps: torch.Tensor) -> torch.Tensor:
        """z with `forward(z)[0] == eps`: sweep k solves the coordinate at order position k,
        z_i = m_i + exp(s_i) eps_i, from (m, s) computed on the coordinates already solved, so
        d sweeps are exact. Unsolved coordinates keep their finite eps meanwhile (as
        `repro.nn.flows.IAFStep.inverse`): updating the whole vector at once would feed
        unsolved values through exp(s) and can overflow."""
        z = eps
        for position in range(1, self.made.latent_size + 1):
            shift, log_scale = self.shift_and_log_scale(z)
            solved = shift + (eps if log_scale is None else torch.exp(log_scale) * eps)
            z = torch.where(self.made.order == position, solved, z)
        return z


class AFPrior(nn.Module):
    """p(z) by an autoregressive flow from N(0, I); the prior interface of `repro.model`."""

    def __init__(self, latent_size: int, steps: int, hidden_sizes: Sequence[int],
                 scale: bool = False):
        super().__init__()
        if steps < 1:
            raise ValueError("an AF prior needs steps >= 1 (use StandardNormal for none)")
        ascending = list(range(1, latent_size + 1))
        self.steps = nn.ModuleList(
            AFStep(latent_size, hidden_sizes, ascending if k % 2 == 0 else ascending[::-1], scale)
            for k in range(steps))
        self.base = StandardNormal((latent_size,))
        self.latent_size = latent_size

    @classmethod
    def from_config(cls, cfg: AFPriorConfig, latent_size: int) -> "AFPrior":
        return cls(latent_size, cfg.steps, cfg.hidden_sizes, cfg.scale)

    def log_prob_per_dim(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) split over coordinates `(..., d)`: coordinate i gets log N(eps_i; 0, 1)
        (its own noise term) and an equal share of the log-determinant (0 for the mean-only
        prior, so the split is exact there). Sums to `log_prob(z)`; for per-dimension free bits."""
        eps, log_det = self.to_noise(z)
        return -0.5 * (eps.pow(2) + LOG_2PI) + (log_det / self.latent_size).unsqueeze(-1)

    def to_noise(self, z: torch.Tensor):
        """`z (..., d) -> (eps (..., d), log|det d eps / d z| (...))`: one MADE pass a step."""
        log_det = z.new_zeros(z.shape[:-1], dtype=torch.float32)
        eps = z
        for step in self.steps:
            eps, step_log_det = step(eps)
            log_det = log_det + step_log_det
        return eps, log_det

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """`z (n, B, d) -> (n, B)` (any leading shape)."""
        eps, log_det = self.to_noise(z)
        return self.base.log_prob(eps) + log_det

    @torch.no_grad()
    def sample(self, n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        """`(n, d)` draws from p(z): sequential, d MADE passes per step."""
        weight = self.steps[0].made.output.weight
        # Noise from a CPU generator, so a seed gives the same draws on every device.
        z = torch.randn((n, self.latent_size), generator=generator).to(
            device if device is not None else weight.device, weight.dtype)
        for step in reversed(self.steps):
            z = step.inverse(z)
        return z


def make_prior(cfg: AFPriorConfig, latent_size: int):
    """N(0, I) for `steps=0`, else the AF prior (an `nn.Module`, so it trains with the model)."""
    return StandardNormal((latent_size,)) if cfg.steps == 0 else AFPrior.from_config(cfg, latent_size)

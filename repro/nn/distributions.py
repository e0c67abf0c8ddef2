"""Posteriors and priors over latent codes, with the small surface the evaluation needs.

Shapes: a latent code for a batch of B examples has shape `(B, *event)` (event is `(d,)` for one
vector per sentence, `(T, d)` for per-step latents); `rsample(n)` returns `z` of shape
`(n, B, *event)` and `log_q` of shape `(n, B)`, summed over the event dimensions.
"""
from __future__ import annotations

import math

import torch

LOG_2PI = math.log(2 * math.pi)


def _sum_event(x: torch.Tensor, event_dims: int) -> torch.Tensor:
    return x.flatten(start_dim=x.dim() - event_dims).sum(-1) if event_dims else x


class DiagonalGaussian:
    """N(mu, diag exp(logvar)) per example; `mu`, `logvar` of shape `(B, *event)`."""

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor, event_dims: int = 1):
        self.mu, self.logvar, self.event_dims = mu, logvar, event_dims

    @property
    def batch_size(self) -> int:
        return self.mu.shape[0]

    def rsample(self, n: int = 1, generator: torch.Generator | None = None):
        eps = torch.randn((n, *self.mu.shape), device=self.mu.device, dtype=self.mu.dtype,
                          generator=generator)
        z = self.mu + torch.exp(0.5 * self.logvar) * eps
        # log q from eps directly: exact, and avoids re-deriving eps from z.
        log_q = -0.5 * (eps.pow(2) + self.logvar + LOG_2PI)
        return z, _sum_event(log_q, self.event_dims)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """`(n, B, *event) -> (n, B)`."""
        per_dim = -0.5 * ((z - self.mu).pow(2) * torch.exp(-self.logvar) + self.logvar + LOG_2PI)
        return _sum_event(per_dim, self.event_dims)

    def mean(self, n_samples: int = 0) -> torch.Tensor:
        return self.mu

    def kl_per_dim(self, prior) -> torch.Tensor:
        """Analytic KL(q || prior) per latent dimension, `(B, *event)`."""
        if isinstance(prior, StandardNormal):
            return 0.5 * (self.mu.pow(2) + self.logvar.exp() - self.logvar - 1)
        if isinstance(prior, DiagonalGaussian):
            return 0.5 * (prior.logvar - self.logvar
                          + (self.logvar.exp() + (self.mu - prior.mu).pow(2)) / prior.logvar.exp()
                          - 1)
        raise TypeError(f"no analytic KL from a Gaussian to {type(prior).__name__}")


class StandardNormal:
    """N(0, I) over an event of the given shape."""

    def __init__(self, event_shape: tuple[int, ...]):
        self.event_shape = tuple(event_shape)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return _sum_event(-0.5 * (z.pow(2) + LOG_2PI), len(self.event_shape))

    def sample(self, n: int, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
        # Noise from a CPU generator, so a seed gives the same draws on every device.
        return torch.randn((n, *self.event_shape), generator=generator).to(device)


def has_analytic_kl(posterior, prior) -> bool:
    return isinstance(posterior, DiagonalGaussian) and isinstance(prior, (StandardNormal, DiagonalGaussian))


def kl_divergence(posterior, prior, n_samples: int = 1) -> torch.Tensor:
    """KL(q || p) per example `(B,)`: analytic for Gaussian pairs, else Monte Carlo with
    `n_samples` draws of log q(z) - log p(z) (flow posteriors and flow priors)."""
    if has_analytic_kl(posterior, prior):
        return _sum_event(posterior.kl_per_dim(prior), posterior.event_dims)
    z, log_q = posterior.rsample(n_samples)
    return (log_q - prior.log_prob(z)).mean(0)

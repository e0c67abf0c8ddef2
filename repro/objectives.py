"""ELBO assembly and the free-bits rules (docs/metrics.md §7), by name.

All functions take the per-example, per-dimension KL `kl_dims` of shape `(B, *event)` at
weight 1 and return the scalar KL term the training loss uses (already averaged over the
batch). The unclamped KL is always reported separately: free bits change only the objective.
"""
from __future__ import annotations

import torch

from repro.config import FreeBitsConfig


def free_bits_kl(kl_dims: torch.Tensor, cfg: FreeBitsConfig) -> torch.Tensor:
    per_dim = kl_dims.flatten(1)                       # (B, D)
    total = per_dim.sum(-1)                            # (B,)
    if cfg.variant == "none":
        return total.mean()
    if cfg.variant == "kingma_group_batchmean":
        # Kingma et al. 2016 App. C: average each group's KL over the minibatch first, then
        # floor it at lambda, so single examples may still fall below the floor.
        batch_mean = per_dim.mean(0)                   # (D,)
        if batch_mean.numel() % cfg.group_size:
            raise ValueError(f"latent size {batch_mean.numel()} is not a multiple of "
                             f"free_bits.group_size={cfg.group_size}")
        groups = batch_mean.view(-1, cfg.group_size).sum(-1)
        return torch.clamp(groups, min=cfg.lam).sum()
    if cfg.variant == "li_example_total":
        # Li et al. 2019 fb=1: drop an example's KL term while its total KL is under target.
        return (total * (total >= cfg.lam)).mean()
    if cfg.variant == "li_example_dim":
        # Li et al. 2019 fb=2: per example and dimension; `lam` is the per-dimension target
        # (their target_kl / latent size).
        return (per_dim * (per_dim >= cfg.lam)).sum(-1).mean()
    if cfg.variant == "li_batchmean":
        # Li et al. 2019 fb=3: drop the whole KL term while the batch-mean KL is under target.
        mean = total.mean()
        return mean * (mean >= cfg.lam)
    raise ValueError(f"unknown free-bits variant {cfg.variant!r}")


def elbo_loss(rec: torch.Tensor, kl_dims: torch.Tensor, kl_weight: float,
              free_bits: FreeBitsConfig) -> dict[str, torch.Tensor]:
    """Loss terms from the reconstruction NLL `rec` `(B,)` and `kl_dims` `(B, *event)`.

    `loss` = mean rec + kl_weight * (free-bits KL term); `kl` is the unclamped mean KL, `elbo`
    the mean ELBO at weight 1 (both for logging).
    """
    kl = kl_dims.flatten(1).sum(-1)
    kl_term = free_bits_kl(kl_dims, free_bits)
    return {
        "loss": rec.mean() + kl_weight * kl_term,
        "rec": rec.mean(),
        "kl": kl.mean(),
        "elbo": -(rec + kl).mean(),
        "kl_weight": torch.tensor(kl_weight),
    }

"""Schedules as pure functions of the update step (nanoGPT's habit for learning rates).

Each takes the step (0-based count of updates already made) and a `KLScheduleConfig` (or a
`LinearRate`), and returns the KL weight to use for that update.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from repro.config import KLScheduleConfig


@dataclass(frozen=True)
class LinearRate:
    """A ramp given by its slope: `start_weight`, plus `weight_per_step` per update, up to
    `max_weight` (Goyal et al. 2017's code: `kla_sta`, `kld_step`). `linear` can only approximate
    it, since its duration need not be a whole number of updates. Not a config section: a model
    whose own config states the slope builds one, so no other config gains a key."""

    start_weight: float
    weight_per_step: float
    max_weight: float = 1.0


def kl_weight(step: int, cfg: KLScheduleConfig | LinearRate) -> float:
    if isinstance(cfg, LinearRate):
        return min(cfg.max_weight, cfg.start_weight + cfg.weight_per_step * step)
    if cfg.kind == "constant":
        return cfg.max_weight
    if cfg.kind == "linear":
        if cfg.warmup_steps == 0:
            return cfg.max_weight
        return cfg.start_weight + (cfg.max_weight - cfg.start_weight) * min(1.0, step / cfg.warmup_steps)
    if cfg.kind == "logistic":
        # Bowman et al. 2016: a sigmoid in the step; k sets the slope, x0 the midpoint.
        # exp of a large positive argument overflows; its weight is 0 to float precision anyway.
        return cfg.max_weight / (1.0 + math.exp(min(-cfg.logistic_k * (step - cfg.logistic_x0), 700.0)))
    if cfg.kind == "cyclical":
        # Fu et al. 2019: within each period rise linearly for `cycle_ramp` of it, then hold.
        phase = (step % cfg.cycle_steps) / cfg.cycle_steps
        if cfg.cycle_ramp == 0:
            return cfg.max_weight
        return cfg.max_weight * min(1.0, phase / cfg.cycle_ramp)
    raise ValueError(f"unknown KL schedule {cfg.kind!r}")

"""Schedules as pure functions of the update step (nanoGPT's habit for learning rates).

Each takes the step (0-based count of updates already made) and a `KLScheduleConfig`, and
returns the KL weight to use for that update.
"""
from __future__ import annotations

import math

from repro.config import KLScheduleConfig


def kl_weight(step: int, cfg: KLScheduleConfig) -> float:
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

"""Schedules as pure functions of the update step (nanoGPT's habit for learning rates).

Each takes the step (0-based count of updates already made) and a `KLScheduleConfig` (or a
`LinearRate`), and returns the KL weight to use for that update; `learning_rate` likewise
returns the optimiser's rate from an `OptimConfig`, so a resumed run picks the schedule up at
its step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from repro.config import KLScheduleConfig, OptimConfig


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
        return _cyclical_weight(step, cfg)
    raise ValueError(f"unknown KL schedule {cfg.kind!r}")


# Fu et al. 2019's ramp shapes (`haofuml/cyclical_annealing`, plot/plot_schedules.ipynb), each a
# map of the ramp's progress u in [0, 1) to [0, 1]. Their sigmoid is not rescaled: it runs from
# 0.0025 to 0.9975 and then steps to 1 where the ramp ends.
RAMP_SHAPES = {
    "linear": lambda u: u,
    "sigmoid": lambda u: 1.0 / (1.0 + math.exp(-(12.0 * u - 6.0))),
    "cosine": lambda u: 0.5 - 0.5 * math.cos(math.pi * u),
}


def _cyclical_weight(step: int, cfg: KLScheduleConfig) -> float:
    """Fu et al. 2019: every period starts at `start_weight`, rises along `cycle_shape` for the
    fraction `cycle_ramp` of the period, then holds `max_weight` until the next period. Periods
    are `cycle_steps` long, or `cycle_total_steps / cycles` when the count is given (Fu's M),
    after which the weight stays at `max_weight`."""
    if cfg.cycles is None:
        period = cfg.cycle_steps
    elif cfg.cycle_total_steps is None:
        raise ValueError("a cyclical schedule given by its number of cycles needs cycle_total_steps")
    elif step >= cfg.cycle_total_steps:
        return cfg.max_weight
    else:
        period = cfg.cycle_total_steps / cfg.cycles
    # Cycle c starts at update floor(c * period), as in Fu's notebook: with a whole-number
    # period, simply every `period` updates.
    cycle = math.ceil((step + 1) / period) - 1
    phase = (step - math.floor(cycle * period)) / period
    if cfg.cycle_ramp == 0 or phase >= cfg.cycle_ramp:
        return cfg.max_weight
    rise = RAMP_SHAPES[cfg.cycle_shape](phase / cfg.cycle_ramp)
    return cfg.start_weight + (cfg.max_weight - cfg.start_weight) * rise


def learning_rate(step: int, cfg: OptimConfig) -> float:
    """The rate for the update after `step` updates. "cosine_restarts" (Fu et al. 2019's
    `train_text_cyc_ptb.py`, SGDR's shape): lr * (1 + cos(pi * t / T)) / 2, t the updates since the
    period began rounded down to a multiple of `lr_hold_steps`, T = `lr_cycle_steps`; so with
    one epoch per hold the rate changes at epoch starts only, as in Fu's code."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine_restarts":
        held = step - step % cfg.lr_hold_steps
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * (held % cfg.lr_cycle_steps) / cfg.lr_cycle_steps))
    raise ValueError(f"unknown learning-rate schedule {cfg.lr_schedule!r}")

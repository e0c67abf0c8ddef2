"""Polyak averaging: an exponential moving average of the parameters, used for evaluation.

After every update, avg <- decay * avg + (1 - decay) * param, starting from the parameters the
run starts with (after any data-dependent initialisation). Kingma et al. 2016 (official code:
decay 0.999) and Chen et al. 2017 (alpha = 0.998) train the raw parameters and evaluate the
average: the average smooths the last few thousand updates' noise out of the weights, which
the bound and the likelihood reward.

The trainer (`repro.train`) keeps one `PolyakAverage` when `optim.polyak > 0`: it updates it
after each optimiser step, validates, selects and saves `best.pt` under `averaged(...)`, tests
the averaged weights, and stores `state_dict()` in `last.pt` so a resumed run continues the
same average.
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn


class PolyakAverage:
    """The moving average of `model`'s parameters (every `named_parameters()` entry; buffers such
    as masks are not trained and stay as they are)."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"a Polyak decay lies in (0, 1), got {decay}")
        self.decay = decay
        self.params = dict(model.named_parameters())
        self.average = {name: p.detach().clone() for name, p in self.params.items()}

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average toward the current parameters (no host sync)."""
        names = list(self.params)
        torch._foreach_lerp_([self.average[n] for n in names],
                             [self.params[n].detach() for n in names], 1.0 - self.decay)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange the model's parameters with the average (twice restores both)."""
        for name, param in self.params.items():
            held = param.detach().clone()
            param.copy_(self.average[name])
            self.average[name].copy_(held)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "average": {n: t.clone() for n, t in self.average.items()}}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        if set(state["average"]) != set(self.average):
            raise ValueError("the stored Polyak average is of another model's parameters")
        for name, tensor in state["average"].items():
            self.average[name].copy_(tensor)


@contextlib.contextmanager
def averaged(average: PolyakAverage | None):
    """Inside, the model holds the averaged parameters; on leaving (or on an error), its own
    again. With `average` None (averaging off) it does nothing."""
    if average is None:
        yield
        return
    average.swap()
    try:
        yield
    finally:
        average.swap()


def make_average(model: nn.Module, decay: float) -> PolyakAverage | None:
    """The trainer's average for `optim.polyak`: None when it is 0 (off)."""
    return PolyakAverage(model, decay) if decay > 0 else None

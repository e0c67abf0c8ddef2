"""A minimal batch of vectors for the evaluation tests on toy latent models (flows, AF priors)."""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class VectorBatch:
    x: torch.Tensor
    num_targets = None

    @property
    def size(self) -> int:
        return self.x.shape[0]

    def to(self, device) -> "VectorBatch":
        return VectorBatch(self.x.to(device))

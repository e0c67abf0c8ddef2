"""A batch read as a sequence of time steps, for the two kinds of data the package runs on.

Step t reads x_{t-1} (its *input*: `<bos>`, or a zero chunk of pixels, at t = 0) and predicts
x_t (its *target*), as the forward RNN of `sordonia/zforcing` (`model.py`, `fwd_pass`) reads
`x` and scores `y`. The backward RNN reads the targets from the end, so its state at step t
summarises x_t .. x_T (`bwd_pass`).

- Text (`TokenSteps`): one word per step; the targets are `w1 .. wn <eos>`, and steps past a
  sentence's `<eos>` are padding (`mask` False).
- Binary images (`PixelSteps`): `pixels_per_step` pixels per step in raster order (1 is the
  paper's pixel-by-pixel sequential MNIST), every step real; each step's pixels are
  conditionally independent Bernoullis given the state.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import ConfigError
from repro.nn.lstm import OutputLayer

IMAGE_PIXELS = 28 * 28


@dataclass
class Steps:
    inputs: torch.Tensor    # (B, T) word ids, or (B, T, k) pixels: x_{t-1}
    targets: torch.Tensor   # (B, T) word ids, or (B, T, k) pixels: x_t
    mask: torch.Tensor      # (B, T) bool: real steps

    @property
    def lengths(self) -> torch.Tensor:
        return self.mask.sum(1)


def repeat_rows(x: torch.Tensor, n: int) -> torch.Tensor:
    """`(B, ...) -> (n*B, ...)`, sample-major: row s*B + b is example b, matching
    `z.reshape(n*B, ...)` for z of shape `(n, B, ...)`."""
    return x.unsqueeze(0).expand(n, *x.shape).reshape(n * x.shape[0], *x.shape[1:])


class TokenSteps(nn.Module):
    """Words: an embedding shared by both RNNs (the code's `emb_mod`) and a softmax output."""

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, dropout: float):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size)
        self.dropout = nn.Dropout(dropout)
        self.out = OutputLayer(hidden_size, vocab_size)

    def steps(self, batch) -> Steps:
        return Steps(batch.inputs, batch.targets, batch.target_mask)

    def embed_inputs(self, steps: Steps) -> torch.Tensor:
        """`(B, T, E)`"""
        return self.dropout(self.embed(steps.inputs))

    def embed_targets(self, steps: Steps) -> torch.Tensor:
        """`(B, T, E)`: what the backward RNN reads."""
        return self.dropout(self.embed(steps.targets))

    def log_prob(self, hidden: torch.Tensor, steps: Steps, n: int) -> torch.Tensor:
        """Forward states `(n*B, T, H)` -> summed target log-probabilities `(n, B)`."""
        return self.out(hidden, repeat_rows(steps.targets, n), repeat_rows(steps.mask, n)).view(n, -1)


class PixelSteps(nn.Module):
    """Binary pixels in chunks of `pixels_per_step`: a linear input map (for one pixel, the same
    as the code's two-entry embedding of a 0/1 input) and Bernoulli outputs."""

    def __init__(self, pixels_per_step: int, embed_size: int, hidden_size: int, dropout: float):
        super().__init__()
        if IMAGE_PIXELS % pixels_per_step:
            raise ConfigError(f"model.pixels_per_step={pixels_per_step} must divide {IMAGE_PIXELS}")
        self.pixels_per_step = pixels_per_step
        self.embed = nn.Linear(pixels_per_step, embed_size)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, pixels_per_step)

    def steps(self, batch) -> Steps:
        pixels = batch.x.flatten(1).view(batch.size, -1, self.pixels_per_step)
        pixels = pixels.to(self.embed.weight.dtype)
        inputs = torch.cat([torch.zeros_like(pixels[:, :1]), pixels[:, :-1]], 1)
        mask = torch.ones(pixels.shape[:2], dtype=torch.bool, device=pixels.device)
        return Steps(inputs, pixels, mask)

    def embed_inputs(self, steps: Steps) -> torch.Tensor:
        return self.dropout(self.embed(steps.inputs))

    def embed_targets(self, steps: Steps) -> torch.Tensor:
        return self.dropout(self.embed(steps.targets))

    def log_prob(self, hidden: torch.Tensor, steps: Steps, n: int) -> torch.Tensor:
        logits = self.out(hidden)
        logits = logits if logits.dtype in (torch.float32, torch.float64) else logits.float()
        nll = F.binary_cross_entropy_with_logits(logits, repeat_rows(steps.targets, n).to(logits.dtype),
                                                 reduction="none")
        return -nll.sum((1, 2)).view(n, -1)


def make_steps(corpus, embed_size: int, hidden_size: int, pixels_per_step: int, dropout: float):
    if corpus.kind == "text":
        return TokenSteps(len(corpus.vocab), embed_size, hidden_size, dropout)
    if corpus.kind == "image":
        return PixelSteps(pixels_per_step, embed_size, hidden_size, dropout)
    raise ConfigError(f"goyal2017_zforcing runs on text or binary images, not {corpus.kind!r} data")

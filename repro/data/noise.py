"""Token noise for training batches, one family: word dropout is its simplest member.

A member of the family answers three questions (Xie et al. 2017, "data noising as smoothing"):

- *which positions*: each ordinary token independently, with probability γ, or with the
  adaptive probability γ · N1+(x, •) / c(x) of bigram Kneser-Ney noising, x being the token at
  that position read as a bigram context (the share of x's bigram mass that absolute
  discounting moves to the lower-order model; `bigram_kn_statistics`);
- *what is written there*: a placeholder id (blank noising; Bowman et al. 2016's word dropout
  with `<unk>` as the placeholder), or a draw from a proposal distribution (the unigram
  distribution, or KN's continuation distribution);
- *whether targets are noised too*: Xie's KN scheme replaces the target at a noised position by
  an independent proposal draw as well.

All of it acts on training batches only (the caller decides: `DecoderInputs`, or a model's
`training` flag). Protected ids (`<bos>`, `<eos>`, padding for sentence models; none for a
stream language model, where `<eos>` is an ordinary token) are never replaced.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from repro.config import bounded

NOISE_SCHEMES = ("none", "blank", "unigram", "bigram_kn")


@dataclass
class NoiseConfig:
    """One of Xie et al.'s schemes by name, and its γ (ignored for "none")."""

    scheme: str = bounded("none", choices=NOISE_SCHEMES)
    gamma: float = bounded(0.0, lo=0.0, hi=1.0)


def replaceable(tokens: torch.Tensor, protected_ids: tuple[int, ...]) -> torch.Tensor:
    """Mask of positions that hold ordinary words, `(B, T) -> (B, T)` bool."""
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for pid in protected_ids:
        mask &= tokens != pid
    return mask


def noise_mask(tokens: torch.Tensor, keep_prob: float | torch.Tensor,
               protected_ids: tuple[int, ...] = (), generator: torch.Generator | None = None
               ) -> torch.Tensor:
    """Positions to corrupt: each ordinary word independently with probability 1 - `keep_prob`.

    `tokens (B, T)`, `keep_prob` a float or `(B, T)` -> `(B, T)` bool. One uniform draw per
    position (as the reference code's one Bernoulli per position), compared as `u >= keep`, so
    keep 1 never corrupts and keep 0 always does.
    """
    drop = torch.rand(tokens.shape, device=tokens.device, generator=generator) >= keep_prob
    return drop & replaceable(tokens, protected_ids)


def word_dropout(tokens: torch.Tensor, keep_rate: float, unk_id: int,
                 protected_ids: tuple[int, ...], generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """Replace each word of `tokens` by `unk_id` with probability 1 - `keep_rate`.

    `(B, T) -> (B, T)`. Blank noising with γ = 1 - keep rate and `<unk>` as the blank.
    keep_rate 1 returns the input (and draws nothing); keep_rate 0 gives the inputless decoder.
    """
    if keep_rate >= 1.0:
        return tokens
    return tokens.masked_fill(noise_mask(tokens, keep_rate, protected_ids, generator), unk_id)


def draw_like(tokens: torch.Tensor, proposal: torch.Tensor,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """One i.i.d. draw from `proposal (V,)` per position of `tokens (B, T)` -> `(B, T)`.

    Every position gets a draw, noised or not, so no data-dependent count (and no host sync)
    is needed; the unused draws are discarded by the caller's `where`.
    """
    flat = torch.multinomial(proposal, tokens.numel(), replacement=True, generator=generator)
    return flat.view(tokens.shape)


def unigram_distribution(stream: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Relative frequency of each id in a training token stream, `(N,) -> (V,)`."""
    counts = torch.bincount(stream, minlength=vocab_size).double()
    return (counts / counts.sum()).float()


def bigram_kn_statistics(stream: torch.Tensor, vocab_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Bigram Kneser-Ney tables of a training token stream, `(N,) -> ((V,), (V,))`.

    Bigrams are consecutive pairs of the stream (so across sentences, through `<eos>`).
    Returns
    - `discount_share[x]` = N1+(x, •) / c(x): distinct successors of x over its count as a
      context (its count among the first N - 1 tokens); 0 for ids never seen as a context,
      which then are never noised;
    - `continuation[w]` ∝ N1+(•, w): the number of distinct left contexts of w, normalised.
    """
    pairs = torch.unique(stream[:-1] * vocab_size + stream[1:])
    left, right = pairs // vocab_size, pairs % vocab_size
    as_context = torch.bincount(stream[:-1], minlength=vocab_size).double()
    successors = torch.bincount(left, minlength=vocab_size).double()
    share = torch.where(as_context > 0, successors / as_context.clamp(min=1), 0.0)
    histories = torch.bincount(right, minlength=vocab_size).double()
    return share.float(), (histories / histories.sum()).float()


class TokenNoise(nn.Module):
    """A member of the family: noise `(inputs, targets)` of a training batch.

    `gamma`: the base noising probability. `discount_share (V,)`: if given, a position holding
    input x is noised with probability γ · discount_share[x] (KN's adaptive γ), else with γ.
    Noised inputs become `blank_id`, or draws from `proposal (V,)` when one is given. With
    `noise_targets`, the target at each noised position is replaced by its own independent
    proposal draw (the reference code's KN scheme; it needs a proposal). The tables are
    buffers, so `.to(device)` moves them, but not part of the state dict: they are derived from
    the training data, not learned.
    """

    def __init__(self, gamma: float, *, blank_id: int | None = None,
                 proposal: torch.Tensor | None = None, discount_share: torch.Tensor | None = None,
                 noise_targets: bool = False, protected_ids: tuple[int, ...] = ()):
        super().__init__()
        if gamma > 0 and (blank_id is None) == (proposal is None):
            raise ValueError("give exactly one of blank_id (blank noising) or proposal (sampling)")
        if noise_targets and proposal is None:
            raise ValueError("noise_targets needs a proposal distribution to draw targets from")
        self.gamma, self.blank_id = gamma, blank_id
        self.noise_targets, self.protected_ids = noise_targets, tuple(protected_ids)
        self.register_buffer("proposal", proposal, persistent=False)
        self.register_buffer("discount_share", discount_share, persistent=False)

    def forward(self, inputs: torch.Tensor, targets: torch.Tensor,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`inputs (B, T)`, `targets (B, T)` -> both, noised; γ = 0 returns them and draws nothing."""
        if self.gamma == 0.0:
            return inputs, targets
        rate = self.gamma if self.discount_share is None else self.gamma * self.discount_share[inputs]
        mask = noise_mask(inputs, 1.0 - rate, self.protected_ids, generator)
        noised_inputs = self._replace(inputs, mask, generator)
        if self.noise_targets:
            targets = self._replace(targets, mask & replaceable(targets, self.protected_ids), generator)
        return noised_inputs, targets

    def _replace(self, tokens: torch.Tensor, mask: torch.Tensor, generator) -> torch.Tensor:
        if self.proposal is None:
            return tokens.masked_fill(mask, self.blank_id)
        return torch.where(mask, draw_like(tokens, self.proposal, generator), tokens)


def build_noise(cfg: NoiseConfig, train_stream: torch.Tensor, vocab_size: int, blank_id: int,
                protected_ids: tuple[int, ...] = ()) -> TokenNoise:
    """Xie et al. 2017's schemes (reference code: `loader.py`, `noise_batch`):

    - "none": the identity;
    - "blank": probability γ, input -> `blank_id`;
    - "unigram": probability γ, input -> a draw from the unigram distribution of `train_stream`;
    - "bigram_kn": probability γ · N1+(x, •) / c(x), input and target -> independent draws from
      the continuation distribution (`--scheme ngram --ngram_scheme kn --absolute_discounting`).

    `train_stream (N,)` holds ids below `vocab_size`.
    """
    if cfg.scheme == "none":
        return TokenNoise(0.0)
    if cfg.scheme == "blank":
        return TokenNoise(cfg.gamma, blank_id=blank_id, protected_ids=protected_ids)
    if cfg.scheme == "unigram":
        return TokenNoise(cfg.gamma, proposal=unigram_distribution(train_stream, vocab_size),
                          protected_ids=protected_ids)
    if cfg.scheme != "bigram_kn":
        raise ValueError(f"unknown noise scheme {cfg.scheme!r}; choose one of {list(NOISE_SCHEMES)}")
    share, continuation = bigram_kn_statistics(train_stream, vocab_size)
    return TokenNoise(cfg.gamma, proposal=continuation, discount_share=share, noise_targets=True,
                      protected_ids=protected_ids)

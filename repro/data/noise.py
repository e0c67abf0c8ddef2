"""Token-level noise on decoder inputs, one family: word dropout is its simplest member.

Bowman et al. 2016 replace each decoder-input word by `<unk>` with probability 1 - keep rate
("word dropout"); Xie et al. 2017 generalise this to blank, unigram and bigram-Kneser-Ney
noising. All act on the training batch only; `<bos>`, `<eos>` and padding are never replaced.
"""
from __future__ import annotations

import torch


def replaceable(tokens: torch.Tensor, protected_ids: tuple[int, ...]) -> torch.Tensor:
    """Mask of positions that hold ordinary words, `(B, T) -> (B, T)` bool."""
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for pid in protected_ids:
        mask &= tokens != pid
    return mask


def word_dropout(tokens: torch.Tensor, keep_rate: float, unk_id: int,
                 protected_ids: tuple[int, ...], generator: torch.Generator | None = None
                 ) -> torch.Tensor:
    """Replace each word of `tokens` by `unk_id` with probability 1 - `keep_rate`.

    `(B, T) -> (B, T)`. keep_rate 1 returns the input; keep_rate 0 gives the inputless decoder.
    """
    if keep_rate >= 1.0:
        return tokens
    drop = torch.rand(tokens.shape, device=tokens.device, generator=generator) >= keep_rate
    drop &= replaceable(tokens, protected_ids)
    return tokens.masked_fill(drop, unk_id)

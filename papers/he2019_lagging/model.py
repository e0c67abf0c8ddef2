"""He et al. 2019: aggressive inference-network training, on the shared LSTM VAE.

Implementation details (docs/papers/he2019_lagging.md; `jxhe/vae-lagging-encoder`, read for facts):

- Encoder: one-layer LSTM, last state -> linear -> diagonal Gaussian q(z|x); prior N(0, I)
  (`enc_lstm.py`). The shared `LSTMEncoder`; ours has a bias on the linear map and reads
  `w1 .. wn </s>` (theirs also `<s>`).
- Decoder: one-layer LSTM with z appended to every input embedding and c0 = W z, h0 = tanh(c0)
  (`dec_lstm.py`): `TextVAEConfig.z_mode="both"`. Dropout 0.5 on the input embeddings (before z
  is appended) and on the LSTM outputs: `decoder_dropout=0.5`. Their z-to-state map and output
  layer have no bias; the shared ones do (§Architecture).
- Initialisation: every parameter U(-0.01, 0.01), embeddings U(-0.1, 0.1) (`text.py`):
  `init_range`, `embed_init_range`.
- Objective: the single-sample negative ELBO with the analytic KL at the schedule's weight
  (`modules/vae.py`: `loss`): the shared `loss`. KL annealing: linear from 0.1 to 1 over 10
  epochs, per update; β-VAE: a constant weight β (presets).
- Aggressive phase (`text.py`, `aggressive_flag`): before each decoder step, encoder-only steps,
  the first on the update's own batch and then on random training batches, until the inner
  loss per target word, averaged over windows of 15 steps, rises, or 99 steps
  (`encoder_steps_until_stalled`); then one decoder-only step on the update's batch. Every step
  clips the whole model's gradient before stepping its part (`repro.train.Updater.step`).
- Separate encoder and decoder optimisers: one optimiser stepped with one part's gradients,
  which is the same thing, since optimisers keep state per parameter (`Updater.step`).
- Leaving the phase: after each epoch, the validation MI is compared with the previous epoch's
  (from 0); the first fall ends the phase for good (`validated`), and updates become plain VAE
  updates of both parts.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Callable

import torch

from repro.config import bounded
from repro.sentence_models import LSTMLM, LSTMLMConfig, TextVAE, TextVAEConfig


@dataclass
class LaggingVAEConfig(TextVAEConfig):
    aggressive: bool = False
    # `text.py`: `while aggressive_flag and sub_iter < 100`, the counter starting at 1.
    max_inner_steps: int = bounded(99, lo=1)
    inner_window: int = bounded(15, lo=1)         # `if sub_iter % 15 == 0`


def encoder_steps_until_stalled(encoder_step: Callable[[], tuple[float, float]],
                                max_steps: int, window: int) -> int:
    """Call `encoder_step()` (one encoder update, returning its loss summed over the batch's
    sentences and the number of target words it scored) until the loss per word of the last
    `window` steps is higher than that of the `window` steps before, or `max_steps` calls.
    Returns the number of calls. The first window has nothing before it (He et al. compare it
    with 1e4 per word), so at least two windows run when `max_steps` allows."""
    previous = math.inf
    loss_sum = words = 0.0
    for steps in range(1, max_steps + 1):
        step_loss, step_words = encoder_step()
        loss_sum, words = loss_sum + step_loss, words + step_words
        if steps % window == 0:
            per_word = loss_sum / words
            if per_word > previous:
                return steps
            previous, loss_sum, words = per_word, 0.0, 0.0
    return max_steps


class LaggingVAE(TextVAE):
    """`TextVAE` with He et al.'s aggressive phase when `cfg.aggressive`; a plain VAE (or
    β-VAE, by its KL schedule) otherwise."""

    def __init__(self, cfg: LaggingVAEConfig, vocab):
        super().__init__(cfg, vocab)
        self.aggressive_phase = cfg.aggressive   # on until the validation MI first falls
        self.previous_mi = 0.0                   # `pre_mi = 0` in `text.py`
        self.validation_metrics = ("mi",) if cfg.aggressive else ()

    def train_step(self, batch, step: int, updater) -> dict[str, torch.Tensor]:
        if not self.aggressive_phase:
            terms = updater.step(updater.loss(batch, step))
            # Logged while the phase is over too, so the history shows when it ended.
            return {**terms, "inner_steps": torch.zeros(())} if self.cfg.aggressive else terms
        # The update's own batch first, then fresh random ones (`text.py`).
        batches = itertools.chain([batch], iter(updater.random_batch, None))
        inner = encoder_steps_until_stalled(
            lambda: self._encoder_step(next(batches), step, updater),
            self.cfg.max_inner_steps, self.cfg.inner_window)
        terms = updater.step(updater.loss(batch, step), only=self.decoder.parameters())
        return {**terms, "inner_steps": torch.tensor(float(inner))}

    def _encoder_step(self, batch, step: int, updater) -> tuple[float, float]:
        terms = updater.step(updater.loss(batch, step), only=self.encoder.parameters())
        return float(terms["loss"].detach()) * batch.size, float(batch.num_targets.sum())

    def validated(self, metrics: dict[str, float]) -> None:
        if self.aggressive_phase:       # `if cur_mi - pre_mi < 0: aggressive_flag = False`
            self.aggressive_phase = metrics["mi"] >= self.previous_mi
            self.previous_mi = metrics["mi"]


def build(cfg, corpus):
    if isinstance(cfg.model, LSTMLMConfig):
        return LSTMLM(cfg.model, corpus.vocab)
    return LaggingVAE(cfg.model, corpus.vocab)

"""Fu et al. 2019: an LSTM sentence VAE trained under a cyclical KL schedule.

The model is the shared `TextVAE` with He et al.'s decoder; the method is the schedule, which
lives in the core (`repro.schedules`), and the settings are in `presets.py`:

- Encoder: one-layer LSTM (256) over the sentence with its own 256-d embedding; its last state
  gives a diagonal-Gaussian q(z|x), latent 32; prior N(0, I). (docs/papers/fu2019_cyclical.md
  §Architecture, verified from code)
- Decoder: one-layer LSTM (256); z is concatenated to every input and sets the initial state.
  Fu's code sets h0 = W z, c0 = 0; the core's "both" sets c0 = W z, h0 = tanh c0 (a deviation,
  same section). Dropout 0.5 on the decoder's input embeddings and on its outputs.
- KL weight, cyclical (`repro.schedules.kl_weight`, kind "cyclical"): M cycles; each starts at
  0.1, rises linearly (or along the sigmoid or cosine of Fu's notebook) for the fraction R of
  the cycle, then holds 1. PTB script: R = 0.45 (1 reached after 4.5 of 10 epochs), M = 4.
  (§Training, verified from code)
- Learning rate (`repro.schedules.learning_rate`, "cosine_restarts"): Adam 1e-3 times
  (1 + cos(pi * epoch-in-cycle / 10)) / 2, set at each epoch's start, restarting every cycle.
- Monotonic baseline: one linear ramp from 0.1 reaching 1 after 9 epochs, constant rate.
- Initialisation: every parameter uniform in +-0.1 (`init_range`, §Architecture).
- Evaluation (one protocol for every paper): IW-NLL/PPL, and the single-sample negative ELBO
  and its PPL, which is what Fu's script reports; KL, MI, AU. Always at KL weight 1.
"""
from __future__ import annotations

from repro.sentence_models import TextVAE


def build(cfg, corpus) -> TextVAE:
    return TextVAE(cfg.model, corpus.vocab)

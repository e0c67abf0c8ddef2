"""Bowman et al. 2016: an LSTM sentence VAE kept from collapsing by KL annealing and word dropout.

The method is the shared `TextVAE` configured as the paper describes, so the implementation
details live in the presets and here:

- Encoder: one-layer LSTM over the sentence; its last state gives a diagonal-Gaussian q(z|x).
  Prior N(0, I). (docs/papers/bowman2016.md §Architecture: memory, high confidence)
- Decoder: one-layer LSTM; z enters through the initial state (c0 = W z, h0 = tanh c0). The
  paper's "initial hidden state through a linear map" is from memory (same section); the tanh
  is ours.
- KL cost annealing: weight 1 / (1 + exp(-k (step - x0))), rising from ~0 to 1 (paper: a
  sigmoid of the step with a tuned rate). `repro.schedules.kl_weight`, kind "logistic".
- Word dropout: each decoder-input word is replaced by `<unk>` with probability 1 - keep rate,
  at training time only (`repro.data.noise.word_dropout`); `<bos>`, `<eos>`, padding are kept.
- Inputless rows: keep rate 0, so the decoder never sees a word; this is part of the model, and
  it is also applied at evaluation and generation time, as the paper's inputless setting implies.
- RNNLM baseline: the same decoder without z (`LSTMLM`), scored by its exact likelihood.
- Evaluation (our addition, one protocol for every paper): IW-NLL/IW-PPL, the single-sample
  negative ELBO and ELBO-PPL (the paper's VAE metric), KL, MI over the whole test set, and
  active units. Per-sentence, `<eos>` counted in the PPL denominator.
- Qualitative outputs: samples from the prior, greedy and beam reconstructions, and a homotopy,
  written to `samples.json`/`samples.txt` beside each run and to MLflow (`repro sample RUN`).
  The paper shows these on the Books Corpus; here they are on PTB (a substitute).

Deviations from the paper: see `presets.py` (sizes, optimiser, schedule constants, epochs, K).
"""
from __future__ import annotations

from repro.sentence_models import LSTMLM, LSTMLMConfig, TextVAE


def build(cfg, corpus):
    if isinstance(cfg.model, LSTMLMConfig):
        return LSTMLM(cfg.model, corpus.vocab)
    return TextVAE(cfg.model, corpus.vocab)

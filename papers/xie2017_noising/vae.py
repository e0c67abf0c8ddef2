"""Xie et al.'s unigram noising on a sentence VAE's decoder inputs: the benchmark's noising row.

The paper noises a language model's training inputs; here the same scheme (γ = 0.2, the
package's value) acts on the decoder inputs of an LSTM-VAE, the other reconstruction-side
remedy next to Bowman's word dropout (which is blank noising with `<unk>` as the blank, so
only unigram noising adds something new). The encoder reads the clean sentence; targets are
never noised (unigram noising leaves them, as in the paper). `<bos>`, `<eos>` and padding are
protected. The unigram distribution counts the training sentences' words: a sentence corpus
stores no `<eos>` in its word stream, so unlike the stream LM's it has no `<eos>` mass.

The KL weight is 1 throughout, so the row against bowman2016/vae isolates what noising alone
does to posterior collapse. This variant has no row in the paper's table (the paper has no
VAE); it exists for `repro benchmark` and runs alone with Bowman-size presets (`presets.py`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from repro.data.noise import NoiseConfig, build_noise
from repro.sentence_models import TextVAE, TextVAEConfig

GAMMA = 0.2
NAME = "vae-unigram"


@dataclass
class NoisedTextVAEConfig(TextVAEConfig):
    noise: NoiseConfig = field(default_factory=lambda: NoiseConfig("unigram", GAMMA))


class NoisedTextVAE(TextVAE):
    """`TextVAE` whose decoder inputs are noised in training."""

    def __init__(self, cfg: NoisedTextVAEConfig, vocab, train_words):
        super().__init__(cfg, vocab)
        self.noise = build_noise(cfg.noise, train_words, len(vocab), blank_id=vocab.unk,
                                 protected_ids=(vocab.pad, vocab.bos, vocab.eos))

    def log_likelihood(self, batch, z):
        inputs = batch.inputs
        if self.training:
            inputs, _ = self.noise(inputs, batch.targets)
        inputs = self.decoder_inputs(inputs, self.training)
        return self.decoder.log_likelihood(inputs, batch.targets, batch.target_mask, z)


def build(cfg, corpus) -> NoisedTextVAE:
    return NoisedTextVAE(cfg.model, corpus.vocab, corpus.split("train").flat)

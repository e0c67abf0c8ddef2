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
VAE); it exists for `repro benchmark` and runs alone with the Bowman-size presets below.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from repro.config import DataConfig, EvalConfig, OptimConfig, RunConfig, TrainConfig
from repro.data.noise import NoiseConfig, build_noise
from repro.models import TextVAE, TextVAEConfig
from repro.registry import Variant

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


def _run(preset: str, model: NoisedTextVAEConfig, data: DataConfig, train: TrainConfig,
         eval: EvalConfig) -> RunConfig:
    return RunConfig(paper="xie2017_noising", variant=NAME, preset=preset, model=model, data=data,
                     optim=OptimConfig(lr=1e-3, grad_clip=5.0), train=train, eval=eval)


PRESETS = {
    "smoke": lambda: _run("smoke", NoisedTextVAEConfig(embed_size=16, encoder_hidden=16,
                                                       decoder_hidden=16, latent_size=4),
                          DataConfig(train_fraction=0.005, max_vocab=500), TrainConfig(epochs=1),
                          EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40)),
    "cpu": lambda: _run("cpu", NoisedTextVAEConfig(), DataConfig(), TrainConfig(epochs=6),
                        EvalConfig(iw_samples=100, iw_chunk=50)),
    "paper": lambda: _run("paper", NoisedTextVAEConfig(), DataConfig(),
                          TrainConfig(epochs=40, early_stop_patience=5),
                          EvalConfig(iw_samples=500, iw_chunk=100)),
}

VARIANT = Variant(
    name=NAME, description=f"LSTM-VAE (Bowman sizes), unigram noising of decoder inputs, γ = {GAMMA}, "
                          "KL weight 1: the benchmark's noising row (no paper number)",
    model_config=NoisedTextVAEConfig, build=build, presets=dict(PRESETS), benchmark=True,
    in_paper_table=False)

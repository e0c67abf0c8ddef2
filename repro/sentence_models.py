"""The shared sentence models: an LSTM VAE whose parts are swappable, and an LSTM language model.

Papers either configure these (Bowman 2016 is the TextVAE with a logistic KL schedule and word
dropout) or subclass them to swap one part (an IAF posterior, a dilated-CNN decoder, a flow
prior) while keeping the loss assembly and the evaluation interface.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from repro.config import FreeBitsConfig, KLScheduleConfig, ModelConfig, bounded
from repro.data.noise import word_dropout
from repro.model import LanguageModel, LatentVariableModel
from repro.nn.cnn import DilatedCNNDecoder
from repro.nn.distributions import DiagonalGaussian, StandardNormal
from repro.nn.lstm import LSTMDecoder, LSTMEncoder


@dataclass
class TextVAEConfig(ModelConfig):
    shared_sizes = {"embed_size": "embed_size", "encoder_hidden": "encoder_hidden",
                    "decoder_hidden": "decoder_hidden", "latent_size": "latent_size"}
    embed_size: int = bounded(353, lo=1)
    encoder_hidden: int = bounded(191, lo=1)
    decoder_hidden: int = bounded(191, lo=1)
    latent_size: int = bounded(13, lo=1)
    z_mode: str = bounded("init", choices=("init", "input", "both"))
    decoder_dropout: float = bounded(0.0, lo=0.0, hi=1.0)
    word_keep_rate: float = bounded(1.0, lo=0.0, hi=1.0)   # 0: inputless decoder (kept at eval)
    # Every parameter U(-init_range, init_range), then the embeddings U(-embed_init_range, ...)
    # (He et al. 2019's code: 0.01 and 0.1); 0 keeps PyTorch's initialisation.
    init_range: float = bounded(0.0, lo=0.0)
    embed_init_range: float = bounded(0.0, lo=0.0)
    kl: KLScheduleConfig = field(default_factory=KLScheduleConfig)
    free_bits: FreeBitsConfig = field(default_factory=FreeBitsConfig)


@dataclass
class LSTMLMConfig(ModelConfig):
    shared_sizes = {"embed_size": "embed_size", "decoder_hidden": "hidden_size"}
    embed_size: int = bounded(353, lo=1)
    hidden_size: int = bounded(191, lo=1)
    num_layers: int = bounded(1, lo=1)
    dropout: float = bounded(0.0, lo=0.0, hi=1.0)
    word_keep_rate: float = bounded(1.0, lo=0.0, hi=1.0)
    init_range: float = bounded(0.0, lo=0.0)         # as in `TextVAEConfig`
    embed_init_range: float = bounded(0.0, lo=0.0)


def init_uniform(module: nn.Module, init_range: float, embed_init_range: float) -> None:
    """Every parameter of `module` U(-init_range, init_range), then every embedding table
    U(-embed_init_range, embed_init_range) (He et al. 2019's `uniform_initializer(0.01)` and
    `(0.1)`, biases included); a range of 0 leaves those parameters as they are."""
    with torch.no_grad():
        if init_range > 0:
            for parameter in module.parameters():
                parameter.uniform_(-init_range, init_range)
        if embed_init_range > 0:
            for part in module.modules():
                if isinstance(part, nn.Embedding):
                    part.weight.uniform_(-embed_init_range, embed_init_range)


class DecoderInputs:
    """Word dropout on the decoder's history: at train time at `keep_rate`, and always when the
    keep rate is 0, since the inputless decoder is part of the model, not a regulariser."""

    def __init__(self, keep_rate: float, vocab):
        self.keep_rate, self.unk = keep_rate, vocab.unk
        self.protected = (vocab.pad, vocab.bos, vocab.eos)

    def __call__(self, inputs: torch.Tensor, training: bool) -> torch.Tensor:
        if training or self.keep_rate == 0.0:
            return word_dropout(inputs, self.keep_rate, self.unk, self.protected)
        return inputs


class TextVAE(LatentVariableModel):
    """LSTM encoder -> diagonal Gaussian q(z|x); N(0, I) prior; z-conditioned LSTM decoder."""

    def __init__(self, cfg: TextVAEConfig, vocab):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.encoder = LSTMEncoder(len(vocab), cfg.embed_size, cfg.encoder_hidden, cfg.latent_size)
        self.decoder = LSTMDecoder(len(vocab), cfg.embed_size, cfg.decoder_hidden, cfg.latent_size,
                                   cfg.z_mode, dropout=cfg.decoder_dropout)
        self.decoder_inputs = DecoderInputs(cfg.word_keep_rate, vocab)
        self._prior = StandardNormal((cfg.latent_size,))
        init_uniform(self, cfg.init_range, cfg.embed_init_range)

    def posterior(self, batch) -> DiagonalGaussian:
        mu, logvar = self.encoder(batch.targets, batch.num_targets)
        return DiagonalGaussian(mu, logvar)

    def prior(self, batch) -> StandardNormal:
        return self._prior

    def log_likelihood(self, batch, z):
        inputs = self.decoder_inputs(batch.inputs, self.training)
        return self.decoder.log_likelihood(inputs, batch.targets, batch.target_mask, z)


class LSTMLM(LanguageModel):
    """The no-latent baseline: an LSTM language model over each sentence."""

    def __init__(self, cfg: LSTMLMConfig, vocab):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.decoder = LSTMDecoder(len(vocab), cfg.embed_size, cfg.hidden_size, 1, "none",
                                   num_layers=cfg.num_layers, dropout=cfg.dropout)
        self.decoder_inputs = DecoderInputs(cfg.word_keep_rate, vocab)
        init_uniform(self, cfg.init_range, cfg.embed_init_range)

    def log_likelihood(self, batch, z=None):
        inputs = self.decoder_inputs(batch.inputs, self.training)
        return self.decoder.log_likelihood(inputs, batch.targets, batch.target_mask, None)


class CNNLM(LanguageModel):
    """A dilated causal CNN language model (no z): Yang 2017's CNN-LM rows and Chen 2017's
    window-limited "unconditional decoder". `cfg` needs embed_size, hidden_size, bottleneck,
    dilations, kernel_size and dropout."""

    def __init__(self, cfg, vocab):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.decoder = DilatedCNNDecoder(len(vocab), cfg.embed_size, cfg.hidden_size,
                                         cfg.bottleneck, cfg.dilations, cfg.kernel_size,
                                         dropout=cfg.dropout)

    def log_likelihood(self, batch, z=None):
        return self.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask, None)

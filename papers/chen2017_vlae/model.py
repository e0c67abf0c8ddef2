"""Chen et al. 2017, VLAE: an autoregressive-flow (AF) prior, and a decoder restricted to a local
window so that only global structure has to pass through z.

Models. `ImageVLAE` (binary MNIST): convolutional encoder -> diagonal Gaussian (optionally IAF)
q(z|x); prior N(0, I) or AF; decoder factorised Bernoulli or a local PixelCNN on the image and a
feature map of z. `TextVLAE` (PTB, the suite's adaptation): LSTM encoder; prior N(0, I) or AF;
decoder an LSTM (unrestricted history) or a causal CNN that sees only the last w tokens.
`PixelCNNLM` and the core `CNNLM` are the local decoders without z (the "unconditional decoder").
All latent models train on the single-sample negative ELBO; the evaluation is the suite's.

Implementation details (what we do; where the paper, its App. A, says so; the paper has no
official code):

- AF prior (`repro.nn.priors.AFPrior`): eps = f(z), eps_i = z_i - m_i(z_<i), one parallel MADE
  pass per step for the density, d sequential passes per step for sampling (the paper: density
  evaluation is parallel, sampling sequential). On the PixelCNN rows 4 steps, each a MADE with
  two hidden layers of 640 ReLU units, mean-only (the paper: "4 steps, each a 3-layer MADE
  with 640 hidden units and ReLU", mean-only; we read "3-layer" as three weight layers). The
  ordering alternates between steps (ours). A fresh prior is exactly N(0, I) (zero output
  weights, ours).
- With the AF prior the KL has no closed form: training uses the single-sample Monte Carlo
  log q(z|x) - log p(z) at the z the decoder is trained on; the evaluation reports the MC KL
  over `mc_samples` draws and IW-NLL weights with log p(z) from the flow. Gaussian pairs keep
  the analytic KL.
- Local image decoder (`repro.nn.priors.PixelCNNDecoder`): the VAE decoder emits a 28x28x4
  feature map that, with the image, feeds a PixelCNN of 6 masked 3x3 convolutions with 12
  filters in residual blocks, then 4 residual 1x1 blocks (the paper). The masked weights are
  tied (the paper): we read this as one mask-"B" 3x3 layer applied five times after the first,
  mask-"A" layer (`PixelCNNConfig.tied`). The feature map is the Kingma MNIST decoder
  (`repro.nn.conv.BernoulliConvDecoder`) with its last convolution giving 4 maps instead of
  one logit map; it enters the first layer through an unmasked 3x3 convolution (it depends on
  z only), the image through the mask-"A" one. Receptive field: 6 rows up and 6 columns either
  side, causal in raster order. Blocks are pre-activation `h + conv(elu(h))` (ours: the paper
  gives no block internals; ELU as the rest of the IAF-paper network).
- Encoder and factorised decoder: the IAF paper's MNIST ResNet VAE (the paper), i.e. Kingma's
  `repro.nn.conv` parts in that paper's App. B layout (three stride-2 residual blocks of
  16/32/32 maps with a stride-1 block between each two, convolutional shortcuts, 450 units),
  weight normalisation and data-dependent initialisation. Latent dimension 64 on the PixelCNN
  rows (the paper).
- The factorised-decoder rows, the table's "IAF VAE" and "AF VAE": Kingma et al.'s best MNIST
  model (the paper quotes it), i.e. latent 32 and an IAF posterior of 8 steps of 1920 x 1920,
  stabilised as Kingma's presets (weight-normalised MADEs, outputs scaled by 0.1); for "AF
  VAE" that flow moves into the prior, mean-only and without the encoder's context (the paper:
  an "equivalent" AF prior). The Gaussian-prior row is the same model without a flow.
- Free bits on images: 0.01 nats per data dimension (the paper), 7.84 nats an image, in
  Kingma's per-group form: each latent dimension is a group whose batch-mean KL is floored at
  7.84 / d (`pixel_free_bits`; the even split over dimensions is our reading). The loss
  splits the KL over dimensions (`repro.nn.flows.sample_kl_dims`): per coordinate, analytic
  for a Gaussian pair, else each coordinate's own log q and log p terms at the single draw
  (the AF prior's noise term; its log-determinant is zero for the mean-only flow).
- Optimiser: Adamax, rate 0.002, Polyak averaging with alpha = 0.998 (the paper), the averaged
  weights validated, selected and tested (`repro.averaging`).
- Text adaptation (docs/papers/chen2017_vlae.md §Substitutes): the window-limited
  decoder is the Yang 2017 causal dilated CNN (`repro.nn.cnn`, shared code) with kernel 2 and
  dilations (1,), (1, 2), (1, 2, 4): it predicts word t from exactly the previous w = 2, 4, 8
  tokens (`<bos>` included); the unrestricted decoder is an LSTM. z is appended to every
  decoder input in both. 32-d z, an AF prior of 2 mean-only steps (2-4 MADE flow steps over a
  32-d z, mean-only; the 320 x 320 MADEs are ours) and an IAF posterior of the same size
  (unstabilised, as recorded). No free bits on text; instead the KL weight rises linearly
  over the first updates, as the suite's other text VAEs (ours); Adam, as the other text rows.
- Qualitative outputs (PTB rows): `repro.generate.write_qualitative` writes samples,
  reconstructions and homotopy, with prior samples drawn from the model's own prior (the AF
  prior sequentially). No image samples are written.
- Evaluation: IW-NLL (K in the presets), negative ELBO, KL, MI over minibatch pools of 32 for
  every row (an IAF posterior's density needs the flow inverted, so the whole-test-set pool is
  out of reach for that row, and MI is comparable only at equal pool size), active units.

Deviations from the paper:
- Training on train only with model selection on valid; the paper's final runs train on
  train + valid (`data.train_on_valid`; `presets.py` says why it is off).
- Batch size 100 (the paper's is not known to us).
- IW-NLL with fewer samples than 4096 in the reduced presets (slightly pessimistic).
- PTB windows: w = 1 of the sweep {1, 2, 4, 8, full} is left out (the shared CNN needs a
  kernel of at least 2, i.e. w >= 2).
- Sizes, epochs, K and evaluation subsets of each scale: see `presets.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from repro.config import ConfigError, FreeBitsConfig, KLScheduleConfig, ModelConfig, bounded
from repro.model import LanguageModel, LatentVariableModel
from repro.sentence_models import CNNLM, TextVAE, TextVAEConfig
from repro.nn.cnn import DilatedCNNDecoder
from repro.nn.distributions import DiagonalGaussian
from repro.nn.flows import IAF, IAFConfig, IAFPosterior
from repro.nn.conv import (SHORTCUTS, BernoulliConvDecoder, ConvEncoder, conv_layout,
                              data_dependent_init, weight_normalise)
from repro.nn.pixelcnn import PixelCNNConfig, PixelCNNDecoder
from repro.nn.priors import AFPriorConfig, make_prior

PIXELS = 28 * 28
FREE_NATS_PER_PIXEL = 0.01                           # the paper: 0.01 nats per data dimension


def pixel_free_bits(latent_size: int) -> FreeBitsConfig:
    """The paper's 0.01 nats per pixel, 7.84 nats an image, in Kingma's per-group form with each
    latent dimension a group: each dimension's batch-mean KL is floored at 7.84 / latent_size."""
    return FreeBitsConfig(variant="kingma_group_batchmean", group_size=1,
                          lam=FREE_NATS_PER_PIXEL * PIXELS / latent_size)


@dataclass
class ImageVLAEConfig(ModelConfig):
    latent_size: int = bounded(64, lo=1)
    channels: tuple[int, ...] = (16, 32, 32)         # encoder / VAE-decoder stages
    blocks_per_stage: int = bounded(1, lo=1)
    between_strided: int = bounded(0, lo=0)          # as Kingma's `ImageVAEConfig`
    shortcut: str = bounded("projection", choices=SHORTCUTS)
    hidden_size: int = bounded(450, lo=1)            # encoder features; the IAF context
    weight_norm: bool = True
    decoder: str = bounded("factorised", choices=("factorised", "pixelcnn"))
    pixelcnn: PixelCNNConfig = field(default_factory=PixelCNNConfig)
    prior: AFPriorConfig = field(default_factory=AFPriorConfig)
    iaf: IAFConfig = field(default_factory=IAFConfig)
    kl: KLScheduleConfig = field(default_factory=KLScheduleConfig)
    # 0.01 nats per pixel over the 64 latent dimensions (`pixel_free_bits`).
    free_bits: FreeBitsConfig = field(default_factory=lambda: pixel_free_bits(64))


@dataclass
class PixelCNNLMConfig(ModelConfig):
    pixelcnn: PixelCNNConfig = field(default_factory=lambda: PixelCNNConfig(feature_maps=0))


@dataclass
class TextVLAEConfig(TextVAEConfig):
    # `decoder_hidden` (inherited) is the LSTM's size or the CNN's channel width.
    decoder: str = bounded("lstm", choices=("lstm", "cnn"))
    bottleneck: int = bounded(128, lo=1)
    dilations: tuple[int, ...] = (1,)
    kernel_size: int = bounded(2, lo=2)              # window w = 1 + (k - 1) * sum(dilations)
    prior: AFPriorConfig = field(default_factory=AFPriorConfig)
    iaf: IAFConfig = field(default_factory=IAFConfig)


@dataclass
class LocalTextLMConfig(ModelConfig):
    embed_size: int = bounded(256, lo=1)
    hidden_size: int = bounded(256, lo=1)            # CNN channels
    bottleneck: int = bounded(128, lo=1)
    dilations: tuple[int, ...] = (1, 2)
    kernel_size: int = bounded(2, lo=2)
    dropout: float = bounded(0.0, lo=0.0, hi=1.0)


class ImageVLAE(LatentVariableModel):
    """Conv encoder -> Gaussian (+ IAF) q(z|x); N(0, I) or AF prior; factorised or PixelCNN decoder."""

    def __init__(self, cfg: ImageVLAEConfig):
        super().__init__()
        if cfg.decoder == "pixelcnn" and not cfg.pixelcnn.feature_maps:
            raise ConfigError("model.pixelcnn.feature_maps=0 would cut z off the PixelCNN decoder;"
                              " use the unconditional variant (PixelCNNLMConfig) for that")
        self.cfg = cfg
        self.encoder, self.decoder = ConvEncoder(**conv_layout(cfg)), BernoulliConvDecoder(**conv_layout(cfg))
        self.pixelcnn = None
        if cfg.decoder == "pixelcnn":
            # The VAE decoder's last convolution gives the PixelCNN's feature maps, not logits.
            self.decoder.to_logits = nn.Conv2d(cfg.channels[0], cfg.pixelcnn.feature_maps, 3, 1, 1)
            self.pixelcnn = PixelCNNDecoder(cfg.pixelcnn)
        if cfg.weight_norm:
            weight_normalise(self.encoder)
            weight_normalise(self.decoder)
        self.flow = IAF.from_config(cfg.iaf, cfg.latent_size, cfg.hidden_size) if cfg.iaf.steps else None
        self._prior = make_prior(cfg.prior, cfg.latent_size)

    def posterior(self, batch):
        mu, logvar, features = self.encoder(batch.x)
        base = DiagonalGaussian(mu, logvar)
        return base if self.flow is None else IAFPosterior(base, features, self.flow)

    def prior(self, batch):
        return self._prior

    def log_likelihood(self, batch, z: torch.Tensor) -> torch.Tensor:
        if self.pixelcnn is None:
            return self.decoder.log_likelihood(batch.x, z)
        return self.pixelcnn.log_likelihood(batch.x, self.decoder.logits(z))


class PixelCNNLM(LanguageModel):
    """The local PixelCNN without z (the paper's "unconditional decoder"); exact likelihood."""

    def __init__(self, cfg: PixelCNNLMConfig):
        super().__init__()
        self.cfg = cfg
        self.pixelcnn = PixelCNNDecoder(cfg.pixelcnn)

    def log_likelihood(self, batch, z=None) -> torch.Tensor:
        return self.pixelcnn.log_likelihood(batch.x, None)


class TextVLAE(TextVAE):
    """`TextVAE` with an LSTM or window-limited CNN decoder, an N(0, I) or AF prior, and an
    optional IAF posterior reading the encoder's last LSTM state."""

    def __init__(self, cfg: TextVLAEConfig, vocab):
        if cfg.z_mode != "input":
            raise ConfigError(f"model.z_mode={cfg.z_mode!r}: both decoders take z at every input"
                              " (z_mode='input'), so the LSTM and CNN rows differ only in context")
        super().__init__(cfg, vocab)
        if cfg.decoder == "cnn":
            self.decoder = DilatedCNNDecoder(
                len(vocab), cfg.embed_size, cfg.decoder_hidden, cfg.bottleneck, cfg.dilations,
                cfg.kernel_size, cfg.latent_size, dropout=cfg.decoder_dropout)
        self.flow = IAF.from_config(cfg.iaf, cfg.latent_size, cfg.encoder_hidden) if cfg.iaf.steps else None
        self._prior = make_prior(cfg.prior, cfg.latent_size)

    def posterior(self, batch):
        if self.flow is None:
            return super().posterior(batch)
        encoder = self.encoder
        out, _ = encoder.lstm(encoder.embed(batch.targets))
        # The state at the last real token, as `LSTMEncoder` reads it; also the IAF context.
        last = out[torch.arange(out.shape[0], device=out.device), batch.num_targets - 1]
        mu, logvar = encoder.to_gaussian(last).float().chunk(2, -1)
        return IAFPosterior(DiagonalGaussian(mu, logvar), last, self.flow)


def build(cfg, corpus):
    m = cfg.model
    if isinstance(m, TextVLAEConfig):
        return TextVLAE(m, corpus.vocab)
    if isinstance(m, LocalTextLMConfig):
        return CNNLM(m, corpus.vocab)
    if isinstance(m, PixelCNNLMConfig):
        return PixelCNNLM(m)
    model = ImageVLAE(m)
    if m.weight_norm:
        batch = next(iter(corpus.batches("train", cfg.data.batch_size, shuffle=True, seed=cfg.seed)))
        data_dependent_init(model, lambda: model.loss(batch, 0))
    return model

"""Kingma et al. 2016: an inverse autoregressive flow (IAF) posterior, and free bits.

Two models share the method: `ImageVAE`, the paper's convolutional VAE for binary MNIST, and
`IAFTextVAE`, the suite's LSTM sentence VAE with the same posterior (an adaptation: the paper
has no text experiment). Both build q(z|x) as the encoder's diagonal Gaussian followed by
`iaf.steps` IAF steps (`repro.nn.flows`; 0 steps is the Gaussian posterior) and train on the
single-sample ELBO with Kingma's free bits.

Implementation details (what we do; where the paper, its App. B, or the official code
`openai/iaf` says so):

- IAF step, gated form: [m, s] = 0.1 MADE(z, h) + [0, 2], sigma = sigmoid(s),
  z <- sigma z + (1 - sigma) m, log q -= sum log sigma (the paper's numerically stable form;
  `iaf.update="gated"`). The 0.1 on the MADE's outputs is the official code's
  (`iaf.output_scale`); it applies it to its affine form (z - m) / exp(s), which we do not use.
- Each step's autoregressive network is a MADE with two hidden layers of the row's width, ELU
  (the paper: "a 2-layer MADE"; ELU as the rest of the network), the context entering the
  first hidden layer (as the official `ar_multiconv2d` adds it), its masked layers
  weight-normalised (`iaf.weight_norm`, as the official code's autoregressive layers) and
  initialised from the first batch with the rest of the network. The ordering is reversed
  between steps (the paper), by alternating the MADE's degree order rather than permuting z.
- Context h: the encoder's last hidden features -- the 450-unit fully connected layer on
  MNIST, the LSTM's last state on text. Without it the flow could not adapt per example.
- Initialisation of a step: output weights zero (with weight norm: output scale g = 0), so
  m = 0 and s = `iaf.gate_bias` = 2, and training starts from a rescaled diagonal Gaussian with
  sigma ~ 0.88 (the paper's advice to start sigma near 1; the numbers are ours).
- log q(z|x) includes the log-determinant everywhere: the training KL, the evaluation's MC KL,
  IW-NLL weights and the MI pool densities.
- Training KL: analytic per dimension for the Gaussian rows; for IAF rows the single-sample
  Monte Carlo log q(z|x) - log p(z) at the z the decoder is trained on, split over dimensions
  as the official code does (`repro.nn.flows.mc_kl_per_dim`: per-element logqs - logps).
- Free bits: `FreeBitsConfig(variant="kingma_group_batchmean", lam, group_size=1)` -- each
  latent dimension is a group (the paper: single dimensions when nothing is shared; one 32-d
  vector shares nothing), its KL averaged over the minibatch, then floored at lambda (App. C.8,
  `tf_train.py`). `train/kl` and every evaluation report the unclamped KL.
- MNIST encoder/decoder (`repro.nn.conv`, App. B): three stride-2 residual blocks of 16, 32
  and 32 maps with a stride-1 block between each two (strides 2, 1, 2, 1, 2), the resampling
  blocks' shortcuts strided 3x3 convolutions, then a 450-unit fully connected layer; a mirrored
  decoder whose up-sampling blocks and their shortcuts are stride-2 transposed convolutions;
  ELU; weight normalisation with data-dependent initialisation on the first training batch;
  Bernoulli pixels; z of 32 dimensions; prior N(0, I).
- Optimiser: Adamax, rate 0.002, PyTorch's betas (0.9, 0.999) = the official code's; Polyak
  averaging of the weights with decay 0.999, the averaged weights validated, selected and
  tested (`repro.averaging`; the official code evaluates its moving average).
- Text model: `repro.sentence_models.TextVAE` (LSTM encoder and decoder, z via the decoder's initial
  state), 32-d z, no KL annealing and no word dropout, so the rows differ only in the posterior
  and the free bits.
- Objective: the single-sample ELBO (the official code's default of one importance sample).
- Evaluation (one protocol for the suite): IW-NLL with K = 128 on MNIST (the paper), the
  negative ELBO, MC KL (100 draws, `evaluate`'s default, recorded as `mc_samples`), AU from two
  independent Monte Carlo posterior means (their covariance; `repro.evaluate`), MI over
  minibatch pools of 32 (`mi_pool="batch"`, every row alike: scoring a flow posterior's density
  inverts the flow, d MADE passes a step, so the suite's default whole-test-set pool, N^2
  inversions, is out of reach on a CPU).

Deviations from the paper (`presets.py` lists each scale's settings):
- Reduced scale in `cpu`: 30 MNIST epochs instead of training to convergence, batch 100
  instead of 16, MADE width 1920 cut to 480 (depth kept); the PTB model at 256 units for 12
  epochs, K = 100. The MNIST block structure and widths, the optimiser and its averaging, the
  IAF stabilisers, K = 128 and the data are those of `paper`.
- Early stopping on the validation ELBO of the averaged weights, training on train only; the
  official code trains on train + valid (`data.train_on_valid`, off here: `presets.py` says why).
- No gradient clipping (none in the official code).
- The residual blocks' internals are ours: two 3x3 convolutions, pre-activation ELU, no 0.1
  residual scale (the official CIFAR code has one); the decoder ends in a 3x3 convolution to
  one logit map.
- The text rows' IAF runs without the stabilisers (their records were made so; `presets.py`).
- The static-MNIST result (-79.88, "deep IAF VAE") is attached to the depth-8 width-1920 row:
  the paper does not give that result's configuration.
- Free-bits lambda sweep over {0, 0.125, 0.25, 0.5, 1} of the paper's {0, ..., 8} (presets.py
  says why), on MNIST and on PTB.
- One seed per row; the paper reports mean and standard deviation over 5 runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from repro.config import FreeBitsConfig, KLScheduleConfig, ModelConfig, bounded
from repro.model import LatentVariableModel
from repro.sentence_models import TextVAE, TextVAEConfig
from repro.nn.distributions import DiagonalGaussian, StandardNormal
from repro.nn.flows import IAF, IAFConfig, IAFPosterior
from repro.nn.conv import (SHORTCUTS, BernoulliConvDecoder, ConvEncoder, conv_layout,
                              data_dependent_init, weight_normalise)


@dataclass
class ImageVAEConfig(ModelConfig):
    latent_size: int = bounded(32, lo=1)
    channels: tuple[int, ...] = (16, 32, 32)           # feature maps per stride-2 stage
    blocks_per_stage: int = bounded(1, lo=1)           # residual blocks per stage (depth)
    # App. B's layout is between_strided=1, shortcut="conv" (`repro.nn.conv`); the defaults
    # are the earlier network, so records written before keep their meaning.
    between_strided: int = bounded(0, lo=0)            # stride-1 blocks between stride-2 ones
    shortcut: str = bounded("projection", choices=SHORTCUTS)
    hidden_size: int = bounded(450, lo=1)              # fully connected layer; the IAF context
    weight_norm: bool = True                           # with data-dependent initialisation
    iaf: IAFConfig = field(default_factory=IAFConfig)
    kl: KLScheduleConfig = field(default_factory=KLScheduleConfig)
    free_bits: FreeBitsConfig = field(default_factory=FreeBitsConfig)


@dataclass
class IAFTextVAEConfig(TextVAEConfig):
    iaf: IAFConfig = field(default_factory=IAFConfig)


class ImageVAE(LatentVariableModel):
    """Convolutional encoder -> Gaussian (+ IAF) q(z|x); N(0, I) prior; Bernoulli conv decoder."""

    def __init__(self, cfg: ImageVAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder, self.decoder = ConvEncoder(**conv_layout(cfg)), BernoulliConvDecoder(**conv_layout(cfg))
        if cfg.weight_norm:
            weight_normalise(self.encoder)
            weight_normalise(self.decoder)
        self.flow = IAF.from_config(cfg.iaf, cfg.latent_size, cfg.hidden_size) if cfg.iaf.steps else None
        self._prior = StandardNormal((cfg.latent_size,))

    def posterior(self, batch):
        mu, logvar, features = self.encoder(batch.x)
        base = DiagonalGaussian(mu, logvar)
        return base if self.flow is None else IAFPosterior(base, features, self.flow)

    def prior(self, batch) -> StandardNormal:
        return self._prior

    def log_likelihood(self, batch, z: torch.Tensor) -> torch.Tensor:
        return self.decoder.log_likelihood(batch.x, z)


class IAFTextVAE(TextVAE):
    """`TextVAE` whose posterior is refined by IAF steps reading the encoder's last LSTM state."""

    def __init__(self, cfg: IAFTextVAEConfig, vocab):
        super().__init__(cfg, vocab)
        self.flow = (IAF.from_config(cfg.iaf, cfg.latent_size, cfg.encoder_hidden)
                     if cfg.iaf.steps else None)

    def posterior(self, batch):
        if self.flow is None:
            return super().posterior(batch)
        encoder, lengths = self.encoder, batch.num_targets
        out, _ = encoder.lstm(encoder.embed(batch.targets))
        # The state at the last real token (as `LSTMEncoder`), which is also the IAF context.
        last = out[torch.arange(out.shape[0], device=out.device), lengths - 1]
        mu, logvar = encoder.to_gaussian(last).float().chunk(2, -1)
        return IAFPosterior(DiagonalGaussian(mu, logvar), last, self.flow)


def build(cfg, corpus):
    if isinstance(cfg.model, IAFTextVAEConfig):
        return IAFTextVAE(cfg.model, corpus.vocab)
    model = ImageVAE(cfg.model)
    if cfg.model.weight_norm:
        batch = next(iter(corpus.batches("train", cfg.data.batch_size, shuffle=True, seed=cfg.seed)))
        data_dependent_init(model, lambda: model.loss(batch, 0))
    return model

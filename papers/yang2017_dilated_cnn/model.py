"""Yang et al. 2017: a text VAE whose decoder is a causal dilated CNN; the decoder's receptive
field sets how much it can model without z, and so how much information the VAE puts in z.

Implementation details (what we do; where the paper card, `shared/papers/yang2017_dilated_cnn.md`,
says so -- every card entry here is tagged "unverified (memory)" unless stated):

- Encoder: one-layer LSTM over the document; its last state gives a diagonal Gaussian q(z|x);
  prior N(0, I); 32-d latent in the `paper` preset (card, architecture table).
- CNN decoder: `repro.nn.cnn.DilatedCNNDecoder`, residual bottleneck blocks 1x1 -> causal
  dilated 1x3 -> 1x1 (card), pre-activation ReLUs and no normalisation (ours: not on the card).
  Dilations SCNN [1, 2, 4], MCNN [1, 2, 4, 8, 16], LCNN [1, 2, 4, 8, 16] x 2, VLCNN
  [1, 2, 4, 8, 16] x 3 (card), i.e. receptive fields of 15 / 63 / 125 / 187 tokens.
- Causality: every dilated convolution is left-padded, no look-ahead (card, pitfalls);
  tested by gradients in tests/test_cnn_decoder.py.
- z in the decoder: concatenated to the word embedding at every position (card), then carried
  to every block by the residual stream. The decoder can also add z to every block directly
  (`z_every_layer`); the presets keep the card's input-only form.
- LSTM-VAE: the same encoder with an LSTM decoder (card: "same encoder"); z enters it the same
  way as the CNN's, appended to every input (`z_mode="input"`, ours: the card does not say).
- LM rows: LSTM-LM (`repro.models.LSTMLM`) and CNN-LM (the CNN decoder without z, one per
  dilation configuration), scored by their exact likelihood.
- "+ init": the encoder is initialised from a pretrained language model (card). We do it
  inside the run: for the first `encoder_init_epochs` epochs the encoder's embedding and LSTM
  are trained as a left-to-right LM (`<bos> w..` -> `w.. <eos>`) through a softmax head used
  only then; afterwards the VAE objective takes over, its KL schedule starting from 0 at the
  first VAE update. `build` turns epochs into updates from the train split's batch count, so
  the switch falls on an epoch boundary and the epoch averages of `train/*` are never mixed.
- KL weight annealed linearly from 0 to 1 (card: "from a small value to 1"); the warm-up length
  is ours (presets). Adam (card); dropout on the decoder (card; the rate is ours), on its
  embeddings and top states; early stopping on the validation ELBO in `paper` (card), and the
  best-validation checkpoint is the one tested.
- Evaluation: the paper's NLL is the single-sample negative ELBO (card: He et al. print it with
  "<="), our `elbo` / `elbo_ppl`; PPL counts `<eos>` (METRICS.md section 3; the card could not
  say whether the paper does). We also report IW-NLL, MI and active units for every latent row.

Deviations from the paper:
- "+ init" is one run with one optimiser: the LM phase lasts a fixed number of epochs instead
  of a separately trained LM to convergence, Adam's moments carry over into the VAE phase, the
  LM head stays in the checkpoint, and validation during the LM epochs scores the VAE bound of
  a still untrained decoder (only checkpoint selection sees it, and the VAE epochs beat it).
- The CNN decoder replaces `TextVAE`'s LSTM decoder after construction, so `decoder_hidden` is
  the CNN's channel width in `CNNVAEConfig` and an unused LSTM is built and dropped at start-up.
- Sizes, schedule lengths, epochs, data and the PTB dilation sets: see `presets.py`.
- The card's "CNN" rows (best CNN configuration, unnamed) are compared with LCNN: see
  `reported.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from repro.config import ConfigError, ModelConfig, bounded
from repro.models import CNNLM, LSTMLM, LSTMLMConfig, TextVAE, TextVAEConfig
from repro.nn.cnn import DilatedCNNDecoder
from repro.nn.text import OutputLayer
from repro.train import updates_per_epoch


@dataclass
class LSTMVAEConfig(TextVAEConfig):
    encoder_init_epochs: int = bounded(0, lo=0)      # "+ init": LM epochs before the VAE's


@dataclass
class CNNVAEConfig(LSTMVAEConfig):
    # `decoder_hidden` (inherited) is the CNN's channel width.
    bottleneck: int = bounded(256, lo=1)
    dilations: tuple[int, ...] = (1, 2, 4)
    kernel_size: int = bounded(3, lo=2)
    z_every_layer: bool = False


@dataclass
class CNNLMConfig(ModelConfig):
    embed_size: int = bounded(512, lo=1)
    hidden_size: int = bounded(512, lo=1)            # channels
    bottleneck: int = bounded(256, lo=1)
    dilations: tuple[int, ...] = (1, 2, 4)
    kernel_size: int = bounded(3, lo=2)
    dropout: float = bounded(0.0, lo=0.0, hi=1.0)


class LSTMVAE(TextVAE):
    """`TextVAE` with the paper's "+ init": the first `init_steps` updates train the encoder's
    embedding and LSTM as a language model, the rest the VAE objective."""

    def __init__(self, cfg: LSTMVAEConfig, vocab, init_steps: int = 0):
        super().__init__(cfg, vocab)
        self.init_steps = init_steps
        # Created from the config alone, so checkpoints load into a model built for evaluation.
        self.encoder_lm_out = (OutputLayer(cfg.encoder_hidden, len(vocab))
                               if cfg.encoder_init_epochs else None)

    def encoder_lm_log_likelihood(self, batch) -> torch.Tensor:
        """log p(x) of the encoder read as an LSTM language model, `(B,)`."""
        hidden, _ = self.encoder.lstm(self.encoder.embed(batch.inputs))
        return self.encoder_lm_out(hidden, batch.targets, batch.target_mask)

    def loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        if step < self.init_steps:
            nll = -self.encoder_lm_log_likelihood(batch).mean()
            return {"loss": nll, "encoder_lm_nll": nll}
        return super().loss(batch, step - self.init_steps)


class CNNVAE(LSTMVAE):
    """The LSTM-VAE with its decoder swapped for a causal dilated CNN."""

    def __init__(self, cfg: CNNVAEConfig, vocab, init_steps: int = 0):
        if cfg.z_mode != "input":
            raise ConfigError(f"model.z_mode={cfg.z_mode!r}: the CNN decoder takes z at its "
                              "input (z_mode='input'); set z_every_layer to add it to every block")
        super().__init__(cfg, vocab, init_steps)
        self.decoder = DilatedCNNDecoder(
            len(vocab), cfg.embed_size, cfg.decoder_hidden, cfg.bottleneck, cfg.dilations,
            cfg.kernel_size, cfg.latent_size, cfg.z_every_layer, cfg.decoder_dropout)




def build(cfg, corpus):
    m = cfg.model
    if isinstance(m, CNNLMConfig):
        return CNNLM(m, corpus.vocab)
    if isinstance(m, LSTMLMConfig):
        return LSTMLM(m, corpus.vocab)
    model_cls = CNNVAE if isinstance(m, CNNVAEConfig) else LSTMVAE
    return model_cls(m, corpus.vocab, m.encoder_init_epochs * updates_per_epoch(cfg, corpus))

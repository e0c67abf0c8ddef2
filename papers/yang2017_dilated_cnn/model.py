"""Yang et al. 2017: a text VAE whose decoder is a causal dilated CNN; the decoder's receptive
field sets how much it can model without z, and so how much information the VAE puts in z.

Implementation details (what we do; where the paper's facts, `docs/papers/yang2017_dilated_cnn.md`
("docs" below), say so -- every entry cited here is tagged "unverified (memory)" unless stated):

- Encoder: one-layer LSTM over the document; its last state gives a diagonal Gaussian q(z|x);
  prior N(0, I); 32-d latent in the `paper` preset (docs §Architecture).
- CNN decoder: `repro.nn.cnn.DilatedCNNDecoder`, residual bottleneck blocks 1x1 -> causal
  dilated 1x3 -> 1x1 (docs), pre-activation ReLUs and no normalisation (ours: not in the docs).
  Dilations SCNN [1, 2, 4], MCNN [1, 2, 4, 8, 16], LCNN [1, 2, 4, 8, 16] x 2, VLCNN
  [1, 2, 4, 8, 16] x 3 (docs), i.e. receptive fields of 15 / 63 / 125 / 187 tokens.
- Causality: every dilated convolution is left-padded, no look-ahead (docs §Pitfalls);
  tested by gradients in tests/test_cnn_decoder.py.
- z in the decoder: concatenated to the word embedding at every position (docs), then carried
  to every block by the residual stream. The decoder can also add z to every block directly
  (`z_every_layer`); the presets keep the documented input-only form.
- LSTM-VAE: the same encoder with an LSTM decoder (docs: the same encoder); z enters it the same
  way as the CNN's, appended to every input (`z_mode="input"`, ours: the docs do not say).
- LM rows: LSTM-LM (`repro.sentence_models.LSTMLM`) and CNN-LM (the CNN decoder without z, one per
  dilation configuration), scored by their exact likelihood.
- "+ init": the encoder is initialised from a separately trained language model (the paper). The
  LM is its own run, the `lstm-lm` row of the same preset and seed (`model.encoder_init_lm`),
  trained to its best validation checkpoint like every row; a "+ init" run starts by copying
  that checkpoint's embedding and LSTM into its encoder (`initialise_encoder`, before the first
  update), while the Gaussian head and the decoder start from their random initialisation and
  the optimiser from a fresh state. The LM's sizes match the encoder's in every preset, and its
  vocabulary is checked to be the run's. Without that finished run the "+ init" run stops at
  once and names the `repro train` command to run first.
- KL weight annealed linearly to 1 (the paper, from memory: "from a small value to 1"); the
  start and length are the presets' choices. Adam (docs §Training); dropout on the decoder
  (docs; the rate is ours), on its embeddings and top states; early stopping on the validation
  ELBO in `paper` (docs), and the best-validation checkpoint is the one tested.
- Evaluation: the paper's NLL is the single-sample negative ELBO (docs §Evaluation: He et al.
  print it with "<="), our `elbo` / `elbo_ppl`; PPL counts `<eos>` (docs/metrics.md §3;
  whether the paper does is not retrieved). We also report IW-NLL, MI and active units for every latent row.

Deviations from the paper:
- "+ init" LM: trained for the `lstm-lm` row's epochs (with its early stopping in `paper`),
  where the paper says only "pretrained"; its dropout is the LM row's.
- The CNN decoder replaces `TextVAE`'s LSTM decoder after construction, so `decoder_hidden` is
  the CNN's channel width in `CNNVAEConfig` and an unused LSTM is built and dropped at start-up.
- Sizes, schedule lengths, epochs, data and the PTB dilation sets: see `presets.py`.
- The paper's "CNN" rows (best CNN configuration, unnamed; docs §Results) are compared with
  LCNN: see `reported.py`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from repro.config import ConfigError, ModelConfig, bounded
from repro.sentence_models import CNNLM, LSTMLM, LSTMLMConfig, TextVAE, TextVAEConfig
from repro.nn.cnn import DilatedCNNDecoder
from repro.checkpoints import load_parts_from_run, required_run_dir


@dataclass
class LSTMVAEConfig(TextVAEConfig):
    # "+ init": the variant of this paper whose finished run (same runs folder, preset and seed)
    # gives the encoder its embedding and LSTM; None starts the encoder from scratch.
    encoder_init_lm: str | None = None
    # Removed: "+ init" once trained its LM for this many epochs inside the VAE's own run. Kept,
    # fixed at 0, so records of the rows that never used it (0) still read as today's config,
    # while a record of the old in-run "+ init" (3) reads as another config, never as today's.
    encoder_init_epochs: int = bounded(0, lo=0, hi=0)


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


class CNNVAE(TextVAE):
    """The LSTM-VAE with its decoder swapped for a causal dilated CNN."""

    def __init__(self, cfg: CNNVAEConfig, vocab):
        if cfg.z_mode != "input":
            raise ConfigError(f"model.z_mode={cfg.z_mode!r}: the CNN decoder takes z at its "
                              "input (z_mode='input'); set z_every_layer to add it to every block")
        super().__init__(cfg, vocab)
        self.decoder = DilatedCNNDecoder(
            len(vocab), cfg.embed_size, cfg.decoder_hidden, cfg.bottleneck, cfg.dilations,
            cfg.kernel_size, cfg.latent_size, cfg.z_every_layer, cfg.decoder_dropout)


def build(cfg, corpus):
    m = cfg.model
    if isinstance(m, CNNLMConfig):
        return CNNLM(m, corpus.vocab)
    if isinstance(m, LSTMLMConfig):
        return LSTMLM(m, corpus.vocab)
    return (CNNVAE if isinstance(m, CNNVAEConfig) else TextVAE)(m, corpus.vocab)


def encoder_init_run(cfg, run_dir: Path) -> Path:
    """The folder of the LM run that "+ init" reads: `model.encoder_init_lm` at `cfg`'s preset
    and seed, in the runs folder that holds `run_dir`."""
    return required_run_dir(cfg, run_dir, cfg.model.encoder_init_lm)


def initialise_encoder(model: TextVAE, cfg, run_dir: Path) -> None:
    """`Variant.initialise` of the "+ init" rows: copy the embedding and LSTM of the finished
    LM run (`encoder_init_run`), from its best-validation checkpoint, into `model.encoder`.
    The LM's `decoder.embed` / `decoder.lstm` are the encoder's `embed` / `lstm` in shape and
    role (a left-to-right LSTM over the sentence's words); everything else keeps its init."""
    if cfg.model.encoder_init_lm is not None:
        load_parts_from_run(model, cfg, run_dir, cfg.model.encoder_init_lm,
                            {"encoder.embed": "decoder.embed", "encoder.lstm": "decoder.lstm"})

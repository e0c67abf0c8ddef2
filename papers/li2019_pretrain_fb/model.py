"""Li et al. 2019: pretrain the encoder as an autoencoder, reset the decoder, then train the VAE
with KL annealing and free bits.

The model is the shared `TextVAE` in He et al.'s configuration; the method is in how each row
is trained. Implementation details (docs/papers/li2019_pretrain_fb.md; "code" is the official
`bohanli/vae-pretraining-encoder`):

- Encoder: one-layer LSTM with its own embedding; its last state gives μ and log σ² of a
  diagonal Gaussian q(z|x); prior N(0, I). (code, `enc_lstm.py`)
- Decoder: one-layer LSTM; z is concatenated to every input embedding and also sets the initial
  state, c0 = W z, h0 = tanh c0 (`z_mode="both"`); dropout 0.5 on the input embeddings and on
  the LSTM outputs (`decoder_dropout`). (code, `dec_lstm.py`, `config_ptb.py`)
- Sizes 256 / 256 / 256 / 32 for PTB. (code, `config_ptb.py`)
- Pretraining (`ae-pretrain`): the same model at KL weight 0 (`KLScheduleConfig(kind="constant",
  max_weight=0)`), still sampling z; its best checkpoint is the one with the lowest validation
  reconstruction (`train.select_by="rec"`), since its KL grows unchecked. (README, `--beta 0`;
  code, `text_beta.py`)
- Fine-tuning (`pretrain-fb-*`): the encoder (embedding, LSTM, output map) is copied from the
  best checkpoint of the finished `ae-pretrain` run of the same preset and seed
  (`initialise_encoder`, before the first update); the decoder is not copied, so it is the fresh
  decoder of this run's seed, as `vae-anneal-fb` starts with. Fresh optimiser. (README,
  `--reset_dec`; the exact fresh values are ours, the code draws new ones)
- KL weight: linear from 0 to 1 (`--kl_start 0 --warm_up 10`: 10 epochs in `paper`).
- Free bits, target λ = 8 nats for d = 32 (`--target_kl 8`), each a mask on the KL term
  (`repro.objectives.free_bits_kl`): `--fb 1` per sentence (`li_example_total`, λ), `--fb 2` per
  sentence and dimension (`li_example_dim`, λ / d), `--fb 3` on the batch mean
  (`li_batchmean`, λ). (code, `text_anneal_fb.py`)
- Initialisation: every parameter uniform ±0.01, then the embeddings uniform ±0.1
  (`init_range`, `embed_init_range`). (code, `uniform_initializer`)
- Biases: the core's layers have them in the z -> state map, the encoder's output map and the
  softmax layer; the code's have none there.
- Evaluation (one protocol for every paper): IW-NLL and PPL, ELBO and reconstruction, KL
  (unclamped), MI over the whole test set, active units. (code: K = 500, MI over the test set,
  AU threshold 0.01)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from repro.checkpoints import load_parts_from_run
from repro.sentence_models import TextVAE, TextVAEConfig


@dataclass
class LiVAEConfig(TextVAEConfig):
    # The row whose finished run (same preset and seed) supplies the encoder; None: a fresh one.
    pretrained_encoder: str | None = None


def build(cfg, corpus) -> TextVAE:
    return TextVAE(cfg.model, corpus.vocab)


def initialise_encoder(model: TextVAE, cfg, run_dir: Path) -> None:
    """`Variant.initialise` of the pretrained rows: the encoder from the best checkpoint of the
    `cfg.model.pretrained_encoder` run; the decoder keeps this run's fresh initialisation."""
    load_parts_from_run(model, cfg, run_dir, cfg.model.pretrained_encoder, {"encoder": "encoder"})

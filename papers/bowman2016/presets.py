"""Presets for Bowman et al. 2016 on PTB: `smoke` (seconds), `cpu` (2 cores), `paper` (its settings).

Sizes 353 / 191 / 13 (embedding / LSTM / latent) are a third-party PTB script's values that look
like the paper's tuned ones; nothing ties them to the paper (unverified reprint). The paper's
optimiser, learning rate, batch size and stopping rule were not retrieved, so Adam 1e-3, batch
32, gradient clipping 5 and best-validation-ELBO checkpointing are our choices, as is stopping
after 5 epochs without a better validation bound (`paper`, at most 40 epochs).

Word dropout and annealing, the two settings the paper tuned:
- `WORD_KEEP_RATE = 0.62` is the same script's value. The script calls it a dropout rate, while
  the paper speaks of a keep rate (the fraction of history words the decoder still sees), so the
  number may equally mean keep 0.38. The evidence does not settle it.
- The annealing is a logistic curve in the update step, slope k = 0.0025, midpoint x0 = 2,500
  (the values of timbmg/Sentence-VAE, a re-implementation; the paper tuned its own rate).
- Both are therefore settled by a validation sweep at the `cpu` scale (keep rate 0.38 and 0.62,
  x0 = 1,300 / 2,500 / 5,000 updates, seed 0, records under `results/records/bowman2016/` with
  their overrides in the table). The selection rule, fixed before any of its runs finished:
  among the settings whose validation KL at the tested epoch is at least 1 nat (the paper kept
  only VAEs that put non-trivial information in z), the lowest validation negative ELBO.
- Outcome (seed 0, 6 epochs, commit 22942af; validation on the first 500 sentences): keep 0.62
  with x0 = 2,500 (objective 120.73, KL 2.86). Keep 0.62 with x0 = 1,300 scored 120.68 but put
  only 0.82 nats in z, so the rule excludes it; x0 = 5,000 gave 121.24; every keep-0.38 point was
  2-3 nats worse (122.76-123.88). So 0.62 is used as a keep rate (which reading the script meant
  stays unknown), and both values above stand for `cpu` and `paper` (`tests/test_bowman2016.py` checks the preset against the sweep's records). Every
  point was still improving at its last epoch, and one seed cannot tell 2,500 from 5,000 apart
  with confidence: the margin is half a nat.
- Decoder dropout (He et al. 2019 and Li et al. 2019 use it on PTB) is available as the named
  option `model.decoder_dropout`; it is 0 here because Bowman reports no such dropout.

Reductions in `cpu`: 6 epochs instead of training to convergence, and IW-NLL with K = 100
importance samples instead of 500 (`repro eval RUN --set eval.iw_samples=500` re-scores a run).
With x0 = 2,500 the KL weight passes 0.99 after about 4,340 of the 7,890 updates, so only about
2.7 of the 6 epochs train at full KL weight; the `paper` preset's longer training does not have
this handicap.
"""
from __future__ import annotations

from dataclasses import replace

from repro.config import DataConfig, EvalConfig, KLScheduleConfig, OptimConfig, RunConfig, TrainConfig
from repro.sentence_models import LSTMLMConfig, TextVAEConfig

ANNEALING = KLScheduleConfig(kind="logistic", logistic_k=0.0025, logistic_x0=2500)
WORD_KEEP_RATE = 0.62

MODELS = {
    "rnnlm": LSTMLMConfig(),
    "vae": TextVAEConfig(),
    "vae-anneal-worddrop": TextVAEConfig(word_keep_rate=WORD_KEEP_RATE, kl=ANNEALING),
    "rnnlm-inputless": LSTMLMConfig(word_keep_rate=0.0),
    "vae-inputless": TextVAEConfig(word_keep_rate=0.0, kl=ANNEALING),
}


def _run(variant: str, preset: str, data: DataConfig, train: TrainConfig, eval: EvalConfig) -> RunConfig:
    return RunConfig(paper="bowman2016", variant=variant, preset=preset, model=MODELS[variant],
                     data=data, optim=OptimConfig(lr=1e-3, grad_clip=5.0), train=train, eval=eval)


def smoke(variant: str) -> RunConfig:
    small = {"embed_size": 16, "latent_size": 4}
    small.update({"hidden_size": 16} if "rnnlm" in variant else {"encoder_hidden": 16, "decoder_hidden": 16})
    cfg = _run(variant, "smoke", DataConfig(train_fraction=0.005, max_vocab=500),
               TrainConfig(epochs=1), EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40))
    cfg.model = replace(cfg.model, **{k: v for k, v in small.items() if hasattr(cfg.model, k)})
    return cfg


def cpu(variant: str) -> RunConfig:
    return _run(variant, "cpu", DataConfig(), TrainConfig(epochs=6),
                EvalConfig(iw_samples=100, iw_chunk=50))


def paper(variant: str) -> RunConfig:
    return _run(variant, "paper", DataConfig(), TrainConfig(epochs=40, early_stop_patience=5),
                EvalConfig(iw_samples=500, iw_chunk=100))


PRESETS = {"smoke": smoke, "cpu": cpu, "paper": paper}

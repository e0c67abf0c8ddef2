"""Presets for Zhao et al. 2017: `smoke` (seconds), `cpu` (2 cores, DailyDialog), `paper` (GPU, SwDA).

`paper` is the released code's configuration (all verified from `config_utils.py`:
docs/papers/zhao2017_kgcvae.md §Architecture, §Training):
Switchboard, vocabulary 10,000, utterances cut to 40 words, 10 context turns, sizes 200 / 300 x 2 /
600 / 400 / latent 200, Adam 1e-3, batch 30 (validation 60), gradient clipping 5, KL weight
min(step / 10,000, 1). Its stopping rule is approximated: the code validates every 3,000 updates
for at most 60 rounds and stops when its patience (at least 10 rounds, raised to twice the
round count on a 0.4 % improvement) runs out; we validate every epoch (6,864 updates on SwDA at
batch 30, docs/papers/zhao2017_kgcvae.md §Training), so `max_steps` = 60 x 3,000 = 180,000
(27 epochs) and early-stopping patience 5 epochs (about 10 rounds of 3,000). The SwDA train split is not in the shared store: run
`repro data fetch swda` first (the valid and test splits are here). IW-NLL with K = 500.

`cpu` runs on DailyDialog (`data.substitute_for="swda"`; 4 dialog acts instead of 42; no topic
or speaker profiles, so c is the context encoding alone: docs/papers/zhao2017_kgcvae.md §Substitutes). Reductions, for
about an hour per variant on 2 cores (paper sizes cost ~0.6 s per update on one core, these
~0.25 s; CPU time of one update, measured on this machine):
- sizes: embedding 128, utterance GRU 128 per direction, context GRU 256, decoder GRU 256,
  latent 64 (prior hidden max(2 x 64, 100) = 128, the code's rule); BoW and act layers stay 400;
- 5 epochs (12,680 updates at batch 30) instead of early stopping over up to 180,000;
- KL warm-up 3,700 updates: the code's 10,000 updates are ~1.46 SwDA epochs (same section), and 1.46
  DailyDialog epochs are 3,700 updates;
- IW-NLL with K = 100 importance samples (chunks of 50) instead of 500;
- sampled-response metrics on the first 2,000 test contexts (N = 10 each) instead of all 6,740.
Everything else (optimiser, batch, clipping, initialisation, window, truncation) is the paper's.
"""
from __future__ import annotations

from dataclasses import replace

from papers.zhao2017_kgcvae.model import FULL_KL_STEP, CVAEConfig, EncoderDecoderConfig
from repro.config import DataConfig, EvalConfig, KLScheduleConfig, OptimConfig, RunConfig, TrainConfig
from repro.dialog_models import DialogEvalConfig

MAX_WORDS = 40      # code: max_utt_len
MAX_CONTEXT = 10    # code: backward_size
SWDA_TOPIC_EMBED = 30

MODELS = {
    "baseline": EncoderDecoderConfig(),
    "cvae": CVAEConfig(bag_of_words=False),
    "cvae-bow": CVAEConfig(),
    "kgcvae": CVAEConfig(knowledge_guided=True),
}

CPU_SIZES = {"embed_size": 128, "utterance_hidden": 128, "context_hidden": 256, "decoder_hidden": 256,
             "latent_size": 64, "prior_hidden": 128}
CPU_KL_WARMUP = 3_700
SMOKE_SIZES = {"embed_size": 16, "utterance_hidden": 8, "context_hidden": 16, "decoder_hidden": 16,
               "latent_size": 4, "prior_hidden": 8, "bow_hidden": 8, "act_hidden": 8,
               "act_embed_size": 4, "act_feature_size": 4}


def _model(variant: str, sizes: dict, dialog_eval: DialogEvalConfig, kl_warmup: int = FULL_KL_STEP,
           **extra):
    cfg = MODELS[variant]
    updates = {k: v for k, v in {**sizes, **extra}.items() if hasattr(cfg, k)}
    if isinstance(cfg, CVAEConfig):
        updates["kl"] = KLScheduleConfig(kind="linear", warmup_steps=kl_warmup)
    return replace(cfg, dialog_eval=dialog_eval, **updates)


def _dailydialog(**overrides) -> DataConfig:
    settings = {"max_vocab": 10_000, "max_length": MAX_WORDS, "max_context": MAX_CONTEXT,
                "batch_size": 30, "eval_batch_size": 60, **overrides}
    return DataConfig(dataset="dailydialog", substitute_for="swda", **settings)


def _run(variant, preset, model, data, train, eval) -> RunConfig:
    return RunConfig(paper="zhao2017_kgcvae", variant=variant, preset=preset, model=model, data=data,
                     optim=OptimConfig(lr=1e-3, grad_clip=5.0), train=train, eval=eval)


def smoke(variant: str) -> RunConfig:
    dialog_eval = DialogEvalConfig(num_samples=3, max_examples=8, max_len=8, batch_size=8)
    data = _dailydialog(train_fraction=0.003, max_vocab=500, batch_size=16, eval_batch_size=16)
    return _run(variant, "smoke", _model(variant, SMOKE_SIZES, dialog_eval, kl_warmup=10), data,
                TrainConfig(epochs=1), EvalConfig(iw_samples=4, iw_chunk=2, max_examples=24))


def cpu(variant: str) -> RunConfig:
    dialog_eval = DialogEvalConfig(num_samples=10, max_examples=2_000)
    return _run(variant, "cpu", _model(variant, CPU_SIZES, dialog_eval, kl_warmup=CPU_KL_WARMUP),
                _dailydialog(), TrainConfig(epochs=5), EvalConfig(iw_samples=100, iw_chunk=50))


def paper(variant: str) -> RunConfig:
    data = DataConfig(dataset="swda", max_vocab=10_000, max_length=MAX_WORDS, max_context=MAX_CONTEXT,
                      batch_size=30, eval_batch_size=60)
    model = _model(variant, {}, DialogEvalConfig(num_samples=10), topic_embed_size=SWDA_TOPIC_EMBED)
    return _run(variant, "paper", model, data,
                TrainConfig(epochs=27, max_steps=180_000, early_stop_patience=5),
                EvalConfig(iw_samples=500, iw_chunk=100))


PRESETS = {"smoke": smoke, "cpu": cpu, "paper": paper}

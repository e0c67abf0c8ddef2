"""Presets for Kim et al. 2018 on PTB, which stands in for Yahoo: `smoke`, `cpu`, `paper`.

Kim et al.'s settings (`harvardnlp/sa-vae`, `train_text.py`; docs/papers/kim2018_savae.md
§Training, verified from code): latent 32, decoder dropout 0.5 on inputs and outputs, every
parameter U(±0.1), batch 32, SGD at rate 1 with gradient-norm clip 5, 30 epochs; the KL weight
starts at 0.1 and gains 1 / (10 epochs' updates) per update, so it reaches 1 after 9 epochs
(the `linear` schedule below, over 9 epochs from 0.1); SVI rate 1, momentum 0.5, SVI gradient
clip 5 (per example: `model.py`), 20 steps (`savae-20`; the paper's comparisons also use 10,
`savae-10`). `vae-anneal` is the same model and schedule without SVI.

Learning rate: Kim's code halves it after every epoch once an epoch from the 15th on has not
improved the validation bound, and stops when it falls below 0.03 (the 6th halving). The core's
plateau rule halves it after each epoch without improvement from the 15th on
(`plateau_after_epoch=14`, patience 1) and stops at the 6th halving: the same until the first
stale epoch, then one halving per stale epoch instead of one per epoch.

`paper`: the above on the whole PTB at Li et al. 2019's PTB sizes 256 / 256 / 256 / 32
(embedding / encoder / decoder / latent); Kim's own 512 / 1024 / 1024 / 32 are for Yahoo, whose
training split is not here (§Substitutes). Evaluation: IW-NLL with K = 500 in chunks of 100 on
the whole test set (the paper reports the single-sample bound, our `test/elbo`).

Reductions in `cpu`:
- a tenth of PTB's training sentences (4,206; 132 updates per epoch) and 4 epochs instead of 30,
  with sizes 128 / 128 / 128 / 32: an SA-VAE update costs 25 (10 steps) to 55 (20 steps) VAE
  updates (below);
- the KL warm-up over the first 1.2 epochs (158 updates) instead of 9, the same 30% of the run;
- no learning-rate halving can fire: the 4 epochs end before Kim's epoch-15 gate (kept, so
  `--set train.epochs=...` runs the recipe);
- validation and the test bound (IW-NLL with K = 100 instead of 500, ELBO, KL) on the first 500
  sentences of each split; MI and AU on all 3,761 test sentences.
- The SVI steps are the variant's (10 or 20), not reduced.
Cost (timed on 5 PTB batches at 128 sizes, 1 thread, with the machine's two cores busy with
other runs): a VAE update 0.42 s, a `savae-10` update 10 s (24x), a `savae-20` update 24 s
(about 55x). So the 528 updates take about 4 minutes for `vae-anneal`, 1.5 hours for `savae-10`
and 3.5 hours for `savae-20` there, plus their evaluations, where the refinement runs at every
validation and test batch (about 15 minutes more for `savae-20`); an idle machine is about 3x
faster. The smoke preset's epochs (1 thread) took 0.12 s, 2.95 s and 6.12 s: 25x and 51x.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from papers.kim2018_savae.model import SAVAEConfig
from repro.config import DataConfig, EvalConfig, KLScheduleConfig, OptimConfig, RunConfig, TrainConfig
from repro.data import planned_updates_per_epoch

NAME = "kim2018_savae"
SVI_STEPS = {"vae-anneal": 0, "savae-10": 10, "savae-20": 20}
BATCH = 32
KL_START = 0.1
KIM_MODEL = {"z_mode": "both", "decoder_dropout": 0.5, "init_range": 0.1, "svi_lr": 1.0,
             "svi_momentum": 0.5, "svi_grad_clip": 5.0, "svi_reference_batch": BATCH}
KIM_OPTIM = OptimConfig(name="sgd", lr=1.0, grad_clip=5.0, plateau_decay=0.5, plateau_patience=1,
                        plateau_after_epoch=14)


@dataclass(frozen=True, kw_only=True)
class Scale:
    embed_size: int
    encoder_hidden: int
    decoder_hidden: int
    latent_size: int
    warmup_epochs: float          # until the KL weight reaches 1
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig


SCALES = {
    "smoke": Scale(embed_size=16, encoder_hidden=16, decoder_hidden=16, latent_size=4, warmup_epochs=0.5,
                   data=DataConfig(train_fraction=0.005, max_vocab=500, substitute_for="yahoo"),
                   train=TrainConfig(epochs=1),
                   eval=EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40)),
    "cpu": Scale(embed_size=128, encoder_hidden=128, decoder_hidden=128, latent_size=32, warmup_epochs=1.2,
                 data=DataConfig(train_fraction=0.1, substitute_for="yahoo"),
                 train=TrainConfig(epochs=4, stop_after_decays=6),
                 eval=EvalConfig(iw_samples=100, iw_chunk=50, max_examples=500, mi_au_whole_split=True)),
    "paper": Scale(embed_size=256, encoder_hidden=256, decoder_hidden=256, latent_size=32, warmup_epochs=9,
                   data=DataConfig(substitute_for="yahoo"),
                   train=TrainConfig(epochs=30, stop_after_decays=6),
                   eval=EvalConfig(iw_samples=500, iw_chunk=100)),
}




def _run(variant: str, preset: str) -> RunConfig:
    s = SCALES[preset]
    warmup = round(s.warmup_epochs * planned_updates_per_epoch(s.data))
    model = SAVAEConfig(embed_size=s.embed_size, encoder_hidden=s.encoder_hidden,
                        decoder_hidden=s.decoder_hidden, latent_size=s.latent_size,
                        svi_steps=SVI_STEPS[variant], **KIM_MODEL,
                        kl=KLScheduleConfig(kind="linear", start_weight=KL_START, warmup_steps=warmup))
    return RunConfig(paper=NAME, variant=variant, preset=preset, model=model,
                     data=replace(s.data, batch_size=BATCH), optim=replace(KIM_OPTIM),
                     train=replace(s.train), eval=replace(s.eval))


def smoke(variant: str) -> RunConfig:
    return _run(variant, "smoke")


def cpu(variant: str) -> RunConfig:
    return _run(variant, "cpu")


def paper(variant: str) -> RunConfig:
    return _run(variant, "paper")


PRESETS = {"smoke": smoke, "cpu": cpu, "paper": paper}

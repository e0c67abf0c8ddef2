"""Presets for Goyal et al. 2017 (Z-Forcing): `smoke` (seconds), `cpu` (2 cores), `paper` (GPU).

Variants are `<dataset>-<arm>`. Arms (the paper's ablation names): `lstm` (LSTM language model
of the same size), `srnn` ("Ours": no KL annealing, no auxiliary cost), `srnn-kla` ("Ours +
kla"), `zforcing-kla` ("Ours + kla, aux"), and on PTB also `zforcing` (auxiliary cost without
annealing, completing the 2 x 2 of {annealing} x {auxiliary cost}). Datasets: `mnist`
(binarized MNIST, the paper's sequential-MNIST row), `ptb` (declared substitute for the paper's
IMDB, `data.substitute_for="imdb"`), and `blizzard` / `timit`, kept as rows that are not run (no
data here; the model has no Gaussian frame output), with only a `paper` preset recording the
code's settings.

From the co-author code, `sordonia/zforcing` (`train_blizzard.py`, `train_timit.py` defaults):
speech sizes (Blizzard LSTM 2048, z 256, embedding and MLP 1024, batch 128, Adam 3e-4; TIMIT
LSTM 1024, z 256, embedding and MLP 512, batch 32, Adam 1e-3), Adam's epsilon 1e-5
(`optim.eps`, in every preset here; the cross-method benchmark's shared optimiser keeps
PyTorch's 1e-8), gradient-norm clipping at 100, 100 epochs, KL weight from 0.2 up by 5e-5 per
update, the auxiliary weight annealed linearly over two epochs (Blizzard) or at 5e-5 per update
(TIMIT).

Learning rate: constant (`optim.plateau_decay=1.0`), as the code runs. Both scripts state a rule
-- halve the rate when validation does not improve, unless it is already at most 1e-4 -- but
reset their best validation loss to infinity at the start of every epoch, so every epoch counts
as an improvement and the halving never fires (short of a NaN validation loss). The rule as
written is one override away: `--set optim.plateau_decay=0.5` (patience 1 and the 1e-4 floor
are already set).

Auxiliary cost: its reduction and weight are ours (the code's weight defaults to 0, i.e. off;
the paper's value is not known to us).
- Averaged over b_t's dimensions (`aux_reduction="mean"`, the code helper's `mean=True`; the
  code itself sums, `mean=False`), summed over steps. Summed, what a weight means grows with the
  LSTM size: in the earlier cpu runs (records as of commit 22942af; b_t of 256 dimensions,
  weight 0.05) the auxiliary log-likelihood reached ~9,800 nats a PTB sentence (1.75 a dimension
  and step), so the auxiliary term (~490 nats) outweighed the ELBO (~140) 3.5-fold, and
  Z-Forcing bought 51 nats of KL at 21 nats of NLL over its LSTM.
- Weight 1 (`AUX_END`). With log-variances clamped at -8, a step's averaged NLL is at least
  -(8 - log 2 pi) / 2 = -3.08 nats at any LSTM size, so the term earns at most 3.08 nats a step,
  less than the likelihood costs a step (the same-size LSTMs of the earlier cpu runs: 4.9 nats a
  PTB word, 3.5 a MNIST row): it cannot outweigh the ELBO. 1 is the largest round weight for
  which that holds on both datasets; b_t then weighs as one Gaussian observation a step. Read a
  pixel per step (MNIST `paper`, ~0.1 nats a pixel) weight 1 could earn 30 times what the
  likelihood costs, so there the weight is 1/28: the same bound per image as a row per step.
- Ramped linearly from 0 over two epochs (the Blizzard code's rule); TIMIT keeps its code's 5e-5
  per update (20,000 updates to weight 1: longer than a `cpu` run, hence not used elsewhere).
- Untuned. A smoke-sized check (5% of PTB, 2,000 words, LSTM 128, z 16, 3 epochs, KL annealed;
  no auxiliary cost: 0.1 nats of KL a sentence): averaged weights 1, 4 and 16 bought 0.3, 1.8
  and 10 nats of KL at 0.9, 3.5 and 11 nats of NLL, the summed 0.05 (averaged 6.4 at that size)
  2.9 nats at 4.8. Across sizes an averaged weight kept its meaning roughly: 16 bought 10.7, 10
  and 28 nats at LSTM 64, 128 and 256 (46 to 57 at the last epoch for all three), and 1 bought
  0.4 at 256. Every weight tried cost NLL, so a validation sweep would choose 0; weight 1 may
  leave z nearly unused at the `cpu` sizes, which is what those runs test.

Also ours: the MNIST and PTB `paper` sizes (MNIST: TIMIT's; PTB: LSTM 512, z 64, smaller than
the speech models), batch 32 and Adam 1e-3 for them, early stopping, and every evaluation
setting (K, Monte Carlo paths, batch MI pool; the paper reports ELBO bounds).

Reductions in `cpu`:
- MNIST is read a row per step (`pixels_per_step=28`: 28 steps, each row's 28 pixels
  independent Bernoullis given the state) instead of pixel by pixel (784 steps: ~28x the cost
  of the step loop). This weakens the decoder within a row, so z_t has more to carry than at
  pixel level: not comparable with pixel-level numbers. Sizes: embedding 64, LSTM 128, z 16,
  MLP 64; 10 epochs.
- PTB: embedding 128, LSTM 256, z 32, MLP 128, 6 epochs.
- KL annealing compressed to the run's length: the weight reaches 1 after about two epochs
  instead of 16,000 updates (the schedule is per update), i.e. 2.5e-4 per update on MNIST, 3e-4
  on PTB.
- PTB's IW-NLL with K = 100 (`paper`: 500); MNIST's K = 100 is its `paper` preset's too.
- 20 posterior paths (`eval.mc_samples`; `paper`: the default 100) for the Monte Carlo parts of
  KL, MI and AU: the posterior must be sampled step by step, and at 100 paths validating MNIST
  took ~7 CPU-minutes per epoch against ~2 for training it (20 paths: ~1.2). What is averaged
  over the paths is already analytic per step (KLs, posterior means), so 20 paths go further
  than 20 draws of z would; `repro eval RUN --set eval.mc_samples=100` re-scores a run.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from papers.goyal2017_zforcing.model import SequenceLMConfig, ZForcingConfig
from repro.config import DataConfig, EvalConfig, OptimConfig, RunConfig, TrainConfig

NAME = "goyal2017_zforcing"
# arm -> (KL annealing, auxiliary cost)
ARMS = {"srnn": (False, False), "srnn-kla": (True, False), "zforcing": (False, True),
        "zforcing-kla": (True, True)}
RUNNABLE_ARMS = {"mnist": ("lstm", "srnn", "srnn-kla", "zforcing-kla"),
                 "ptb": ("lstm", "srnn", "srnn-kla", "zforcing", "zforcing-kla")}
SPEECH_ARMS = ("srnn", "srnn-kla", "zforcing-kla")
SPEECH = ("blizzard", "timit")
VARIANTS = tuple([f"{d}-{a}" for d, arms in RUNNABLE_ARMS.items() for a in arms]
                 + [f"{d}-{a}" for d in SPEECH for a in SPEECH_ARMS])
KL_START = 0.2            # code `kla_sta`
KL_INCREMENT = 5e-5       # code `kld_step`, per update
ADAM_EPS = 1e-5           # code: `Adam(..., eps=1e-5)`
# 1.0: no halving, as the code runs (its halving never fires; module docstring).
PLATEAU_DECAY = 1.0
# Ours (the code's default is 0: off): the auxiliary NLL averaged over b_t's dimensions, whose
# reward is then at most 3.08 nats a step at weight 1 (module docstring).
AUX_REDUCTION = "mean"
AUX_END = 1.0
# Updates per epoch at batch 32 (42,068 PTB sentences, 50,000 MNIST images): the auxiliary
# weight ramps over two epochs, the Blizzard code's rule.
PTB_EPOCH, MNIST_EPOCH = 1_315, 1_563


@dataclass(frozen=True, kw_only=True)
class Scale:
    """Everything that differs between datasets and presets."""

    embed: int
    hidden: int
    latent_size: int
    mlp: int
    pixels_per_step: int
    kl_increment: float
    aux_end: float
    aux_warmup_steps: int
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig


def _optim(lr: float) -> OptimConfig:
    # Patience 1 and the floor are the code's stated rule, so `optim.plateau_decay=0.5` alone
    # turns it on; they do nothing at PLATEAU_DECAY = 1.
    return OptimConfig(lr=lr, eps=ADAM_EPS, grad_clip=100.0, plateau_decay=PLATEAU_DECAY,
                       plateau_patience=1, min_lr=1e-4)


def _mnist(**changes) -> DataConfig:
    return DataConfig(dataset="binarized_mnist", **changes)


def _ptb(**changes) -> DataConfig:
    return DataConfig(dataset="ptb", substitute_for="imdb", **changes)


# One thread for smoke: on tensors this small, intra-op threads only add overhead.
SMOKE_TRAIN = TrainConfig(epochs=1, threads=1)
SMOKE_EVAL = EvalConfig(iw_samples=4, iw_chunk=2, mc_samples=4, max_examples=40, mi_pool="batch")
CPU_EVAL = EvalConfig(iw_samples=100, iw_chunk=50, mc_samples=20, mi_pool="batch")

SCALES = {
    ("mnist", "smoke"): Scale(embed=16, hidden=16, latent_size=4, mlp=8, pixels_per_step=28,
                              kl_increment=0.1, aux_end=AUX_END, aux_warmup_steps=5,
                              data=_mnist(train_fraction=0.004), optim=_optim(1e-3),
                              train=SMOKE_TRAIN, eval=SMOKE_EVAL),
    ("mnist", "cpu"): Scale(embed=64, hidden=128, latent_size=16, mlp=64, pixels_per_step=28,
                            kl_increment=2.5e-4, aux_end=AUX_END, aux_warmup_steps=2 * MNIST_EPOCH,
                            data=_mnist(), optim=_optim(1e-3), train=TrainConfig(epochs=10),
                            eval=CPU_EVAL),
    # A pixel per step: the weight per pixel is a row's over 28, the same bound per image.
    ("mnist", "paper"): Scale(embed=512, hidden=1024, latent_size=256, mlp=512, pixels_per_step=1,
                              kl_increment=KL_INCREMENT, aux_end=AUX_END / 28,
                              aux_warmup_steps=2 * MNIST_EPOCH, data=_mnist(), optim=_optim(1e-3),
                              train=TrainConfig(epochs=100, early_stop_patience=10),
                              eval=EvalConfig(iw_samples=100, iw_chunk=10, mi_pool="batch")),
    ("ptb", "smoke"): Scale(embed=16, hidden=16, latent_size=4, mlp=8, pixels_per_step=1,
                            kl_increment=0.1, aux_end=AUX_END, aux_warmup_steps=5,
                            data=_ptb(train_fraction=0.005, max_vocab=500), optim=_optim(1e-3),
                            train=SMOKE_TRAIN, eval=SMOKE_EVAL),
    ("ptb", "cpu"): Scale(embed=128, hidden=256, latent_size=32, mlp=128, pixels_per_step=1,
                          kl_increment=3e-4, aux_end=AUX_END, aux_warmup_steps=2 * PTB_EPOCH,
                          data=_ptb(), optim=_optim(1e-3), train=TrainConfig(epochs=6),
                          eval=CPU_EVAL),
    ("ptb", "paper"): Scale(embed=512, hidden=512, latent_size=64, mlp=512, pixels_per_step=1,
                            kl_increment=KL_INCREMENT, aux_end=AUX_END,
                            aux_warmup_steps=2 * PTB_EPOCH, data=_ptb(), optim=_optim(1e-3),
                            train=TrainConfig(epochs=40, early_stop_patience=5),
                            eval=EvalConfig(iw_samples=500, iw_chunk=100, mi_pool="batch")),
    # Blizzard: 2,040,064 training sequences / 128 = 15,938 updates per epoch; the auxiliary
    # weight ramps over two of them (`train_blizzard.py`).
    ("blizzard", "paper"): Scale(embed=1024, hidden=2048, latent_size=256, mlp=1024,
                                 pixels_per_step=1, kl_increment=KL_INCREMENT, aux_end=AUX_END,
                                 aux_warmup_steps=2 * 15_938,
                                 data=DataConfig(dataset="blizzard", batch_size=128),
                                 optim=_optim(3e-4), train=TrainConfig(epochs=100),
                                 eval=EvalConfig(mi_pool="batch")),
    # TIMIT's code ramps the auxiliary weight by 5e-5 per update.
    ("timit", "paper"): Scale(embed=512, hidden=1024, latent_size=256, mlp=512, pixels_per_step=1,
                              kl_increment=KL_INCREMENT, aux_end=AUX_END,
                              aux_warmup_steps=round(AUX_END / 5e-5),
                              data=DataConfig(dataset="timit", batch_size=32), optim=_optim(1e-3),
                              train=TrainConfig(epochs=100), eval=EvalConfig(mi_pool="batch")),
}
# The speech rows are not run here: they record the code's settings, as a `paper` preset only.
SPEECH_PRESETS = ("paper",)


def model_config(arm: str, s: Scale):
    if arm == "lstm":
        return SequenceLMConfig(embed_size=s.embed, hidden_size=s.hidden,
                                pixels_per_step=s.pixels_per_step)
    annealed, aux = ARMS[arm]
    return ZForcingConfig(
        embed_size=s.embed, hidden_size=s.hidden, latent_size=s.latent_size, mlp_size=s.mlp,
        pixels_per_step=s.pixels_per_step,
        kl_start=KL_START if annealed else 1.0, kl_increment=s.kl_increment if annealed else 0.0,
        aux_end=s.aux_end if aux else 0.0, aux_warmup_steps=s.aux_warmup_steps if aux else 0,
        # Without the cost the reduction trains nothing; the default keeps those arms' configs,
        # and so their committed records, as they were.
        aux_input="z", aux_reduction=AUX_REDUCTION if aux else "sum")


def _run_config(variant: str, preset: str) -> RunConfig:
    dataset, arm = variant.split("-", 1)
    s = SCALES[(dataset, preset)]
    return RunConfig(paper=NAME, variant=variant, preset=preset, model=model_config(arm, s),
                     data=replace(s.data), optim=replace(s.optim), train=replace(s.train),
                     eval=replace(s.eval))


# Preset name -> function of the variant name (`repro.registry.presets_of_variant`); a speech
# row has only SPEECH_PRESETS of them.
PRESETS = {preset: functools.partial(_run_config, preset=preset) for preset in ("smoke", "cpu", "paper")}

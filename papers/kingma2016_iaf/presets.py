"""Variants and presets for Kingma et al. 2016: `smoke` (seconds), `cpu` (2 cores), `paper` (GPU).

Rows. MNIST, dynamically binarised (`mnist`, the paper's Table 1): the diagonal Gaussian and
the four IAF rows (depth = IAF steps, width = MADE hidden units), plus the Gaussian and the
depth-2 width-320 IAF with free bits (lambda = 0.25 nats per dimension, the official code's
`kl_min` default) -- the issue's four-way comparison. Statically binarised MNIST
(`binarized_mnist`): the paper's one static result, attributed to the depth-8 row. PTB (the
suite's text setting, an adaptation with no paper target): Gaussian, Gaussian + free bits, IAF
(2 steps of width 320), IAF + free bits. CIFAR-10 rows are kept with their numbers, not run.

The lambda sweep is a set of variants, so each value is a row of the results table:
`<data>-iaf-fb-lam<lambda>` for lambda in {0.125, 0.5, 1} on MNIST and on PTB, which with the
IAF rows (lambda = 0) and the free-bits rows (0.25) covers {0, 0.125, 0.25, 0.5, 1} of the
paper's grid {0, 0.125, ..., 8}. Groups are single dimensions of a 32-d z, so the floor on the
total KL is 32 lambda: 2, 4 and 8 nats per dimension (a floor of 64 to 256 nats) would exceed
any KL these models use (the paper's grid was for CIFAR feature-map groups), so they are left
out. Other values: `--set model.free_bits.lam=...`.

`paper` (GPU), MNIST: App. B's network -- three stride-2 residual blocks of 16, 32 and 32 maps
with a stride-1 block between each two (strides 2, 1, 2, 1, 2), strided 3x3 convolutions (and
transposed convolutions in the decoder) as the resampling blocks' shortcuts, 450 hidden units,
z 32, ELU, weight normalisation with data-dependent initialisation (`repro.nn.conv`); the
rows' IAF sizes with the official code's stabilisers (weight-normalised MADEs, outputs scaled
by 0.1); Adamax at 2e-3 with Polyak averaging of decay 0.999, used for validation, selection
and the test, and batch 16 (the official code's `alpha`, averaging and `n_batch`); K = 128
importance samples. Ours: up to 1000 epochs with early stopping after 50 without a better
validation ELBO of the averaged weights, training on train only. The official code trains its
final models on train + valid (`data.train_on_valid`); we keep valid out because the epoch
count the paper trained for is not known to us and early stopping on valid is how this preset
chooses it. For final numbers, rerun with `--set data.train_on_valid=true --set
train.epochs=<that run's best epoch>` (the last averaged weights are then tested). PTB:
embedding 512, LSTMs of 1024 (He et al. 2019's text-VAE size), z 32, Adam 1e-3, clipping 5, up
to 40 epochs with patience 5, K = 500, the IAF without the stabilisers (so the text records
stay current; `--set model.iaf.weight_norm=true --set model.iaf.output_scale=0.1` adds them);
ours, as the paper has no text model.

Every row evaluates MI over minibatch pools of 32 (`mi_pool="batch"`, He et al.'s estimator)
and all metrics on the whole test split: a flow posterior's density needs the flow inverted
(up to d MADE passes a step) for each of N x M (sample, pool member) pairs, which the whole
test set as pool (M = N = 10,000) would make infeasible; every row uses the same pool so MI
stays comparable (docs/metrics.md §5).

Reductions in `cpu` (and why): MNIST 30 epochs (the paper trains to convergence, hundreds);
batch 100 instead of 16 (a sixth of the updates an epoch, each better used by two cores; the
Polyak decay stays 0.999, an average over about two epochs of 500 updates); MADE width 1920 -> 480 in the four wide rows (at 1920
the depth-8 flow costs several times the convolutional network per update, and its density is
inverted for every MI pair; width 320 is kept); PTB embedding 256 and LSTMs of 256 instead of
512/1024, 12 epochs, K = 100 instead of 500. MNIST keeps K = 128, App. B's block structure and
widths, the optimiser, the IAF stabilisers and the static/dynamic data of `paper`.
Measured cost of the network before App. B's layout (CPU time of one thread over 25 updates
and 128 evaluation images, extrapolated; two cores are perhaps 1.6x faster): an MNIST epoch 0.8 min (1.0 at depth 8), the K = 128 test
evaluation 6 (Gaussian) to 14 min (depth 8), a PTB epoch 4 min. The trainer's per-epoch
validation computes every metric; for IAF rows its MI (N x 32 flow inversions) and Monte Carlo
KL/AU cost 1.1 (depth 2) to 6.5 min (depth 8) per MNIST epoch, 0.5 min per PTB epoch, against
0.2 to 0.9 min for the validation ELBO alone -- most of a depth-4/8 row's time. App. B's layout
(two more residual blocks, 3x3 shortcuts, 13% more parameters) costs about 1.45x per update of
the Gaussian row (0.27 -> 0.40 s at batch 100, one thread, on a loaded machine) and under 1.1x
at depth 8, where the MADEs dominate.

The depth-8 rows at `cpu` diverged (measured on mnist-iaf-d8-w1920, seed 0, before the
stabilisers below were the presets' default). Twice, once as is
and once with the gradient norm clipped at 250, the run trained like depth 4 for 16 epochs and
then, in epoch 17, its training KL averaged 1.4e9 (2.1e9 clipped) nats. The cause is in the
forward pass, so clipping cannot help: for a rare posterior draw (the validation KL of the
epoch-17 parameters averages 2031 nats over 100 draws per image, but no image exceeds 200
nats in 20 ordinary draws), each step's shift m, which reads the previous step's z, lands
further out than the last. With the gate closing (s falls to -2566 by step 8), z follows m,
and z^2/2 reaches 1.4e8 to 2.5e9 nats; two draws with doubled noise find 11 images of the
10,000 above 200 nats. The gated update bounds z between its input and m, but not m. In the 16 calm
epochs, clipping fired on no update after epoch 3. Its committed record is the best-validation
checkpoint of epoch 15, from the code before the trainer's divergence stop.

static-iaf-d8-w1920 (seed 0) trained calmly for 25 epochs; in epoch 26, about 300 updates in,
its training KL ran away (4.6e10 nats averaged over the epoch) and its validation objective
reached 2.6e4 against a best of 90.72. Resumed from the epoch-25 checkpoint with
optim.lr=1e-3, it ran away at the same update (1.0e8 nats over the epoch, validation 2.6e5):
the replayed batches and posterior draws bring the same draw, and half the step size
over 300 updates does not keep it from running away, as a forward-pass cause predicts. Its
record is the best-validation checkpoint of epoch 24, scored with `--finish-diverged`; both
divergences are in its `train.stopped_by_divergence`. Even that checkpoint draws runaways,
in a few images (`runaways.py`, fresh draws, seed 0): over all 10,000 test images, 100 draws
each, the single-draw KL averages 24.84 nats and no draw passes 321; but image 6280 runs away
in 2.2e-4 of its draws (219 of 1e6 above 1,000 nats, the largest 8.9e14) and image 32 in
1e-5 (10 of 1e6, the largest 3.2e13). The evaluation's 100 draws of image 6280 caught one
(that image's mean KL: 2.5e8 nats), and that one draw is the recorded test KL of 2.5e4 nats
and most of the Monte Carlo ELBO. With such a tail the expected KL itself is astronomical, so
no affordable number of draws estimates it; the IW-NLL (84.98; a runaway draw gets a weight
of about exp(-KL)) is not moved by it and is in line with the other rows.

Remedy, now the MNIST presets' default: the official code's stabilisers, weight-normalised
MADE layers and (m, s) scaled by 0.1 (`IAFConfig.weight_norm`, `output_scale`). A shift that
moves a tenth as far per unit of weight change cannot walk a draw out step after step as fast,
and the normalised layers keep the MADE's gain from growing with its weights. They change
every IAF MNIST row, so the whole MNIST table reruns; until it has, the committed records are
of the earlier configuration, which `repro sweep` and `repro reproduce --resume` see by their
config and retrain.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from papers.kingma2016_iaf.model import ImageVAEConfig, IAFTextVAEConfig
from repro.config import DataConfig, EvalConfig, FreeBitsConfig, OptimConfig, RunConfig, TrainConfig
from repro.nn.flows import IAFConfig

NAME = "kingma2016_iaf"
# Nats per dimension: `kl_min` in openai/iaf (docs/papers/kingma2016_iaf.md §Architecture).
FREE_BITS_LAMBDA = 0.25
SWEEP_LAMBDAS = (0.125, 0.5, 1.0)
# The PTB adaptation's IAF: the paper's smallest flow.
TEXT_IAF = {"iaf_steps": 2, "iaf_width": 320}


@dataclass(frozen=True, kw_only=True)
class Row:
    """What a variant is: its data, its IAF (0 steps: Gaussian) and its free-bits lambda."""

    dataset: str
    iaf_steps: int = 0
    iaf_width: int = 0
    lam: float | None = None      # None: no free bits


def _lam_name(lam: float) -> str:
    return f"{lam:g}"


def _rows() -> dict[str, Row]:
    def sweep(dataset: str, iaf_steps: int, iaf_width: int) -> dict[str, Row]:
        return {f"{dataset}-iaf-fb-lam{_lam_name(lam)}":
                Row(dataset=dataset, iaf_steps=iaf_steps, iaf_width=iaf_width, lam=lam)
                for lam in SWEEP_LAMBDAS}

    return {
        "mnist-diag": Row(dataset="mnist"),
        "mnist-diag-fb": Row(dataset="mnist", lam=FREE_BITS_LAMBDA),
        "mnist-iaf-d2-w320": Row(dataset="mnist", iaf_steps=2, iaf_width=320),
        "mnist-iaf-d2-w1920": Row(dataset="mnist", iaf_steps=2, iaf_width=1920),
        "mnist-iaf-d4-w1920": Row(dataset="mnist", iaf_steps=4, iaf_width=1920),
        "mnist-iaf-d8-w1920": Row(dataset="mnist", iaf_steps=8, iaf_width=1920),
        "mnist-iaf-fb": Row(dataset="mnist", iaf_steps=2, iaf_width=320, lam=FREE_BITS_LAMBDA),
        **sweep("mnist", iaf_steps=2, iaf_width=320),
        "static-iaf-d8-w1920": Row(dataset="binarized_mnist", iaf_steps=8, iaf_width=1920),
        "ptb-gauss": Row(dataset="ptb"),
        "ptb-gauss-fb": Row(dataset="ptb", lam=FREE_BITS_LAMBDA),
        "ptb-iaf": Row(dataset="ptb", **TEXT_IAF),
        "ptb-iaf-fb": Row(dataset="ptb", **TEXT_IAF, lam=FREE_BITS_LAMBDA),
        **sweep("ptb", **TEXT_IAF),
    }


ROWS = _rows()


@dataclass(frozen=True, kw_only=True)
class ImageScale:
    channels: tuple[int, ...]
    hidden: int
    latent_size: int
    width_cap: int | None         # MADE width ceiling (None: the row's own)
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig


@dataclass(frozen=True, kw_only=True)
class TextScale:
    embed: int
    hidden: int
    latent_size: int
    width_cap: int | None
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig


# MI over pools of 32 for every row (module docstring); one thread for the tiny smoke models.
SMOKE_EVAL = EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40, mi_pool="batch")
IMAGE_SCALES = {
    "smoke": ImageScale(channels=(4, 8, 8), hidden=16, latent_size=4, width_cap=8,
                        data=DataConfig(train_fraction=0.002, batch_size=50, eval_batch_size=32),
                        train=TrainConfig(epochs=1, threads=1), eval=SMOKE_EVAL),
    "cpu": ImageScale(channels=(16, 32, 32), hidden=450, latent_size=32, width_cap=480,
                      data=DataConfig(batch_size=100, eval_batch_size=32),
                      train=TrainConfig(epochs=30),
                      eval=EvalConfig(iw_samples=128, iw_chunk=4, mi_pool="batch")),
    "paper": ImageScale(channels=(16, 32, 32), hidden=450, latent_size=32, width_cap=None,
                        data=DataConfig(batch_size=16, eval_batch_size=32),
                        train=TrainConfig(epochs=1000, early_stop_patience=50),
                        eval=EvalConfig(iw_samples=128, iw_chunk=16, mi_pool="batch")),
}
TEXT_SCALES = {
    "smoke": TextScale(embed=16, hidden=16, latent_size=4, width_cap=8,
                       data=DataConfig(train_fraction=0.005, max_vocab=500, eval_batch_size=32),
                       optim=OptimConfig(lr=1e-3, grad_clip=5.0),
                       train=TrainConfig(epochs=1, threads=1), eval=SMOKE_EVAL),
    "cpu": TextScale(embed=256, hidden=256, latent_size=32, width_cap=None,
                     data=DataConfig(eval_batch_size=32), optim=OptimConfig(lr=1e-3, grad_clip=5.0),
                     train=TrainConfig(epochs=12),
                     eval=EvalConfig(iw_samples=100, iw_chunk=50, mi_pool="batch")),
    "paper": TextScale(embed=512, hidden=1024, latent_size=32, width_cap=None,
                       data=DataConfig(eval_batch_size=32), optim=OptimConfig(lr=1e-3, grad_clip=5.0),
                       train=TrainConfig(epochs=40, early_stop_patience=5),
                       eval=EvalConfig(iw_samples=500, iw_chunk=100, mi_pool="batch")),
}
# The official code's Adamax rate and Polyak decay; no clipping (none in the official code;
# clipping did not save the depth-8 rows either, see the module docstring).
IMAGE_OPTIM = OptimConfig(name="adamax", lr=2e-3, grad_clip=None, polyak=0.999)
# App. B's block layout (`repro.nn.conv`), at every scale.
APPENDIX_B = {"between_strided": 1, "shortcut": "conv"}
# The official code's IAF stabilisers, on the MNIST rows.
STABILISED = {"weight_norm": True, "output_scale": 0.1}


def _iaf(row: Row, width_cap: int | None) -> IAFConfig:
    if not row.iaf_steps:
        return IAFConfig()
    width = row.iaf_width if width_cap is None else min(row.iaf_width, width_cap)
    stabilisers = STABILISED if row.dataset != "ptb" else {}
    return IAFConfig(steps=row.iaf_steps, hidden_sizes=(width, width), **stabilisers)


def _free_bits(row: Row) -> FreeBitsConfig:
    if row.lam is None:
        return FreeBitsConfig()
    return FreeBitsConfig(variant="kingma_group_batchmean", lam=row.lam, group_size=1)


def _run_config(variant: str, preset: str) -> RunConfig:
    row = ROWS[variant]
    if row.dataset == "ptb":
        s = TEXT_SCALES[preset]
        model = IAFTextVAEConfig(embed_size=s.embed, encoder_hidden=s.hidden, decoder_hidden=s.hidden,
                                 latent_size=s.latent_size, iaf=_iaf(row, s.width_cap),
                                 free_bits=_free_bits(row))
        data, optim = replace(s.data, dataset="ptb"), replace(s.optim)
    else:
        s = IMAGE_SCALES[preset]
        model = ImageVAEConfig(latent_size=s.latent_size, channels=s.channels, hidden_size=s.hidden,
                               iaf=_iaf(row, s.width_cap), free_bits=_free_bits(row), **APPENDIX_B)
        data, optim = replace(s.data, dataset=row.dataset), replace(IMAGE_OPTIM)
    return RunConfig(paper=NAME, variant=variant, preset=preset, model=model, data=data,
                     optim=optim, train=replace(s.train), eval=replace(s.eval))


# Preset name -> function of the variant name (`repro.registry.presets_of_variant`).
PRESETS = {preset: functools.partial(_run_config, preset=preset) for preset in ("smoke", "cpu", "paper")}

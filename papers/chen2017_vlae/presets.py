"""Variants and presets for Chen et al. 2017: `smoke` (seconds), `cpu` (2 cores), `paper` (GPU).

Rows (`<data>-<model>`). Dynamic MNIST (`mnist`): the N(0, I)-prior VAE, the AF prior and the
IAF posterior with the factorised decoder; the local PixelCNN decoder with a Gaussian prior and
with the AF prior (VLAE, the paper's model); the local PixelCNN alone ("unconditional decoder");
and an unrestricted (deep) PixelCNN with the AF prior for contrast. Static MNIST
(`binarized_mnist`): the paper's three rows -- IAF VAE, AF VAE, VLAE. PTB (the text
adaptation of docs/papers/chen2017_vlae.md §Substitutes, no paper target): LSTM decoder
(unrestricted history) with N(0, I) prior, AF prior and IAF posterior; window-limited CNN
decoders (w = 2, 4, 8 previous tokens) with the AF prior, w = 4 with the Gaussian prior, and
w = 4 without z. OMNIGLOT, Caltech-101 and CIFAR-10 rows are
kept with their numbers, not run (`__init__.py`).

`paper` (GPU): the paper's settings -- the IAF paper's MNIST ResNet (its App. B layout: 16/32/32
maps, strides 2, 1, 2, 1, 2, convolutional shortcuts, 450 units); the PixelCNN rows (VLAE and its
ablations) with latent 64, an AF prior of 4 mean-only steps of 640 x 640 ReLU MADEs, PixelCNN
4 feature maps / 12 filters / 6 masked 3x3 layers with tied weights / 4 1x1 blocks; the
factorised-decoder rows ("IAF VAE", "AF VAE" and the Gaussian baseline) are Kingma et al.'s
best MNIST model, latent 32 with an IAF posterior of 8 steps of 1920 x 1920 (stabilised as in
Kingma's presets), the AF rows with that flow moved into the prior (8 mean-only steps of 1920,
no context); free bits 0.01 nats per pixel in Kingma's per-dimension form (`model.py`);
Adamax at 0.002 with Polyak averaging, alpha = 0.998; K = 4096 importance samples. Ours: batch
100, up to 1000 epochs with early stopping after 50 on the averaged weights' validation ELBO,
training on train only (the paper's final runs add valid: `data.train_on_valid`, off because
the epoch count is chosen by early stopping on valid; for final numbers rerun with `--set
data.train_on_valid=true --set train.epochs=<best epoch>`), the unrestricted PixelCNN's 15
masked 3x3 layers (15 rows up and 15 columns aside, more than half the image, so that decoder
can model a digit without z). PTB: embedding 512, LSTMs
of 1024 (He et al.'s size), CNN width 512 with a 256 bottleneck, z 32, AF prior and IAF of
2 steps of 320 x 320 (the adaptation asks for 2-4 MADE flow steps), Adam 1e-3 with clipping 5, KL warm-up
over 10,000 updates, up to 40 epochs with patience 5, K = 500: ours.

Evaluation, every row and scale: MI over minibatch pools of 32 (`mi_pool="batch"`; see
`model.py`), so MI is comparable across rows.

Reductions in `cpu` (and why):
- MNIST: 10 epochs instead of convergence (every image row alike, so rows stay comparable); MADE
  width 640 -> 320 in the PixelCNN rows' AF prior, and 1920 -> 480 in the factorised rows' IAF
  and AF flows (Kingma's `cpu` cap; each validation inverts the IAF for 32 x 32
  sample/posterior pairs per batch, d MADE passes a step; both flows keep the same size, so the
  AF-vs-IAF rows stay "equivalent"); the network's block structure and widths, the optimiser,
  its averaging and the free bits are `paper`'s; validation and test on the first 2,000 images
  of valid/test (`eval.max_examples`, which the trainer also applies to validation; static MNIST
  rows use the whole splits, as its test split is sorted by class) with K = 128
  instead of 4096 (slightly pessimistic, docs/papers/chen2017_vlae.md §Pitfalls). The first MNIST test digits come from the
  cleaner of NIST's two writer pools, so this prefix reads optimistic against the whole split;
  rows are compared on the same images. `repro eval RUN --set eval.max_examples=null --set
  eval.iw_samples=4096` re-scores a run on the whole split.
- PTB: embedding 256, LSTMs and CNN width 256 (bottleneck 128), 8 epochs, KL warm-up over 2,600
  updates (two epochs), K = 100.

Estimated `cpu` time per row on one uncontended core (CPU time of updates and evaluation
measured on this machine, before App. B's layout and the 8-step factorised rows, which cost
more): factorised Gaussian/AF rows ~17 min, IAF rows ~37 min (the MI pool inverts the flow),
local PixelCNN rows ~41 min, the unrestricted PixelCNN ~55 min, the unconditional PixelCNN
~13 min; PTB VAE rows ~45 min (IAF ~50), the PTB LM ~31 min.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace

from papers.chen2017_vlae.model import (ImageVLAEConfig, LocalTextLMConfig, PixelCNNLMConfig,
                                        TextVLAEConfig, pixel_free_bits)
from repro.config import DataConfig, EvalConfig, KLScheduleConfig, OptimConfig, RunConfig, TrainConfig
from repro.nn.flows import IAFConfig
from repro.nn.pixelcnn import PixelCNNConfig
from repro.nn.priors import AFPriorConfig

NAME = "chen2017_vlae"
# PTB windows: kernel 2, so w = 1 + sum(dilations) previous tokens (`<bos>` included).
WINDOWS = {2: (1,), 4: (1, 2), 8: (1, 2, 4)}


@dataclass(frozen=True, kw_only=True)
class Row:
    """What a variant is. `decoder`: factorised | local | unrestricted (images), lstm | local<w>
    (PTB); `prior`: gauss | af, or None for a decoder without z; `posterior`: gauss | iaf."""

    dataset: str
    decoder: str
    prior: str | None
    posterior: str = "gauss"


ROWS = {
    "mnist-gauss": Row(dataset="mnist", decoder="factorised", prior="gauss"),
    "mnist-af": Row(dataset="mnist", decoder="factorised", prior="af"),
    "mnist-iaf": Row(dataset="mnist", decoder="factorised", prior="gauss", posterior="iaf"),
    "mnist-local-gauss": Row(dataset="mnist", decoder="local", prior="gauss"),
    "mnist-vlae": Row(dataset="mnist", decoder="local", prior="af"),
    "mnist-unconditional": Row(dataset="mnist", decoder="local", prior=None),
    "mnist-unrestricted-af": Row(dataset="mnist", decoder="unrestricted", prior="af"),
    "static-iaf": Row(dataset="binarized_mnist", decoder="factorised", prior="gauss", posterior="iaf"),
    "static-af": Row(dataset="binarized_mnist", decoder="factorised", prior="af"),
    "static-vlae": Row(dataset="binarized_mnist", decoder="local", prior="af"),
    "ptb-gauss": Row(dataset="ptb", decoder="lstm", prior="gauss"),
    "ptb-af": Row(dataset="ptb", decoder="lstm", prior="af"),
    "ptb-iaf": Row(dataset="ptb", decoder="lstm", prior="gauss", posterior="iaf"),
    **{f"ptb-local{w}-af": Row(dataset="ptb", decoder=f"local{w}", prior="af") for w in WINDOWS},
    "ptb-local4-gauss": Row(dataset="ptb", decoder="local4", prior="gauss"),
    "ptb-local4-lm": Row(dataset="ptb", decoder="local4", prior=None),
}


@dataclass(frozen=True, kw_only=True)
class ImageScale:
    channels: tuple[int, ...]
    hidden: int
    latent_size: int                  # the PixelCNN rows (VLAE and its ablations)
    flow_steps: int
    flow_width: int
    kingma_latent_size: int           # the factorised rows: Kingma's best model ...
    kingma_flow_steps: int            # ... its IAF, or that flow as an AF prior
    kingma_flow_width: int
    pixelcnn: PixelCNNConfig          # the local decoder
    unrestricted_layers: int          # masked layers of the unrestricted PixelCNN
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig


@dataclass(frozen=True, kw_only=True)
class TextScale:
    embed: int
    hidden: int                       # encoder and decoder LSTMs, CNN channels
    bottleneck: int
    latent_size: int
    flow_steps: int
    flow_width: int
    kl_warmup_steps: int
    data: DataConfig
    train: TrainConfig
    eval: EvalConfig


IMAGE_SCALES = {
    "smoke": ImageScale(channels=(4, 8, 8), hidden=16, latent_size=4, flow_steps=2, flow_width=8,
                        kingma_latent_size=4, kingma_flow_steps=2, kingma_flow_width=8,
                        pixelcnn=PixelCNNConfig(feature_maps=2, filters=4, masked_layers=3,
                                                pointwise_blocks=1, tied=True),
                        unrestricted_layers=4,
                        data=DataConfig(train_fraction=0.002, batch_size=50, eval_batch_size=32),
                        # One thread: on tensors this small, intra-op threads only add overhead.
                        train=TrainConfig(epochs=1, threads=1),
                        eval=EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40, mi_pool="batch")),
    "cpu": ImageScale(channels=(16, 32, 32), hidden=450, latent_size=64, flow_steps=4, flow_width=320,
                      kingma_latent_size=32, kingma_flow_steps=8, kingma_flow_width=480,
                      pixelcnn=PixelCNNConfig(tied=True), unrestricted_layers=15,
                      data=DataConfig(batch_size=100, eval_batch_size=32),
                      train=TrainConfig(epochs=10),
                      eval=EvalConfig(iw_samples=128, iw_chunk=16, max_examples=2000, mi_pool="batch")),
    "paper": ImageScale(channels=(16, 32, 32), hidden=450, latent_size=64, flow_steps=4, flow_width=640,
                        kingma_latent_size=32, kingma_flow_steps=8, kingma_flow_width=1920,
                        pixelcnn=PixelCNNConfig(tied=True), unrestricted_layers=15,
                        data=DataConfig(batch_size=100, eval_batch_size=32),
                        train=TrainConfig(epochs=1000, early_stop_patience=50),
                        eval=EvalConfig(iw_samples=4096, iw_chunk=64, mi_pool="batch")),
}
TEXT_SCALES = {
    "smoke": TextScale(embed=16, hidden=16, bottleneck=8, latent_size=4, flow_steps=2, flow_width=8,
                       kl_warmup_steps=5,
                       data=DataConfig(dataset="ptb", train_fraction=0.005, max_vocab=500,
                                       eval_batch_size=32),
                       train=TrainConfig(epochs=1, threads=1),
                       eval=EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40, mi_pool="batch")),
    "cpu": TextScale(embed=256, hidden=256, bottleneck=128, latent_size=32, flow_steps=2, flow_width=320,
                     kl_warmup_steps=2600,
                     data=DataConfig(dataset="ptb", eval_batch_size=32),
                     train=TrainConfig(epochs=8),
                     eval=EvalConfig(iw_samples=100, iw_chunk=50, mi_pool="batch")),
    "paper": TextScale(embed=512, hidden=1024, bottleneck=256, latent_size=32, flow_steps=2,
                       flow_width=320, kl_warmup_steps=10_000,
                       data=DataConfig(dataset="ptb", eval_batch_size=32),
                       train=TrainConfig(epochs=40, early_stop_patience=5),
                       eval=EvalConfig(iw_samples=500, iw_chunk=100, mi_pool="batch")),
}
IMAGE_OPTIM = OptimConfig(name="adamax", lr=2e-3, grad_clip=None, polyak=0.998)   # the paper's
# The IAF paper's MNIST network layout (`repro.nn.conv`) and its IAF stabilisers.
APPENDIX_B = {"between_strided": 1, "shortcut": "conv"}
STABILISED = {"weight_norm": True, "output_scale": 0.1}
TEXT_OPTIM = OptimConfig(lr=1e-3, grad_clip=5.0)


def _flows(row: Row, steps: int, width: int, stabilised: bool = False) -> tuple[AFPriorConfig, IAFConfig]:
    prior = AFPriorConfig(steps=steps, hidden_sizes=(width, width)) if row.prior == "af" else AFPriorConfig()
    iaf = (IAFConfig(steps=steps, hidden_sizes=(width, width), **(STABILISED if stabilised else {}))
           if row.posterior == "iaf" else IAFConfig())
    return prior, iaf


def image_model(row: Row, s: ImageScale):
    pixelcnn = s.pixelcnn
    if row.decoder == "unrestricted":
        pixelcnn = replace(pixelcnn, masked_layers=s.unrestricted_layers)
    if row.prior is None:
        return PixelCNNLMConfig(pixelcnn=replace(pixelcnn, feature_maps=0))
    if row.decoder == "factorised":
        latent_size, steps, width = s.kingma_latent_size, s.kingma_flow_steps, s.kingma_flow_width
    else:
        latent_size, steps, width = s.latent_size, s.flow_steps, s.flow_width
    prior, iaf = _flows(row, steps, width, stabilised=True)
    return ImageVLAEConfig(latent_size=latent_size, channels=s.channels, hidden_size=s.hidden,
                           decoder="factorised" if row.decoder == "factorised" else "pixelcnn",
                           pixelcnn=pixelcnn, prior=prior, iaf=iaf,
                           free_bits=pixel_free_bits(latent_size), **APPENDIX_B)


def text_model(row: Row, s: TextScale):
    dilations = WINDOWS[int(row.decoder.removeprefix("local"))] if row.decoder != "lstm" else (1,)
    if row.prior is None:
        return LocalTextLMConfig(embed_size=s.embed, hidden_size=s.hidden, bottleneck=s.bottleneck,
                                 dilations=dilations, kernel_size=2)
    prior, iaf = _flows(row, s.flow_steps, s.flow_width)
    return TextVLAEConfig(embed_size=s.embed, encoder_hidden=s.hidden, decoder_hidden=s.hidden,
                          latent_size=s.latent_size, z_mode="input",
                          kl=KLScheduleConfig(kind="linear", warmup_steps=s.kl_warmup_steps),
                          decoder="lstm" if row.decoder == "lstm" else "cnn",
                          bottleneck=s.bottleneck, dilations=dilations, kernel_size=2,
                          prior=prior, iaf=iaf)


def _run_config(variant: str, preset: str) -> RunConfig:
    row = ROWS[variant]
    if row.dataset == "ptb":
        s = TEXT_SCALES[preset]
        model, data, optim = text_model(row, s), replace(s.data), replace(TEXT_OPTIM)
    else:
        s = IMAGE_SCALES[preset]
        model, data, optim = image_model(row, s), replace(s.data, dataset=row.dataset), replace(IMAGE_OPTIM)
    return RunConfig(paper=NAME, variant=variant, preset=preset, model=model, data=data,
                     optim=optim, train=replace(s.train), eval=_eval(row, s.eval))


def _eval(row: Row, scale_eval: EvalConfig) -> EvalConfig:
    """Static MNIST's test split is sorted by digit class (docs/data.md §Static),
    so a prefix of it is mostly zeros and ones: those rows evaluate on the whole split."""
    if row.dataset == "binarized_mnist":
        return replace(scale_eval, max_examples=None)
    return replace(scale_eval)


# Preset name -> function of the variant name (`repro.registry.presets_of_variant`).
PRESETS = {preset: functools.partial(_run_config, preset=preset) for preset in ("smoke", "cpu", "paper")}

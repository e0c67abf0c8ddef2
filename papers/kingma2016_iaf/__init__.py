"""Kingma et al. 2016, *Improved Variational Inference with Inverse Autoregressive Flow*
(NIPS 2016).

Registers the paper's MNIST table (Table 1, and its static-MNIST result), the suite's PTB
adaptation, a free-bits lambda sweep on both, and the CIFAR-10 rows (kept, not run); see
`model.py` for the method and its implementation details, `presets.py` for the rows, the
settings and every reduction, `reported.py` for the paper's numbers with their verification
tags. Registration lives here because the presets need the model's config classes.
"""
from papers.kingma2016_iaf.model import IAFTextVAEConfig, ImageVAEConfig, build
from papers.kingma2016_iaf.presets import NAME
from papers.kingma2016_iaf.presets import PRESETS, ROWS
from papers.kingma2016_iaf.reported import REPORTED
from repro.generate import write_qualitative
from repro.registry import Paper, Variant, presets_of_variant, register_paper

DATA = {"mnist": "dynamically binarised MNIST", "binarized_mnist": "statically binarised MNIST",
        "ptb": "PTB sentences (adaptation, no paper target)"}
CIFAR_REASON = "CIFAR-10 is not available here"


def _describe(row) -> str:
    posterior = (f"IAF posterior, {row.iaf_steps} steps of width {row.iaf_width}" if row.iaf_steps
                 else "diagonal Gaussian posterior")
    free_bits = (f", free bits (kingma_group_batchmean, lambda {row.lam:g} nats per dimension)"
                 if row.lam is not None else "")
    model = "LSTM VAE" if row.dataset == "ptb" else "convolutional VAE"
    return f"{DATA[row.dataset]}: {model}, {posterior}{free_bits}"


def _variant(name: str) -> Variant:
    row = ROWS[name]
    return Variant(
        name=name, description=_describe(row),
        model_config=IAFTextVAEConfig if row.dataset == "ptb" else ImageVAEConfig, build=build,
        presets=presets_of_variant(PRESETS, name),
        reported=REPORTED.get(name, {}),
        artifacts=write_qualitative if row.dataset == "ptb" else None,
        benchmark=row.dataset == "ptb", costly_posterior_density=bool(row.iaf_steps))


def _cifar_variant(name: str, description: str) -> Variant:
    return Variant(name=name, description=f"CIFAR-10: {description}", model_config=ImageVAEConfig,
                   build=build, presets=presets_of_variant(PRESETS, name, names=()),
                   reported=REPORTED[name], runnable=False, not_run_reason=CIFAR_REASON)


CIFAR = {
    "cifar10-resnet-iaf": "ResNet VAE with IAF (the paper's best model, Table 2)",
    **{f"cifar10-{p}-depth{d}": f"ablation: bidirectional ResNet VAE of depth {d}, {text}"
       for p, text in (("factorised", "factorised posterior"), ("iaf1", "IAF, 1 step"),
                       ("iaf2", "IAF, 2 steps"))
       for d in (4, 8, 12)},
}

PAPER = register_paper(Paper(
    name=NAME,
    title="Kingma et al. 2016 — Inverse autoregressive flow and free bits (MNIST Table 1; PTB adaptation)",
    citation=("Kingma, Salimans, Jozefowicz, Chen, Sutskever, Welling. Improved Variational "
              "Inference with Inverse Autoregressive Flow. NIPS 2016. arXiv:1606.04934."),
    variants={**{name: _variant(name) for name in ROWS},
              **{name: _cifar_variant(name, text) for name, text in CIFAR.items()}},
    table_metrics=("test/nll", "test/elbo", "test/kl", "test/mi", "test/au", "test/ppl",
                   "test/bits_per_dim"),
    notes=("MNIST in nats per image: the paper prints log-likelihoods (larger is better), shown "
           "here negated as NLL; `nll` is the importance-sampled estimate (K = 128 as the paper), "
           "`elbo` the negative VLB. KL is Monte Carlo for IAF rows (log q includes the flow's "
           "log-determinant) and always unclamped under free bits. MI uses minibatch pools of 32 "
           "for every row. The PTB rows are an adaptation with no paper target.\n\n"
           "The MNIST rows' presets now build App. B's network (strides 2, 1, 2, 1, 2 with "
           "convolutional shortcuts), train with Adamax and Polyak averaging (0.999) and "
           "stabilise the IAF (weight-normalised MADEs, outputs scaled by 0.1); a record made "
           "before that shows the earlier settings in its config, and the paragraphs below are "
           "about those records.\n\n"
           "Why the `cpu` rows miss the paper's MNIST numbers: they train 30 epochs where the "
           "paper trains to convergence (hundreds), and most reach their best validation bound in "
           "the last few (column best epoch / epochs of the second table), so they were still "
           "improving; the rows of MADE width 1920 run at 480. We believe these, not the "
           "method, account for most of the gap; a `paper`-preset run would tell. The exception "
           "is depth 8. On dynamic MNIST it diverged in its 17th epoch: rare posterior draws run "
           "away through the eight steps' shifts, which gradient clipping does not stop "
           "(`presets.py`); its row is the best-validation checkpoint of epoch 15. On static "
           "MNIST it diverged in its 26th epoch, and at the same batch again with half the "
           "learning rate; its row is the best-validation checkpoint of epoch 24, scored as it "
           "stood (the record's `train.stopped_by_divergence`). That checkpoint still has "
           "runaway draws, in two test images (`python -m papers.kingma2016_iaf.runaways`): "
           "image 6280 runs away in about 2 of 10,000 draws, and the evaluation's 100 draws of "
           "it caught one, which alone makes the row's Monte Carlo KL and ELBO. Its IW-NLL, "
           "whose weights ignore such draws, is in line with the other rows."),
))

__all__ = ["PAPER"]

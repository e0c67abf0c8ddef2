"""Chen et al. 2017, *Variational Lossy Autoencoder* (ICLR 2017).

Registers the paper's binary-MNIST rows (static and dynamic, with the App. D ablation), the
suite's PTB adaptation with a window-limited decoder, and the OMNIGLOT, Caltech-101 and
CIFAR-10 rows (kept with their numbers, not run); see `model.py` for the method and its
implementation details, `presets.py` for the rows, the settings and every reduction,
`reported.py` for the paper's numbers with their verification tags. Registration lives here
because the presets need the model's config classes.
"""
from papers.chen2017_vlae.model import build
from papers.chen2017_vlae.presets import NAME
from papers.chen2017_vlae.presets import PRESETS, ROWS
from papers.chen2017_vlae.reported import REPORTED
from repro.generate import write_qualitative
from repro.registry import Paper, Variant, presets_of_variant, register_paper

DATA = {"mnist": "dynamically binarised MNIST", "binarized_mnist": "statically binarised MNIST",
        "ptb": "PTB sentences (adaptation, no paper target)"}
DECODERS = {"factorised": "factorised Bernoulli decoder",
            "local": "local PixelCNN decoder (6 masked 3x3 layers)",
            "unrestricted": "unrestricted PixelCNN decoder (15 masked 3x3 layers)",
            "lstm": "LSTM decoder (whole history)",
            **{f"local{w}": f"CNN decoder seeing the previous {w} tokens" for w in (2, 4, 8)}}
PRIORS = {"gauss": "N(0, I) prior", "af": "AF prior", None: "no latent (exact likelihood)"}


def _describe(row) -> str:
    posterior = ", IAF posterior" if row.posterior == "iaf" else ""
    return f"{DATA[row.dataset]}: {DECODERS[row.decoder]}, {PRIORS[row.prior]}{posterior}"


def _variant(name: str) -> Variant:
    row = ROWS[name]
    cfg = PRESETS["smoke"](name)
    is_text_vae = row.dataset == "ptb" and row.prior is not None
    return Variant(
        name=name, description=_describe(row), model_config=type(cfg.model), build=build,
        presets=presets_of_variant(PRESETS, name),
        reported=REPORTED.get(name, {}),
        artifacts=write_qualitative if is_text_vae else None, benchmark=is_text_vae,
        costly_posterior_density=row.posterior == "iaf")


NOT_RUN = {
    "omniglot-unconditional": ("OMNIGLOT: local PixelCNN alone", "OMNIGLOT is not staged here"),
    "omniglot-vlae": ("OMNIGLOT: VLAE", "OMNIGLOT is not staged here"),
    "omniglot-vlae-finetuned": ("OMNIGLOT: VLAE, fine-tuned", "OMNIGLOT is not staged here"),
    "caltech101-unconditional": ("Caltech-101 Silhouettes: local PixelCNN alone",
                                 "Caltech-101 Silhouettes is not available here"),
    "caltech101-vlae": ("Caltech-101 Silhouettes: VLAE", "Caltech-101 Silhouettes is not available here"),
    "cifar10-resnet-vlae": ("CIFAR-10: ResNet VLAE (PixelCNN++ decoder, 8x8x16 latents)",
                            "CIFAR-10 is not available here"),
    "cifar10-densenet-vlae": ("CIFAR-10: DenseNet VLAE (the paper's best)", "CIFAR-10 is not available here"),
}


def _not_run(name: str) -> Variant:
    description, reason = NOT_RUN[name]
    return Variant(name=name, description=description,
                   model_config=type(PRESETS["smoke"]("mnist-vlae").model), build=build,
                   presets=presets_of_variant(PRESETS, name, names=()), reported=REPORTED[name],
                   runnable=False, not_run_reason=reason)


PAPER = register_paper(Paper(
    name=NAME,
    title="Chen et al. 2017 — Variational Lossy Autoencoder (binary MNIST; PTB adaptation)",
    citation=("Chen, Kingma, Salimans, Duan, Dhariwal, Schulman, Sutskever, Abbeel. Variational "
              "Lossy Autoencoder. ICLR 2017. arXiv:1611.02731."),
    variants={**{name: _variant(name) for name in ROWS}, **{name: _not_run(name) for name in NOT_RUN}},
    table_metrics=("test/nll", "test/elbo", "test/kl", "test/mi", "test/au", "test/ppl",
                   "test/bits_per_dim"),
    notes=("MNIST in nats per image; `nll` is the importance-sampled estimate (the paper's K = "
           "4096; K of our runs in the second table), `elbo` the negative ELBO. With an AF prior "
           "or IAF posterior the KL is Monte Carlo (log p(z) from the flow), always unclamped "
           "under free bits. MI over minibatch pools of 32 for every row. The paper's final runs "
           "train on train + valid; ours train on train and select on valid. PTB rows are the "
           "text adaptation of docs/papers/chen2017_vlae.md §Substitutes (window-limited decoder), "
           "with no paper target."),
))

__all__ = ["PAPER"]

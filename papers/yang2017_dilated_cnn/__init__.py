"""Yang et al. 2017, *Improved Variational Autoencoders for Text Modeling using Dilated
Convolutions* (ICML 2017).

Registers the paper's Yahoo table (Table 2) as fifteen variants -- LM, VAE and VAE + init for
an LSTM decoder and four dilated-CNN decoders (SCNN, MCNN, LCNN, VLCNN); see `model.py` for the
method and its implementation details, `presets.py` for the settings and every reduction from
the paper, `reported.py` for the paper's numbers with their verification tags. The registration
lives here rather than in `model.py` because the presets need the model's config classes.
"""
import functools
from dataclasses import replace

from papers.yang2017_dilated_cnn.model import build, initialise_encoder
from papers.yang2017_dilated_cnn.presets import NAME
from papers.yang2017_dilated_cnn.presets import INIT_LM, PRESETS, VARIANTS
from repro.protocols import PROTOCOLS
from papers.yang2017_dilated_cnn.reported import REPORTED
from repro.generate import write_qualitative
from repro.registry import Paper, Variant, presets_of_variant, register_paper

DECODER_NAMES = {
    "lstm": "LSTM decoder",
    "scnn": "small dilated CNN decoder (SCNN)",
    "mcnn": "medium dilated CNN decoder (MCNN)",
    "lcnn": "large dilated CNN decoder (LCNN)",
    "vlcnn": "very large dilated CNN decoder (VLCNN)",
}
KIND_NAMES = {
    "lm": "language model (exact likelihood)",
    "vae": "VAE with an LSTM encoder, linear KL annealing",
    "vae-init": f"VAE whose encoder starts from the trained {INIT_LM} run ('+ init')",
}


def _benchmark_lm(variant: str, proto):
    """The "+ init" LM for a benchmark protocol: the LSTM-LM at the protocol's data, schedule
    and encoder sizes, so that the benchmark's "+ init" rows find a run at their own preset."""
    cfg = PRESETS[proto.scale](variant)
    model = replace(cfg.model, embed_size=proto.embed_size, hidden_size=proto.encoder_hidden)
    return replace(cfg, preset=proto.preset, model=model, data=replace(proto.data),
                   optim=replace(proto.optim), train=replace(proto.train), eval=replace(proto.eval))


# The "+ init" LM has the paper's presets and one per benchmark protocol (not a benchmarked
# variant itself, so `resolve` adds no protocol presets for it).
INIT_LM_PRESETS = {**PRESETS, **{proto.preset: functools.partial(_benchmark_lm, proto=proto)
                                 for proto in PROTOCOLS.values()}}


def _variant(name: str) -> Variant:
    decoder, kind = name.split("-", 1)
    cfg = PRESETS["smoke"](name)
    init_lm = getattr(cfg.model, "encoder_init_lm", None)
    return Variant(
        name=name, description=f"{DECODER_NAMES[decoder]}: {KIND_NAMES[kind]}",
        model_config=type(cfg.model), build=build,
        presets=presets_of_variant(INIT_LM_PRESETS if name == INIT_LM else PRESETS, name),
        reported=REPORTED.get(name, {}),
        artifacts=None if kind == "lm" else write_qualitative, benchmark=kind != "lm",
        initialise=initialise_encoder if init_lm else None,
        requires=(init_lm,) if init_lm else ())


PAPER = register_paper(Paper(
    name=NAME,
    title="Yang et al. 2017 — VAEs for text with dilated CNN decoders (Yahoo, Table 2)",
    citation=("Yang, Hu, Salakhutdinov, Berg-Kirkpatrick. Improved Variational Autoencoders for "
              "Text Modeling using Dilated Convolutions. ICML 2017. arXiv:1702.08139."),
    variants={name: _variant(name) for name in VARIANTS},
    table_metrics=("test/nll", "test/ppl", "test/elbo", "test/elbo_ppl", "test/kl", "test/mi", "test/au"),
    notes=("The paper scores VAEs by the negative ELBO (a bound) and LMs by exact NLL; we report "
           "IW-NLL (K in the second table) and the ELBO for every latent row. Yahoo documents in "
           "the paper; the cpu runs use PTB sentences as a declared substitute with shorter "
           "dilation sets, so no number is comparable. The paper's 'CNN' rows (the best CNN "
           "configuration, not named; docs/papers/yang2017_dilated_cnn.md §Results) are attached "
           "to LCNN: that attribution is ours. "
           f"'+ init' rows start their encoder from the finished {INIT_LM} run of the same preset "
           "and seed (train it first); the rest of the model and the optimiser start fresh.")))

__all__ = ["PAPER"]

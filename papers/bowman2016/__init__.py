"""Bowman et al. 2016, *Generating Sentences from a Continuous Space* (CoNLL 2016).

Registers the paper's language-modelling table (Table 2, PTB) as variants; see `model.py` for
the method and its implementation details, `presets.py` for the settings and every reduction
from the paper, `reported.py` for the paper's numbers with their verification tags.
"""
from papers.bowman2016.model import build
from papers.bowman2016.presets import MODELS, PRESETS
from papers.bowman2016.reported import REPORTED
from repro.generate import write_qualitative
from repro.registry import Paper, Variant, presets_of_variant, register_paper
from repro.sentence_models import LSTMLMConfig, TextVAEConfig

DESCRIPTIONS = {
    "rnnlm": "LSTM language model (exact likelihood)",
    "vae": "LSTM-VAE, no annealing, no word dropout (expected to collapse: KL ~ 0)",
    "vae-anneal-worddrop": "LSTM-VAE with logistic KL annealing and word dropout",
    "rnnlm-inputless": "LSTM language model whose inputs are all dropped",
    "vae-inputless": "LSTM-VAE with annealing and an inputless decoder (keep rate 0)",
}


def _variant(name: str) -> Variant:
    is_vae = isinstance(MODELS[name], TextVAEConfig)
    return Variant(
        name=name, description=DESCRIPTIONS[name],
        model_config=TextVAEConfig if is_vae else LSTMLMConfig, build=build,
        presets=presets_of_variant(PRESETS, name),
        reported=REPORTED[name], artifacts=write_qualitative if is_vae else None,
        benchmark=name != "rnnlm-inputless")   # the LSTM LM is the benchmark's no-latent reference


PAPER = register_paper(Paper(
    name="bowman2016",
    title="Bowman et al. 2016 — Generating Sentences from a Continuous Space (PTB, Table 2)",
    citation="Bowman, Vilnis, Vinyals, Dai, Jozefowicz, Bengio. CoNLL 2016. arXiv:1511.06349.",
    variants={name: _variant(name) for name in MODELS},
    table_metrics=("test/nll", "test/ppl", "test/elbo", "test/elbo_ppl", "test/kl", "test/mi", "test/au"),
    notes=("The paper scores VAEs by the negative ELBO and the RNNLM by exact NLL; we report both "
           "IW-NLL (K in the second table) and the ELBO for every latent model. Per-sentence PTB; "
           "not comparable with stream-LM perplexities.\n\n"
           "Tuning sweep (`presets.py`): the `vae-anneal-worddrop` rows labelled `cpu + ... "
           "eval.max_examples=500 ...` are the validation sweep over the word keep rate (0.38 or "
           "0.62; shown only where it differs from the preset's 0.62) and the annealing midpoint "
           "`model.kl.logistic_x0` (1,300 / 2,500 / 5,000 updates; shown only where it differs from "
           "2,500). Their validation and test numbers are on the first 500 sentences of each split "
           "(K = 10), so they compare with each other, not with the other rows. Rule, fixed before "
           "the runs: among settings whose validation KL at the tested epoch is at least 1 nat, the "
           "lowest validation objective (negative ELBO) sets the `paper` preset."),
))

__all__ = ["PAPER"]

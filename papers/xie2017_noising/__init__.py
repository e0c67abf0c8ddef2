"""Xie et al. 2017, *Data Noising as Smoothing in Neural Network Language Models* (ICLR 2017).

Registers the paper's PTB language-modelling table as variants (its stream LM reads the core's
`ptb_stream` dataset, `repro/data/stream.py`) and the benchmark's noising VAE (`vae.py`); see
`model.py` for the method and its implementation details, `presets.py` for the settings and every reduction, `reported.py` for what is known of its numbers
(docs/papers/xie2017_noising.md §Results).
Registration lives here, not in `model.py`, because the presets need the model's config class.
"""
from papers.xie2017_noising.model import NoisingLMConfig, build
from papers.xie2017_noising.presets import MODELS, PRESETS, SIZES
from papers.xie2017_noising import vae
from papers.xie2017_noising.reported import CONTEXT, REPORTED
from repro.registry import Paper, Variant, presets_of_variant, register_paper

SCHEME_TEXT = {"none": "no noising (dropout only): the baseline",
               "blank": "blank noising: input -> <_> with probability γ",
               "unigram": "unigram noising: input -> unigram draw with probability γ",
               "bigram-kn": "bigram KN noising: input and target -> continuation draws "
                            "with probability γ N1+(x,•)/c(x)"}


def _variant(name: str) -> Variant:
    size, scheme = name.split("-", 1)
    model = MODELS[name]
    description = (f"2-layer LSTM LM, {SIZES[size]} units (paper preset), dropout {model.dropout}, "
                   f"{SCHEME_TEXT[scheme]}" + (f", γ = {model.noise.gamma}" if scheme != "none" else ""))
    return Variant(
        name=name, description=description, model_config=NoisingLMConfig, build=build,
        presets=presets_of_variant(PRESETS, name), reported=REPORTED[name])


def _vae_variant() -> Variant:
    return Variant(
        name=vae.NAME, description=(f"LSTM-VAE (Bowman sizes), unigram noising of decoder inputs, "
                                    f"γ = {vae.GAMMA}, KL weight 1: the benchmark's noising row "
                                    "(no paper number)"),
        model_config=vae.NoisedTextVAEConfig, build=vae.build,
        presets=presets_of_variant(PRESETS, vae.NAME), benchmark=True, in_paper_table=False)


PAPER = register_paper(Paper(
    name="xie2017_noising",
    title="Xie et al. 2017 — Data Noising as Smoothing in Neural Network Language Models (PTB)",
    citation=("Xie, Wang, Li, Lévy, Nie, Jurafsky, Ng. ICLR 2017. arXiv:1703.02573. "
              "Code: stanfordmlgroup/nlm-noising."),
    variants={**{name: _variant(name) for name in MODELS}, vae.NAME: _vae_variant()},
    table_metrics=("test/ppl",),
    notes=("`test/ppl` here is a stream perplexity: per token of the continuous PTB test stream, "
           "`<eos>` counted, LSTM state carried across sentences, batch 1 (the paper's protocol). "
           "It is not comparable with the per-sentence PTB perplexities of the sentence-VAE "
           "papers (bowman2016 and others). The paper's PTB table was not retrieved, so no row "
           "has a target; the claim to check is relative, each noising row against the "
           "dropout-only row of the same size and preset "
           "(`papers.xie2017_noising.reported.relative_gains`). γ = 0.2 is the README's value "
           "for bigram KN noising; blank and unigram noising reuse it untuned, where the paper tuned γ "
           "per scheme (presets.py). The same γ is not the same noise: blank and unigram "
           "noising replace 20% of the inputs; bigram KN noises 5.7% of the positions of the "
           "full PTB stream but 10.2% of the cpu preset's 10% subset (its sparser counts raise "
           "N1+(x,•)/c(x)), 1.8 times as many at the same γ, input and target each time. "
           "Every preset halves the rate and restores the best epoch after each epoch without a "
           "new best, and stops after the 9th halving, as the code. "
           "The cpu preset caps training at 40 epochs: a row whose best epoch is its last (table) "
           "was still improving, so read a small difference against its learning-rate decays "
           "(the record's history). "
           + CONTEXT),
))

__all__ = ["PAPER"]

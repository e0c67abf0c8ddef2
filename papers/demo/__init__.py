"""`repro demo`: posterior collapse and two remedies, on the synthetic corpus, in minutes on a CPU.

Three LSTM-VAEs with the same architecture are trained on sentences whose true latent is known:
the plain VAE (KL weight 1 from the start), the same with logistic KL annealing and word
dropout (Bowman et al. 2016), and with Kingma et al.'s free bits. The table shows the plain
model's KL, mutual information and active units near zero and the others' clearly above it.
It teaches; it reproduces no paper, so it has no results table and no lease jobs
(`reproduces_a_paper=False`). `repro/demo.py` runs it.
"""
from papers.demo.presets import DESCRIPTIONS, MODELS, NAME, PRESETS
from repro.registry import Paper, Variant, presets_of_variant, register_paper
from repro.sentence_models import TextVAE, TextVAEConfig


def build(cfg, corpus) -> TextVAE:
    return TextVAE(cfg.model, corpus.vocab)


PAPER = register_paper(Paper(
    name=NAME, title="Demo: posterior collapse on the synthetic corpus",
    citation="Synthetic data after He et al. 2019; remedies after Bowman et al. 2016 and Kingma et al. 2016.",
    table_metrics=("test/nll", "test/kl", "test/mi", "test/au"),
    variants={name: Variant(name, DESCRIPTIONS[name], TextVAEConfig, build,
                            presets_of_variant(PRESETS, name))
              for name in MODELS},
    reproduces_a_paper=False))

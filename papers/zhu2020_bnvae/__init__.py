"""Zhu et al. 2020, *A Batch Normalized Inference Network Keeps the KL Vanishing Away* (ACL
2020): BN-VAE on PTB, a declared substitute for Yahoo.

Registers one variant per fixed batch-norm scale gamma; see `model.py` for the mechanism and
its implementation details, `presets.py` for the settings and every reduction, `reported.py`
for the paper's numbers (none retrieved).
"""
from papers.zhu2020_bnvae.model import BNVAEConfig, build
from papers.zhu2020_bnvae.presets import GAMMAS, NAME, PRESETS
from papers.zhu2020_bnvae.reported import REPORTED
from repro.generate import write_qualitative
from repro.registry import Paper, Variant, presets_of_variant, register_paper

PAPER = register_paper(Paper(
    name=NAME,
    title="Zhu et al. 2020 — BN-VAE: batch-normalised posterior mean (PTB for Yahoo)",
    citation=("Zhu, Bi, Liu, Ma, Li, Wu. ACL 2020. arXiv:2004.12585. Code: valdersoul/bn-vae."),
    variants={name: Variant(name, f"LSTM-VAE, posterior mean batch-normalised with fixed scale "
                                  f"gamma = {gamma} (KL floor {32 * gamma ** 2 / 2:.2f} nats at latent 32)",
                            BNVAEConfig, build, presets_of_variant(PRESETS, name),
                            reported=REPORTED[name], artifacts=write_qualitative, benchmark=True)
              for name, gamma in GAMMAS.items()},
    table_metrics=("test/nll", "test/ppl", "test/elbo", "test/kl", "test/mi", "test/au"),
    notes=("PTB stands in for the README's Yahoo (not on disk), with the official repository's "
           "PTB sizes; the paper's numbers were not retrieved. The batch norm on the posterior "
           "mean bounds the training batches' mean KL below by n gamma^2 / 2: 4.00 / 5.76 / 7.84 "
           "nats for gamma = 0.5 / 0.6 / 0.7 at n = 32. The test KL is measured in evaluation "
           "mode (running statistics), where the bound holds only as far as those statistics "
           "match the test set's."),
))

__all__ = ["PAPER"]

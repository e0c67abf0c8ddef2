"""Shen, Su, Niu, Demberg 2018, *Improving Variational Encoder-Decoders in Dialogue Generation*
(AAAI 2018): two-phase training with an auxiliary autoencoder.

Registers the plain dialog VED, the VED with KL annealing, the two-phase training with the
paper's implicit phase-2 latent, and the same with a Gaussian latent (ablation) as variants on
DailyDialog. See `model.py` for the method and its implementation details, `presets.py` for the
settings (all the suite's: only the abstract was retrieved) and every reduction, `reported.py`
for why no paper number is compared and the table's metrics.
"""
from papers.shen2018_aux_ae.model import build
from papers.shen2018_aux_ae.presets import MODELS, PRESETS
from papers.shen2018_aux_ae.reported import REPORTED, TABLE_METRICS
from repro.dialog_models import write_dialog_evaluation
from repro.registry import Paper, Variant, presets_of_variant, register_paper

DESCRIPTIONS = {
    "ved": "dialog VED (CVAE), KL weight 1 from the start (expected to collapse: KL ~ 0)",
    "ved-kl-anneal": "dialog VED with linear KL annealing",
    "aux-ae-two-phase": ("two-phase: response autoencoder, then a VED from the context to the "
                         "autoencoder's codes with an implicit latent (noise through MLPs), its "
                         "posterior held to its prior by MMD^2 (Gaussian RBF, median bandwidth)"),
    "aux-ae-two-phase-gaussian": ("ablation of aux-ae-two-phase: the phase-2 latent a diagonal "
                                  "Gaussian, regularised by the analytic KL"),
}
READING_NOTES = {
    "aux-ae-two-phase": ("implicit latent, no density: NLL, PPL, ELBO, KL and MI are not defined; "
                         "test/mmd is the phase-2 regulariser (an MMD^2, not a KL); AU counts "
                         "units over Monte Carlo estimates of E[z|x] (100 draws each)"),
}


def _variant(name: str) -> Variant:
    return Variant(name=name, description=DESCRIPTIONS[name], model_config=type(MODELS[name]), build=build,
                   presets=presets_of_variant(PRESETS, name), reported=REPORTED[name],
                   evaluate_extra=write_dialog_evaluation, reading_note=READING_NOTES.get(name, ""))


PAPER = register_paper(Paper(
    name="shen2018_aux_ae",
    title=("Shen et al. 2018 — two-phase training of dialog VEDs with an auxiliary autoencoder "
           "(DailyDialog)"),
    citation="Shen, Su, Niu, Demberg. AAAI 2018. doi:10.1609/aaai.v32i1.11960. arXiv:1802.02032.",
    variants={name: _variant(name) for name in MODELS},
    table_metrics=TABLE_METRICS,
    notes=("No paper reference: only the abstract was retrieved, so every architecture and "
           "training setting is the suite's (papers/shen2018_aux_ae/presets.py). The two-phase row "
           "has the abstract's implicit phase-2 latent (noise through MLPs); the regulariser between "
           "its posterior and prior is not known from the paper, and ours is MMD^2 (Gaussian RBF "
           "kernel, median-heuristic bandwidth), reported as test/mmd. It has no density, so no "
           "NLL, PPL, ELBO, KL or MI; its AU counts units over Monte Carlo estimates of E[z|x]. "
           "The -gaussian row is the same model with a diagonal Gaussian latent and the analytic "
           "KL; its NLL scores the phase-1 decoder fed the phase-2 code g(c, z). BLEU is "
           "Zhao's sentence BLEU (method7) over N = 10 prior samples, single reference, from the "
           "kgCVAE package's driver (`repro.dialog_models`); samples are in each run's "
           "`dialog_samples.txt`."),
))

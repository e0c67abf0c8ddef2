"""Zhao, Zhao, Eskenazi 2017, *Learning Discourse-level Diversity for Neural Dialog Models using
Conditional Variational Autoencoders* (ACL 2017): CVAE and kgCVAE with the bag-of-words loss.

Registers one variant per row: the encoder-decoder baseline, CVAE (KL annealing only), CVAE +
BoW (the paper's CVAE) and kgCVAE (+ BoW). See `model.py` for the method and its implementation
details, `presets.py` for the settings and every reduction, `reported.py` for the numbers.
"""
from papers.zhao2017_kgcvae.model import build
from papers.zhao2017_kgcvae.presets import MODELS, PRESETS
from papers.zhao2017_kgcvae.reported import NUM_SAMPLES, REPORTED, bleu
from repro.dialog_models import sampled_metric_name, write_dialog_evaluation
from repro.registry import Paper, Variant, presets_of_variant, register_paper

DESCRIPTIONS = {
    "baseline": "HRED-style encoder-decoder, no latent (exact likelihood)",
    "cvae": "CVAE with KL annealing, no bag-of-words loss (expected: small KL)",
    "cvae-bow": "CVAE with KL annealing and the bag-of-words loss (the paper's CVAE)",
    "kgcvae": "knowledge-guided CVAE: dialog act predicted from (c, z) and fed to the decoder; + BoW",
}


def _variant(name: str) -> Variant:
    return Variant(name=name, description=DESCRIPTIONS[name], model_config=type(MODELS[name]), build=build,
                   presets=presets_of_variant(PRESETS, name), reported=REPORTED[name],
                   evaluate_extra=write_dialog_evaluation)


def _sampled(base: str) -> str:
    return "test/" + sampled_metric_name(base, NUM_SAMPLES)


PAPER = register_paper(Paper(
    name="zhao2017_kgcvae",
    title=("Zhao et al. 2017 — CVAE and kgCVAE with a bag-of-words loss for dialog "
           "(Switchboard; DailyDialog substitute in the cpu runs)"),
    citation="Zhao, Zhao, Eskenazi. ACL 2017. arXiv:1703.10960.",
    variants={name: _variant(name) for name in MODELS},
    table_metrics=("test/ppl", "test/rc_ppl_posterior", "test/kl", "test/nll", "test/elbo_ppl",
                   "test/mi", "test/au",
                   *(bleu(kind, order) for order in range(1, 5) for kind in ("rec", "prec")),
                   "test/" + sampled_metric_name("sacrebleu_corpus", 1, references=1),
                   _sampled("distinct_1"), _sampled("distinct_2"), _sampled("act_acc_prior")),
    notes=("DailyDialog substitute (4 dialog acts, one reference per context) for Switchboard in the "
           "cpu runs, so no number is on the paper's scale. `rc_ppl_posterior` is the released code's "
           "perplexity (posterior z, KL left out), not a bound; `ppl`/`nll` are the IW bound (exact "
           "for the baseline), with kgCVAE's decoder fed its predicted act. BLEU is Zhao's sentence "
           "BLEU (method7) over N = 10 prior samples, precision = mean, recall = max, single "
           "reference; samples are in each run's `dialog_samples.txt`. The paper's BLEU is "
           "multi-reference (precision = mean over samples of the best reference, recall = mean "
           "over references of the best sample; `repro.bleu.zhao_bleu` computes it), against a "
           "reference set for the SwDA test split that is not in the shared data: its reprinted "
           "baseline BLEU is not on our scale, on any dataset."),
))

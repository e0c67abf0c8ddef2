"""Shen et al. 2018's numbers: none. Only the paper's abstract was retrieved; it gives no table,
baseline list or number, so every metric of the table carries "not retrieved" for every
variant, and the table says "no paper number" on each row.

`TABLE_METRICS` are the suite's protocol for this paper (docs/metrics.md §1-§8,
docs/papers/shen2018_aux_ae.md §Evaluation): the shared
evaluation's IW-NLL, PPL, ELBO, KL, MI, AU, the kgCVAE code's reconstruction perplexity, the
sampled-response metrics over N = 10 prior samples with one reference, and, for the implicit
latent, the phase-2 regulariser and match (`test/mmd`, `test/match`).

Each variant lists only the metrics defined for it. The implicit-latent two-phase model has no
density, so it has no IW-NLL, PPL, ELBO, KL or MI: its regulariser is an MMD^2, reported as
`test/mmd` and never as a KL; its AU is counted on Monte Carlo estimates of E[z|x]. The
Gaussian models have no MMD.
"""
from repro.dialog_models import sampled_metric_name
from repro.registry import Reported

NUM_SAMPLES = 10  # the suite's protocol: N = 10 prior samples per context
SOURCE = "paper: abstract only; no table, baseline list or number retrieved"
DENSITY_METRICS = ("test/nll", "test/ppl", "test/elbo", "test/kl", "test/mi")
IMPLICIT_METRICS = ("test/mmd", "test/match")
IMPLICIT_VARIANTS = ("aux-ae-two-phase",)
GAUSSIAN_VARIANTS = ("ved", "ved-kl-anneal", "aux-ae-two-phase-gaussian")


def sampled(base: str, references: int | None = None) -> str:
    return "test/" + sampled_metric_name(base, NUM_SAMPLES, references)


TABLE_METRICS = (
    *DENSITY_METRICS, "test/au", *IMPLICIT_METRICS, "test/rc_ppl_posterior",
    *(sampled(f"bleu_zhao_{kind}_{order}", 1) for order in range(1, 5) for kind in ("prec", "rec")),
    "test/" + sampled_metric_name("sacrebleu_corpus", 1, 1), sampled("distinct_1"), sampled("distinct_2"),
)


def _not_retrieved(excluded: tuple[str, ...]) -> dict[str, Reported]:
    return {name: Reported(None, "not retrieved", SOURCE) for name in TABLE_METRICS if name not in excluded}


REPORTED = {**{v: _not_retrieved(IMPLICIT_METRICS) for v in GAUSSIAN_VARIANTS},
            **{v: _not_retrieved(DENSITY_METRICS) for v in IMPLICIT_VARIANTS}}

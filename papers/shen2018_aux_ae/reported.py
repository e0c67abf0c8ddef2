"""Shen et al. 2018's numbers: none. The card (`shared/papers/shen2018_aux_ae.md`) retrieved the
abstract only ("Reported results: not retrieved. No table, baseline list or number is
available"), so every metric of the table carries "not retrieved" for every variant, and the
table says "no paper number" on each row.

`TABLE_METRICS` are the suite's protocol for this card (METRICS.md sections 1-8): the shared
evaluation's IW-NLL, PPL, ELBO, KL, MI, AU, the kgCVAE code's reconstruction perplexity, and the
sampled-response metrics over N = 10 prior samples with one reference.
"""
from repro.dialog import sampled_metric_name
from repro.registry import Reported

NUM_SAMPLES = 10  # the card's suite protocol: N = 10 prior samples per context
CARD = "paper card: abstract only; no table, baseline list or number retrieved"


def sampled(base: str, references: int | None = None) -> str:
    return "test/" + sampled_metric_name(base, NUM_SAMPLES, references)


TABLE_METRICS = (
    "test/nll", "test/ppl", "test/elbo", "test/kl", "test/mi", "test/au", "test/rc_ppl_posterior",
    *(sampled(f"bleu_zhao_{kind}_{order}", 1) for order in range(1, 5) for kind in ("prec", "rec")),
    "test/" + sampled_metric_name("sacrebleu_corpus", 1, 1), sampled("distinct_1"), sampled("distinct_2"),
)

REPORTED = {variant: {name: Reported(None, "not retrieved", CARD) for name in TABLE_METRICS}
            for variant in ("ved", "ved-kl-anneal", "aux-ae-two-phase")}

"""Bowman et al. 2016, Table 2 (PTB test), as recorded in
`docs/papers/bowman2016.md §Results`. NLL per sentence and KL in nats, PPL per word.

The paper scores its VAE with the negative ELBO (a bound) and its RNNLM with the exact
likelihood, so the VAE rows are compared with our `test/elbo` / `test/elbo_ppl`, the RNNLM rows
with `test/nll` / `test/ppl`. No number here is verified against the PDF: all are hints.
"""
from repro.registry import Reported

REPRINT = ("dDua/SentenceIAF README (and one more independent copy), "
           "per docs/papers/bowman2016.md §Results")
MEMORY = "researcher's memory, per docs/papers/bowman2016.md §Results"

REPORTED = {
    "rnnlm": {
        "test/nll": Reported(100, "unverified (memory)", MEMORY),
        "test/ppl": Reported(116, "unverified (memory)", MEMORY),
    },
    "vae": {},  # not a row of Table 2: the paper only states that it collapses (KL -> 0)
    "vae-anneal-worddrop": {
        "test/elbo": Reported(101, "unverified (reprint)", REPRINT),
        "test/kl": Reported(2, "unverified (reprint)", REPRINT),
        "test/elbo_ppl": Reported(119, "unverified (reprint)", REPRINT),
    },
    "rnnlm-inputless": {
        "test/nll": Reported(135, "unverified (memory)", MEMORY),
        "test/ppl": Reported(600, "unverified (memory)", MEMORY, note="the paper prints > 600"),
    },
    "vae-inputless": {
        "test/elbo": Reported(125, "unverified (memory)", MEMORY),
        "test/kl": Reported(15, "unverified (memory)", MEMORY),
        "test/elbo_ppl": Reported(380, "unverified (reprint)",
                                  "third-party research notes, per docs/papers/bowman2016.md §Results"),
    },
}

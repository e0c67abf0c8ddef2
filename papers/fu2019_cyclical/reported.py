"""Fu et al. 2019's PTB numbers (docs/papers/fu2019_cyclical.md §Results): none retrieved.

The paper's language-modelling table (VAE with monotonic and with cyclical annealing on PTB) was
not read, so each of its two rows holds a "not retrieved" entry and the table sets our cyclical
runs against our monotonic baseline. The ramp-shape variants are not rows of that table.
"""
from repro.registry import Reported

SOURCE = "not retrieved: Fu et al. 2019's PTB table has not been read (docs/papers/fu2019_cyclical.md §Results)"
NOTE = "the paper scores the single-sample negative ELBO (our test/elbo)"

REPORTED = {
    "cyclical": {"test/elbo": Reported(None, "not retrieved", SOURCE, NOTE)},
    "cyclical-sigmoid": {},
    "cyclical-cosine": {},
    "monotonic": {"test/elbo": Reported(None, "not retrieved", SOURCE, NOTE)},
}

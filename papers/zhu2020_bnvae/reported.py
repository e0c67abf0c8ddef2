"""Zhu et al. 2020's numbers (docs/papers/zhu2020_bnvae.md §Results): none retrieved.

Their tables were not read, and their data (Yahoo, Yelp) is not ours (PTB substitutes), so no
row holds a number. The bound n gamma^2 / 2 on the expected KL is arithmetic, not a reported
result: the claim tests read the records against it, and the table's notes give its values.
"""
from repro.registry import Reported

SOURCE = "not retrieved: Zhu et al. 2020's tables have not been read (docs/papers/zhu2020_bnvae.md §Results)"

REPORTED = {variant: {"test/nll": Reported(None, "not retrieved", SOURCE,
                                           "the paper's rows are on Yahoo and Yelp; ours on PTB")}
            for variant in ("bn-vae-0.5", "bn-vae-0.6", "bn-vae-0.7")}

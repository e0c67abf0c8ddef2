"""Li et al. 2019's numbers: none retrieved. The paper's PTB table (and its Yahoo / Yelp ones)
were not read, so every metric of every row is "not retrieved" and the table shows ours only
(docs/papers/li2019_pretrain_fb.md §Results).
"""
from papers.li2019_pretrain_fb.presets import VARIANTS
from repro.registry import Reported

SOURCE = "EMNLP 2019 paper, PTB table: not retrieved"
TABLE_METRICS = ("test/nll", "test/ppl", "test/rec", "test/kl", "test/mi", "test/au")

REPORTED = {variant: {name: Reported(None, "not retrieved", SOURCE) for name in TABLE_METRICS}
            for variant in VARIANTS}

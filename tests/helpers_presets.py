"""A `paper` preset's config and a corpus to feed it here, for the tests that step every paper
preset (`test_presets.py` on the CPU, `test_cuda.py` on a lent GPU)."""
import dataclasses

import pytest

from repro.data import load_corpus
from repro.data.sources import DataError
from repro.registry import resolve


def paper_preset_and_corpus(paper: str, variant: str, batch_size: int | None = None):
    """(variant, config, corpus, split to train on): the paper preset's model config with the
    smoke preset's reduced data where that reads the paper's corpus (else the paper's corpus,
    whose first split present stands in for train: SwDA has no train split here); the paper's
    batch sizes unless `batch_size` says otherwise. Skips a row that is not runnable here."""
    var, cfg = resolve(paper, variant, "paper")
    smoke = resolve(paper, variant, "smoke")[1].data if "smoke" in var.presets else None
    data = smoke if smoke is not None and smoke.dataset == cfg.data.dataset else cfg.data
    cfg.data = dataclasses.replace(data, batch_size=batch_size or cfg.data.batch_size,
                                   eval_batch_size=cfg.data.eval_batch_size)
    try:
        corpus = load_corpus(cfg.data)
    except DataError as err:
        if var.runnable:
            raise
        pytest.skip(f"not runnable here ({var.not_run_reason}): {str(err).splitlines()[0]}")
    split = "train" if "train" in corpus.splits else sorted(corpus.splits)[0]
    return var, cfg, corpus, split

"""Datasets by name: `load_corpus(DataConfig)` returns a corpus whose batches the models take.

Every corpus has `.kind` (text | dialog | image), `.vocab` (None for images), `.sha256`,
`.splits` (`{split: object with len() and subset(n)}`) and
`.batches(split, batch_size, shuffle, seed=0, epoch=0)`, whose batches offer `size`,
`num_targets` (None for images) and `to(device)`.

`LOADERS` names every dataset and its loader, one line each; file lookup and checksums live in
`sources`.
"""
from __future__ import annotations

import math
from typing import Callable

from repro.config import ConfigError
from repro.data import dialog, images, stream, synthetic, text
from repro.data.sources import (DATASETS, DataError, FileCheck, data_sha256, fetch, info, locate,
                                open_text, spec, split_files, verify)
from repro.data.text import TextBatch, TextCorpus, TextSplit, Vocab, bucketed_batches, build_corpus

__all__ = ["DATASETS", "DataError", "FileCheck", "LOADERS", "TextBatch", "TextCorpus", "TextSplit",
           "Vocab", "bucketed_batches", "build_corpus", "data_sha256", "fetch", "info", "load_corpus",
           "locate", "open_text", "planned_updates_per_epoch", "spec", "split_files",
           "updates_per_epoch", "verify"]

LOADERS: dict[str, Callable] = {
    "ptb": text.load_ptb,
    "yahoo": text.load_yahoo,
    "yelp": text.load_yelp,
    "ptb_stream": stream.load_ptb_stream,       # PTB as one token stream (Xie et al.'s LM)
    "dailydialog": dialog.load_dailydialog,
    "swda": dialog.load_swda,
    "binarized_mnist": images.load_binarized_mnist,
    "mnist": images.load_mnist,
    "synthetic": synthetic.load_synthetic,
}


def load_corpus(cfg):
    """The corpus named by `cfg.dataset` (a `DataConfig`), with `train_fraction` applied."""
    if cfg.dataset not in LOADERS:
        raise DataError(f"unknown dataset {cfg.dataset!r}; known: {sorted(LOADERS)}")
    corpus = LOADERS[cfg.dataset](cfg)
    if cfg.train_on_valid and corpus.kind != "image":
        raise DataError(f"data.train_on_valid is implemented for image corpora, not {cfg.dataset!r}")
    if cfg.train_fraction < 1.0 and "train" in corpus.splits:
        train = corpus.splits["train"]
        corpus.splits["train"] = train.subset(max(1, int(len(train) * cfg.train_fraction)))
    return corpus


def updates_per_epoch(cfg, corpus) -> int:
    """Training batches per epoch (the bucketed split is cut into ceil(N / batch) batches); 0 for
    a corpus without a train split. Methods that switch phase at an epoch boundary (Yang's
    +init, Shen's two-phase training) convert epochs to update steps with it."""
    if "train" not in corpus.splits:
        return 0
    return math.ceil(len(corpus.split("train")) / cfg.data.batch_size)


# Training examples of the corpora whose presets count schedules in epochs (measured on the
# staged files), so that a preset converts epochs to updates without loading the data.
TRAIN_EXAMPLES = {"ptb": 42_068}


def planned_updates_per_epoch(data) -> int:
    """`updates_per_epoch` of a `DataConfig` before its corpus is loaded: `TRAIN_EXAMPLES` (the
    generated corpus: its configured size), cut to `train_fraction` as `load_corpus` cuts them,
    in batches of `data.batch_size`. For presets with schedules in epochs (Fu et al.'s cycles,
    Zhu et al.'s warm-up)."""
    if data.dataset == "synthetic":
        total = data.synthetic.num_train
    elif data.dataset in TRAIN_EXAMPLES:
        total = TRAIN_EXAMPLES[data.dataset]
    else:
        raise ConfigError(f"the number of {data.dataset} training examples is not known before "
                          f"loading it: schedules in epochs support {sorted(TRAIN_EXAMPLES)} and synthetic")
    examples = max(1, int(total * data.train_fraction))
    return math.ceil(examples / data.batch_size)



"""Datasets by name: `load_corpus(DataConfig)` returns a corpus whose batches the models take.

Every corpus has `.kind` (text | dialog | image), `.vocab` (None for images), `.sha256`,
`.splits` (`{split: object with len() and subset(n)}`) and
`.batches(split, batch_size, shuffle, seed=0, epoch=0)`, whose batches offer `size`,
`num_targets` (None for images) and `to(device)`.

Loaders register here by dataset name; file lookup and checksums live in `sources`.
"""
from __future__ import annotations

from typing import Callable

from repro.data.sources import (DATASETS, DataError, FileCheck, data_sha256, fetch, info, locate,
                                open_text, spec, verify)
from repro.data.text import TextBatch, TextCorpus, TextSplit, Vocab, bucketed_batches, build_corpus

__all__ = ["DATASETS", "DataError", "FileCheck", "LOADERS", "TextBatch", "TextCorpus", "TextSplit",
           "Vocab", "bucketed_batches", "build_corpus", "data_sha256", "fetch", "info", "load_corpus",
           "loader", "locate", "open_text", "spec", "split_files", "verify"]

LOADERS: dict[str, Callable] = {}


def loader(name: str):
    def wrap(fn):
        LOADERS[name] = fn
        return fn
    return wrap


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


def split_files(name: str) -> dict:
    """`{split: verified path}` for a corpus stored one file per split (missing optional splits left out)."""
    paths = locate(name)
    return {f.split: paths[f.name] for f in spec(name).files if f.split and f.name in paths}


def _documents(name: str, cfg, preprocess=None) -> TextCorpus:
    """A one-document-per-line corpus from whichever of its splits are present."""
    files = split_files(name)
    if not files:
        raise DataError(f"no split of {name!r} is available; run `repro data fetch {name}` on a "
                        f"machine with network access (`repro data info {name}` lists the sources)")
    return build_corpus(name, files, data_sha256(name), cfg.max_vocab, cfg.max_length, preprocess)


@loader("ptb")
def _ptb(cfg) -> TextCorpus:
    return _documents("ptb", cfg)


def yahoo_line(line: str) -> str:
    """Undo the `etc.` -> `etorch.` corruption one copy of the Yahoo train blob may carry (SOURCE.md)."""
    return line.replace("etorch.", "etc.")


def yelp_line(line: str) -> str:
    """The review text of a `<label>\\t<text>` line (He et al. read Yelp with `label=True`)."""
    label, tab, text = line.partition("\t")
    return text if tab and label.strip().isdigit() else line


@loader("yahoo")
def _yahoo(cfg) -> TextCorpus:
    return _documents("yahoo", cfg, yahoo_line)


@loader("yelp")
def _yelp(cfg) -> TextCorpus:
    return _documents("yelp", cfg, yelp_line)


from repro.data import dialog, images, synthetic  # noqa: E402,F401  (they register their loaders)

"""Sentence corpora: vocabulary, numericalised splits (cached), length-bucketed batches.

Reading a text file (`read_sentences`): one sentence (or document) per line, any newline
convention (`\n`, `\r\n`, `\r`), tokens separated by any whitespace (spaces, tabs). Blank
lines are skipped; a file with no sentence at all is an error, as are bytes that are not UTF-8
and a truncated `.gz`. Sentences longer than `max_length` tokens are truncated to their first
`max_length` tokens (the papers cap lengths the same way); `<bos>`/`<eos>` come on top.
Words outside the vocabulary become `<unk>`.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from repro.data.sources import DataError, cache_dir, data_sha256, open_text, split_files

SPLIT_ORDER = ("train", "valid", "test")
# Bump when reading or numericalising changes, so stale numericalised caches are not reused.
FORMAT_VERSION = 2

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
SPECIALS = (PAD, UNK, BOS, EOS)


class Vocab:
    """Word <-> id map; ids 0..3 are `<pad> <unk> <bos> <eos>`."""

    def __init__(self, words: list[str]):
        self.itos = list(SPECIALS) + [w for w in words if w not in SPECIALS]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.pad, self.unk, self.bos, self.eos = (self.stoi[s] for s in SPECIALS)

    @classmethod
    def build(cls, sentences, max_size: int) -> "Vocab":
        """The `max_size` most frequent words of `sentences` (ties broken alphabetically)."""
        counts = Counter(w for s in sentences for w in s)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:max_size]
        return cls([w for w, _ in ranked])

    def __len__(self) -> int:
        return len(self.itos)

    def encode(self, words: list[str]) -> list[int]:
        return [self.stoi.get(w, self.unk) for w in words]

    def decode(self, ids, strip: bool = True) -> list[str]:
        words = []
        for i in ids:
            i = int(i)
            if strip and i == self.eos:
                break
            if strip and i in (self.pad, self.bos):
                continue
            words.append(self.itos[i])
        return words

    def to_json(self) -> str:
        return json.dumps(self.itos[len(SPECIALS):])

    @classmethod
    def from_json(cls, text: str) -> "Vocab":
        return cls(json.loads(text))


class SentenceTargets:
    """Teacher-forcing views of a `<bos> w1 .. wn <eos> <pad>..` tensor `tokens` (B, T+2), shared
    by every batch that carries sentences to predict."""

    tokens: torch.Tensor
    lengths: torch.Tensor   # (B,) n + 2, markers included
    pad_id: int

    @property
    def size(self) -> int:
        return self.tokens.shape[0]

    @property
    def inputs(self) -> torch.Tensor:
        return self.tokens[:, :-1]

    @property
    def targets(self) -> torch.Tensor:
        return self.tokens[:, 1:]

    @property
    def target_mask(self) -> torch.Tensor:
        return self.targets != self.pad_id

    @property
    def num_targets(self) -> torch.Tensor:
        """Words + 1 (`<eos>`) per sentence: the PPL denominator; `<bos>` is not counted."""
        return self.lengths - 1


@dataclass
class TextBatch(SentenceTargets):
    """Sentences as `<bos> w1 .. wn <eos> <pad>..`, `tokens` of shape (B, T+2)."""

    tokens: torch.Tensor
    lengths: torch.Tensor   # (B,) n + 2, markers included
    pad_id: int
    index: torch.Tensor | None = None  # (B,) position of each sentence in its split

    def to(self, device) -> "TextBatch":
        return TextBatch(self.tokens.to(device, non_blocking=True), self.lengths.to(device),
                         self.pad_id, self.index)


class TextSplit:
    """A split stored as one flat id tensor plus offsets (cheap to cache and slice)."""

    def __init__(self, flat: torch.Tensor, offsets: torch.Tensor):
        self.flat, self.offsets = flat, offsets
        # Computed once: a whole-split subtraction per batch would cost more than the batch itself.
        self.lengths = offsets[1:] - offsets[:-1]

    @classmethod
    def from_lists(cls, sentences: list[list[int]]) -> "TextSplit":
        lengths = torch.tensor([len(s) for s in sentences], dtype=torch.long)
        offsets = torch.zeros(len(sentences) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        flat = torch.tensor([i for s in sentences for i in s], dtype=torch.long)
        return cls(flat, offsets)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def sentence(self, i: int) -> torch.Tensor:
        return self.flat[self.offsets[i]:self.offsets[i + 1]]

    def subset(self, count: int) -> "TextSplit":
        return TextSplit.from_lists([self.sentence(i).tolist() for i in range(min(count, len(self)))])

    def num_tokens(self) -> int:
        """Target tokens including one `<eos>` per sentence."""
        return int(self.lengths.sum()) + len(self)

    def make_batch(self, indices: torch.Tensor, vocab: Vocab) -> TextBatch:
        """The sentences at `indices` (B,) as a `TextBatch` of width max length + 2 (2 when B = 0)."""
        words = self.lengths[indices]
        width = (int(words.max()) if len(indices) else 0) + 2
        positions = torch.arange(width - 2)
        inside = positions[None, :] < words[:, None]
        gather = (self.offsets[indices][:, None] + positions[None, :]).clamp(max=len(self.flat) - 1)
        tokens = torch.full((len(indices), width), vocab.pad, dtype=torch.long)
        tokens[:, 0] = vocab.bos
        tokens[:, 1:-1] = torch.where(inside, self.flat[gather], vocab.pad)
        tokens[torch.arange(len(indices)), words + 1] = vocab.eos
        return TextBatch(tokens, words + 2, vocab.pad, indices)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The random stream of one epoch of one run: a function of (seed, epoch) only, so resumable."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def bucket_order(lengths: torch.Tensor, batch_size: int, shuffle: bool, seed: int = 0,
                 epoch: int = 0) -> list[torch.Tensor]:
    """Split item indices into batches of (nearly) equal `lengths` (N,) -> [(<= batch_size,)].

    Items are sorted by length (ties broken randomly when shuffling) and cut into consecutive
    batches, so padding is at most the length spread inside one batch; the batch order is then
    shuffled. Both draws depend only on (seed, epoch): reproducible and resumable.
    """
    if len(lengths) == 0:
        return []
    if not shuffle:
        return list(torch.split(torch.argsort(lengths, stable=True), batch_size))
    gen = epoch_generator(seed, epoch)
    tiebreak = torch.rand(len(lengths), generator=gen)
    order = torch.from_numpy(np.lexsort((tiebreak.numpy(), lengths.numpy())))
    batches = list(torch.split(order, batch_size))
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]


def bucketed_batches(split: TextSplit, batch_size: int, vocab: Vocab, shuffle: bool,
                     seed: int = 0, epoch: int = 0):
    """Yield `TextBatch`es of sentences of (nearly) equal length (see `bucket_order`)."""
    for indices in bucket_order(split.lengths, batch_size, shuffle, seed, epoch):
        yield split.make_batch(indices, vocab)


@dataclass
class TextCorpus:
    name: str
    vocab: Vocab
    splits: dict[str, TextSplit]
    sha256: str
    kind: str = "text"
    # The split the vocabulary was built on: "train", or the first available split when train is
    # missing (Yahoo valid/test only) -- then the corpus suits evaluation or a stated substitute.
    vocab_split: str = "train"

    def split(self, name: str) -> TextSplit:
        return get_split(self, name)

    def batches(self, split: str, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0):
        return bucketed_batches(self.split(split), batch_size, self.vocab, shuffle, seed, epoch)


def get_split(corpus, name: str):
    """`corpus.splits[name]`, or a `DataError` saying which splits exist and how to get more."""
    if name not in corpus.splits:
        raise DataError(f"{corpus.name} has no {name!r} split here (available: {sorted(corpus.splits)}); "
                        f"`repro data info {corpus.name}` shows what is missing and "
                        f"`repro data fetch {corpus.name}` downloads it")
    return corpus.splits[name]


def read_lines(path: Path) -> list[str]:
    """All lines of a plain or gzipped UTF-8 file, newline conventions unified, `DataError` if unreadable."""
    try:
        with open_text(path) as handle:
            # split("\n") rather than splitlines(): form feeds or U+2028 inside a line are not breaks
            return handle.read().split("\n")
    except UnicodeDecodeError as err:
        raise DataError(f"{path} is not valid UTF-8 ({err}); delete it and run `repro data fetch`") from err
    except (OSError, EOFError) as err:  # truncated or not really gzip
        raise DataError(f"{path} cannot be read ({err}); delete it and run `repro data fetch`") from err


def read_sentences(path: Path, max_length: int | None,
                   preprocess: Callable[[str], str] | None = None) -> list[list[str]]:
    """Whitespace-tokenised non-blank lines, truncated to `max_length` tokens.

    `preprocess` rewrites each raw line first (e.g. dropping Yelp's label column).
    """
    lines = read_lines(path)
    if preprocess:
        lines = [preprocess(line) for line in lines]
    out = [words[:max_length] if max_length else words for words in (line.split() for line in lines) if words]
    if not out:
        raise DataError(f"{path} holds no sentences (empty or blank lines only); delete it and run "
                        "`repro data fetch`")
    return out


def first_split(available) -> str:
    """The split a vocabulary is built on: train, else the first of valid/test present."""
    for split in SPLIT_ORDER:
        if split in available:
            return split
    raise DataError(f"no train, valid or test split among {sorted(available)}")


def build_corpus(name: str, files: dict[str, Path], sha256: str, max_vocab: int,
                 max_length: int | None, preprocess: Callable[[str], str] | None = None) -> TextCorpus:
    """Read, build the vocabulary on train (else the first split present), numericalise; cached."""
    vocab_split = first_split(files)
    key = [name, sha256, max_vocab, max_length, sorted(files), getattr(preprocess, "__name__", None)]

    def build() -> dict:
        raw = {split: read_sentences(path, max_length, preprocess) for split, path in files.items()}
        vocab = Vocab.build(raw[vocab_split], max_vocab)
        splits = {s: TextSplit.from_lists([vocab.encode(x) for x in sents]) for s, sents in raw.items()}
        return {"vocab": vocab.to_json(),
                "splits": {s: {"flat": v.flat, "offsets": v.offsets} for s, v in splits.items()}}

    blob = cached(name, key, build)
    splits = {s: TextSplit(v["flat"], v["offsets"]) for s, v in blob["splits"].items()}
    return TextCorpus(name, Vocab.from_json(blob["vocab"]), splits, sha256, vocab_split=vocab_split)


def cached(name: str, key: list, build: Callable[[], dict]) -> dict:
    """`build()` (a dict of tensors, strings and numbers), stored under the cache dir by `key`.

    The key holds everything the result depends on (data digest, options, format version), so
    a hit is always equal to a fresh build; the file is written atomically.
    """
    digest = hashlib.sha256(json.dumps([FORMAT_VERSION, *key]).encode()).hexdigest()[:16]
    path = cache_dir() / "numericalised" / f"{name}-{digest}.pt"
    if path.is_file():
        try:
            return torch.load(path, weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as err:
            # A cache is disposable: a truncated or foreign file is rebuilt, never fatal.
            warnings.warn(f"discarding unreadable cache file {path} ({type(err).__name__}); "
                          "rebuilding it from the data", stacklevel=2)
            path.unlink(missing_ok=True)
    blob = build()
    _atomic_save(blob, path)
    return blob


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


# --- one-document-per-line corpora ---------------------------------------------------------

def _documents(name: str, cfg, preprocess=None) -> TextCorpus:
    """A one-document-per-line corpus from whichever of its splits are present."""
    files = split_files(name)
    if not files:
        raise DataError(f"no split of {name!r} is available; run `repro data fetch {name}` on a "
                        f"machine with network access (`repro data info {name}` lists the sources)")
    return build_corpus(name, files, data_sha256(name), cfg.max_vocab, cfg.max_length, preprocess)


def load_ptb(cfg) -> TextCorpus:
    return _documents("ptb", cfg)


def yahoo_line(line: str) -> str:
    """Undo the `etc.` -> `etorch.` corruption one copy of the Yahoo train blob may carry
    (docs/data.md §Yahoo)."""
    return line.replace("etorch.", "etc.")


def yelp_line(line: str) -> str:
    """The review text of a `<label>\\t<text>` line (He et al. read Yelp with `label=True`)."""
    label, tab, text = line.partition("\t")
    return text if tab and label.strip().isdigit() else line


def load_yahoo(cfg) -> TextCorpus:
    return _documents("yahoo", cfg, yahoo_line)


def load_yelp(cfg) -> TextCorpus:
    return _documents("yelp", cfg, yelp_line)

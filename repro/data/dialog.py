"""Dialog corpora (DailyDialog, SwDA): one example per response turn, with the turns before it.

Examples. Every utterance with at least one earlier turn in its dialog is a response; its
context is the previous `max_context` turns (default 10, Zhao et al. 2017's window), oldest
first. The first turn of a dialog is context only.

Text. Utterances are lower-cased and split into `\\w+|[^\\w\\s]+` runs (NLTK's WordPunct rule,
which Zhao et al. use for SwDA; DailyDialog gets the same), so "that's" -> `that ' s` and
"far.Can" -> `far . can`. Utterances longer than `max_length` tokens are truncated; utterances
with no token are dropped together with their labels. The vocabulary is built on train, else
on the first split present (`vocab_split`), like the text corpora.

Speakers. 0/1: DailyDialog's two speakers alternate, starting with 0; SwDA's callers A=0, B=1.

Labels, per response. DailyDialog: `act` (inform, question, directive, commissive) and
`emotion` (no emotion, anger, disgust, fear, happiness, sadness, surprise). SwDA: `act` (the
dialog-act tag) and `topic` (the conversation topic); their names are those seen in the splits
present, sorted. A label the release does not give reliably is `UNKNOWN_LABEL`: DailyDialog
train dialog 7,852 has 12 utterances but 11 labels, and which one lacks a label is unknown.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from repro.data.sources import DataError, data_sha256, locate, split_files
from repro.data.text import (SentenceTargets, TextSplit, Vocab, bucket_order, cached, first_split,
                             get_split, read_lines)

MAX_CONTEXT = 10
UNKNOWN_LABEL = -100  # torch's cross_entropy ignores this target by default
TOKEN = re.compile(r"\w+|[^\w\s]+")
DD_ACTS = ("inform", "question", "directive", "commissive")  # file values 1..4
DD_EMOTIONS = ("no emotion", "anger", "disgust", "fear", "happiness", "sadness", "surprise")  # 0..6

# A parsed turn: (tokens, speaker 0/1, {label name: label string, or None when unknown}).
Turn = tuple[list[str], int, dict[str, "str | None"]]


def tokenize(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


# --- reading the releases ------------------------------------------------------------------

def read_dailydialog(text: Path, acts: Path, emotions: Path) -> list[list[Turn]]:
    """Dialogs of one split from its three parallel files (utterances, act ids, emotion ids)."""
    dialogs, act_rows, emotion_rows = (_nonblank(p) for p in (text, acts, emotions))
    if not len(dialogs) == len(act_rows) == len(emotion_rows):
        raise DataError(f"{text}, {acts} and {emotions} should have one line per dialog but have "
                        f"{len(dialogs)}, {len(act_rows)} and {len(emotion_rows)}; re-fetch them")
    out = []
    for line, act_row, emotion_row in zip(dialogs, act_rows, emotion_rows):
        utterances = line.split("__eou__")
        if not utterances[-1].strip():  # every line ends with the marker
            utterances.pop()
        act = [_label_name(DD_ACTS, v, 1, acts) for v in act_row.split()]
        emotion = [_label_name(DD_EMOTIONS, v, 0, emotions) for v in emotion_row.split()]
        labelled = len(act) == len(emotion) == len(utterances)
        out.append([(tokenize(u), i % 2, {"act": act[i] if labelled else None,
                                          "emotion": emotion[i] if labelled else None})
                    for i, u in enumerate(utterances)])
    return out


def _nonblank(path: Path) -> list[str]:
    lines = [line for line in read_lines(path) if line.strip()]
    if not lines:
        raise DataError(f"{path} holds no dialogs (empty or blank lines only); delete it and run "
                        "`repro data fetch`")
    return lines


def _label_name(names: tuple[str, ...], value: str, first: int, path: Path) -> str:
    if not value.isdigit() or not 0 <= int(value) - first < len(names):
        raise DataError(f"{path} has label {value!r}, expected an integer in "
                        f"{first}..{first + len(names) - 1}; re-fetch it")
    return names[int(value) - first]


def read_swda(path: Path) -> list[list[Turn]]:
    """Dialogs from Zhao et al.'s JSONL: `{"topic": .., "utts": [[caller, text, [act, ..]], ..]}`."""
    out = []
    for number, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        try:
            dialog = json.loads(line)
            topic = dialog["topic"].strip().strip('"')  # the release keeps Switchboard's quoting
            out.append([(tokenize(text), {"A": 0, "B": 1}[caller], {"act": feats[0], "topic": topic})
                        for caller, text, feats in dialog["utts"]])
        except (ValueError, KeyError, TypeError, IndexError, AttributeError) as err:
            raise DataError(f"{path}:{number} is not a SwDA dialog ({err!r}); re-fetch the file") from err
    if not out:
        raise DataError(f"{path} holds no dialogs; delete it and run `repro data fetch swda`")
    return out


# --- numericalised form --------------------------------------------------------------------

@dataclass
class DialogBatch(SentenceTargets):
    """B examples: up to C context turns of up to U tokens each, and the response to predict.

    `context[b, :num_context[b]]` are the previous turns, oldest first; later slots are padding
    (length 0, speaker 0). The response is `<bos> w1 .. wn <eos> <pad>..` like a `TextBatch`.
    """

    context: torch.Tensor           # (B, C, U) token ids, `pad_id` beyond each turn's length
    context_lengths: torch.Tensor   # (B, C) tokens per context turn, no markers
    context_speakers: torch.Tensor  # (B, C) speaker id of each context turn
    num_context: torch.Tensor       # (B,) context turns present, >= 1
    response: torch.Tensor          # (B, T+2)
    lengths: torch.Tensor           # (B,) response words + 2
    speaker: torch.Tensor           # (B,) speaker of the response
    labels: dict[str, torch.Tensor]  # name -> (B,) label id of the response, or UNKNOWN_LABEL
    pad_id: int
    index: torch.Tensor | None = None  # (B,) position of each example in its split

    @property
    def tokens(self) -> torch.Tensor:
        """The response, so sentence encoders and decoders take dialog batches unchanged."""
        return self.response

    def to(self, device) -> "DialogBatch":
        move = lambda t: t.to(device, non_blocking=True)  # noqa: E731
        return DialogBatch(move(self.context), move(self.context_lengths), move(self.context_speakers),
                           move(self.num_context), move(self.response), move(self.lengths),
                           move(self.speaker), {k: move(v) for k, v in self.labels.items()},
                           self.pad_id, self.index)


@dataclass
class DialogSplit:
    """All utterances of a split, dialogs contiguous, and which of them are responses."""

    utterances: TextSplit            # U utterances
    speakers: torch.Tensor           # (U,)
    dialog_start: torch.Tensor       # (U,) index of the first utterance of the same dialog
    labels: dict[str, torch.Tensor]  # name -> (U,)
    responses: torch.Tensor          # (E,) utterance index of each example's response

    def __len__(self) -> int:
        return len(self.responses)

    def subset(self, count: int) -> "DialogSplit":
        return DialogSplit(self.utterances, self.speakers, self.dialog_start, self.labels,
                           self.responses[:count])

    @property
    def response_lengths(self) -> torch.Tensor:
        """(E,) words per response."""
        return self.utterances.lengths[self.responses]

    def num_tokens(self) -> int:
        """Target tokens including one `<eos>` per response."""
        return int(self.response_lengths.sum()) + len(self)

    def make_batch(self, indices: torch.Tensor, vocab: Vocab, max_context: int) -> DialogBatch:
        """The examples at `indices` (B,) with at most `max_context` context turns each."""
        r = self.responses[indices]
        start = torch.maximum(self.dialog_start[r], r - max_context)
        num_context = r - start
        slots = start[:, None] + torch.arange(int(num_context.max()) if len(r) else 0)
        inside = slots < r[:, None]
        slots = torch.where(inside, slots, 0)  # any valid index; masked below
        lengths = torch.where(inside, self.utterances.lengths[slots], 0)
        positions = torch.arange(int(lengths.max()) if lengths.numel() else 0)
        in_turn = positions < lengths[..., None]
        gather = torch.where(in_turn, self.utterances.offsets[slots][..., None] + positions, 0)
        context = torch.where(in_turn, self.utterances.flat[gather], vocab.pad)
        response = self.utterances.make_batch(r, vocab)
        return DialogBatch(context, lengths, torch.where(inside, self.speakers[slots], 0), num_context,
                           response.tokens, response.lengths, self.speakers[r],
                           {k: v[r] for k, v in self.labels.items()}, vocab.pad, indices)

    def to_blob(self) -> dict:
        return {"flat": self.utterances.flat, "offsets": self.utterances.offsets,
                "speakers": self.speakers, "dialog_start": self.dialog_start,
                "labels": self.labels, "responses": self.responses}

    @classmethod
    def from_blob(cls, blob: dict) -> "DialogSplit":
        return cls(TextSplit(blob["flat"], blob["offsets"]), blob["speakers"], blob["dialog_start"],
                   blob["labels"], blob["responses"])


@dataclass
class DialogCorpus:
    name: str
    vocab: Vocab
    splits: dict[str, DialogSplit]
    sha256: str
    label_names: dict[str, list[str]]  # label name -> the names of ids 0, 1, ..
    max_context: int = MAX_CONTEXT
    kind: str = "dialog"
    vocab_split: str = "train"

    def split(self, name: str) -> DialogSplit:
        return get_split(self, name)

    def batches(self, split: str, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0):
        """Yield `DialogBatch`es bucketed by response length (see `text.bucket_order`)."""
        data = self.split(split)
        for indices in bucket_order(data.response_lengths, batch_size, shuffle, seed, epoch):
            yield data.make_batch(indices, self.vocab, self.max_context)


def build_dialog_corpus(name: str, sha256: str, splits: list[str],
                        read: Callable[[str], list[list[Turn]]],
                        label_names: dict[str, tuple[str, ...]] | None, max_vocab: int,
                        max_length: int | None, max_context: int = MAX_CONTEXT) -> DialogCorpus:
    """Read each split with `read(split)`, build vocabularies, numericalise; cached by `sha256`.

    `label_names` fixes the label vocabularies (DailyDialog); None collects them from the data.
    """
    vocab_split = first_split(splits)

    def build() -> dict:
        raw = {s: [_clean(d, max_length) for d in read(s)] for s in splits}
        vocab = Vocab.build((words for d in raw[vocab_split] for words, _, _ in d), max_vocab)
        names = {k: list(v) for k, v in label_names.items()} if label_names else _label_vocab(raw)
        return {"vocab": vocab.to_json(), "label_names": json.dumps(names),
                "splits": {s: _numericalise(d, vocab, names).to_blob() for s, d in raw.items()}}

    blob = cached(name, [name, sha256, max_vocab, max_length, sorted(splits)], build)
    return DialogCorpus(name, Vocab.from_json(blob["vocab"]),
                        {s: DialogSplit.from_blob(v) for s, v in blob["splits"].items()}, sha256,
                        json.loads(blob["label_names"]), max_context, vocab_split=vocab_split)


def _clean(dialog: list[Turn], max_length: int | None) -> list[Turn]:
    return [(words[:max_length] if max_length else words, speaker, labels)
            for words, speaker, labels in dialog if words]


def _label_vocab(raw: dict[str, list[list[Turn]]]) -> dict[str, list[str]]:
    seen: dict[str, set] = {}
    for dialogs in raw.values():
        for dialog in dialogs:
            for _, _, labels in dialog:
                for key, value in labels.items():
                    seen.setdefault(key, set()).add(value)
    return {key: sorted(v for v in values if v is not None) for key, values in seen.items()}


def _numericalise(dialogs: list[list[Turn]], vocab: Vocab, names: dict[str, list[str]]) -> DialogSplit:
    turns = [turn for dialog in dialogs for turn in dialog]
    sizes = torch.tensor([len(d) for d in dialogs], dtype=torch.long)
    dialog_start = torch.repeat_interleave(torch.cumsum(sizes, 0) - sizes, sizes)
    ids = {key: {n: i for i, n in enumerate(values)} for key, values in names.items()}
    labels = {key: torch.tensor([index.get(t[2][key], UNKNOWN_LABEL) for t in turns], dtype=torch.long)
              for key, index in ids.items()}
    return DialogSplit(TextSplit.from_lists([vocab.encode(t[0]) for t in turns]),
                       torch.tensor([t[1] for t in turns], dtype=torch.long), dialog_start, labels,
                       torch.nonzero(torch.arange(len(turns)) > dialog_start).flatten())


# --- loaders -------------------------------------------------------------------------------

def _max_context(cfg) -> int:
    # DataConfig has no context-window field yet; a config that adds `max_context` sets it.
    return getattr(cfg, "max_context", MAX_CONTEXT)


def load_dailydialog(cfg) -> DialogCorpus:
    paths = locate("dailydialog")

    def read(split: str) -> list[list[Turn]]:
        part = "validation" if split == "valid" else split
        return read_dailydialog(*(paths[f"{part}/{stem}_{part}.txt"]
                                  for stem in ("dialogues", "dialogues_act", "dialogues_emotion")))

    return build_dialog_corpus("dailydialog", data_sha256("dailydialog"), ["train", "valid", "test"],
                               read, {"act": DD_ACTS, "emotion": DD_EMOTIONS}, cfg.max_vocab,
                               cfg.max_length, _max_context(cfg))


def load_swda(cfg) -> DialogCorpus:
    files = split_files("swda")
    return build_dialog_corpus("swda", data_sha256("swda"), sorted(files),
                               lambda split: read_swda(files[split]), None, cfg.max_vocab,
                               cfg.max_length, _max_context(cfg))

"""Continuous-stream batching for a stateful language model (the Zaremba / TF PTB reader).

A split's sentences are joined into one token stream, each followed by `<eos>` (the reference
code replaces every newline of the PTB file by `<eos>`). The stream is cut into `rows` equal
contiguous rows (the tail that does not fill a row is dropped) and read left to right in
windows of `unroll` tokens; the model carries its state from one window to the next, and each
target is the next token of the same row. Unlike the reference reader, the last window of a row
may be shorter, so every token of a row after its first is a target exactly once; at one row
this is the exact stateful evaluation of the paper's test pass (batch 1, unroll 1).

The dataset `ptb_stream` is PTB (the same files and digest as `ptb`) read this way, for Xie et
al. 2017's stream language model. The unroll length is fixed here because `DataConfig` has no
field for it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from repro.data.text import TextSplit, Vocab, get_split, load_ptb

# The reference code's BPTT length (`lm.py --unroll`, default 35); fixed because `DataConfig`
# has no field for it.
UNROLL = 35


@dataclass
class StreamBatch:
    """One window: `inputs`, `targets` `(rows, T)`, targets[:, t] following inputs[:, t]."""

    inputs: torch.Tensor
    targets: torch.Tensor
    starts_stream: bool  # the first window of its stream: the model starts from a zero state

    @property
    def size(self) -> int:
        return self.inputs.shape[0]

    @property
    def num_targets(self) -> torch.Tensor:
        """Targets per row `(rows,)`: the PPL denominator (every stream token, `<eos>` included)."""
        return torch.full((self.size,), self.inputs.shape[1], dtype=torch.long)

    def to(self, device) -> "StreamBatch":
        return StreamBatch(self.inputs.to(device, non_blocking=True),
                           self.targets.to(device, non_blocking=True), self.starts_stream)


def token_stream(split: TextSplit, eos_id: int) -> torch.Tensor:
    """The split's sentences in order, each followed by `eos_id`: `(tokens + sentences,)`."""
    count = len(split)
    owner = torch.repeat_interleave(torch.arange(count), split.lengths)
    stream = torch.empty(len(split.flat) + count, dtype=split.flat.dtype)
    stream[torch.arange(len(split.flat)) + owner] = split.flat
    stream[split.offsets[1:] + torch.arange(count)] = eos_id
    return stream


def stream_windows(stream: torch.Tensor, rows: int, unroll: int):
    """Yield `StreamBatch`es of `stream (N,)` cut into `rows` rows, `unroll` targets at a time."""
    width = len(stream) // rows
    if width < 2:
        raise ValueError(f"a stream of {len(stream)} tokens is too short for {rows} rows")
    grid = stream[:rows * width].view(rows, width)
    for start in range(0, width - 1, unroll):
        end = min(start + unroll, width - 1)
        yield StreamBatch(grid[:, start:end], grid[:, start + 1:end + 1], start == 0)


@dataclass
class StreamCorpus:
    """A text corpus whose batches are stream windows. `splits` stay sentence splits, so
    `train_fraction` and `eval.max_examples` keep their meaning (a prefix of sentences)."""

    name: str
    vocab: Vocab
    splits: dict[str, TextSplit]
    sha256: str
    unroll: int = UNROLL
    kind: str = "text"
    vocab_split: str = "train"

    def split(self, name: str) -> TextSplit:
        return get_split(self, name)

    def stream(self, split: str) -> torch.Tensor:
        return token_stream(self.split(split), self.vocab.eos)

    def batches(self, split: str, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0):
        """Windows of `split` as `batch_size` rows. `shuffle`, `seed` and `epoch` are ignored:
        a stateful model must read its stream in order, every epoch the same (as the code)."""
        return stream_windows(self.stream(split), batch_size, self.unroll)


def load_ptb_stream(cfg) -> StreamCorpus:
    text = load_ptb(cfg)
    return StreamCorpus(f"{text.name}_stream", text.vocab, text.splits, text.sha256)

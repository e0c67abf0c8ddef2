"""Binary image corpora: statically and dynamically binarised MNIST, as (B, 1, 28, 28) 0/1 floats.

`binarized_mnist` is the fixed binarisation of Larochelle & Murray 2011 (50k/10k/10k), read
from the staged `.npz` bundle or the original `.amat` files. `mnist` keeps the intensities: its
train split (the first 50k training images; the last 10k are valid, as most VAE papers hold
out) is binarised afresh for every batch, pixel ~ Bernoulli(intensity / 255), with a draw fixed
by (seed, epoch); valid and test are binarised once with fixed seeds, so every run is evaluated
on the same binary images whatever its own seed. Arrays are read with `allow_pickle=False`.
"""
from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repro.data.sources import DataError, data_sha256, locate, read_bytes, spec
from repro.data.text import epoch_generator, get_split

SIDE = 28
MNIST_VALID_SIZE = 10_000
# Fixed seeds of the one-off binarisation of mnist valid/test (independent of the run seed).
EVAL_BINARIZATION_SEEDS = {"valid": 1, "test": 2}


@dataclass
class ImageBatch:
    x: torch.Tensor                    # (B, 1, 28, 28) float32, values 0 or 1
    labels: torch.Tensor | None = None  # (B,) digit class, where known
    index: torch.Tensor | None = None   # (B,) position of each image in its split
    num_targets = None                  # no token count: image likelihoods are reported in nats

    @property
    def size(self) -> int:
        return self.x.shape[0]

    def to(self, device) -> "ImageBatch":
        labels = None if self.labels is None else self.labels.to(device)
        return ImageBatch(self.x.to(device, non_blocking=True), labels, self.index)


@dataclass
class ImageSplit:
    pixels: torch.Tensor               # (N, 28, 28) uint8: 0/1, or intensities 0..255 if `dynamic`
    labels: torch.Tensor | None = None  # (N,)
    dynamic: bool = False              # binarise afresh for every batch

    def __len__(self) -> int:
        return len(self.pixels)

    def subset(self, count: int) -> "ImageSplit":
        labels = None if self.labels is None else self.labels[:count]
        return ImageSplit(self.pixels[:count], labels, self.dynamic)

    def make_batch(self, indices: torch.Tensor, gen: torch.Generator) -> ImageBatch:
        """Images at `indices` (B,) -> (B, 1, 28, 28); dynamic pixels drawn from `gen`."""
        pixels = self.pixels[indices]
        binary = _bernoulli(pixels, gen) if self.dynamic else pixels
        labels = None if self.labels is None else self.labels[indices]
        return ImageBatch(binary.float().unsqueeze(1), labels, indices)


def _bernoulli(intensities: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """uint8 intensities (any shape) -> uint8 0/1 with P(1) = intensity / 255."""
    return (torch.rand(intensities.shape, generator=gen) < intensities.float() / 255).to(torch.uint8)


@dataclass
class ImageCorpus:
    name: str
    splits: dict[str, ImageSplit]
    sha256: str
    kind: str = "image"
    vocab: None = None

    def split(self, name: str) -> ImageSplit:
        return get_split(self, name)

    def batches(self, split: str, batch_size: int, shuffle: bool, seed: int = 0, epoch: int = 0):
        """Yield `ImageBatch`es; order and dynamic pixels depend only on (seed, epoch)."""
        data = self.split(split)
        gen = epoch_generator(seed, epoch)
        order = torch.randperm(len(data), generator=gen) if shuffle else torch.arange(len(data))
        for indices in (torch.split(order, batch_size) if len(data) else ()):
            yield data.make_batch(indices, gen)


# --- reading -------------------------------------------------------------------------------

def read_npz(path: Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The arrays `keys` of an `.npz`, refusing pickled objects."""
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise DataError(f"{path} lacks arrays {missing}; delete it and run `repro data fetch`")
            return {k: data[k] for k in keys}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"{path} cannot be read as plain arrays ({err}); delete it and re-fetch") from err


def read_amat(path: Path) -> np.ndarray:
    """A Larochelle `.amat` file (784 `0`/`1` characters separated by spaces a line) -> (N, 784) uint8."""
    data = read_bytes(path)
    row = 2 * SIDE * SIDE
    if len(data) % row:
        raise DataError(f"{path} is not a 28x28 binary .amat file ({len(data)} bytes); re-fetch it")
    return np.frombuffer(data, np.uint8).reshape(-1, row)[:, 0::2] - ord("0")


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte idx file (LeCun's MNIST format) -> array of its declared shape."""
    data = read_bytes(path)
    magic = int.from_bytes(data[:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if magic >> 8 != 0x08 or body.size != int(np.prod(dims)):
        raise DataError(f"{path} is not an unsigned-byte idx file; re-fetch it")
    return body.reshape(dims)


def _images(array: np.ndarray, where: str) -> torch.Tensor:
    """(N, 784) or (N, 28, 28) uint8 -> (N, 28, 28) uint8 tensor."""
    if array.dtype != np.uint8 or array.size % (SIDE * SIDE):
        raise DataError(f"{where}: expected uint8 28x28 images, got {array.dtype} {array.shape}")
    return torch.from_numpy(array.reshape(-1, SIDE, SIDE).copy())


# --- loaders -------------------------------------------------------------------------------

def load_binarized_mnist(cfg) -> ImageCorpus:
    ds, paths = spec("binarized_mnist"), locate("binarized_mnist")
    if ds.bundle.name in paths:
        arrays = read_npz(paths[ds.bundle.name], ds.splits)
    else:
        arrays = {f.split: read_amat(paths[f.name]) for f in ds.files}
    splits = {s: ImageSplit(_images(a, f"binarized_mnist {s}")) for s, a in arrays.items()}
    if cfg.train_on_valid:
        splits["train"] = ImageSplit(torch.cat([splits["train"].pixels, splits["valid"].pixels]))
    return ImageCorpus("binarized_mnist", splits, data_sha256("binarized_mnist"))


def load_mnist(cfg) -> ImageCorpus:
    ds, paths = spec("mnist"), locate("mnist")
    if ds.bundle.name in paths:
        arrays = read_npz(paths[ds.bundle.name], ("x_train", "y_train", "x_test", "y_test"))
    else:
        arrays = {key: read_idx(paths[name]) for key, name in (
            ("x_train", "train-images-idx3-ubyte"), ("y_train", "train-labels-idx1-ubyte"),
            ("x_test", "t10k-images-idx3-ubyte"), ("y_test", "t10k-labels-idx1-ubyte"))}
    x, y = _images(arrays["x_train"], "mnist train"), torch.from_numpy(arrays["y_train"]).long()
    x_test, y_test = _images(arrays["x_test"], "mnist test"), torch.from_numpy(arrays["y_test"]).long()
    cut = len(x) - MNIST_VALID_SIZE
    # `data.train_on_valid`: all 60k images train, binarised afresh like the rest of train.
    end = len(x) if cfg.train_on_valid else cut
    return ImageCorpus("mnist", {
        "train": ImageSplit(x[:end], y[:end], dynamic=True),
        "valid": fixed_binarisation(x[cut:], y[cut:], "valid"),
        "test": fixed_binarisation(x_test, y_test, "test"),
    }, data_sha256("mnist"))


def fixed_binarisation(intensities: torch.Tensor, labels: torch.Tensor | None, split: str) -> ImageSplit:
    """An evaluation split binarised once, with that split's fixed seed (the same in every run)."""
    gen = torch.Generator().manual_seed(EVAL_BINARIZATION_SEEDS[split])
    return ImageSplit(_bernoulli(intensities, gen), labels)

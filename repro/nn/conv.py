"""Convolutional parts for 28x28 binary images: Kingma et al. 2016's MNIST ResNet VAE with a
configurable depth.

`ConvEncoder`: stages of pre-activation (ELU) residual blocks, the first of each stage with
stride 2 (28 -> 14 -> 7 -> 4 for three stages), then a fully connected ELU layer whose output
gives the diagonal Gaussian and doubles as the context vector an IAF posterior reads.
`BernoulliConvDecoder` mirrors it: z -> fully connected layers -> the last stage's 4x4 maps ->
stages of residual blocks whose first one up-samples with a transposed convolution -> one conv
to per-pixel Bernoulli logits.

Layout knobs (each default is the network as first built, so earlier run records keep their
meaning): `channels` (maps per stride-2 stage), `blocks_per_stage` (the stride-2 block plus
`blocks_per_stage - 1` stride-1 blocks after it), `between_strided` (stride-1 blocks between
consecutive stride-2 blocks) and `shortcut`: "projection" carries a resampling block's shortcut
through a strided 1x1 convolution (encoder) or a nearest-neighbour resize plus a 1x1
projection (decoder); "conv" through a strided 3x3 convolution (encoder) or a stride-2 3x3
transposed convolution (decoder). Kingma et al. 2016's MNIST network (their App. B) is
channels (16, 32, 32), `blocks_per_stage=1`, `between_strided=1`, `shortcut="conv"`: three
stride-2 blocks with a stride-1 block between each two, i.e. strides 2, 1, 2, 1, 2 and maps
16, 16, 32, 32, 32; 450 hidden units, ELU, weight normalisation with data-dependent
initialisation (`weight_normalise`, `data_dependent_init`).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

IMAGE_SIDE = 28


def stage_sizes(side: int, num_stages: int) -> list[int]:
    """Feature-map sides after each stride-2 stage of a 3x3, padding-1 convolution, input first:
    `stage_sizes(28, 3) == [28, 14, 7, 4]`."""
    sizes = [side]
    for _ in range(num_stages):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


SHORTCUTS = ("projection", "conv")


class DownBlock(nn.Module):
    """`shortcut(x) + conv(elu(conv_stride(elu(x))))`, `(N, C_in, H, W) -> (N, C_out, H', W')`;
    the shortcut is the identity unless the shape changes, then a strided 1x1 projection or,
    with `shortcut="conv"`, a strided 3x3 convolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str = "projection"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        kernel = 3 if shortcut == "conv" else 1
        self.shortcut = (nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2)
                         if stride != 1 or in_channels != out_channels else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv2(F.elu(self.conv1(F.elu(x))))


class UpBlock(nn.Module):
    """The decoder's mirror of `DownBlock`: with `out_size`, a stride-2 transposed convolution
    up-samples to `out_size` x `out_size` and the shortcut is a nearest-neighbour resize (plus a
    1x1 projection if the channels change) or, with `shortcut="conv"`, another stride-2
    transposed convolution; without `out_size`, a same-size residual block."""

    def __init__(self, in_channels: int, out_channels: int, in_size: int, out_size: int | None,
                 shortcut: str = "projection"):
        super().__init__()
        self.out_size = out_size
        self.resize = out_size is not None and shortcut != "conv"
        if out_size is None:
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        else:
            self.conv1 = _up_conv(in_channels, out_channels, in_size, out_size)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        if out_size is not None and shortcut == "conv":
            self.project = _up_conv(in_channels, out_channels, in_size, out_size)
        else:
            self.project = (nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels
                            else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = F.interpolate(x, size=self.out_size, mode="nearest") if self.resize else x
        return self.project(shortcut) + self.conv2(F.elu(self.conv1(F.elu(x))))


def _up_conv(in_channels: int, out_channels: int, in_size: int, out_size: int) -> nn.ConvTranspose2d:
    # A 3x3 stride-2 transposed conv with padding 1 gives 2 * in - 1 (+ output_padding).
    return nn.ConvTranspose2d(in_channels, out_channels, 3, 2, 1,
                              output_padding=out_size - (2 * in_size - 1))


class ConvEncoder(nn.Module):
    """Images `(B, 1, 28, 28)` -> mu `(B, d)`, logvar `(B, d)`, features `(B, hidden_size)`
    (the IAF context)."""

    def __init__(self, latent_size: int, channels: Sequence[int] = (16, 32, 32),
                 blocks_per_stage: int = 1, hidden_size: int = 450, side: int = IMAGE_SIDE,
                 between_strided: int = 0, shortcut: str = "projection"):
        super().__init__()
        if blocks_per_stage < 1:
            raise ValueError("each stage needs its stride-2 block: blocks_per_stage >= 1")
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        blocks, c_in = [], 1
        for k, c_out in enumerate(channels):
            if k:
                blocks += [DownBlock(c_in, c_in, 1, shortcut) for _ in range(between_strided)]
            blocks.append(DownBlock(c_in, c_out, 2, shortcut))
            blocks += [DownBlock(c_out, c_out, 1, shortcut) for _ in range(blocks_per_stage - 1)]
            c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        last = stage_sizes(side, len(channels))[-1]
        self.fc = nn.Linear(channels[-1] * last * last, hidden_size)
        self.to_gaussian = nn.Linear(hidden_size, 2 * latent_size)

    def forward(self, x: torch.Tensor):
        features = F.elu(self.fc(F.elu(self.blocks(x)).flatten(1)))
        mu, logvar = self.to_gaussian(features).float().chunk(2, -1)
        return mu, logvar, features


class BernoulliConvDecoder(nn.Module):
    """z `(n, B, d)` -> per-pixel Bernoulli logits; `log_likelihood` sums the 784 pixel
    log-probabilities of binary images `(B, 1, 28, 28)` under each of the n samples, `(n, B)`."""

    def __init__(self, latent_size: int, channels: Sequence[int] = (16, 32, 32),
                 blocks_per_stage: int = 1, hidden_size: int = 450, side: int = IMAGE_SIDE,
                 between_strided: int = 0, shortcut: str = "projection"):
        super().__init__()
        if shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        sizes = stage_sizes(side, len(channels))
        self.start = (channels[-1], sizes[-1], sizes[-1])
        self.fc = nn.Sequential(nn.Linear(latent_size, hidden_size), nn.ELU(),
                                nn.Linear(hidden_size, channels[-1] * sizes[-1] ** 2))
        blocks = []
        # Stage k of the encoder maps channels[k-1] -> channels[k] at sizes[k]; undo in reverse.
        for k in reversed(range(len(channels))):
            c_in, c_out = channels[k], channels[max(k - 1, 0)]
            blocks.append(UpBlock(c_in, c_out, sizes[k + 1], sizes[k], shortcut))
            blocks += [UpBlock(c_out, c_out, sizes[k], None, shortcut)
                       for _ in range(blocks_per_stage - 1 + (between_strided if k else 0))]
        self.blocks = nn.Sequential(*blocks)
        self.to_logits = nn.Conv2d(channels[0], 1, 3, 1, 1)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """`z (..., d) -> (prod(...), 1, 28, 28)`."""
        h = self.fc(z.reshape(-1, z.shape[-1])).view(-1, *self.start)
        return self.to_logits(F.elu(self.blocks(h)))

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """`x (B, 1, 28, 28)` in {0, 1}, `z (n, B, d)` -> sum over pixels of log p(x|z), `(n, B)`."""
        n, batch = z.shape[:2]
        logits = self.logits(z).float().view(n, batch, -1)
        target = x.reshape(1, batch, -1).expand_as(logits)
        return -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(-1)


def conv_layout(cfg) -> dict:
    """`ConvEncoder` / `BernoulliConvDecoder` keyword arguments from a model config carrying
    `latent_size`, `channels`, `blocks_per_stage`, `hidden_size`, `between_strided`, `shortcut`."""
    return {"latent_size": cfg.latent_size, "channels": cfg.channels,
            "blocks_per_stage": cfg.blocks_per_stage, "hidden_size": cfg.hidden_size,
            "between_strided": cfg.between_strided, "shortcut": cfg.shortcut}


def weight_normalise(module: nn.Module) -> nn.Module:
    """Weight normalisation (Salimans & Kingma 2016) on every convolution and linear map of
    `module`: w = g v / ||v||, per output channel."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    for layer in layers:
        # A transposed convolution stores its output channels in dimension 1.
        weight_norm(layer, dim=1 if isinstance(layer, nn.ConvTranspose2d) else 0)
    return module


@torch.no_grad()
def data_dependent_init(module: nn.Module, run: Callable[[], object]) -> None:
    """Salimans & Kingma's data-dependent initialisation: during `run()` (one forward pass on a
    batch), each weight-normalised layer's g and bias are set, in execution order, so that its
    output has zero mean and unit variance per channel over that batch; the rescaled output is
    what the next layer sees, so one pass initialises the whole stack."""

    def normalise(layer, inputs, output):
        channel = 1 if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)) else output.dim() - 1
        dims = [k for k in range(output.dim()) if k != channel]
        mean, std = output.mean(dims), output.std(dims).clamp_min(1e-6)
        g = layer.parametrizations.weight.original0
        g.div_(std.view(g.shape))
        layer.bias.sub_(mean).div_(std)
        shape = [-1 if k == channel else 1 for k in range(output.dim())]
        return (output - mean.view(shape)) / std.view(shape)

    handles = [m.register_forward_hook(normalise) for m in module.modules()
               if hasattr(m, "parametrizations") and hasattr(m.parametrizations, "weight")]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()

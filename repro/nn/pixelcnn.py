"""A local autoregressive decoder for binary images (Chen et al. 2017, VLAE).

`PixelCNNDecoder`: a PixelCNN over binary 28x28 images with a deliberately small receptive field
(masked 3x3 convolutions, van den Oord et al. 2016), conditioned on a feature map computed from z
(Chen et al.'s VLAE: the VAE decoder's 28x28x4 output concatenated with the image). Pixel (i, j)
reads only pixels before it in raster order and at most `window` rows up / columns aside.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import bounded


class MaskedConv2d(nn.Conv2d):
    """A k x k convolution, `(N, C_in, H, W) -> (N, C_out, H, W)`, whose output at (i, j) reads
    the rows above i and the pixels left of j in row i; mask "B" also reads (i, j) itself.
    Mask "A" is the first layer's (the pixel being predicted is never an input); "B" the later
    layers' (their (i, j) features already exclude x_ij)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, mask_type: str):
        if mask_type not in ("A", "B") or kernel_size % 2 == 0:
            raise ValueError(f"need mask 'A' or 'B' and an odd kernel, got {mask_type!r}, {kernel_size}")
        super().__init__(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        centre = kernel_size // 2
        mask = torch.ones(kernel_size, kernel_size)
        mask[centre, centre + (mask_type == "B"):] = 0
        mask[centre + 1:] = 0
        self.register_buffer("mask", mask)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.weight * self.mask, self.bias)


@dataclass
class PixelCNNConfig:
    """The local decoder (Chen et al.'s MNIST PixelCNN: 6 masked 3x3 layers of 12 filters in
    residual blocks, then 4 residual 1x1 blocks, on the image and a 4-map feature map of z)."""

    feature_maps: int = bounded(4, lo=0)             # maps from z (0: unconditional PixelCNN)
    filters: int = bounded(12, lo=1)
    masked_layers: int = bounded(6, lo=1)            # sets the receptive field
    pointwise_blocks: int = bounded(4, lo=0)
    kernel_size: int = bounded(3, lo=3)
    # One masked "B" layer applied `masked_layers - 1` times (Chen et al.'s tied masked
    # convolutions); off is a separate layer each, the decoder as first built.
    tied: bool = False


class PixelCNNDecoder(nn.Module):
    """Bernoulli logits of `x (B, 1, H, W)` given `features (n*B, F, H, W)` (or None when
    `feature_maps == 0`), `(n*B, 1, H, W)`; logit (i, j) depends on x only inside the causal
    window (`receptive_field`) and on the features anywhere."""

    def __init__(self, cfg: PixelCNNConfig):
        super().__init__()
        k = cfg.kernel_size
        self.window = cfg.masked_layers * (k // 2)
        self.input = MaskedConv2d(1, cfg.filters, k, "A")
        # The features come from z, not from x, so reading them unmasked breaks no causality.
        self.condition = (nn.Conv2d(cfg.feature_maps, cfg.filters, k, padding=k // 2)
                          if cfg.feature_maps else None)
        if cfg.tied:
            shared = MaskedConv2d(cfg.filters, cfg.filters, k, "B")
            self.masked = nn.ModuleList([shared] * (cfg.masked_layers - 1))
        else:
            self.masked = nn.ModuleList(MaskedConv2d(cfg.filters, cfg.filters, k, "B")
                                        for _ in range(cfg.masked_layers - 1))
        self.pointwise = nn.ModuleList(nn.Conv2d(cfg.filters, cfg.filters, 1)
                                       for _ in range(cfg.pointwise_blocks))
        self.to_logits = nn.Conv2d(cfg.filters, 1, 1)

    @property
    def receptive_field(self) -> tuple[int, int]:
        """(rows, columns) of the window's bounding box: `window` rows up and `window` columns
        either side; within it only pixels before the current one in raster order are read."""
        return self.window + 1, 2 * self.window + 1

    def logits(self, x: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        h = self.input(x)                                             # (B, C, H, W)
        if features is not None:
            # x's first layer is computed once and shared by the n samples of z.
            n = features.shape[0] // x.shape[0]
            cond = self.condition(features).unflatten(0, (n, x.shape[0]))
            h = (h.unsqueeze(0) + cond).flatten(0, 1)                 # (n*B, C, H, W)
        for layer in [*self.masked, *self.pointwise]:
            h = h + layer(F.elu(h))
        return self.to_logits(F.elu(h))

    def log_likelihood(self, x: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        """`x (B, 1, H, W)` in {0, 1} -> sum of pixel log-probabilities `(n, B)`."""
        logits = self.logits(x, features).float()
        n, batch = logits.shape[0] // x.shape[0], x.shape[0]
        target = x.unsqueeze(0).expand(n, *x.shape).flatten(0, 1)
        nll = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return -nll.flatten(1).sum(-1).view(n, batch)

"""A causal dilated 1-D convolutional decoder for sequences (Yang et al. 2017), with the same
interface as `repro.nn.lstm.LSTMDecoder`, so a text VAE or language model can swap one for the
other.

Structure: word embedding -> (concatenated with z at every position) 1x1 input projection ->
residual blocks `x + W_up relu(causal dilated conv_k(relu(W_down relu(x) [+ V z])))` (the
bottleneck block 1x1 -> dilated 1xk -> 1x1) -> relu -> the `OutputLayer`. The dilations are a
constructor argument, so a small or a very large decoder (Yang's SCNN ... VLCNN) is a config.

Causality: every dilated convolution is left-padded by (k - 1) * dilation and the 1x1 layers
are position-wise, so the state at position t sees inputs t - receptive_field + 1 .. t and
nothing later (tests/test_cnn_decoder.py checks it by gradients). `receptive_field` is exposed
for models that rely on the window, such as a VLAE-style local decoder.

Step-by-step generation (`repro.generate`) calls `hidden_states(inputs, z, state)` one token at a
time. A convolution has no recurrent state, so `state` carries the last `receptive_field - 1`
inputs and each call recomputes the stack over that window plus the new inputs: exact (the
window holds everything the new positions can see) and cheap at generation lengths, while the
training and evaluation paths stay one parallel pass over the whole sequence.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from repro.nn.lstm import OutputLayer


def receptive_field(dilations: Sequence[int], kernel_size: int) -> int:
    """Number of input positions (the current one included) an output position depends on."""
    return 1 + (kernel_size - 1) * sum(dilations)


class CausalConv1d(nn.Conv1d):
    """`(N, C_in, T) -> (N, C_out, T)`; output t sees inputs t - (k - 1) * dilation .. t."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.left_pad = (kernel_size - 1) * dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zero padding on the left only: no position reads a later one.
        return super().forward(F.pad(x, (self.left_pad, 0)))


class ResidualBlock(nn.Module):
    """Bottleneck residual block, `x (N, C, T)`, `z_bias (N, C_b, 1)` or None -> `(N, C, T)`.

    ReLU before each map (ByteNet's pre-activation order), so the residual stream itself is
    never clipped and z, added at the input, reaches every block; no normalisation layer (none is
    named for Yang's decoder: docs/papers/yang2017_dilated_cnn.md §Architecture)."""

    def __init__(self, channels: int, bottleneck: int, kernel_size: int, dilation: int):
        super().__init__()
        self.down = nn.Conv1d(channels, bottleneck, 1)
        self.conv = CausalConv1d(bottleneck, bottleneck, kernel_size, dilation)
        self.up = nn.Conv1d(bottleneck, channels, 1)

    def forward(self, x: torch.Tensor, z_bias: torch.Tensor | None) -> torch.Tensor:
        h = self.down(torch.relu(x))
        if z_bias is not None:
            h = h + z_bias
        return x + self.up(torch.relu(self.conv(torch.relu(h))))


class DilatedCNNDecoder(nn.Module):
    """Autoregressive causal dilated CNN over `<bos> w1 .. wn`, conditioned on z.

    z (`latent_size` > 0) is concatenated to the word embedding at every position; with
    `z_every_layer` each block also adds its own linear map of z to its bottleneck input (a
    direct path to every layer, as WaveNet's global conditioning). `latent_size=0` gives a
    language model (z must then be None). As for `LSTMDecoder`, z may carry a sample axis
    `(n, B, d)`: the batch is scored n times in one pass.
    """

    def __init__(self, vocab_size: int, embed_size: int, channels: int, bottleneck: int,
                 dilations: Sequence[int], kernel_size: int = 3, latent_size: int = 0,
                 z_every_layer: bool = False, dropout: float = 0.0):
        super().__init__()
        if not dilations or min(dilations) < 1 or kernel_size < 2:
            raise ValueError(f"need dilations >= 1 and kernel_size >= 2, got {dilations}, {kernel_size}")
        if z_every_layer and not latent_size:
            raise ValueError("z_every_layer needs latent_size > 0")
        self.hidden_size, self.latent_size = channels, latent_size
        self.dilations, self.kernel_size = tuple(dilations), kernel_size
        self.embed = nn.Embedding(vocab_size, embed_size)
        # [emb; z] -> channels, split in two maps so the embedding half is computed once for
        # all n samples of z (the importance-sampled evaluation scores K samples per sentence).
        self.in_words = nn.Linear(embed_size, channels)
        self.in_z = nn.Linear(latent_size, channels, bias=False) if latent_size else None
        self.blocks = nn.ModuleList(ResidualBlock(channels, bottleneck, kernel_size, d) for d in dilations)
        self.z_to_blocks = (nn.Linear(latent_size, bottleneck * len(dilations)) if z_every_layer else None)
        self.dropout = nn.Dropout(dropout)
        self.out = OutputLayer(channels, vocab_size)

    @property
    def receptive_field(self) -> int:
        return receptive_field(self.dilations, self.kernel_size)

    def features(self, embedded: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """`embedded (B, T, E)`, `z (n, B, d)` or None -> top-layer states `(n*B, T, H)`."""
        if (z is None) != (self.in_z is None):
            raise ValueError(f"latent_size={self.latent_size}: pass z of shape (n, B, d) exactly "
                             "when the decoder is conditioned on z")
        x = self.in_words(self.dropout(embedded))                       # (B, T, C)
        if z is None:
            x, z_bias = x.unsqueeze(0), None
        else:
            z = z.to(x.dtype)
            x = x.unsqueeze(0) + self.in_z(z).unsqueeze(2)                # (n, B, T, C)
            z_bias = self._block_biases(z)
        x = x.flatten(0, 1).transpose(1, 2)                               # (n*B, C, T)
        for i, block in enumerate(self.blocks):
            x = block(x, None if z_bias is None else z_bias[i])
        return self.dropout(torch.relu(x).transpose(1, 2))

    def _block_biases(self, z: torch.Tensor) -> torch.Tensor | None:
        """`z (n, B, d)` -> per-block bottleneck biases `(L, n*B, C_b, 1)`, or None."""
        if self.z_to_blocks is None:
            return None
        biases = self.z_to_blocks(z.flatten(0, 1))                        # (n*B, L * C_b)
        return biases.view(biases.shape[0], len(self.blocks), -1).permute(1, 0, 2).unsqueeze(-1)

    def hidden_states(self, inputs: torch.Tensor, z: torch.Tensor | None, state=None):
        """`inputs (B, T)`, `z (n, B, d)` -> states `(n*B, T, H)` and the generation state.

        `state` is None or the pair returned by the previous call: `(h, window)` with `h (1, B, H)`
        the top state at the last position (the layout of the LSTM's `(h, c)`, which
        `repro.generate`'s beam search reorders along dim 1) and `window (W, B)` the last
        `receptive_field - 1` inputs. Only the window is read back.
        """
        new = inputs.shape[1]
        if state is not None:
            inputs = torch.cat([state[1].transpose(0, 1), inputs], 1)
        hidden = self.features(self.embed(inputs), z)[:, -new:]
        window = inputs[:, -(self.receptive_field - 1):].transpose(0, 1)
        return hidden, (hidden[:, -1:].transpose(0, 1), window)

    def log_likelihood(self, inputs, targets, mask, z) -> torch.Tensor:
        """Sum of target log-probs `(n, B)` (n = 1 when z is None); `inputs`, `targets`,
        `mask` are `(B, T)`."""
        hidden = self.features(self.embed(inputs), z)
        n = 1 if z is None else z.shape[0]
        rep = (lambda t: t.unsqueeze(0).expand(n, *t.shape).flatten(0, 1)) if n > 1 else (lambda t: t)
        return self.out(hidden, rep(targets), rep(mask)).view(n, -1)

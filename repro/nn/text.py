"""Recurrent parts for sentences: embedding + LSTM encoder, z-conditioned LSTM decoder, and an
output layer that scores targets without materialising every vocabulary logit at once."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class OutputLayer(nn.Module):
    """Hidden states -> summed target log-probabilities, computed in row chunks.

    Only non-padding positions are projected (bucketed batches have little padding, but the
    importance-sampled evaluation multiplies every row by K), and at most `chunk_rows` rows of
    vocabulary logits exist at a time; the softmax runs in fp32 even under bf16 autocast.
    """

    def __init__(self, hidden_size: int, vocab_size: int, chunk_rows: int = 8192):
        super().__init__()
        self.proj = nn.Linear(hidden_size, vocab_size)
        self.chunk_rows = chunk_rows

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`hidden (N, T, H)`, `targets (N, T)`, `mask (N, T)` -> log p per sequence `(N,)`."""
        rows = mask.reshape(-1).nonzero().squeeze(1)
        flat_hidden = hidden.reshape(-1, hidden.shape[-1])
        flat_targets = targets.reshape(-1)
        token_lp = torch.cat([
            -F.cross_entropy(self.proj(flat_hidden[chunk]).float(), flat_targets[chunk],
                             reduction="none")
            for chunk in torch.split(rows, self.chunk_rows)])
        owner = rows // targets.shape[1]
        return torch.zeros(targets.shape[0], device=hidden.device).index_add_(0, owner, token_lp)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden).float()


class LSTMEncoder(nn.Module):
    """Sentence -> diagonal-Gaussian parameters from the last state, `(B, T) -> 2 x (B, d)`."""

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, latent_size: int,
                 num_layers: int = 1, embedding: nn.Embedding | None = None):
        super().__init__()
        self.embed = embedding if embedding is not None else nn.Embedding(vocab_size, embed_size)
        self.lstm = nn.LSTM(self.embed.embedding_dim, hidden_size, num_layers, batch_first=True)
        self.to_gaussian = nn.Linear(hidden_size, 2 * latent_size)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor):
        out, _ = self.lstm(self.embed(tokens))
        # A left-to-right LSTM's output at the last real token ignores the padding after it.
        last = out[torch.arange(tokens.shape[0], device=tokens.device), lengths - 1]
        mu, logvar = self.to_gaussian(last).float().chunk(2, -1)
        return mu, logvar


class LSTMDecoder(nn.Module):
    """Autoregressive LSTM over `<bos> w1 .. wn`, conditioned on z.

    `z_mode`: "init" (c0 = W z, h0 = tanh c0; Bowman 2016), "input" (z appended to every input),
    or "both" (He et al. 2019). z may carry a sample axis: `(n, B, d)`; the sentence batch is
    then repeated n times, which is how K importance samples are scored in one pass.
    """

    def __init__(self, vocab_size: int, embed_size: int, hidden_size: int, latent_size: int,
                 z_mode: str = "init", num_layers: int = 1, dropout: float = 0.0,
                 embedding: nn.Embedding | None = None):
        super().__init__()
        if z_mode not in ("init", "input", "both", "none"):
            raise ValueError(f"z_mode must be init, input, both or none, got {z_mode!r}")
        self.z_mode, self.num_layers, self.hidden_size = z_mode, num_layers, hidden_size
        self.embed = embedding if embedding is not None else nn.Embedding(vocab_size, embed_size)
        z_in = latent_size if z_mode in ("input", "both") else 0
        self.lstm = nn.LSTM(self.embed.embedding_dim + z_in, hidden_size, num_layers, batch_first=True)
        self.z_to_state = (nn.Linear(latent_size, hidden_size * num_layers)
                           if z_mode in ("init", "both") else None)
        self.dropout = nn.Dropout(dropout)
        self.out = OutputLayer(hidden_size, vocab_size)

    def hidden_states(self, inputs: torch.Tensor, z: torch.Tensor | None, state=None):
        """`inputs (B, T)`, `z (n, B, d)` -> states `(n*B, T, H)` and the final (h, c)."""
        n = 1 if z is None else z.shape[0]
        emb = self.dropout(self.embed(inputs))
        if n > 1:
            emb = emb.unsqueeze(0).expand(n, *emb.shape).reshape(-1, *emb.shape[1:])
        if z is not None:
            flat_z = z.reshape(-1, z.shape[-1]).to(emb.dtype)
            if self.z_mode in ("input", "both"):
                emb = torch.cat([emb, flat_z.unsqueeze(1).expand(-1, emb.shape[1], -1)], -1)
            if state is None and self.z_to_state is not None:
                c0 = self.z_to_state(flat_z).view(-1, self.num_layers, self.hidden_size).transpose(0, 1)
                state = (torch.tanh(c0).contiguous(), c0.contiguous())
        out, state = self.lstm(emb, state)
        return self.dropout(out), state

    def log_likelihood(self, inputs, targets, mask, z) -> torch.Tensor:
        """Sum of target log-probs `(n, B)` (n = 1 when z is None)."""
        hidden, _ = self.hidden_states(inputs, z)
        n = 1 if z is None else z.shape[0]
        rep = (lambda t: t.unsqueeze(0).expand(n, *t.shape).reshape(-1, t.shape[-1])) if n > 1 else (lambda t: t)
        return self.out(hidden, rep(targets), rep(mask)).view(n, -1)

"""Recurrent parts for sentences: embedding + LSTM encoder, z-conditioned LSTM decoder, and an
output layer that scores targets without materialising every vocabulary logit at once."""
from __future__ import annotations

import torch
from torch import nn


# Both paths fold the bias into the matrix product as an extra input column of ones (weight
# `(V, H+1)`, hidden `(N, H+1)`): `addmm` would first copy the bias into every row of the `(N, V)`
# output, one more pass over the largest tensor there is, and its gradient would be one more
# reduction over it; as a column it comes out of the weight-gradient product for free.

def _with_ones(hidden: torch.Tensor) -> torch.Tensor:
    return torch.cat([hidden, hidden.new_ones(hidden.shape[0], 1)], 1)


def _chunked_target_log_prob(hidden, weight, bias, targets, chunk_rows: int, compute_dtype):
    """`log_softmax(hidden @ weight.T + bias)[i, targets[i]]` per row, `(N, H) -> (N,)` fp32,
    with one `(chunk_rows, V)` block of logits in memory (for evaluation: no graph). The block is
    allocated once: a fresh one per chunk pays the kernel's page faults every time."""
    rows = hidden.shape[0]
    w = torch.cat([weight, bias[:, None]], 1).to(compute_dtype)
    block = torch.empty(min(chunk_rows, rows), w.shape[0], device=hidden.device, dtype=compute_dtype)
    block32 = block if compute_dtype == torch.float32 else torch.empty_like(block, dtype=torch.float32)
    token_lp = torch.empty(rows, device=hidden.device, dtype=torch.float32)
    for start in range(0, rows, chunk_rows):
        stop = min(start + chunk_rows, rows)
        logits = torch.mm(_with_ones(hidden[start:stop]).to(compute_dtype), w.t(), out=block[:stop - start])
        logits = block32[:stop - start].copy_(logits) if block32 is not block else logits
        # In place, and log_softmax rather than logsumexp: torch's logsumexp makes two (rows, V)
        # temporaries and takes 20-50% longer here (benchmarks/README.md).
        logp = torch.log_softmax(logits, 1, out=logits)
        token_lp[start:stop] = logp.gather(1, targets[start:stop, None])[:, 0]
    return token_lp


FUSED_BLOCK_ROWS = 256    # rows of (rows, V) logits per block in the fused bf16 forward


class _FusedTargetLogProb(torch.autograd.Function):
    """The same `(N, H) -> (N,)` as `_chunked_target_log_prob`, differentiable, without
    autograd's copies of the `(N, V)` vocabulary logits.

    Forward computes the logits in one `(N, V)` buffer and overwrites it in place with
    d(-log p)/d logits = softmax - onehot; backward is two matrix products with it. Autograd's
    own path keeps the logits and the log-softmax output, fills a zero `(N, V)` gradient and runs
    a log-softmax backward over it: three more passes over the largest tensor of the step
    (benchmarks/README.md). The softmax is fp32; the matrix products run in `compute_dtype`
    (under bf16 autocast the stored gradient is bf16 too, as autocast's own linear backward
    would have it).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, compute_dtype):
        h = _with_ones(hidden).to(compute_dtype)
        w = torch.cat([weight, bias[:, None]], 1).to(compute_dtype)
        ctx.dtypes = compute_dtype, hidden.dtype, weight.dtype, bias.dtype
        rows = len(h)
        grad_logits = torch.empty(rows, w.shape[0], device=h.device, dtype=compute_dtype)
        token_lp = torch.empty(rows, device=h.device, dtype=torch.float32)
        # Under bf16 each row block goes product -> fp32 copy -> log-softmax -> exp -> bf16 copy
        # while it is still in cache (+6% a training step on an AMD EPYC); fp32 has no copies
        # and gains nothing from blocks (benchmarks/README.md), so it takes all rows at once.
        block_rows = rows if compute_dtype == torch.float32 else FUSED_BLOCK_ROWS
        minus_one = h.new_full((min(block_rows, rows), 1), -1.0, dtype=torch.float32)
        for start in range(0, rows, block_rows):
            stop = min(start + block_rows, rows)
            block = torch.mm(h[start:stop], w.t(), out=grad_logits[start:stop])
            logits = block.float()    # copies only under bf16
            logp = torch.log_softmax(logits, 1, out=logits)
            block_targets = targets[start:stop, None]
            token_lp[start:stop] = logp.gather(1, block_targets)[:, 0]
            logp.exp_().scatter_add_(1, block_targets, minus_one[:stop - start])
            if logp is not block:
                block.copy_(logp)
        ctx.save_for_backward(h, w, grad_logits)
        return token_lp

    @staticmethod
    def backward(ctx, grad_token_lp):
        h, w, grad_logits = ctx.saved_tensors
        compute_dtype, hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        # d token_lp / d logits = -(softmax - onehot), times grad_token_lp per row: the row scale
        # goes onto the (N, H) factors, never onto the (N, V) buffer.
        scale = -grad_token_lp.to(compute_dtype)[:, None]
        grad_hidden = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_hidden = (grad_logits @ w[:, :-1]).mul_(scale).to(hidden_dtype)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_w = grad_logits.t() @ (h * scale)          # (V, H+1): [weight | bias]
            grad_weight = grad_w[:, :-1].to(weight_dtype).contiguous()
            grad_bias = grad_w[:, -1].to(bias_dtype).contiguous()
        return grad_hidden, grad_weight, grad_bias, None, None


def _compute_dtype(device: torch.device) -> torch.dtype:
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return torch.float32


class OutputLayer(nn.Module):
    """Hidden states -> summed target log-probabilities.

    Only non-padding positions are projected (bucketed batches have little padding, but the
    importance-sampled evaluation multiplies every row by K). With gradients, projection,
    log-softmax and cross-entropy gradient are one fused step (`_FusedTargetLogProb`); without,
    at most `chunk_rows` rows of vocabulary logits exist at a time. The softmax runs in fp32
    even under bf16 autocast.
    """

    def __init__(self, hidden_size: int, vocab_size: int, chunk_rows: int = 512):
        super().__init__()
        self.proj = nn.Linear(hidden_size, vocab_size)
        self.chunk_rows = chunk_rows

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`hidden (N, T, H)`, `targets (N, T)`, `mask (N, T)` -> log p per sequence `(N,)`."""
        rows = mask.reshape(-1).nonzero().squeeze(1)
        flat_hidden = hidden.reshape(-1, hidden.shape[-1])[rows]
        flat_targets = targets.reshape(-1)[rows]
        args = (flat_hidden, self.proj.weight, self.proj.bias, flat_targets)
        compute_dtype = _compute_dtype(hidden.device)
        if torch.is_grad_enabled() and any(t.requires_grad for t in args[:3]):
            token_lp = _FusedTargetLogProb.apply(*args, compute_dtype)
        else:
            token_lp = _chunked_target_log_prob(*args, self.chunk_rows, compute_dtype)
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

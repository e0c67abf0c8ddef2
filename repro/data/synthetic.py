"""The synthetic corpus of He et al. 2019: sentences from a random LSTM conditioned on a known z.

A never-trained LSTM language model generates fixed-length sentences conditioned on a 2-D
latent drawn from a uniform mixture of four unit-variance Gaussians at (+-2, +-2). The latent
sets the initial cell state (c0 = W z, h0 = tanh c0), is appended to every input, and adds a
direct z -> vocabulary term to the logits, whose large initial scale makes tokens depend
strongly on z. Every parameter is uniform in [-1, 1], the z -> vocabulary map in
[-scale, scale]. The first token is uniform; the rest are sampled from the softmax. Each
sentence's true latent is kept, so encoders can be checked against it. Re-implemented from the
description in `docs/data.md §He`; ids differ from He's released files.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict

import torch

from repro.data.text import TextCorpus, TextSplit, Vocab

EMBED, HIDDEN, LATENT = 100, 100, 2
MODES = torch.tensor([[-2.0, -2.0], [2.0, 2.0], [-2.0, 2.0], [2.0, -2.0]])


class _TrueModel(torch.nn.Module):
    def __init__(self, vocab_size: int, scale: float, gen: torch.Generator):
        super().__init__()
        self.embed = torch.nn.Embedding(vocab_size, EMBED)
        self.cell = torch.nn.LSTMCell(EMBED + LATENT, HIDDEN)
        self.z_to_c = torch.nn.Linear(LATENT, HIDDEN, bias=False)
        self.h_to_vocab = torch.nn.Linear(HIDDEN, vocab_size, bias=False)
        self.z_to_vocab = torch.nn.Linear(LATENT, vocab_size, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=gen) * 2 - 1)
            self.z_to_vocab.weight.copy_((torch.rand(self.z_to_vocab.weight.shape, generator=gen) * 2 - 1) * scale)

    @torch.no_grad()
    def sample(self, z: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
        n, vocab = z.shape[0], self.embed.num_embeddings
        c = self.z_to_c(z)
        h = torch.tanh(c)
        token = torch.randint(vocab, (n,), generator=gen)
        out = [token]
        bias = self.z_to_vocab(z)
        for _ in range(length - 1):
            h, c = self.cell(torch.cat([self.embed(token), z], -1), (h, c))
            probs = torch.softmax(self.h_to_vocab(h) + bias, -1)
            token = torch.multinomial(probs, 1, generator=gen).squeeze(1)
            out.append(token)
        return torch.stack(out, 1)


def generate(cfg) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """`({split: (N, length) ids}, {split: (N, 2) true latents})` for a `SyntheticConfig`."""
    gen = torch.Generator().manual_seed(cfg.seed)
    model = _TrueModel(cfg.vocab_size, cfg.latent_logit_scale, gen)
    tokens, latents = {}, {}
    for split, n in (("train", cfg.num_train), ("valid", cfg.num_valid), ("test", cfg.num_test)):
        mode = torch.randint(len(MODES), (n,), generator=gen)
        z = MODES[mode] + torch.randn(n, LATENT, generator=gen)
        tokens[split], latents[split] = model.sample(z, cfg.length, gen), z
    return tokens, latents


def load_synthetic(data_cfg) -> TextCorpus:
    cfg = data_cfg.synthetic
    tokens, latents = generate(cfg)
    vocab = Vocab([f"w{i}" for i in range(cfg.vocab_size)])
    offset = len(vocab) - cfg.vocab_size  # ids shift past the special symbols
    splits = {s: TextSplit.from_lists((t + offset).tolist()) for s, t in tokens.items()}
    digest = hashlib.sha256(json.dumps(asdict(cfg), sort_keys=True).encode()).hexdigest()
    corpus = TextCorpus("synthetic", vocab, splits, digest)
    corpus.true_latents = latents
    return corpus

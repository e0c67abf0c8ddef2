"""The fast paths compute what the plain ones do: the fused projection + cross-entropy against
`F.cross_entropy` (values and gradients, fp32 and bf16 autocast), the chunked evaluation path
against the fused one, and bf16 evaluation against fp32 on one small trained checkpoint (the
issue's rule: bf16 may serve evaluation only if it moves test NLL by under 0.1%)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from repro.data.text import TextSplit, Vocab, bucketed_batches
from repro.evaluate import evaluate
from repro.sentence_models import TextVAE, TextVAEConfig
from repro.nn import lstm as lstm_module
from repro.nn.lstm import OutputLayer


def _plain(layer: OutputLayer, hidden, targets, mask):
    """The textbook version: all logits, cross-entropy, masked sum per sequence."""
    logits = layer.proj(hidden).float()
    nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
    return -(nll.view(targets.shape) * mask).sum(1)


def _case(seed=0, n=5, t=7, h=16, v=53):
    gen = torch.Generator().manual_seed(seed)
    layer = OutputLayer(h, v, chunk_rows=4)
    with torch.no_grad():   # spread-out logits, so a wrong softmax would show
        layer.proj.weight.mul_(4.0)
    hidden = torch.randn(n, t, h, generator=gen)
    targets = torch.randint(0, v, (n, t), generator=gen)
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    mask = torch.arange(t)[None, :] < lengths[:, None]
    weights = torch.randn(n, generator=gen)   # an arbitrary upstream gradient per sequence
    return layer, hidden, targets, mask, weights


def _grads(fn, layer, hidden, targets, mask, weights):
    hidden = hidden.clone().requires_grad_()
    out = fn(layer, hidden, targets, mask)
    grads = torch.autograd.grad((out * weights).sum(), [hidden, layer.proj.weight, layer.proj.bias])
    return out.detach(), grads


def test_fused_cross_entropy_matches_plain_values_and_gradients():
    layer, hidden, targets, mask, weights = _case()
    fused, fused_grads = _grads(lambda l, *a: l(*a), layer, hidden, targets, mask, weights)
    plain, plain_grads = _grads(_plain, layer, hidden, targets, mask, weights)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)
    for got, want in zip(fused_grads, plain_grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # masked positions get no gradient at all
    assert fused_grads[0][~mask].abs().max() == 0


@pytest.mark.parametrize("block_rows", [1, 4, 7, 10_000])
@pytest.mark.parametrize("bf16", [False, True])
def test_fused_cross_entropy_in_row_blocks_matches_one_block(monkeypatch, block_rows, bf16):
    """Under bf16 the fused forward works through row blocks (one block, several, a ragged last
    one): the blocks must give what one pass over all rows gives, values and gradients (fp32
    takes every row at once whatever the block size, and must too)."""
    layer, hidden, targets, mask, weights = _case(seed=2, n=6)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        monkeypatch.setattr(lstm_module, "FUSED_BLOCK_ROWS", 10_000)
        whole, whole_grads = _grads(lambda l, *a: l(*a), layer, hidden, targets, mask, weights)
        monkeypatch.setattr(lstm_module, "FUSED_BLOCK_ROWS", block_rows)
        blocks, block_grads = _grads(lambda l, *a: l(*a), layer, hidden, targets, mask, weights)
    tolerance = dict(rtol=1e-2, atol=1e-2) if bf16 else dict(rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(blocks, whole, **tolerance)
    for got, want in zip(block_grads, whole_grads):
        torch.testing.assert_close(got, want, **tolerance)


def test_fused_cross_entropy_under_bf16_autocast_matches_autocast_plain():
    layer, hidden, targets, mask, weights = _case(seed=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, fused_grads = _grads(lambda l, *a: l(*a), layer, hidden, targets, mask, weights)
        plain, plain_grads = _grads(_plain, layer, hidden, targets, mask, weights)
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, plain, rtol=1e-3, atol=1e-3)
    for got, want in zip(fused_grads, plain_grads):
        assert got.dtype == torch.float32
        # both round the same products to bf16; they differ only in bf16 rounding order
        assert (got - want).abs().max() <= 2e-2 * want.abs().max()


@pytest.mark.parametrize("chunk_rows", [1, 3, 1000])
def test_evaluation_path_matches_the_training_path_for_any_chunk(chunk_rows):
    layer, hidden, targets, mask, _ = _case(seed=2)
    layer.chunk_rows = chunk_rows
    with_grad = layer(hidden.clone().requires_grad_(), targets, mask)
    with torch.inference_mode():
        without = layer(hidden, targets, mask)
    assert not without.requires_grad
    torch.testing.assert_close(without, with_grad.detach(), rtol=1e-5, atol=1e-5)


def _markov_corpus(num_sentences: int, seed: int) -> tuple[Vocab, list[list[int]]]:
    """Sentences from a sparse random bigram chain over 60 words: learnable in a few hundred steps."""
    gen = torch.Generator().manual_seed(seed)
    vocab = Vocab([f"w{i}" for i in range(60)])
    first = len(vocab) - 60
    successors = torch.randint(first, len(vocab), (len(vocab), 3), generator=gen)
    sentences = []
    for _ in range(num_sentences):
        word, sentence = int(torch.randint(first, len(vocab), (1,), generator=gen)), []
        for _ in range(int(torch.randint(4, 12, (1,), generator=gen))):
            sentence.append(word)
            word = int(successors[word, torch.randint(0, 3, (1,), generator=gen)])
        sentences.append(sentence)
    return vocab, sentences


def _train_small_checkpoint():
    """A small TextVAE trained for 120 updates on the bigram corpus, and held-out batches."""
    torch.manual_seed(0)
    vocab, sentences = _markov_corpus(736, seed=1)
    train, test = TextSplit.from_lists(sentences[:640]), TextSplit.from_lists(sentences[640:])
    model = TextVAE(TextVAEConfig(embed_size=32, encoder_hidden=48, decoder_hidden=48, latent_size=4), vocab)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for epoch in range(6):
        for step, batch in enumerate(bucketed_batches(train, 32, vocab, shuffle=True, epoch=epoch)):
            optimizer.zero_grad()
            model.loss(batch, step)["loss"].backward()
            optimizer.step()
    return model, list(bucketed_batches(test, 32, vocab, shuffle=False))


@pytest.fixture(scope="module")
def small_checkpoint():
    return _train_small_checkpoint()


@pytest.mark.needs_cpu_bf16
def test_bf16_evaluation_moves_test_nll_by_under_a_tenth_of_a_percent(small_checkpoint):
    model, batches = small_checkpoint
    fp32 = evaluate(model, batches, ("nll",), iw_samples=50, iw_chunk=25, seed=3)
    bf16 = evaluate(model, batches, ("nll",), iw_samples=50, iw_chunk=25, seed=3, bf16=True)
    # the check means something only if the model has peaked predictions (uniform: log 64 per token)
    assert fp32.metrics["nll"] < 0.7 * math.log(64) * fp32.metrics["num_targets"] / fp32.metrics["num_examples"]
    change = abs(bf16.metrics["nll"] / fp32.metrics["nll"] - 1)
    assert change < 1e-3, f"bf16 moved the test NLL by {change:.3%}"

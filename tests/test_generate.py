"""Decoding from latent codes (`repro.generate`) on the Bowman smoke model."""
from __future__ import annotations

import pytest
import torch

from repro.data import load_corpus
from repro.generate import decode, qualitative
from repro.registry import resolve

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def model_and_corpus():
    variant, cfg = resolve("bowman2016", "vae", "smoke")
    corpus = load_corpus(cfg.data)
    torch.manual_seed(0)
    return variant.build(cfg, corpus).eval(), corpus


def _sampled(model, z, seed):
    return decode(model, z, max_len=10, sample=True, generator=torch.Generator().manual_seed(seed))


def test_sampled_decoding_repeats_with_the_seed(model_and_corpus):
    model, _ = model_and_corpus
    z = torch.randn(4, 4)            # the smoke preset's latent size
    assert _sampled(model, z, 1) == _sampled(model, z, 1)


@needs_cuda
def test_a_model_on_cuda_samples_the_same_sentences_from_a_cpu_seed(model_and_corpus):
    """`qualitative` seeds a CPU generator; on a GPU it crashed at the end of every training."""
    model, corpus = model_and_corpus
    z = torch.randn(4, 4)
    on_cpu = _sampled(model, z, 1)
    gpu_model = model.to("cuda")
    try:
        assert _sampled(gpu_model, z.cuda(), 1) == on_cpu
        assert qualitative(gpu_model, corpus, num=2)["prior_samples_sampled"]
    finally:
        model.to("cpu")

"""Qualitative text outputs for the PTB rows: `repro.generate`'s samples, reconstructions and
homotopy, with the prior samples drawn from the model's own prior. The shared hook draws z from
N(0, I), which is the prior only for the Gaussian rows; an AF prior is sampled sequentially
(`AFPrior.sample`)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from repro.generate import decode, format_qualitative, qualitative
from repro.nn.priors import AFPrior

NUM_SAMPLES = 5


def prior_samples(model, corpus, seed: int) -> dict[str, list[str]]:
    """Greedy and ancestral decodings of `NUM_SAMPLES` draws from the model's AF prior."""
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    z = model.prior(None).sample(NUM_SAMPLES, device=device, generator=gen)
    words = lambda ids: " ".join(corpus.vocab.decode(ids))  # noqa: E731
    return {"prior_samples_greedy": [words(s) for s in decode(model, z)],
            "prior_samples_sampled": [words(s) for s in decode(model, z, sample=True, generator=gen)]}


def write_text_samples(model, corpus, cfg, run_dir: Path) -> list[Path]:
    """The `Variant.artifacts` hook: `samples.json` and `samples.txt` beside the run."""
    result = qualitative(model, corpus, num=NUM_SAMPLES, seed=cfg.seed)
    if isinstance(model.prior(None), AFPrior):
        result.update(prior_samples(model, corpus, cfg.seed))
    json_path, text_path = Path(run_dir) / "samples.json", Path(run_dir) / "samples.txt"
    json_path.write_text(json.dumps(result, indent=2))
    text_path.write_text(format_qualitative(result))
    return [json_path, text_path]

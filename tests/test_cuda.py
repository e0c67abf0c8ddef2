"""On a CUDA device (a lent GPU; skipped elsewhere, `needs_cuda`): every `paper` preset, at its
own model size and batch size, takes a few optimiser steps and one evaluation with the paper's
estimator settings. Run first on a lease (README, "GPU leases"): a preset that does not fit
or run on the GPU fails here in seconds, not after minutes of a sweep.

The data are the smoke preset's reduced corpus where it reads the paper's dataset, as in
`tests/test_presets.py`'s CPU version; the evaluation scores a few test examples only."""
import dataclasses

import pytest
import torch

from helpers_presets import paper_preset_and_corpus
from repro.evaluate import evaluate_corpus
from repro.registry import load_papers
from repro.train import build_optimizer

PAPER = [(p, v) for p, paper in sorted(load_papers().items())
         for v, var in paper.variants.items() if "paper" in var.presets]
STEPS = 3
EVAL_EXAMPLES = 16


@pytest.mark.needs_cuda
@pytest.mark.parametrize("paper, variant", PAPER)
def test_paper_preset_trains_and_evaluates_on_cuda(paper, variant):
    model = steps_and_evaluation(paper, variant, torch.device("cuda"))
    assert next(model.parameters()).device.type == "cuda"


def steps_and_evaluation(paper: str, variant: str, device: torch.device):
    """`STEPS` updates and an evaluation of the paper preset on `device`; the model after them."""
    # The paper's batch size, so that the memory one update needs is the paper's.
    var, cfg, corpus, split = paper_preset_and_corpus(paper, variant)
    torch.manual_seed(0)
    model = var.build(cfg, corpus).to(device)
    optimizer = build_optimizer(cfg, model)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for step, batch in zip(range(STEPS), corpus.batches(split, cfg.data.batch_size, shuffle=True, seed=0)):
        terms = model.loss(batch.to(device), step)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
        losses.append(terms["loss"].detach())
    assert len(losses) >= 1 and all(torch.isfinite(loss) for loss in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters())), "no update moved a parameter"

    eval_split = cfg.eval.split if cfg.eval.split in corpus.splits else split
    evaluation = dataclasses.replace(cfg.eval, split=eval_split, max_examples=EVAL_EXAMPLES,
                                     mi_au_whole_split=False)
    result = evaluate_corpus(model, corpus, evaluation, device=device, seed=0,
                             batch_size=cfg.data.eval_batch_size)
    assert result.metrics, "the evaluation scored nothing"
    scored = {k: v for k, v in result.metrics.items() if k not in ("num_examples", "num_targets")}
    assert all(torch.isfinite(torch.tensor(float(v))) for v in scored.values()), scored
    return model

"""Every registered variant's presets build, and every smoke preset trains end to end."""
import math

import pytest

from repro.config import validate
from repro.registry import load_papers, resolve
from repro.train import train

ALL = [(p, v, preset) for p, paper in sorted(load_papers().items())
       for v, var in paper.variants.items() for preset in var.presets]
SMOKE = [(p, v) for p, v, preset in ALL if preset == "smoke"
         and load_papers()[p].variants[v].runnable]


@pytest.mark.parametrize("paper, variant, preset", ALL)
def test_preset_is_valid(paper, variant, preset):
    _, cfg = resolve(paper, variant, preset)
    validate(cfg)
    assert (cfg.paper, cfg.variant, cfg.preset) == (paper, variant, preset)


@pytest.mark.parametrize("paper, variant", SMOKE)
def test_smoke_preset_trains_and_evaluates(paper, variant, tmp_path):
    var, cfg = resolve(paper, variant, "smoke")
    for needed in var.requires:           # runs this one reads (Yang's "+ init" LM)
        train(resolve(paper, needed, "smoke")[1], runs_root=tmp_path, records_root=None,
              track=False, progress=False)
    result = train(cfg, runs_root=tmp_path, records_root=tmp_path / "records", track=False,
                   progress=False)
    metrics = result.record["metrics"]
    split = cfg.eval.split
    if "nll" in result.record["eval"]["metrics"]:
        assert metrics[f"{split}/nll"] > 0
    else:                                  # an implicit latent has no likelihood (Shen 2018)
        assert math.isfinite(metrics[f"{split}/objective"])
    assert result.record_path.is_file()


PAPER = [(p, v) for p, v, preset in ALL if preset == "paper"]


@pytest.mark.parametrize("paper, variant", PAPER)
def test_paper_preset_builds_its_model_and_takes_a_training_step(paper, variant):
    """The `paper` preset's own model config takes one update on a batch of two: from the smoke
    preset's reduced data where it reads the same corpus, else from the first split of the
    paper's corpus present here (SwDA has no train split here). A broken paper preset fails here,
    not on a lent GPU."""
    import torch

    from helpers_presets import paper_preset_and_corpus
    from repro.train import build_optimizer
    var, cfg, corpus, split = paper_preset_and_corpus(paper, variant, batch_size=2)
    torch.manual_seed(0)
    model = var.build(cfg, corpus)
    optimizer = build_optimizer(cfg, model)
    batch = next(iter(corpus.batches(split, 2, shuffle=True, seed=0)))
    loss = model.loss(batch, 0)["loss"]
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())

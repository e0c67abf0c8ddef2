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


def test_presets_of_variant_binds_the_variant_and_keeps_the_named_presets():
    from repro.config import ConfigError
    from repro.registry import presets_of_variant
    presets = {"smoke": lambda variant: ("smoke", variant), "paper": lambda variant: ("paper", variant)}
    every = presets_of_variant(presets, "vae")
    assert list(every) == ["smoke", "paper"] and every["paper"]() == ("paper", "vae")
    assert list(presets_of_variant(presets, "vae", names=("paper",))) == ["paper"]
    assert presets_of_variant(presets, "vae", names=()) == {}
    with pytest.raises(ConfigError, match="cpu"):
        presets_of_variant(presets, "vae", names=("cpu",))


def _presets_modules():
    """Each paper package's `presets.py` (a registered paper without one, such as the demo, is
    not a package under `papers/`)."""
    import importlib.util
    names = [name for name in sorted(load_papers())
             if importlib.util.find_spec(f"papers.{name}") is not None]
    return {name: importlib.import_module(f"papers.{name}.presets") for name in names}


def test_every_package_registers_its_presets_from_one_presets_dict():
    """One idiom: `PRESETS` maps a preset name to a function of the variant name, and each
    registered preset of that name builds the same config (Yang's "+ init" LM adds protocol
    presets of its own beside them)."""
    import dataclasses
    modules = _presets_modules()
    assert len(modules) >= 8
    for name, module in modules.items():
        assert isinstance(module.PRESETS, dict) and module.PRESETS, name
        for variant, var in load_papers()[name].variants.items():
            for preset in set(var.presets) & set(module.PRESETS):
                registered, direct = var.presets[preset](), module.PRESETS[preset](variant)
                assert dataclasses.asdict(registered) == dataclasses.asdict(direct), (name, variant, preset)


def test_scale_rows_are_keyword_only_and_name_the_latent_size():
    import dataclasses
    for name, module in _presets_modules().items():
        rows = [obj for obj in vars(module).values() if isinstance(obj, type)
                and dataclasses.is_dataclass(obj) and obj.__module__ == module.__name__]
        for row in rows:
            fields = dataclasses.fields(row)
            assert all(f.kw_only for f in fields), (name, row.__name__)
            assert "latent" not in {f.name for f in fields}, (name, row.__name__)


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

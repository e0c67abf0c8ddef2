"""Every registered variant's presets build, and every smoke preset trains end to end."""
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
    _, cfg = resolve(paper, variant, "smoke")
    result = train(cfg, runs_root=tmp_path, records_root=tmp_path / "records", track=False,
                   progress=False)
    metrics = result.record["metrics"]
    split = cfg.eval.split
    assert metrics[f"{split}/nll"] > 0
    assert result.record_path.is_file()

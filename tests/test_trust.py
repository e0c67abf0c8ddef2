"""What a hostile but fair new user tried (issue 42): no file overwritten that the tool does not own,
no seeds of different configs averaged together, no name that climbs out of its folder, one clear
line instead of a traceback, and a `repro runs` status that never lies. Each test here failed on the
code before its fix."""
from __future__ import annotations

import json
import os
import stat
import time

import pytest
import torch

from repro import records as records_mod
from repro import tables
from repro import train as train_mod
from repro.cli import main
from repro.config import ConfigError, DataConfig, apply_overrides
from repro.data import load_corpus, updates_per_epoch
from repro.evaluate import batch_pools, evaluate, exp_or_inf
from repro.nn.distributions import DiagonalGaussian
from repro.registry import get_paper, resolve
from repro.runs import find_runs, run_status


def _cfg(*overrides, variant="vae", seed=0):
    _, cfg = resolve("bowman2016", variant, "smoke")
    cfg.seed = seed
    return apply_overrides(cfg, list(overrides))


def _train(cfg, root, records=None):
    return train_mod.train(cfg, runs_root=root / "runs", records_root=records, track=False,
                           progress=False)


def _record(variant: str, seed: int, nll: float, *overrides: str, preset: str = "cpu") -> dict:
    _, cfg = resolve("bowman2016", variant, preset)
    cfg.seed = seed
    cfg = apply_overrides(cfg, list(overrides))
    return {"paper": "bowman2016", "variant": variant, "preset": preset, "seed": seed,
            "dataset": "ptb", "substitute_for": None,
            "metrics": {"test/nll": nll, "test/ppl": 120.0, "test/elbo": nll + 1, "test/kl": 3.0},
            "eval": {"iw_samples": cfg.eval.iw_samples, "mi_pool": "dataset", "split": "test",
                     "metrics": ["nll", "elbo", "kl"]},
            "config": cfg.to_dict(), "commit": "abc123", "wall_time_s": 10.0, "data_sha256": "x"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished smoke run: its folder is copied and damaged by the tests below."""
    root = tmp_path_factory.mktemp("trained")
    result = _train(_cfg(), root, root / "records")
    return result.run_dir


# -------------------------------------------------------------- 1. tables never overwrite

def test_table_with_an_absent_records_folder_is_an_error_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("the project's own readme\n")
    assert main(["table", "--records-dir", "myrecords"]) == 2
    assert main(["table", "--records-dir", "myrecords", "--results-dir", "."]) == 2
    assert (tmp_path / "README.md").read_text() == "the project's own readme\n"
    assert "does not exist" in capsys.readouterr().err


def test_table_never_overwrites_a_file_it_did_not_generate(tmp_path):
    records = tmp_path / "records"
    records_mod.write_record(_record("rnnlm", 0, 110.0), records)
    readme = tmp_path / "README.md"
    readme.write_text("hand-written\n")
    with pytest.raises(tables.TableError, match="not written by `repro table`"):
        tables.write_all(records, tmp_path)
    assert readme.read_text() == "hand-written\n" and not (tmp_path / "bowman2016.md").exists()
    assert main(["table", "--records-dir", str(records), "--results-dir", str(tmp_path)]) == 2
    # A table the tool wrote is its own to rewrite.
    out = tmp_path / "out"
    assert tables.write_all(records, out) and tables.write_all(records, out)


def test_a_non_default_records_folder_writes_tables_only_where_asked(tmp_path, capsys):
    records = tmp_path / "records"
    records_mod.write_record(_record("rnnlm", 0, 110.0), records)
    assert main(["table", "--records-dir", str(records)]) == 2
    assert "--results-dir" in capsys.readouterr().err
    assert tables.write_where_asked(records, None) == []
    assert main(["table", "--records-dir", str(records), "--results-dir", str(tmp_path / "t")]) == 0
    assert (tmp_path / "t" / "bowman2016.md").is_file()


# ------------------------------------------------------- 2. one config per row, never pooled

def test_seeds_of_different_configs_get_their_own_rows_naming_the_overrides(tmp_path):
    records = tmp_path / "records"
    records_mod.write_record(_record("vae", 0, 100.0), records)
    records_mod.write_record(_record("vae", 1, 102.0), records)
    records_mod.write_record(_record("vae", 2, 150.0, "train.epochs=2", "eval.iw_samples=2000"), records)
    text = tables.render_paper_table(get_paper("bowman2016"), records)
    rows = [line for line in text.splitlines() if line.startswith("| vae | cpu")]
    assert len(rows) == 2
    preset_row = next(r for r in rows if r.startswith("| vae | cpu |"))
    assert "101.00 ± 1.41" in preset_row and "| 100 |" in preset_row
    other = next(r for r in rows if "train.epochs=2" in r)
    assert "eval.iw_samples=2000" in other and "150.00" in other and "| 2000 |" in other
    # Only the preset's own runs are set against the paper.
    against = [line for line in text.split("## Every metric")[0].splitlines() if "| vae |" in line]
    assert against and all("150.00" not in line for line in against)


def test_a_set_run_never_replaces_the_preset_record_of_its_seed(tmp_path):
    records = tmp_path / "records"
    preset = records_mod.write_record(_record("vae", 0, 100.0), records)
    changed = records_mod.write_record(_record("vae", 0, 90.0, "train.epochs=2"), records)
    assert preset.name == "vae__cpu__seed0.json" and changed != preset
    assert json.loads(preset.read_text())["metrics"]["test/nll"] == 100.0
    assert changed.name.startswith("vae__cpu__seed0__")


def test_check_fails_on_a_table_that_pooled_different_configs(tmp_path):
    records = tmp_path / "records"
    records_mod.write_record(_record("vae", 0, 100.0), records)
    second = records_mod.write_record(_record("vae", 1, 102.0), records)
    tables.write_all(records, tmp_path)
    assert tables.check(records, tmp_path) == []
    # Seed 1 turns out to have run another config: the committed table pooled it, so it is stale.
    record = json.loads(second.read_text())
    record["config"]["train"]["epochs"] = 2
    second.write_text(json.dumps(record))
    assert f"{tmp_path / 'bowman2016.md'} differs from its records" in tables.check(records, tmp_path)


def test_a_record_of_a_preset_that_changed_since_is_not_counted_as_that_preset(tmp_path):
    records = tmp_path / "records"
    record = _record("vae", 0, 100.0)
    record["config"]["optim"]["lr"] = 0.5   # the preset said 0.5 when this ran; it says 1e-3 now
    (records / "bowman2016").mkdir(parents=True)
    (records / "bowman2016" / "vae__cpu__seed0.json").write_text(json.dumps(record))
    bowman = next(line for line in tables.render_index(records).splitlines()
                  if line.startswith("| bowman2016 |"))
    assert "| 0 / 5 |" in bowman and "`vae`" in bowman
    assert "| vae | cpu + optim.lr=0.5 |" in tables.render_paper_table(get_paper("bowman2016"), records)


# ---------------------------------------------------------- 3. names that become paths

@pytest.mark.parametrize("override", ["preset=../../../../escaped", "paper=../x", "variant=a/b",
                                      "data.dataset=../ptb", "preset=.hidden", "seed=-5"])
def test_every_name_that_becomes_a_path_is_checked(override):
    with pytest.raises(ConfigError):
        _cfg(override)


def test_an_escaping_preset_writes_nothing_outside_the_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a" / "b").mkdir(parents=True)
    args = ["train", "bowman2016", "vae", "--preset", "smoke", "--no-mlflow", "--quiet",
            "--runs-dir", "a/b/runs", "--records-dir", "a/b/records", "--set", "preset=../../../escaped"]
    assert main(args) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b"]


def test_a_refused_paper_leaves_no_run_folder(tmp_path):
    with pytest.raises(ConfigError):
        _train(_cfg("paper=nosuchpaper"), tmp_path)
    assert not (tmp_path / "runs").exists()


# ----------------------------------------------------- 4. overflow and divergence

def test_a_perplexity_past_float_range_is_inf_not_a_crash():
    assert exp_or_inf(1e6) == float("inf") and exp_or_inf(1.0) == pytest.approx(2.718281828)


def test_a_huge_finite_loss_stops_as_a_divergence_with_its_marker(tmp_path):
    """The issue's own recipe: the smoke preset at lr 10 without clipping."""
    with pytest.raises(train_mod.TrainingDiverged):
        _train(_cfg("optim.lr=10", "optim.grad_clip=0"), tmp_path, tmp_path / "records")
    (run,) = find_runs(tmp_path / "runs")
    assert run.status.startswith("diverged") and not (tmp_path / "records").exists()


def test_a_divergence_after_a_checkpoint_keeps_that_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg("train.epochs=3")
    real_build = get_paper("bowman2016").variant("vae").build
    steps_per_epoch = {}

    def build(cfg, corpus):
        model = real_build(cfg, corpus)
        steps_per_epoch["n"] = updates_per_epoch(cfg, corpus)
        loss = model.loss

        def nan_in_epoch_2(batch, step):
            terms = loss(batch, step)
            if step >= steps_per_epoch["n"]:
                terms["loss"] = terms["loss"] * float("nan")
            return terms
        model.loss = nan_in_epoch_2
        return model

    monkeypatch.setattr(get_paper("bowman2016").variant("vae"), "build", build)
    with pytest.raises(train_mod.TrainingDiverged):
        _train(cfg, tmp_path)
    run_dir = train_mod.run_dir_for(cfg, tmp_path / "runs")
    last = train_mod.load_checkpoint(run_dir / "last.pt", "cpu")
    assert json.loads(last["state"])["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    assert (run_dir / "best.pt").is_file() and (run_dir / train_mod.DIVERGED_MARKER).is_file()
    assert run_status(run_dir).status == "diverged"


# -------------------------------------------- 5. eval and sample on damaged run folders

def _garbage() -> bytes:
    """Random bytes, the same every run; they make the unpickler raise IndexError, not a
    pickle error, which is why every exception of a failed load must be caught."""
    import random
    return random.Random(2).randbytes(512)


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
@pytest.mark.parametrize("command", ["eval", "sample"])
def test_a_damaged_best_checkpoint_is_one_line_not_a_traceback(trained, tmp_path, capsys, damage, command):
    import shutil
    run_dir = tmp_path / "run"
    shutil.copytree(trained, run_dir)
    best = run_dir / "best.pt"
    data = best.read_bytes()
    best.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": _garbage()}[damage])
    assert main([command, str(run_dir)] + (["--quiet"] if command == "eval" else [])) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and "best.pt" in err


def test_a_missing_run_folder_and_a_shape_override_are_one_line_errors(trained, tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nothing-here"), "--quiet"]) == 1
    assert "is not a folder" in capsys.readouterr().err
    assert main(["eval", str(trained), "--quiet", "--set", "model.latent_size=99"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "only eval.* options" in err


# ------------------------------------------------------------ 6. a disposable cache

@pytest.mark.parametrize("damage", [b"", b"\x80\x02garbage", None])
def test_a_corrupt_numericalised_cache_is_discarded_and_rebuilt(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    data = DataConfig(train_fraction=0.01, max_vocab=200)
    fresh = load_corpus(data)
    (cached,) = (tmp_path / "numericalised").glob("ptb-*.pt")
    cached.write_bytes(cached.read_bytes()[:100] if damage is None else damage)
    with pytest.warns(UserWarning, match="discarding unreadable cache file"):
        again = load_corpus(data)
    assert torch.equal(again.split("train").flat, fresh.split("train").flat)
    assert torch.load(cached, weights_only=True)      # rebuilt whole


# ------------------------------------------------------------ 7, 8. status that tells the truth

def test_a_kill_between_the_two_records_leaves_the_run_resumable(tmp_path, monkeypatch):
    cfg = _cfg()
    real = records_mod.write_json_atomic

    def killed_at_run_folder_record(obj, path):
        if path.name == "record.json":
            raise KeyboardInterrupt("simulated kill")
        return real(obj, path)

    with monkeypatch.context() as patch:
        patch.setattr(records_mod, "write_json_atomic", killed_at_run_folder_record)
        with pytest.raises(KeyboardInterrupt):
            _train(cfg, tmp_path, tmp_path / "records")
    assert list((tmp_path / "records").rglob("*.json"))       # the results record is there
    (run,) = find_runs(tmp_path / "runs")
    assert run.status == "interrupted" and "--resume" in run.resume


def test_a_half_written_run_record_is_unreadable_for_that_run_only(trained, tmp_path):
    import shutil
    shutil.copytree(trained, tmp_path / "a" / "seed0")
    shutil.copytree(trained, tmp_path / "b" / "seed0")
    record = tmp_path / "a" / "seed0" / "record.json"
    record.write_text(record.read_text()[:40])
    statuses = sorted(run_status(p).status for p in (tmp_path / "a" / "seed0", tmp_path / "b" / "seed0"))
    assert statuses[0] == "finished" and statuses[1].startswith("unreadable: record.json")
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0


def test_nan_before_the_first_checkpoint_shows_as_diverged(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    (run_dir / ".lock").write_text("")
    (run_dir / train_mod.DIVERGED_MARKER).write_text(json.dumps({"reason": "nan", "attempts": []}))
    assert run_status(run_dir).status.startswith("diverged before its first checkpoint")


def test_records_are_written_with_the_umask_mode_and_stale_parts_are_removed(tmp_path):
    folder = tmp_path / "records" / "bowman2016"
    folder.mkdir(parents=True)
    stale = folder / "tmpabc.part"
    stale.write_text("{")
    old = time.time() - 2 * records_mod.STALE_PART_S
    os.utime(stale, (old, old))
    path = records_mod.write_record(_record("vae", 0, 100.0), tmp_path / "records")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert not stale.exists() and list(folder.glob("*.part")) == []


# ------------------------------------------------- 9. He et al.'s MI pools for mi_pool=batch

def test_batch_pools_hold_one_length_and_at_most_the_pool_size():
    lengths = torch.tensor([7] * 40 + [8] * 5 + [7] * 3)
    pools = batch_pools(lengths, 32)
    for pool in pools.unique():
        members = lengths[pools == pool]
        assert len(members.unique()) == 1 and len(members) <= 32
    assert sorted(torch.bincount(pools)[torch.bincount(pools) > 0].tolist()) == [5, 11, 32]


class _Fixed(torch.nn.Module):
    """A 'model' whose posterior is given: enough for the MI estimator."""

    has_latent = True
    shared_metrics = ("mi",)

    def __init__(self, mu, logvar):
        super().__init__()
        self.mu, self.logvar, self.anchor = mu, logvar, torch.nn.Parameter(torch.zeros(1))

    def posterior(self, batch):
        return DiagonalGaussian(self.mu[batch.index], self.logvar[batch.index])


class _Batch:
    def __init__(self, index, lengths):
        self.index, self.lengths, self.size, self.num_targets = index, lengths, len(index), None

    def to(self, device):
        return self


def test_batch_mi_pools_only_same_length_examples():
    """One evaluation batch of 64 holding two lengths scores like the two length groups scored as
    batches of their own (each under 32): the pool never mixes lengths or exceeds its size."""
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(64, 3, generator=gen), torch.randn(64, 3, generator=gen) * 0.1
    model = _Fixed(mu, logvar)
    lengths = torch.tensor([5] * 20 + [9] * 44)
    whole = evaluate(model, [_Batch(torch.arange(64), lengths)], ["mi"], mi_pool="batch", seed=3)
    assert whole.options["mi_pool_size"] == 32 and whole.options["mi_pool_max"] == 32
    parts = [torch.arange(0, 20), torch.arange(20, 52), torch.arange(52, 64)]
    split = evaluate(model, [_Batch(i, lengths[i]) for i in parts], ["mi"], mi_pool="batch", seed=3)
    # Each example keeps its stream position, hence its draw: the two must agree exactly.
    assert whole.metrics["mi"] == pytest.approx(split.metrics["mi"], abs=1e-5)
    mixed = evaluate(model, [_Batch(torch.arange(64), lengths)], ["mi"], mi_pool="batch",
                     mi_pool_max=64, seed=3)
    assert mixed.metrics["mi"] != pytest.approx(whole.metrics["mi"], abs=1e-3)

"""`repro runs`: a run folder read back as running, finished or interrupted (with the command that
resumes it), on real smoke trainings."""
from __future__ import annotations

import json

import pytest

from repro import train as train_mod
from repro.cli import main
from repro.config import apply_overrides
from repro.registry import resolve
from repro.runs import find_runs, load_trained, run_status


def _cfg(seed=0):
    _, cfg = resolve("bowman2016", "vae", "smoke")
    cfg.seed = seed
    return apply_overrides(cfg, ["train.epochs=2"])


def _train(root, cfg):
    return train_mod.train(cfg, runs_root=root, records_root=None, track=False, progress=False)


def _killed_after_first_epoch(root, cfg, monkeypatch):
    def die(self, metrics, step):
        raise KeyboardInterrupt("simulated kill after the first checkpoint")
    with monkeypatch.context() as patch:
        patch.setattr(train_mod.Tracker, "log_metrics", die)
        with pytest.raises(KeyboardInterrupt):
            _train(root, cfg)


def test_finished_and_interrupted_runs_and_how_to_resume(tmp_path, monkeypatch):
    finished = _train(tmp_path, _cfg(seed=0))
    _killed_after_first_epoch(tmp_path, _cfg(seed=1), monkeypatch)

    done, killed = find_runs(tmp_path)
    assert (done.name, done.status, done.epoch, done.epochs) == ("bowman2016/vae/smoke/seed0", "finished", 2, 2)
    assert done.best_epoch == finished.record["train"]["best_epoch"] and done.resume == ""
    assert done.last["val/elbo"] == finished.history[-1]["val/elbo"]
    assert (killed.name, killed.status, killed.epoch, killed.epochs) == ("bowman2016/vae/smoke/seed1", "interrupted", 1, 2)
    assert killed.resume.startswith(f"repro train bowman2016 vae --preset smoke --seed 1 --runs-dir {tmp_path} --resume")


def test_a_diverged_run_says_so_and_how_to_resume_it_with_a_remedy(tmp_path, monkeypatch):
    cfg = _cfg()
    calls = {"n": 0}

    def blows_up_in_epoch_2(metrics):
        calls["n"] += 1
        return metrics["elbo"] * (100 if calls["n"] == 2 else 1)

    monkeypatch.setattr(train_mod, "validation_objective", blows_up_in_epoch_2)
    with pytest.raises(train_mod.TrainingDiverged):
        _train(tmp_path, cfg)
    (run,) = find_runs(tmp_path)
    assert (run.status, run.epoch, run.epochs) == ("diverged", 1, 2)
    assert "--resume" in run.resume and "lower optim.lr" in run.resume


def test_a_record_older_than_the_checkpoint_does_not_make_a_run_finished(tmp_path):
    """A run resumed after finishing (say with more epochs) and killed again keeps its old
    `record.json`: only a record of the checkpoint's own update count means finished."""
    _train(tmp_path, _cfg())
    directory = train_mod.run_dir_for(_cfg(), tmp_path)
    record_path = directory / "record.json"
    record = json.loads(record_path.read_text())
    record["train"]["steps"] -= 1
    record_path.write_text(json.dumps(record))
    assert run_status(directory).status == "interrupted"


def test_a_locked_run_is_running_even_before_its_first_checkpoint(tmp_path):
    directory = train_mod.run_dir_for(_cfg(), tmp_path)
    directory.mkdir(parents=True)
    with train_mod.run_dir_lock(directory):
        assert run_status(directory).status == "running, first epoch"
    status = run_status(directory)
    assert status.status == "no checkpoint: never finished an epoch"
    cfg = _cfg()     # named like a checkpointed run, not by its path on this machine
    assert status.name == f"{cfg.paper}/{cfg.variant}/{cfg.preset}/seed{cfg.seed}"


def test_the_cli_prints_every_run(tmp_path, capsys, monkeypatch):
    _killed_after_first_epoch(tmp_path, _cfg(), monkeypatch)
    assert main(["runs", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| bowman2016/vae/smoke/seed0 | interrupted | 1/2 |" in out and "resume: repro train" in out


def test_load_trained_says_what_is_missing_where_a_run_has_no_best_checkpoint(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(train_mod.TrainError, match="no best.pt"):
        load_trained(tmp_path)

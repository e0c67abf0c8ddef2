"""The trainer: exact resume, the NaN guard, records and MLflow runs (on the Bowman smoke preset)."""
from __future__ import annotations

import json
import math
import sys

import pytest
import torch

from repro import train as train_mod
from repro.config import ConfigError, apply_overrides
from repro.sentence_models import TextVAE
from repro.registry import resolve


def _cfg(*overrides):
    _, cfg = resolve("bowman2016", "vae-anneal-worddrop", "smoke")
    return apply_overrides(cfg, ["train.epochs=3", *overrides])


def _params(run_dir, name="last.pt"):
    blob = torch.load(run_dir / name, weights_only=True)
    return blob["model"] if "model" in blob else blob


def test_resumed_run_ends_with_the_same_parameters_and_metrics(tmp_path, monkeypatch):
    straight = train_mod.train(_cfg(), runs_root=tmp_path / "a", records_root=tmp_path / "ra",
                               progress=False)

    calls = {"n": 0}
    real_log = train_mod.Tracker.log_metrics

    def die_after_first_epoch(self, metrics, step):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt("simulated kill after the first checkpoint")
        return real_log(self, metrics, step)

    monkeypatch.setattr(train_mod.Tracker, "log_metrics", die_after_first_epoch)
    monkeypatch.setattr(train_mod.records, "git_commit", lambda: "aaa")
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(_cfg(), runs_root=tmp_path / "b", records_root=tmp_path / "rb", progress=False)
    monkeypatch.setattr(train_mod.Tracker, "log_metrics", real_log)
    monkeypatch.setattr(train_mod.records, "git_commit", lambda: "bbb")   # resumed by newer code
    resumed = train_mod.train(_cfg(), runs_root=tmp_path / "b", records_root=tmp_path / "rb",
                              resume=True, progress=False)
    assert resumed.record["commit"] == "bbb"
    assert resumed.record["train"]["commits"] == [{"commit": "aaa", "from_epoch": 0},
                                                  {"commit": "bbb", "from_epoch": 1}]
    assert straight.record["train"]["commits"] == [{"commit": straight.record["commit"],
                                                    "from_epoch": 0}]

    a, b = _params(straight.run_dir), _params(resumed.run_dir)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.record["metrics"] == straight.record["metrics"]
    assert resumed.record["mlflow_run_id"] and resumed.record["train"]["epochs"] == 3

    import mlflow
    run = mlflow.MlflowClient().get_run(resumed.record["mlflow_run_id"])
    assert run.info.status == "FINISHED"          # the same run, reopened and closed
    assert run.data.tags["paper"] == "bowman2016"


def test_a_checkpoint_from_before_the_commit_list_says_its_first_epochs_are_unaccounted():
    state = {"epoch": 17}
    train_mod._note_commit(state, "ccc")
    assert state["commits"] == [{"commit": None, "from_epoch": 0}, {"commit": "ccc", "from_epoch": 17}]


def test_resume_refuses_a_different_config(tmp_path):
    train_mod.train(_cfg("train.epochs=1"), runs_root=tmp_path, records_root=None, track=False,
                    progress=False)
    with pytest.raises(RuntimeError, match="different config"):
        train_mod.train(_cfg("train.epochs=1", "optim.lr=0.5"), runs_root=tmp_path, records_root=None,
                        track=False, resume=True, progress=False)
    # another thread count is the same experiment (a sweep resumed with other --jobs)
    resumed = train_mod.train(_cfg("train.epochs=1", "train.threads=2"), runs_root=tmp_path,
                              records_root=None, track=False, resume=True, progress=False)
    assert resumed.record["train"]["epochs"] == 1
    torch.set_num_threads(1)


def test_resume_takes_a_checkpoint_from_before_a_new_key_and_a_new_evaluation(tmp_path):
    """A key added to the config since the checkpoint counts at its default, and eval.* may
    differ: resuming continues the training and scores it under the current evaluation."""
    first = train_mod.train(_cfg("train.epochs=1"), runs_root=tmp_path, records_root=None,
                            track=False, progress=False)
    last = first.run_dir / "last.pt"
    ckpt = torch.load(last, weights_only=False)
    stored = json.loads(ckpt["config"])
    del stored["eval"]["mi_au_whole_split"]          # as written before the key existed
    ckpt["config"] = json.dumps(stored)
    torch.save(ckpt, last)
    resumed = train_mod.train(_cfg("train.epochs=1", "eval.iw_samples=3"), runs_root=tmp_path,
                              records_root=None, track=False, resume=True, progress=False)
    assert resumed.record["train"]["epochs"] == 1
    assert resumed.record["config"]["eval"]["iw_samples"] == resumed.record["eval"]["iw_samples"] == 3


def _poison_the_loss_in_epoch_2(monkeypatch):
    real_loss = TextVAE.loss

    def poisoned(self, batch, step):
        terms = real_loss(self, batch, step)
        if step >= 10:  # inside the second epoch (7 updates per smoke epoch)
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(TextVAE, "loss", poisoned)


def test_nan_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = _cfg()
    _poison_the_loss_in_epoch_2(monkeypatch)
    with pytest.raises(train_mod.TrainingDiverged, match="last good checkpoint"):
        train_mod.train(cfg, runs_root=tmp_path, records_root=tmp_path / "rec", track=False, progress=False)
    run_dir = train_mod.run_dir_for(cfg, tmp_path)
    blob = torch.load(run_dir / "last.pt", weights_only=True)
    assert json.loads(blob["state"])["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in blob["model"].values() if v.is_floating_point())
    assert not (tmp_path / "rec").exists()          # no record for a diverged run


@pytest.mark.parametrize("clip, clipped", [(1e-6, 1.0), (1e9, 0.0), (None, None)])
def test_a_clipped_run_logs_its_gradient_norm_and_how_often_it_clipped(tmp_path, clip, clipped):
    setting = "null" if clip is None else clip
    result = train_mod.train(_cfg("train.epochs=1", f"optim.grad_clip={setting}"), runs_root=tmp_path,
                             records_root=None, track=False, progress=False)
    epoch = result.history[0]
    if clip is None:
        assert "train/clipped" not in epoch and "train/grad_norm" not in epoch
        return
    assert epoch["train/clipped"] == clipped
    assert epoch["train/grad_norm"] > 1e-3      # the norm before clipping


def test_a_diverged_run_resumes_with_a_lower_rate_and_its_record_says_so(tmp_path, monkeypatch):
    """The NaN guard's advice works: --resume with a remedy goes on from the last good checkpoint."""
    cfg = _cfg()
    _poison_the_loss_in_epoch_2(monkeypatch)
    with pytest.raises(train_mod.TrainingDiverged, match="then --resume"):
        train_mod.train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False)
    monkeypatch.undo()
    run_dir = train_mod.run_dir_for(cfg, tmp_path)
    assert (run_dir / train_mod.DIVERGED_MARKER).is_file()

    with pytest.raises(train_mod.TrainError, match="different config"):   # not a remedy
        train_mod.train(apply_overrides(cfg, ["data.batch_size=7"]), runs_root=tmp_path,
                        records_root=None, track=False, resume=True, progress=False)
    lower = apply_overrides(cfg, [f"optim.lr={cfg.optim.lr / 10}", "optim.grad_clip=1.0"])
    result = train_mod.train(lower, runs_root=tmp_path, records_root=tmp_path / "rec", track=False,
                             resume=True, progress=False)
    (recovery,) = result.record["train"]["recoveries"]
    assert recovery["after_epoch"] == 1 and "NaN" in recovery["reason"]
    assert recovery["changed"] == {"optim.lr": [cfg.optim.lr, cfg.optim.lr / 10],
                                   "optim.grad_clip": [cfg.optim.grad_clip, 1.0]}
    assert [e["lr"] for e in result.history] == [cfg.optim.lr] + [cfg.optim.lr / 10] * 2
    assert result.record["train"]["epochs"] == 3 and result.record["config"]["optim"]["grad_clip"] == 1.0
    assert not (run_dir / train_mod.DIVERGED_MARKER).exists()


def test_a_validation_objective_that_blows_up_stops_the_run(tmp_path, monkeypatch):
    """A finite blow-up (a depth-8 IAF run once reached 27x its best) stops like a NaN."""
    cfg = _cfg()
    real_objective, calls = train_mod.validation_objective, {"n": 0}

    def blows_up_in_epoch_2(metrics):
        calls["n"] += 1
        value = real_objective(metrics)
        return value * train_mod.DIVERGED_RATIO * 1.01 if calls["n"] == 2 else value

    monkeypatch.setattr(train_mod, "validation_objective", blows_up_in_epoch_2)
    with pytest.raises(train_mod.TrainingDiverged, match="validation objective .* after epoch 2"):
        train_mod.train(cfg, runs_root=tmp_path, records_root=tmp_path / "rec", track=False,
                        progress=False)
    blob = torch.load(train_mod.run_dir_for(cfg, tmp_path) / "last.pt", weights_only=True)
    assert json.loads(blob["state"])["epoch"] == 1 and not (tmp_path / "rec").exists()


def test_a_run_no_remedy_gets_past_is_scored_where_it_stopped_and_says_so(tmp_path, monkeypatch):
    """Static-MNIST depth-8 IAF diverged at the same batch under half the rate: such a run ends
    at its best checkpoint, and the record keeps every divergence and the remedy that failed."""
    cfg = _cfg()
    with pytest.raises(train_mod.TrainError, match="did not stop on divergence"):
        train_mod.train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False,
                        finish_diverged=True)
    run_dir = train_mod.run_dir_for(cfg, tmp_path)
    (run_dir / train_mod.DIVERGED_MARKER).write_text(json.dumps({"reason": "NaN in epoch 1"}))
    with pytest.raises(train_mod.TrainError, match="before its first checkpoint"):
        train_mod.train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False,
                        finish_diverged=True)      # not a fresh start in disguise
    real_objective, calls = train_mod.validation_objective, {"n": 0}

    def blows_up_after_epoch_1(metrics):
        calls["n"] += 1
        return real_objective(metrics) * (1 if calls["n"] == 1 else 10 * train_mod.DIVERGED_RATIO)

    monkeypatch.setattr(train_mod, "validation_objective", blows_up_after_epoch_1)
    with pytest.raises(train_mod.TrainingDiverged):
        train_mod.train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False)
    lower = apply_overrides(cfg, [f"optim.lr={cfg.optim.lr / 2}"])
    with pytest.raises(train_mod.TrainingDiverged):
        train_mod.train(lower, runs_root=tmp_path, records_root=None, track=False, resume=True,
                        progress=False)
    with pytest.raises(train_mod.TrainError, match="drop the changed settings"):
        train_mod.train(lower, runs_root=tmp_path, records_root=None, track=False, progress=False,
                        finish_diverged=True)

    result = train_mod.train(cfg, runs_root=tmp_path, records_root=tmp_path / "rec", track=False,
                             progress=False, finish_diverged=True)
    train = result.record["train"]
    stop = train["stopped_by_divergence"]
    assert stop["after_epoch"] == 1 == train["epochs"] and train["final_checkpoint"] == "best validation"
    first, second = stop["attempts"]
    assert first["recoveries"] == [] and "validation objective" in first["reason"]
    assert second["recoveries"][0]["changed"] == {"optim.lr": [cfg.optim.lr, cfg.optim.lr / 2]}
    assert result.record["config"]["optim"]["lr"] == cfg.optim.lr and train["recoveries"] == []
    assert math.isfinite(result.record["metrics"]["test/nll"])
    assert not (result.run_dir / train_mod.DIVERGED_MARKER).exists()


def test_record_has_what_a_reader_needs(tmp_path):
    result = train_mod.train(_cfg("train.epochs=1"), runs_root=tmp_path, records_root=tmp_path / "rec",
                             track=False, progress=False)
    rec = json.loads(result.record_path.read_text())
    for key in ("paper", "variant", "preset", "seed", "dataset", "metrics", "eval", "config", "commit",
                "versions", "hardware", "wall_time_s", "data_sha256"):
        assert key in rec
    for metric in ("test/nll", "test/ppl", "test/elbo", "test/kl", "test/mi", "test/au"):
        assert metric in rec["metrics"]
    assert rec["eval"]["iw_samples"] == 4
    assert (result.run_dir / "training.png").is_file() and (result.run_dir / "samples.txt").is_file()


def test_a_run_without_mlflow_installed_still_writes_its_record(tmp_path, monkeypatch):
    """A GPU host may lack MLflow: with tracking off the record is written and says so."""
    import importlib.metadata as metadata

    real_version = metadata.version

    def no_mlflow(name):
        if name == "mlflow":
            raise metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(metadata, "version", no_mlflow)
    monkeypatch.setitem(sys.modules, "mlflow", None)          # `import mlflow` now fails
    result = train_mod.train(_cfg("train.epochs=1"), runs_root=tmp_path, records_root=tmp_path / "rec",
                             track=False, progress=False)
    versions = json.loads(result.record_path.read_text())["versions"]
    assert versions["mlflow"] is None and versions["torch"] == torch.__version__


def test_the_commit_in_records_is_read_once_per_process(monkeypatch):
    """A long `reproduce` runs the code it imported; later commits must not be credited with it."""
    from repro import records
    first = records.git_commit()

    def git_again(*args, **kwargs):
        raise AssertionError("HEAD read again after the process started")

    monkeypatch.setattr(records.subprocess, "run", git_again)
    assert records.git_commit() == first and len(first.split("+")[0]) == 40


def test_a_tree_without_git_takes_its_commit_from_repro_commit(monkeypatch):
    from repro import records

    def no_git(*args, **kwargs):
        raise OSError("git: not found")

    monkeypatch.setattr(records.subprocess, "run", no_git)
    monkeypatch.delenv("REPRO_COMMIT", raising=False)
    assert records._read_commit() == "unknown"
    monkeypatch.setenv("REPRO_COMMIT", "f" * 40)
    assert records._read_commit() == "f" * 40


def test_only_selectable_epochs_choose_the_best_checkpoint(tmp_path, monkeypatch):
    """A model that calls only its first epoch selectable gets that epoch tested, though later
    ones score better; one that calls none has its last parameters tested, and says so."""
    validations = {"n": 0}

    def first_of_three(self, step):
        validations["n"] += 1
        return validations["n"] == 1

    monkeypatch.setattr(TextVAE, "selectable", first_of_three)
    result = train_mod.train(_cfg(), runs_root=tmp_path / "a", records_root=None, track=False,
                             progress=False)
    objectives = [e["val/elbo"] for e in result.history]
    assert min(objectives[1:]) < objectives[0]   # so the choice is not simply the best score
    assert result.record["train"]["best_epoch"] == 1
    assert result.record["train"]["best_val"] == pytest.approx(objectives[0], rel=1e-6)
    assert result.record["train"]["final_checkpoint"] == "best validation"

    monkeypatch.setattr(TextVAE, "selectable", lambda self, step: False)
    result = train_mod.train(_cfg(), runs_root=tmp_path / "b", records_root=None, track=False,
                             progress=False)
    assert not (result.run_dir / "best.pt").exists()
    assert result.record["train"]["best_epoch"] is None
    assert result.record["train"]["final_checkpoint"] == "last"


@pytest.mark.parametrize("flag", ["train.bf16=true", "eval.bf16=true"])
def test_bf16_on_a_cpu_without_bf16_kernels_fails_before_training(tmp_path, monkeypatch, flag):
    # oneDNN's LSTM raises on such a CPU at its first bf16 call: mid-epoch for train.bf16, after
    # the whole training for eval.bf16
    monkeypatch.setattr("repro.evaluate.cpu_has_bf16", lambda: False)
    with pytest.raises(ConfigError, match="train.bf16=false and eval.bf16=false"):
        train_mod.train(_cfg("train.epochs=1", "train.device=cpu", flag), runs_root=tmp_path,
                        records_root=None, track=False, progress=False)
    assert not list(tmp_path.rglob("*.pt"))

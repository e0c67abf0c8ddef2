"""`repro eval RUN --record`: a record re-scored after an evaluation fix gets the checkpoint's
metrics back, keeps its training, and lists what it replaced; the tables name the commit."""
from __future__ import annotations

import json
import math

import pytest

from repro.cli import main
from repro.config import ConfigError
from repro.records import describe_commits, git_commit, record_path
from repro.registry import resolve
from repro.train import train


@pytest.fixture(scope="module")
def iaf_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rescore")
    _, cfg = resolve("kingma2016_iaf", "ptb-iaf", "smoke")
    result = train(cfg, runs_root=root / "runs", records_root=root / "records", track=False,
                   progress=False)
    return root, result


def _break_metric(path, name="test/mi"):
    record = json.loads(path.read_text())
    record["metrics"][name] = math.nan
    path.write_text(json.dumps(record))
    return record


def test_rescoring_restores_the_checkpoints_metrics_and_keeps_what_it_replaced(iaf_run, capsys):
    root, result = iaf_run
    good = result.record["metrics"]
    shared = record_path(root / "records", "kingma2016_iaf", "ptb-iaf", "smoke", 0)
    for path in (shared, result.run_dir / "record.json"):
        _break_metric(path)
    assert main(["eval", str(result.run_dir), "--record", "--quiet",
                 "--records-dir", str(root / "records")]) == 0
    capsys.readouterr()
    for path in (shared, result.run_dir / "record.json"):
        record = json.loads(path.read_text())
        assert record["metrics"] == pytest.approx(good)
        assert record["train"] == result.record["train"] and record["commit"] == result.record["commit"]
        assert record["history"] == result.record["history"]
        (entry,) = record["rescored"]
        assert entry["commit"] == git_commit() and math.isnan(entry["replaced_metrics"]["test/mi"])
        assert entry["replaced_eval"] == result.record["eval"]
    assert "1 record(s) re-scored (test metrics only) at" in describe_commits([record])


def test_rescoring_refuses_anything_but_evaluation_options(iaf_run):
    _, result = iaf_run
    with pytest.raises(ConfigError, match="only eval"):
        from repro.cli import build_parser, cmd_eval
        cmd_eval(build_parser().parse_args(["eval", str(result.run_dir), "--record",
                                            "--set", "model.latent_size=8"]))


def test_rescoring_updates_the_runs_mlflow_metrics_and_tags_it(tmp_path, capsys):
    """The compare view reads an MLflow run's latest metric values: after a re-scoring they are
    the record's, not the replaced ones."""
    from mlflow.tracking import MlflowClient

    from repro.tracking import RESCORED_TAG, tracking_uri
    _, cfg = resolve("bowman2016", "vae", "smoke")
    result = train(cfg, runs_root=tmp_path / "runs", records_root=tmp_path / "records",
                   progress=False)
    run_id = result.record["mlflow_run_id"]
    assert main(["eval", str(result.run_dir), "--record", "--quiet", "--set", "eval.iw_samples=2",
                 "--records-dir", str(tmp_path / "records")]) == 0
    assert f"MLflow run {run_id}: test metrics updated" in capsys.readouterr().out
    record = json.loads((result.run_dir / "record.json").read_text())
    assert record["metrics"]["test/nll"] != result.record["metrics"]["test/nll"]   # K 4 -> 2
    run = MlflowClient(tracking_uri()).get_run(run_id)
    assert run.data.metrics["test/nll"] == pytest.approx(record["metrics"]["test/nll"])
    assert run.data.tags[RESCORED_TAG] == git_commit()

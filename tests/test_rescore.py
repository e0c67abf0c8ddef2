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

"""What a researcher meets in MLflow (issue 48): experiments that open on their runs, the corpus
as dataset inputs, a checkpoint that can be evaluated from the tracking store alone, and the
example that scores a model defined outside the suite."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from repro import cli
from repro.config import DataConfig, apply_overrides
from repro.data.sources import DATASETS
from repro.tracking import (DESCRIPTION_TAG, DIGEST_CHARS, EXPERIMENT_KIND, EXPERIMENT_KIND_TAG,
                            RUNS_VIEW_KEY, RUNS_VIEW_TAG, Tracker, corpus_datasets)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    from mlflow import MlflowClient
    return MlflowClient(uri)


def test_experiments_open_on_their_runs_new_ones_old_ones_and_hand_set_ones(store, monkeypatch, capsys):
    old = store.create_experiment("repro-synthetic")          # a store from before the tags
    legacy_benchmark = store.create_experiment("benchmark-ptb")
    chosen = store.create_experiment("repro-yahoo", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    foreign = store.create_experiment("someone-elses-runs")
    store.create_run(foreign)
    store.create_experiment("someone-elses-empty")
    for name in ("repro-ptb", "repro-synthetic", "repro-yahoo"):
        tracker = Tracker()
        assert tracker.start(name, "a run") is not None
        tracker.end()

    new = store.get_experiment_by_name("repro-ptb")
    assert new.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert "Penn Treebank" in new.tags[DESCRIPTION_TAG]
    assert "metrics.`test/kl`" in json.loads(new.tags[RUNS_VIEW_TAG])["selectedColumns"]
    assert store.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert "synthetic corpus" in store.get_experiment(old).tags[DESCRIPTION_TAG]
    # A kind someone chose in the UI is theirs; only what is missing is added.
    assert store.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"
    assert DESCRIPTION_TAG in store.get_experiment(chosen).tags
    assert EXPERIMENT_KIND_TAG not in store.get_experiment(legacy_benchmark).tags

    monkeypatch.setattr(cli.subprocess, "call", lambda argv: 0)
    assert cli.main(["ui", "--port", "5999"]) == 0
    printed = capsys.readouterr().out.splitlines()
    base = "http://127.0.0.1:5999/#/experiments"
    view = f"runs?viewStateShareKey={RUNS_VIEW_KEY}"
    assert f"  repro-ptb: {base}/{new.experiment_id}/{view}" in printed
    assert f"  repro-synthetic: {base}/{old}/{view}" in printed
    assert f"  benchmark-ptb: {base}/{legacy_benchmark}/{view}" in printed
    assert f"  someone-elses-runs: {base}/{foreign}/runs" in printed     # no suite view to name
    assert not any("someone-elses-empty" in line or "Default" in line for line in printed)
    # `repro ui` tagged the benchmark experiment no training had reopened; others' it left alone.
    assert store.get_experiment(legacy_benchmark).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    assert "benchmark" in store.get_experiment(legacy_benchmark).tags[DESCRIPTION_TAG]
    assert EXPERIMENT_KIND_TAG not in store.get_experiment(foreign).tags


def _profile(dataset_input) -> dict:
    return json.loads(dataset_input.dataset.profile)


def test_each_split_is_a_dataset_with_its_digest_source_and_substitute_note():
    ptb = {f.split: f for f in DATASETS["ptb"].files}
    corpus = SimpleNamespace(splits={"train": [0] * 5, "valid": [0] * 2, "test": [0] * 3},
                             sha256="c" * 64)
    inputs = corpus_datasets(DataConfig(dataset="ptb", substitute_for="yahoo"), corpus)
    assert [i.tags[0].key for i in inputs] == ["mlflow.data.context"] * 3
    assert [i.tags[0].value for i in inputs] == ["train", "valid", "test"]
    for item in inputs:
        split = item.tags[0].value
        file = ptb[split]
        assert item.dataset.name == "ptb"
        assert item.dataset.digest == file.sha256[:DIGEST_CHARS] and len(item.dataset.digest) <= 36
        assert json.loads(item.dataset.source)["url"] == file.url
        assert _profile(item)["sha256"] == file.sha256
        assert _profile(item)["corpus_sha256"] == corpus.sha256
        assert _profile(item)["substitute_for"] == "yahoo" and "stands in for yahoo" in _profile(item)["note"]
    assert [_profile(i)["examples"] for i in inputs] == [5, 2, 3]

    generated = corpus_datasets(DataConfig(dataset="synthetic"), corpus)
    for item in generated:
        split = item.tags[0].value
        assert item.dataset.source_type == "code"
        assert json.loads(item.dataset.source)["tags"]["generator"] == "repro.data.synthetic"
        assert _profile(item)["sha256"] == hashlib.sha256(f"{'c' * 64}:{split}".encode()).hexdigest()
        assert "substitute_for" not in _profile(item)
    assert len({i.dataset.digest for i in generated}) == 3   # MLflow keeps one input per digest


def test_a_tracked_run_lists_its_corpus_and_is_evaluated_from_the_store_alone(
        store, tmp_path, monkeypatch, capsys):
    from repro import train as train_mod
    from repro.registry import resolve
    _, cfg = resolve("bowman2016", "vae-anneal-worddrop", "smoke")
    cfg = apply_overrides(cfg, ["train.epochs=1", "train.threads=1"])
    result = train_mod.train(cfg, runs_root=tmp_path / "runs", records_root=None, track=True,
                             progress=False)
    run_id = result.record["mlflow_run_id"]
    run = store.get_run(run_id)
    contexts = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert set(contexts) == {"train", "valid", "test"}
    assert {d.name for d in contexts.values()} == {"ptb"}
    assert contexts["test"].digest == DATASETS["ptb"].files[2].sha256[:DIGEST_CHARS]
    assert json.loads(contexts["test"].profile)["corpus_sha256"] == result.record["data_sha256"]
    assert {"best.pt", "config.json"} <= {a.path for a in store.list_artifacts(run_id)}

    elsewhere = tmp_path / "elsewhere"        # no run folder here: only the tracking store
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    capsys.readouterr()
    assert cli.main(["eval", f"runs:/{run_id}", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == result.record["metrics"]
    assert list(elsewhere.iterdir()) == []    # the download went to a temporary folder

    assert cli.main(["eval", "runs:/0123456789abcdef", "--quiet"]) == 1
    assert "MLflow run 0123456789abcdef cannot be read" in capsys.readouterr().err


@pytest.mark.slow   # a fresh interpreter importing torch and MLflow: tens of seconds on a busy machine
def test_the_example_scores_its_own_model_and_logs_the_numbers(store, tmp_path):
    out = subprocess.run(
        [sys.executable, str(REPO / "examples" / "evaluate_your_own_model.py"), "--steps", "15",
         "--iw-samples", "5", "--test-examples", "40", "--experiment", "example"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-3000:]
    printed = dict(line.split(" = ") for line in out.stdout.splitlines() if " = " in line)
    experiment = store.get_experiment_by_name("example")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    [run] = store.search_runs([experiment.experiment_id])
    for name in ("nll", "kl", "mi", "au"):
        assert f"{run.data.metrics[f'test/{name}']:.3f}" == printed[f"test/{name}"]
    assert run.data.metrics["test/num_examples"] == 40
    assert run.data.params["eval.iw_samples"] == "5" and run.data.params["eval.mi_pool"] == "dataset"
    assert run.data.metrics["test/kl"] >= 0.0                       # analytic Gaussian KL
    assert 0 <= run.data.metrics["test/au"] <= int(run.data.params["latent_size"])

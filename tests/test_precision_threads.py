"""Precision and threads chosen by measurement (`repro.precision`, `repro.train.ThreadChoice`):
the choices as pure functions of made-up timings, the timing cache, the old `bf16` switches as
aliases that leave earlier records the same experiment, and runs that say what they chose and
obey an explicit setting. No assertion here depends on how fast this machine is."""
from __future__ import annotations

import json

import mlflow
import pytest
import torch

from repro import precision, records
from repro import train as train_mod
from repro.config import ConfigError, apply_overrides, experiment_identity, precision_setting
from repro.registry import resolve

def test_training_takes_bf16_only_where_whole_updates_reach_the_threshold():
    fast = precision.choose_by_updates({"fp32_s": 0.2, "bf16_s": 0.1})
    assert (fast.precision, fast.speedup) == ("bf16", 2.0) and "updates 2.00x" in fast.reason
    # the MNIST conv VAEs on an AMD EPYC: products 1.70x, whole updates 1.08-1.25x
    assert precision.choose_by_updates({"fp32_s": 0.242, "bf16_s": 0.223}).precision == "fp32"
    assert precision.choose_by_updates({"fp32_s": 0.13, "bf16_s": 0.1}).precision == "bf16"


def test_update_timings_are_measured_once_per_config_and_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("REPRO_PRECISION", raising=False)
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    runs = []

    def timer(key, ratio):
        return precision.UpdateTimer(key, lambda: runs.append(key) or {"fp32_s": ratio, "bf16_s": 1.0})

    cpu = torch.device("cpu")
    assert precision.resolve("auto", cpu, updates=timer("a", 2.0)).precision == "bf16"
    assert precision.resolve("auto", cpu, updates=timer("a", 0.5)).precision == "bf16"   # cached
    assert precision.resolve("auto", cpu, updates=timer("b", 1.1)).precision == "fp32"
    assert runs == ["a", "b"]
    (section,) = json.loads((tmp_path / precision.CACHE_FILE).read_text()).values()
    assert section["updates a"]["fp32_s"] == 2.0


def test_timing_updates_leaves_the_run_its_model_and_random_stream(monkeypatch):
    """The timed updates train a copy, outside the global RNG: a run that times (cache empty)
    and one that reads the cache train the same numbers."""
    from repro.data import load_corpus
    cfg = _cfg()
    corpus = load_corpus(cfg.data)
    model = resolve("bowman2016", "vae-anneal-worddrop", "smoke")[0].build(cfg, corpus)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    timing = train_mod._time_update_precisions(cfg, model, corpus, torch.device("cpu"))
    assert timing["fp32_s"] > 0 and timing["bf16_s"] > 0
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_the_faster_thread_count_wins_and_a_tie_goes_to_fewer():
    assert precision.choose_threads({1: 5_000.0, 2: 8_000.0}) == 2
    assert precision.choose_threads({1: 38_000.0, 2: 10_500.0}) == 1
    assert precision.choose_threads({2: 7_000.0, 1: 7_000.0}) == 1


def test_auto_needs_native_bf16_and_an_explicit_setting_times_nothing(monkeypatch):
    monkeypatch.delenv("REPRO_PRECISION", raising=False)
    never = precision.UpdateTimer("k", lambda: pytest.fail("timed"))
    cpu = torch.device("cpu")
    assert precision.resolve("fp32", cpu, updates=never).precision == "fp32"
    assert precision.resolve("bf16", cpu, updates=never).precision == "bf16"
    monkeypatch.setattr(precision, "native_bf16", lambda device: False)
    assert precision.resolve("auto", cpu, updates=never).precision == "fp32"
    monkeypatch.setenv("REPRO_PRECISION", "bf16")
    assert precision.resolve("auto", cpu, updates=never).reason.startswith("REPRO_PRECISION")


def _cfg(*overrides):
    _, cfg = resolve("bowman2016", "vae-anneal-worddrop", "smoke")
    return apply_overrides(cfg, list(overrides))


@pytest.mark.parametrize("overrides, train, evaluation", [
    ([], "auto", "auto"),
    (["train.bf16=true"], "bf16", "auto"),
    (["train.bf16=false", "eval.bf16=true"], "fp32", "bf16"),
    (["train.precision=fp32", "eval.precision=bf16"], "fp32", "bf16"),
    (["train.bf16=true", "train.precision=bf16"], "bf16", "auto"),
])
def test_the_old_bf16_switches_are_aliases(overrides, train, evaluation):
    cfg = _cfg(*overrides)
    assert (precision_setting(cfg.train), precision_setting(cfg.eval)) == (train, evaluation)


def test_an_alias_that_contradicts_the_precision_is_refused():
    with pytest.raises(ConfigError, match="contradicts precision=bf16"):
        _cfg("train.bf16=false", "train.precision=bf16")


def test_records_from_before_precision_name_the_same_experiment():
    """Every committed record says "bf16": false and has no precision key: it stays its preset's
    record, and the default (auto) config asks for the experiment it holds."""
    today = _cfg().to_dict()
    old = json.loads(json.dumps(today))
    for section in ("train", "eval"):
        old[section].pop("precision")
        old[section]["bf16"] = False
    record = {"config": old, "train": {}, "eval": {"metrics": ["nll", "elbo", "kl", "mi", "au"]}}
    assert records.preset_differences(old) == {}
    assert records.same_experiment(record, today)
    assert experiment_identity(old) == experiment_identity(_cfg("train.precision=bf16").to_dict())


@pytest.mark.needs_cpu_bf16
def test_a_run_records_and_logs_the_precision_it_chose_and_why(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REPRO_PRECISION", raising=False)
    monkeypatch.setattr(train_mod, "_time_update_precisions",
                        lambda *args: {"fp32_s": 2e-3, "bf16_s": 1e-3})
    result = train_mod.train(_cfg("train.epochs=2", "eval.iw_samples=4",
                                  "eval.iw_chunk=2"), runs_root=tmp_path, records_root=None,
                             progress=False)
    chosen = result.record["train"]["precision"]
    assert chosen["precision"] == "bf16" and chosen["speedup"] == 2.0
    assert chosen["reason"].startswith("bf16 updates 2.00x fp32 here")
    assert [entry["precision"] for entry in result.history] == ["bf16", "bf16"]
    # evaluation: bf16 only after the numerics check on this model, whose outcome it states
    assert "bf16 moved IW-NLL" in result.record["eval"]["precision_reason"]
    assert result.record["eval"]["precision"] in ("fp32", "bf16")
    assert result.record["eval"]["bf16"] == (result.record["eval"]["precision"] == "bf16")
    params = mlflow.MlflowClient().get_run(result.record["mlflow_run_id"]).data.params
    assert params["train.precision_used"] == "bf16" and params["train.bf16_speedup"] == "2.0"
    assert params["train.precision"] == "auto"


def test_explicit_fp32_and_one_thread_are_obeyed(tmp_path, monkeypatch):
    monkeypatch.delenv("REPRO_PRECISION", raising=False)
    monkeypatch.setattr(train_mod, "_time_update_precisions", lambda *args: pytest.fail("timed"))
    torch.set_num_threads(2)
    try:
        result = train_mod.train(_cfg("train.epochs=2", "data.train_fraction=0.003", "train.threads=1",
                                      "train.precision=fp32", "eval.precision=fp32",
                                      "eval.iw_samples=2", "eval.iw_chunk=1"),
                                 runs_root=tmp_path, records_root=None, track=False, progress=False)
        assert torch.get_num_threads() == 2      # the caller's setting is put back
    finally:
        torch.set_num_threads(1)
    assert result.record["train"]["precision"] == {"precision": "fp32", "reason": "fp32 as configured",
                                                   "speedup": None}
    assert result.record["train"]["threads"] == 1
    assert [(e["precision"], e["threads"]) for e in result.history] == [("fp32", 1), ("fp32", 1)]
    assert not any(key.startswith("threads_probe") for e in result.history for key in e)
    assert result.record["eval"]["precision"] == "fp32"


def test_auto_threads_time_both_counts_each_epoch_and_keep_the_faster(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PRECISION", "fp32")
    torch.set_num_threads(2)
    try:
        # 14 updates an epoch: the first epoch's probe (9 updates) ends inside it
        result = train_mod.train(_cfg("train.epochs=2", "data.train_fraction=0.01",
                                      "eval.iw_samples=2", "eval.iw_chunk=1"),
                                 runs_root=tmp_path, records_root=None, track=False, progress=False)
    finally:
        torch.set_num_threads(1)
    assert result.record["train"]["threads"] == "auto"
    for entry in result.history:
        rates = {n: entry[f"threads_probe/{n}"] for n in (1, 2)}
        assert entry["threads"] == precision.choose_threads(rates)


@pytest.mark.parametrize("bf16_s, bf16_nll, expected", [
    (0.5, 100.05, "bf16"),     # 2x faster, moved 0.05%
    (0.5, 100.2, "fp32"),      # 2x faster, moved 0.2%
    (0.8, 100.0, "fp32"),      # 1.25x faster: not worth its coarser sums
])
def test_auto_evaluation_takes_bf16_only_if_its_own_check_is_faster_and_moves_the_nll_under_a_tenth_percent(
        bf16_s, bf16_nll, expected):
    from repro.evaluate import choose_eval_precision
    checks = {"fp32": {"nll": 100.0, "seconds": 1.0}, "bf16": {"nll": bf16_nll, "seconds": bf16_s}}
    choice = choose_eval_precision(checks, torch.device("cpu"), "IW-NLL (K=50) on the first 32 test examples")
    assert choice.precision == expected and choice.speedup == pytest.approx(1 / bf16_s)
    assert f"by {abs(bf16_nll / 100 - 1):.4%}" in choice.reason
    assert f"bf16 evaluation {1 / bf16_s:.2f}x fp32 here" in choice.reason


def test_auto_evaluation_times_and_checks_its_own_evaluations(monkeypatch):
    """The check evaluates the split's head at each precision twice (fp32, bf16, bf16, fp32)
    and decides from the faster pass of each."""
    from repro import evaluate as evaluate_mod
    from repro.data import load_corpus
    cfg = _cfg()
    corpus = load_corpus(cfg.data)
    model = resolve("bowman2016", "vae-anneal-worddrop", "smoke")[0].build(cfg, corpus)
    monkeypatch.delenv("REPRO_PRECISION", raising=False)
    monkeypatch.setattr(precision, "native_bf16", lambda device: True)
    passes = []

    class Result:
        def __init__(self, nll):
            self.metrics = {"nll": nll}

    def fake_evaluate(model, batches, metrics, *, bf16, iw_samples, **kwargs):
        passes.append((bf16, iw_samples, sum(b.size for b in batches)))
        return Result(100.05 if bf16 else 100.0)

    monkeypatch.setattr(evaluate_mod, "evaluate", fake_evaluate)
    choice = evaluate_mod.eval_precision(model, corpus, cfg.eval, torch.device("cpu"))
    head = min(evaluate_mod.CHECK_EXAMPLES, len(corpus.split(cfg.eval.split)))
    samples = min(cfg.eval.iw_samples, evaluate_mod.CHECK_SAMPLES)
    assert passes == [(False, samples, head), (True, samples, head), (True, samples, head),
                      (False, samples, head)]
    assert "bf16 moved IW-NLL" in choice.reason and "0.0500%" in choice.reason


@pytest.mark.needs_cpu_bf16
def test_auto_evaluation_falls_back_to_fp32_for_a_model_that_cannot_evaluate_in_bf16(monkeypatch):
    """An IAF posterior keeps autocast outputs for later passes outside autocast: bf16
    evaluation raises a dtype error there, so `auto` must pick fp32 and say why, not crash."""
    from repro import evaluate as evaluate_mod
    from repro.data import load_corpus
    var, cfg = resolve("kingma2016_iaf", "ptb-iaf-fb", "smoke")
    corpus = load_corpus(cfg.data)
    model = var.build(cfg, corpus)
    monkeypatch.delenv("REPRO_PRECISION", raising=False)
    choice = evaluate_mod.eval_precision(model, corpus, cfg.eval, torch.device("cpu"))
    assert choice.precision == "fp32" and "bf16 evaluation fails for this model" in choice.reason

import dataclasses
import json
import math

import matplotlib.colors
import pytest

from repro import benchmark, plots, protocols, tables
from repro.cli import main
from repro.config import ConfigError, ModelConfig
from repro.registry import resolve


def _config(paper, variant, preset, seed):
    _, cfg = resolve(paper, variant, preset)
    cfg.seed = seed
    return cfg.to_dict()


def _record(method, seed, nll, kl, preset="benchmark-ptb-cpu", history=None):
    paper, variant = method.split("/")
    return {"paper": paper, "variant": variant, "preset": preset, "seed": seed, "dataset": "ptb",
            "metrics": {"test/nll": nll, "test/kl": kl, "test/mi": kl / 2, "test/au": 3},
            "eval": {"split": "test"}, "config": _config(paper, variant, preset, seed),
            "commit": "abc", "wall_time_s": 60.0,
            "hardware": {"device": "cpu"}, "history": history or []}


def _write(root, rec):
    path = (benchmark.records_root("ptb", root) / rec["paper"]
            / f"{rec['variant']}__{rec['preset']}__seed{rec['seed']}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec))


def test_summary_is_the_student_t_interval():
    summary = benchmark.summarize([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)    # t(0.975, 2 dof) * std / sqrt(n), std = 1
    assert summary.mean == 2.0 and summary.std == 1.0
    assert summary.ci95 == pytest.approx((2.0 - half, 2.0 + half))
    assert benchmark.summarize([5.0]).ci95 is None


def test_holm_adjustment_on_a_worked_example():
    # sorted p: 0.01, 0.02, 0.04 -> x3, x2, x1 = 0.03, 0.04, 0.04 (kept monotone)
    assert benchmark.holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert benchmark.holm([0.6, 0.5]) == pytest.approx([1.0, 1.0])


def test_welch_test_matches_the_formula_and_separates_noise_from_signal():
    a, b = [100.0, 101.0, 102.0], [110.0, 110.5, 112.0]
    (cmp,) = benchmark.pairwise({"m/a": a, "m/b": b})
    va, vb = 1.0 / 3, (sum((x - 110.833333) ** 2 for x in b) / 2) / 3
    assert cmp.t == pytest.approx((101.0 - 110.833333) / math.sqrt(va + vb), rel=1e-5)
    assert cmp.difference == pytest.approx(101.0 - 110.833333, rel=1e-6)
    assert cmp.significant
    (noise,) = benchmark.pairwise({"m/a": a, "m/c": [100.5, 101.5, 101.0]})
    assert not noise.significant and noise.p > 0.5


def test_pairs_need_two_seeds_on_each_side():
    assert benchmark.pairwise({"m/a": [1.0, 2.0], "m/b": [3.0]}) == []


def test_a_model_config_that_does_not_name_its_sizes_cannot_take_the_protocol():
    """Sizes go where a config says (`ModelConfig.shared_sizes`); a config that says nothing, or
    names a field it lacks, is refused rather than silently trained at its own sizes."""
    @dataclasses.dataclass
    class Silent(ModelConfig):
        embed_size: int = 8

    @dataclasses.dataclass
    class Misnamed(ModelConfig):
        shared_sizes = {"embed_size": "embedding"}
        embed_size: int = 8

    proto = protocols.protocol("ptb", "cpu")
    for config in (Silent(), Misnamed()):
        with pytest.raises(ConfigError, match="shared_sizes"):
            protocols.with_shared_sizes(config, proto)


def test_protocol_puts_shared_sizes_into_each_methods_own_preset():
    proto = protocols.protocol("ptb", "cpu")
    _, cfg = resolve("kingma2016_iaf", "ptb-iaf-fb", proto.preset)
    _, own = resolve("kingma2016_iaf", "ptb-iaf-fb", "cpu")
    assert (cfg.model.embed_size, cfg.model.encoder_hidden, cfg.model.decoder_hidden,
            cfg.model.latent_size) == (128, 256, 256, 32)
    assert cfg.model.free_bits == own.model.free_bits and cfg.model.iaf == own.model.iaf
    assert cfg.eval.iw_samples == 500 and cfg.eval.mi_pool == "dataset"
    assert cfg.eval.au_threshold == 0.01 and cfg.train == proto.train
    _, zf = resolve("goyal2017_zforcing", "ptb-zforcing-kla", proto.preset)
    assert (zf.model.hidden_size, zf.model.latent_size) == (256, 32)
    assert benchmark.scale_of(proto.preset) == "cpu"


def test_iaf_posteriors_keep_mi_and_au_on_the_prefix_the_rest_take_the_whole_test_set():
    """An IAF posterior's density at another sentence's z takes 32 sequential MADE passes: the
    whole-test-set MI pool measured about an hour per run on one core."""
    whole = {f"{p}/{v}": resolve(p, v, "benchmark-ptb-cpu")[1].eval.mi_au_whole_split
             for p, v in benchmark.methods()}
    prefix_only = {m for m, flag in whole.items() if not flag}
    assert prefix_only == {"chen2017_vlae/ptb-iaf", "kingma2016_iaf/ptb-iaf",
                           "kingma2016_iaf/ptb-iaf-fb", "kingma2016_iaf/ptb-iaf-fb-lam0.125",
                           "kingma2016_iaf/ptb-iaf-fb-lam0.5", "kingma2016_iaf/ptb-iaf-fb-lam1"}


def test_per_step_latents_pool_mi_per_batch_and_still_score_several_batches(tmp_path):
    """Z-Forcing's z_1..z_T differ in shape between sentences of different lengths: the dataset
    pool would stop its run at the final evaluation, after the whole training."""
    for name in ("ptb-zforcing", "ptb-zforcing-kla", "ptb-srnn"):
        assert resolve("goyal2017_zforcing", name, "benchmark-ptb-cpu")[1].eval.mi_pool == "batch"
    assert resolve("bowman2016", "vae", "benchmark-ptb-cpu")[1].eval.mi_pool == "dataset"
    assert main(["train", "goyal2017_zforcing", "ptb-zforcing", "--preset", "benchmark-ptb-smoke",
                 "--set", "eval.max_examples=200", "--set", "train.max_steps=2", "--no-mlflow",
                 "--quiet", "--runs-dir", str(tmp_path / "runs"),
                 "--records-dir", str(tmp_path / "records")]) == 0
    record = json.loads(next((tmp_path / "records").rglob("*.json")).read_text())
    assert record["eval"]["mi_pool"] == "batch" and record["metrics"]["test/num_examples"] == 200


def test_every_benchmarked_method_runs_on_single_sentences():
    methods = benchmark.methods()
    papers = {p for p, _ in methods}
    assert papers == {"bowman2016", "kingma2016_iaf", "chen2017_vlae", "yang2017_dilated_cnn",
                      "goyal2017_zforcing", "xie2017_noising",
                      "he2019_lagging", "kim2018_savae", "fu2019_cyclical", "li2019_pretrain_fb",
                      "zhu2020_bnvae"}
    assert ("xie2017_noising", "vae-unigram") in methods
    assert ("li2019_pretrain_fb", "ae-pretrain") not in methods   # a start, not a method
    assert all(not v.endswith("-lm") and "mnist" not in v for _, v in methods)
    with pytest.raises(ConfigError, match="not benchmarked"):
        benchmark.methods(["bowman2016/rnnlm-inputless"])


def test_named_methods_run_in_the_order_named_each_once():
    named = ["kingma2016_iaf/ptb-iaf", "bowman2016/vae", "kingma2016_iaf/ptb-iaf"]
    assert benchmark.methods(named) == [("kingma2016_iaf", "ptb-iaf"), ("bowman2016", "vae")]
    jobs = benchmark.jobs(protocols.protocol("ptb", "smoke"), [0, 1], named, [])
    assert [(j.paper, j.variant, j.seed) for j in jobs] == [
        ("kingma2016_iaf", "ptb-iaf", 0), ("kingma2016_iaf", "ptb-iaf", 1),
        ("bowman2016", "vae", 0), ("bowman2016", "vae", 1)]


def test_table_ranks_methods_and_reports_tests(tmp_path):
    for seed, (nll_a, nll_b) in enumerate([(100.0, 110.0), (101.0, 110.5), (102.0, 112.0)]):
        _write(tmp_path, _record("bowman2016/vae", seed, nll_b, 0.0))
        _write(tmp_path, _record("kingma2016_iaf/ptb-iaf-fb", seed, nll_a, 5.0 + seed))
    text = benchmark.render_benchmark("ptb", tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| bowman2016/vae |")
            or line.startswith("| kingma2016_iaf/ptb-iaf-fb |")]
    assert rows[0].startswith("| kingma2016_iaf/ptb-iaf-fb | 0, 1, 2 | 101.00 ± 1.00 [")
    assert "1 of 1 differences exceed seed noise" in text
    assert "Records: 6" in text


def test_table_gives_each_methods_training_time_as_a_multiple_of_the_plain_vaes(tmp_path):
    """Issue 47: a fix that costs 10x a VAE's training is a finding too. Training time is the
    sum of the epochs' times (the test evaluation left out), averaged over seeds."""
    def epochs(*seconds):
        return [{"epoch": i + 1, "step": 10 * (i + 1), "epoch_time_s": t} for i, t in enumerate(seconds)]
    for seed in (0, 1):
        _write(tmp_path, _record("bowman2016/vae", seed, 110.0, 0.0, history=epochs(50.0, 50.0)))
        _write(tmp_path, _record("kingma2016_iaf/ptb-iaf-fb", seed, 100.0, 5.0,
                                 history=epochs(100.0 + 100 * seed, 100.0 + 100 * seed)))
    _write(tmp_path, _record("chen2017_vlae/ptb-iaf", 0, 105.0, 1.0))     # no epoch times
    # A method that starts from another run costs that run's training too.
    _write(tmp_path, _record("li2019_pretrain_fb/ae-pretrain", 0, 130.0, 40.0, history=epochs(30.0)))
    _write(tmp_path, _record("li2019_pretrain_fb/pretrain-fb-dim", 0, 104.0, 4.0, history=epochs(70.0)))
    _write(tmp_path, _record("yang2017_dilated_cnn/lstm-vae-init", 0, 106.0, 2.0, history=epochs(70.0)))
    text = benchmark.render_benchmark("ptb", tmp_path)
    rows = {}
    for line in text.splitlines():      # the summary table comes first, then the tests' tables
        if line.startswith("| "):
            rows.setdefault(line.split(" | ")[0][2:], line)
    assert "training time (× bowman2016/vae)" in rows["method"]
    assert rows["bowman2016/vae"].endswith("| 1.00 |")
    assert rows["kingma2016_iaf/ptb-iaf-fb"].endswith("| 3.00 |")   # (200 + 400) / 2 over 100
    assert rows["chen2017_vlae/ptb-iaf"].endswith("| — |")
    assert rows["li2019_pretrain_fb/pretrain-fb-dim"].endswith("| 1.00 |")   # (30 + 70) / 100
    assert rows["yang2017_dilated_cnn/lstm-vae-init"].endswith("| — |")     # its LM's record is missing


def test_methods_tied_on_nll_are_listed_by_name(tmp_path):
    """Two papers' presets can reach the same model (Kingma's ptb-gauss is Bowman's VAE at the
    shared sizes): equal means must not leave the row order to a set's hash order."""
    names = ["yang2017_dilated_cnn/lstm-vae", "bowman2016/vae", "kingma2016_iaf/ptb-gauss"]
    for i, name in enumerate(names):   # tied on NLL; the KLs keep them from being repeats
        _write(tmp_path, _record(name, 0, 100.0, 1.0 + i))
    rows = [line.split(" | ")[0][2:] for line in benchmark.render_benchmark("ptb", tmp_path).splitlines()
            if line.startswith("| ") and line.split(" | ")[0][2:] in names]
    assert rows == sorted(names)


def test_a_variants_reading_note_is_printed_once_and_only_where_it_is_benchmarked(tmp_path):
    """Z-Forcing's KL is against a conditional prior: its note goes under a table that holds its
    rows, once for all of them, and not under one that does not."""
    note = resolve("goyal2017_zforcing", "ptb-zforcing", "smoke")[0].reading_note
    assert "p(z_t | h_{t-1})" in note
    _write(tmp_path, _record("bowman2016/vae", 0, 110.0, 0.0))
    assert note not in benchmark.render_benchmark("ptb", tmp_path)
    for variant in ("ptb-zforcing", "ptb-srnn"):
        _write(tmp_path, _record(f"goyal2017_zforcing/{variant}", 0, 105.0, 1.0))
    text = benchmark.render_benchmark("ptb", tmp_path)
    assert text.count(note) == 1
    assert ("Reading goyal2017_zforcing/ptb-srnn, goyal2017_zforcing/ptb-zforcing: " + note) in text


def test_a_table_whose_runs_scored_mi_differently_says_which_runs(tmp_path):
    paired = {"split": "test", "metrics": ["nll", "mi"], "mi_estimator": "paired",
              "mi_pool": "dataset", "mi_pool_size": 3761}
    older = {"split": "test", "metrics": ["nll", "mi"], "mi_pool": "dataset", "mi_pool_size": 500}
    for seed in (0, 1):
        _write(tmp_path, {**_record("bowman2016/vae", seed, 110.0, 0.0), "eval": paired})
    assert "not scored the same way" not in benchmark.render_benchmark("ptb", tmp_path)
    _write(tmp_path, {**_record("bowman2016/vae", 2, 110.0, 0.0), "eval": older})
    _write(tmp_path, {**_record("chen2017_vlae/ptb-gauss", 0, 110.0, 0.0), "eval": paired})
    batch = {**paired, "mi_pool": "batch", "mi_pool_size": 64}
    for seed in (0, 1):
        _write(tmp_path, {**_record("goyal2017_zforcing/ptb-srnn", seed, 110.0, 0.0), "eval": batch})
    assert ("MI was not scored the same way for every run, so its cells mix estimators or pools. "
            "Most runs: paired, dataset pool of 3761. The others: analytic, dataset pool of 500: "
            "bowman2016/vae (seed 2); paired, batch pool of 64 (whole evaluation batches, lengths "
            "mixed: before same-length pools): goyal2017_zforcing/ptb-srnn (seeds 0, 1).") in \
        benchmark.render_benchmark("ptb", tmp_path)


def test_a_method_that_repeats_another_bit_for_bit_is_named_and_tested_once(tmp_path):
    for seed in (0, 1, 2):
        for method in ("bowman2016/vae", "kingma2016_iaf/ptb-gauss"):      # the same model
            _write(tmp_path, _record(method, seed, 107.0 + seed / 10, 0.01))
        _write(tmp_path, _record("kingma2016_iaf/ptb-gauss-fb", seed, 108.0 + seed / 10, 7.0))
        # Equal at two seeds of three is agreement, not a repeat.
        nll = 107.0 + seed / 10 + (seed == 2)
        _write(tmp_path, _record("chen2017_vlae/ptb-gauss", seed, nll, 0.01))
    records = benchmark.load_records(benchmark.records_root("ptb", tmp_path))
    assert benchmark.identical_methods(records) == {"kingma2016_iaf/ptb-gauss": "bowman2016/vae"}
    table = benchmark.render_benchmark("ptb", tmp_path)
    assert "| kingma2016_iaf/ptb-gauss (= bowman2016/vae) | 0, 1, 2 |" in table
    assert ("Identical records: kingma2016_iaf/ptb-gauss repeats bowman2016/vae at seeds 0, 1, 2"
            in table)
    # Three methods left to compare: three pairs, none of them the repeat.
    assert "Pairwise Welch's t-tests on `nll`: " in table and " of 3 differences" in table
    assert "| kingma2016_iaf/ptb-gauss | " not in table.split("every pair")[1]


def test_an_unfinished_benchmark_names_the_methods_it_lacks_and_a_finished_one_says_so(
        tmp_path, monkeypatch):
    for seed in (0, 1, 2):
        _write(tmp_path, _record("bowman2016/vae", seed, 107.0 + seed, 0.01))
    _write(tmp_path, _record("bowman2016/rnnlm", 1, 108.0, 0.0))
    every = [f"{p}/{v}" for p, v in benchmark.methods()]
    coverage = next(line for line in benchmark.render_benchmark("ptb", tmp_path).splitlines()
                    if line.startswith("Coverage: "))
    assert coverage.startswith(f"Coverage: this benchmark is unfinished. 1 of {len(every)} "
                               "benchmarked methods have every protocol seed (0, 1, 2). "
                               "With fewer seeds (1): bowman2016/rnnlm (seed 1). "
                               f"Not run yet ({len(every) - 2}): ")
    not_run = coverage.split("): ")[-1].split(". `repro")[0].split(", ")
    assert not_run == [n for n in every if n not in ("bowman2016/vae", "bowman2016/rnnlm")]
    assert coverage.endswith("`repro benchmark ptb --scale cpu --plan` lists the jobs left.")

    monkeypatch.setattr(benchmark, "methods", lambda: [("bowman2016", "vae")])
    assert ("Coverage: all 1 benchmarked methods have every protocol seed (0, 1, 2)."
            in benchmark.render_benchmark("ptb", tmp_path))


def test_repro_table_writes_and_checks_the_benchmark(tmp_path):
    history = [{"epoch": 1, "step": 10, "val/kl": 1.0, "val/au": 2},
               {"epoch": 2, "step": 20, "val/kl": 2.0, "val/au": 3}]
    for seed in (0, 1):
        _write(tmp_path, _record("bowman2016/vae", seed, 110.0 + seed, 0.1, history=history))
    written = tables.write_all(tmp_path, tmp_path / "results")
    table = tmp_path / "results" / "benchmark_ptb.md"
    assert table in written
    figures = [p for p in written if p.suffix == ".png"]
    assert len(figures) == 3 and all(p.stat().st_size > 0 for p in figures)
    assert tables.check(tmp_path, tmp_path / "results") == []
    table.write_text(table.read_text().replace("110.50", "100.50"))
    assert tables.check(tmp_path, tmp_path / "results") == [f"{table} differs from its records"]


def test_each_method_gets_its_own_look_and_a_papers_variants_share_a_marker():
    names = [f"paper{p}/variant{v}" for p in range(5) for v in range(4)]
    styles = plots.method_styles(names)
    assert len({(st["color"], st["marker"]) for st in styles.values()}) == len(names)
    for p in range(5):
        assert len({styles[f"paper{p}/variant{v}"]["marker"] for v in range(4)}) == 1
    assert len({styles[f"paper{p}/variant0"]["marker"] for p in range(5)}) == 5


def _figures(monkeypatch) -> list:
    """The matplotlib figures the plotting functions would have saved, kept open to inspect."""
    kept = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, title, dpi=120: kept.append(fig) or path)
    return kept


def test_rate_distortion_zooms_in_on_the_crowd_only_when_some_methods_lie_far_above_it(
        monkeypatch, tmp_path):
    kept = _figures(monkeypatch)
    crowd = {"a/x": [107.0, 107.2], "a/y": [108.0, 108.1], "b/x": [110.0, 110.4]}
    kl = {"a/x": [0.0, 0.0], "a/y": [5.0, 6.0], "b/x": [1.0, 1.0], "c/far": [30.0, 31.0]}
    plots.plot_rate_distortion(kl, crowd, tmp_path / "one.png")
    plots.plot_rate_distortion(kl, {**crowd, "c/far": [140.0, 141.0]}, tmp_path / "two.png")
    (only,), (everything, zoomed) = kept[0].axes, kept[1].axes
    labels = lambda ax: sorted(c.get_label() for c in ax.containers)   # noqa: E731
    assert labels(only) == ["a/x", "a/y", "b/x"]
    assert labels(everything) == ["a/x", "a/y", "b/x", "c/far"]
    assert labels(zoomed) == ["a/x", "a/y", "b/x"]


def test_a_method_without_a_latent_is_a_reference_line_in_the_panels_whose_range_it_is_in(
        monkeypatch, tmp_path):
    kept = _figures(monkeypatch)
    kl = {"a/x": [0.0, 0.0], "a/y": [5.0, 6.0], "c/far": [30.0, 31.0]}
    nll = {"a/x": [107.0, 107.2], "a/y": [108.0, 108.1], "c/far": [140.0, 141.0],
           "lm/near": [107.5, 107.7], "lm/far": [150.0, 150.0]}
    plots.plot_rate_distortion(kl, nll, tmp_path / "rd.png")
    everything, zoomed = kept[0].axes
    lines = lambda ax: {ln.get_label(): ln.get_ydata()[0] for ln in ax.get_lines()  # noqa: E731
                        if "no latent" in ln.get_label()}
    assert lines(everything) == pytest.approx({"lm/far (no latent)": 150.0,
                                               "lm/near (no latent)": 107.6})
    assert lines(zoomed) == pytest.approx({"lm/near (no latent)": 107.6})
    assert "lm/near" not in {c.get_label() for c in everything.containers}


def test_the_mi_figure_names_under_a_method_the_mi_scoring_that_differs_from_most(
        monkeypatch, tmp_path):
    kept = _figures(monkeypatch)
    usual = {"split": "test", "metrics": ["nll", "mi"], "mi_estimator": "paired",
             "mi_pool": "dataset", "mi_pool_size": 3761}
    per_batch = {**usual, "mi_pool": "batch", "mi_pool_size": 32, "mi_pool_max": 32,
                 "mi_pool_def": "same-length"}
    for seed in (0, 1):
        for method in ("bowman2016/vae", "chen2017_vlae/ptb-af"):
            _write(tmp_path, {**_record(method, seed, 107.0, 1.0), "eval": usual})
        _write(tmp_path, {**_record("goyal2017_zforcing/ptb-srnn", seed, 107.0, 1.0),
                          "eval": per_batch})
    benchmark.write_figures("ptb", tmp_path / "figures", tmp_path)
    mi_axes = kept[-1].axes[0]
    assert [t.get_text() for t in mi_axes.get_yticklabels()] == [
        "bowman2016/vae", "chen2017_vlae/ptb-af",
        "goyal2017_zforcing/ptb-srnn\n(MI: paired, batch pool of 32 (same-length))"]


def test_a_method_has_the_same_colour_in_every_benchmark_figure(monkeypatch, tmp_path):
    kept = _figures(monkeypatch)
    history = [{"epoch": 1, "step": 10, "val/kl": 1.0, "val/au": 2},
               {"epoch": 2, "step": 20, "val/kl": 2.0, "val/au": 3}]
    # The language model has no KL: it must not shift the other methods' colours in the
    # training curves, which only the latent-variable methods draw.
    lm_history = [{"epoch": 1, "step": 10, "val/nll": 111.0}]
    _write(tmp_path, {**_record("bowman2016/rnnlm", 0, 111.0, 0.0, history=lm_history),
                      "metrics": {"test/nll": 111.0}})
    for seed in (0, 1):
        for method in ("bowman2016/vae", "kingma2016_iaf/ptb-iaf-fb"):
            _write(tmp_path, _record(method, seed, 110.0 + seed, 0.1, history=history))
    benchmark.write_figures("ptb", tmp_path / "figures", tmp_path)
    rate_distortion, training, mi = kept
    point = {c.get_label(): c.lines[0].get_color() for c in rate_distortion.axes[0].containers}
    curve = {line.get_label(): line.get_color() for line in training.axes[0].lines}
    bars = dict(zip([t.get_text() for t in mi.axes[0].get_yticklabels()],
                    [matplotlib.colors.to_hex(b.get_facecolor()) for b in mi.axes[0].patches]))
    for method in ("bowman2016/vae", "kingma2016_iaf/ptb-iaf-fb"):
        assert matplotlib.colors.to_hex(point[method]) == matplotlib.colors.to_hex(curve[method])
        assert bars[method] == matplotlib.colors.to_hex(curve[method])
    assert point["bowman2016/vae"] != point["kingma2016_iaf/ptb-iaf-fb"]


# ---- for real ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_every_method_trains_and_is_evaluated_under_the_smoke_protocol(tmp_path):
    from repro.train import train
    proto = protocols.protocol("ptb", "smoke")
    for paper, variant in benchmark.methods():
        var, cfg = resolve(paper, variant, proto.preset)
        for needed in var.requires:       # runs this one reads (Yang's "+ init" LM)
            train(resolve(paper, needed, proto.preset)[1], runs_root=tmp_path, records_root=None,
                  track=False, progress=False)
        metrics = train(cfg, runs_root=tmp_path, records_root=None, track=False,
                        progress=False).record["metrics"]
        assert math.isfinite(metrics["test/nll"]), (paper, variant)
        if variant != "rnnlm":
            assert {"test/kl", "test/mi", "test/au"} <= set(metrics), (paper, variant)


@pytest.mark.slow
def test_benchmark_command_runs_seeds_writes_table_and_one_mlflow_experiment(
        tmp_path, monkeypatch, capsys):
    from mlflow.tracking import MlflowClient

    from repro.cli import main
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    records = tmp_path / "results" / "records"
    argv = ["benchmark", "synthetic", "--scale", "smoke", "--seeds", "0", "1", "--jobs", "1",
            "--methods", "bowman2016/vae", "kingma2016_iaf/ptb-iaf-fb",
            "--runs-dir", str(tmp_path / "runs"), "--records-dir", str(records),
            "--results-dir", str(tmp_path / "results")]
    assert main(argv) == 0
    files = sorted(p.relative_to(records).as_posix() for p in records.rglob("*.json"))
    assert files == [f"benchmark_synthetic/{m}__benchmark-synthetic-smoke__seed{s}.json"
                     for m in ("bowman2016/vae", "kingma2016_iaf/ptb-iaf-fb") for s in (0, 1)]
    table = (tmp_path / "results" / "benchmark_synthetic.md").read_text()
    assert "| bowman2016/vae | 0, 1 |" in table and "| kingma2016_iaf/ptb-iaf-fb | 0, 1 |" in table
    assert "Pairwise Welch's t-tests on `nll`" in table
    assert not (tmp_path / "results" / "bowman2016.md").exists()   # paper tables untouched

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("benchmark-synthetic")
    runs = client.search_runs([experiment.experiment_id])
    methods = sorted(r.data.tags.get("method", "") for r in runs if "summary" not in r.data.tags)
    assert methods == ["bowman2016/vae"] * 2 + ["kingma2016_iaf/ptb-iaf-fb"] * 2
    (summary,) = [r for r in runs if r.data.tags.get("summary") == "true"]
    artifacts = {a.path for a in client.list_artifacts(summary.info.run_id)}
    assert "benchmark_synthetic.md" in artifacts
    assert "benchmark-synthetic-smoke_nll_vs_kl.png" in artifacts

    capsys.readouterr()
    assert main(argv + ["--no-mlflow"]) == 0
    assert "4 already finished, 0 to run" in capsys.readouterr().out


def test_benchmark_plan_lists_every_method_and_seed_and_writes_nothing(tmp_path, capsys):
    from repro.cli import main
    records = tmp_path / "results" / "records"
    assert main(["benchmark", "synthetic", "--scale", "smoke", "--plan", "--no-mlflow",
                 "--runs-dir", str(tmp_path / "runs"), "--records-dir", str(records)]) == 0
    out = capsys.readouterr().out
    starts = ("yang2017_dilated_cnn/lstm-lm", "li2019_pretrain_fb/ae-pretrain")   # runs methods start from
    count = (len(benchmark.methods()) + len(starts)) * 3
    assert f"plan: {count} jobs, 0 finished or running elsewhere, {count} to run" in out
    assert "bowman2016/vae/benchmark-synthetic-smoke/seed2: to run [no record yet]" in out
    assert all(f"{start}/benchmark-synthetic-smoke/seed1: to run" in out for start in starts)
    assert not any(tmp_path.rglob("*"))


def test_a_run_a_method_starts_from_is_trained_under_the_protocol_but_is_not_a_row(tmp_path):
    """Yang's LM (for "+init") gets the protocol's presets because a benchmarked variant requires
    it; a variant nothing benchmarked requires gets none; the table lists the LM's record apart."""
    proto = protocols.protocol("ptb", "cpu")
    _, lm = resolve("yang2017_dilated_cnn", "lstm-lm", proto.preset)
    assert lm.model.hidden_size == proto.decoder_hidden and lm.optim == proto.optim
    with pytest.raises(ConfigError):
        resolve("bowman2016", "rnnlm-inputless", proto.preset)
    _write(tmp_path, _record("yang2017_dilated_cnn/lstm-lm", 0, 120.0, 0.0))
    _write(tmp_path, _record("yang2017_dilated_cnn/scnn-vae-init", 0, 110.0, 2.0))
    records, others = benchmark.protocol_records("ptb", tmp_path)
    assert [benchmark.method_name(r) for r in records + others] == ["yang2017_dilated_cnn/scnn-vae-init"]
    table = benchmark.render_benchmark("ptb", tmp_path)
    assert "| yang2017_dilated_cnn/lstm-lm |" not in table
    assert ("as the run a method starts from and not a row: yang2017_dilated_cnn/lstm-lm "
            "(benchmark-ptb-cpu) seed 0") in table


def test_a_method_re_run_under_a_changed_protocol_config_shows_how_it_moved(tmp_path):
    from repro.records import write_record
    old = _record("bowman2016/vae", 0, 110.0, 0.5)
    old["config"]["optim"]["lr"] = 0.01          # the protocol's value when it ran, changed since
    old["commit"] = "1111111aaa"
    _write(tmp_path, old)
    write_record(dict(_record("bowman2016/vae", 0, 108.0, 1.5), commit="2222222bbb"),
                 benchmark.records_root("ptb", tmp_path))
    table = benchmark.render_benchmark("ptb", tmp_path)
    assert "Left out" not in table               # the old record is superseded, not a stale row
    assert "| bowman2016/vae | benchmark-ptb-cpu | 0 | test/nll | 110.00 | 108.00 | -2.00 |" in table
    assert "| bowman2016/vae | benchmark-ptb-cpu | 0 | test/kl | 0.50 | 1.50 | +1.00 |" in table

"""The cross-method benchmark: every sentence-level latent-variable method under one protocol.

A `Protocol` (`repro.protocols`) fixes everything the methods share: the corpus and vocabulary,
the batch size, optimiser, number of epochs, the embedding, encoder, decoder and latent sizes,
and the evaluation (IW-NLL with K = 500; MI pooled over the whole test set and AU over it, even
where a reduced scale takes the bound on a prefix; AU threshold 0.01).
A method takes part by setting `Variant.benchmark` in its paper package; its protocol config is
its own preset at the protocol's scale (so its KL schedule, free bits, flows, decoder type stay
the paper's) with the shared sizes and sections put in. `presets_for` names those configs
`benchmark-<dataset>-<scale>` and `registry.resolve` finds them, so `repro train`, `repro sweep`
and `--resume` work on them like on any other preset.

Records go to `results/records/benchmark_<dataset>/<paper>/`, MLflow runs to the experiment
`benchmark-<dataset>` with a `method` tag; `render_benchmark` turns the records into
`results/benchmark_<dataset>.md` (mean ± std, 95% t-interval over seeds, Welch's t-tests with
Holm's correction) and `write_figures` draws the rate–distortion, training and MI figures.
"""
from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from repro import plots
from repro.config import ConfigError
from repro.protocols import DATASETS, PROTOCOLS, Protocol
from repro.records import (RECORDS_DIR, describe_commits, load_records, mi_scoring, moved_rows,
                           record_differences)
from repro.registry import get_paper, load_papers
from repro.sweep import Job



SIGNIFICANCE = 0.05          # family-wise, per metric, after Holm's correction
TESTED_METRICS = ("nll", "kl")
SUMMARY_METRICS = ("nll", "ppl", "elbo", "rec", "kl", "mi", "au")
# The plain LSTM-VAE: every method's training time is given as a multiple of its.
TIME_REFERENCE = "bowman2016/vae"


def methods(only: list[str] | None = None) -> list[tuple[str, str]]:
    """(paper, variant) of every benchmarked variant in the registry's order, or of those named
    `paper/variant` in `only`, in the order named (so a session can run the most wanted first)."""
    every = [(p.name, v.name) for p in load_papers().values() for v in p.variants.values()
             if v.benchmark and v.runnable]
    if not only:
        return every
    unknown = sorted(set(only) - {f"{p}/{v}" for p, v in every})
    if unknown:
        raise ConfigError(f"not benchmarked: {unknown}; choose from {[f'{p}/{v}' for p, v in every]}")
    return [tuple(name.split("/", 1)) for name in dict.fromkeys(only)]


def records_root(dataset: str, root: Path = RECORDS_DIR) -> Path:
    return Path(root) / f"benchmark_{dataset}"


# ---------------------------------------------------------------------------------- statistics

@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float | None           # sample standard deviation; None for one seed
    ci95: tuple[float, float] | None   # Student-t interval of the mean; None for one seed


def summarize(values: list[float]) -> Summary:
    from scipy import stats
    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return Summary(n, mean, None, None)
    std = statistics.stdev(values)
    if std == 0.0:
        return Summary(n, mean, 0.0, (mean, mean))
    low, high = stats.t.interval(0.95, n - 1, loc=mean, scale=std / math.sqrt(n))
    return Summary(n, mean, std, (float(low), float(high)))


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    difference: float           # mean(a) - mean(b)
    t: float
    p: float                    # Welch's two-sided p
    p_holm: float               # adjusted for every pair of this metric
    significant: bool


def holm(p_values: list[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (monotone, capped at 1), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [0.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def pairwise(samples: dict[str, list[float]]) -> list[Comparison]:
    """Welch's t-test for every pair of methods with at least two seeds each."""
    from scipy import stats
    pairs = [(a, b) for a, b in itertools.combinations(sorted(samples), 2)
             if len(samples[a]) >= 2 and len(samples[b]) >= 2]
    raw = []
    for a, b in pairs:
        if statistics.pvariance(samples[a]) + statistics.pvariance(samples[b]) == 0.0:
            same = statistics.fmean(samples[a]) == statistics.fmean(samples[b])
            raw.append((0.0 if same else math.inf, 1.0 if same else 0.0))
            continue
        result = stats.ttest_ind(samples[a], samples[b], equal_var=False)
        raw.append((float(result.statistic), float(result.pvalue)))
    adjusted = holm([p for _, p in raw])
    return [Comparison(a, b, statistics.fmean(samples[a]) - statistics.fmean(samples[b]), t, p, ph,
                       ph < SIGNIFICANCE)
            for (a, b), (t, p), ph in zip(pairs, raw, adjusted)]


# ---------------------------------------------------------------------------------- the table

def method_name(record: dict) -> str:
    return f"{record['paper']}/{record['variant']}"


def metric_samples(records: list[dict], metric: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for rec in records:
        split = rec.get("eval", {}).get("split", "test")
        value = rec["metrics"].get(f"{split}/{metric}")
        if value is not None:
            out.setdefault(method_name(rec), []).append(value)
    return out


def _cell(summary: Summary | None) -> str:
    if summary is None:
        return "—"
    if summary.std is None:
        return f"{summary.mean:.2f}"
    low, high = summary.ci95
    return f"{summary.mean:.2f} ± {summary.std:.2f} [{low:.2f}, {high:.2f}]"


def _scales(records: list[dict]) -> list[str]:
    return sorted({rec["preset"] for rec in records})


def is_method(record: dict) -> bool:
    """A record of a benchmarked method, not of a run one of them starts from (`requires`)."""
    variant = getattr(load_papers().get(record["paper"]), "variants", {}).get(record["variant"])
    return variant is not None and variant.benchmark


def protocol_records(dataset: str, root: Path = RECORDS_DIR) -> tuple[list[dict], list[dict]]:
    """(records of the protocol's own config today, the others), methods only: only the first are
    pooled as seeds, so a run under other settings, or under a protocol since changed, never
    joins them."""
    records = [r for r in load_records(records_root(dataset, root)) if is_method(r)]
    same = [r for r in records if record_differences(r) == {}]
    return same, [r for r in records if record_differences(r) != {}]


def start_records(dataset: str, root: Path = RECORDS_DIR) -> list[dict]:
    """Records of runs trained under the protocol only as a method's start (`requires`)."""
    return [r for r in load_records(records_root(dataset, root)) if not is_method(r)]


def _prerequisite_runs(starts: list[dict]) -> list[str]:
    """A line naming the runs trained under the protocol only as a method's start."""
    seeds: dict[str, list[int]] = {}
    for record in starts:
        seeds.setdefault(f"{method_name(record)} ({record['preset']})", []).append(record["seed"])
    if not seeds:
        return []
    runs = "; ".join(f"{name} {_seeds_phrase(sorted(s))}" for name, s in sorted(seeds.items()))
    return [f"Also under the protocol, as the run a method starts from and not a row: {runs}.", ""]


def _left_out(records: list[dict]) -> list[str]:
    if not records:
        return []
    names = sorted({f"{method_name(r)} seed {r['seed']} ({r['preset']})" for r in records})
    return [f"Left out: {len(records)} record(s) whose config differs from the protocol's today "
            f"(another `--set`, or a protocol changed since they ran), to be run again: "
            f"{'; '.join(names)}.", ""]


def render_benchmark(dataset: str, root: Path = RECORDS_DIR) -> str:
    records, others = protocol_records(dataset, root)
    starts = start_records(dataset, root)
    lines = [f"# Benchmark: posterior collapse on {dataset}, every method under one protocol", "",
             "Generated by `repro table` from "
             f"`results/records/benchmark_{dataset}/`; do not edit by hand. Cells: mean ± sample "
             "std over seeds [95% Student-t interval of the mean]. The command that produces the "
             f"records: `repro benchmark {dataset} --scale <scale>`.", ""]
    for preset in _scales(records):
        lines += _render_scale(dataset, preset, [r for r in records if r["preset"] == preset],
                               [r for r in starts if r["preset"] == preset])
    if not records:
        lines += ["No records yet.", ""]
    lines += _left_out(others) + _prerequisite_runs(starts)
    superseded = [r for r in load_records(records_root(dataset, root), superseded=True) if is_method(r)]
    lines += moved_rows(records, superseded, tuple(f"test/{m}" for m in TESTED_METRICS), name=method_name)
    return "\n".join(lines)


def scale_of(preset: str) -> str:
    """The scale named by a protocol preset: `benchmark-ptb-cpu` -> `cpu`."""
    return preset.rsplit("-", 1)[-1]


def reading_notes(records: list[dict]) -> list[str]:
    """The reading notes of the variants in `records`, one paragraph per distinct note, naming
    the methods it is about."""
    methods_by_note: dict[str, list[str]] = {}
    for name in sorted({method_name(r) for r in records}):
        paper, variant = name.split("/", 1)
        note = get_paper(paper).variant(variant).reading_note
        if note:
            methods_by_note.setdefault(note, []).append(name)
    return [f"Reading {', '.join(names)}: {note}" for note, names in methods_by_note.items()]


def _render_scale(dataset: str, preset: str, records: list[dict], starts: list[dict]) -> list[str]:
    scale = scale_of(preset)
    proto = PROTOCOLS.get((dataset, scale))
    lines = [f"## Scale `{scale}` (preset `{preset}`)", ""]
    if proto is not None:
        lines += [f"Protocol: embedding {proto.embed_size}, encoder {proto.encoder_hidden}, decoder "
                  f"{proto.decoder_hidden}, latent {proto.latent_size}; {proto.train.epochs} epochs, "
                  f"batch {proto.data.batch_size}; IW-NLL K = {proto.eval.iw_samples}, MI pool "
                  f"`{proto.eval.mi_pool}`, AU threshold {proto.eval.au_threshold}. "
                  f"Reductions: {proto.reductions}.", ""]
        lines += coverage(proto, records)
    lines += [line for note in reading_notes(records) for line in (note, "")]
    samples = {m: metric_samples(records, m) for m in SUMMARY_METRICS}
    repeats = identical_methods(records)
    # Ties (the same model reached by two papers' presets) fall back to the name, so the table
    # does not depend on the set's hash order.
    names = sorted({method_name(r) for r in records},
                   key=lambda n: (statistics.fmean(samples["nll"].get(n, [math.inf])), n))
    seeds = {n: sorted(r["seed"] for r in records if method_name(r) == n) for n in names}
    relative = relative_training_time(records, starts)
    lines += ["| method | seeds | " + " | ".join(SUMMARY_METRICS)
              + f" | training time (× {TIME_REFERENCE}) |",
              "|---|---|" + "---|" * len(SUMMARY_METRICS) + "---|"]
    for name in names:
        cells = [_cell(summarize(samples[m][name]) if name in samples[m] else None)
                 for m in SUMMARY_METRICS]
        shown = f"{name} (= {repeats[name]})" if name in repeats else name
        time_cell = f"{relative[name]:.2f}" if name in relative else "—"
        lines.append(f"| {shown} | {', '.join(map(str, seeds[name]))} | " + " | ".join(cells)
                     + f" | {time_cell} |")
    lines += ["", f"Training time: the mean over seeds of the summed epoch times (evaluation left "
              f"out), over that of {TIME_REFERENCE}, each run at whatever threads and machine load "
              "its record names: a guide to cost (He et al. report 2.2× for aggressive training, "
              "about 10× for SA-VAE), not a benchmark of speed. A method that starts from "
              "another run (Li et al.'s pretrained encoder, Yang et al.'s +init) is timed with "
              "that run's training.", ""]
    lines += _mixed_mi_scoring(records)
    lines += _identical_note(repeats, seeds)
    for metric in TESTED_METRICS:
        tested = {n: v for n, v in samples[metric].items() if n not in repeats}
        lines += _render_tests(metric, pairwise(tested))
    walls = [r["wall_time_s"] for r in records]
    lines += [f"Records: {len(records)}; total wall time {sum(walls) / 3600:.1f} h; commits: "
              f"{describe_commits(records)}; hardware: "
              f"{', '.join(sorted({r['hardware'].get('device', '?') for r in records}))}.", ""]
    return lines


def training_seconds(record: dict) -> float | None:
    """Seconds spent in training epochs (validation included, the test evaluation not)."""
    times = [entry.get("epoch_time_s") for entry in record.get("history", [])]
    return sum(times) if times and None not in times else None


def relative_training_time(records: list[dict], starts: list[dict] = ()) -> dict[str, float]:
    """Each method's mean training time over `TIME_REFERENCE`'s, among these records. A method
    that starts from other runs (`requires`) is timed with them: their records of the same
    preset and seed among `starts`; without one its time is unknown, never understated."""
    start_seconds = {(r["paper"], r["variant"], r["preset"], r["seed"]): training_seconds(r)
                     for r in starts}
    by_method: dict[str, list[float]] = {}
    for rec in records:
        needed = get_paper(rec["paper"]).variant(rec["variant"]).requires
        parts = [training_seconds(rec)] + [start_seconds.get((rec["paper"], name, rec["preset"], rec["seed"]))
                                           for name in needed]
        if None not in parts:
            by_method.setdefault(method_name(rec), []).append(sum(parts))
    reference = by_method.get(TIME_REFERENCE)
    if not reference:
        return {}
    base = statistics.fmean(reference)
    return {name: statistics.fmean(times) / base for name, times in by_method.items()}


def coverage(proto: Protocol, records: list[dict]) -> list[str]:
    """Which benchmarked methods the table holds at every protocol seed, which at some, and which
    not at all, so that a reader of an unfinished benchmark sees what is missing from it."""
    wanted = [f"{paper}/{variant}" for paper, variant in methods()]
    seeds = {name: sorted({r["seed"] for r in records if method_name(r) == name}) for name in wanted}
    complete = [n for n in wanted if set(proto.seeds) <= set(seeds[n])]
    partial = [f"{n} ({_seeds_phrase(seeds[n])})" for n in wanted
               if seeds[n] and n not in complete]
    missing = [n for n in wanted if not seeds[n]]
    protocol_seeds = ", ".join(map(str, proto.seeds))
    if len(complete) == len(wanted):
        return [f"Coverage: all {len(wanted)} benchmarked methods have every protocol seed "
                f"({protocol_seeds}).", ""]
    line = (f"Coverage: this benchmark is unfinished. {len(complete)} of {len(wanted)} benchmarked "
            f"methods have every protocol seed ({protocol_seeds}).")
    if partial:
        line += f" With fewer seeds ({len(partial)}): {', '.join(partial)}."
    if missing:
        line += f" Not run yet ({len(missing)}): {', '.join(missing)}."
    line += (f" `repro benchmark {proto.dataset} --scale {proto.scale} --plan` lists the jobs "
             "left.")
    return [line, ""]


def identical_methods(records: list[dict]) -> dict[str, str]:
    """Methods whose records repeat another's bit for bit, `{repeat: first}` (first by name):
    the same seeds and, at each, the same value of every test metric. That is the same model
    and training reached through two papers' presets (their configs differ only in settings
    that do nothing under the protocol), not two results that happen to agree."""
    runs: dict[str, list] = {}
    for rec in records:
        runs.setdefault(method_name(rec), []).append(
            (rec["seed"], tuple(sorted(rec["metrics"].items()))))
    first_by_runs: dict[tuple, str] = {}
    repeats = {}
    for name in sorted(runs):
        key = tuple(sorted(runs[name]))
        if key in first_by_runs:
            repeats[name] = first_by_runs[key]
        else:
            first_by_runs[key] = name
    return repeats


def _identical_note(repeats: dict[str, str], seeds: dict[str, list[int]]) -> list[str]:
    if not repeats:
        return []
    pairs = [f"{repeat} repeats {first} at {_seeds_phrase(seeds[repeat])}"
             for repeat, first in sorted(repeats.items())]
    return [f"Identical records: {'; '.join(pairs)}, every test metric bit for bit. Under this "
            "protocol they are one model and one training, reached through two papers' presets. "
            "Both rows stay in the table; the pairwise tests count each such method once, under "
            "its first name.", ""]


def _mixed_mi_scoring(records: list[dict]) -> list[str]:
    """A warning, when the records differ in how MI was scored: the way most runs scored it, then
    each other way with the methods (and their seeds) that used it."""
    seeds_by_scoring: dict[str, dict[str, list[int]]] = {}
    for rec in sorted(records, key=lambda r: (method_name(r), r["seed"])):
        scoring = mi_scoring(rec)
        if scoring is not None:
            seeds_by_scoring.setdefault(scoring, {}).setdefault(method_name(rec), []).append(
                rec["seed"])
    if len(seeds_by_scoring) < 2:
        return []
    usual = _usual_mi_scoring(records)
    others = [f"{scoring}: " + ", ".join(f"{name} ({_seeds_phrase(seeds)})"
                                         for name, seeds in by_method.items())
              for scoring, by_method in sorted(seeds_by_scoring.items()) if scoring != usual]
    return [f"MI was not scored the same way for every run, so its cells mix estimators or pools. "
            f"Most runs: {usual}. The others: {'; '.join(others)}.", ""]


def _usual_mi_scoring(records: list[dict]) -> str | None:
    """How most records scored MI (ties broken by name, so the table is stable)."""
    counts = Counter(s for s in map(mi_scoring, records) if s is not None)
    return min(counts, key=lambda scoring: (-counts[scoring], scoring)) if counts else None


def _seeds_phrase(seeds: list[int]) -> str:
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def _render_tests(metric: str, comparisons: list[Comparison]) -> list[str]:
    if not comparisons:
        return [f"Pairwise tests on `{metric}`: none (a test needs two methods with two seeds each).",
                ""]
    significant = [c for c in comparisons if c.significant]
    lines = [f"Pairwise Welch's t-tests on `{metric}`: {len(significant)} of {len(comparisons)} "
             f"differences exceed seed noise (Holm-adjusted p < {SIGNIFICANCE}).", "",
             "<details><summary>every pair</summary>", "",
             "| a | b | mean(a) − mean(b) | t | p | p (Holm) | beyond seed noise |",
             "|---|---|---|---|---|---|---|"]
    for c in sorted(comparisons, key=lambda c: c.p):
        lines.append(f"| {c.a} | {c.b} | {c.difference:+.3f} | {c.t:.2f} | {c.p:.3g} | "
                     f"{c.p_holm:.3g} | {'yes' if c.significant else 'no'} |")
    return lines + ["", "</details>", ""]


def table_path(dataset: str, results_dir: Path) -> Path:
    return Path(results_dir) / f"benchmark_{dataset}.md"


def datasets_with_records(root: Path = RECORDS_DIR) -> list[str]:
    return [d for d in DATASETS if records_root(d, root).is_dir()]


# ---------------------------------------------------------------------------------- figures

def write_figures(dataset: str, out_dir: Path, root: Path = RECORDS_DIR) -> list[Path]:
    """Rate–distortion (NLL against KL), KL and AU over training, MI per method: one PNG each
    per scale, under `out_dir`."""
    records, _ = protocol_records(dataset, root)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for preset in _scales(records):
        recs = [r for r in records if r["preset"] == preset]
        nll, kl, mi = (metric_samples(recs, m) for m in ("nll", "kl", "mi"))
        title = f"{dataset}, {preset}"
        styles = plots.method_styles({method_name(r) for r in recs})
        paths.append(plots.plot_rate_distortion(kl, nll, out_dir / f"{preset}_nll_vs_kl.png", title,
                                                styles))
        paths.append(plots.plot_over_training(_histories(recs), ("val/kl", "val/au"),
                                              out_dir / f"{preset}_kl_au_training.png", title, styles))
        paths.append(plots.plot_per_method(mi, "MI (nats)", out_dir / f"{preset}_mi.png", title,
                                           styles, caveats=unusual_mi_scoring(recs)))
    return paths


def unusual_mi_scoring(records: list[dict]) -> dict[str, str]:
    """`{method: how its MI was scored}` for the methods whose records did not all score it the
    way most records did (another estimator, pool or pool size, so another ceiling)."""
    scoring = {(method_name(r), r["seed"]): mi_scoring(r) for r in records}
    if len(set(scoring.values()) - {None}) < 2:
        return {}
    usual = _usual_mi_scoring(records)
    by_method: dict[str, set[str]] = {}
    for (name, _), way in scoring.items():
        if way is not None:
            by_method.setdefault(name, set()).add(way)
    return {name: "MI: " + "; ".join(sorted(ways)) for name, ways in by_method.items()
            if ways != {usual}}


def _histories(records: list[dict]) -> dict[str, list[list[dict]]]:
    out: dict[str, list[list[dict]]] = {}
    for rec in records:
        if rec.get("history"):
            out.setdefault(method_name(rec), []).append(rec["history"])
    return out


# ---------------------------------------------------------------------------------- running it

def jobs(proto: Protocol, seeds: list[int], only: list[str] | None, overrides: list[str]) -> list:
    return [Job(paper, variant, proto.preset, seed, tuple(overrides))
            for paper, variant in methods(only) for seed in seeds]

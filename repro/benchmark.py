"""The cross-method benchmark: every sentence-level latent-variable method under one protocol.

A `Protocol` fixes everything the methods share: the corpus and vocabulary, the batch size,
optimiser, number of epochs, the embedding, encoder, decoder and latent sizes, and the
evaluation (IW-NLL with K = 500; MI pooled over the whole test set and AU over it, even where a
reduced scale takes the bound on a prefix; AU threshold 0.01).
A method takes part by setting `Variant.benchmark` in its paper package; its protocol config is
its own preset at the protocol's scale (so its KL schedule, free bits, flows, decoder type stay
the paper's) with the shared sizes and sections put in. `presets_for` names those configs
`benchmark-<dataset>-<scale>` and `registry.resolve` finds them, so `repro train`, `repro sweep`
and `--resume` work on them like on any other preset.

Records go to `results/records/benchmark_<dataset>/<paper>/`, MLflow runs to the experiment
`benchmark-<dataset>` with a `method` tag; `render` turns the records into
`results/benchmark_<dataset>.md` (mean ± std, 95% t-interval over seeds, Welch's t-tests with
Holm's correction) and `write_figures` draws the rate–distortion, training and MI figures.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from repro.config import (DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig,
                          SyntheticConfig, TrainConfig)
from repro.records import RECORDS_DIR, describe_commits, load_records, mi_scoring, record_differences
from repro.registry import get_paper

DATASETS = ("ptb", "synthetic")
SCALES = ("smoke", "cpu", "paper")
SIGNIFICANCE = 0.05          # family-wise, per metric, after Holm's correction
TESTED_METRICS = ("nll", "kl")
SUMMARY_METRICS = ("nll", "ppl", "elbo", "rec", "kl", "mi", "au")


@dataclass(frozen=True)
class Protocol:
    """What every method in one benchmark table shares."""

    dataset: str
    scale: str
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig
    embed_size: int
    encoder_hidden: int
    decoder_hidden: int          # LSTM units, or channels of a CNN decoder
    latent_size: int             # per sentence, or per step for per-step latents (Z-Forcing)
    reductions: str = ""         # what this scale leaves out, printed above the table
    seeds: tuple[int, ...] = field(default=(0, 1, 2))

    @property
    def name(self) -> str:
        return f"benchmark_{self.dataset}"

    @property
    def preset(self) -> str:
        return f"benchmark-{self.dataset}-{self.scale}"

    @property
    def experiment(self) -> str:
        return f"benchmark-{self.dataset}"

    def shared_sizes(self) -> dict[str, int]:
        # `hidden_size` is the one recurrent size of models without a separate encoder (LMs,
        # Z-Forcing's forward/backward LSTMs).
        return {"embed_size": self.embed_size, "encoder_hidden": self.encoder_hidden,
                "decoder_hidden": self.decoder_hidden, "hidden_size": self.decoder_hidden,
                "latent_size": self.latent_size}


def _eval(scale: str, max_examples: int | None) -> EvalConfig:
    if scale == "smoke":
        return EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40, mc_samples=4)
    return EvalConfig(iw_samples=500, iw_chunk=100, mi_pool="dataset", au_threshold=0.01,
                      max_examples=max_examples, mi_au_whole_split=True)


PROTOCOLS: dict[tuple[str, str], Protocol] = {
    ("ptb", "smoke"): Protocol(
        "ptb", "smoke", DataConfig(train_fraction=0.005, max_vocab=500), OptimConfig(),
        TrainConfig(epochs=1), _eval("smoke", None), 16, 16, 16, 4, "seconds-long, for tests"),
    ("ptb", "cpu"): Protocol(
        "ptb", "cpu", DataConfig(batch_size=32), OptimConfig(lr=1e-3, grad_clip=5.0),
        TrainConfig(epochs=4), _eval("cpu", 500), 128, 256, 256, 32,
        "4 epochs; sizes 128/256/256/32 (embedding/encoder/decoder/latent) instead of He et al.'s "
        "512/1024/1024/32; IW-NLL (K = 500), ELBO and KL on the first 500 test sentences; MI and "
        "AU on all 3761 (MI ceiling log 3761 = 8.2 nats), except for IAF posteriors, whose "
        "density at every other sentence's z costs too much there: on the 500 (ceiling 6.2)"),
    ("ptb", "paper"): Protocol(
        "ptb", "paper", DataConfig(batch_size=32), OptimConfig(lr=1e-3, grad_clip=5.0),
        TrainConfig(epochs=40, early_stop_patience=5), _eval("paper", None), 512, 1024, 1024, 32,
        "He et al. 2019's sizes; the whole test set"),
    ("synthetic", "smoke"): Protocol(
        "synthetic", "smoke",
        DataConfig(dataset="synthetic", batch_size=32,
                   synthetic=SyntheticConfig(num_train=500, num_valid=50, num_test=50)),
        OptimConfig(),
        TrainConfig(epochs=1, max_steps=10), _eval("smoke", None), 16, 16, 16, 4,
        "seconds-long, for tests"),
    ("synthetic", "cpu"): Protocol(
        "synthetic", "cpu", DataConfig(dataset="synthetic", batch_size=32), OptimConfig(),
        TrainConfig(epochs=10), _eval("cpu", None), 64, 64, 64, 4,
        "small LSTMs (64 units), latent 4, 10 epochs"),
    ("synthetic", "paper"): Protocol(
        "synthetic", "paper", DataConfig(dataset="synthetic", batch_size=16), OptimConfig(),
        TrainConfig(epochs=50), _eval("paper", None), 50, 50, 50, 2,
        "He et al. 2019's model on this corpus (shared/data/synthetic_he2019/SOURCE.md: embedding "
        "50, LSTMs 50, latent 2, batch 16, 50 epochs); their decoder dropout 0.5 is not imposed"),
}


def protocol(dataset: str, scale: str) -> Protocol:
    from repro.config import ConfigError
    if (dataset, scale) not in PROTOCOLS:
        raise ConfigError(f"no benchmark protocol for {dataset!r} at scale {scale!r}; "
                          f"datasets: {DATASETS}, scales: {SCALES}")
    return PROTOCOLS[(dataset, scale)]


def with_shared_sizes(model: ModelConfig, proto: Protocol) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(model)}
    return dataclasses.replace(model, **{k: v for k, v in proto.shared_sizes().items() if k in names})


def protocol_config(base: RunConfig, proto: Protocol, variant) -> RunConfig:
    """`base` (the method's own preset at the protocol's scale) under the protocol. Two
    exceptions, declared by the variant (`registry.Variant`): per-step latents have no dataset-wide
    aggregate posterior, so their MI is pooled per batch; a posterior whose density is costly to
    evaluate keeps MI and AU on the bound's prefix. The table names the runs scored otherwise
    than the rest (`_mixed_mi_scoring`)."""
    exceptions = {}
    if variant.latent_per_step:
        exceptions["mi_pool"] = "batch"
    if variant.costly_posterior_density:
        exceptions["mi_au_whole_split"] = False
    evaluation = dataclasses.replace(proto.eval, **exceptions)
    return dataclasses.replace(
        base, preset=proto.preset, model=with_shared_sizes(base.model, proto),
        data=dataclasses.replace(proto.data), optim=dataclasses.replace(proto.optim),
        train=dataclasses.replace(proto.train), eval=evaluation)


def presets_for(variant) -> dict:
    """A benchmarked variant's protocol presets, `benchmark-<dataset>-<scale>` -> config maker
    (none for other variants). Kept apart from `variant.presets`, the paper's own."""
    if not variant.benchmark:
        return {}
    return {proto.preset: (lambda proto=proto: protocol_config(variant.presets[proto.scale](), proto,
                                                               variant))
            for proto in PROTOCOLS.values()}


def methods(only: list[str] | None = None) -> list[tuple[str, str]]:
    """(paper, variant) of every benchmarked variant in the registry's order, or of those named
    `paper/variant` in `only`, in the order named (so a session can run the most wanted first)."""
    from repro.config import ConfigError
    from repro.registry import load_papers
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


def protocol_records(dataset: str, root: Path = RECORDS_DIR) -> tuple[list[dict], list[dict]]:
    """(records of the protocol's own config today, the others): only the first are pooled as
    seeds, so a run under other settings, or under a protocol since changed, never joins them."""
    records = load_records(records_root(dataset, root))
    same = [r for r in records if record_differences(r) == {}]
    return same, [r for r in records if record_differences(r) != {}]


def _left_out(records: list[dict]) -> list[str]:
    if not records:
        return []
    names = sorted({f"{method_name(r)} seed {r['seed']} ({r['preset']})" for r in records})
    return [f"Left out: {len(records)} record(s) whose config differs from the protocol's today "
            f"(another `--set`, or a protocol changed since they ran), to be run again: "
            f"{'; '.join(names)}.", ""]


def render(dataset: str, root: Path = RECORDS_DIR) -> str:
    records, others = protocol_records(dataset, root)
    lines = [f"# Benchmark: posterior collapse on {dataset}, every method under one protocol", "",
             "Generated by `repro table` from "
             f"`results/records/benchmark_{dataset}/`; do not edit by hand. Cells: mean ± sample "
             "std over seeds [95% Student-t interval of the mean]. The command that produces the "
             f"records: `repro benchmark {dataset} --scale <scale>`.", ""]
    for preset in _scales(records):
        lines += _render_scale(dataset, preset, [r for r in records if r["preset"] == preset])
    if not records:
        lines += ["No records yet.", ""]
    lines += _left_out(others)
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


def _render_scale(dataset: str, preset: str, records: list[dict]) -> list[str]:
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
    lines += ["| method | seeds | " + " | ".join(SUMMARY_METRICS) + " |",
              "|---|---|" + "---|" * len(SUMMARY_METRICS)]
    for name in names:
        cells = [_cell(summarize(samples[m][name]) if name in samples[m] else None)
                 for m in SUMMARY_METRICS]
        shown = f"{name} (= {repeats[name]})" if name in repeats else name
        lines.append(f"| {shown} | {', '.join(map(str, seeds[name]))} | " + " | ".join(cells) + " |")
    lines.append("")
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
    from repro import plots
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
    from repro.sweep import Job
    return [Job(paper, variant, proto.preset, seed, tuple(overrides))
            for paper, variant in methods(only) for seed in seeds]


def run_from_args(args) -> int:
    """`repro benchmark DATASET`: the sweep of every method × seed at the protocol's preset, then
    the tables and figures, which also go to MLflow as the artifacts of a summary run."""
    from repro import sweep, tables
    proto = protocol(args.dataset, args.scale)
    records = Path(args.records_dir)
    code = sweep.run_jobs(args, lambda: jobs(proto, args.seeds or list(proto.seeds), args.methods,
                                             args.overrides),
                          records_root(args.dataset, records), experiment=proto.experiment,
                          title=f"benchmark {args.dataset} ({proto.preset})")
    if args.plan:
        return code
    written = tables.write_where_asked(records, args.results_dir)
    if written and not args.no_mlflow:
        log_summary(proto, [p for p in written if p.name.startswith(proto.name) or p.parent.name == proto.name])
    return code


def log_summary(proto: Protocol, paths: list[Path]) -> None:
    """The table and figures as artifacts of one MLflow run in the benchmark's experiment."""
    from repro.tracking import Tracker
    tracker = Tracker()
    tracker.start(proto.experiment, f"summary/{proto.preset}")
    tracker.set_tags({"summary": "true", "preset": proto.preset})
    for path in paths:
        tracker.log_artifact(path)
    tracker.end()

"""`repro` command line: list, train, reproduce, sweep, benchmark, runs, eval, sample, table, ui,
data, demo."""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from repro import benchmark, lease, protocols, sweep, tables
from repro.checkpoints import TrainError
from repro.config import ConfigError, apply_overrides
from repro.data import LOADERS, sources
from repro.data.sources import DataError
from repro.demo import run_demo
from repro.evaluate import evaluate_corpus
from repro.generate import format_qualitative, qualitative
from repro.records import git_commit, record_path_for, rescore_record
from repro.registry import get_paper, load_papers, resolve
from repro.runs import find_runs, load_trained, render_runs
from repro.sweep import add_arguments as add_sweep_arguments, is_finished, make_jobs, run_from_args
from repro.tables import TableError
from repro.tracking import Tracker, download_run, experiment_views, log_rescoring, tracking_uri
from repro.train import train




def _add_run_options(p: argparse.ArgumentParser, preset: bool = True) -> None:
    if preset:
        p.add_argument("--preset", default="cpu", help="smoke (seconds) | cpu (about an hour) | paper (GPU)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set model.latent_size=32 (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run's last checkpoint; reproduce keeps rows whose "
                        "record the same config wrote")
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--runs-dir", default="runs", help="where checkpoints go (default: runs/)")
    p.add_argument("--records-dir", default="results/records", help="where run records go")
    _add_results_dir(p)
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _add_results_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--results-dir", default=None,
                   help="where tables go (default: results/ with the default --records-dir; with "
                        "another records folder, tables are written only if this is given)")


def write_tables(args) -> list[Path]:
    return tables.write_where_asked(Path(args.records_dir), args.results_dir)


def _add_finish_diverged(p: argparse.ArgumentParser) -> None:
    p.add_argument("--finish-diverged", action="store_true",
                   help="a run that stopped on divergence and that no remedy gets past: score its "
                        "best checkpoint as it stands; the record says where it stopped")


def cmd_list(args) -> int:
    for name, paper in sorted(load_papers().items()):
        print(f"{name}: {paper.title}")
        for vname, var in paper.variants.items():
            mark = "" if var.runnable else f"  [not run: {var.not_run_reason}]"
            print(f"  {vname:32s} presets: {', '.join(var.presets)}{mark}")
            print(f"  {'':32s} {var.description}")
    print("datasets:", ", ".join(sorted(LOADERS)))
    return 0


def _config(paper: str, variant: str, preset: str, seed: int, overrides: list[str]):
    _, cfg = resolve(paper, variant, preset)
    cfg.seed = seed
    return apply_overrides(cfg, overrides)


def _train_one(args, variant: str, seed: int):
    cfg = _config(args.paper, variant, args.preset, seed, args.overrides)
    result = train(cfg, runs_root=Path(args.runs_dir), records_root=Path(args.records_dir),
                   resume=args.resume, track=not args.no_mlflow, progress=not args.quiet,
                   finish_diverged=args.finish_diverged)
    metrics = {k: round(v, 3) for k, v in result.record["metrics"].items()}
    print(f"{args.paper}/{variant} seed {seed}: {json.dumps(metrics)}")
    print(f"record: {result.record_path}  checkpoints: {result.run_dir}")
    return result


def cmd_train(args) -> int:
    _train_one(args, args.variant, args.seed)
    return 0


def cmd_reproduce(args) -> int:
    """Each row in turn, then the tables. With --resume, a row whose record the same config
    wrote is kept as it is, as a sweep keeps it: resuming its finished checkpoint would only
    score it again and stamp the record with a commit that did not train it."""
    records = Path(args.records_dir)
    for job in make_jobs(args.paper, args.variants, args.seeds, args.preset, args.overrides):
        if args.resume and is_finished(job, records):
            path = record_path_for(records, job.config().to_dict())
            print(f"{job.name}: finished, record kept ({path})")
            continue
        _train_one(args, job.variant, job.seed)
    write_tables(args)
    return 0


def cmd_sweep(args) -> int:
    return run_from_args(args)


def cmd_benchmark(args) -> int:
    """`repro benchmark DATASET`: the sweep of every method × seed at the protocol's preset, then
    the tables and figures, which also go to MLflow as the artifacts of a summary run."""
    proto = protocols.protocol(args.dataset, args.scale)
    records = Path(args.records_dir)
    seeds = args.seeds or list(proto.seeds)
    code = sweep.run_jobs(args, lambda: benchmark.jobs(proto, seeds, args.methods, args.overrides),
                          benchmark.records_root(args.dataset, records), experiment=proto.experiment,
                          title=f"benchmark {args.dataset} ({proto.preset})")
    if args.plan:
        return code
    written = tables.write_where_asked(records, args.results_dir)
    if written and not args.no_mlflow:
        ours = [p for p in written if p.name.startswith(proto.name) or p.parent.name == proto.name]
        _log_benchmark_summary(proto, ours)
    return code


def _log_benchmark_summary(proto: protocols.Protocol, paths: list[Path]) -> None:
    """The table and figures as artifacts of one MLflow run in the benchmark's experiment."""
    tracker = Tracker()
    tracker.start(proto.experiment, f"summary/{proto.preset}")
    tracker.set_tags({"summary": "true", "preset": proto.preset})
    for path in paths:
        tracker.log_artifact(path)
    tracker.end()


def cmd_lease(args) -> int:
    """`repro lease pack DIR` / `repro lease import DIR`: the folder a GPU lease carries both ways
    (`repro.lease`); import exits 1 when it refused an item."""
    if args.action != "sizes" and not args.dir:
        raise ConfigError(f"repro lease {args.action} needs the carry folder: repro lease {args.action} DIR")
    if args.action == "pack":
        records = Path(args.records_dir)
        if args.benchmark:
            proto = protocols.protocol(args.benchmark, args.preset)
            jobs = benchmark.jobs(proto, args.seeds, None, [])
            records = benchmark.records_root(args.benchmark, records)
        else:
            jobs = sweep.jobs_for(args.paper, None, args.seeds, args.preset)
        lines = lease.pack(Path(args.dir), jobs, Path(args.runs_dir), records,
                           subdir=records.relative_to(args.records_dir).as_posix())
        print("\n".join(lines))
        return 0
    if args.action == "sizes":
        print("\n".join(lease.size_lines(sweep.jobs_for(args.paper, None, args.seeds[:1], args.preset))))
        return 0
    lines, refused = lease.import_folder(Path(args.dir), Path(args.runs_dir), Path(args.records_dir))
    print("\n".join(lines))
    return 1 if refused else 0


def cmd_runs(args) -> int:
    print(render_runs(find_runs(Path(args.runs_dir))))
    return 0


def cmd_eval(args) -> int:
    if args.run_dir.startswith("runs:/"):

        with tempfile.TemporaryDirectory(prefix="repro-eval-") as tmp:
            args.run_dir = str(download_run(args.run_dir, Path(tmp) / "run"))
            return cmd_eval(args)


    run_dir = Path(args.run_dir)
    if args.record and any(not o.strip().startswith("eval.") for o in args.overrides):
        raise ConfigError("--record re-scores a trained run: only eval.* options may change "
                          f"(got {args.overrides}); train a new run to change anything else")
    started = time.time()
    cfg, corpus, model = load_trained(run_dir, args.overrides)
    device = next(model.parameters()).device
    variant = get_paper(cfg.paper).variant(cfg.variant)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    result = evaluate_corpus(model, corpus, cfg.eval, device=device, seed=cfg.seed,
                             batch_size=cfg.data.eval_batch_size, progress=not args.quiet)
    metrics = result.prefixed(cfg.eval.split)
    if variant.evaluate_extra is not None:
        metrics.update(variant.evaluate_extra(model, corpus, cfg, run_dir)[0])
    print(json.dumps({"metrics": metrics, "eval": result.options}, indent=2))
    if args.record:
        path = rescore_record(run_dir, metrics, result.options, cfg.to_dict()["eval"],
                              time.time() - started, device, Path(args.records_dir))
        print(f"record re-scored: {path} and {run_dir / 'record.json'}")
        run_id = json.loads(path.read_text()).get("mlflow_run_id")
        if run_id and log_rescoring(run_id, metrics, git_commit()):
            print(f"MLflow run {run_id}: test metrics updated")
    return 0


def cmd_sample(args) -> int:
    cfg, corpus, model = load_trained(Path(args.run_dir))
    if not getattr(model, "has_latent", False) or not hasattr(model, "decoder"):
        raise SystemExit(f"{cfg.paper}/{cfg.variant} has no latent decoder to sample from")
    print(format_qualitative(qualitative(model, corpus, num=args.num, seed=args.seed)))
    return 0


def cmd_table(args) -> int:
    records = Path(args.records_dir)
    results = tables.results_dir_for(records, args.results_dir)
    if results is None:
        raise ConfigError(f"--records-dir {records} is not the default: say where its tables go "
                          "with --results-dir DIR")
    if args.check:
        problems = tables.check(records, results)
        for problem in problems:
            print(f"table check failed: {problem}; run `repro table` to regenerate", file=sys.stderr)
        if not problems:
            print("tables match their records")
        return 1 if problems else 0
    for path in tables.write_all(records, results):
        print(f"wrote {path}")
    return 0


def cmd_ui(args) -> int:
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving the MLflow UI on {args.host} exposes it beyond this machine",
              file=sys.stderr)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri(),
           "--host", args.host, "--port", str(args.port)]
    base = f"http://{f'[{args.host}]' if ':' in args.host else args.host}:{args.port}"
    print(f"MLflow UI on {base} (store: {tracking_uri()})")
    try:
        views = experiment_views()
    except Exception as err:  # noqa: BLE001 — the UI can still be served and say what is wrong
        print(f"warning: the store's experiments could not be listed ({type(err).__name__}: {err})",
              file=sys.stderr)
        views = []
    for name, route in views:
        print(f"  {name}: {base}{route}")
    if not views:
        print("  no experiments yet: `repro demo` or `repro train` creates one")
    sys.stdout.flush()          # before MLflow's own output, which shares the terminal
    return subprocess.call(cmd)


def cmd_data(args) -> int:
    if args.action == "fetch":
        for name, path in sources.fetch(args.name).items():
            print(f"{name}: {path}")
    elif args.action == "verify":
        results = sources.verify(args.name)
        for file, path, ok, message in results:
            print(f"{'ok ' if ok else 'BAD'} {file}: {path or '-'} {message}")
        return 0 if all(r[2] for r in results) else 1
    else:
        print(sources.info(args.name))
    return 0


def cmd_demo(args) -> int:
    run_demo(track=not args.no_mlflow, progress=not args.quiet, quick=args.quick)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="repro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("list", help="papers, variants, presets and datasets").set_defaults(fn=cmd_list)

    p = sub.add_parser("train", help="train and evaluate one variant of a paper")
    p.add_argument("paper")
    p.add_argument("variant")
    p.add_argument("--seed", type=int, default=0)
    _add_run_options(p)
    _add_finish_diverged(p)
    p.set_defaults(fn=cmd_train)

    p = sub.add_parser("reproduce", help="every runnable row of a paper's table, then the table")
    p.add_argument("paper")
    p.add_argument("--variants", nargs="*", help="only these variants")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    _add_run_options(p)
    _add_finish_diverged(p)
    p.set_defaults(fn=cmd_reproduce)

    p = sub.add_parser("sweep", help="variants x seeds of a paper on a process pool, Ray or Slurm; "
                                     "skips finished jobs, retries failures once")
    p.add_argument("paper", help="a paper, or `all`: every paper's runnable rows with --preset")
    p.add_argument("--variants", nargs="*", help="only these variants (default: every runnable one)")
    p.add_argument("--seeds", nargs="*", type=int, default=[0])
    _add_run_options(p)
    add_sweep_arguments(p)
    p.set_defaults(fn=cmd_sweep)

    p = sub.add_parser("benchmark", help="every sentence-level latent-variable method under one "
                                         "protocol, 3 seeds each; then results/benchmark_<dataset>.md")
    p.add_argument("dataset", choices=("ptb", "synthetic"))
    p.add_argument("--scale", default="cpu", choices=("smoke", "cpu", "paper"),
                   help="the protocol's size (repro/benchmark.py): smoke (tests), cpu, paper (GPU)")
    p.add_argument("--methods", nargs="*", metavar="PAPER/VARIANT", help="only these methods, run in this order")
    p.add_argument("--seeds", nargs="*", type=int, default=None, help="default: 0 1 2")
    _add_run_options(p, preset=False)   # the protocol names the preset
    add_sweep_arguments(p)
    p.set_defaults(fn=cmd_benchmark)

    p = sub.add_parser("lease", help="a GPU lease's carry folder: pack the unfinished jobs' "
                                     "checkpoints and the records, or import one that came back")
    p.add_argument("action", choices=("pack", "import", "sizes"),
                   help="sizes: each row's run folder against the carry limit (no DIR)")
    p.add_argument("dir", nargs="?", help="the carry folder (pack: new, empty or an earlier carry folder)")
    p.add_argument("--paper", default="all", help="pack: one paper's jobs (default: all)")
    p.add_argument("--preset", default="paper",
                   help="pack: the jobs' preset, or with --benchmark the protocol's scale (default: paper)")
    p.add_argument("--benchmark", choices=("ptb", "synthetic"), default=None,
                   help="pack: the jobs of `repro benchmark DATASET` instead of the papers'")
    p.add_argument("--seeds", nargs="*", type=int, default=[0], help="pack: the jobs' seeds")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--records-dir", default="results/records")
    p.set_defaults(fn=cmd_lease)

    p = sub.add_parser("runs", help="which runs under a runs folder are running, finished, "
                                    "interrupted or diverged (and how to resume them), with their last epoch")
    p.add_argument("--runs-dir", default="runs", help="default: runs/")
    p.set_defaults(fn=cmd_runs)

    p = sub.add_parser("eval", help="re-evaluate a run's best checkpoint, e.g. with more samples")
    p.add_argument("run_dir", help="a run folder, e.g. runs/bowman2016/vae-anneal-worddrop/cpu/seed0, "
                                   "or runs:/<run_id> to fetch its checkpoint from the tracking store")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="e.g. --set eval.iw_samples=1000 --set eval.mi_pool=batch")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--record", action="store_true",
                   help="replace the run's record's test metrics with these (after a fix to the "
                        "evaluation), keeping its training; the record lists the re-scoring "
                        "commit and the metrics it replaced. Its MLflow run shows the new test "
                        "metrics (the old stay in their history) and a repro.rescored_by tag")
    p.add_argument("--records-dir", default="results/records", help="with --record: where records go")
    p.set_defaults(fn=cmd_eval)

    p = sub.add_parser("sample", help="print samples, reconstructions and homotopies of a run")
    p.add_argument("run_dir")
    p.add_argument("--num", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=cmd_sample)

    p = sub.add_parser("table", help="render results/<paper>.md from the run records")
    p.add_argument("--check", action="store_true", help="exit 1 if a committed table is stale")
    p.add_argument("--records-dir", default="results/records")
    _add_results_dir(p)
    p.set_defaults(fn=cmd_table)

    p = sub.add_parser("ui", help="serve the MLflow UI (loopback only unless --host says otherwise)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5000)
    p.set_defaults(fn=cmd_ui)

    p = sub.add_parser("data", help="fetch, verify or describe a dataset")
    p.add_argument("action", choices=("fetch", "verify", "info"))
    p.add_argument("name")
    p.set_defaults(fn=cmd_data)

    p = sub.add_parser("demo", help="posterior collapse and two remedies on the synthetic corpus")
    p.add_argument("--no-mlflow", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--quick", action="store_true", help="a seconds-long version (used by the tests)")
    p.set_defaults(fn=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # a known failure gets its message, not a traceback
        if isinstance(err, TableError):
            print(f"error: {err}", file=sys.stderr)
            return 2
        if isinstance(err, (DataError, TrainError)):
            print(f"error: {err}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())

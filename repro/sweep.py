"""`repro sweep`: every (variant, seed) job of a paper, run by an engine researchers already use.

We do not schedule anything ourselves. A job is one `repro.train.train` call; an engine only
decides where it runs:
- `local`: a process pool on this machine (the default, and what the tests use);
- `ray`: one Ray task per job on a running cluster (`--address`), or on a one-node Ray that
  the sweep starts when no address is given;
- `slurm`: one Slurm array task per job through submitit (its `local`/`debug` executors run the
  same code path without a cluster).

Every worker is handed the driver's absolute runs/records folders and MLflow tracking URI, so all
jobs write their checkpoints, records and MLflow runs to the same places. A job counts as
finished when its run record exists and the config stored in it hashes like the job's config, so
a sweep run again skips what is done and reruns what changed; there is no other state file.
A job that fails is retried once, after the first round; what still fails is reported with its
error, and the sweep exits non-zero.

With a deadline (`--deadline SECONDS`, for a lent GPU) the jobs start in `repro.sweep.PRIORITY`
order, none starts after the deadline, each trainer checkpoints its current update and stops
once it passes (`repro.train.DeadlineReached`), and a local worker still busy
`DEADLINE_GRACE_S` later (in an evaluation, which cannot be checkpointed part-way) is stopped
by SIGTERM; stopped jobs are neither failed nor retried, and `--resume` continues them.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import statistics
import sys
import time
import traceback
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import cached_property, partial
from pathlib import Path
from typing import Callable, Iterable, Iterator

from repro.checkpoints import (DeadlineReached, TrainError, load_checkpoint, raise_keyboard_interrupt,
                               run_dir_for)
from repro.config import ConfigError, RunConfig, apply_overrides, config_hash, resumes_as
from repro.data.sources import DataError
from repro.records import read_record, record_path, record_path_for, same_experiment
from repro.registry import get_paper, load_papers, resolve
from repro.runs import run_status
from repro.tracking import tracking_uri
from repro.train import time_updates, train



ENGINES_EXTRA = "pip install 'repro[sweep]'"
# After the deadline, how long a local worker may go on (finishing an evaluation) before it is
# stopped by SIGTERM; its trainer has already checkpointed the last update before the deadline.
DEADLINE_GRACE_S = 30.0

# Which jobs a lease starts first. The paper numbers our code can be checked against most
# firmly come first: Kingma et al. 2016's IAF on MNIST (Table 2's best row, dynamic and
# statically binarised) and Chen et al. 2017's VLAE on MNIST, whose reported numbers are
# tagged verified against the papers and released code (papers/*/reported.py). Then every
# PTB row (the text-VAE numbers this suite is about), then the rest; within a tier, the order
# the jobs were listed in, lower seeds first.
PRIORITY: tuple[tuple[str, str], ...] = (
    ("kingma2016_iaf", "mnist-iaf-d8-w1920"),
    ("kingma2016_iaf", "static-iaf-d8-w1920"),
    ("chen2017_vlae", "mnist-vlae"),
    ("chen2017_vlae", "static-vlae"),
)
PRIORITY_DATASET = "ptb"


class EngineUnavailable(RuntimeError):
    """The engine asked for cannot run here (its package is missing); never a silent fallback."""


@dataclass(frozen=True)
class Job:
    """One training run of a sweep: a paper's variant at a preset and seed, with `--set` overrides."""

    paper: str
    variant: str
    preset: str
    seed: int
    overrides: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return f"{self.paper}/{self.variant}/{self.preset}/seed{self.seed}"

    @property
    def key(self) -> str:
        """What makes a job done: its name and the hash of its fully resolved config."""
        return f"{self.name}@{self.config_hash}"

    @cached_property
    def config_hash(self) -> str:
        return config_hash(self.config().to_dict())

    def config(self, threads: int | None = None) -> RunConfig:
        """The resolved config; `threads` fills `train.threads` unless an override sets it."""
        _, cfg = resolve(self.paper, self.variant, self.preset)
        cfg.seed = self.seed
        cfg = apply_overrides(cfg, list(self.overrides))
        if threads and not self.sets("train.threads"):
            cfg.train.threads = threads
        return cfg

    def sets(self, key: str) -> bool:
        return any(o.split("=", 1)[0].strip() == key for o in self.overrides)


def make_jobs(paper: str, variants: Iterable[str] | None, seeds: Iterable[int], preset: str,
              overrides: Iterable[str] = ()) -> list[Job]:
    """Variants (default: every runnable one) × seeds, each once, in the order given."""
    known = get_paper(paper)
    variants = variants or [name for name, var in known.variants.items()
                            if var.runnable and var.in_paper_table]
    for variant in variants:
        known.variant(variant)   # an unknown name is a ConfigError before anything runs
    grid = [(variant, seed) for variant in variants for seed in seeds]
    return [Job(paper, variant, preset, seed, tuple(overrides)) for variant, seed in dict.fromkeys(grid)]


def jobs_for(paper: str, variants: Iterable[str] | None, seeds: Iterable[int], preset: str,
             overrides: Iterable[str] = ()) -> list:
    """`repro sweep`'s jobs: those of one paper (`sweep.make_jobs`), or with `paper` "all" every
    paper's runnable table rows that have `preset` (the demo aside)."""
    if paper != "all":
        return make_jobs(paper, variants, seeds, preset, overrides)
    if variants:
        raise ConfigError("--variants names one paper's variants: give the paper, not `all`")
    seeds = list(seeds)
    jobs = []
    for name, known in load_papers().items():
        rows = [v for v, var in known.variants.items()
                if var.runnable and var.in_paper_table and preset in var.presets]
        if rows and known.reproduces_a_paper:
            jobs += make_jobs(name, rows, seeds, preset, overrides)
    return jobs


def prerequisites(job: Job) -> list[Job]:
    """The jobs whose finished runs `job` starts from (`Variant.requires`: Yang's LM for "+init",
    Li's autoencoder): the same paper, preset, seed and overrides."""
    return [Job(job.paper, name, job.preset, job.seed, job.overrides)
            for name in get_paper(job.paper).variant(job.variant).requires]


def with_prerequisites(jobs: list[Job]) -> list[Job]:
    """`jobs`, each after the jobs it requires, added where the list lacks them (a finished one
    is skipped like any other)."""
    ordered: dict[Job, None] = {}
    for job in jobs:
        ordered.update(dict.fromkeys([*prerequisites(job), job]))
    return list(ordered)


def waves(jobs: list[Job]) -> list[list[Job]]:
    """`jobs` (prerequisites first, as `with_prerequisites` orders them) in waves run one after
    another, each wave after the waves of the jobs it requires: a parallel engine never starts a
    job before the runs it reads have finished."""
    wave_of: dict[Job, int] = {}
    for job in jobs:
        wave_of[job] = 1 + max((wave_of[p] for p in prerequisites(job) if p in wave_of), default=-1)
    return [[job for job in jobs if wave_of[job] == k] for k in range(max(wave_of.values(), default=-1) + 1)]


def priority(job) -> tuple:
    """Sort key of `PRIORITY`'s order: tier, place in `PRIORITY`, seed."""
    if (job.paper, job.variant) in PRIORITY:
        return (0, PRIORITY.index((job.paper, job.variant)), job.seed)
    return (1 if job.config().data.dataset == PRIORITY_DATASET else 2, 0, job.seed)


def by_priority(jobs: list) -> list:
    """`jobs` in `PRIORITY` order (a stable sort: the listed order within a tier)."""
    return sorted(jobs, key=priority)


def is_finished(job: Job, records_dir: Path) -> bool:
    """The job's record exists and was written by the same config (`records.same_experiment`:
    whatever the thread count, keys added since at their defaults, evaluation settings of
    metrics the record lacks ignored, remedies after a divergence undone)."""
    config = job.config().to_dict()
    # Overrides of settings a model is not scored on (MI pooling for an RNNLM) leave its record
    # under the preset's name, so that name is looked at as well.
    paths = {record_path_for(records_dir, config),
             record_path(records_dir, job.paper, job.variant, job.preset, job.seed)}
    return any(record is not None and same_experiment(record, config)
               for record in map(read_record, paths))


def job_state(job: Job, records_dir: Path, runs_dir: Path, resume: bool) -> str:
    """What a sweep would do with `job`: skip it, continue or restart its checkpoint, or run it."""
    if is_finished(job, records_dir):
        return "finished: skipped"
    run_dir = run_dir_for(job.config(), runs_dir)
    status = run_status(run_dir) if run_dir.is_dir() else None
    if status and status.status == "running":
        return "running in another process: this sweep's attempt fails as busy"
    if status and status.status == "diverged":
        return (f"diverged after epoch {status.epoch}/{status.epochs}: this sweep's attempt "
                "replays it; resume it by hand with a remedy (`repro runs` says how)")
    same = status is not None and status.status in ("interrupted", "finished") and \
        _checkpoint_continues(job, run_dir)
    if status and status.status == "interrupted":
        where = f"checkpoint at epoch {status.epoch}/{status.epochs}"
        if not same:
            return f"{where} from another config: {'--resume stops with an error' if resume else 'restarts'}"
        return f"{where}: {'resumes' if resume else 'restarts from scratch (add --resume to continue it)'}"
    if status and status.status == "finished" and same:
        # Only eval.* differ (or keys added since): the training is done, the scoring is not.
        return ("trained, but its record was scored under another evaluation: "
                + ("--resume re-evaluates its checkpoint" if resume
                   else "trains again (--resume would only re-evaluate its checkpoint)"))
    if record_path_for(records_dir, job.config().to_dict()).is_file():
        return "to run again: its record was written by another config"
    return "to run"


def _checkpoint_continues(job: Job, run_dir: Path) -> bool:
    """Whether the run folder's last checkpoint is the training `job` asks for (`resumes_as`)."""
    try:
        stored = json.loads(load_checkpoint(run_dir / "last.pt", "cpu")["config"])
    except (TrainError, KeyError, ValueError):
        return False
    return resumes_as(stored, job.config(), get_paper(job.paper).variant(job.variant).model_config)


def earlier_wall_time(job: Job, records_dir: Path) -> tuple[float, int] | None:
    """Mean wall time of the records of `job`'s variant and preset at any seed, and how many."""
    seed0 = record_path(records_dir, job.paper, job.variant, job.preset, 0)
    times = _wall_times(seed0.parent.glob(seed0.name.replace("__seed0.json", "__seed*.json")))
    return (sum(times) / len(times), len(times)) if times else None


def _wall_times(record_paths) -> list[float]:
    times = []
    for path in record_paths:
        try:
            times.append(float(json.loads(path.read_text())["wall_time_s"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return times


def plan_lines(jobs: list[Job], records_dir: Path, runs_dir: Path, resume: bool,
               timed_updates: int = 0) -> Iterator[str]:
    """`--plan`: each job's state and what earlier records of its row took, run nothing. The
    times are the records' own, at whatever threads and load they ran under: a guide, no promise.
    With `timed_updates` > 0, a job to run whose row has no record is priced by timing that many
    of its updates here (`repro.train.time_updates`). Lines come as they are known: timing
    paper-scale rows takes minutes."""
    states = [job_state(job, records_dir, runs_dir, resume) for job in jobs]
    todo = sum(not state.startswith(("finished", "running")) for state in states)
    yield f"plan: {len(jobs)} jobs, {len(jobs) - todo} finished or running elsewhere, {todo} to run"
    known, known_s, timed, timed_s = 0, 0.0, 0, 0.0
    unknown: list[Job] = []
    timings: dict = {}    # config hash (seed 0) -> UpdateTiming, or why it failed
    for job, state in zip(jobs, states):
        to_run = not state.startswith(("finished", "running"))
        earlier = earlier_wall_time(job, records_dir)
        cost = f"{earlier[0] / 60:.0f} min per run in {earlier[1]} record(s)" if earlier else "no record yet"
        if to_run and earlier:
            known, known_s = known + 1, known_s + earlier[0]
        elif to_run and timed_updates > 0:
            cost, seconds = _timed_cost(job, timed_updates, timings)
            timed, timed_s = timed + (seconds is not None), timed_s + (seconds or 0.0)
        elif to_run:
            unknown.append(job)
        yield f"  {job.name}: {state} [{cost}]"
    yield (f"plan: the {known} to run with earlier records took {known_s / 3600:.1f} h of "
           f"wall time between them; "
           + (f"{timed} at most {timed_s / 3600:.1f} h of training by {timed_updates} update(s) "
              "each timed here (validation and the test evaluation not included); "
              f"{todo - known - timed} could not be timed here" if timed_updates > 0
              else f"{len(unknown)} have none to go by"))
    yield from _guess_for_unknown(unknown, records_dir)


def _timed_cost(job: Job, updates: int, timings: dict) -> tuple[str, float | None]:
    """A job's training time from `updates` of its updates timed here, as the plan's bracket
    text and seconds (None where it cannot be timed here); `timings` keeps each config's timing,
    so the seeds of a row time once."""
    cfg = job.config()
    key = config_hash({**cfg.to_dict(), "seed": 0})
    if key not in timings:
        try:
            timings[key] = time_updates(cfg, updates)
        except (ConfigError, DataError, TrainError) as err:    # e.g. a split not staged here
            timings[key] = err
    timing = timings[key]
    if isinstance(timing, Exception):
        return f"not timed: {timing}", None
    epoch_min = timing.seconds_per_update * timing.updates_per_epoch / 60
    return (f"at most {timing.training_s / 3600:.1f} h of training, {timing.planned_updates} "
            f"updates ({epoch_min:.1f} min per epoch of {timing.updates_per_epoch}): "
            f"{timing.seconds_per_update:.3g} s per update at {timing.precision}, "
            f"{timing.threads} thread(s)"), timing.training_s


def _guess_for_unknown(unknown: list[Job], records_dir: Path) -> list[str]:
    """A rough total for the jobs whose rows have no record to time them: each at the median
    wall time of its own paper's records at its preset. Another paper's runs say nothing about
    this one's cost (a Bowman paper run is half an hour, a Xie paper run days), so a paper
    without any is named as having none."""
    by_row = Counter((job.paper, job.preset) for job in unknown)
    lines = []
    for (paper, preset), count in sorted(by_row.items()):
        times = _wall_times((Path(records_dir) / paper).rglob(f"*__{preset}__seed*.json"))
        if times:
            median = statistics.median(times)
            lines.append(f"plan: at the median of {len(times)} {paper} record(s) at {preset} "
                         f"({median / 60:.0f} min), those {count} would take about "
                         f"{count * median / 3600:.1f} h more")
        else:
            lines.append(f"plan: no {paper} record at {preset} to price its {count} job(s) by; "
                         "`--plan --time-updates N` times N of each one's updates here")
    return lines


@dataclass
class Outcome:
    """What one attempt at a job gave: a record, or the error that stopped it."""

    job: Job
    ok: bool
    error: str = ""
    record_path: str = ""
    wall_s: float = 0.0
    where: str = ""          # host and pid, plus the Ray node/task or submitit job that ran it
    attempts: int = 1
    stopped: bool = False    # by the deadline: checkpointed, continued by `--resume`


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs besides its job, passed explicitly: a worker on another node or
    started by Ray in another folder must not fall back on its own cwd or environment."""

    engine: str
    runs_dir: str                     # absolute
    records_dir: str                  # absolute
    track: bool
    resume: bool
    threads: int | None               # torch threads per job, unless the overrides set them
    env: dict = field(default_factory=dict)   # MLFLOW_TRACKING_URI, REPRO_DATA_DIR, ...
    experiment: str | None = None     # MLflow experiment (default: the trainer's repro-<dataset>)
    deadline: float | None = None     # `time.time()` at which every job stops (`--deadline`)


def run_job(job: Job, settings: WorkerSettings) -> Outcome:
    """Train one job in this process (a pool worker, a Ray task or a Slurm task). Errors are
    returned, not raised, so every engine reports them the same way."""
    started = time.time()
    os.environ.update(settings.env)
    if settings.deadline is not None and started >= settings.deadline:
        return Outcome(job, ok=False, stopped=True, error="not started: the deadline had passed",
                       where=worker_identity(settings.engine))
    try:
        result = train(job.config(settings.threads), runs_root=Path(settings.runs_dir),
                       records_root=Path(settings.records_dir), resume=settings.resume,
                       track=settings.track, progress=False, experiment=settings.experiment,
                       deadline=settings.deadline)
        return Outcome(job, ok=True, record_path=str(result.record_path),
                       wall_s=time.time() - started, where=worker_identity(settings.engine))
    except DeadlineReached as err:
        return Outcome(job, ok=False, stopped=True, error=str(err), wall_s=time.time() - started,
                       where=worker_identity(settings.engine))
    except Exception as err:  # the driver retries and reports it; the worker itself goes on
        return Outcome(job, ok=False, error=error_text(err), wall_s=time.time() - started,
                       where=worker_identity(settings.engine))


def error_text(err: BaseException) -> str:
    """`Type: message (file:line)` of where it was raised: enough to find it in a summary."""
    frames = traceback.extract_tb(err.__traceback__)
    at = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    message = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {message}{at}"


def worker_identity(engine: str) -> str:
    """Which process ran a job, in the engine's own terms (the tests check a job really ran there)."""
    where = f"{socket.gethostname()} pid {os.getpid()}"
    if engine == "ray":
        import ray
        context = ray.get_runtime_context()
        where += f", ray node {context.get_node_id()} task {context.get_task_id()}"
    elif engine == "slurm":
        import submitit
        environment = submitit.JobEnvironment()
        where += f", submitit {environment.cluster} job {environment.job_id}"
    return where


# ---- engines: (jobs) -> outcomes as they complete --------------------------------------------

@dataclass(frozen=True)
class EngineOptions:
    parallel: int | None = None       # local: pool size; slurm: array parallelism / local batch
    cpus_per_job: int = 1             # ray and slurm: CPUs reserved per job (its torch threads)
    gpus_per_job: float = 0           # ray and slurm
    address: str | None = None        # ray: a running cluster; None starts a one-node Ray
    partition: str | None = None      # slurm
    time_min: int = 240               # slurm: the job's time limit
    cluster: str = "slurm"            # submitit executor: slurm | local | debug
    log_dir: str = "runs/submitit"    # submitit: its pickles and per-job logs


def import_engine(module: str, engine: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise EngineUnavailable(f"--engine {engine} needs the {module} package, which is not "
                                f"installed: {ENGINES_EXTRA}") from err


def local_threads(parallel: int, cores: int | None = None) -> int:
    """Torch threads per pool worker so that workers × threads never exceeds the cores."""
    return max(1, (cores or os.cpu_count() or 1) // max(parallel, 1))


def run_in_pool_worker(job: Job, settings: WorkerSettings) -> Outcome:
    """`run_job` in a local pool worker, which a stop (SIGTERM, Ctrl-C) ends once the trainer has
    checkpointed and closed its run: the pool would otherwise hand the worker its next queued
    job, and a stopped sweep would go on training."""
    try:
        return run_job(job, settings)
    except KeyboardInterrupt:
        os._exit(128 + signal.SIGTERM)


def run_local(jobs: list[Job], settings: WorkerSettings, options: EngineOptions) -> Iterator[Outcome]:
    # spawn, not fork: the driver has imported torch, and a forked OpenMP pool can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=options.parallel, mp_context=context)
    hard_stop = None if settings.deadline is None else settings.deadline + DEADLINE_GRACE_S
    futures: dict = {}
    try:
        futures = {pool.submit(run_in_pool_worker, job, settings): job for job in jobs}
        for future in as_completed(futures, timeout=None if hard_stop is None
                                   else max(hard_stop - time.time(), 0.0)):
            yield collect(future.result, futures.pop(future))
    except TimeoutError:
        # Past the grace: what still runs is evaluating (training stopped at the deadline with a
        # checkpoint); SIGTERM makes its trainer close its run, and `--resume` scores it later.
        processes = list(pool._processes.values())
        for process in processes:
            process.terminate()
        for process in processes:   # so that a `repro lease pack` right after finds them closed
            process.join(timeout=DEADLINE_GRACE_S)
        pool.shutdown(wait=False, cancel_futures=True)
        for job in futures.values():
            yield Outcome(job, ok=False, stopped=True,
                          error=f"stopped by SIGTERM {DEADLINE_GRACE_S:.0f} s after the deadline; "
                                "--resume continues from its last checkpoint")
        return
    except BaseException:
        # A stopped sweep stops its jobs: orphaned workers would go on training. Each worker's
        # trainer turns SIGTERM into a KILLED run that keeps its last checkpoint (`--resume`).
        for process in list(pool._processes.values()):   # no public handle; shutdown drops it
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def run_ray(jobs: list[Job], settings: WorkerSettings, options: EngineOptions) -> Iterator[Outcome]:
    ray = import_engine("ray", "ray")
    connected_here = not ray.is_initialized()   # a caller already connected (a notebook) keeps it
    if connected_here:
        # A new one-node Ray needs no dashboard; a running cluster keeps its own settings.
        try:
            ray.init(address=options.address or None,
                     **({} if options.address else {"include_dashboard": False}))
        except ConnectionError as err:
            raise EngineUnavailable(f"cannot reach the Ray cluster at {options.address}: {err}") from err
    # Ray's own retries would hide a failure from the sweep's single, reported retry.
    task = ray.remote(num_cpus=options.cpus_per_job, num_gpus=options.gpus_per_job,
                      max_retries=0)(run_job)
    try:
        pending = {task.remote(job, settings): job for job in jobs}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            yield collect(partial(ray.get, ref), pending.pop(ref))
    finally:
        if connected_here:
            ray.shutdown()


def run_submitit(jobs: list[Job], settings: WorkerSettings, options: EngineOptions) -> Iterator[Outcome]:
    submitit = import_engine("submitit", "slurm")
    try:
        executor = submitit.AutoExecutor(folder=options.log_dir, cluster=options.cluster)
    except RuntimeError as err:   # no sbatch/srun here: say so, never run elsewhere instead
        raise EngineUnavailable(f"submitit cannot use {options.cluster}: {err} (on a machine without "
                                "Slurm, --submitit-cluster local runs the same jobs here)") from err
    executor.update_parameters(name="repro-sweep", timeout_min=options.time_min,
                               cpus_per_task=options.cpus_per_job,
                               gpus_per_node=int(options.gpus_per_job) or None,
                               slurm_partition=options.partition,
                               slurm_array_parallelism=options.parallel or len(jobs))
    # Slurm queues a whole array and runs `parallel` at a time; submitit's local executor starts
    # everything it is given at once, so it gets `parallel` jobs per wave.
    wave = len(jobs) if options.cluster == "slurm" else (options.parallel or 1)
    for start in range(0, len(jobs), wave):
        batch = jobs[start:start + wave]
        handles = executor.map_array(run_job, batch, [settings] * len(batch))
        for handle, job in zip(handles, batch):
            yield collect(handle.result, job)


ENGINES = {"local": run_local, "ray": run_ray, "slurm": run_submitit}
ENGINE_MODULES = {"ray": "ray", "slurm": "submitit"}


def collect(get_result: Callable[[], Outcome], job: Job) -> Outcome:
    """The worker's outcome, or a failed one when the worker itself was lost (killed, OOM, node down)."""
    try:
        return get_result()
    except Exception as err:
        return Outcome(job, ok=False, error=f"worker lost: {error_text(err)}")


# ---- the sweep: plan, run, retry once, report ------------------------------------------------

@dataclass
class SweepSummary:
    skipped: list[Job] = field(default_factory=list)        # finished by an earlier sweep
    finished: list[Outcome] = field(default_factory=list)   # trained now (retried ones included)
    retried: list[Outcome] = field(default_factory=list)    # final outcome of jobs that needed a retry
    failed: list[Outcome] = field(default_factory=list)     # failed twice
    stopped: list[Outcome] = field(default_factory=list)    # by the deadline: `--resume` goes on

    @property
    def ok(self) -> bool:
        return not self.failed

    def lines(self) -> list[str]:
        out = [f"sweep: {len(self.finished)} finished, {len(self.retried)} retried, "
               f"{len(self.skipped)} skipped as already finished, {len(self.failed)} failed"
               + (f", {len(self.stopped)} stopped at the deadline" if self.stopped else "")]
        out += [f"  skipped   {job.key}" for job in self.skipped]
        out += [f"  stopped   {o.job.key}: {o.error}" for o in self.stopped]
        out += [f"  retried   {o.job.key}: {'finished' if o.ok else 'failed again'}" for o in self.retried]
        out += [f"  FAILED    {o.job.key}: {o.error}" for o in self.failed]
        return out


Engine = Callable[[list[Job]], Iterable[Outcome]]


def run_sweep(jobs: list[Job], records_dir: Path, engine: Engine,
              log: Callable[[str], None] = print) -> SweepSummary:
    """Skip finished jobs, run the rest on `engine` (in `waves`: a job after those it requires),
    retry each failure once, and summarise."""
    summary = SweepSummary(skipped=[job for job in jobs if is_finished(job, records_dir)])
    todo = [job for job in jobs if job not in summary.skipped]
    log(f"sweep: {len(jobs)} jobs, {len(summary.skipped)} already finished, {len(todo)} to run")
    for wave in waves(todo):
        failed, stopped = {o.job for o in summary.failed}, {o.job for o in summary.stopped}
        ready = []
        for job in wave:
            blocking = [p for p in prerequisites(job) if p in failed or p in stopped]
            if not blocking:
                ready.append(job)
                continue
            # A prerequisite stopped at the deadline: this one waits for the next `--resume`.
            waits = not any(p in failed for p in blocking)
            outcome = Outcome(job, ok=False, stopped=waits, error=(
                f"not started: it starts from {', '.join(p.name for p in blocking)}, which "
                + ("stopped at the deadline" if waits else "failed")))
            (summary.stopped if waits else summary.failed).append(outcome)
        _run_wave(ready, records_dir, engine, log, summary)
    for line in summary.lines():
        log(line)
    return summary


def _run_wave(jobs: list[Job], records_dir: Path, engine: Engine, log: Callable[[str], None],
              summary: SweepSummary) -> None:
    """Run `jobs` on `engine`, retry each failure once, and add the outcomes to `summary`."""
    first_failures = []
    for outcome in _attempt(jobs, engine, log):
        if outcome.stopped:
            summary.stopped.append(outcome)
            continue
        (summary.finished if outcome.ok else first_failures).append(outcome)
    # Another sweep over the same records (a second driver, a colleague) may have finished a job
    # that failed here because its run folder was busy: that one is done, not retried.
    finished_elsewhere = [o.job for o in first_failures if is_finished(o.job, records_dir)]
    summary.skipped += finished_elsewhere
    # A diverged run replays the same batches and random numbers: a retry diverges again.
    diverged = [o for o in first_failures if o.error.startswith("TrainingDiverged")]
    summary.failed += diverged
    retry = [o.job for o in first_failures if o.job not in finished_elsewhere and o not in diverged]
    if retry:
        log(f"retrying {len(retry)} failed job(s) once")
    for outcome in _attempt(retry, engine, log):
        outcome.attempts = 2
        if outcome.stopped:
            summary.stopped.append(outcome)
            continue
        summary.retried.append(outcome)
        (summary.finished if outcome.ok else summary.failed).append(outcome)


def _attempt(jobs: list[Job], engine: Engine, log: Callable[[str], None]) -> Iterator[Outcome]:
    if not jobs:
        return
    for outcome in engine(jobs):
        status = (f"done in {outcome.wall_s:.1f} s" if outcome.ok else
                  f"stopped: {outcome.error}" if outcome.stopped else f"failed: {outcome.error}")
        log(f"  {outcome.job.key} {status} [{outcome.where or 'no worker'}]")
        yield outcome


# ---- from the command line -------------------------------------------------------------------

def add_arguments(parser) -> None:
    """`repro sweep` options beyond paper, variants, seeds and the run options `train` has."""
    parser.add_argument("--plan", action="store_true",
                        help="print what would run (finished, to resume, to run) and what earlier "
                             "records of each row took; run nothing")
    parser.add_argument("--time-updates", type=int, default=0, metavar="N",
                        help="with --plan: price each job whose row has no record by timing N of "
                             "its updates here (training only; validation and testing not counted)")
    parser.add_argument("--engine", choices=sorted(ENGINES), default="local",
                        help="local: a process pool here; ray: Ray tasks; slurm: submitit")
    parser.add_argument("--jobs", type=int, default=None,
                        help="jobs at once (local: default the number of cores; slurm: array "
                             "parallelism; ray: the cluster's free resources decide)")
    parser.add_argument("--cpus-per-job", type=int, default=1, help="ray/slurm: CPUs (torch threads) per job")
    parser.add_argument("--gpus-per-job", type=float, default=0, help="ray/slurm: GPUs per job")
    parser.add_argument("--address", default=None,
                        help="ray: a running cluster, e.g. auto or HEAD:6379 (default: start one here)")
    parser.add_argument("--partition", default=None, help="slurm: partition")
    parser.add_argument("--time-min", type=int, default=240, help="slurm: time limit per job, minutes")
    parser.add_argument("--submitit-cluster", choices=("slurm", "local", "debug"), default="slurm",
                        help="slurm engine: submitit's executor (local/debug run without a cluster)")
    parser.add_argument("--deadline", type=float, default=None, metavar="SECONDS",
                        help="stop every job this many seconds after the command starts, each "
                             "with a checkpoint of its last update (--resume continues it); jobs "
                             "start in repro.sweep.PRIORITY order (README: GPU leases)")
    parser.add_argument("--submitit-dir", default=None,
                        help="slurm: submitit's logs and pickles (default: <runs-dir>/submitit; "
                             "must be on a filesystem the nodes share)")


def run_from_args(args) -> int:
    """`repro sweep`: 0 when every job is finished, 1 when some failed after their retry, 2 when
    the engine cannot run here."""
    return run_jobs(args, lambda: jobs_for(args.paper, args.variants, args.seeds, args.preset,
                                           args.overrides),
                    Path(args.records_dir), title=f"sweep {args.paper} ({args.preset})")


def run_jobs(args, plan: Callable[[], list[Job]], records_dir: Path, experiment: str | None = None,
             title: str = "sweep") -> int:
    """Run the jobs `plan` gives, and the jobs they require (`with_prerequisites`), on the engine
    `args` names (the `repro sweep` options), records to `records_dir`, MLflow runs to
    `experiment`; `repro sweep` and `repro benchmark` share it."""
    deadline = getattr(args, "deadline", None)
    if deadline is not None:
        # Measured from the command's start: planning and engine start-up count against a lease.
        args.deadline_at = time.time() + deadline

    def jobs_to_run() -> list[Job]:
        jobs = by_priority(plan()) if deadline is not None else plan()
        return with_prerequisites(jobs)

    if args.plan:
        for line in plan_lines(jobs_to_run(), Path(records_dir).resolve(),
                               Path(args.runs_dir).resolve(), args.resume,
                               getattr(args, "time_updates", 0)):
            print(line, flush=True)
        return 0
    previous_handler = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        if args.engine in ENGINE_MODULES:   # before planning: a missing engine is not a fallback
            import_engine(ENGINE_MODULES[args.engine], args.engine)
        return _run_jobs(args, jobs_to_run(), records_dir, experiment, title)
    except EngineUnavailable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous_handler)


def _run_jobs(args, jobs: list[Job], records_dir: Path, experiment: str | None, title: str) -> int:
    runs_dir, records_dir = Path(args.runs_dir).resolve(), Path(records_dir).resolve()
    options, threads = engine_options(args, runs_dir)
    settings = WorkerSettings(engine=args.engine, runs_dir=str(runs_dir), records_dir=str(records_dir),
                              track=not args.no_mlflow, resume=args.resume, threads=threads,
                              env=shared_env(), experiment=experiment,
                              deadline=getattr(args, "deadline_at", None))
    user_threads = bool(jobs) and jobs[0].sets("train.threads")
    print(f"{title} on {args.engine}: "
          + ("train.threads as --set" if user_threads else f"{threads} torch thread(s) per job")
          + (f", {options.parallel} at a time" if options.parallel else ""))
    summary = run_sweep(jobs, records_dir, partial(ENGINES[args.engine], settings=settings,
                                                   options=options))
    if summary.finished:
        print("aggregate over seeds with `repro table`")
    if summary.stopped:
        print(f"{len(summary.stopped)} job(s) stopped at the deadline: the same command with "
              "--resume continues them (`repro lease pack` carries their checkpoints)")
    return 0 if summary.ok else 1


def engine_options(args, runs_dir: Path) -> tuple[EngineOptions, int]:
    """The engine's options, and the torch threads each job gets."""
    parallel = args.jobs
    threads = args.cpus_per_job
    if args.engine == "local":
        parallel = args.jobs or os.cpu_count() or 1
        threads = local_threads(parallel)
    log_dir = args.submitit_dir or str(runs_dir / "submitit")
    return EngineOptions(parallel=parallel, cpus_per_job=threads, gpus_per_job=args.gpus_per_job,
                         address=args.address, partition=args.partition, time_min=args.time_min,
                         cluster=args.submitit_cluster, log_dir=str(Path(log_dir).resolve())), threads


def shared_env() -> dict:
    """The driver's tracking URI and data folders, made absolute, for every worker to use."""
    env = {"MLFLOW_TRACKING_URI": absolute_tracking_uri(tracking_uri())}
    for name in ("REPRO_DATA_DIR", "REPRO_CACHE_DIR"):
        if os.environ.get(name):
            env[name] = str(Path(os.environ[name]).resolve())
    return env


def absolute_tracking_uri(uri: str) -> str:
    """`sqlite:///mlflow.db` (relative to the cwd) or a bare folder as an absolute URI: a worker
    started in another folder (on a cluster node, by a raylet or sbatch) would open another store."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + str(Path(uri[len(prefix):]).resolve())
    if "://" not in uri and not uri.startswith("file:"):
        return str(Path(uri).resolve())
    return uri

"""A lent GPU for a few minutes: which jobs first, what to carry there and back, and how many
leases the paper-scale tables would take.

A lease (README, "GPU leases") is one machine for about 15 minutes, at most 10 minutes a command,
wiped afterwards. `repro sweep all --preset paper --deadline SECONDS` runs the jobs in
`PRIORITY` order and stops each at the deadline with a checkpoint of its last update
(`repro.sweep`); `pack` puts what the next lease needs into one folder (the unfinished jobs'
checkpoints, at most `CARRY_LIMIT_BYTES`, the finished records, and the finished runs that an
unstarted job starts from); `import_folder` takes such a folder back, refusing every item whose
config is not today's preset.

The folder: `manifest.json` (one entry per item: kind, path, config hash, SHA-256 of each
file), `records/<paper>/<record>.json`, and `runs/<paper>/<variant>/<preset>/seed<k>/` with
`last.pt`, `best.pt` and, where the run has one, `best_optimizer.pt`.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from statistics import mean

from repro.checkpoints import TrainError, load_checkpoint, run_dir_for
from repro.config import ConfigError, config_hash
from repro.data import load_corpus
from repro.records import (_scored, config_before_recoveries, load_records, preset_differences,
                           read_record, record_path, record_path_for, same_experiment,
                           write_json_atomic, write_record)
from repro.registry import get_paper, load_papers, resolve
from repro.runs import lock_held, run_status
from repro.sweep import Job, _checkpoint_continues, by_priority, is_finished



# What one carry folder may hold: the lease's carry list takes 64 MiB in all, and the rest of
# the tree's ignored paths (none needed) would share it.
CARRY_LIMIT_BYTES = 60 * 2**20
RUN_FILES = ("last.pt", "best.pt", "best_optimizer.pt")
# A finished run another job starts from (Yang's "+ init" rows read an LM's best.pt).
REQUIRED_RUN_FILES = ("record.json", "best.pt", "vocab.json", "config.json")

# The estimate in results/README.md. The one lease so far (benchmarks/README.md, "On a lent GPU
# (one H200), 2026-12-04") ran 16 jobs at once for 540 s of a 562 s command; the four
# benchmark-ptb-cpu LSTM-VAE rows finished there in 310-317 s each, against 938-1230 s for their
# cpu records at one thread on the 2-core CPU machine (results/records/benchmark_ptb/bowman2016/,
# chen2017_vlae/ptb-gauss): 938 / 317 = 3.0 is the lowest ratio, taken as the per-job speed-up.
GPU_SPEEDUP_PER_JOB = 3.0
GPU_JOBS_AT_ONCE = 16
# Of a lease's 15 minutes, one command of at most 10 minutes trains; the rest starts the
# machine, runs the CUDA tests and packs. The one lease gave its sweep 540 s.
LEASE_TRAIN_S = 540.0


# ---- the carry folder ---------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 // 10 else f"{size / 1024:.0f} KiB"


@dataclass
class _Item:
    kind: str             # checkpoint | record | required_run
    name: str             # paper/variant/preset/seed<k>
    source: Path          # a file (record) or a run folder
    dest: str             # relative to the carry folder
    files: tuple[str, ...] = ()

    def size(self) -> int:
        if self.kind == "record":
            return self.source.stat().st_size
        return sum((self.source / f).stat().st_size for f in self.files)


def _checkpoint_of(run_dir: Path) -> tuple[dict, dict]:
    """(config, state) stored in a run folder's `last.pt`."""
    ckpt = load_checkpoint(run_dir / "last.pt", "cpu")
    return json.loads(ckpt["config"]), json.loads(ckpt["state"])


def pack(dest: Path, jobs: list, runs_dir: Path, records_dir: Path,
         limit_bytes: int = CARRY_LIMIT_BYTES, subdir: str = ".") -> list[str]:
    """Fill the carry folder `dest` for `jobs` (in `PRIORITY` order): each finished job's
    record; each unfinished job's checkpoint, while the folder stays within `limit_bytes` (one
    that would pass it is skipped, and says so); the finished runs an unstarted job starts from.
    Returns one line per item and per skip. `dest` must be new, empty or an earlier carry
    folder (which is replaced). `subdir`: where `records_dir` lies under the records folder an
    import writes to (`benchmark_<dataset>` for a benchmark's jobs)."""
    dest, runs_dir, records_dir = Path(dest), Path(runs_dir), Path(records_dir)
    if dest.exists() and any(dest.iterdir()) and not (dest / "manifest.json").is_file():
        raise ConfigError(f"{dest} holds files that are not a carry folder: pack into a new folder")
    items, lines = [], []
    for job in by_priority(jobs):
        config = job.config().to_dict()
        if is_finished(job, records_dir):
            paths = [record_path_for(records_dir, config),
                     record_path(records_dir, job.paper, job.variant, job.preset, job.seed)]
            path = next(p for p in paths if (r := read_record(p)) is not None and same_experiment(r, config))
            items.append(_Item("record", job.name, path, str(Path("records") / path.relative_to(records_dir))))
            continue
        run_dir = run_dir_for(job.config(), runs_dir)
        if (run_dir / "last.pt").is_file():
            status = run_status(run_dir)
            if status.status != "interrupted" or not _checkpoint_continues(job, run_dir):
                why = status.status if status.status != "interrupted" else "written by another config"
                lines.append(f"skipped {job.name}: its checkpoint is {why}, not one a lease resumes")
                continue
            files = tuple(f for f in RUN_FILES if (run_dir / f).is_file())
            items.append(_Item("checkpoint", job.name, run_dir,
                               str(Path("runs") / run_dir.relative_to(runs_dir)), files))
            continue
        for needed in get_paper(job.paper).variant(job.variant).requires:
            lm_dir = run_dir.parent.parent.parent / needed / job.preset / f"seed{job.seed}"
            if all((lm_dir / f).is_file() for f in REQUIRED_RUN_FILES):
                items.append(_Item("required_run", f"{job.paper}/{needed}/{job.preset}/seed{job.seed}",
                                   lm_dir, str(Path("runs") / lm_dir.relative_to(runs_dir)),
                                   REQUIRED_RUN_FILES))
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    manifest, total, seen = [], 0, set()
    for item in items:
        if item.dest in seen:     # a required run that two jobs share
            continue
        size = item.size()
        if item.kind != "record" and total + size > limit_bytes:
            lines.append(f"skipped {item.kind} {item.name}: {_mib(size)} would take the folder past "
                         f"{_mib(limit_bytes)} (it has {_mib(total)}); it stays in {item.source}")
            continue
        seen.add(item.dest)
        total += size
        manifest.append(_copy_in(item, dest))
        lines.append(f"packed {item.kind} {item.name} ({_mib(size)})"
                     + (f": update {manifest[-1]['step']}, epoch {manifest[-1]['epoch']}"
                        if item.kind == "checkpoint" else ""))
    write_json_atomic({"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "records_subdir": subdir, "items": manifest}, dest / "manifest.json")
    lines.append(f"carry folder {dest}: {len(manifest)} item(s), {_mib(total)} of {_mib(limit_bytes)}")
    return lines


def _copy_in(item: _Item, dest: Path) -> dict:
    target = dest / item.dest
    target.parent.mkdir(parents=True, exist_ok=True)
    entry = {"kind": item.kind, "name": item.name, "path": item.dest}
    if item.kind == "record":
        shutil.copyfile(item.source, target)
        record = json.loads(target.read_text())
        return {**entry, "config_hash": config_hash(record["config"]), "sha256": {"": _sha256(target)}}
    target.mkdir(parents=True, exist_ok=True)
    for name in item.files:
        shutil.copyfile(item.source / name, target / name)
    entry["sha256"] = {name: _sha256(target / name) for name in item.files}
    if item.kind == "checkpoint":
        config, state = _checkpoint_of(target)
        entry.update(config_hash=config_hash(config), step=state["step"], epoch=state["epoch"])
    else:
        entry["config_hash"] = config_hash(json.loads((target / "record.json").read_text())["config"])
    return entry


def import_folder(src: Path, runs_dir: Path, records_dir: Path) -> tuple[list[str], int]:
    """Take a carry folder back: records into `records_dir` (`records.write_record`, so they are
    named by the config-hash rules), checkpoints and required runs into `runs_dir`. Refused,
    one line each: a file whose SHA-256 is not the manifest's, an item whose config is not
    today's preset (a preset changed since it ran), a run folder in use here, a record where a
    different one of the same run already is. A checkpoint no further along than the one here
    is skipped. Returns the lines and how many items were refused."""
    src = Path(src)
    try:
        carried = json.loads((src / "manifest.json").read_text())
        manifest, subdir = carried["items"], carried.get("records_subdir", ".")
    except (OSError, ValueError, KeyError) as err:
        raise ConfigError(f"{src} is not a carry folder ({type(err).__name__} reading its "
                          "manifest.json): `repro lease pack` makes one") from err
    lines, refused = [], 0
    for entry in manifest:
        problem = _damaged(src, entry)
        if problem is None:
            handler = {"record": _import_record, "checkpoint": _import_checkpoint,
                       "required_run": _import_required_run}[entry["kind"]]
            problem, done = handler(src / entry["path"], entry, Path(runs_dir),
                                    Path(records_dir) / subdir)
            if problem is None:
                lines.append(f"imported {entry['kind']} {entry['name']}: {done}")
                continue
            if problem.startswith("skip:"):
                lines.append(f"skipped {entry['kind']} {entry['name']}: {problem[5:].strip()}")
                continue
        refused += 1
        lines.append(f"REFUSED {entry['kind']} {entry['name']}: {problem}")
    lines.append(f"import: {len(manifest) - refused} of {len(manifest)} item(s) taken or already here, "
                 f"{refused} refused")
    return lines, refused


def _damaged(src: Path, entry: dict) -> str | None:
    for name, digest in entry["sha256"].items():
        path = src / entry["path"] / name if name else src / entry["path"]
        if not path.is_file():
            return f"{path} is missing"
        if _sha256(path) != digest:
            return f"{path} is not the file that was packed (SHA-256 differs): carry it again"
    return None


def _preset_mismatch(config: dict, what: str) -> str | None:
    """Why `config` (a stored run's) is not today's preset at its seed, or None if it is."""
    differences = preset_differences(config)
    if differences is None:
        return f"its {what} names a preset or keys that no longer exist"
    if differences:
        today = Job(config["paper"], config["variant"], config["preset"], config["seed"]).config_hash
        return (f"its {what} (config hash {config_hash(config)}) is not today's preset "
                f"(config hash {today}): {', '.join(sorted(differences))} differ")
    return None


def _import_record(path: Path, entry: dict, runs_dir: Path, records_dir: Path):
    record = read_record(path)
    if record is None or config_hash(record["config"]) != entry["config_hash"]:
        return "the record does not hold the config the manifest names", None
    started = config_before_recoveries(record["config"], record.get("train", {}))
    mismatch = _preset_mismatch(started, "record's config")
    if mismatch:
        return mismatch, None
    target = record_path_for(records_dir, started, _scored(record))
    here = read_record(target)
    if here == record:
        return "skip: the same record is already here", None
    if here is not None:
        return (f"{target} already holds a different record of this run; move it away to take "
                "this one"), None
    return None, str(write_record(record, records_dir))


def _import_checkpoint(folder: Path, entry: dict, runs_dir: Path, records_dir: Path):
    try:
        config, state = _checkpoint_of(folder)
    except (TrainError, KeyError, ValueError) as err:
        return f"its last.pt cannot be read ({str(err).splitlines()[0]})", None
    if config_hash(config) != entry["config_hash"]:
        return "its last.pt holds another config than the manifest names", None
    mismatch = _preset_mismatch(config, "checkpoint's config")
    if mismatch:
        return mismatch, None
    job = Job(config["paper"], config["variant"], config["preset"], config["seed"])
    if is_finished(job, records_dir):
        return "skip: the job is finished here", None
    target = run_dir_for(job.config(), runs_dir)
    if lock_held(target / ".lock"):
        return f"{target} is in use by a training here", None
    if (target / "last.pt").is_file():
        try:
            _, ours = _checkpoint_of(target)
        except (TrainError, KeyError, ValueError):
            ours = {"step": -1}
        if ours["step"] >= state["step"]:
            return f"skip: {target} is already at update {ours['step']} (this one: {state['step']})", None
    _replace_run_folder(folder, target, entry["sha256"])
    return None, f"{target} at update {state['step']}, epoch {state['epoch']}; --resume continues it"


def _import_required_run(folder: Path, entry: dict, runs_dir: Path, records_dir: Path):
    record = json.loads((folder / "record.json").read_text())
    mismatch = _preset_mismatch(record["config"], "run's config")
    if mismatch:
        return mismatch, None
    target = Path(runs_dir) / Path(entry["path"]).relative_to("runs")
    if (target / "record.json").is_file() and (target / "best.pt").is_file():
        return "skip: a finished run is already there", None
    _replace_run_folder(folder, target, entry["sha256"])
    return None, str(target)


def _replace_run_folder(folder: Path, target: Path, files: dict) -> None:
    """The carried files in place of what `target` held: an older checkpoint's other files
    (best.pt, a diverged.json, a record.json) belong to another point of the run."""
    target.mkdir(parents=True, exist_ok=True)
    for old in target.iterdir():
        if old.is_file() and old.name != ".lock":
            old.unlink()
    for name in files:
        part = target / f"{name}.part"
        shutil.copyfile(folder / name, part)
        os.replace(part, target / name)


def run_folder_bytes(paper: str, variant: str, preset: str = "paper") -> int:
    """About what a run folder of the row at `preset` carries (`RUN_FILES`), from its model
    built here on the CPU: `last.pt` holds the parameters and buffers, the optimiser's
    per-parameter slots (Adam's and Adamax's two, SGD's momentum) and the Polyak average;
    `best.pt` the parameters and buffers again, `best_optimizer.pt` the slots where the preset
    restores them. Pickling adds a few kB."""
    var, cfg = resolve(paper, variant, preset)
    model = var.build(cfg, load_corpus(cfg.data))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    slots = 2 if cfg.optim.name in ("adam", "adamax") else int(cfg.optim.momentum > 0)
    polyak = int(cfg.optim.polyak > 0)
    best_optimizer = slots if cfg.optim.plateau_restores_best else 0
    return params * (1 + slots + polyak) + buffers + (params + buffers) + params * best_optimizer


def size_lines(jobs: list, limit_bytes: int = CARRY_LIMIT_BYTES) -> list[str]:
    """`repro lease sizes`: each job's run folder against the carry limit, in `PRIORITY` order.
    A row whose folder does not fit cannot go on from one lease to the next: it must finish
    within one."""
    lines, fits = [], 0
    for job in by_priority(jobs):
        try:
            size = run_folder_bytes(job.paper, job.variant, job.preset)
        except Exception as err:   # data missing here, a row not runnable: say so, go on
            lines.append(f"  {job.name}: cannot be built here ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})")
            continue
        fits += size <= limit_bytes
        lines.append(f"  {job.name}: about {_mib(size)}"
                     + ("" if size <= limit_bytes else " -- past the carry limit: only a lease that "
                        "finishes it helps"))
    return [f"run folders against the carry limit of {_mib(limit_bytes)}: {fits} of "
            f"{len(jobs)} fit"] + lines


# ---- how many leases the paper-scale tables would take ----------------------------------------

@dataclass(frozen=True)
class RowEstimate:
    paper: str
    variant: str
    cpu_wall_s: float      # mean over the row's cpu records
    work_ratio: float      # training examples at `paper` over those of the cpu records
    gpu_s: float


def estimate_rows(records_root: Path, preset: str = "paper") -> tuple[list[RowEstimate], list[str]]:
    """Each runnable table row with a `preset` preset and cpu records on the same dataset, at
    its cpu wall time x the ratio of training examples (epochs x the training set, from the
    records' updates) / `GPU_SPEEDUP_PER_JOB`; and the rows that have none to go by."""
    rows, unknown = [], []
    for name, known in sorted(load_papers().items()):
        if not known.reproduces_a_paper:
            continue
        by_variant: dict[str, list[dict]] = {}
        if (Path(records_root) / name).is_dir():
            for record in load_records(records_root, name):
                if record.get("preset") == "cpu":
                    by_variant.setdefault(record["variant"], []).append(record)
        for variant, var in known.variants.items():
            if not (var.runnable and var.in_paper_table and preset in var.presets):
                continue
            target = resolve(name, variant, preset)[1]
            cpu = [r for r in by_variant.get(variant, []) if _priceable(r, target.data.dataset)]
            if not cpu:
                unknown.append(f"{name}/{variant}")
                continue
            ratio = mean(_work_ratio(r, target) for r in cpu)
            wall = mean(r["wall_time_s"] for r in cpu)
            rows.append(RowEstimate(name, variant, wall, ratio, wall * ratio / GPU_SPEEDUP_PER_JOB))
    return rows, unknown


def _priceable(record: dict, dataset: str) -> bool:
    """A cpu record on `dataset` that says how long it took and how many updates it made."""
    try:
        return (record["config"]["data"]["dataset"] == dataset and record["train"]["steps"] > 0
                and record["train"]["epochs"] > 0 and float(record["wall_time_s"]) > 0)
    except (KeyError, TypeError, ValueError):
        return False


def _work_ratio(record: dict, target) -> float:
    """Training examples the `target` config would see over those the cpu record saw. The full
    training set is read off the record (updates per epoch x batch / train_fraction); `target`
    runs all its epochs (early stopping may end it sooner) up to its `max_steps`."""
    data, train = record["config"]["data"], record["train"]
    per_epoch_full = train["steps"] / train["epochs"] * data["batch_size"] / data["train_fraction"]
    examples = target.train.epochs * per_epoch_full * target.data.train_fraction
    if target.train.max_steps:
        examples = min(examples, target.train.max_steps * target.data.batch_size)
    return examples / (train["steps"] * data["batch_size"])


def estimate_lines(records_root: Path) -> list[str]:
    """`results/README.md`'s section: the paper-scale rows' GPU time and the leases it takes."""
    rows, unknown = estimate_rows(records_root)
    if not rows:
        return []
    per_paper: dict[str, list[RowEstimate]] = {}
    for row in rows:
        per_paper.setdefault(row.paper, []).append(row)
    capacity = GPU_JOBS_AT_ONCE * LEASE_TRAIN_S
    total = sum(r.gpu_s for r in rows)
    longest = max(rows, key=lambda r: r.gpu_s)
    leases = max(math.ceil(total / capacity), math.ceil(longest.gpu_s / LEASE_TRAIN_S))
    lines = ["", "## Paper scale on lent GPUs: an estimate", "",
             f"Seed 0 of every runnable table row at `paper`, priced from its `cpu` records by "
             f"`repro.lease.estimate_rows`: the cpu wall time, times the ratio of training "
             f"examples (all the paper's epochs over the training set: early stopping may end a "
             f"row sooner), divided by a per-job GPU speed-up of {GPU_SPEEDUP_PER_JOB:g} "
             f"(`GPU_SPEEDUP_PER_JOB`: the one lease so far, {GPU_JOBS_AT_ONCE} jobs at once on an "
             f"H200, against the cpu records of the same rows; the source is in `repro/lease.py`). A lease trains "
             f"{GPU_JOBS_AT_ONCE} jobs for {LEASE_TRAIN_S:.0f} s (`LEASE_TRAIN_S`), and a row "
             "longer than that continues from its checkpoint on the next one -- where its run "
             f"folder fits the {_mib(CARRY_LIMIT_BYTES)} a lease can be given (`repro lease "
             "sizes` lists the rows that do; the others must finish within one lease). Errors pull both ways: "
             "every epoch the paper allows is priced, though early stopping may end a row "
             "sooner (too high); the paper's wider models, which cost more per example but also "
             "use a GPU better than the small rows the speed-up was measured on, and its "
             "evaluation of the whole test split are not (too low either way). Read it as an "
             "order of magnitude, not a schedule.", "",
             "| paper | rows priced | GPU hours (one job at a time) | longest row | leases for that row |",
             "|---|---|---|---|---|"]
    for paper, paper_rows in per_paper.items():
        top = max(paper_rows, key=lambda r: r.gpu_s)
        lines.append(f"| {paper} | {len(paper_rows)} | {sum(r.gpu_s for r in paper_rows) / 3600:.1f} | "
                     f"`{top.variant}` ({top.gpu_s / 3600:.1f} h) | {math.ceil(top.gpu_s / LEASE_TRAIN_S)} |")
    lines += ["", f"In all: {len(rows)} rows, {total / 3600:.0f} GPU hours one job at a time, so at "
              f"least {leases} leases ({math.ceil(total / capacity)} by total work at "
              f"{GPU_JOBS_AT_ONCE} at once, {math.ceil(longest.gpu_s / LEASE_TRAIN_S)} for the "
              f"longest row, `{longest.paper}/{longest.variant}`, in sequence)."
              + (f" Not priced (no cpu record on the paper's dataset): {len(unknown)} rows, "
                 + ", ".join(f"`{u}`" for u in unknown[:8])
                 + (f" and {len(unknown) - 8} more" if len(unknown) > 8 else "") + "."
                 if unknown else "")]
    return lines

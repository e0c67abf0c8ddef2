"""Run records: one JSON per finished run under `results/records/<paper>/`, the only source of
every number in `results/`."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from repro.config import ConfigError, RunConfig, check_name, config_hash, experiment_identity
from repro.registry import get_paper, resolve




RECORDS_DIR = Path("results") / "records"
# `<paper>/superseded/`: records that a run of the same row under today's config replaced (its
# preset or code changed since they ran), kept so the tables can say how the row moved.
SUPERSEDED = "superseded"


def git_commit() -> str:
    """The code this process runs: HEAD's hash when it imported the trainer, with `+dirty` when
    the tree then had uncommitted changes to tracked files outside `results/`. Read once: a long
    `reproduce` keeps running the code it started with, whatever is committed while it runs."""
    return _PROCESS_COMMIT


def _read_commit(root: Path = Path(__file__).resolve().parent.parent) -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                              text=True, check=True).stdout.strip()
        # results/ is output: a sweep rewrites the tables after each job, and the next job
        # runs the same code, so those changes must not mark its record dirty.
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":(exclude)results"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        # A copy of the tree without .git (a lent GPU, a cluster node given an export) is told
        # its commit by whoever copied it; otherwise nothing can vouch for the code.
        return os.environ.get("REPRO_COMMIT", "unknown")


_PROCESS_COMMIT = _read_commit()


def _short(commit: str) -> str:
    return commit[:12] + ("+dirty" if commit.endswith("+dirty") else "")


def describe_commits(records: list[dict]) -> str:
    """The commits that wrote `records`, shortened, with the `+dirty` ones explained, then the
    commits that re-scored some of them (`rescore_record`), then how many went on from a
    divergence with changed settings, and how many stopped at one (`repro.train`)."""
    commits = sorted({_short(r["commit"]) for r in records})
    rescored = sorted({_short(e["commit"]) for r in records for e in r.get("rescored", [])})
    text = ", ".join(commits) or "—"
    if rescored:
        n = sum(1 for r in records if r.get("rescored"))
        text += f"; {n} record(s) re-scored (test metrics only) at {', '.join(rescored)}"
    if any(c.endswith("+dirty") for c in commits + rescored):
        text += " (+dirty: the run started from a tree with uncommitted changes)"
    recovered = [r for r in records if r.get("train", {}).get("recoveries")]
    if recovered:
        text += (f"; {len(recovered)} record(s) resumed after a divergence with changed settings "
                 "(their `train.recoveries`)")
    stopped = [r for r in records if r.get("train", {}).get("stopped_by_divergence")]
    if stopped:
        text += (f"; {len(stopped)} record(s) of runs stopped early by a divergence, scored at "
                 "their best checkpoint (their `train.stopped_by_divergence`)")
    return text


def mi_scoring(record: dict) -> str | None:
    """How the record's MI was scored -- estimator, pool and pool size, e.g. `paired, dataset
    pool of 3761`, and for batch pools whether they were He et al.'s same-length pools -- or
    None if it has none. Records from before `mi_estimator` was recorded
    used He et al.'s analytic entropy term (`repro.evaluate`, `mi`)."""
    ev = record.get("eval", {})
    if "mi" not in ev.get("metrics", ()):
        return None
    text = (f"{ev.get('mi_estimator', 'analytic')}, {ev.get('mi_pool', '?')} pool of "
            f"{ev.get('mi_pool_size', '?')}")
    if ev.get("mi_pool") == "batch" and "mi_pool_def" not in ev:
        text += " (whole evaluation batches, lengths mixed: before same-length pools)"
    elif ev.get("mi_pool") == "batch":
        text += " (same-length)"
    return text


def rescore_record(run_dir: Path, metrics: dict, eval_options: dict, eval_config: dict,
                   wall_time_s: float, device: torch.device, root: Path = RECORDS_DIR) -> Path:
    """Replace the test metrics of the run's record (in `run_dir` and under `root`) with a new
    evaluation of the same checkpoint, keeping its training. `commit` stays the training's; the
    re-scoring is appended to `rescored` with its commit, hardware, wall time and the metrics
    and options it replaced, so nothing of the old record is lost."""
    record = json.loads((Path(run_dir) / "record.json").read_text())
    before = record_path_for(root, config_before_recoveries(record["config"], record.get("train", {})),
                             _scored(record))
    record.setdefault("rescored", []).append({
        "commit": git_commit(), "hardware": hardware(device), "wall_time_s": round(wall_time_s, 1),
        "replaced_metrics": record["metrics"], "replaced_eval": record["eval"]})
    record["metrics"], record["eval"] = metrics, eval_options
    record["config"]["eval"] = eval_config
    path = write_record(record, root)
    if path != before:    # scored otherwise than its preset: no longer the preset's record
        before.unlink(missing_ok=True)
    write_json_atomic(record, Path(run_dir) / "record.json")
    return path


def hardware(device: torch.device) -> dict:
    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def versions() -> dict:
    """Versions of what the run used; MLflow's is read from package metadata, so a run with
    tracking off (`--no-mlflow`) on a machine without MLflow still writes its record."""
    try:
        mlflow_version = importlib.metadata.version("mlflow")
    except importlib.metadata.PackageNotFoundError:
        mlflow_version = None
    return {"python": sys.version.split()[0], "torch": torch.__version__, "mlflow": mlflow_version}


# Evaluation settings that only shape metrics a record may not have: a model without a latent
# (an RNNLM) is scored by its NLL alone, so how MI and AU would have been scored cannot change it.
MOOT_UNLESS_SCORED = {"mi_au_whole_split": {"mi", "au"}, "mi_pool": {"mi"}, "au_threshold": {"au"}}
# A `.part` file older than this in a records folder is a write that a kill interrupted.
STALE_PART_S = 600


def run_record(cfg: RunConfig, *, metrics: dict, eval_options: dict, commit: str, device,
               data_sha256: str, training: dict) -> dict:
    """The record of one finished run: what was tested and how, the config, the code and
    machine, and the training's course. `training` holds the trainer's `state` (steps, epochs,
    best validation, history, recoveries, commits), its `precision` and `threads` choices, which
    weights were tested (`final_checkpoint`) and the `wall_time_s` over every start."""
    state = training["state"]
    return {
        "paper": cfg.paper, "variant": cfg.variant, "preset": cfg.preset, "seed": cfg.seed,
        "dataset": cfg.data.dataset, "substitute_for": cfg.data.substitute_for,
        "metrics": metrics, "eval": eval_options, "config": cfg.to_dict(),
        "commit": commit, "versions": versions(), "hardware": hardware(device),
        "wall_time_s": round(training["wall_time_s"], 1), "data_sha256": data_sha256,
        "mlflow_run_id": state["mlflow_run_id"],
        "train": {"steps": state["step"], "epochs": state["epoch"], "best_val": state["best_val"],
                  "best_epoch": state["best_epoch"], "final_checkpoint": training["final_checkpoint"],
                  "recoveries": state.get("recoveries", []), "commits": state["commits"],
                  "precision": training["precision"], "threads": training["threads"],
                  **({"stopped_by_divergence": state["stopped_by_divergence"]}
                     if "stopped_by_divergence" in state else {})},
        "history": state["history"],
    }


def config_before_recoveries(config: dict, train: dict) -> dict:
    """A record's config with each remedy of its `train.recoveries` undone, latest first: the
    experiment it started as."""
    config = json.loads(json.dumps(config))
    for recovery in reversed(train.get("recoveries", [])):
        for key, (before, _) in recovery["changed"].items():
            section, name = key.split(".")
            config[section][name] = before
    return config


def _normalised(config: dict) -> dict | None:
    """`config` through today's dataclasses (keys added since at their defaults, which by the
    config's rule keep the earlier behaviour); None if it no longer loads (a key removed)."""
    try:
        model_config = get_paper(config["paper"]).variant(config["variant"]).model_config
        return RunConfig.from_dict(config, model_config).to_dict()
    except (ConfigError, KeyError, TypeError, ValueError):
        return None


def _flat(node: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in node.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _comparable(config: dict, scored: set[str]) -> dict:
    config = experiment_identity(config)
    evaluation = config.get("eval", {})
    for key, metrics in MOOT_UNLESS_SCORED.items():
        if not scored & metrics:
            evaluation.pop(key, None)
    if evaluation.get("max_examples") is None:   # the whole split is scored either way
        evaluation.pop("mi_au_whole_split", None)
    return _flat(config)


def _scored(record: dict | None) -> set[str]:
    """The shared metrics a record was scored on (unsaid: all, so every setting counts)."""
    return set((record or {}).get("eval", {}).get("metrics", ("mi", "au")))


def preset_differences(config: dict, scored: set[str] = frozenset({"mi", "au"})) -> dict | None:
    """{"section.key": value} where the resolved `config` differs from its preset's config today
    (at the same seed; thread count and moot evaluation settings aside); {} for a preset run;
    None when the preset no longer exists or the config no longer loads."""
    ours = _normalised(config)
    try:
        _, preset = resolve(config["paper"], config["variant"], config["preset"])
    except (ConfigError, KeyError):
        return None
    if ours is None:
        return None
    preset.seed = config["seed"]
    a, b = _comparable(ours, scored), _comparable(preset.to_dict(), scored)
    return {key: a.get(key) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)}


def record_differences(record: dict) -> dict | None:
    """`preset_differences` of the experiment a record started as."""
    return preset_differences(config_before_recoveries(record["config"], record.get("train", {})),
                              _scored(record))


def same_experiment(record: dict, config: dict) -> bool:
    """Whether `record` was written by the experiment `config` asks for (see `preset_differences`
    for what does not count)."""
    stored = _normalised(config_before_recoveries(record["config"], record.get("train", {})))
    if stored is None:
        return False
    scored = _scored(record)
    return _comparable(stored, scored) == _comparable(config, scored)


def record_path(root: Path, paper: str, variant: str, preset: str, seed: int,
                config_hash: str | None = None) -> Path:
    """`<paper>/<variant>__<preset>__seed<k>.json` for a preset run; a run whose config differs
    from its preset's gets `__<config hash>` too, so it never takes a preset run's place."""
    for kind, name in (("paper", paper), ("variant", variant), ("preset", preset)):
        check_name(kind, name)
    suffix = f"__{config_hash}" if config_hash else ""
    return Path(root) / paper / f"{variant}__{preset}__seed{int(seed)}{suffix}.json"


def record_path_for(root: Path, config: dict, scored: set[str] = frozenset({"mi", "au"})) -> Path:
    """Where the record of the resolved `config` goes (`record_path`)."""
    differs = preset_differences(config, scored) != {}
    return record_path(root, config["paper"], config["variant"], config["preset"], config["seed"],
                       config_hash(config) if differs else None)


def write_json_atomic(obj, path: Path) -> Path:
    """Write JSON to a temporary file in the same folder, then rename: a reader sees the old file
    or the new, never half of one. The file gets the mode the umask gives new files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(obj, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_parts(folder: Path, older_than_s: float = STALE_PART_S) -> list[Path]:
    """Delete the `.part` files a kill left in a records folder (those older than a write takes)."""
    now, removed = time.time(), []
    for part in Path(folder).glob("*.part"):
        try:
            if now - part.stat().st_mtime > older_than_s:
                part.unlink()
                removed.append(part)
        except FileNotFoundError:
            continue
    return removed


def write_record(record: dict, root: Path = RECORDS_DIR) -> Path:
    started = config_before_recoveries(record["config"], record.get("train", {}))
    path = record_path_for(root, started, _scored(record))
    remove_stale_parts(path.parent)
    supersede(path, started)
    return write_json_atomic(record, path)


def supersede(path: Path, config: dict) -> Path | None:
    """Move the record at `path` into `superseded/` beside it, under its config hash, when it is
    of another experiment than `config`, the run about to take its place (a preset or the code
    changed since it ran); a record of the same experiment is simply replaced. Returns where it
    went."""
    old = read_record(path)
    if old is None or same_experiment(old, config):
        return None
    started = config_before_recoveries(old["config"], old.get("train", {}))
    dest = path.parent / SUPERSEDED / f"{path.stem}__{config_hash(started)}.json"
    dest.parent.mkdir(exist_ok=True)
    os.replace(path, dest)
    return dest


def read_record(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def load_records(root: Path = RECORDS_DIR, paper: str | None = None,
                 superseded: bool = False) -> list[dict]:
    """The records under `root` (one paper's with `paper`); with `superseded`, instead, the
    earlier records that runs of today's configs replaced (`supersede`)."""
    base = Path(root) / paper if paper else Path(root)
    return [json.loads(p.read_text()) for p in sorted(base.rglob("*.json"))
            if (SUPERSEDED in p.relative_to(base).parts[:-1]) == superseded]


def moved_rows(records: list[dict], superseded: list[dict], metrics: tuple[str, ...],
               name=lambda r: r["variant"]) -> list[str]:
    """Markdown: each row re-run under today's config, its superseded record's `metrics` against
    the record that replaced it (same row, preset and seed). Empty without such a pair."""
    current = {(name(r), r["preset"], r["seed"]): r for r in records if record_differences(r) == {}}
    rows = []
    for old in sorted(superseded, key=lambda r: (name(r), r["preset"], r["seed"], r["commit"])):
        new = current.get((name(old), old["preset"], old["seed"]))
        for metric in metrics if new else ():
            before, after = old["metrics"].get(metric), new["metrics"].get(metric)
            if isinstance(before, (int, float)) and isinstance(after, (int, float)):
                # Scores in [0, 1] (BLEU, distinct-n) need a third decimal to show a change.
                digits = 3 if max(abs(before), abs(after)) < 1 else 2
                rows.append(f"| {name(old)} | {old['preset']} | {old['seed']} | {metric} | {before:.{digits}f} "
                            f"| {after:.{digits}f} | {after - before:+.{digits}f} | {_short(old['commit'])} -> "
                            f"{_short(new['commit'])} |")
    if not rows:
        return []
    return ["## Rows re-run after their preset or code changed", "",
            "Each row's earlier record (kept in `superseded/`, trained by code or a preset since "
            "changed: see CHANGELOG.md) against the run of today's config that replaced it.", "",
            "| row | preset | seed | metric | before | after | change | commits |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]

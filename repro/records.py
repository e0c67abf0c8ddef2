"""Run records: one JSON per finished run under `results/records/<paper>/`, the only source of
every number in `results/`."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

RECORDS_DIR = Path("results") / "records"


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
    pool of 3761` -- or None if it has none. Records from before `mi_estimator` was recorded
    used He et al.'s analytic entropy term (`repro.evaluate`, `mi`)."""
    ev = record.get("eval", {})
    if "mi" not in ev.get("metrics", ()):
        return None
    return (f"{ev.get('mi_estimator', 'analytic')}, {ev.get('mi_pool', '?')} pool of "
            f"{ev.get('mi_pool_size', '?')}")


def rescore_record(run_dir: Path, metrics: dict, eval_options: dict, eval_config: dict,
                   wall_time_s: float, device: torch.device, root: Path = RECORDS_DIR) -> Path:
    """Replace the test metrics of the run's record (in `run_dir` and under `root`) with a new
    evaluation of the same checkpoint, keeping its training. `commit` stays the training's; the
    re-scoring is appended to `rescored` with its commit, hardware, wall time and the metrics
    and options it replaced, so nothing of the old record is lost."""
    record = json.loads((Path(run_dir) / "record.json").read_text())
    record.setdefault("rescored", []).append({
        "commit": git_commit(), "hardware": hardware(device), "wall_time_s": round(wall_time_s, 1),
        "replaced_metrics": record["metrics"], "replaced_eval": record["eval"]})
    record["metrics"], record["eval"] = metrics, eval_options
    record["config"]["eval"] = eval_config
    (Path(run_dir) / "record.json").write_text(json.dumps(record, indent=2, sort_keys=True))
    return write_record(record, root)


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
    from importlib.metadata import PackageNotFoundError, version
    try:
        mlflow_version = version("mlflow")
    except PackageNotFoundError:
        mlflow_version = None
    return {"python": sys.version.split()[0], "torch": torch.__version__, "mlflow": mlflow_version}


def record_path(root: Path, paper: str, variant: str, preset: str, seed: int) -> Path:
    return Path(root) / paper / f"{variant}__{preset}__seed{seed}.json"


def write_record(record: dict, root: Path = RECORDS_DIR) -> Path:
    path = record_path(root, record["paper"], record["variant"], record["preset"], record["seed"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".part")
    with os.fdopen(fd, "w") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
    return path


def load_records(root: Path = RECORDS_DIR, paper: str | None = None) -> list[dict]:
    base = Path(root) / paper if paper else Path(root)
    return [json.loads(p.read_text()) for p in sorted(base.rglob("*.json"))]

"""`repro runs`: what the training runs under a runs folder are doing -- running, finished,
interrupted and waiting for `--resume`, or diverged and waiting for a remedy -- with each one's
epoch and last validation metrics, read from its checkpoint. For sweeps and background runs
started with `--quiet`."""
from __future__ import annotations

import fcntl
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.checkpoints import DIVERGED_MARKER, TrainError, load_checkpoint, pick_device
from repro.config import RunConfig, apply_overrides
from repro.data import load_corpus
from repro.registry import get_paper


SHOWN = ("val/nll", "val/elbo", "val/kl", "val/au")   # what the trainer validates each epoch


@dataclass(frozen=True)
class RunStatus:
    run_dir: Path
    name: str                 # paper/variant/preset/seed<n>
    status: str               # running | finished | interrupted | diverged | unreadable: <why>
    epoch: int
    epochs: int
    best_epoch: int | None
    last: dict                # the last finished epoch's validation metrics
    wall_time_s: float
    resume: str               # the command that continues an interrupted or diverged run


def load_trained(run_dir: Path, overrides=(), device=None):
    """A trained run's config (the one it trained with, plus `overrides`), its corpus, and its
    model holding the best-validation parameters (`best.pt`) on `device` (default: the config's
    `train.device`). Anything that makes this impossible -- no such folder, an unreadable config
    or checkpoint, overrides that build a model of another shape -- is a `TrainError` whose one
    line says what to do."""

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TrainError(f"{run_dir} is not a folder: give a run folder such as "
                         "runs/<paper>/<variant>/<preset>/seed<k> (`repro runs` lists them)")
    tested = _tested_weights_path(run_dir)
    if tested is None:
        raise TrainError(f"{run_dir} has no best.pt: it is not a trained run folder, or its "
                         "first epoch has not finished (`repro runs` lists what there is)")
    try:
        raw = json.loads((run_dir / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise TrainError(f"{run_dir / 'config.json'} cannot be read ({type(err).__name__}); "
                         "the run folder is incomplete: train the run again") from err
    variant = get_paper(raw["paper"]).variant(raw["variant"])
    cfg = apply_overrides(RunConfig.from_dict(raw, variant.model_config), list(overrides))
    device = pick_device(cfg.train.device) if device is None else torch.device(device)
    corpus = load_corpus(cfg.data)
    model = variant.build(cfg, corpus).to(device)
    try:
        model.load_state_dict(_tested_weights(tested, device))
    except (RuntimeError, TypeError, AttributeError, KeyError) as err:
        if isinstance(err, TrainError):
            raise
        changed = [o for o in overrides if not o.strip().startswith("eval.")]
        raise TrainError(f"{tested} does not fit the model its config builds"
                         + (f" with {changed}: a trained model's shape cannot be overridden, "
                            "only eval.* options" if changed else
                            "; the run folder mixes files of different runs")) from err
    return cfg, corpus, model


def _tested_weights_path(run_dir: Path) -> Path | None:
    """The checkpoint a finished run was tested with: `best.pt`, or `last.pt` where its record
    says no epoch was selected (`data.train_on_valid`: the last, averaged, weights were tested)."""
    if (run_dir / "best.pt").exists():
        return run_dir / "best.pt"
    try:
        record = json.loads((run_dir / "record.json").read_text())
    except (OSError, ValueError):
        return None
    last = run_dir / "last.pt"
    return last if record.get("train", {}).get("final_checkpoint") == "last" and last.exists() else None


def _tested_weights(path: Path, device) -> dict:
    weights = load_checkpoint(path, device)
    if path.name != "last.pt":
        return weights
    # A whole checkpoint: its model entry, with the Polyak average the run tested where it kept one.
    model = dict(weights["model"])
    model.update(weights.get("polyak", {}).get("average", {}))
    return model


def lock_held(lock: Path) -> bool:
    """Whether a live process holds the trainer's flock on `lock`. Read from /proc/locks where
    there is one, so that looking never takes the lock from a run that is just starting."""
    if not lock.is_file():
        return False
    st = lock.stat()
    wanted = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    proc_locks = Path("/proc/locks")
    if proc_locks.is_file():
        for line in proc_locks.read_text().splitlines():
            fields = line.split()
            if "FLOCK" not in fields:
                continue
            for field in fields:
                parts = field.split(":")
                if len(parts) == 3 and parts[2].isdigit():
                    try:
                        held = (int(parts[0], 16), int(parts[1], 16), int(parts[2]))
                    except ValueError:
                        continue
                    if held == wanted:
                        return True
        return False
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def run_status(run_dir: Path) -> RunStatus:
    running = lock_held(run_dir / ".lock")
    # Until a checkpoint names its config, the folder's place says which run it is
    # (`<runs>/<paper>/<variant>/<preset>/seed<k>`, `run_dir_for`).
    place = "/".join(Path(run_dir).parts[-4:])
    if not (run_dir / "last.pt").is_file():
        if running:
            status = "running, first epoch"
        elif (run_dir / DIVERGED_MARKER).is_file():
            status = "diverged before its first checkpoint: start it afresh with a remedy"
        else:
            status = "no checkpoint: never finished an epoch"
        return RunStatus(run_dir, place, status, 0, 0, None, {}, 0.0, "")
    try:
        ckpt = load_checkpoint(run_dir / "last.pt", "cpu")
        cfg, state = json.loads(ckpt["config"]), json.loads(ckpt["state"])
    except (TrainError, KeyError, ValueError) as err:
        why = str(err).splitlines()[0] if str(err) else type(err).__name__
        return RunStatus(run_dir, place, "running" if running else f"unreadable: {why}",
                         0, 0, None, {}, 0.0, "")
    name = f"{cfg['paper']}/{cfg['variant']}/{cfg['preset']}/seed{cfg['seed']}"
    finished = _finished(run_dir, state)
    if running:
        status = "running"
    elif isinstance(finished, str):
        status = finished
    elif finished:
        status = "finished"
    else:
        status = "diverged" if (run_dir / DIVERGED_MARKER).is_file() else "interrupted"
    history = state["history"]
    last = {k: v for k, v in (history[-1] if history else {}).items() if k in SHOWN}
    resumable = status in ("interrupted", "diverged") or status.startswith("unreadable")
    resume = "" if not resumable else (
        f"repro train {cfg['paper']} {cfg['variant']} --preset {cfg['preset']} --seed {cfg['seed']} "
        f"--runs-dir {run_dir.parents[3]} --resume  (with the run's own --set options" +
        ("; as is, it replays the divergence: add a lower optim.lr, an optim.grad_clip or "
         "train.precision=fp32; if none gets past it, --finish-diverged scores it as it stands)"
         if status == "diverged" else ")"))
    return RunStatus(run_dir, name, status, state["epoch"], cfg["train"]["epochs"],
                     state.get("best_epoch"), last, state["wall_time_s"], resume)


def _finished(run_dir: Path, state: dict) -> bool | str:
    """A run is finished when its record was written after its last checkpoint's updates (the
    trainer writes the run folder's record last, after the results record); an unreadable
    record gives an `unreadable: ...` status instead."""
    record = run_dir / "record.json"
    if not record.is_file():
        return False
    try:
        return json.loads(record.read_text())["train"]["steps"] == state["step"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"unreadable: {record.name} ({type(err).__name__}); `--resume` writes it again"


def find_runs(runs_root: Path) -> list[RunStatus]:
    """Every run folder under `runs_root` (one the trainer has locked or checkpointed), by name."""
    folders = {p.parent for pattern in ("last.pt", ".lock") for p in Path(runs_root).rglob(pattern)}
    return sorted((run_status(folder) for folder in folders), key=lambda r: r.name)


def render_runs(runs: list[RunStatus]) -> str:
    if not runs:
        return "no runs under this folder"
    lines = ["| run | status | epoch | best epoch | " + " | ".join(SHOWN) + " | wall (s) |",
             "|---|---|---|---|" + "---|" * len(SHOWN) + "---|"]
    for r in runs:
        values = [_number(r.last.get(k)) for k in SHOWN]
        lines.append(f"| {r.name} | {r.status} | {r.epoch}/{r.epochs} | {r.best_epoch or '—'} | "
                     + " | ".join(values) + f" | {r.wall_time_s:.0f} |")
    lines += [f"resume: {r.resume}" for r in runs if r.resume]
    return "\n".join(lines)


def _number(value) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.2f}"

"""A run's folder and what survives a kill: where it lives, its lock, its checkpoints, its RNG state.

A checkpoint becomes visible only by an atomic rename and is read back with `weights_only=True`,
so a kill mid-write leaves nothing half-written and a foreign file is refused, not unpickled.
The trainer (`repro.train`), the run browser (`repro.runs`), sweeps and leases all go through here.
"""
from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

import torch

from repro.config import RunConfig

try:
    import fcntl
except ImportError:     # not POSIX: run folders are not locked
    fcntl = None

RUNS_DIR = Path("runs")

DIVERGED_MARKER = "diverged.json"   # in the run folder: a resume may change the RECOVERY_KEYS


class TrainError(RuntimeError):
    """A run cannot go on for a reason the message states (the CLI prints it without a traceback)."""


class RunDirBusy(TrainError):
    """Another process is training in the same run folder."""


class DeadlineReached(TrainError):
    """The run stopped at its wall-clock deadline (`train(deadline=...)`) with `last.pt` holding
    every update it made, mid-epoch included; `--resume` continues it exactly."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda was asked for but no CUDA device is visible")
    return torch.device(name)


def run_dir_for(cfg: RunConfig, root: Path = RUNS_DIR) -> Path:
    return Path(root) / cfg.paper / cfg.variant / cfg.preset / f"seed{cfg.seed}"


def save_atomic(obj, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename: never half-written."""
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, device) -> dict:
    """`torch.load` restricted to tensors and plain containers (`weights_only=True`): a file
    that would need arbitrary unpickling is refused, not executed."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:   # random bytes make the unpickler raise almost anything
        raise TrainError(f"{path} is not a checkpoint this code can load safely ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''}); move it away to start "
                         "afresh") from err


@contextlib.contextmanager
def run_dir_lock(run_dir: Path):
    """Hold `run_dir` exclusively: two processes training in one folder would overwrite each
    other's checkpoints. The lock dies with its process, so a killed run never leaves it stale.
    (POSIX only: elsewhere the folder is not locked.)"""
    if fcntl is None:
        yield
        return
    handle = open(run_dir / ".lock", "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise RunDirBusy(f"{run_dir} is in use by {holder}; wait for it to finish or use "
                             "another --runs-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def run_owner(run_dir: Path) -> str:
    """Who a run folder is (host and absolute path): the tag that ties MLflow runs to it."""
    return f"{socket.gethostname()}:{Path(run_dir).resolve()}"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def raise_keyboard_interrupt(signum, frame):
    """A SIGTERM handler: stop as Ctrl-C does, through the `finally` blocks."""
    raise KeyboardInterrupt(f"signal {signum}")

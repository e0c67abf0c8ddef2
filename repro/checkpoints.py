"""A run's folder and what survives a kill: where it lives, its lock, its checkpoints, its RNG state.

A checkpoint becomes visible only by an atomic rename and is read back with `weights_only=True`,
so a kill mid-write leaves nothing half-written and a foreign file is refused, not unpickled.
The trainer (`repro.train`), the run browser (`repro.runs`), sweeps and leases all go through here.
A run that starts from parts of another finished run (`Variant.initialise`) reads them here too
(`load_parts_from_run`).
"""
from __future__ import annotations

import contextlib
import dataclasses
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


def required_run_dir(cfg: RunConfig, run_dir: Path, variant: str) -> Path:
    """The folder of `variant`'s run at `cfg`'s paper, preset and seed, in the runs folder that
    holds `run_dir` (`<runs>/<paper>/<variant>/<preset>/seed<k>`, as `run_dir_for` makes it)."""
    return run_dir_for(dataclasses.replace(cfg, variant=variant), Path(run_dir).parents[3])


def load_parts_from_run(model: torch.nn.Module, cfg: RunConfig, run_dir: Path, variant: str,
                        parts: dict[str, str]) -> Path:
    """Set submodules of `model` from the best checkpoint of `variant`'s finished run
    (`required_run_dir`), for a `Variant.initialise`. `parts` maps a submodule of `model` to the
    prefix its weights carry in that checkpoint (`{"encoder": "encoder"}`; a part of the same
    shape elsewhere: `{"encoder.lstm": "decoder.lstm"}`); every other parameter keeps its value.
    A missing run, a run on another vocabulary or weights of another shape stop the run with a
    one-line `TrainError` naming the command that trains what it needs. Returns that folder."""
    source = required_run_dir(cfg, run_dir, variant)
    command = (f"repro train {cfg.paper} {variant} --preset {cfg.preset} --seed {cfg.seed} "
               f"--runs-dir {Path(run_dir).parents[3]}")
    if not (source / "record.json").is_file() or not (source / "best.pt").is_file():
        raise TrainError(f"{cfg.paper}/{cfg.variant} starts from a finished {variant} run, and "
                         f"{source} holds none: run `{command}` first")
    vocab, vocab_file = getattr(model, "vocab", None), source / "vocab.json"
    if vocab is not None and (not vocab_file.is_file() or vocab_file.read_text() != vocab.to_json()):
        raise TrainError(f"{source} was trained on another vocabulary than this run's data "
                         f"(data.* overrides?): retrain it with `{command}` and the same overrides")
    weights = load_checkpoint(source / "best.pt", next(model.parameters()).device)
    for part, prefix in parts.items():
        own = {name[len(prefix) + 1:]: tensor for name, tensor in weights.items()
               if name.startswith(prefix + ".")}
        try:
            model.get_submodule(part).load_state_dict(own)
        except RuntimeError as err:   # model.* overrides the run it reads was not trained with
            raise TrainError(f"{source}'s {prefix} does not fit this run's {part} "
                             f"({str(err).splitlines()[-1].strip()}): retrain it with `{command}` "
                             "and the same sizes") from None
    return source


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

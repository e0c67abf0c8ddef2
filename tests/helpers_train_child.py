"""A fork server for tests/test_reliability.py: real `repro` processes that a test can SIGKILL,
without paying torch's, MLflow's and matplotlib's imports (about 15 s on a loaded machine) each time.

It imports those once, then reads one JSON request per line on stdin:
    {"id": ..., "argv": ["train", ...], "cwd": ..., "env": {...}, "log": path, "fault": {...}}
and runs `repro.cli.main(argv)` in a forked child with stdout and stderr going to `log` (argv
`["init-store"]` instead creates the tracking store named by MLFLOW_TRACKING_URI). It
answers `{"id", "pid"}` once the child exists and `{"id", "rc", "cpu_s"}` when it exits (rc < 0:
killed by signal -rc). `{"kill": id}` SIGKILLs that child if it is still running. The parent never runs
torch code, so the children do not inherit a thread pool.

A `fault` makes the child SIGKILL itself at an exact point, for kills that random timing would
rarely hit:
    {"kind": "step", "n": N}             right after the N-th optimiser update of this process
    {"kind": "save", "n": N, "fraction": f, "file": "last.pt"}
                                         during the N-th write of that checkpoint (default: of
                                         any), once a fraction f of the bytes is on disk (a
                                         half-written `.part` file)
    {"kind": "replace", "n": N, "file": "best.pt"}
                                         right after the N-th rename of that checkpoint (now
                                         visible; what follows it has not happened)
    {"kind": "log", "n": N}              right after the N-th `Tracker.log_metrics` call returned
    {"kind": "pause", "n": N, "marker": path, "go": path}
                                         after the N-th `Tracker.log_metrics` call, create `marker`
                                         and wait until `go` exists (the test acts meanwhile)
"""
from __future__ import annotations

import io
import json
import os
import selectors
import signal
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKPOINTS = ("best.pt", "last.pt")


def preload() -> None:
    sys.path.insert(0, str(REPO))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import mlflow  # noqa: F401
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401
    import mlflow.store.tracking.rest_store  # noqa: F401
    import torch._dynamo  # noqa: F401  (the first optimiser construction imports it: seconds)
    import repro.cli  # noqa: F401
    import repro.plots  # noqa: F401
    import repro.train  # noqa: F401
    from repro.registry import load_papers
    load_papers()


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def install_fault(fault: dict | None) -> None:
    if not fault:
        return
    import torch

    import repro.train as train_mod
    from repro.tracking import Tracker
    kind, n = fault["kind"], fault["n"]
    files = (fault["file"],) if fault.get("file") else CHECKPOINTS
    count = {"n": 0}

    def hit() -> bool:
        count["n"] += 1
        return count["n"] == n

    if kind == "step":
        real_build = train_mod.build_optimizer

        def build(cfg, model):
            opt = real_build(cfg, model)
            real_step = opt.step

            def step(*args, **kwargs):
                out = real_step(*args, **kwargs)
                if hit():
                    _die()
                return out
            opt.step = step
            return opt
        train_mod.build_optimizer = build
    elif kind == "save":
        real_save = torch.save

        def save(obj, f, *args, **kwargs):
            if Path(str(getattr(f, "name", ""))).name not in {f"{name}.part" for name in files}:
                return real_save(obj, f, *args, **kwargs)
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            data = buffer.getvalue()
            if not hit():
                f.write(data)
                return None
            f.write(data[:int(len(data) * fault["fraction"])])
            f.flush()
            os.fsync(f.fileno())
            _die()
        torch.save = save
    elif kind == "replace":
        real_replace = os.replace

        def replace(src, dst, *args, **kwargs):
            out = real_replace(src, dst, *args, **kwargs)
            if Path(dst).name in files and hit():
                _die()
            return out
        os.replace = replace
    elif kind in ("log", "pause"):
        real_log = Tracker.log_metrics

        def log_metrics(self, metrics, step):
            out = real_log(self, metrics, step)
            if hit():
                if kind == "log":
                    _die()
                Path(fault["marker"]).touch()
                while not Path(fault["go"]).exists():
                    time.sleep(0.05)
            return out
        Tracker.log_metrics = log_metrics
    else:
        raise ValueError(f"unknown fault {kind!r}")


def run_child(request: dict) -> int:
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", buffering=0), write_through=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", buffering=0), write_through=True)
    os.chdir(request.get("cwd") or os.getcwd())
    os.environ.update(request.get("env") or {})
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from repro.cli import main
    try:
        install_fault(request.get("fault"))
        if request["argv"] == ["init-store"]:
            from mlflow import MlflowClient
            MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).search_experiments()
            rc = 0
        else:
            rc = main(request["argv"])
    except SystemExit as exit_:
        rc = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:  # noqa: BLE001 — what a console script would print, then exit 1
        traceback.print_exc()
        rc = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return rc or 0


def serve() -> None:
    preload()
    out = sys.stdout
    children: dict[int, str] = {}

    def say(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    say({"ready": os.getpid()})
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    pending, stdin_open = b"", True
    while stdin_open or children:
        if stdin_open and selector.select(timeout=0.05):
            chunk = os.read(0, 65536)
            if not chunk:
                stdin_open = False
                selector.unregister(0)
                for pid in children:   # the test went away: leave no training behind
                    os.kill(pid, signal.SIGKILL)
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                if "kill" in request:   # only a child not yet reaped: its pid cannot be reused
                    pid = next((p for p, i in children.items() if i == request["kill"]), None)
                    if pid is not None:
                        os.kill(pid, signal.SIGKILL)
                    continue
                pid = os.fork()
                if pid == 0:   # never return into the server loop from a child
                    rc = 70
                    try:
                        rc = run_child(request)
                    finally:
                        os._exit(rc)
                children[pid] = request["id"]
                say({"id": request["id"], "pid": pid})
        elif not stdin_open:
            time.sleep(0.05)
        while children:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                break
            say({"id": children.pop(pid), "rc": os.waitstatus_to_exitcode(status),
                 "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)})


if __name__ == "__main__":
    serve()
    os._exit(0)   # skip tearing down torch and MLflow: seconds, for nothing

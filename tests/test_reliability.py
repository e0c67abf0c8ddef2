"""Reliability (issue 14): kills, concurrent runs, a real tracking server, bad config, safety.

Training runs here are real `repro train` processes (the CLI's `main`, on the Bowman smoke
preset with 3 epochs of 7 updates), forked from tests/helpers_train_child.py so that each costs
about a CPU-second rather than the 5-15 s of imports a fresh interpreter pays. They are killed
with SIGKILL: by the test at a random time, or by themselves at an exact point (mid-checkpoint-
write, right after a checkpoint rename, after the N-th update) that random timing would rarely
hit. One uninterrupted run (from the concurrency test) is the reference every killed-and-resumed
run must match exactly. The tracking-server test runs `mlflow server`, which starts with the
fork server because it takes tens of seconds to come up on a loaded machine.
"""
from __future__ import annotations

import ast
import dataclasses
import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
HELPER = Path(__file__).with_name("helpers_train_child.py")
PAPER, VARIANT = "bowman2016", "vae-anneal-worddrop"
RUN = ["train", PAPER, VARIANT, "--preset", "smoke", "--set", "train.epochs=3",
       "--set", "train.threads=1", "--quiet"]
EXPERIMENT = "repro-ptb"
UPDATES_PER_EPOCH, EPOCHS = 7, 3
TIMING_KEYS = {"tokens_per_s", "epoch_time_s"}      # per-epoch metrics that are not deterministic


def child_env() -> dict:
    """This session's environment (conftest's private cache) without usage reports to MLflow."""
    return {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}


def run_name(seed: int = 0) -> str:
    return f"{PAPER}/{VARIANT}/smoke/seed{seed}"


def run_dir(root: Path, seed: int = 0) -> Path:
    return Path(root) / "runs" / PAPER / VARIANT / "smoke" / f"seed{seed}"


def run_args(root: Path, seed: int = 0) -> list[str]:
    return [*RUN, "--seed", str(seed), "--runs-dir", str(Path(root) / "runs"),
            "--records-dir", str(Path(root) / "records")]


def record_of(root: Path, seed: int = 0) -> dict:
    """The seed's one record: `RUN` sets options, so its file name carries the config hash."""
    (path,) = (Path(root) / "records" / PAPER).glob(f"{VARIANT}__smoke__seed{seed}*.json")
    return json.loads(path.read_text())


# -- the fork server ---------------------------------------------------------------------------

@dataclasses.dataclass
class Child:
    id: str
    log: Path
    pid: int | None = None
    rc: int | None = None
    cpu_s: float = 0.0
    started: threading.Event = dataclasses.field(default_factory=threading.Event)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class ForkServer:
    """Client of tests/helpers_train_child.py: launch `repro` command lines, wait, kill."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        # Its own session and process group, so that `close` can end it and every run it forked
        # at once. (On Linux with autogroup scheduling a session is also its own CPU share.)
        self.proc = subprocess.Popen([sys.executable, str(HELPER)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=REPO, env=child_env(),
                                     start_new_session=True)
        self._ready = threading.Event()
        self._children: dict[str, Child] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "ready" in msg:
                self._ready.set()
                continue
            child = self._children[msg["id"]]
            if "pid" in msg:
                child.pid = msg["pid"]
                child.started.set()
            else:
                child.rc, child.cpu_s = msg["rc"], msg["cpu_s"]
                child.done.set()
        self._ready.set()

    def launch(self, argv: list[str], *, env: dict | None = None, fault: dict | None = None,
               cwd: Path | None = None, log: Path | None = None) -> Child:
        assert self._ready.wait(240) and self.proc.poll() is None, "fork server did not start"
        with self._lock:
            child_id = str(next(self._ids))
            child = Child(child_id, Path(log or self.workdir / f"child{child_id}.log"))
            self._children[child.id] = child
            self.proc.stdin.write(json.dumps({"id": child.id, "argv": argv, "env": env or {},
                                              "cwd": str(cwd or self.workdir), "log": str(child.log),
                                              "fault": fault}) + "\n")
            self.proc.stdin.flush()
        assert child.started.wait(60)
        return child

    def wait(self, child: Child, timeout: float = 240) -> int:
        if not child.done.wait(timeout):
            self.kill(child)
            child.done.wait(30)
            pytest.fail(f"{child.log} did not finish in {timeout}s:\n{child.output()[-3000:]}")
        return child.rc

    def run(self, argv, **kwargs) -> Child:
        child = self.launch(argv, **kwargs)
        self.wait(child)
        return child

    def kill(self, child: Child) -> None:
        """SIGKILL, sent by the fork server, which knows whether the child is still running."""
        with self._lock:
            self.proc.stdin.write(json.dumps({"kill": child.id}) + "\n")
            self.proc.stdin.flush()

    def close(self) -> None:
        self.proc.stdin.close()       # the fork server kills what still runs, then exits
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


class MlflowServer:
    """`mlflow server` on a free loopback port with its own SQLite store and artifact folder."""

    def __init__(self, root: Path):
        root.mkdir(parents=True, exist_ok=True)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = root / "server.log"
        self._log_handle = open(self.log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
             "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
            stdout=self._log_handle, stderr=subprocess.STDOUT, cwd=root,
            env={**child_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # one process less
            start_new_session=True)   # its own process group: the uvicorn worker dies with it

    def wait_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"mlflow server did not come up in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the whole server (its process group): it goes away without a goodbye."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self._log_handle.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("server"))
    yield server
    server.kill()


@pytest.fixture(scope="module")
def fork_server(tmp_path_factory, mlflow_server):
    # Depends on `mlflow_server` only to start it early: it takes tens of seconds to come up on
    # a loaded machine, which the tests before the server test overlap.
    server = ForkServer(tmp_path_factory.mktemp("fork"))
    # This process reads MLflow stores later; import that while the fork server starts.
    importer = threading.Thread(target=lambda: __import__("mlflow.store.tracking.sqlalchemy_store"))
    importer.start()
    yield server
    importer.join()
    server.close()


def fresh_store(template: Path, root: Path) -> str:
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(template, root / "mlflow.db")
    return f"sqlite:///{root / 'mlflow.db'}"


def client(uri: str):
    from mlflow import MlflowClient
    return MlflowClient(uri)


def runs_named(uri: str, name: str) -> list:
    c = client(uri)
    exp = c.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return []
    return c.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{name}'")


def load_last(path: Path) -> dict:
    blob = torch.load(path, weights_only=True)
    state = json.loads(blob["state"])
    state.pop("wall_time_s")
    state.pop("mlflow_run_id")                          # each trial has its own store
    for entry in state["history"]:
        for key in TIMING_KEYS:
            entry.pop(key)
    return {"model": blob["model"], "optimizer": blob["optimizer"], "rng": blob["rng"],
            "config": blob["config"], "state": state}


def assert_same_tensors(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_tensors(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def assert_metrics_complete(uri: str, run_id: str, history: list[dict], test_metrics: dict) -> None:
    """Every per-epoch metric at every epoch's step once, with the values the run computed, and
    every test metric once."""
    c = client(uri)
    steps = [entry["step"] for entry in history]
    for key, value in history[0].items():
        if key in ("epoch", "step") or not isinstance(value, (int, float)):
            continue       # names (the epoch's precision) stay in the record, not in MLflow
        got = sorted((m.step, m.value) for m in c.get_metric_history(run_id, key))
        assert [s for s, _ in got] == steps, f"{key}: logged at steps {got}, expected {steps}"
        if key not in TIMING_KEYS:
            assert got == [(e["step"], e[key]) for e in history], key
    for key, value in test_metrics.items():
        got = [(m.step, m.value) for m in c.get_metric_history(run_id, key)]
        assert got == [(steps[-1], value)], key


def assert_checkpoints_whole(directory: Path) -> None:
    for path in directory.glob("*.pt"):
        torch.load(path, weights_only=True)   # a half-written file raises


# -- concurrent runs (and the reference run for the kill trials) -------------------------------

@pytest.fixture(scope="module")
def concurrent_runs(fork_server, tmp_path_factory):
    """Three runs at once (seeds 0, 1, 2) against one new SQLite store that none has created yet.
    Meanwhile another child creates an empty store for the kill trials to copy."""
    root = tmp_path_factory.mktemp("concurrent")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    template = root / "template" / "mlflow.db"
    template.parent.mkdir()
    init = fork_server.launch(["init-store"], env={"MLFLOW_TRACKING_URI": f"sqlite:///{template}"},
                              log=root / "template.log")
    children = [fork_server.launch(run_args(root, seed), env={"MLFLOW_TRACKING_URI": uri},
                                   log=root / f"seed{seed}.log") for seed in range(3)]
    for child in [init, *children]:
        fork_server.wait(child)
    assert init.rc == 0, init.output()
    return root, uri, children, template


@pytest.fixture(scope="module")
def template_store(concurrent_runs):
    """An empty, migrated SQLite tracking store; each run of the kill tests gets a copy (a
    migration takes seconds)."""
    return concurrent_runs[3]


@pytest.mark.slow
def test_concurrent_runs_on_one_sqlite_store_record_every_metric(concurrent_runs):
    root, uri, children, _ = concurrent_runs
    for seed, child in enumerate(children):
        out = child.output()
        assert child.rc == 0, out[-3000:]
        assert "MLflow tracking failed" not in out and "MLflow refused" not in out, out[-3000:]
        runs = runs_named(uri, run_name(seed))
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        record = record_of(root, seed)
        assert record["mlflow_run_id"] == runs[0].info.run_id
        history = torch.load(run_dir(root, seed) / "last.pt", weights_only=True)["state"]
        history = json.loads(history)["history"]
        assert len(history) == EPOCHS
        assert_metrics_complete(uri, runs[0].info.run_id, history, record["metrics"])


# -- the tracker against a sick store (a fake client: instant, and exactly the failure wanted) ----

class FakeClient:
    """MlflowClient's logging calls, failing as told: what the Tracker sees of a sick store."""

    def __init__(self):
        self.calls, self.failures = [], []

    def _call(self, name, *args, **kwargs):
        if self.failures:
            raise self.failures.pop(0)
        self.calls.append((name, kwargs.get("metrics") or args[1:]))

    def log_batch(self, *args, **kwargs):
        self._call("log_batch", *args, **kwargs)

    def set_terminated(self, *args, **kwargs):
        self._call("set_terminated", *args, **kwargs)


def fake_tracker(retry_after_s: float = 30.0):
    from repro.tracking import Tracker
    tracker = Tracker(retry_after_s=retry_after_s)
    tracker._client, tracker.run_id = FakeClient(), "run"
    return tracker


def logged_steps(tracker) -> list[int]:
    return [batch[0].step for name, batch in tracker._client.calls if name == "log_batch"]


def test_tracker_waits_out_a_locked_sqlite_store(recwarn):
    from mlflow.exceptions import MlflowException
    tracker = fake_tracker()
    tracker._client.failures = [MlflowException("(sqlite3.OperationalError) database is locked")] * 3
    tracker.log_metrics({"val/elbo": 1.0}, 7)
    assert logged_steps(tracker) == [7] and not recwarn.list


def test_tracker_sends_again_a_dataset_another_run_inserted_at_the_same_time(recwarn):
    """Two concurrent runs of one experiment log the same corpus: the second insert of the
    dataset row fails on the store's unique key; sent again, the store finds the row."""
    from mlflow.exceptions import MlflowException
    tracker = fake_tracker()
    tracker._client.failures = [MlflowException(
        "(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id, datasets.name, "
        "datasets.digest")]
    tracker.log_metrics({"val/elbo": 1.0}, 7)
    assert logged_steps(tracker) == [7] and not recwarn.list


def test_tracker_queues_calls_while_the_store_is_down_and_sends_them_in_order(recwarn):
    from mlflow.exceptions import MlflowException
    down = MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch "
                           "failed with exception Max retries exceeded (Connection refused)")
    tracker = fake_tracker(retry_after_s=0.0)
    tracker._client.failures = [down, down]
    tracker.log_metrics({"val/elbo": 1.0}, 7)      # fails: queued, one warning
    tracker.log_metrics({"val/elbo": 0.9}, 14)     # tried again, fails again: queued, no new warning
    assert logged_steps(tracker) == []
    tracker.log_metrics({"val/elbo": 0.8}, 21)     # the store is back: everything, in order
    tracker.end()
    assert logged_steps(tracker) == [7, 14, 21] and tracker._client.calls[-1][0] == "set_terminated"
    assert [str(w.message)[:47] for w in recwarn.list] == ["MLflow tracking failed while logging metrics (M"]

    tracker = fake_tracker(retry_after_s=3600.0)   # down for good: calls wait for the end, once
    tracker._client.failures = [down, down]
    tracker.log_metrics({"val/elbo": 1.0}, 7)
    tracker.log_metrics({"val/elbo": 0.9}, 14)     # within retry_after_s: not even tried
    assert tracker._client.failures == [down]
    tracker.end()
    assert "could not be sent" in str(recwarn.list[-1].message)


def test_tracker_drops_a_call_the_store_refuses_and_goes_on(recwarn):
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
    tracker = fake_tracker()
    tracker._client.failures = [MlflowException("bad value", error_code=INVALID_PARAMETER_VALUE)]
    tracker.log_metrics({"val/elbo": float("inf")}, 7)
    tracker.log_metrics({"val/elbo": 1.0}, 14)
    assert logged_steps(tracker) == [14]
    assert "MLflow refused logging metrics" in str(recwarn.list[0].message)


@pytest.fixture(scope="module")
def reference(concurrent_runs):
    """The uninterrupted seed-0 run every kill trial must reproduce exactly."""
    root, _, children, _ = concurrent_runs
    assert children[0].rc == 0, children[0].output()[-3000:]
    directory = run_dir(root)
    return {"last": load_last(directory / "last.pt"),
            "best": torch.load(directory / "best.pt", weights_only=True),
            "record": record_of(root)}


# -- kills ------------------------------------------------------------------------------------

# Each trial kills one run again and again, resuming after each kill, and ends with a resume
# that runs to completion. The self-inflicted kills land in the first epoch the resumed process
# trains (so a trial makes at most an epoch of progress per kill and every kill has work left to
# interrupt); the last of each trial's chain may land anywhere in what remains, and a timed
# SIGKILL from the test follows it. Between them they hit: before the first checkpoint, mid-epoch,
# after an epoch's last update, half-way through writing best.pt and last.pt, between the two
# renames, between last.pt and its metrics reaching MLflow, and after them.
KILL_CHAINS = [
    ["step", "save:last.pt", "replace:last.pt"],
    ["save:best.pt", "log", "step"],
    ["replace:best.pt", "step", "save"],
    ["log", "replace", "save:last.pt"],
]


def next_kill(rng: random.Random, kind: str, epochs_done: int, last: bool):
    """The fault for a kill of `kind`, or a delay in seconds for a timed kill from the test."""
    if kind == "timed":
        return rng.uniform(0.5, 4.0)
    remaining = EPOCHS - epochs_done
    span = remaining if last else 1
    kind, _, file = kind.partition(":")
    file = file or rng.choice(["best.pt", "last.pt"])
    if kind == "step":
        return {"kind": "step", "n": rng.randint(1, UPDATES_PER_EPOCH * span)}
    if kind == "save":
        return {"kind": "save", "file": file, "n": rng.randint(1, span), "fraction": rng.uniform(0.05, 0.95)}
    if kind == "replace":
        return {"kind": "replace", "file": file, "n": rng.randint(1, span)}
    return {"kind": "log", "n": 1}


def epochs_done(directory: Path) -> int:
    path = directory / "last.pt"
    return json.loads(torch.load(path, weights_only=True)["state"])["epoch"] if path.exists() else 0


def run_trial(fork_server, template: Path, root: Path, chain: list[str], seed: int) -> dict:
    rng = random.Random(seed)
    uri = fresh_store(template, root)
    args, directory = run_args(root), run_dir(root)
    seen = {"kills": [], "parts": []}
    plan = [*chain, "timed", None]
    for attempt, kind in enumerate(plan):
        argv = args + (["--resume"] if attempt else [])
        log = root / f"attempt{attempt}.log"
        env = {"MLFLOW_TRACKING_URI": uri}
        if kind is None:
            child = fork_server.run(argv, env=env, log=log)
            assert child.rc == 0, child.output()[-3000:]
            break
        kill = next_kill(rng, kind, epochs_done(directory), last=attempt == len(chain) - 1)
        if kind == "timed":
            child = fork_server.launch(argv, env=env, log=log)
            if not child.done.wait(kill):
                fork_server.kill(child)
            if fork_server.wait(child) == 0:   # finished first: nothing left to resume
                break
        else:
            child = fork_server.run(argv, env=env, fault=kill, log=log)
        assert child.rc == -signal.SIGKILL, f"{kill}: exit {child.rc}\n{child.output()[-3000:]}"
        seen["kills"].append(kill)
        assert_checkpoints_whole(directory)      # a kill never leaves a checkpoint half-written
        seen["parts"] += [p.name for p in directory.glob("*.part")]
    assert not list(directory.glob("*.part"))
    return {**seen, "uri": uri, "root": root}


@pytest.mark.slow
def test_sigkill_anywhere_then_resume_ends_exactly_like_an_uninterrupted_run(
        fork_server, template_store, reference, tmp_path):
    with ThreadPoolExecutor(max_workers=len(KILL_CHAINS)) as pool:
        trials = list(pool.map(
            lambda i: run_trial(fork_server, template_store, tmp_path / f"trial{i}", KILL_CHAINS[i], 14 + i),
            range(len(KILL_CHAINS))))
    for i, trial in enumerate(trials):
        root, where = trial["root"], f"trial {i} {trial['kills']}"
        directory = run_dir(root)
        assert_same_tensors(reference["last"], load_last(directory / "last.pt"), f"{where}: last.pt")
        assert_same_tensors(reference["best"], torch.load(directory / "best.pt", weights_only=True),
                            f"{where}: best.pt")
        record = record_of(root)
        assert record["metrics"] == reference["record"]["metrics"], where
        assert record["train"] == reference["record"]["train"], where
        runs = runs_named(trial["uri"], run_name())
        assert len(runs) == 1, f"{where}: {len(runs)} MLflow runs"      # resumed, not duplicated
        assert runs[0].info.status == "FINISHED", where                # not left RUNNING
        assert runs[0].info.run_id == record["mlflow_run_id"], where
        assert runs[0].data.params["model.latent_size"] == "4", where
        history = torch.load(directory / "last.pt", weights_only=True)["state"]
        assert_metrics_complete(trial["uri"], runs[0].info.run_id, json.loads(history)["history"],
                                record["metrics"])

    kills = [kill for trial in trials for kill in trial["kills"]]
    assert len(kills) >= 12, kills
    assert {"step", "save", "replace", "log"} <= {k["kind"] for k in kills if isinstance(k, dict)}
    parts = {name for trial in trials for name in trial["parts"]}
    assert parts == {"last.pt.part", "best.pt.part"}             # kills did land mid-write


@pytest.mark.slow
def test_a_run_killed_and_never_resumed_is_marked_killed_by_the_next_fresh_start(
        fork_server, template_store, reference, tmp_path):
    uri = fresh_store(template_store, tmp_path)
    env = {"MLFLOW_TRACKING_URI": uri}
    killed = fork_server.run(run_args(tmp_path), env=env, fault={"kind": "step", "n": 3},
                             log=tmp_path / "killed.log")
    assert killed.rc == -signal.SIGKILL
    [orphan] = runs_named(uri, run_name())
    assert orphan.info.status == "RUNNING"          # what SIGKILL leaves behind

    fresh = fork_server.run(run_args(tmp_path), env=env, log=tmp_path / "fresh.log")  # no --resume
    assert fresh.rc == 0, fresh.output()[-3000:]
    assert f"MLflow run {orphan.info.run_id} was left RUNNING by a killed process; marked KILLED" \
        in fresh.output()
    statuses = {r.info.run_id: r.info.status for r in runs_named(uri, run_name())}
    assert statuses == {orphan.info.run_id: "KILLED", record_of(tmp_path)["mlflow_run_id"]: "FINISHED"}
    assert_same_tensors(reference["last"], load_last(run_dir(tmp_path) / "last.pt"), "fresh last.pt")
    assert "Traceback" not in fresh.output()


def test_a_second_process_cannot_train_in_a_run_folder_in_use(tmp_path):
    from repro import checkpoints
    from repro import train as train_mod
    from repro.config import apply_overrides
    from repro.registry import resolve
    _, cfg = resolve(PAPER, VARIANT, "smoke")
    cfg = apply_overrides(cfg, ["train.epochs=1"])
    directory = train_mod.run_dir_for(cfg, tmp_path)
    directory.mkdir(parents=True)
    with train_mod.run_dir_lock(directory):
        with pytest.raises(checkpoints.RunDirBusy, match=f"in use by pid {os.getpid()}"):
            train_mod.train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False)
    assert not (directory / "last.pt").exists()


# -- a real tracking server --------------------------------------------------------------------

def printed_json(output: str) -> dict:
    """The JSON object `repro eval` prints, out of a log that also holds its stderr lines."""
    return json.JSONDecoder().raw_decode(output[output.index("{\n"):])[0]


# Kept before the outage test below, which kills this module's server for good.
@pytest.mark.slow
def test_a_run_on_the_tracking_server_is_evaluated_on_a_machine_without_its_run_folder(
        fork_server, mlflow_server, tmp_path):
    """What another machine has is the server's address: `repro eval runs:/<id>` and
    `mlflow artifacts download` + `repro eval DIR` both give the run's recorded test metrics."""
    mlflow_server.wait_ready()
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    # Seed 5: the server's other test reads back the runs of seeds 0 and 1 by name.
    trained = fork_server.run(run_args(tmp_path / "trainer", seed=5), env=env, log=tmp_path / "train.log")
    assert trained.rc == 0, trained.output()[-3000:]
    record = json.loads((run_dir(tmp_path / "trainer", seed=5) / "record.json").read_text())
    run_id = record["mlflow_run_id"]
    shutil.rmtree(tmp_path / "trainer" / "runs")
    inputs = client(mlflow_server.uri).get_run(run_id).inputs.dataset_inputs
    assert sorted(i.tags[0].value for i in inputs) == ["test", "train", "valid"]
    assert {json.loads(i.dataset.profile)["corpus_sha256"] for i in inputs} == {record["data_sha256"]}

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_uri = fork_server.run(["eval", f"runs:/{run_id}", "--quiet"], env=env, cwd=elsewhere,
                             log=tmp_path / "eval-uri.log")
    assert by_uri.rc == 0, by_uri.output()[-3000:]
    assert printed_json(by_uri.output())["metrics"] == record["metrics"]

    downloaded = elsewhere / "run"
    fetch = subprocess.run([sys.executable, "-m", "mlflow", "artifacts", "download", "--run-id", run_id,
                            "--dst-path", str(downloaded)], capture_output=True, text=True,
                           timeout=240, env={**child_env(), **env})
    assert fetch.returncode == 0, fetch.stderr[-3000:]
    by_dir = fork_server.run(["eval", str(downloaded), "--quiet"], env=env, cwd=elsewhere,
                             log=tmp_path / "eval-dir.log")
    assert by_dir.rc == 0, by_dir.output()[-3000:]
    assert printed_json(by_dir.output())["metrics"] == record["metrics"]


@pytest.mark.slow
def test_training_against_a_tracking_server_and_through_its_outage(fork_server, mlflow_server, tmp_path):
    """Two runs against `mlflow server`: one is read back whole; the server is killed under the
    other after its first epoch."""
    mlflow_server.wait_ready()
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    marker, go = tmp_path / "epoch1-logged", tmp_path / "go"
    steady = fork_server.launch(run_args(tmp_path / "steady"), env=env, log=tmp_path / "steady.log")
    doomed = fork_server.launch(run_args(tmp_path / "doomed", seed=1), env=env, log=tmp_path / "doomed.log",
                                fault={"kind": "pause", "n": 1, "marker": str(marker), "go": str(go)})
    try:
        assert fork_server.wait(steady) == 0, steady.output()[-3000:]

        c = client(mlflow_server.uri)
        [run] = runs_named(mlflow_server.uri, run_name())
        record = record_of(tmp_path / "steady")
        assert run.info.run_id == record["mlflow_run_id"] and run.info.status == "FINISHED"
        assert run.data.params["model.latent_size"] == "4" and run.data.params["train.epochs"] == "3"
        assert run.data.tags["paper"] == PAPER and run.data.tags["variant"] == VARIANT
        history = json.loads(torch.load(run_dir(tmp_path / "steady") / "last.pt", weights_only=True)["state"])
        assert_metrics_complete(mlflow_server.uri, run.info.run_id, history["history"], record["metrics"])
        assert {a.path for a in c.list_artifacts(run.info.run_id)} >= {
            "config.json", "record.json", "vocab.json", "training.png", "samples.txt"}

        deadline = time.monotonic() + 240
        while not marker.exists():
            assert not doomed.done.is_set(), doomed.output()[-3000:]
            assert time.monotonic() < deadline, "the second run never finished its first epoch"
            time.sleep(0.1)
        [paused] = runs_named(mlflow_server.uri, run_name(1))
        assert [m.step for m in c.get_metric_history(paused.info.run_id, "val/elbo")] == [UPDATES_PER_EPOCH]
        mlflow_server.kill()
    finally:
        released = time.monotonic()
        go.touch()                    # never leave the second run paused
    assert fork_server.wait(doomed) == 0, doomed.output()[-3000:]
    # MLflow's own HTTP retry defaults would stall a call for about 4 minutes against a dead server.
    assert time.monotonic() - released < 150
    out = doomed.output()
    assert out.count("MLflow tracking failed while logging metrics") == 1, out[-3000:]
    assert "training continues and the run record and checkpoints are still written locally" in out
    assert "could not be sent" in out                       # and says the MLflow entry is incomplete
    doomed_record = record_of(tmp_path / "doomed", seed=1)
    assert doomed_record["train"]["epochs"] == EPOCHS and "test/nll" in doomed_record["metrics"]
    assert doomed_record["mlflow_run_id"] == paused.info.run_id
    assert_checkpoints_whole(run_dir(tmp_path / "doomed", seed=1))
    assert {"best.pt", "last.pt"} <= {p.name for p in run_dir(tmp_path / "doomed", seed=1).iterdir()}


# -- bad config input through the real CLI ------------------------------------------------------

BAD_CONFIGS = {
    "typo in a key": (["--set", "model.latnet_size=8"], "unknown config key 'latnet_size'"),
    "negative rate": (["--set", "optim.lr=-0.1"], "'optim.lr' is -0.1; it must be at least 0"),
    "negative keep rate": (["--set", "model.word_keep_rate=-0.5"], "'model.word_keep_rate' is -0.5"),
    "zero latent size": (["--set", "model.latent_size=0"], "'model.latent_size' is 0; it must be at least 1"),
    "fractional epochs": (["--set", "train.epochs=1.5"], "must be a whole number"),
    "a word for a number": (["--set", "optim.lr=fast"], "'optim.lr' must be a number"),
    "no value": (["--set", "data.batch_size"], "must look like section.key=value"),
    "unknown section": (["--set", "optimiser.lr=0.1"], "unknown config key 'optimiser'"),
}


@pytest.mark.slow
def test_bad_config_exits_2_with_one_clear_line(fork_server, tmp_path):
    console_script = Path(sys.executable).with_name("repro")
    entry = subprocess.Popen([console_script, *RUN[:-1], "--set", "model.latent_size=0"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    cases = {name: (["train", PAPER, VARIANT, "--preset", "smoke", *extra], expected)
             for name, (extra, expected) in BAD_CONFIGS.items()}
    cases["unknown paper"] = (["train", "bowman2061", VARIANT, "--preset", "smoke"],
                              "unknown paper 'bowman2061'")
    cases["unknown variant"] = (["train", PAPER, "vae-anneal", "--preset", "smoke"],
                                "no variant 'vae-anneal'")
    cases["unknown preset"] = (["train", PAPER, VARIANT, "--preset", "smokey"], "no preset 'smokey'")
    children = {name: fork_server.launch(argv, cwd=tmp_path, log=tmp_path / f"{i}.log")
                for i, (name, (argv, _)) in enumerate(cases.items())}
    for name, child in children.items():
        fork_server.wait(child, timeout=60)
        lines = child.output().strip().splitlines()
        assert child.rc == 2, (name, child.output())
        assert len(lines) == 1 and lines[0].startswith("config error: "), (name, lines)
        assert cases[name][1] in lines[0], (name, lines[0])
    # The installed console script, end to end: exit status 2 and one line, no traceback.
    stdout, stderr = entry.communicate(timeout=240)
    assert entry.returncode == 2, stderr
    assert stderr.strip().splitlines() == [
        "config error: 'model.latent_size' is 0; it must be at least 1"] and not stdout.strip()
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_run_folder_in_use_is_a_one_line_error_from_the_cli(fork_server, tmp_path):
    from repro.checkpoints import run_dir_lock
    directory = run_dir(tmp_path)
    directory.mkdir(parents=True)
    with run_dir_lock(directory):
        child = fork_server.run(run_args(tmp_path), env={"MLFLOW_TRACKING_URI": "sqlite:///unused.db"},
                                cwd=tmp_path, log=tmp_path / "busy.log")
    lines = child.output().strip().splitlines()
    assert child.rc == 1 and len(lines) == 1, child.output()
    assert lines[0].startswith("error: ") and f"in use by pid {os.getpid()}" in lines[0]


# -- safety --------------------------------------------------------------------------------------

class _Payload:
    """Unpickling this creates `marker`: what a hostile checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_carrying_pickled_code_is_refused_not_run(tmp_path):
    from repro import train as train_mod
    from repro.config import apply_overrides
    from repro.registry import resolve
    _, cfg = resolve(PAPER, VARIANT, "smoke")
    cfg = apply_overrides(cfg, ["train.epochs=1"])
    directory = train_mod.run_dir_for(cfg, tmp_path)
    directory.mkdir(parents=True)
    marker = tmp_path / "payload-ran"
    torch.save({"model": _Payload(marker), "config": cfg.to_json()}, directory / "last.pt")
    with pytest.raises(train_mod.TrainError, match="not a checkpoint this code can load safely"):
        train_mod.train(cfg, runs_root=tmp_path, records_root=None, resume=True, track=False,
                        progress=False)
    assert not marker.exists()
    torch.load(directory / "last.pt", weights_only=False)   # the payload is live: unpickled, it runs
    assert marker.exists()


def _calls(tree: ast.AST, module: str, func: str):
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == func
                and isinstance(node.func.value, ast.Name) and node.func.value.id == module):
            yield node


def test_no_code_path_unpickles_arbitrary_objects():
    sources = [p for d in ("repro", "papers") for p in (REPO / d).rglob("*.py")]
    torch_loads = 0
    for path in sources:
        tree = ast.parse(path.read_text(), str(path))
        for call in _calls(tree, "torch", "load"):
            torch_loads += 1
            flag = {k.arg: k.value for k in call.keywords}.get("weights_only")
            assert isinstance(flag, ast.Constant) and flag.value is True, \
                f"{path}:{call.lineno}: torch.load without weights_only=True"
        for call in itertools.chain(_calls(tree, "np", "load"), _calls(tree, "numpy", "load")):
            flag = {k.arg: k.value for k in call.keywords}.get("allow_pickle")
            assert flag is None or (isinstance(flag, ast.Constant) and flag.value is False), \
                f"{path}:{call.lineno}: np.load with allow_pickle"
        for name in ("load", "loads", "Unpickler"):
            assert not list(_calls(tree, "pickle", name)), f"{path}: pickle.{name}"
    # The guarded checkpoint loader (`repro.train.load_checkpoint`, which every checkpoint read
    # now goes through, `repro eval`'s included) and the data cache are found: the scan works.
    assert torch_loads >= 2


def test_ui_binds_to_loopback_unless_told_otherwise(monkeypatch, capsys):
    from repro import cli
    seen = []
    monkeypatch.setattr(cli.subprocess, "call", lambda argv: seen.append(argv) or 0)
    assert cli.main(["ui"]) == 0
    argv = seen[-1]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "warning" not in capsys.readouterr().err

    assert cli.main(["ui", "--host", "0.0.0.0"]) == 0
    assert seen[-1][seen[-1].index("--host") + 1] == "0.0.0.0"
    assert "exposes it beyond this machine" in capsys.readouterr().err

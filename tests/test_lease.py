"""GPU leases (`repro.lease`, `repro sweep --deadline`): a run stopped at a deadline mid-epoch
resumes to the records of an uninterrupted one; jobs start in `PRIORITY` order; the carry folder
round-trips and refuses what does not match today's presets."""
import inspect
import json
from pathlib import Path

import pytest
import torch

from repro import lease, sweep
from repro import train as train_module
from repro.cli import main
from repro.registry import resolve
from repro.sweep import Job
from repro.checkpoints import DeadlineReached, load_checkpoint
from repro.train import train

PAPER, VARIANT = "bowman2016", "vae"
# What differs between two runs of the same training: how long its parts took.
TIMING = ("epoch_time_s", "tokens_per_s", "examples_per_s")


def without_timing(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIMING} for entry in history]


class Clock:
    """`time` for the trainer where every call to `time()` advances one second, so that a
    deadline falls at the same update on every machine and load."""

    def __init__(self):
        self.now = 1e9

    def time(self) -> float:
        self.now += 1.0
        return self.now


def smoke_config(epochs: int = 3, batch_size: int | None = None):
    cfg = resolve(PAPER, VARIANT, "smoke")[1]
    cfg.train.epochs = epochs
    cfg.data.batch_size = batch_size or cfg.data.batch_size
    cfg.train.threads = 1
    return cfg


def test_a_deadline_mid_epoch_checkpoints_that_update_and_resume_ends_like_an_uninterrupted_run(
        tmp_path, monkeypatch):
    whole = train(smoke_config(batch_size=8), runs_root=tmp_path / "whole", records_root=None, track=False,
                  progress=False)
    updates_per_epoch = whole.record["train"]["steps"] // 3
    assert updates_per_epoch >= 10

    clock = Clock()
    monkeypatch.setattr(train_module, "time", clock)
    # Each `time()` call is a second and each update makes one, besides a few per epoch: the
    # first stop falls mid-way through the second epoch, the second a few updates after it.
    stops = []
    for deadline_in in (updates_per_epoch + updates_per_epoch // 2, 5):
        with pytest.raises(DeadlineReached) as stopped:
            train(smoke_config(batch_size=8), runs_root=tmp_path / "cut", records_root=None, track=False,
                  progress=False, resume=True, deadline=clock.now + deadline_in)
        stops.append(str(stopped.value))
        ckpt = load_checkpoint(tmp_path / "cut" / PAPER / VARIANT / "smoke" / "seed0" / "last.pt", "cpu")
        state = json.loads(ckpt["state"])
        assert state["step"] % updates_per_epoch != 0, "the deadline fell on an epoch's end"
        assert ckpt["partial_epoch"]["updates"] == state["step"] % updates_per_epoch
    assert "--resume continues" in stops[0]
    monkeypatch.undo()
    resumed = train(smoke_config(batch_size=8), runs_root=tmp_path / "cut", records_root=None, track=False,
                    progress=False, resume=True)

    assert resumed.record["metrics"] == whole.record["metrics"]
    assert resumed.record["train"]["steps"] == whole.record["train"]["steps"]
    assert without_timing(resumed.history) == without_timing(whole.history)
    ours = torch.load(resumed.run_dir / "best.pt", weights_only=True)
    theirs = torch.load(whole.run_dir / "best.pt", weights_only=True)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)


def test_a_deadline_passed_before_the_test_evaluation_stops_there_and_resume_scores_it(
        tmp_path, monkeypatch):
    whole = train(smoke_config(1), runs_root=tmp_path / "whole", records_root=None, track=False,
                  progress=False)
    calls = {"n": 0}
    real = train_module._fit

    def fit_then_pass_the_deadline(*args, **kwargs):
        # Trains the whole run (no deadline inside), as if it ended just before the deadline.
        bound = inspect.signature(real).bind(*args, **kwargs)
        bound.arguments["deadline"] = None
        real(*bound.args, **bound.kwargs)
        calls["n"] += 1
    monkeypatch.setattr(train_module, "_fit", fit_then_pass_the_deadline)
    with pytest.raises(DeadlineReached, match="before the test evaluation"):
        train(smoke_config(1), runs_root=tmp_path / "cut", records_root=None, track=False,
              progress=False, deadline=0.0)
    monkeypatch.undo()
    assert calls["n"] == 1 and not (tmp_path / "cut" / PAPER / VARIANT / "smoke" / "seed0" / "record.json").exists()
    resumed = train(smoke_config(1), runs_root=tmp_path / "cut", records_root=None, track=False,
                    progress=False, resume=True)
    assert resumed.record["metrics"] == whole.record["metrics"]


def test_jobs_start_in_the_documented_priority_order():
    listed = sweep.jobs_for("all", None, [0, 1], "paper")
    ordered = sweep.by_priority(listed)
    first = [(j.paper, j.variant) for j in ordered[:2 * len(sweep.PRIORITY)]]
    assert first == [pair for pair in sweep.PRIORITY for _ in (0, 1)]
    assert [j.seed for j in ordered[:2]] == [0, 1]
    rest = ordered[2 * len(sweep.PRIORITY):]
    datasets = [j.config().data.dataset == sweep.PRIORITY_DATASET for j in rest]
    assert datasets == sorted(datasets, reverse=True), "a non-PTB row came before a PTB one"
    assert len(ordered) == len(listed) and set(ordered) == set(listed)
    assert not any(j.paper == "demo" for j in listed)


def sweep_argv(root: Path, *extra: str) -> list[str]:
    return ["sweep", PAPER, "--variants", VARIANT, "rnnlm", "--seeds", "0", "--preset", "smoke",
            "--runs-dir", str(root / "runs"), "--records-dir", str(root / "records"),
            "--no-mlflow", "--jobs", "2", "--set", "train.epochs=150", *extra]


def records_of(root: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted((root / "records").rglob("*.json"))}


@pytest.mark.slow
def test_a_sweep_cut_by_its_deadline_then_resumed_gives_the_records_of_an_uninterrupted_one(
        tmp_path, capsys):
    """Two smoke jobs of 150 epochs, first uninterrupted, then cut at half the time that took
    (so the cut falls mid-training at whatever load this machine has): both stop with a
    checkpoint, are not retried, and `--resume` finishes them with the uninterrupted sweep's
    metrics and history, bit for bit."""
    import time
    started = time.time()
    assert main(sweep_argv(tmp_path / "whole")) == 0
    whole_s = time.time() - started
    capsys.readouterr()
    assert main(sweep_argv(tmp_path / "cut", "--deadline", f"{whole_s / 2:.0f}")) == 0
    out = capsys.readouterr().out
    assert "2 stopped at the deadline" in out and "retrying" not in out, out
    assert records_of(tmp_path / "cut") == {}
    for variant in (VARIANT, "rnnlm"):
        last = tmp_path / "cut" / "runs" / PAPER / variant / "smoke" / "seed0" / "last.pt"
        assert last.is_file(), out
        state = json.loads(load_checkpoint(last, "cpu")["state"])
        assert 0 < state["step"] and state["epoch"] < 150, variant

    assert main(sweep_argv(tmp_path / "cut", "--resume")) == 0
    cut, whole = records_of(tmp_path / "cut"), records_of(tmp_path / "whole")
    assert sorted(cut) == sorted(whole) and len(cut) == 2
    for name in whole:
        assert cut[name]["metrics"] == whole[name]["metrics"], name
        assert without_timing(cut[name]["history"]) == without_timing(whole[name]["history"]), name


def test_a_carry_folder_round_trips_and_refuses_what_is_not_todays_preset(tmp_path, monkeypatch):
    here, lent, back = tmp_path / "here", tmp_path / "lent", tmp_path / "back"
    finished = Job(PAPER, "rnnlm", "smoke", 0)
    train(finished.config(1), runs_root=here / "runs", records_root=here / "records", track=False,
          progress=False)
    clock = Clock()
    monkeypatch.setattr(train_module, "time", clock)
    with pytest.raises(DeadlineReached):
        train(smoke_config(1), runs_root=here / "runs", records_root=here / "records", track=False,
              progress=False, deadline=clock.now + 5)
    monkeypatch.undo()
    jobs = [finished, Job(PAPER, VARIANT, "smoke", 0), Job(PAPER, "vae-inputless", "smoke", 0)]

    lines = lease.pack(lent, jobs, here / "runs", here / "records")
    assert any(line.startswith(f"packed checkpoint {PAPER}/{VARIANT}/smoke/seed0") for line in lines)
    assert any(line.startswith(f"packed record {PAPER}/rnnlm/smoke/seed0") for line in lines)
    manifest = json.loads((lent / "manifest.json").read_text())["items"]
    assert {item["kind"] for item in manifest} == {"checkpoint", "record"}

    lines, refused = lease.import_folder(lent, back / "runs", back / "records")
    assert refused == 0, lines
    assert (back / "records" / PAPER / "rnnlm__smoke__seed0.json").read_text() == \
        (here / "records" / PAPER / "rnnlm__smoke__seed0.json").read_text()
    carried = back / "runs" / PAPER / VARIANT / "smoke" / "seed0" / "last.pt"
    assert carried.read_bytes() == (here / "runs" / PAPER / VARIANT / "smoke" / "seed0" / "last.pt").read_bytes()
    again, refused = lease.import_folder(lent, back / "runs", back / "records")
    assert refused == 0 and all(line.startswith(("skipped", "import:")) for line in again)

    # A preset changed since the lease: both its record and its checkpoint are refused.
    for variant in ("rnnlm", VARIANT):
        presets = train_module.get_paper(PAPER).variant(variant).presets
        monkeypatch.setitem(presets, "smoke", lambda f=presets["smoke"]: _with_lr(f(), 0.5))
    lines, refused = lease.import_folder(lent, tmp_path / "elsewhere" / "runs", tmp_path / "elsewhere" / "records")
    assert refused == 2
    assert sum(line.startswith("REFUSED") and "optim.lr differ" in line for line in lines) == 2, lines
    assert not (tmp_path / "elsewhere" / "records").exists()
    monkeypatch.undo()

    # A file damaged on the way is refused by its checksum.
    damaged = next(item for item in manifest if item["kind"] == "checkpoint")
    with open(lent / damaged["path"] / "last.pt", "ab") as handle:
        handle.write(b"x")
    lines, refused = lease.import_folder(lent, tmp_path / "third" / "runs", tmp_path / "third" / "records")
    assert refused == 1 and any("SHA-256 differs" in line for line in lines)


def _with_lr(cfg, lr):
    cfg.optim.lr = lr
    return cfg


def test_pack_skips_a_checkpoint_past_the_size_limit_and_says_so(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(train_module, "time", clock)
    with pytest.raises(DeadlineReached):
        train(smoke_config(1), runs_root=tmp_path / "runs", records_root=None, track=False,
              progress=False, deadline=clock.now + 5)
    monkeypatch.undo()
    lines = lease.pack(tmp_path / "lent", [Job(PAPER, VARIANT, "smoke", 0)], tmp_path / "runs",
                       tmp_path / "records", limit_bytes=1000)
    assert any(line.startswith(f"skipped checkpoint {PAPER}/{VARIANT}/smoke/seed0") and "past" in line
               for line in lines)
    assert json.loads((tmp_path / "lent" / "manifest.json").read_text())["items"] == []
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not a carry folder"):
        lease.pack(tmp_path / "other", [], tmp_path / "runs", tmp_path / "records")
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


def test_the_lease_estimate_is_computed_from_cpu_records(tmp_path):
    """Doubling a row's cpu wall time doubles its GPU hours: the numbers come from the records."""
    record = {"paper": PAPER, "variant": VARIANT, "preset": "cpu", "seed": 0, "wall_time_s": 3600.0,
              "config": resolve(PAPER, VARIANT, "cpu")[1].to_dict(),
              "train": {"steps": 1000, "epochs": 2}}
    path = tmp_path / PAPER / f"{VARIANT}__cpu__seed0.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record))
    (row,), _ = lease.estimate_rows(tmp_path)
    path.write_text(json.dumps({**record, "wall_time_s": 7200.0}))
    (doubled,), unknown = lease.estimate_rows(tmp_path)
    assert doubled.gpu_s == pytest.approx(2 * row.gpu_s)
    assert row.gpu_s == pytest.approx(3600.0 * row.work_ratio / lease.GPU_SPEEDUP_PER_JOB)
    assert f"{PAPER}/rnnlm" in unknown
    text = "\n".join(lease.estimate_lines(tmp_path))
    assert "GPU_SPEEDUP_PER_JOB" in text and f"| {PAPER} | 1 |" in text


def test_the_run_folder_size_estimate_is_what_a_run_writes(tmp_path):
    """`repro lease sizes` says which rows can go on from lease to lease: its estimate must be
    what the trainer writes (a smoke run's `last.pt` and `best.pt`, pickling aside)."""
    result = train(smoke_config(1), runs_root=tmp_path, records_root=None, track=False, progress=False)
    written = sum((result.run_dir / name).stat().st_size for name in lease.RUN_FILES
                  if (result.run_dir / name).is_file())
    estimate = lease.run_folder_bytes(PAPER, VARIANT, "smoke")
    assert estimate <= written <= estimate * 1.1 + 64 * 1024, (estimate, written)
    (line,) = [line for line in lease.size_lines([Job(PAPER, VARIANT, "smoke", 0)], limit_bytes=1)[1:]]
    assert "past the carry limit" in line


def test_a_local_worker_still_busy_after_the_grace_is_stopped_and_its_job_reported_stopped(
        tmp_path, monkeypatch):
    import os
    import time

    import helpers_busy_worker
    from repro import sweep
    monkeypatch.setattr(sweep, "run_in_pool_worker", helpers_busy_worker.busy_until_stopped)
    monkeypatch.setattr(sweep, "DEADLINE_GRACE_S", 1.0)
    jobs = [Job(PAPER, VARIANT, "smoke", seed) for seed in (0, 1)]
    settings = sweep.WorkerSettings(engine="local", runs_dir=str(tmp_path), records_dir=str(tmp_path),
                                    track=False, resume=True, threads=1, deadline=time.time() + 20)
    started = time.time()
    outcomes = list(sweep.run_local(jobs, settings, sweep.EngineOptions(parallel=2)))
    assert time.time() - started < 60
    assert sorted(o.job.seed for o in outcomes) == [0, 1]
    assert all(o.stopped and not o.ok and "SIGTERM" in o.error for o in outcomes)
    for seed in (0, 1):
        pid = int((tmp_path / f"worker-{seed}.pid").read_text())
        try:
            os.kill(pid, 0)
            alive = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
        except OSError:
            alive = False
        assert not alive, f"worker {pid} still runs after the sweep stopped it"

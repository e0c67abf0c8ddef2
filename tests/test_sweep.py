"""`repro sweep`: job keys, the retry and resume rules, and real sweeps on every engine (the local
pool, a one-node Ray cluster started here, submitit's local executor standing in for Slurm)."""
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from repro import sweep, train as train_mod
from repro.data.sources import DataError
from repro.precision import Choice
from repro.cli import main
from repro.config import ConfigError
from repro.checkpoints import DIVERGED_MARKER
from repro.sweep import (Job, Outcome, absolute_tracking_uri, config_hash, is_finished,
                         local_threads, make_jobs, run_sweep)

PAPER, VARIANT = "bowman2016", "vae"   # the cheapest smoke run with a latent: seconds


def sweep_argv(tmp_path: Path, *extra: str, seeds=("0", "1")) -> list[str]:
    return ["sweep", PAPER, "--variants", VARIANT, "--seeds", *seeds, "--preset", "smoke",
            "--runs-dir", str(tmp_path / "runs"), "--records-dir", str(tmp_path / "records"), *extra]


def record_file(tmp_path: Path, seed: int, variant: str = VARIANT) -> Path:
    return tmp_path / "records" / PAPER / f"{variant}__smoke__seed{seed}.json"


def job_lines(out: str, seed: int) -> list[str]:
    return [line for line in out.splitlines() if f"/{VARIANT}/smoke/seed{seed}@" in line]


# ---- keys, grids, small rules ----------------------------------------------------------------

def test_config_hash_ignores_key_order_and_threads_but_not_hyperparameters():
    cfg = Job(PAPER, VARIANT, "smoke", 0).config().to_dict()
    reordered = json.loads(json.dumps(cfg, sort_keys=True))
    more_threads = json.loads(json.dumps(cfg)) | {"train": {**cfg["train"], "threads": 7}}
    other_lr = json.loads(json.dumps(cfg)) | {"optim": {**cfg["optim"], "lr": cfg["optim"]["lr"] * 2}}
    assert config_hash(reordered) == config_hash(cfg) == config_hash(more_threads)
    assert config_hash(other_lr) != config_hash(cfg)


def test_job_key_names_the_run_and_changes_with_its_config():
    plain = Job(PAPER, VARIANT, "smoke", 0)
    assert plain.key.startswith(f"{PAPER}/{VARIANT}/smoke/seed0@")
    assert Job(PAPER, VARIANT, "smoke", 1).key != plain.key
    assert Job(PAPER, VARIANT, "smoke", 0, ("optim.lr=0.5",)).key != plain.key
    assert Job(PAPER, VARIANT, "smoke", 0, ("train.threads=3",)).key == plain.key
    # threads fill train.threads, unless the user set it
    assert plain.config(threads=2).train.threads == 2
    assert Job(PAPER, VARIANT, "smoke", 0, ("train.threads=3",)).config(threads=2).train.threads == 3


def test_make_jobs_is_the_grid_once_each_and_refuses_unknown_variants():
    jobs = make_jobs(PAPER, [VARIANT, VARIANT, "rnnlm"], [0, 1, 0], "smoke", ["optim.lr=0.5"])
    assert [(j.variant, j.seed) for j in jobs] == [(VARIANT, 0), (VARIANT, 1), ("rnnlm", 0), ("rnnlm", 1)]
    assert all(j.overrides == ("optim.lr=0.5",) for j in jobs)
    assert {j.variant for j in make_jobs(PAPER, None, [0], "smoke")} >= {"rnnlm", "vae"}
    with pytest.raises(ConfigError):
        make_jobs(PAPER, ["no-such-variant"], [0], "smoke")


def _write_record_config(tmp_path: Path, config: dict, metrics=("nll", "elbo", "kl", "mi", "au"),
                         variant: str = VARIANT) -> None:
    path = record_file(tmp_path, 0, variant)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"config": config, "eval": {"metrics": list(metrics)}}))


def test_a_record_from_before_a_key_was_added_is_still_finished_at_the_keys_default(tmp_path):
    """Records written before `eval.mc_samples` existed must not be retrained by the next sweep;
    one whose stored value differs from the job's, or that holds a key since removed, is."""
    job = Job(PAPER, VARIANT, "smoke", 0)
    config = job.config().to_dict()
    older = json.loads(json.dumps(config))
    del older["eval"]["mc_samples"], older["data"]["max_context"]
    _write_record_config(tmp_path, older)
    assert is_finished(job, tmp_path / "records")
    changed = json.loads(json.dumps(config))
    changed["eval"]["mc_samples"] += 1
    _write_record_config(tmp_path, changed)
    assert not is_finished(job, tmp_path / "records")
    removed = json.loads(json.dumps(config))
    removed["eval"]["a_key_no_longer_there"] = 1
    _write_record_config(tmp_path, removed)
    assert not is_finished(job, tmp_path / "records")


def test_a_record_that_went_on_from_a_divergence_counts_under_the_config_it_started_with(tmp_path):
    job = Job(PAPER, VARIANT, "smoke", 0)
    config = job.config().to_dict()
    lr = config["optim"]["lr"]
    config["optim"]["lr"] = lr / 2
    path = record_file(tmp_path, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    recovery = {"after_epoch": 1, "changed": {"optim.lr": [lr, lr / 2]}, "reason": "NaN"}
    for recoveries, finished in (([], False), ([recovery], True)):
        path.write_text(json.dumps({"config": config, "eval": {"metrics": ["nll", "kl", "mi", "au"]},
                                    "train": {"recoveries": recoveries}}))
        assert is_finished(job, tmp_path / "records") is finished


def test_how_mi_and_au_are_scored_does_not_count_for_a_record_without_them(tmp_path):
    """An RNNLM's record (NLL only) stays finished when the protocol changes how MI and AU are
    scored; a VAE's record, which has them, does not."""
    for variant, metrics, finished in (("rnnlm", ("nll",), True), (VARIANT, ("nll", "kl", "mi", "au"), False)):
        job = Job(PAPER, variant, "smoke", 0, ("eval.mi_au_whole_split=true", "eval.mi_pool=batch"))
        older = Job(PAPER, variant, "smoke", 0).config().to_dict()
        _write_record_config(tmp_path, older, metrics, variant)
        assert is_finished(job, tmp_path / "records") is finished, variant
        changed = json.loads(json.dumps(older))
        changed["eval"]["iw_samples"] += 1
        _write_record_config(tmp_path, changed, metrics, variant)
        assert not is_finished(job, tmp_path / "records")


def test_pool_workers_times_threads_never_exceed_the_cores():
    assert local_threads(2, cores=2) == 1
    assert local_threads(1, cores=8) == 8
    assert local_threads(3, cores=8) == 2
    assert local_threads(16, cores=2) == 1


def test_tracking_uri_is_made_absolute_for_workers_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert absolute_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert absolute_tracking_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"
    assert absolute_tracking_uri("mlruns") == str(tmp_path.resolve() / "mlruns")
    assert absolute_tracking_uri("http://tracking:5000") == "http://tracking:5000"


def test_a_failed_job_is_retried_once_then_reported(tmp_path):
    flaky, broken, fine = (Job(PAPER, VARIANT, "smoke", seed) for seed in (0, 1, 2))
    calls = []

    def engine(jobs):
        calls.append(list(jobs))
        for job in jobs:
            ok = job == fine or (job == flaky and len(calls) == 2)
            yield Outcome(job, ok=ok, error="" if ok else f"boom {len(calls)}")

    lines = []
    summary = run_sweep([flaky, broken, fine], tmp_path / "records", engine, log=lines.append)
    assert calls == [[flaky, broken, fine], [flaky, broken]]
    assert [o.job for o in summary.finished] == [fine, flaky]
    assert [o.job for o in summary.retried] == [flaky, broken]
    assert [(o.job, o.error, o.attempts) for o in summary.failed] == [(broken, "boom 2", 2)]
    assert not summary.ok
    assert any(line.startswith("  FAILED") and broken.key in line and "boom 2" in line for line in lines)


def test_a_diverged_job_is_reported_not_retried(tmp_path):
    """A retry replays the same batches and random numbers, so it would diverge again."""
    diverged = Job(PAPER, VARIANT, "smoke", 0)
    calls = []

    def engine(jobs):
        calls.append(list(jobs))
        for job in jobs:
            yield Outcome(job, ok=False, error="TrainingDiverged: loss or parameters became NaN/inf")

    summary = run_sweep([diverged], tmp_path / "records", engine, log=lambda line: None)
    assert calls == [[diverged]] and not summary.retried
    assert [(o.job, o.attempts) for o in summary.failed] == [(diverged, 1)] and not summary.ok


def test_a_job_another_sweep_finished_meanwhile_is_not_retried(tmp_path):
    busy = Job(PAPER, VARIANT, "smoke", 0)
    calls = []

    def engine(jobs):   # the run folder is busy: another driver is training it, and finishes
        calls.append(list(jobs))
        path = record_file(tmp_path, 0)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"config": busy.config().to_dict()}))
        yield Outcome(busy, ok=False, error="RunDirBusy")

    summary = run_sweep([busy], tmp_path / "records", engine, log=lambda line: None)
    assert calls == [[busy]] and summary.skipped == [busy]
    assert summary.ok and not summary.retried


def test_asking_for_an_engine_that_is_not_installed_says_how_to_get_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` now fails as if not installed
    assert main(sweep_argv(tmp_path, "--engine", "ray", "--no-mlflow")) == 2
    assert "pip install 'repro[sweep]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.skipif(shutil.which("srun") is not None, reason="this machine has Slurm")
def test_the_slurm_engine_without_slurm_is_an_error_not_a_local_run(tmp_path, capsys):
    assert main(sweep_argv(tmp_path, "--engine", "slurm", "--no-mlflow")) == 2
    assert "--submitit-cluster local" in capsys.readouterr().err
    assert not record_file(tmp_path, 0).exists()


# ---- the local engine, for real ---------------------------------------------------------------

def test_local_sweep_logs_to_one_store_skips_finished_jobs_and_reruns_changed_ones(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")   # relative, as by default
    assert main(sweep_argv(tmp_path, "--jobs", "2")) == 0
    records = {seed: json.loads(record_file(tmp_path, seed).read_text()) for seed in (0, 1)}
    assert {r["seed"] for r in records.values()} == {0, 1}
    assert all(r["config"]["train"]["threads"] == local_threads(2) for r in records.values())
    out = capsys.readouterr().out
    worker_pids = {re.search(r"pid (\d+)", job_lines(out, seed)[0]).group(1) for seed in (0, 1)}
    assert str(os.getpid()) not in worker_pids   # trained in pool workers, not in the driver

    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("repro-ptb").experiment_id])
    assert {r.info.run_id for r in runs} == {r["mlflow_run_id"] for r in records.values()}
    assert {r.data.tags["seed"] for r in runs} == {"0", "1"}

    mtimes = {seed: record_file(tmp_path, seed).stat().st_mtime_ns for seed in (0, 1)}
    assert main(sweep_argv(tmp_path, "--jobs", "1")) == 0   # other threads per job: same experiment
    out = capsys.readouterr().out
    assert "2 already finished, 0 to run" in out
    assert {seed: record_file(tmp_path, seed).stat().st_mtime_ns for seed in (0, 1)} == mtimes

    assert main(sweep_argv(tmp_path, "--jobs", "1", "--no-mlflow", "--set", "optim.lr=0.002",
                           seeds=("0",))) == 0
    assert "0 already finished, 1 to run" in capsys.readouterr().out
    # The changed run gets a record of its own; the preset's records stay as they were.
    (changed,) = (tmp_path / "records" / PAPER).glob(f"{VARIANT}__smoke__seed0__*.json")
    assert json.loads(changed.read_text())["config"]["optim"]["lr"] == 0.002
    assert {seed: record_file(tmp_path, seed).stat().st_mtime_ns for seed in (0, 1)} == mtimes

    assert main(["table", "--records-dir", str(tmp_path / "records"), "--results-dir", str(tmp_path)]) == 0
    assert " ± " in (tmp_path / f"{PAPER}.md").read_text()   # seeds aggregated by `repro table`


def test_local_sweep_retries_a_failing_job_once_finishes_the_rest_and_resumes(tmp_path, capsys):
    busy = tmp_path / "runs" / PAPER / VARIANT / "smoke" / "seed1"
    busy.mkdir(parents=True)
    with open(busy / ".lock", "a+") as lock:   # as if another process were training seed 1
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert main(sweep_argv(tmp_path, "--jobs", "2", "--no-mlflow")) == 1
    out = capsys.readouterr().out
    assert record_file(tmp_path, 0).is_file() and not record_file(tmp_path, 1).exists()
    assert len([line for line in job_lines(out, 1) if "failed: RunDirBusy" in line]) == 2
    assert any(line.startswith("  FAILED") and "RunDirBusy" in line for line in job_lines(out, 1))
    assert "1 finished, 1 retried, 0 skipped as already finished, 1 failed" in out

    finished_before = record_file(tmp_path, 0).stat().st_mtime_ns
    assert main(sweep_argv(tmp_path, "--jobs", "2", "--no-mlflow")) == 0
    assert "1 already finished, 1 to run" in capsys.readouterr().out
    assert record_file(tmp_path, 1).is_file()
    assert record_file(tmp_path, 0).stat().st_mtime_ns == finished_before


@pytest.mark.slow
@pytest.mark.parametrize("stopped", ["driver", "process group"])
def test_stopping_a_local_sweep_stops_its_workers(tmp_path, stopped):
    """SIGTERM to the driver, or to its whole process group (`kill -- -PGID`, as a job runner
    stops a background job): the worker stops its run and does not start the queued next job."""
    import signal
    import time
    lock = tmp_path / "runs" / PAPER / VARIANT / "smoke" / "seed0" / ".lock"
    driver = subprocess.Popen([sys.executable, "-m", "repro.cli",
                               *sweep_argv(tmp_path, "--jobs", "1", "--no-mlflow", "--set",
                                           "train.epochs=10000", seeds=("0", "1"))],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    deadline = time.time() + 300
    while not (lock.is_file() and lock.read_text().startswith("pid")) and time.time() < deadline:
        time.sleep(0.5)
    worker = int(lock.read_text().split()[1])
    try:
        assert worker != driver.pid
        if stopped == "driver":
            driver.send_signal(signal.SIGTERM)
        else:
            os.killpg(driver.pid, signal.SIGTERM)
        driver.wait(timeout=120)
        deadline = time.time() + 60
        while _alive(worker) and time.time() < deadline:
            time.sleep(0.5)
        assert not _alive(worker), "the worker went on training after its sweep was stopped"
        assert not record_file(tmp_path, 0).exists()
        assert not lock.parent.with_name("seed1").exists(), "the stopped worker started the next job"
    finally:   # a failing check must not leave a 10,000-epoch run behind
        for pid in (driver.pid, worker):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_pool_worker_whose_job_is_stopped_leaves_rather_than_take_the_next_job(monkeypatch):
    """The trainer turns SIGTERM into KeyboardInterrupt; a pool worker that survived it would be
    handed the next queued job (whether one is queued by then is a race, hence this direct test)."""
    import multiprocessing
    import signal

    def stopped(job, settings):
        raise KeyboardInterrupt("signal 15")

    monkeypatch.setattr(sweep, "run_job", stopped)
    worker = multiprocessing.get_context("fork").Process(target=sweep.run_in_pool_worker,
                                                         args=(None, None))
    worker.start()
    worker.join(60)
    assert worker.exitcode == 128 + signal.SIGTERM


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


# ---- Ray and Slurm (submitit), for real --------------------------------------------------------

@pytest.fixture
def ray_cluster():
    """A one-node Ray cluster owned by this test (2 CPUs: the machine is small and shared)."""
    import ray
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield context.address_info["gcs_address"], ray.get_runtime_context().get_node_id()
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_sweep_runs_each_job_as_a_task_on_the_running_cluster(tmp_path, ray_cluster):
    address, node_id = ray_cluster
    env = {**os.environ, "MLFLOW_TRACKING_URI": "sqlite:///sweep.db"}   # not the cluster's own
    result = subprocess.run([sys.executable, "-m", "repro.cli", *sweep_argv(tmp_path, "--engine", "ray",
                                                                         "--address", address)],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for seed in (0, 1):
        (line,) = job_lines(result.stdout, seed)
        assert f"ray node {node_id} task " in line and "done in" in line
        assert record_file(tmp_path, seed).is_file()
    from mlflow.tracking import MlflowClient
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'sweep.db'}")
    runs = client.search_runs([client.get_experiment_by_name("repro-ptb").experiment_id])
    assert {r.data.tags["seed"] for r in runs} == {"0", "1"}


@pytest.mark.slow
def test_slurm_sweep_through_submitits_local_executor(tmp_path, capsys):
    argv = sweep_argv(tmp_path, "--engine", "slurm", "--submitit-cluster", "local", "--jobs", "2",
                      "--no-mlflow")
    assert main(argv) == 0
    out = capsys.readouterr().out
    for seed in (0, 1):
        (line,) = job_lines(out, seed)
        job_id = re.search(r"submitit local job (\d+)", line).group(1)
        assert int(job_id) != os.getpid()   # a process submitit started, not this one
        assert record_file(tmp_path, seed).is_file()
        assert list((tmp_path / "runs" / "submitit").glob(f"{job_id}_*_log.out"))


def test_a_record_scored_under_another_evaluation_is_re_evaluated_not_retrained(tmp_path, capsys):
    """After an evaluation change (eval.* only) a finished run's training still stands: the plan
    says so, and `--resume` scores its checkpoint again instead of training it again."""
    assert main(sweep_argv(tmp_path, "--jobs", "1", "--no-mlflow", seeds=("0",))) == 0
    before = json.loads(record_file(tmp_path, 0).read_text())
    capsys.readouterr()
    changed = ("--set", "eval.iw_samples=3", "--no-mlflow", "--jobs", "1")
    assert main(sweep_argv(tmp_path, "--plan", *changed, seeds=("0",))) == 0
    assert ("seed0: trained, but its record was scored under another evaluation: trains again "
            "(--resume would only re-evaluate its checkpoint)") in capsys.readouterr().out
    assert main(sweep_argv(tmp_path, "--plan", "--resume", *changed, seeds=("0",))) == 0
    assert "--resume re-evaluates its checkpoint" in capsys.readouterr().out
    assert main(sweep_argv(tmp_path, "--resume", *changed, seeds=("0",))) == 0
    # Scored under other settings, it is a record of its own; the preset's record is kept.
    (rescored,) = (tmp_path / "records" / PAPER).glob(f"{VARIANT}__smoke__seed0__*.json")
    after = json.loads(rescored.read_text())
    assert after["eval"]["iw_samples"] == 3 and before["eval"]["iw_samples"] != 3
    assert after["history"] == before["history"] and after["train"] == before["train"]
    assert json.loads(record_file(tmp_path, 0).read_text()) == before


def test_plan_prices_rows_without_records_at_the_median_run_of_their_paper_and_preset(tmp_path):
    records = tmp_path / "records"
    for seed, wall in enumerate([60.0, 120.0, 6000.0]):     # the median ignores the outlier
        path = records / PAPER / f"rnnlm__smoke__seed{seed}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"wall_time_s": wall}))
    jobs = [sweep.Job(PAPER, "vae-inputless", "smoke", seed, ()) for seed in range(3)]
    jobs.append(sweep.Job("xie2017_noising", "medium-none", "smoke", 0, ()))
    lines = list(sweep.plan_lines(jobs, records, tmp_path / "runs", resume=True))
    assert lines[-3].endswith("; 4 have none to go by")
    assert lines[-2] == (f"plan: at the median of 3 {PAPER} record(s) at smoke (2 min), those 3 "
                         "would take about 0.1 h more")
    # Another paper's records price nothing of this one.
    assert lines[-1].startswith("plan: no xie2017_noising record at smoke to price its 1 job(s) by")


def test_plan_prices_a_row_without_records_by_timing_its_updates_once_per_config(tmp_path, monkeypatch):
    timed = []

    def fake_time_updates(cfg, updates):
        timed.append((cfg.variant, cfg.seed, updates))
        return train_mod.UpdateTiming(seconds_per_update=36.0, updates_per_epoch=250, planned_updates=1000,
                                      choice=Choice("bf16", "as configured"), threads=1)

    monkeypatch.setattr(sweep, "time_updates", fake_time_updates)
    jobs = [sweep.Job(PAPER, "vae-inputless", "smoke", seed, ()) for seed in range(3)]
    lines = list(sweep.plan_lines(jobs, tmp_path / "records", tmp_path / "runs", resume=True,
                                  timed_updates=4))
    assert timed == [("vae-inputless", 0, 4)]      # the seeds of one row are timed once
    assert lines[1] == (f"  {PAPER}/vae-inputless/smoke/seed0: to run [at most 10.0 h of training, "
                        "1000 updates (150.0 min per epoch of 250): 36 s per update at bf16, "
                        "1 thread(s)]")
    assert lines[-1] == ("plan: the 0 to run with earlier records took 0.0 h of wall time between "
                         "them; 3 at most 30.0 h of training by 4 update(s) each timed here "
                         "(validation and the test evaluation not included); 0 could not be timed here")


def test_plan_names_a_row_it_cannot_time_and_why(tmp_path, monkeypatch):
    def unstaged(cfg, updates):
        raise DataError("swda has no 'train' split here")

    monkeypatch.setattr(sweep, "time_updates", unstaged)
    lines = list(sweep.plan_lines([sweep.Job(PAPER, VARIANT, "smoke", 0, ())], tmp_path / "records",
                                  tmp_path / "runs", resume=True, timed_updates=2))
    assert lines[1].endswith("to run [not timed: swda has no 'train' split here]")
    assert lines[-1].endswith("0 at most 0.0 h of training by 2 update(s) each timed here (validation "
                              "and the test evaluation not included); 1 could not be timed here")


def test_time_updates_times_real_updates_of_the_config_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = sweep.Job(PAPER, VARIANT, "smoke", 0, ("train.max_steps=3",)).config()
    timing = train_mod.time_updates(cfg, 2)
    assert timing.seconds_per_update > 0 and timing.updates_per_epoch > 3
    assert timing.planned_updates == 3
    assert timing.training_s == pytest.approx(timing.seconds_per_update * 3)
    assert timing.threads == torch.get_num_threads() and timing.precision in ("fp32", "bf16")
    assert list(tmp_path.iterdir()) == []          # no run folder, checkpoint or record
    uncut = sweep.Job(PAPER, VARIANT, "smoke", 0, ()).config()
    assert train_mod.time_updates(uncut, 1).planned_updates == timing.updates_per_epoch * uncut.train.epochs


def test_plan_with_time_updates_from_the_command_line(tmp_path, capsys):
    assert main(sweep_argv(tmp_path, "--plan", "--time-updates", "2", seeds=("0",))) == 0
    out = capsys.readouterr().out
    assert re.search(r"seed0: to run \[at most [0-9.]+ h of training, \d+ updates \([0-9.]+ min "
                     r"per epoch of \d+\): [0-9.e-]+ s per update at (fp32|bf16), \d+ thread\(s\)\]", out)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "records").exists()


def test_plan_names_each_jobs_state_and_cost_and_runs_nothing(tmp_path, capsys):
    assert main(sweep_argv(tmp_path, "--jobs", "1", "--no-mlflow")) == 0
    # Seed 1 as if killed after its last epoch, before its record: an interrupted checkpoint.
    record_file(tmp_path, 1).unlink()
    (tmp_path / "runs" / PAPER / VARIANT / "smoke" / "seed1" / "record.json").unlink()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    capsys.readouterr()

    assert main(sweep_argv(tmp_path, "--plan", "--resume", seeds=("0", "1", "2"))) == 0
    out = capsys.readouterr().out
    assert "plan: 3 jobs, 1 finished or running elsewhere, 2 to run" in out
    assert re.search(r"seed0: finished: skipped \[\d+ min per run in 1 record\(s\)\]", out)
    assert "seed1: checkpoint at epoch 1/1: resumes" in out
    assert "seed2: to run [" in out
    assert "the 2 to run with earlier records took" in out and "0 have none to go by" in out

    assert main(sweep_argv(tmp_path, "--plan", "--set", "optim.lr=0.002", seeds=("0", "1"))) == 0
    out = capsys.readouterr().out
    # A --set run is another experiment with its own record: the preset's record stays.
    assert re.search(r"seed0: to run \[", out)
    assert "seed1: checkpoint at epoch 1/1 from another config: restarts" in out
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == before   # nothing trained, written or removed

    (tmp_path / "runs" / PAPER / VARIANT / "smoke" / "seed1" / DIVERGED_MARKER).write_text("{}")
    assert main(sweep_argv(tmp_path, "--plan", "--resume", seeds=("1",))) == 0
    assert "seed1: diverged after epoch 1/1: this sweep's attempt replays it" in capsys.readouterr().out


# ---- jobs that start from another run (`Variant.requires`) --------------------------------

LM, INIT = ("yang2017_dilated_cnn", "lstm-lm"), ("yang2017_dilated_cnn", "scnn-vae-init")


def test_a_job_brings_the_jobs_it_requires_ahead_of_it_once():
    first, second = Job(*INIT, "smoke", 0), Job(*INIT, "smoke", 1)
    other = Job(PAPER, VARIANT, "smoke", 0)
    planned = sweep.with_prerequisites([first, other, second, Job(*LM, "smoke", 0)])
    assert planned == [Job(*LM, "smoke", 0), first, other, Job(*LM, "smoke", 1), second]
    assert sweep.waves(planned) == [[Job(*LM, "smoke", 0), other, Job(*LM, "smoke", 1)], [first, second]]


def test_a_parallel_engine_never_starts_a_job_before_the_run_it_starts_from(tmp_path):
    lm, init = Job(*LM, "smoke", 0), Job(*INIT, "smoke", 0)
    calls = []

    def engine(jobs):
        calls.append(list(jobs))
        for job in jobs:
            yield Outcome(job, ok=True)

    summary = run_sweep(sweep.with_prerequisites([init]), tmp_path / "records", engine,
                        log=lambda line: None)
    assert calls == [[lm], [init]] and summary.ok


@pytest.mark.parametrize("stopped", [False, True])
def test_a_job_whose_prerequisite_did_not_finish_is_not_started(tmp_path, stopped):
    """A failed prerequisite fails its dependants without running them; one stopped at a lease's
    deadline leaves them stopped too, for the next `--resume`."""
    lm, init = Job(*LM, "smoke", 0), Job(*INIT, "smoke", 0)
    calls = []

    def engine(jobs):
        calls.append(list(jobs))
        for job in jobs:
            yield Outcome(job, ok=False, stopped=stopped, error="deadline" if stopped else "boom")

    summary = run_sweep([lm, init], tmp_path / "records", engine, log=lambda line: None)
    assert init not in [job for wave in calls for job in wave]
    blocked = [o for o in (summary.stopped if stopped else summary.failed) if o.job == init]
    assert len(blocked) == 1 and lm.name in blocked[0].error and not blocked[0].ok

"""The one training loop, for every paper: read it top to bottom.

config -> corpus -> model (from the registry) -> epochs of updates with validation, checkpoints,
learning-rate decay and early stopping -> test evaluation of the best checkpoint -> run record,
MLflow run and plots. A run directory holds `last.pt` (written atomically every epoch, what
`--resume` restores: model, optimiser, the Polyak average under `optim.polyak`, step, epoch,
RNG state, history, MLflow run id; also written mid-epoch when a `deadline` stops the run, with
the epoch's running sums under `partial_epoch`, so the resumed epoch goes on from that update) and
`best.pt` (the parameters with the best validation objective, `train.select_by`, among the
epochs the model calls `selectable`; without one, the last parameters are tested and the
record says so), and, under `optim.plateau_restores_best`, `best_optimizer.pt` (the optimiser
state of that epoch, which a learning-rate decay restores with the parameters).

Surviving kills: a checkpoint becomes visible only by an atomic rename (a `.part` file left by
a kill mid-write is never read, and is removed at the next start); a run folder is locked while
a process trains in it; a resumed run replays the same batches and random numbers, so it ends
with exactly the parameters of an uninterrupted one; its MLflow run is reopened and any epoch
whose metrics did not reach MLflow before the kill is sent again (see `repro.tracking` for runs
killed and never resumed).

Surviving divergence: a NaN/inf loss or parameter, or a validation objective over
`DIVERGED_RATIO` times its best, stops the run before `last.pt` is overwritten and marks the
folder; resuming it may then change the `RECOVERY_KEYS` (a lower rate, clipping), and the
record lists each such change under `train.recoveries`. Precision is a resource, like the
thread count: any resume may change it, and the history says which ran each epoch.

Speed on the machine at hand: `train.precision=auto` runs bf16 autocast (softmax and losses in
fp32) where a few updates of a copy of the model run at least 1.3x faster in bf16 than in
fp32 (`choose_train_precision`; timed once per machine, torch version and config, cached), and `train.threads`
unset (auto) runs each epoch at the faster of 1 thread and all of torch's threads, timed on the
epoch's first updates (`ThreadChoice`). Either one set explicitly is obeyed. The record
(`train.precision`; each history entry's `precision`, `threads` and probe rates) and the MLflow
params (`train.precision_used`, `train.precision_reason`, `train.bf16_speedup`) say what ran
and why.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
import math
import signal
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from tqdm import tqdm

from repro import precision as precision_mod, records
from repro.averaging import averaged, make_average
from repro.checkpoints import (DIVERGED_MARKER, DeadlineReached, RUNS_DIR, TrainError,
                               load_checkpoint, pick_device, raise_keyboard_interrupt, rng_state,
                               run_dir_for, run_dir_lock, run_owner, save_atomic, set_rng_state)
from repro.config import RunConfig, config_hash, flatten, precision_setting, recovery_changes, validate
from repro.data import load_corpus
from repro.data.sources import DataError
from repro.evaluate import applicable_metrics, evaluate_corpus, require_bf16_support
from repro.plots import plot_training
from repro.registry import get_paper
from repro.schedules import learning_rate
from repro.tracking import Tracker




# Per-epoch validation tracks the bound, KL and active units; MI is left to the test evaluation
# because its pool scan inverts flow posteriors for every pair (minutes per epoch for IAF).
VALIDATION_METRICS = ("elbo", "kl", "au")
# Training batches a precision is timed on under `train.precision=auto` (twice each, after one
# untimed update): enough to average a few batch lengths, few enough to cost seconds.
PRECISION_PROBE = 3
# A validation objective this many times its best so far is a blow-up, not noise: across the 196
# records of December 2026 the largest ratio was 1.10, except a depth-8 IAF run that reached 27.6
# and spent its last 14 epochs recovering (Kingma 2016, commit 5b2bab5).
DIVERGED_RATIO = 4.0


class TrainingDiverged(TrainError):
    """The loss or the parameters became NaN/inf, or the validation objective blew up
    (`DIVERGED_RATIO`); the last good checkpoint is kept, and a resume may change the
    `RECOVERY_KEYS` (the record lists the change)."""


@dataclass
class RunResult:
    record: dict
    record_path: Path | None
    run_dir: Path
    history: list[dict] = field(default_factory=list)


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def build_optimizer(cfg: RunConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    o = cfg.optim
    if o.name == "adam":
        # The fused kernel is 4x faster than the per-tensor loop on CPU (benchmarks/README.md).
        return torch.optim.Adam(model.parameters(), lr=o.lr, eps=o.eps, weight_decay=o.weight_decay,
                                fused=True)
    if o.name == "adamax":
        # Kingma's and Chen's optimiser; PyTorch's betas (0.9, 0.999) are the official IAF
        # code's (beta1 = 0.1, beta2 = 0.001 in its 1 - beta convention).
        return torch.optim.Adamax(model.parameters(), lr=o.lr, eps=o.eps, weight_decay=o.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def params_finite(model: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in model.parameters())


def validation_objective(metrics: dict) -> float:
    """Lower is better: the negative ELBO for latent models, the exact NLL otherwise, and the
    model's own `objective` (an `evaluation_terms` value) where it has neither."""
    for name in ("elbo", "nll"):
        if name in metrics:
            return metrics[name]
    return metrics["objective"]


def train(cfg: RunConfig, *, runs_root: Path = RUNS_DIR, records_root: Path | None = records.RECORDS_DIR,
          resume: bool = False, track: bool = True, progress: bool = True,
          experiment: str | None = None, finish_diverged: bool = False,
          deadline: float | None = None) -> RunResult:
    """Train, evaluate and record one run of `cfg`; see the module docstring. `deadline` (a
    `time.time()` value) stops it cleanly once passed, before the next update or before the test
    evaluation, as `DeadlineReached` (see `_stop_at_deadline`). `experiment`
    names the MLflow experiment (default `repro-<dataset>`). `finish_diverged` ends a run that
    stopped on divergence where it stands, when no remedy gets it past: its best checkpoint is
    scored and the record says, under `train.stopped_by_divergence`, after which epoch and why."""
    validate(cfg)
    variant = get_paper(cfg.paper).variant(cfg.variant)   # unknown names fail before a folder exists
    if not variant.runnable:
        raise TrainError(f"{cfg.paper}/{cfg.variant} is not runnable here: {variant.not_run_reason}")
    run_dir = run_dir_for(cfg, runs_root)
    run_dir.mkdir(parents=True, exist_ok=True)
    with run_dir_lock(run_dir):
        for stale in run_dir.glob("*.part"):   # a kill mid-write; never a checkpoint
            stale.unlink()
        if finish_diverged and not (run_dir / DIVERGED_MARKER).is_file():
            raise TrainError(f"{run_dir} did not stop on divergence: resume it with --resume")
        if finish_diverged and not (run_dir / "last.pt").is_file():
            raise TrainError(f"{run_dir} diverged before its first checkpoint: there is nothing "
                             "to score; start it afresh with a remedy")
        threads_before = torch.get_num_threads()
        try:
            return _train(cfg, run_dir, records_root, resume or finish_diverged, track, progress,
                          experiment or f"repro-{cfg.data.dataset}", finish_diverged, deadline)
        finally:    # auto may have left 1 thread: the caller's next run starts from its own
            torch.set_num_threads(threads_before)


def _train(cfg: RunConfig, run_dir: Path, records_root: Path | None, resume: bool, track: bool,
           progress: bool, experiment: str, finish_diverged: bool = False,
           deadline: float | None = None) -> RunResult:
    started = time.time()
    commit = records.git_commit()
    device = pick_device(cfg.train.device)
    if "bf16" in (precision_setting(cfg.train), precision_setting(cfg.eval)):
        require_bf16_support(device)
    threads = ThreadChoice(cfg.train.threads, device)
    corpus, variant, model, optimizer, average = _build(cfg, run_dir, resume, device)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"
    train_precision = choose_train_precision(cfg, model, corpus, device)
    state, partial_epoch = _restore(cfg, run_dir, resume, finish_diverged, model, optimizer, average,
                                    variant, device)
    _note_commit(state, commit)
    prior_wall = state["wall_time_s"]
    choices = {"train.precision_used": train_precision.precision,
               "train.precision_reason": train_precision.reason,
               "train.bf16_speedup": train_precision.speedup,
               "train.threads_used": "auto" if threads.auto else threads.fixed}
    tracker = Tracker(enabled=track)
    _open_tracking(tracker, cfg, corpus, state, run_dir, experiment, resume, commit, device, choices,
                   first_start=not state["epoch"] and partial_epoch is None)

    status = "FAILED"
    previous_handler = signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    try:
        try:
            _fit(cfg, model, optimizer, corpus, device, state, tracker, last_path, best_path,
                 progress, lambda: prior_wall + (time.time() - started), average,
                 deadline, partial_epoch, train_precision.precision == "bf16", threads)
        except TrainingDiverged as err:
            _mark_diverged(run_dir, state, str(err))
            raise
        (run_dir / DIVERGED_MARKER).unlink(missing_ok=True)
        if deadline is not None and time.time() >= deadline:
            # The test evaluation cannot be checkpointed part-way; `last.pt` already holds the
            # whole training, so a resume goes straight to it.
            raise DeadlineReached(f"deadline reached after training, before the test evaluation; "
                                  f"--resume evaluates {last_path}")
        training = {"state": state, "precision": train_precision.as_dict(),
                    "threads": "auto" if threads.auto else threads.fixed,
                    "final_checkpoint": "best validation" if best_path.is_file() else "last",
                    "wall_time_s": prior_wall + (time.time() - started)}
        record, record_path = _test_and_record(cfg, variant, model, corpus, device, average, tracker,
                                               run_dir, records_root, progress, commit, training)
        status = "FINISHED"
        return RunResult(record, record_path, run_dir, state["history"])
    except (KeyboardInterrupt, DeadlineReached):
        status = "KILLED"
        raise
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        tracker.end(status)


def _build(cfg: RunConfig, run_dir: Path, resume: bool, device):
    """Corpus, variant, model (initialised from another run where the variant says so, on a
    fresh start), optimiser and the Polyak average, all seeded by `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    try:
        corpus = load_corpus(cfg.data)
        corpus.split("train")    # a corpus staged without it (Yahoo, SwDA): say so before training
    except DataError as err:
        raise DataError(f"{cfg.paper}/{cfg.variant} at preset {cfg.preset} is not runnable here: "
                        f"{err}") from err
    variant = get_paper(cfg.paper).variant(cfg.variant)
    model = variant.build(cfg, corpus).to(device)
    if variant.initialise is not None and not (resume and (run_dir / "last.pt").is_file()):
        variant.initialise(model, cfg, run_dir)    # before the Polyak average copies the weights
    optimizer = build_optimizer(cfg, model)
    average = make_average(model, cfg.optim.polyak)
    if average is not None and cfg.optim.plateau_restores_best:
        raise TrainError("optim.polyak with optim.plateau_restores_best is not supported: the "
                         "restored best parameters are averaged ones")
    if cfg.optim.lr_schedule != "constant" and cfg.optim.plateau_decay < 1.0:
        raise TrainError("optim.lr_schedule with optim.plateau_decay is not supported: the "
                         "schedule sets the rate at every update, so a decay would not last")
    return corpus, variant, model, optimizer, average


def _restore(cfg, run_dir: Path, resume: bool, finish_diverged: bool, model, optimizer, average,
             variant, device) -> tuple[dict, dict | None]:
    """The run's state: fresh, or restored from `last.pt` on a resume (model, optimiser, Polyak
    average, RNG, history, any recovery the changed config makes), with the running sums of an
    epoch a deadline stopped part-way."""
    state = {"step": 0, "epoch": 0, "best_val": math.inf, "best_epoch": None, "stale_epochs": 0,
             "history": [], "mlflow_run_id": None, "wall_time_s": 0.0, "done": False}
    last_path = run_dir / "last.pt"
    if not (resume and last_path.is_file()):
        (run_dir / DIVERGED_MARKER).unlink(missing_ok=True)    # from a run this one replaces
        if resume:
            print(f"no checkpoint at {last_path}; starting from scratch")
        return state, None
    ckpt = load_checkpoint(last_path, device)
    changes = _resume_changes(json.loads(ckpt["config"]), cfg, variant.model_config, run_dir)
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    if average is not None:
        average.load_state_dict(ckpt["polyak"])
    set_rng_state(ckpt["rng"])
    state.update(json.loads(ckpt["state"]))
    for entry in state["history"]:      # the model's phase follows from the epochs already run
        model.validated({k.removeprefix("val/"): v for k, v in entry.items() if k.startswith("val/")})
    if finish_diverged:
        _stop_at_divergence(run_dir, state, changes)
    elif changes:
        _recover(run_dir, cfg, optimizer, state, changes)
    return state, ckpt.get("partial_epoch")


def _open_tracking(tracker: Tracker, cfg, corpus, state: dict, run_dir: Path, experiment: str,
                   resume: bool, commit: str, device, choices: dict, first_start: bool) -> None:
    """Start (or reopen, on a resume) the run's MLflow run and send its params, tags, dataset and
    any epoch a kill kept from reaching MLflow."""
    run_name = f"{cfg.paper}/{cfg.variant}/{cfg.preset}/seed{cfg.seed}"
    state["mlflow_run_id"] = tracker.start(experiment, run_name, state["mlflow_run_id"],
                                           owner=run_owner(run_dir), adopt=resume)
    # Again on resume: a kill may have come before they were sent. MLflow refuses a changed
    # value, so a recovery's changes go in the `recoveries` tag instead.
    recoveries = state.get("recoveries", [])
    changed = {key for r in recoveries for key in r["changed"]}
    tracker.log_params({k: v for k, v in flatten(cfg).items() if k not in changed})
    # What auto chose. A resume on another machine may choose otherwise and MLflow refuses a
    # changed param, so the params are the first start's, the tags the latest start's.
    if first_start:
        tracker.log_params(choices)
    tags = {"paper": cfg.paper, "variant": cfg.variant, "method": f"{cfg.paper}/{cfg.variant}",
            "preset": cfg.preset, "seed": cfg.seed, "dataset": cfg.data.dataset,
            "substitute_for": cfg.data.substitute_for or "", "git_commit": commit,
            "data_sha256": corpus.sha256, "device": str(device), **choices,
            **({"recoveries": json.dumps(recoveries)} if recoveries else {})}
    tracker.set_tags(tags)
    tracker.log_corpus(cfg.data, corpus)
    _resend_missing(tracker, [(_epoch_metrics(e), e["step"]) for e in state["history"]])


def _test_and_record(cfg, variant, model, corpus, device, average, tracker: Tracker, run_dir: Path,
                     records_root: Path | None, progress: bool, commit: str,
                     training: dict) -> tuple[dict, Path | None]:
    """Evaluate the selected weights on the test split, write the run record (results folder,
    then run folder) and send the metrics and artifacts to MLflow."""
    best_path = run_dir / "best.pt"
    if best_path.is_file():
        model.load_state_dict(load_checkpoint(best_path, device))
    elif average is not None:
        average.swap()                  # no selected checkpoint: test the averaged weights
    result = evaluate_corpus(model, corpus, cfg.eval, device=device, seed=cfg.seed,
                             batch_size=cfg.data.eval_batch_size, progress=progress)
    test_metrics = result.prefixed(cfg.eval.split)
    extra_paths = []
    if variant.evaluate_extra is not None:
        extra, extra_paths = variant.evaluate_extra(model, corpus, cfg, run_dir)
        test_metrics.update(extra)
    state = training["state"]
    _resend_missing(tracker, [(test_metrics, state["step"])])
    record = records.run_record(cfg, metrics=test_metrics, eval_options=result.options, commit=commit,
                                device=device, data_sha256=corpus.sha256, training=training)
    artifacts = _write_artifacts(cfg, variant, model, corpus, state["history"], run_dir)
    # best.pt beside config.json: `repro eval runs:/<run_id>` rebuilds the run from these.
    checkpoint = [best_path] if best_path.is_file() else []
    for path in [*artifacts, *extra_paths, *checkpoint]:
        tracker.log_artifact(path)
    # The run folder's record says "finished" (`repro runs`), so it is written after the
    # results record: a kill between them leaves the run resumable, and resuming writes both.
    record_path = records.write_record(record, records_root) if records_root else None
    tracker.log_artifact(records.write_json_atomic(record, run_dir / "record.json"))
    return record, record_path


def _fit(cfg, model, optimizer, corpus, device, state, tracker, last_path, best_path,
         progress, wall_clock, average=None, deadline=None, partial_epoch=None, bf16=False,
         threads=None):
    """Epochs of updates; each epoch ends with validation and an atomic checkpoint. Past
    `deadline`, the epoch so far is checkpointed too (`partial_epoch`, which a resume continues)."""
    threads = threads or ThreadChoice(cfg.train.threads, device)
    max_steps = cfg.train.max_steps or math.inf
    while state["epoch"] < cfg.train.epochs and state["step"] < max_steps and not state["done"]:
        epoch_start, epoch = time.time(), state["epoch"]
        model.train()
        sums, seen, updates = {}, Throughput(), 0
        if partial_epoch is not None:
            sums = {k: v.to(device) for k, v in partial_epoch["sums"].items()}
            seen.count, seen.unit, seen.key = (partial_epoch["seen_count"], partial_epoch["seen_unit"],
                                               partial_epoch["seen_key"])
            updates, epoch_start = partial_epoch["updates"], epoch_start - partial_epoch["elapsed_s"]
        saved_updates, partial_epoch = updates, None
        # Under train.threads auto, the first updates of each epoch time 1 thread against all.
        probe = threads.epoch_probe()
        batches = corpus.batches("train", cfg.data.batch_size, shuffle=True, seed=cfg.seed, epoch=epoch)
        updater = Updater(model, optimizer, cfg.optim.grad_clip, device, bf16,
                          RandomBatches(corpus, cfg.data.batch_size, cfg.seed, epoch))
        # An epoch's batches depend only on (seed, epoch), not on the global RNG (restored from
        # the checkpoint): skipping the ones already trained on replays the rest exactly.
        bar = tqdm(itertools.islice(batches, updates, None), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                   disable=not progress, leave=False, mininterval=1.0)
        for batch in bar:
            if state["step"] >= max_steps:
                break
            if deadline is not None and time.time() >= deadline:
                _stop_at_deadline(model, optimizer, cfg, state, average, last_path, wall_clock,
                                  {"sums": sums, "seen_count": seen.count, "seen_unit": seen.unit,
                                   "seen_key": seen.key, "updates": updates,
                                   "elapsed_s": time.time() - epoch_start}
                                  if updates > saved_updates else None)
            batch = batch.to(device)
            timing = probe.before_update() if probe else None
            if cfg.optim.lr_schedule != "constant":     # a function of the step: resumes exactly
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(state["step"], cfg.optim)
            # One optimiser step on the loss, unless the model owns its update (`train_step`).
            terms = model.train_step(batch, state["step"], updater)
            if timing is not None:
                probe.after_update(timing, batch)
            if average is not None:
                average.update()
            state["step"] += 1
            updates += 1
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float()
            seen.add(batch)
            if updates % 50 == 0:
                _check_finite(terms["loss"], model, last_path)
                bar.set_postfix(_postfix(sums, updates, seen, epoch_start), refresh=False)
        _check_finite(sums.get("loss", torch.tensor(0.0)), model, last_path)
        train_metrics = {f"train/{k}": float(v) / max(updates, 1) for k, v in sums.items()}
        with averaged(average):
            val = evaluate_corpus(model, corpus, _validation_eval(cfg), device=device, seed=cfg.seed,
                                  batch_size=cfg.data.eval_batch_size, progress=False,
                                  metrics=_validation_metrics(model))
        val_metrics = val.prefixed("val")
        # `train.select_by=rec`: an autoencoder at KL weight 0 is judged by what it trains on.
        objective = (val.metrics["rec"] if cfg.train.select_by == "rec"
                     else validation_objective(val.metrics))
        # A perplexity past float range means a per-token loss of over 700 nats: a finite loss
        # no trained model reaches, so a blow-up even in the first epoch (no best to compare).
        overflowed = any(math.isinf(val.metrics.get(k, 0.0)) for k in ("ppl", "elbo_ppl"))
        if (not math.isfinite(objective) or overflowed
                or objective > DIVERGED_RATIO * state["best_val"] > 0):
            raise TrainingDiverged(
                f"the validation objective is {objective:.4g} after epoch {epoch + 1} (best so far "
                f"{state['best_val']:.4g}); {_REMEDY.format(last_path)}")
        elapsed = time.time() - epoch_start
        entry = {"epoch": epoch + 1, "step": state["step"], "lr": optimizer.param_groups[0]["lr"],
                 seen.key: float(seen.count) / elapsed, "epoch_time_s": elapsed,
                 "precision": "bf16" if bf16 else "fp32", **threads.epoch_entry(probe),
                 **train_metrics, **val_metrics}
        state["history"].append(entry)
        model.validated(val.metrics)
        with averaged(average):             # best.pt holds what was validated
            _after_validation(cfg, optimizer, state, objective, model, best_path)
        state["epoch"] += 1
        state["wall_time_s"] = wall_clock()
        save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "rng": rng_state(), "config": cfg.to_json(), "state": json.dumps(state),
                     **({"polyak": average.state_dict()} if average is not None else {})},
                    last_path)
        tracker.log_metrics(_epoch_metrics(entry), state["step"])
        if progress:
            print(_epoch_line(entry))


def _stop_at_deadline(model, optimizer, cfg, state, average, last_path, wall_clock,
                      partial: dict | None) -> None:
    """Checkpoint the updates made since the last checkpoint, then stop (`DeadlineReached`).
    Without any (`partial` None) `last.pt` is already current. `partial` holds what the epoch's
    history entry adds up -- the running sums of the loss terms, the tokens or examples seen,
    the updates -- so the resumed epoch reports what an uninterrupted one would."""
    if partial is not None:
        _check_finite(partial["sums"].get("loss", torch.tensor(0.0)), model, last_path)
        state["wall_time_s"] = wall_clock()
        save_atomic({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                     "rng": rng_state(), "config": cfg.to_json(), "state": json.dumps(state),
                     "partial_epoch": partial,
                     **({"polyak": average.state_dict()} if average is not None else {})},
                    last_path)
    raise DeadlineReached(f"deadline reached at update {state['step']} (epoch {state['epoch'] + 1}"
                          f"/{cfg.train.epochs}); --resume continues from {last_path}")


def _epoch_metrics(entry: dict) -> dict:
    """An epoch's numbers for MLflow (the precision's name stays in the record's history)."""
    return {k: v for k, v in entry.items()
            if k not in ("epoch", "step") and isinstance(v, (int, float))}


def _resend_missing(tracker: Tracker, batches: list[tuple[dict, int]]) -> None:
    """Log each (metrics, step) that MLflow does not have yet. A kill between a checkpoint and
    its metrics leaves an epoch unlogged, and the resumed run does not train it again; a kill
    after the test metrics were logged would otherwise log them twice."""
    if not batches:
        return
    have = tracker.logged_steps(next(iter(batches[-1][0])))  # a batch is stored all or nothing
    for metrics, step in batches:
        if have is None or step not in have:
            tracker.log_metrics(metrics, step)


def _validation_metrics(model) -> tuple[str, ...] | None:
    if not model.has_latent:
        return None
    wanted = VALIDATION_METRICS + tuple(model.validation_metrics)
    return tuple(m for m in wanted if m in applicable_metrics(model))


def _validation_eval(cfg):
    """Validation is the single-sample bound (cheap); importance sampling is for the test split."""
    # Under eval.precision=auto, fp32: the bf16 check belongs to the test evaluation, not to
    # every epoch, and best-checkpoint selection then compares like with like.
    setting = precision_setting(cfg.eval)
    return replace(cfg.eval, split="valid", iw_samples=1, iw_chunk=1, mi_au_whole_split=False,
                   precision="fp32" if setting == "auto" else setting, bf16=None)


def _after_validation(cfg, optimizer, state, objective, model, best_path):
    # Under data.train_on_valid the validation split is training data: nothing is selected on it.
    if not model.selectable(state["step"]) or cfg.data.train_on_valid:
        return
    if objective < state["best_val"] - 1e-6:
        state["best_val"], state["best_epoch"], state["stale_epochs"] = objective, state["epoch"] + 1, 0
        save_atomic(model.state_dict(), best_path)
        if cfg.optim.plateau_restores_best:
            save_atomic(optimizer.state_dict(), _best_optimizer_path(best_path))
        return
    state["stale_epochs"] += 1
    o = cfg.optim
    if (o.plateau_decay < 1.0 and state["stale_epochs"] % max(o.plateau_patience, 1) == 0
            and state["epoch"] >= o.plateau_after_epoch):
        rates = [group["lr"] for group in optimizer.param_groups]
        if o.plateau_restores_best:
            _restore_best(model, optimizer, best_path)
        for group, rate in zip(optimizer.param_groups, rates):   # the restored state's rate is stale
            group["lr"] = max(rate * o.plateau_decay, o.min_lr)
        state["lr_decays"] = state.get("lr_decays", 0) + 1
        if cfg.train.stop_after_decays and state["lr_decays"] >= cfg.train.stop_after_decays:
            state["done"] = True
    if cfg.train.early_stop_patience and state["stale_epochs"] >= cfg.train.early_stop_patience:
        state["done"] = True


def _best_optimizer_path(best_path: Path) -> Path:
    return best_path.with_name("best_optimizer.pt")


def _restore_best(model, optimizer, best_path: Path) -> None:
    """Put back the best epoch's parameters and optimiser state (`optim.plateau_restores_best`).
    A decay follows at least one selectable epoch, which wrote both files in this run."""
    device = next(model.parameters()).device
    model.load_state_dict(load_checkpoint(best_path, device))
    optimizer.load_state_dict(load_checkpoint(_best_optimizer_path(best_path), device))


def _clip_gradients(model, max_norm: float) -> dict[str, torch.Tensor]:
    """Clip, and say by how much: the epoch means of these two show whether clipping shaped the
    whole run or only caught the rare spike it is there for (no host sync: they stay tensors)."""
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return {"grad_norm": norm, "clipped": (norm > max_norm).float()}


@dataclass(frozen=True)
class UpdateTiming:
    """What `time_updates` measured: seconds per update at the precision `choice` (what the run
    would pick, and why) and `threads`, and the updates the config plans (every epoch over the
    training split, cut at `train.max_steps`)."""

    seconds_per_update: float
    updates_per_epoch: int
    planned_updates: int
    choice: precision_mod.Choice
    threads: int

    @property
    def precision(self) -> str:
        return self.choice.precision

    @property
    def training_s(self) -> float:
        return self.seconds_per_update * self.planned_updates


def time_updates(cfg: RunConfig, updates: int) -> UpdateTiming:
    """Time `updates` training updates of `cfg` on this machine, after one untimed update (which
    builds the oneDNN primitives), writing nothing: no run folder, checkpoint or record. The
    precision is the one the run would choose; the threads are `train.threads`, or all of
    torch's under auto. A variant that starts from another run's weights starts from its own
    here: an update costs the same. Validation and the test evaluation are not timed."""
    validate(cfg)
    if updates < 1:
        raise ValueError(f"time {updates} updates? give at least 1")
    device = pick_device(cfg.train.device)
    threads_before = torch.get_num_threads()
    threads = cfg.train.threads or threads_before
    torch.set_num_threads(threads)
    try:
        torch.manual_seed(cfg.seed)
        corpus = load_corpus(cfg.data)
        corpus.split("train")
        model = get_paper(cfg.paper).variant(cfg.variant).build(cfg, corpus).to(device)
        optimizer = build_optimizer(cfg, model)
        choice = choose_train_precision(cfg, model, corpus, device)
        per_epoch = sum(1 for _ in corpus.batches("train", cfg.data.batch_size, shuffle=True,
                                                  seed=cfg.seed, epoch=0))
        updater = Updater(model, optimizer, cfg.optim.grad_clip, device, choice.precision == "bf16",
                          RandomBatches(corpus, cfg.data.batch_size, cfg.seed, 0))
        batches = _first_batches(cfg, corpus, device, updates)
        model.train()
        model.train_step(batches[0], 0, updater)
        seconds = _seconds_per_update(model, updater, batches, device)
    finally:
        torch.set_num_threads(threads_before)
    planned = per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        planned = min(planned, cfg.train.max_steps)
    return UpdateTiming(seconds, per_epoch, planned, choice, threads)


class Updater:
    """What one update may use, handed to the model's `train_step` (`repro.model`): the loss at
    a step under the run's precision, an optimiser step, and random training batches. The
    default update is `step(loss(batch, step))`; He et al. 2019's aggressive training steps the
    encoder alone on random batches before each decoder step."""

    def __init__(self, model, optimizer, grad_clip: float | None, device, bf16: bool,
                 random_batches: "RandomBatches"):
        self.model, self.optimizer, self.grad_clip = model, optimizer, grad_clip
        self.device, self.bf16, self.random_batches = device, bf16, random_batches

    def loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        with autocast(self.device, self.bf16):
            return self.model.loss(batch, step)

    def step(self, terms: dict[str, torch.Tensor], only=None) -> dict[str, torch.Tensor]:
        """Backpropagate `terms["loss"]`, clip the gradient norm of the whole model, and step
        the parameters in `only` (default: all). The optimiser keeps its state per parameter and
        passes over those left without a gradient, so stepping a subset is exactly stepping a
        separate optimiser of that subset's own; the clip still counts every gradient, as He et
        al.'s code clips the whole model before stepping either of its two optimisers."""
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if self.grad_clip:
            terms.update(_clip_gradients(self.model, self.grad_clip))
        if only is not None:
            stepped = {id(p) for p in only}
            for p in self.model.parameters():
                if id(p) not in stepped:
                    p.grad = None
        self.optimizer.step()
        return terms

    def random_batch(self):
        return self.random_batches.draw().to(self.device)


class RandomBatches:
    """Training batches drawn uniformly at random from the epoch's own batches, by the global
    RNG (which checkpoints restore), so a resumed run draws the same ones. The epoch's batches
    are listed on the first draw only: a model that never draws costs nothing."""

    def __init__(self, corpus, batch_size: int, seed: int, epoch: int):
        self.corpus, self.batch_size, self.seed, self.epoch = corpus, batch_size, seed, epoch
        self.pool: list = []

    def draw(self):
        if not self.pool:
            self.pool = list(self.corpus.batches("train", self.batch_size, shuffle=True,
                                                 seed=self.seed, epoch=self.epoch))
        return self.pool[int(torch.randint(len(self.pool), ()))]


_REMEDY = ("stopped without overwriting the last good checkpoint ({}). Lower optim.lr, set "
           "optim.grad_clip or set train.precision=fp32, then --resume: the run goes on from that "
           "checkpoint, and its record lists the change under train.recoveries. If no remedy "
           "gets past it, --finish-diverged scores the best checkpoint as it stands.")


def _check_finite(loss: torch.Tensor, model, last_path: Path) -> None:
    if not torch.isfinite(loss).all() or not params_finite(model):
        where = last_path if last_path.is_file() else "none written yet"
        raise TrainingDiverged(f"loss or parameters became NaN/inf; {_REMEDY.format(where)}")


def _resume_changes(stored: dict, cfg: RunConfig, model_config, run_dir: Path) -> dict:
    """The recovery settings a resume changes: none, unless the run stopped on divergence."""
    changes = recovery_changes(stored, cfg, model_config)
    if changes is None or (changes and not (run_dir / DIVERGED_MARKER).is_file()):
        allowed = " (after a divergence, also optim.lr and optim.grad_clip)"
        raise TrainError(f"{run_dir / 'last.pt'} was written by a different config; resume with "
                         f"the same overrides (eval.* may differ){allowed}, or start afresh "
                         "without --resume")
    return changes


def _note_commit(state: dict, commit: str) -> None:
    """The code that trains from here: `commit` (what evaluates and writes the record) need not
    be the one that trained the first epochs of a resumed run, so the record lists each (null:
    the epochs of a checkpoint written before the list was kept)."""
    unknown = [{"commit": None, "from_epoch": 0}] if state["epoch"] else []
    commits = state.setdefault("commits", unknown)
    if not commits or commits[-1]["commit"] != commit:
        commits.append({"commit": commit, "from_epoch": state["epoch"]})


def _mark_diverged(run_dir: Path, state: dict, reason: str) -> None:
    """Mark the folder for a resume with a remedy. Every divergence is kept: one under a remedy
    writes no checkpoint, so the marker is the only trace of the remedies that did not help."""
    path = run_dir / DIVERGED_MARKER
    attempts = json.loads(path.read_text()).get("attempts", []) if path.is_file() else []
    attempts.append({"after_epoch": state["epoch"], "reason": reason,
                     "recoveries": state.get("recoveries", [])})
    path.write_text(json.dumps({"reason": reason, "attempts": attempts}))


def _stop_at_divergence(run_dir: Path, state: dict, changes: dict) -> None:
    if changes:
        raise TrainError(f"finishing a diverged run scores the checkpoint as trained: drop the "
                         f"changed settings ({', '.join(changes)})")
    marker = json.loads((run_dir / DIVERGED_MARKER).read_text())
    state["done"] = True
    state["stopped_by_divergence"] = {"after_epoch": state["epoch"],
                                      "attempts": marker.get("attempts", [marker])}


def _recover(run_dir: Path, cfg: RunConfig, optimizer, state: dict, changes: dict) -> None:
    """Go on from the last good checkpoint of a diverged run with the changed settings, and say
    so in the state the record keeps. The marker stays until the run ends: a kill before the
    next checkpoint leaves the old config in `last.pt`, and resuming must still be allowed."""
    reason = json.loads((run_dir / DIVERGED_MARKER).read_text())["reason"]
    if "optim.lr" in changes:        # the checkpoint's optimiser state carries the old rate
        for group in optimizer.param_groups:
            group["lr"] = cfg.optim.lr
    state.setdefault("recoveries", []).append(
        {"after_epoch": state["epoch"], "changed": changes, "reason": reason})


def choose_train_precision(cfg: RunConfig, model, corpus, device) -> precision_mod.Choice:
    """The precision the updates run in (`repro.precision.resolve`): under auto, timed on whole
    updates of a copy of `model` (`_time_update_precisions`), once per machine and config."""
    updates = None
    if precision_setting(cfg.train) == "auto" and "train" in getattr(corpus, "splits", {}):
        key = config_hash({**cfg.to_dict(), "seed": 0})
        updates = precision_mod.UpdateTimer(key, functools.partial(
            _time_update_precisions, cfg, model, corpus, device))
    return precision_mod.resolve(precision_setting(cfg.train), device, updates=updates)


def _time_update_precisions(cfg: RunConfig, model, corpus, device) -> dict:
    """Seconds per update at fp32 and at bf16 autocast, for a copy of `model` with its own
    optimiser on the first `PRECISION_PROBE` training batches: after one untimed update at each,
    those batches at each in fp32, bf16, bf16, fp32 order (a load that drifts biases neither),
    the faster pass of each kept. One thread: the thread count is chosen apart (`ThreadChoice`),
    and with more, a loaded machine times OpenMP's waits rather than the arithmetic. The run's
    random stream is left as it was."""
    threads = torch.get_num_threads()
    cuda = [device] if device.type == "cuda" else []
    try:
        torch.set_num_threads(1)
        with torch.random.fork_rng(devices=cuda):
            trial = copy.deepcopy(model)
            optimizer = build_optimizer(cfg, trial)
            batches = _first_batches(cfg, corpus, device, PRECISION_PROBE)
            updaters = {name: Updater(trial, optimizer, cfg.optim.grad_clip, device, name == "bf16",
                                      RandomBatches(corpus, cfg.data.batch_size, cfg.seed, 0))
                        for name in ("fp32", "bf16")}
            trial.train()
            for name in ("fp32", "bf16"):     # first calls build oneDNN primitives: not timed
                trial.train_step(batches[0], 0, updaters[name])
            seconds: dict[str, list[float]] = {"fp32": [], "bf16": []}
            for name in ("fp32", "bf16", "bf16", "fp32"):
                seconds[name].append(_seconds_per_update(trial, updaters[name], batches, device))
    finally:
        torch.set_num_threads(threads)
    return {"fp32_s": min(seconds["fp32"]), "bf16_s": min(seconds["bf16"])}


def _first_batches(cfg: RunConfig, corpus, device, count: int) -> list:
    """The first `count` training batches of epoch 0 on `device`, the epoch repeated if short."""
    epoch = corpus.batches("train", cfg.data.batch_size, shuffle=True, seed=cfg.seed, epoch=0)
    return [batch.to(device) for batch in itertools.islice(itertools.cycle(epoch), count)]


def _seconds_per_update(model, updater: "Updater", batches: list, device) -> float:
    started = time.perf_counter()
    for step, batch in enumerate(batches):
        model.train_step(batch, step, updater)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - started) / len(batches)


class ThreadChoice:
    """The torch thread count of the updates. Fixed when `train.threads` is set (or on a GPU,
    whose kernels do not use them); otherwise ("auto") each epoch starts with `PROBE` updates
    alternating 1 thread and all of torch's threads (ABBA order, so a load that drifts during
    the probe biases neither), and the rest of the epoch runs at the count with more tokens per
    second (`repro.precision.choose_threads`). One other busy process on 2 cores made 2 threads
    3.9x slower than idle while 1 thread lost nothing; on an idle machine 2 threads win."""

    PROBE = (1, 0, 0, 1, 1, 0, 0, 1)     # 1: one thread; 0: all of them

    def __init__(self, threads: int | None, device: torch.device):
        self.all = torch.get_num_threads()
        self.auto = threads is None and device.type == "cpu" and self.all > 1
        self.fixed = threads or self.all
        self.probes = 0
        if not self.auto:
            torch.set_num_threads(self.fixed)

    def epoch_probe(self) -> "_ThreadProbe | None":
        """A probe for this epoch's first updates (None when the count is fixed). The process's
        first update creates kernels and buffers, so the first probe runs one more, untimed."""
        if not self.auto:
            return None
        counts = [1 if arm else self.all for arm in self.PROBE]
        self.probes += 1
        return _ThreadProbe(counts if self.probes > 1 else [self.all, *counts],
                            skip=0 if self.probes > 1 else 1)

    def epoch_entry(self, probe: "_ThreadProbe | None") -> dict:
        """The history entry's thread fields: the count the epoch ran at and the probe's rates."""
        if probe is None:
            return {"threads": self.fixed}
        probe.finish()
        rates = probe.rates()
        return {"threads": probe.chosen if probe.chosen is not None else torch.get_num_threads(),
                **{f"threads_probe/{n}": round(rate, 1) for n, rate in rates.items()}}


class _ThreadProbe:
    """Times the updates of one epoch's probe and then sets the faster thread count."""

    def __init__(self, counts: list[int], skip: int):
        self.counts, self.skip, self.index = counts, skip, 0
        self.work: dict[int, float] = {}
        self.seconds: dict[int, float] = {}
        self.chosen: int | None = None

    def before_update(self) -> float | None:
        if self.index >= len(self.counts):
            return None
        torch.set_num_threads(self.counts[self.index])
        return time.perf_counter()

    def after_update(self, started: float, batch) -> None:
        seconds = time.perf_counter() - started
        count = self.counts[self.index]
        if self.index >= self.skip:
            targets = getattr(batch, "num_targets", None)
            work = float(targets.sum()) if targets is not None else batch.size
            self.work[count] = self.work.get(count, 0.0) + work
            self.seconds[count] = self.seconds.get(count, 0.0) + seconds
        self.index += 1
        if self.index == len(self.counts):
            self.finish()

    def finish(self) -> None:
        """Choose from the updates timed so far (an epoch may end before the probe does)."""
        if self.chosen is None and len(self.rates()) > 1:
            self.chosen = precision_mod.choose_threads(self.rates())
            torch.set_num_threads(self.chosen)

    def rates(self) -> dict[int, float]:
        """Tokens (or examples) per second at each thread count timed so far."""
        return {n: self.work[n] / self.seconds[n] for n in sorted(self.work) if self.seconds[n] > 0}


class Throughput:
    """What an epoch got through: tokens for text, examples where a batch has no token count
    (images), so the speed shown is never a constant 0. Tokens add up on the batch's device:
    reading them per batch would sync the host with the GPU every update."""

    def __init__(self):
        self.count, self.unit, self.key = 0, "tok", "tokens_per_s"

    def add(self, batch) -> None:
        if batch.num_targets is None:
            self.unit, self.key = "ex", "examples_per_s"
            self.count += batch.size
        else:
            self.count = self.count + batch.num_targets.sum()


def _postfix(sums, updates, seen: Throughput, epoch_start) -> dict:
    out = {f"{seen.unit}/s": f"{float(seen.count) / max(time.time() - epoch_start, 1e-9):.0f}"}
    for key in ("loss", "rec", "kl", "kl_weight"):
        if key in sums:
            out[key] = f"{float(sums[key]) / updates:.3g}"
    return out


def _epoch_line(entry: dict) -> str:
    keys = [k for k in ("train/loss", "train/kl", "val/elbo", "val/kl", "val/nll") if k in entry]
    body = "  ".join(f"{k} {entry[k]:.3f}" for k in keys)
    speed = (f"{entry['tokens_per_s']:.0f} tok/s" if "tokens_per_s" in entry
             else f"{entry['examples_per_s']:.0f} ex/s")
    return f"epoch {entry['epoch']}: {body}  lr {entry['lr']:.2g}  {speed}  {entry['epoch_time_s']:.0f}s"


def _write_artifacts(cfg, variant, model, corpus, history, run_dir: Path) -> list[Path]:
    paths = [run_dir / "config.json"]
    paths[0].write_text(cfg.to_json())
    if getattr(corpus, "vocab", None) is not None:
        paths.append(run_dir / "vocab.json")
        paths[-1].write_text(corpus.vocab.to_json())
    if history:
        paths.append(plot_training(history, run_dir / "training.png", title=f"{cfg.paper}/{cfg.variant}"))
    if variant.artifacts is not None:
        paths.extend(variant.artifacts(model, corpus, cfg, run_dir))
    return paths

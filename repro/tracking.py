"""MLflow tracking that never costs a run: if the tracking store fails, training goes on, the
run record and checkpoints are still written locally, and a warning says what was lost.

Default store: `sqlite:///mlflow.db` in the working directory (MLflow's own default);
`MLFLOW_TRACKING_URI` overrides it (a tracking server works unchanged). One experiment per
dataset, so every method on PTB sits side by side in the compare view.

What can go wrong, and what happens:
- Several runs share one SQLite store: MLflow makes each session wait up to 20 s for the writer
  lock (its `busy_timeout`); a call that still finds the database locked is retried with
  backoff for `LOCK_RETRY_S` more. A new store's schema is created under a file lock
  (`store_init_lock`).
- The tracking server goes away: MLflow's HTTP client would retry each call for minutes, so a
  short budget is set (`HTTP_BUDGET`, unless the environment sets its own). Calls that fail are
  queued, retried every `retry_after_s` and when the run ends; one warning says what happened.
- The process is killed (SIGKILL, OOM, a lost node): its MLflow run stays RUNNING until the next
  `start` in the same run folder, which reopens it (`--resume`) or marks it KILLED (a fresh
  start). Runs are matched to their folder by the `repro.owner` tag (host and path).

What the MLflow UI shows (checked with MLflow 3.17.2): the suite's experiments are tagged
`mlflow.experimentKind=custom_model_development`, without which MLflow 3 opens an experiment on
its GenAI trace overview rather than its runs, and carry a description and a view of the runs
table with the test metrics as columns (`RUNS_VIEW_KEY`; `repro ui` prints its address for each
experiment, tagging experiments from before these tags existed); each run lists its
corpus, one MLflow dataset input per split (`corpus_datasets`), and holds its best checkpoint
and config as artifacts, so `repro eval runs:/<run_id>` works from the tracking store alone.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

from repro.checkpoints import TrainError
from repro.data.sources import DATASETS


DEFAULT_URI = "sqlite:///mlflow.db"
LOCK_RETRY_S = 60.0
# MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) stall a run for minutes per
# call when the server is down; a few seconds is enough to ride out a restart.
HTTP_BUDGET = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
               "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
OWNER_TAG = "repro.owner"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"   # MLflow 3's "Model training" kind: the runs table
DESCRIPTION_TAG = "mlflow.note.content"        # what the UI shows as the experiment's description
# A view of the runs table with the test metrics as columns, stored as MLflow stores the views
# its "Share" button makes (an experiment tag read through `?viewStateShareKey=`): MLflow 3
# hides metric columns until chosen. A version that cannot read the view says so and shows the
# experiment's page.
RUNS_VIEW_KEY = "repro-test-metrics"
RUNS_VIEW_TAG = f"mlflow.sharedViewState.{RUNS_VIEW_KEY}"
RUNS_VIEW_COLUMNS = ("attributes.`Dataset`", "metrics.`test/nll`", "metrics.`test/kl`",
                     "metrics.`test/mi`", "metrics.`test/au`")
# The experiments the suite creates (`repro-<dataset>`, `benchmark-<dataset>`): `repro ui` tags
# the ones a store made before the tags existed, and leaves other experiments alone.
SUITE_EXPERIMENT_PREFIXES = ("repro-", "benchmark-")
# MLflow's SQL stores keep a dataset digest in 36 characters; the full sha256 is in its profile.
DIGEST_CHARS = 16
CHECKPOINT_ARTIFACTS = ("config.json", "best.pt")   # what `load_trained` needs of a run folder
RESCORED_TAG = "repro.rescored_by"       # the commit of the latest `repro eval --record`
# Errors that a retry cannot fix (a bad value, a deleted run): the call is dropped, not queued.
PERMANENT_ERRORS = {"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "RESOURCE_ALREADY_EXISTS",
                    "INVALID_STATE", "BAD_REQUEST", "MALFORMED_REQUEST", "NOT_FOUND",
                    "PERMISSION_DENIED", "UNAUTHENTICATED"}
log = logging.getLogger("repro.tracking")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


@contextlib.contextmanager
def store_init_lock(uri: str):
    """Held while a client opens a SQLite store. Opening a new store creates and migrates its
    schema, and MLflow's tracking store does that without a lock: runs started together on a
    new store failed with "table _alembic_tmp_latest_metrics already exists" or "duplicate
    column name" and lost their tracking. A file lock per database serialises the migration."""
    if not uri.startswith("sqlite:///") or os.name == "nt":
        yield
        return
    db = Path(uri[len("sqlite:///"):].split("?", 1)[0]).resolve()
    digest = hashlib.sha256(str(db).encode()).hexdigest()[:16]
    with open(Path(tempfile.gettempdir()) / f"repro-mlflow-init-{digest}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _is_lock_error(err: Exception) -> bool:
    text = str(err).lower()
    return "database is locked" in text or "database is busy" in text


def _is_insert_race(err: Exception) -> bool:
    """Two runs logging the same new dataset at once: both look it up, both insert, and the
    second insert breaks the store's unique key. Sent again, the call finds the first's row."""
    return "unique constraint failed" in str(err).lower()


def _is_permanent(err: Exception) -> bool:
    return getattr(err, "error_code", None) in PERMANENT_ERRORS


def log_rescoring(run_id: str, metrics: dict[str, float], commit: str) -> bool:
    """Send a re-scored run's test metrics (`repro eval --record`) to its MLflow run, at the step
    its test metrics were logged at and a later time: the run page and the compare view show the
    latest value, and the replaced ones stay in each metric's history. The run is tagged with
    the re-scoring commit. False, with a warning, when the store or the run cannot be reached:
    the record, already written, is what the tables read."""
    try:
        from mlflow.entities import Metric, RunTag
        from mlflow.tracking import MlflowClient
        client = MlflowClient(tracking_uri())
        step = max((m.step for key in metrics for m in client.get_metric_history(run_id, key)),
                   default=0)
        now = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()],
                         tags=[RunTag(RESCORED_TAG, commit)])
    except Exception as err:  # noqa: BLE001 — an unreachable store must not undo the re-scoring
        warnings.warn(f"MLflow run {run_id} was not updated with the re-scored metrics ({err}); "
                      "the record holds them", stacklevel=2)
        return False
    return True


def experiment_description(name: str) -> str:
    """The description the suite gives experiment `name`, naming its benchmark or its corpus and
    the papers evaluated on it."""
    kind, _, dataset = name.partition("-")
    corpus = DATASETS[dataset].description if dataset in DATASETS else (
        "He et al. 2019's synthetic corpus (sentences from a random LSTM with a known 2-D latent)"
        if dataset == "synthetic" else dataset)
    if kind == "benchmark":
        return (f"repro cross-method benchmark on {corpus}: every sentence-level latent-variable "
                "method under one protocol (repro/benchmark.py), one run per method and seed; "
                f"group by the `method` tag. Table: `results/benchmark_{dataset}.md`.")
    if kind == "repro":
        return (f"repro runs on {corpus}: one run per paper, variant, preset and seed (tags "
                "`paper`, `variant`, `preset`, `seed`); metrics test/nll (IW, nats per example), "
                "test/kl, test/mi, test/au. Tables: `results/<paper>.md`.")
    return f"repro runs ({name})"


def missing_experiment_tags(experiment) -> dict[str, str]:
    """The suite's experiment tags that `experiment` (an MLflow `Experiment`) lacks. A kind,
    description or view already there, set by the suite or by hand in the UI, is kept."""
    return {key: value for key, value in experiment_tags(experiment.name).items()
            if key not in experiment.tags}


def experiment_tags(name: str) -> dict[str, str]:
    """The tags the suite gives experiment `name`: its kind, description and runs view."""
    return {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, DESCRIPTION_TAG: experiment_description(name),
            RUNS_VIEW_TAG: json.dumps({"selectedColumns": list(RUNS_VIEW_COLUMNS)})}


def experiment_views(uri: str | None = None) -> list[tuple[str, str]]:
    """`[(experiment name, route)]` for the store's experiments that the suite created or that
    hold runs: the route (`#/experiments/<id>/runs...`, to append to the UI's address) of each
    one's runs table, in the suite's view (`RUNS_VIEW_KEY`) where it has it. The suite's
    experiments that lack its tags (a store older than them) are tagged first, so that the UI
    opens them on their runs."""
    from mlflow.tracking import MlflowClient
    uri = uri or tracking_uri()
    with store_init_lock(uri):
        client = MlflowClient(uri)
    views = []
    for experiment in client.search_experiments():
        tags = dict(experiment.tags)
        if experiment.name.startswith(SUITE_EXPERIMENT_PREFIXES):
            for key, value in missing_experiment_tags(experiment).items():
                client.set_experiment_tag(experiment.experiment_id, key, value)
                tags[key] = value
        elif not client.search_runs([experiment.experiment_id], max_results=1):
            continue         # MLflow's empty "Default" experiment
        route = f"/#/experiments/{experiment.experiment_id}/runs"
        views.append((experiment.name, route + (f"?viewStateShareKey={RUNS_VIEW_KEY}"
                                                if RUNS_VIEW_TAG in tags else "")))
    return views


def corpus_datasets(data_cfg, corpus) -> list:
    """The run's corpus as MLflow dataset inputs (`mlflow.entities.DatasetInput`), one per split,
    the split in the `mlflow.data.context` tag: the runs table's Dataset column and its dataset
    filter read these. Each split is its own dataset, since MLflow keeps one input per dataset
    name and digest. Its digest is the sha256 of its file where one file with a published
    sha256 holds it (what `sha256sum` prints), else the sha256 of "<corpus digest>:<split>";
    MLflow shows the first `DIGEST_CHARS` characters. The profile holds the full digest, the
    corpus digest (the run's `data_sha256` tag and record field), the split's size and, for a
    substitute corpus, the paper's dataset it stands in for. The source is the split's public
    URL, or for a generated corpus the module that generates it."""
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT


    class CorpusSplit(MetaDataset):
        def __init__(self, source, name, digest, profile):
            self._profile = profile
            super().__init__(source, name=name, digest=digest)

        @property
        def profile(self):
            return self._profile

        def to_dict(self):
            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    name = data_cfg.dataset
    spec = DATASETS.get(name)
    inputs = []
    for split, examples in corpus.splits.items():
        files = [f for f in spec.files if f.split == split] if spec else []
        if len(files) == 1 and files[0].sha256:
            digest = files[0].sha256
        else:
            digest = hashlib.sha256(f"{corpus.sha256}:{split}".encode()).hexdigest()
        urls = list(dict.fromkeys(f.url for f in files if f.url))
        if urls:
            source = HTTPDatasetSource(urls[0])
        else:
            source = CodeDatasetSource({"generator": f"repro.data.{name}",
                                        "config_sha256": corpus.sha256})
        profile = {"split": split, "sha256": digest, "corpus_sha256": corpus.sha256,
                   "examples": len(examples), **({"urls": urls} if len(urls) > 1 else {}),
                   **({"substitute_for": data_cfg.substitute_for,
                       "note": f"{name} stands in for {data_cfg.substitute_for}, the paper's "
                               "dataset"} if data_cfg.substitute_for else {})}
        dataset = CorpusSplit(source, name, digest[:DIGEST_CHARS], profile)
        inputs.append(DatasetInput(dataset._to_mlflow_entity(),
                                   [InputTag(MLFLOW_DATASET_CONTEXT, split)]))
    return inputs


def download_run(uri: str, dest: Path) -> Path:
    """The run folder `load_trained` reads -- `config.json`, `best.pt` and, where logged,
    `record.json` -- rebuilt in `dest` from the artifacts of the MLflow run `runs:/<run_id>`
    on the tracking store alone. A run that cannot be reached or lacks them is a `TrainError`
    whose one line says which."""
    import mlflow.artifacts
    from mlflow.tracking import MlflowClient

    run_id = uri[len("runs:/"):].strip("/").split("/", 1)[0]
    if not run_id:
        raise TrainError(f"{uri!r} names no run: give runs:/<run_id> (the run page's Run ID)")
    uri_store = tracking_uri()
    try:
        with store_init_lock(uri_store):
            names = {a.path for a in MlflowClient(uri_store).list_artifacts(run_id)}
    except Exception as err:  # noqa: BLE001 — one line, whatever the store says
        why = str(err).splitlines()[0] if str(err) else ""
        raise TrainError(f"MLflow run {run_id} cannot be read from {uri_store} "
                         f"({type(err).__name__}: {why}); set MLFLOW_TRACKING_URI to the store "
                         "that holds it") from err
    missing = [n for n in CHECKPOINT_ARTIFACTS if n not in names]
    if missing:
        raise TrainError(f"MLflow run {run_id} has no {' or '.join(missing)} artifact: it was "
                         "trained before checkpoints were logged, or has not finished; evaluate "
                         "its run folder instead")
    dest.mkdir(parents=True, exist_ok=True)
    # MLflow's per-file progress bars would bury the one line that says what was fetched.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in [*CHECKPOINT_ARTIFACTS, *(["record.json"] if "record.json" in names else [])]:
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=name,
                                            dst_path=str(dest), tracking_uri=uri_store)
    print(f"MLflow run {run_id}: best.pt and config.json fetched from {uri_store}", file=sys.stderr)
    return dest


class Tracker:
    """One MLflow run. Only `start` talks to the store synchronously; logging calls are queued
    while the store is unreachable and sent when it is back (in order), never raising."""

    def __init__(self, enabled: bool = True, retry_after_s: float = 30.0):
        self.enabled = enabled
        self.run_id: str | None = None
        self.retry_after_s = retry_after_s
        self._client = None
        self._pending: list[tuple[str, str, tuple, dict]] = []
        self._down = False
        self._retry_at = 0.0

    # -- talking to the store ---------------------------------------------------------------

    def _warn(self, message: str) -> None:
        warnings.warn(message, RuntimeWarning, stacklevel=4)

    def _disable(self, what: str, err: Exception) -> None:
        self._warn(f"MLflow tracking failed while {what} ({type(err).__name__}: {err}); training "
                   "continues and the run record and checkpoints are still written locally, but "
                   "this run has no MLflow entry.")
        self.enabled = False

    def _invoke(self, method: str, *args, **kwargs):
        """One client call; SQLite writer contention between runs (a locked store, or two runs
        inserting the same dataset row) is waited out with backoff."""
        delay, deadline = 0.1, time.monotonic() + LOCK_RETRY_S
        while True:
            try:
                return getattr(self._client, method)(*args, **kwargs)
            except Exception as err:  # noqa: BLE001
                if not (_is_lock_error(err) or _is_insert_race(err)) or time.monotonic() > deadline:
                    raise
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 2.0)

    def _send(self, what: str, method: str, *args, **kwargs) -> None:
        """Queue a logging call and send the queue, unless the store failed less than
        `retry_after_s` ago (then the call waits for the next attempt or for `end`)."""
        if not self.enabled or self.run_id is None:
            return
        self._pending.append((what, method, args, kwargs))
        if time.monotonic() >= self._retry_at:
            self._flush()

    def _flush(self) -> bool:
        while self._pending:
            what, method, args, kwargs = self._pending[0]
            try:
                self._invoke(method, *args, **kwargs)
            except Exception as err:  # noqa: BLE001 — any store failure must not stop training
                if _is_permanent(err):
                    self._pending.pop(0)
                    self._warn(f"MLflow refused {what} ({type(err).__name__}: {err}); skipped.")
                    continue
                if not self._down:
                    self._warn(
                        f"MLflow tracking failed while {what} ({type(err).__name__}: {err}); "
                        "training continues and the run record and checkpoints are still written "
                        f"locally; MLflow calls are queued and retried every {self.retry_after_s:.0f}s "
                        "and when the run ends.")
                self._down, self._retry_at = True, time.monotonic() + self.retry_after_s
                return False
            self._pending.pop(0)
        if self._down:
            self._down = False
            log.warning("MLflow tracking is back; queued calls were sent")
        return True

    # -- the run ----------------------------------------------------------------------------

    def start(self, experiment: str, run_name: str, run_id: str | None = None, *,
              owner: str | None = None, adopt: bool = False) -> str | None:
        """Open the run and return its id (None when tracking is off or the store is unusable).

        `run_id` (from a checkpoint) is reopened, so a resumed run is not duplicated; failing
        that, with `adopt`, the newest unfinished run tagged with `owner` (a run killed before
        its first checkpoint); otherwise a new run is created. The caller holds `owner`'s run
        folder exclusively, so any other of its runs still marked RUNNING was killed: it is
        marked KILLED.
        """
        if not self.enabled:
            return None
        uri = tracking_uri()
        if uri.startswith(("http://", "https://")):
            for key, value in HTTP_BUDGET.items():
                os.environ.setdefault(key, value)
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
            mlflow.set_tracking_uri(uri)
            with store_init_lock(uri):
                self._client = MlflowClient(uri)
            exp_id = self._experiment_id(experiment)
            owned = self._owned_runs(exp_id, owner)
            reopen = self._existing(run_id) if run_id else None
            if reopen is None and adopt:
                reopen = next((r.info.run_id for r in owned if r.info.status != "FINISHED"), None)
            for run in owned:
                if run.info.status == "RUNNING" and run.info.run_id != reopen:
                    self._invoke("set_terminated", run.info.run_id, "KILLED")
                    print(f"MLflow run {run.info.run_id} was left RUNNING by a killed process; "
                          "marked KILLED")
            if reopen:
                self._invoke("update_run", reopen, status="RUNNING")
                self.run_id = reopen
            else:
                tags = {OWNER_TAG: owner} if owner else None
                self.run_id = self._invoke("create_run", exp_id, run_name=run_name,
                                           tags=tags).info.run_id
        except Exception as err:  # noqa: BLE001
            self._disable("opening the run", err)
            return None
        return self.run_id

    def _experiment_id(self, name: str) -> str:
        exp = self._invoke("get_experiment_by_name", name)
        if exp is None:
            try:
                return self._invoke("create_experiment", name, tags=experiment_tags(name))
            except Exception:  # noqa: BLE001 — another run created it first
                exp = self._invoke("get_experiment_by_name", name)
                if exp is None:
                    raise
        for key, value in missing_experiment_tags(exp).items():   # a store older than the tags
            self._invoke("set_experiment_tag", exp.experiment_id, key, value)
        return exp.experiment_id

    def _owned_runs(self, exp_id: str, owner: str | None) -> list:
        if not owner or "'" in owner:
            return []
        return self._invoke("search_runs", [exp_id], filter_string=f"tags.`{OWNER_TAG}` = '{owner}'",
                            order_by=["attributes.start_time DESC"], max_results=100)

    def _existing(self, run_id: str) -> str | None:
        try:
            return self._invoke("get_run", run_id).info.run_id
        except Exception as err:  # noqa: BLE001
            if not _is_permanent(err):
                raise
            print(f"MLflow run {run_id} named by the checkpoint is not in {tracking_uri()}; "
                  "starting a new MLflow run for this training run")
            return None

    def logged_steps(self, key: str) -> set[int] | None:
        """Steps at which `key` is already recorded (None if unknown): what a resumed run need
        not send again."""
        if not self.enabled or self.run_id is None or self._down:
            return None
        try:
            return {m.step for m in self._invoke("get_metric_history", self.run_id, key)}
        except Exception:  # noqa: BLE001
            return None

    def log_params(self, params: dict) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._send("logging params", "log_batch", self.run_id, params=items[i:i + 100])

    def set_tags(self, tags: dict) -> None:
        if not self.enabled:
            return
        from mlflow.entities import RunTag
        self._send("setting tags", "log_batch", self.run_id,
                   tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self._send("logging metrics", "log_batch", self.run_id, metrics=items[i:i + 500])

    def log_corpus(self, data_cfg, corpus) -> None:
        """The corpus as dataset inputs (`corpus_datasets`). Sent again on resume, which the
        store ignores: it keeps one input per dataset name and digest."""
        if not self.enabled or self.run_id is None:
            return
        try:
            inputs = corpus_datasets(data_cfg, corpus)
        except Exception as err:  # noqa: BLE001 — a corpus MLflow cannot describe still trains
            self._warn(f"the corpus was not logged as an MLflow dataset ({type(err).__name__}: "
                       f"{err}); its digest is still the run's data_sha256 tag")
            return
        self._send("logging the corpus as dataset inputs", "log_inputs", self.run_id, datasets=inputs)

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        self._send("uploading an artifact", "log_artifact", self.run_id, str(path), subdir)

    def end(self, status: str = "FINISHED") -> None:
        """Send what is queued and close the run as FINISHED, FAILED or KILLED."""
        if not self.enabled or self.run_id is None:
            return
        self._pending.append(("closing the run", "set_terminated", (self.run_id, status), {}))
        if not self._flush():
            self._warn(f"{len(self._pending)} MLflow call(s) for run {self.run_id} could not be "
                       "sent, the last being its close: the run record and checkpoints are "
                       "complete, its MLflow entry is not. The next `repro train` in the same run "
                       "folder marks the run KILLED (or reopens it with --resume).")

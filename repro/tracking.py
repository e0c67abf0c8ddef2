"""MLflow tracking that never costs a run: if the tracking store fails, training goes on, the
run record and checkpoints are still written locally, and a warning says what was lost.

Default store: `sqlite:///mlflow.db` in the working directory (MLflow's own default);
`MLFLOW_TRACKING_URI` overrides it (a tracking server works unchanged). One experiment per
dataset, so every method on PTB sits side by side in the compare view.
"""
from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path

DEFAULT_URI = "sqlite:///mlflow.db"
log = logging.getLogger("repro.tracking")


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI", DEFAULT_URI)


class Tracker:
    """One MLflow run; every call is best-effort after the first failure is reported."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.run_id: str | None = None
        self._client = None

    def _fail(self, what: str, err: Exception) -> None:
        warnings.warn(f"MLflow tracking failed while {what} ({type(err).__name__}: {err}); "
                      "training continues and the run record and checkpoints are still written "
                      "locally, but this run's MLflow entry is incomplete.", RuntimeWarning, stacklevel=3)
        self.enabled = False

    def _call(self, what: str, method: str, *args, force: bool = False, **kwargs):
        if not (self.enabled or (force and self._client is not None)):
            return None
        for attempt in range(3):
            try:
                return getattr(self._client, method)(*args, **kwargs)
            except Exception as err:  # noqa: BLE001 — any store failure must not stop training
                if "locked" in str(err).lower() and attempt < 2:
                    time.sleep(0.5 * (attempt + 1))  # SQLite writer contention between runs
                    continue
                self._fail(what, err)
                return None

    def start(self, experiment: str, run_name: str, run_id: str | None = None) -> str | None:
        """Start a run, or reopen `run_id` when resuming (so a resumed run is not duplicated)."""
        if not self.enabled:
            return None
        try:
            import mlflow
            from mlflow.tracking import MlflowClient
            mlflow.set_tracking_uri(tracking_uri())
            self._client = MlflowClient(tracking_uri())
        except Exception as err:  # noqa: BLE001
            self._fail("connecting", err)
            return None
        if run_id:
            self._call("reopening the run", "update_run", run_id, status="RUNNING")
            self.run_id = run_id if self.enabled else None
            return self.run_id
        exp = self._call("looking up the experiment", "get_experiment_by_name", experiment)
        exp_id = exp.experiment_id if exp else self._call(
            "creating the experiment", "create_experiment", experiment)
        if exp_id is None:
            return None
        run = self._call("creating the run", "create_run", exp_id, run_name=run_name)
        self.run_id = run.info.run_id if run else None
        return self.run_id

    def log_params(self, params: dict) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param
        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self._call("logging params", "log_batch", self.run_id, params=items[i:i + 100])

    def set_tags(self, tags: dict) -> None:
        if not self.enabled:
            return
        from mlflow.entities import RunTag
        self._call("setting tags", "log_batch", self.run_id,
                   tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric
        now = int(time.time() * 1000)
        items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
        for i in range(0, len(items), 500):
            self._call("logging metrics", "log_batch", self.run_id, metrics=items[i:i + 500])

    def log_artifact(self, path: Path, subdir: str | None = None) -> None:
        self._call("uploading an artifact", "log_artifact", self.run_id, str(path), subdir)

    def end(self, status: str = "FINISHED") -> None:
        """Close the run as FINISHED, FAILED or KILLED (never left RUNNING)."""
        if self.run_id:
            # Tried even after an earlier failure, so a run is not left RUNNING if the store is back.
            self._call("closing the run", "set_terminated", self.run_id, status, force=True)

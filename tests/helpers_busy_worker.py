"""A pool worker that never returns (an evaluation that outlives a sweep's deadline), for the
test of `repro.sweep.run_local`'s stop after `DEADLINE_GRACE_S`. Imported by the spawned worker,
so it lives in a module, not in the test."""
import os
import time
from pathlib import Path


def busy_until_stopped(job, settings):
    Path(settings.runs_dir, f"worker-{job.seed}.pid").write_text(str(os.getpid()))
    while True:
        time.sleep(0.1)

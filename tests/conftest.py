"""Shared test set-up: the real data store, a private cache and MLflow store per session."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from repro.evaluate import cpu_has_bf16

# Test models are tiny: one intra-op thread is as fast and does not fight other processes.
# (It also makes `train.threads` auto a fixed 1: its probe needs more than one thread.)
torch.set_num_threads(1)
# What `precision=auto` means here, without timing: the suite's numbers must not depend on how
# fast this machine's bf16 is. tests/test_precision_threads.py unsets it to test auto itself.
os.environ["REPRO_PRECISION"] = "fp32"

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Absolute, since the README's command gives a relative path and some tests start trainings
# in child processes whose working folder is elsewhere.
os.environ["REPRO_DATA_DIR"] = str(Path(os.environ.get("REPRO_DATA_DIR") or SHARED_DATA).resolve())


def pytest_collection_modifyitems(items):
    """Skip bf16 numeric checks where oneDNN has no native bf16 kernels (they would only test
    emulation), and CUDA checks where no CUDA device is visible."""
    if not torch.cuda.is_available():
        no_cuda = pytest.mark.skip(reason="no CUDA device visible (torch.cuda.is_available() is False)")
        for item in items:
            if "needs_cuda" in item.keywords:
                item.add_marker(no_cuda)
    if cpu_has_bf16():
        return
    skip = pytest.mark.skip(reason="this CPU has no native bf16 (AVX-512 bf16 or AMX)")
    for item in items:
        if "needs_cpu_bf16" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def _isolated_stores(tmp_path_factory):
    """Keep tests away from the user's cache and MLflow database."""
    root = tmp_path_factory.mktemp("stores")
    old = {k: os.environ.get(k) for k in ("REPRO_CACHE_DIR", "MLFLOW_TRACKING_URI")}
    os.environ["REPRO_CACHE_DIR"] = str(root / "cache")
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    yield
    for key, value in old.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value

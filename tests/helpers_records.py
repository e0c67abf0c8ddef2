"""The committed records of a paper's real `cpu` run, for the tests that check its claim there."""
import json
from pathlib import Path

import pytest

RECORDS = Path(__file__).resolve().parents[1] / "results" / "records"


def cpu_record(paper: str, variant: str, required: bool = True) -> dict:
    """`variant`'s seed-0 `cpu` record (metrics, history, wall time). A missing record fails the
    test where the run has been committed (`required`), and skips it where the run is still to
    be done."""
    path = RECORDS / paper / f"{variant}__cpu__seed0.json"
    if not path.is_file():
        message = f"{path} is missing: run `repro reproduce {paper} --preset cpu` and commit its records"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    return json.loads(path.read_text())


def cpu_metrics(paper: str, variant: str, required: bool = True) -> dict:
    """The metrics of `variant`'s seed-0 `cpu` record (`cpu_record`)."""
    return cpu_record(paper, variant, required)["metrics"]

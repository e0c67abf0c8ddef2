"""The MLflow UI as a researcher's browser shows it (issue 48): `repro ui` serves a store holding
one smoke run, headless Chromium loads the experiment's runs view at the address `repro ui`
printed, and the page must list the run and its `test/kl` column with the recorded value.

Needs Debian's `chromium` (`.ci/run` installs it where apt is available); without it the test
is skipped and says so."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from repro.config import apply_overrides
from repro.data.sources import DATASETS
from repro.tracking import DIGEST_CHARS

pytestmark = pytest.mark.slow

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--window-size=1600,1000"]


def _browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("browser test skipped: no Chromium on PATH (looked for "
                f"{', '.join(BROWSERS)}); install Debian's package with `apt-get install -y "
                "chromium` (.ci/run does so where apt is available)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, proc: subprocess.Popen, log, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"repro ui exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"repro ui did not answer {url} in {timeout}s:\n{log.read_text()[-3000:]}")


def test_the_runs_view_lists_the_run_and_its_test_kl_in_chromium(tmp_path, monkeypatch):
    browser = _browser()
    from repro import train as train_mod
    from repro.registry import resolve
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    _, cfg = resolve("bowman2016", "vae-anneal-worddrop", "smoke")
    cfg = apply_overrides(cfg, ["train.epochs=1", "train.threads=1"])
    result = train_mod.train(cfg, runs_root=tmp_path / "runs", records_root=None, track=True,
                             progress=False)
    run_name = "bowman2016/vae-anneal-worddrop/smoke/seed0"

    port = _free_port()
    log = tmp_path / "ui.log"
    with open(log, "w") as handle:
        ui = subprocess.Popen([sys.executable, "-m", "repro.cli", "ui", "--port", str(port)],
                              stdout=handle, stderr=subprocess.STDOUT, cwd=tmp_path,
                              env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
                              start_new_session=True)   # its own group: the server's workers end with it
    try:
        _wait_for(f"http://127.0.0.1:{port}/health", ui, log)
        [url] = re.findall(r"^  repro-ptb: (\S+)$", log.read_text(), re.M)
        assert url.startswith(f"http://127.0.0.1:{port}/#/experiments/") and "/runs" in url
        with tempfile.TemporaryDirectory() as profile:
            page = subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                   "--virtual-time-budget=30000", "--dump-dom", url],
                                  capture_output=True, text=True, timeout=240)
        dom = page.stdout
        assert page.returncode == 0 and "</html>" in dom, page.stderr[-3000:]
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
            ui.wait(30)

    assert run_name in dom, dom[-3000:]
    # The column itself (its header cell and the run's cell), not the words in the description.
    assert re.search(r'role="columnheader"[^>]*col-id="metrics\.`test/kl`"', dom), dom[-3000:]
    cell = re.search(r'id="cell-metrics\.`test/kl`-\d+"[^>]*>([^<]+)<', dom)
    assert cell and float(cell.group(1)) == pytest.approx(result.record["metrics"]["test/kl"])
    # The corpus in the Dataset column: the test split's file digest, as the run's inputs hold it.
    [test_file] = [f for f in DATASETS["ptb"].files if f.split == "test"]
    assert f"ptb ({test_file.sha256[:DIGEST_CHARS]})" in dom

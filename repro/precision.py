"""Precision and thread count chosen by measurement on the machine at hand.

The same code meets CPUs whose bf16 matrix products are 2x faster than fp32 (AVX-512 bf16 on
recent AMD EPYC), faster still (Intel AMX) or slower (an AVX-512 bf16 Xeon without AMX measured
0.57x), and machines shared with other jobs, where two OpenMP threads can run 10x slower than
one. So `train.precision=auto` times whole training updates of the run's own model at fp32 and
at bf16 (`repro.train` does the updates, on a copy, outside the run's random stream) and uses
bf16 autocast only where an update is at least `BF16_MIN_SPEEDUP` times faster. Matrix products
alone mislead for some models: on an AMD EPYC, the largest linear layer of the MNIST conv VAEs
ran 1.70x faster in bf16 while their whole updates ran only 1.08-1.51x faster
(`benchmarks/precision_check.py`). Evaluation (`repro.evaluate.eval_precision`) times and
checks its own IW-NLL on a prefix of the split at each precision. Update timings are cached per
machine, torch version and config in the user cache (`precision.json`), so the seconds are
spent once.
`train.threads=None` (auto) times updates at 1 thread and at all of torch's threads and keeps
the faster, again at every epoch (the load changes; see `repro.train`).

The decisions are pure functions of the timings (`choose_by_updates`, `choose_threads`, and
`repro.evaluate.choose_eval_precision`), tested on made-up numbers.
"""
from __future__ import annotations

import json
import os
import platform
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from repro.data.sources import cache_dir



# bf16 pays for its casts and its coarser sums only when clearly faster: below this the gain is
# within the spread of repeated timings on a loaded machine.
BF16_MIN_SPEEDUP = 1.3
CACHE_FILE = "precision.json"
_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


@dataclass
class Choice:
    """What ran and why: `precision` "fp32" or "bf16"; `speedup` the measured bf16/fp32 ratio
    (fp32 time over bf16 time, None where nothing was timed); `reason` one line for people."""

    precision: str
    reason: str
    speedup: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    return match.group(1).strip() if match else (platform.processor() or platform.machine())


def isa_flags() -> list[str]:
    """The matrix-relevant instruction-set flags the CPU reports (Linux /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    match = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    present = set(match.group(1).split()) if match else set()
    return [flag for flag in _ISA_FLAGS if flag in present]


def machine_key() -> str:
    """What a cached timing is valid for: the CPU model, its bf16/AMX flags and torch's version."""
    return f"{cpu_model()} [{' '.join(isa_flags())}] torch {torch.__version__}"


def choose_threads(rates: dict[int, float]) -> int:
    """The thread count with the most work per second; a tie goes to fewer threads, which leave
    the other cores to other jobs."""
    return max(sorted(rates), key=lambda n: (rates[n], -n))


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


@dataclass(frozen=True)
class UpdateTimer:
    """Whole training updates to time: `run()` gives {"fp32_s", "bf16_s"} (seconds per update)
    for the run whose config hash (seed and threads aside) is `key`."""

    key: str
    run: Callable[[], dict]


def cached_update_timing(timer: UpdateTimer) -> dict:
    """`timer.run()` once per machine, torch version and config; then from the cache file."""
    cache = _read_cache()
    section = cache.setdefault(machine_key(), {})
    key = f"updates {timer.key}"
    if key not in section:
        section[key] = {**timer.run(), "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write_cache(cache)
    return section[key]


def choose_by_updates(timing: dict, threshold: float = BF16_MIN_SPEEDUP) -> Choice:
    """bf16 where a whole update under it takes at most 1/`threshold` of its fp32 time."""
    speedup = timing["fp32_s"] / timing["bf16_s"]
    verdict = "bf16" if speedup >= threshold else "fp32"
    return Choice(verdict, f"bf16 updates {speedup:.2f}x fp32 here (this model's own training "
                           f"updates, timed; bf16 needs {threshold}x)", round(speedup, 3))


def _read_cache() -> dict:
    try:
        return json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}


def _write_cache(cache: dict) -> None:
    path = cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_text(json.dumps(cache, indent=1, sort_keys=True))
    os.replace(part, path)    # concurrent runs: each file whole, the last one kept


def forced_precision() -> str | None:
    """What `auto` means on this machine without timing it: REPRO_PRECISION (fp32 or bf16)."""
    value = os.environ.get("REPRO_PRECISION")
    return value if value in ("fp32", "bf16") else None


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve(setting: str, device: torch.device, updates: UpdateTimer | None = None) -> Choice:
    """The training precision for `setting` ("auto", "fp32" or "bf16"; see
    `repro.config.precision_setting`). `auto`: fp32 where bf16 is not native; bf16 on a CUDA
    device that supports it; on a CPU, `choose_by_updates` over the cached timing of whole
    `updates`. The environment variable REPRO_PRECISION (fp32 or bf16) fixes what `auto` means
    on a machine without timing it. (Evaluation times its own check: `repro.evaluate`.)"""
    if setting != "auto":
        return Choice(setting, f"{setting} as configured")
    if forced_precision():
        return Choice(forced_precision(), f"REPRO_PRECISION={forced_precision()} in the environment")
    if not native_bf16(device):
        where = "this GPU" if device.type == "cuda" else torch.backends.cpu.get_cpu_capability()
        return Choice("fp32", f"no native bf16 ({where})")
    if device.type == "cuda":
        return Choice("bf16", f"CUDA device {torch.cuda.get_device_name(device)} supports bf16")
    if updates is None:
        return Choice("fp32", "no training updates to time")
    return choose_by_updates(cached_update_timing(updates))

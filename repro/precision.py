"""Precision and thread count chosen by measurement on the machine at hand.

The same code meets CPUs whose bf16 matrix products are 2x faster than fp32 (AVX-512 bf16 on
recent AMD EPYC), faster still (Intel AMX) or slower (an AVX-512 bf16 Xeon without AMX measured
0.57x), and machines shared with other jobs, where two OpenMP threads can run 10x slower than
one. So `train.precision=auto` times whole training updates of the run's own model at fp32 and
at bf16 (`repro.train` does the updates, on a copy, outside the run's random stream) and uses
bf16 autocast only where an update is at least `BF16_MIN_SPEEDUP` times faster. Matrix products
alone mislead for some models: on an AMD EPYC, the largest linear layer of the MNIST conv VAEs
ran 1.70x faster in bf16 while their whole updates ran only 1.08-1.25x faster
(`benchmarks/precision_check.py`). Evaluation, which has no update to time, times bf16 against
fp32 products at the model's shapes (the output projection and the LSTM gate products) and then
checks the numbers (`repro.evaluate.eval_precision`). Timings are cached per machine and torch
version in the user cache (`precision.json`; updates per config), so the seconds are spent once.
`train.threads=None` (auto) times updates at 1 thread and at all of torch's threads and keeps
the faster, again at every epoch (the load changes; see `repro.train`).

The decisions are pure functions of the timings (`choose_by_updates`, `choose_precision`,
`choose_threads`), tested on made-up numbers.
"""
from __future__ import annotations

import json
import math
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
# A timing covers at least this many FLOPs (repeating a small product), so the clock's
# resolution and call overhead do not decide.
_MIN_TIMED_FLOP = 2e8
_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16")


@dataclass(frozen=True)
class Product:
    """One matrix product of a training step: (m, k) @ (k, n), done `calls` times per step."""

    name: str
    m: int
    k: int
    n: int
    calls: int = 1

    @property
    def key(self) -> str:
        return f"{self.m}x{self.k}@{self.k}x{self.n}"


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


def model_products(model: torch.nn.Module, rows: int, batch: int, steps: int) -> list[Product]:
    """The products that dominate a step of `model`: its largest linear layer (the output
    projection of a text model) over `rows` rows, and each LSTM layer's gate product, (batch,
    input + hidden) @ (input + hidden, 4 hidden), `steps` times (once per time step)."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    products = []
    if linears:
        largest = max(linears, key=lambda m: m.weight.numel())
        products.append(Product("largest linear", rows, largest.in_features, largest.out_features))
    for lstm in (m for m in model.modules() if isinstance(m, torch.nn.LSTM)):
        for layer in range(lstm.num_layers):
            inputs = lstm.input_size if layer == 0 else lstm.hidden_size * (2 if lstm.bidirectional else 1)
            products.append(Product(f"LSTM layer {layer} gates", batch, inputs + lstm.hidden_size,
                                    4 * lstm.hidden_size, steps * (2 if lstm.bidirectional else 1)))
    return products


def typical_batch(batches, limit: int = 8) -> tuple[int, int, int]:
    """(target tokens, examples, time steps) of a mean batch among the first `limit` of
    `batches`; a batch without tokens (images) counts one row and one step per example."""
    rows = size = steps = count = 0
    for batch in batches:
        targets = getattr(batch, "num_targets", None)
        rows += int(targets.sum()) if targets is not None else batch.size
        size += batch.size
        steps += batch.targets.shape[1] if targets is not None else 1
        count += 1
        if count == limit:
            break
    if not count:
        return 0, 0, 0
    return rows // count, size // count, max(1, steps // count)


def choose_precision(timings: dict[str, dict], products: list[Product],
                     threshold: float = BF16_MIN_SPEEDUP) -> Choice:
    """bf16 where the step's products, weighted by their calls, take at most 1/`threshold` of
    their fp32 time. `timings[product.key]` holds "fp32_s" and "bf16_s" (seconds per product)."""
    fp32 = sum(timings[p.key]["fp32_s"] * p.calls for p in products)
    bf16 = sum(timings[p.key]["bf16_s"] * p.calls for p in products)
    speedup = fp32 / bf16
    shapes = ", ".join(f"{p.key}" + (f" x{p.calls}" if p.calls > 1 else "") for p in products)
    verdict = "bf16" if speedup >= threshold else "fp32"
    return Choice(verdict, f"bf16 products {speedup:.2f}x fp32 here ({shapes}; bf16 needs "
                           f"{threshold}x)", round(speedup, 3))


def choose_threads(rates: dict[int, float]) -> int:
    """The thread count with the most work per second; a tie goes to fewer threads, which leave
    the other cores to other jobs."""
    return max(sorted(rates), key=lambda n: (rates[n], -n))


def time_products(products: list[Product], rounds: int = 5) -> dict[str, dict]:
    """Seconds per product at one thread, fp32 and bf16 (casting the fp32 operands as autocast
    does), alternated in `rounds` so both meet the same load; the best round of each. One thread
    measures the arithmetic: with more, a product of 32 rows on a loaded machine times OpenMP's
    waits (measured: 1 GFLOP/s at load 11 on 2 cores), which `ThreadChoice` handles apart."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _time_products(products, rounds)
    finally:
        torch.set_num_threads(threads)


def _time_products(products: list[Product], rounds: int) -> dict[str, dict]:
    out = {}
    # Its own generator: a run that times (cache empty) and one that reads the cache must train
    # on the same random stream.
    gen = torch.Generator().manual_seed(0)
    for p in products:
        a, b = torch.randn(p.m, p.k, generator=gen), torch.randn(p.k, p.n, generator=gen)
        repeat = max(1, math.ceil(_MIN_TIMED_FLOP / (2 * p.m * p.k * p.n)))
        runs = {"fp32": lambda: torch.mm(a, b), "bf16": lambda: torch.mm(a.bfloat16(), b.bfloat16())}
        for run in runs.values():    # first calls create oneDNN primitives: not timed
            run()
        best = {name: math.inf for name in runs}
        for _ in range(rounds):
            for name, run in runs.items():
                start = time.perf_counter()
                for _ in range(repeat):
                    run()
                best[name] = min(best[name], (time.perf_counter() - start) / repeat)
        out[p.key] = {"fp32_s": best["fp32"], "bf16_s": best["bf16"]}
    return out


def cache_path() -> Path:
    return cache_dir() / CACHE_FILE


def cached_timings(products: list[Product], timer=None) -> dict[str, dict]:
    """`timer(products)` (default `time_products`) for the products this machine (`machine_key`)
    has not timed yet; the rest from the cache file, which gains the new ones."""
    cache = _read_cache()
    section = cache.setdefault(machine_key(), {})
    missing = [p for p in products if p.key not in section]
    if missing:
        for key, value in (timer or time_products)(missing).items():
            section[key] = {**value, "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write_cache(cache)
    return {p.key: section[p.key] for p in products}


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


def resolve(setting: str, device: torch.device, products: list[Product] | None = None,
            updates: UpdateTimer | None = None) -> Choice:
    """The precision a run uses for `setting` ("auto", "fp32" or "bf16"; see
    `repro.config.precision_setting`). `auto`: fp32 where bf16 is not native; bf16 on a CUDA
    device that supports it; on a CPU, `choose_by_updates` over the cached timing of whole
    `updates` (training), else `choose_precision` over the cached timings of `products`
    (evaluation). The environment variable REPRO_PRECISION (fp32 or bf16) fixes what `auto`
    means on a machine without timing it."""
    if setting != "auto":
        return Choice(setting, f"{setting} as configured")
    if forced_precision():
        return Choice(forced_precision(), f"REPRO_PRECISION={forced_precision()} in the environment")
    if not native_bf16(device):
        where = "this GPU" if device.type == "cuda" else torch.backends.cpu.get_cpu_capability()
        return Choice("fp32", f"no native bf16 ({where})")
    if device.type == "cuda":
        return Choice("bf16", f"CUDA device {torch.cuda.get_device_name(device)} supports bf16")
    if updates is not None:
        return choose_by_updates(cached_update_timing(updates))
    if not products:
        return Choice("fp32", "no matrix product to time")
    return choose_precision(cached_timings(products), products)

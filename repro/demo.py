"""`repro demo`: train the demo's three variants (`papers/demo`) and print their table."""
from __future__ import annotations

import time
from pathlib import Path

from repro.registry import get_paper
from repro.train import train

NAME = "demo"


def run_demo(track: bool = True, progress: bool = True, quick: bool = False,
             records_root=None, runs_root="runs") -> list[dict]:
    """Train the three variants, print their table, return the records."""
    started = time.time()
    rows = []
    for variant in get_paper(NAME).variants.values():
        cfg = variant.presets["smoke" if quick else "cpu"]()
        result = train(cfg, runs_root=Path(runs_root), records_root=records_root, track=track,
                       progress=progress)
        rows.append(result.record)
    print(format_table(rows))
    print(f"wall time: {time.time() - started:.0f} s")
    return rows


def format_table(records: list[dict]) -> str:
    cols = ("nll", "kl", "mi", "au")
    lines = ["| variant | " + " | ".join(f"test/{c}" for c in cols) + " |",
             "|---|" + "---|" * len(cols)]
    for rec in records:
        split = rec["eval"].get("split", "test")
        cells = [f"{rec['metrics'][f'{split}/{c}']:.2f}" for c in cols]
        lines.append(f"| {rec['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)

"""Does `train.precision=auto` choose what whole updates choose?

`auto` (`repro.train.choose_train_precision`) times 3 batches of updates at each precision, once
per machine and config. Until 2026-12-07 it decided from bf16 against fp32 timings of the model's
largest linear layer and LSTM gate products instead; this script, run on those rows, showed that
proxy wrong for the MNIST conv VAEs (products 1.70x, updates 1.08-1.25x). It checks a row by
timing more updates of the row's own model, optimiser and batches at fp32 and at bf16
(`repro.train.time_updates`), alternated fp32, bf16, bf16, fp32, ... so both meet the same load,
against what `auto` picks (and the speed-up it measured); and what `eval.precision=auto` picks
for a freshly built model of the row, with the speed-up of its own check evaluations.

    REPRO_DATA_DIR=... python benchmarks/precision_check.py chen2017_vlae/mnist-vlae \
        kingma2016_iaf/mnist-iaf-d2-w1920 [--preset cpu] [--updates 6] [--rounds 2] [--threads 1] \
        [--json FILE]

A row "agrees" when `auto`'s pick is the one the longer timing gives under the same rule (bf16
where at least `repro.precision.BF16_MIN_SPEEDUP` times faster).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from repro import precision
from repro.data import load_corpus
from repro.evaluate import eval_precision
from repro.registry import get_paper
from repro.sweep import Job
from repro.train import time_updates


def row_config(row: str, preset: str, threads: int, setting: str):
    paper, variant = row.split("/")
    overrides = (f"train.threads={threads}", f"train.precision={setting}")
    return Job(paper, variant, preset, 0, overrides).config()


def eval_choice(cfg) -> precision.Choice:
    """What `eval.precision=auto` picks for a freshly built model of `cfg` (its own timed check)."""
    torch.manual_seed(cfg.seed)
    corpus = load_corpus(cfg.data)
    model = get_paper(cfg.paper).variant(cfg.variant).build(cfg, corpus).eval()
    return eval_precision(model, corpus, cfg.eval, torch.device("cpu"))


def check(row: str, args) -> dict:
    auto = time_updates(row_config(row, args.preset, args.threads, "auto"), 1)
    evaluation = eval_choice(row_config(row, args.preset, args.threads, "auto"))
    seconds = {"fp32": [], "bf16": []}
    for round_ in range(args.rounds):
        order = ("fp32", "bf16") if round_ % 2 == 0 else ("bf16", "fp32")
        for setting in order:
            cfg = row_config(row, args.preset, args.threads, setting)
            seconds[setting].append(time_updates(cfg, args.updates).seconds_per_update)
    fp32, bf16 = min(seconds["fp32"]), min(seconds["bf16"])
    by_updates = "bf16" if fp32 / bf16 >= precision.BF16_MIN_SPEEDUP else "fp32"
    return {"row": row, "preset": args.preset, "auto": auto.precision, "auto_reason": auto.choice.reason,
            "product_speedup": auto.choice.speedup,
            "fp32_s": seconds["fp32"], "bf16_s": seconds["bf16"], "update_speedup": fp32 / bf16,
            "by_updates": by_updates, "agrees": by_updates == auto.precision,
            "eval_auto": evaluation.precision, "eval_speedup": evaluation.speedup,
            "eval_reason": evaluation.reason}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", help="paper/variant")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--updates", type=int, default=6, help="timed updates per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="measurements per precision (best kept)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the rows and the machine here")
    args = parser.parse_args()
    load_before, started = os.getloadavg(), time.time()
    rows = [check(row, args) for row in args.rows]
    print(f"\nauto's pick against whole updates on {precision.cpu_model()} "
          f"[{' '.join(precision.isa_flags())}], torch {torch.__version__}, {args.threads} thread(s); "
          f"load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
          f"{time.time() - started:.0f} s\n")
    print("| row | auto picks | auto's measured bf16 speed-up | update fp32 (ms) | update bf16 (ms) | "
          "update bf16 speed-up | the rule on whole updates | agrees | evaluation: auto picks "
          "(its check's bf16 speed-up) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        products = f"{r['product_speedup']:.2f}x" if r["product_speedup"] else "—"
        print(f"| `{r['row']}` | {r['auto']} | {products} | {min(r['fp32_s']) * 1e3:.0f} | "
              f"{min(r['bf16_s']) * 1e3:.0f} | {r['update_speedup']:.2f}x | {r['by_updates']} | "
              f"{'yes' if r['agrees'] else 'no'} | {r['eval_auto']} "
              + (f"({r['eval_speedup']:.2f}x) |" if r["eval_speedup"] else f"({r['eval_reason']}) |"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": {"cpu_model": precision.cpu_model(), "isa_flags": precision.isa_flags(),
                                   "torch": torch.__version__, "cores": os.cpu_count()},
                       "load_before": load_before, "load_after": os.getloadavg(),
                       "args": vars(args), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()

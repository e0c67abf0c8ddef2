"""Runaway posterior draws: how often a trained flow posterior sends a draw far out.

The depth-8 IAF rows at `cpu` diverge, and the best checkpoint before the divergence still has
draws whose single-sample KL, log q(z|x) - log p(z), is astronomically large (`presets.py`).
The evaluation reports only their mean over `eval.mc_samples` draws, which a single such draw
can dominate. This counts them, per test image, on fresh draws:

    python -m papers.kingma2016_iaf.runaways runs/kingma2016_iaf/static-iaf-d8-w1920/cpu/seed0 \\
        --draws 100 [--images 6280 --draws 1000000]

It prints the mean and median single-draw KL, how many draws exceed each threshold and in how
many images, and the images with the largest draw.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

from repro.nn.flows import mc_kl_per_dim
from repro.runs import load_trained




THRESHOLDS = (100.0, 1e3, 1e6)       # nats; an ordinary MNIST posterior draw costs about 25


@dataclass
class RunawayCount:
    draws_per_image: int
    mean: float                        # over every draw of every image
    median: float
    above: dict[float, tuple[int, int]]   # threshold -> (draws above it, images with one)
    worst: list[tuple[int, float]]     # (image index, its largest single-draw KL), largest first


def single_draw_kl(model, batch, draws: int, generator: torch.Generator,
                   chunk: int = 100_000) -> torch.Tensor:
    """`(B, draws)` single-sample KL of fresh posterior draws for each example of `batch`,
    drawn `chunk` z's at a time so a million draws of one image fit in memory."""
    per_chunk = max(1, chunk // batch.size)
    prior, parts = model.prior(batch), []
    with torch.no_grad():
        posterior = model.posterior(batch)
        for start in range(0, draws, per_chunk):
            z, log_q_dims = posterior.rsample_per_dim(min(per_chunk, draws - start), generator)
            parts.append(mc_kl_per_dim(z, log_q_dims, prior).sum(-1).T)
    return torch.cat(parts, dim=1)


def count_runaways(model, batches, draws: int, seed: int = 0,
                   thresholds=THRESHOLDS, shown: int = 5) -> RunawayCount:
    """Fresh single-draw KLs for every example of `batches` (each carrying its `index`)."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    kls, indices = [], []
    for batch in batches:
        kls.append(single_draw_kl(model, batch, draws, generator))
        indices.append(batch.index)
    kl, index = torch.cat(kls), torch.cat(indices)
    largest = kl.max(dim=1).values
    order = largest.argsort(descending=True)[:shown]
    return RunawayCount(
        draws_per_image=draws, mean=kl.mean().item(), median=kl.median().item(),
        above={t: (int((kl > t).sum()), int((kl > t).any(1).sum())) for t in thresholds},
        worst=[(int(index[i]), largest[i].item()) for i in order])


def render_runaways(count: RunawayCount, images: int) -> str:
    lines = [f"{images} images x {count.draws_per_image} fresh draws: single-draw KL mean "
             f"{count.mean:.6g}, median {count.median:.4g} nats"]
    lines += [f"  above {t:g} nats: {n} draws ({n / (images * count.draws_per_image):.2e}) "
              f"in {k} images" for t, (n, k) in count.above.items()]
    lines += ["  largest draws: " + ", ".join(f"image {i}: {v:.3g}" for i, v in count.worst)]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir")
    parser.add_argument("--split", default="test")
    parser.add_argument("--draws", type=int, default=100, help="fresh draws per image")
    parser.add_argument("--images", type=int, nargs="*",
                        help="only these images (split indices); on dynamically binarised MNIST "
                             "their pixels are drawn afresh from --seed")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg, corpus, model = load_trained(args.run_dir, device="cpu")
    if getattr(model, "flow", None) is None or corpus.kind != "image":
        parser.error(f"{cfg.paper}/{cfg.variant}: the diagnostic reads an IAF posterior on images")
    split = corpus.split(args.split)
    if args.images:
        batches = [split.make_batch(torch.tensor(args.images), torch.Generator().manual_seed(args.seed))]
        images = len(args.images)
    else:
        batches = corpus.batches(args.split, args.batch_size, shuffle=False)   # as `evaluate`
        images = len(split)
    print(render_runaways(count_runaways(model, batches, args.draws, args.seed), images))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

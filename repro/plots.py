"""Figures written beside runs and as MLflow artifacts (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_training(history: list[dict], path: Path, title: str = "") -> Path:
    """Per-epoch negative ELBO (or NLL), KL and KL weight, train and validation."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    panels = (("loss / -ELBO", ("train/loss", "val/elbo", "val/nll")),
              ("KL (nats)", ("train/kl", "val/kl")),
              ("KL weight", ("train/kl_weight",)))
    for ax, (label, keys) in zip(axes, panels):
        for key in keys:
            if key in history[0]:
                ax.plot(epochs, [h[key] for h in history], marker="o", label=key)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if ax.lines:
            ax.legend(fontsize=7)
    return _save(fig, path, title, dpi=100)


def _save(fig, path: Path, title: str, dpi: int = 120) -> Path:
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var ** 0.5


def plot_rate_distortion(rate: dict[str, list[float]], nll: dict[str, list[float]], path: Path,
                         title: str = "") -> Path:
    """One point per method: mean KL (rate) against mean NLL, bars one std over seeds."""
    fig, ax = plt.subplots(figsize=(7, 5))
    for name in sorted(set(rate) & set(nll)):
        (x, dx), (y, dy) = _mean_std(rate[name]), _mean_std(nll[name])
        ax.errorbar(x, y, xerr=dx, yerr=dy, marker="o", capsize=2)
        ax.annotate(name, (x, y), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("KL(q(z|x) || p(z)) per sentence (nats)")
    ax.set_ylabel("NLL per sentence (nats)")
    return _save(fig, path, title)


def plot_over_training(histories: dict[str, list[list[dict]]], keys: tuple[str, ...], path: Path,
                       title: str = "") -> Path:
    """One panel per key: its per-epoch value for each method, averaged over the seeds' runs."""
    fig, axes = plt.subplots(1, len(keys), figsize=(6 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, runs in sorted(histories.items()):
            epochs = min(len(run) for run in runs)
            if epochs and key in runs[0][0]:
                means = [_mean_std([run[e][key] for run in runs])[0] for e in range(epochs)]
                ax.plot(range(1, epochs + 1), means, marker=".", label=name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        if ax.lines:
            ax.legend(fontsize=5)
    return _save(fig, path, title)


def plot_per_method(values: dict[str, list[float]], label: str, path: Path, title: str = "") -> Path:
    """A horizontal bar per method: the mean over seeds, with one std."""
    names = sorted(values)
    stats = [_mean_std(values[n]) for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.5))
    ax.barh(names, [m for m, _ in stats], xerr=[s for _, s in stats], capsize=2)
    ax.set_xlabel(label)
    ax.tick_params(axis="y", labelsize=6)
    return _save(fig, path, title)

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
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

"""Figures written beside runs and as MLflow artifacts (matplotlib, headless).

matplotlib is imported on the first figure, not with this module: the trainer and the command
line import this module, and pyplot alone costs a large share of their start-up.
"""
from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_training(history: list[dict], path: Path, title: str = "") -> Path:
    """Per-epoch negative ELBO (or NLL), KL and KL weight, train and validation."""
    epochs = [h["epoch"] for h in history]
    fig, axes = _pyplot().subplots(1, 3, figsize=(12, 3.2))
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
    fig.savefig(path, dpi=dpi, bbox_inches="tight")   # takes in a legend beside the axes
    _pyplot().close(fig)
    return path


def _mean_std(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1) if len(values) > 1 else 0.0
    return mean, var ** 0.5


_MARKERS = "osD^vPX*<>ph"


def method_styles(names) -> dict[str, dict]:
    """A colour and marker per `paper/variant` name: the marker says the paper, the colour (20
    of them) tells its variants and neighbours apart. Figures meant to be read together take
    the styles of all their methods (`styles=`), so a method looks the same in each."""
    names = sorted(names)
    papers = sorted({n.split("/")[0] for n in names})
    colours = _pyplot().get_cmap("tab20").colors
    return {n: {"color": colours[i % len(colours)],
                "marker": _MARKERS[papers.index(n.split("/")[0]) % len(_MARKERS)]}
            for i, n in enumerate(names)}


def _legend_beside(fig, axes) -> None:
    """One legend for the figure, to the right of its axes, where no point or line hides it."""
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=6,
                   frameon=False)


# How far above the best method's NLL the zoomed panel of `plot_rate_distortion` reaches.
ZOOM_NLL_NATS = 6.0


def plot_rate_distortion(rate: dict[str, list[float]], nll: dict[str, list[float]], path: Path,
                         title: str = "", styles: dict[str, dict] | None = None) -> Path:
    """One point per method: mean KL (rate) against mean NLL, bars one std over seeds. A method
    with an NLL and no KL (a language model, no latent) is a dashed line at its mean NLL: the
    likelihood a latent variable has to beat. Where some methods lie far above the best, a
    second panel shows those within `ZOOM_NLL_NATS` of it, where most methods crowd."""
    names = sorted(set(rate) & set(nll))
    points = {n: (_mean_std(rate[n]), _mean_std(nll[n])) for n in names}
    references = {n: _mean_std(nll[n])[0] for n in sorted(set(nll) - set(rate))}
    best = min((y for _, (y, _) in points.values()), default=0.0)
    near = [n for n in names if points[n][1][0] <= best + ZOOM_NLL_NATS]
    panels = [names] + ([near] if 0 < len(near) < len(names) else [])
    styles = styles or method_styles([*names, *references])
    fig, axes = _pyplot().subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, shown in zip(axes[0], panels):
        for name in shown:
            (x, dx), (y, dy) = points[name]
            ax.errorbar(x, y, xerr=dx, yerr=dy, capsize=2, linestyle="none", label=name,
                        **styles[name])
        for name, y in references.items():
            if ax is axes[0][0] or y <= best + ZOOM_NLL_NATS:
                ax.axhline(y, color=styles[name]["color"], linestyle="--", linewidth=1,
                           label=f"{name} (no latent)")
        ax.set_xlabel("KL(q(z|x) || p(z)) per sentence (nats)")
        ax.set_ylabel("NLL per sentence (nats)")
    if len(panels) > 1:
        axes[0][1].set_title(f"within {ZOOM_NLL_NATS:g} nats of the best NLL", fontsize=9)
    _legend_beside(fig, axes[0])
    return _save(fig, path, title)


def plot_over_training(histories: dict[str, list[list[dict]]], keys: tuple[str, ...], path: Path,
                       title: str = "", styles: dict[str, dict] | None = None) -> Path:
    """One panel per key: its per-epoch value for each method, averaged over the seeds' runs."""
    styles = styles or method_styles(histories)
    fig, axes = _pyplot().subplots(1, len(keys), figsize=(5.5 * len(keys), 4), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name, runs in sorted(histories.items()):
            epochs = min(len(run) for run in runs)
            if epochs and key in runs[0][0]:
                means = [_mean_std([run[e][key] for run in runs])[0] for e in range(epochs)]
                ax.plot(range(1, epochs + 1), means, label=name, markersize=4, **styles[name])
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.xaxis.get_major_locator().set_params(integer=True)
    _legend_beside(fig, axes[0])
    return _save(fig, path, title)


def plot_per_method(values: dict[str, list[float]], label: str, path: Path, title: str = "",
                    styles: dict[str, dict] | None = None,
                    caveats: dict[str, str] | None = None) -> Path:
    """A horizontal bar per method: the mean over seeds, with one std. A method's caveat (its
    value measured differently from the rest) is printed under its name."""
    names = sorted(values)
    stats = [_mean_std(values[n]) for n in names]
    caveats = caveats or {}
    fig, ax = _pyplot().subplots(figsize=(7, 0.3 * len(names) + 0.2 * len(caveats) + 1.5))
    styles = styles or method_styles(names)
    ax.barh(names, [m for m, _ in stats], xerr=[s for _, s in stats], capsize=2,
            color=[styles[n]["color"] for n in names])
    ax.set_yticks(range(len(names)),
                  [f"{n}\n({caveats[n]})" if n in caveats else n for n in names])
    ax.invert_yaxis()                                  # alphabetical from the top
    ax.set_xlabel(label)
    ax.tick_params(axis="y", labelsize=6)
    return _save(fig, path, title)

"""Papers register their variants, presets and reported numbers here; the core looks them up.

The core never imports `papers` directly: `load_papers()` imports the `papers` package once,
and each paper package calls `register_paper` at import time. Adding a paper touches only
`papers/<name>/` (and its `papers/__init__.py` import line).
"""
from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Callable, Iterable

from repro.config import ConfigError, ModelConfig, RunConfig
from repro.protocols import presets_for


@dataclass(frozen=True)
class Reported:
    """One number from the paper: value, verification tag (docs/papers/README.md §Tags) and
    where it comes from."""

    value: float | None
    tag: str                      # verified | unverified (reprint) | unverified (memory) | not retrieved
    source: str = ""
    note: str = ""


def presets_of_variant(presets: dict[str, Callable[[str], RunConfig]], variant: str,
                       names: Iterable[str] | None = None) -> dict[str, Callable[[], RunConfig]]:
    """`Variant.presets` for one variant, the one way every paper package registers presets.

    `presets` is the package's `PRESETS` from `papers/<name>/presets.py`: preset name ->
    function of the variant name that returns a fresh `RunConfig`. Each is bound to `variant`
    here and called only when a config is asked for. Registration, in the package's
    `__init__.py`: `Variant(..., presets=presets_of_variant(PRESETS, name))`.

    `names`: the presets this variant has, where it has only some of `presets` (a row with the
    paper's settings only: `names=("paper",)`; a row kept but not run: `names=()`); None: all.
    """
    chosen = list(presets) if names is None else list(names)
    unknown = sorted(set(chosen) - set(presets))
    if unknown:
        raise ConfigError(f"{variant}: no preset {unknown} in {sorted(presets)}")
    return {preset: functools.partial(presets[preset], variant) for preset in chosen}


@dataclass
class Variant:
    name: str
    description: str
    model_config: type[ModelConfig]
    build: Callable                             # (RunConfig, corpus) -> LatentVariableModel
    presets: dict[str, Callable[[], RunConfig]]
    reported: dict[str, Reported] = field(default_factory=dict)   # metric name -> number
    runnable: bool = True                       # False: a table row kept but marked not run
    not_run_reason: str = ""
    artifacts: Callable | None = None           # (model, corpus, cfg, run_dir) -> [paths]: samples etc.
    # (model, corpus, cfg, run_dir) -> ({"test/...": value}, [paths]): metrics beyond the shared
    # evaluation (dialog BLEU, distinct-n), merged into the record and MLflow.
    evaluate_extra: Callable | None = None
    # (model, cfg, run_dir) -> None: sets parameters from another, finished run before a fresh
    # run's first update (Yang's "+ init" encoder from a trained LM); not called on a resume,
    # whose checkpoint already holds them. The optimiser state starts fresh either way.
    initialise: Callable | None = None
    # Variants of the same paper whose finished run, at the same preset and seed in the same
    # runs folder, `initialise` reads: train them first (`repro train`; tests do the same).
    requires: tuple[str, ...] = ()
    # Trained in the cross-method benchmark (`repro benchmark`): a latent-variable model of single
    # sentences whose preset configs take the protocol's shared sizes (`repro.benchmark`). A
    # variant that a benchmarked one `requires` gets the protocol presets too, and the benchmark
    # trains it first, but has no row in its table.
    benchmark: bool = False
    # (protocol config, Protocol) -> config: where this method's protocol config must depart
    # from the plain substitution (`repro.protocols.protocol_config`) to stay the method, e.g. a
    # schedule counted in updates re-derived for the protocol's length. Its `reading_note` says
    # what changed.
    fit_protocol: Callable | None = None
    # False for a row that only the benchmark runs (no row in the paper's table): `repro
    # reproduce` skips it.
    in_paper_table: bool = True
    # How to read this variant's metrics beside other methods' (printed once under any
    # cross-method table that holds it), where a shared column means something else for it.
    reading_note: str = ""
    # One latent per time step, so sentences of different lengths have latents of different
    # shapes: no aggregate posterior over the whole test set, and the benchmark pools MI per batch.
    latent_per_step: bool = False
    # log q(z|x) at an arbitrary z costs d sequential network passes (an IAF posterior): the MI
    # pool over the whole PTB test set would take about an hour per run on one core, so the
    # benchmark scores MI and AU on the same prefix as the bound.
    costly_posterior_density: bool = False


@dataclass
class Paper:
    name: str
    title: str
    citation: str
    variants: dict[str, Variant] = field(default_factory=dict)
    table_metrics: tuple[str, ...] = ("test/nll", "test/ppl", "test/kl")
    notes: str = ""
    # False for a package that teaches rather than reproduces (the demo): no results table, no
    # row in the results index, no lease jobs.
    reproduces_a_paper: bool = True
    # A variant whose training wall time the paper's table divides every row's by, at the same
    # preset (He et al. give aggressive training as 2.2x a VAE's); "" for no such column.
    time_reference: str = ""

    def variant(self, name: str) -> Variant:
        if name not in self.variants:
            raise ConfigError(f"{self.name} has no variant {name!r}; variants: {sorted(self.variants)}")
        return self.variants[name]


PAPERS: dict[str, Paper] = {}
_loaded = False


def register_paper(paper: Paper) -> Paper:
    PAPERS[paper.name] = paper
    return paper


def load_papers() -> dict[str, Paper]:
    global _loaded
    if not _loaded:
        importlib.import_module("papers")
        _loaded = True
    return PAPERS


def get_paper(name: str) -> Paper:
    papers = load_papers()
    if name not in papers:
        raise ConfigError(f"unknown paper {name!r}; known: {sorted(papers)}")
    return papers[name]


def resolve(paper: str, variant: str, preset: str) -> tuple[Variant, RunConfig]:
    """The variant and a fresh copy of its named preset config."""
    known = get_paper(paper)
    var = known.variant(variant)
    prerequisite = any(variant in v.requires for v in known.variants.values() if v.benchmark)
    presets = {**var.presets, **presets_for(var, prerequisite)}
    if preset not in presets:
        raise ConfigError(f"{paper}/{variant} has no preset {preset!r}; presets: {sorted(presets)}")
    cfg = presets[preset]()
    cfg.paper, cfg.variant, cfg.preset = paper, variant, preset
    return var, cfg

"""Typed run configuration: dataclasses, `--set a.b=v` overrides, validation, JSON round-trip.

A run is described by one `RunConfig`. Its `model` field holds the paper's own typed model
config (a dataclass subclassing `ModelConfig`), so every paper keeps its hyper-parameters in
one place while the trainer and the evaluation read the shared sections (data, optim, train,
eval). Numeric fields may declare a valid range in their metadata (`bounded(...)`); `validate`
checks every section, so a negative rate or a zero latent size is refused before training.

A field added to a section must default to the behaviour the code had before it: a run record
written earlier then still names its experiment exactly (`from_dict` fills the default in), and
`repro sweep` does not retrain it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config value or key is invalid; the message says which and what is allowed."""


def bounded(default: Any, lo: float | None = None, hi: float | None = None, choices=None):
    """A dataclass field with a checked range (inclusive) or a fixed set of choices."""
    return field(default=default, metadata={"lo": lo, "hi": hi, "choices": choices})


@dataclass
class SyntheticConfig:
    """The generated corpus (He et al. 2019's construction); see `repro.data.synthetic`."""

    num_train: int = bounded(10_000, lo=1)
    num_valid: int = bounded(1_000, lo=1)
    num_test: int = bounded(1_000, lo=1)
    vocab_size: int = bounded(1_000, lo=2)
    length: int = bounded(10, lo=2)
    latent_logit_scale: float = bounded(5.0, lo=0.0)  # larger: tokens depend more on z
    seed: int = 19950927


@dataclass
class DataConfig:
    dataset: str = "ptb"
    max_vocab: int = bounded(10_000, lo=5)          # words kept from train, specials added on top
    max_length: int | None = bounded(None, lo=1)     # longer sentences are truncated (tokens, no markers)
    batch_size: int = bounded(32, lo=1)
    eval_batch_size: int = bounded(64, lo=1)
    train_fraction: float = bounded(1.0, lo=0.0, hi=1.0)  # < 1 is a reduced-scale run, recorded
    substitute_for: str | None = None                # the paper's dataset when `dataset` stands in
    # Train on train + valid (image corpora), as papers do for their final numbers; validation
    # then reads training data, so no checkpoint is selected on it: the last one is tested.
    train_on_valid: bool = False
    max_context: int = bounded(10, lo=1)             # dialog corpora: previous turns kept as context
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)


@dataclass
class OptimConfig:
    name: str = bounded("adam", choices=("adam", "adamax", "sgd"))
    lr: float = bounded(1e-3, lo=0.0)
    momentum: float = bounded(0.0, lo=0.0, hi=1.0)
    weight_decay: float = bounded(0.0, lo=0.0)
    eps: float = bounded(1e-8, lo=0.0)               # Adam's epsilon (PyTorch's default)
    grad_clip: float | None = bounded(5.0, lo=0.0)
    # He et al.'s recipe: multiply the rate by `plateau_decay` when validation stalls for
    # `plateau_patience` epochs; 1.0 disables it.
    plateau_decay: float = bounded(1.0, lo=0.0, hi=1.0)
    plateau_patience: int = bounded(2, lo=0)
    # No decay at the end of the first N epochs (He et al.'s code: `epoch >= 15`, so none in 15).
    plateau_after_epoch: int = bounded(0, lo=0)
    min_lr: float = bounded(0.0, lo=0.0)
    # Polyak averaging (`repro.averaging`): the decay of the parameters' moving average, which
    # validation, best-checkpoint selection and the test then use; 0 is off.
    polyak: float = bounded(0.0, lo=0.0, hi=0.999999)
    # Xie et al.'s recipe (nlm-noising `lm.py`): a decay also puts back the parameters and the
    # optimiser state of the best-validation epoch, so the lower rate starts from the best point
    # rather than from the epoch that failed to improve on it.
    plateau_restores_best: bool = False
    # The rate as a function of the update step (`repro.schedules.learning_rate`): "constant" is
    # `lr`; "cosine_restarts" falls from `lr` along half a cosine over every `lr_cycle_steps`
    # updates and restarts, recomputed every `lr_hold_steps` updates (Fu et al. 2019: per epoch).
    lr_schedule: str = bounded("constant", choices=("constant", "cosine_restarts"))
    lr_cycle_steps: int = bounded(10_000, lo=1)
    lr_hold_steps: int = bounded(1, lo=1)


@dataclass
class TrainConfig:
    epochs: int = bounded(10, lo=1)
    max_steps: int | None = bounded(None, lo=1)      # stop early at this many updates in total
    early_stop_patience: int | None = bounded(None, lo=1)  # epochs without validation improvement
    stop_after_decays: int | None = bounded(None, lo=1)    # stop after the N-th plateau decay
    # The validation number that picks `best.pt` and that plateau decay and early stopping watch:
    # "bound" is the negative ELBO (an LM's exact NLL); "rec" the reconstruction term alone, for
    # an autoencoder trained at KL weight 0, whose KL grows unchecked (Li et al. 2019's code).
    select_by: str = bounded("bound", choices=("bound", "rec"))
    # auto: bf16 autocast (softmax and losses stay fp32) where the model's own updates run at
    # least 1.3x faster in bf16 here (timed once per machine and config, cached; `repro.precision`).
    precision: str = bounded("auto", choices=("auto", "fp32", "bf16"))
    # The old switch, kept as an alias: true is precision bf16, false fp32 (autocast off, what it
    # always meant), null leaves `precision` in charge. Records before `precision` say false.
    bf16: bool | None = None
    device: str = "auto"                             # auto | cpu | cuda
    # None: auto, the faster of 1 thread and all of torch's threads, timed at each epoch's start.
    threads: int | None = bounded(None, lo=1)


@dataclass
class EvalConfig:
    split: str = bounded("test", choices=("train", "valid", "test"))
    iw_samples: int = bounded(500, lo=1)             # K of the importance-weighted bound
    iw_chunk: int = bounded(100, lo=1)               # samples drawn at once per sentence batch
    mi_pool: str = bounded("dataset", choices=("dataset", "batch"))
    # mi_pool="batch": He et al. 2019's pools, sentences of one length, at most this many. (Records
    # from before this key pooled whole evaluation batches of mixed lengths; their MI scoring
    # says so in the tables.)
    mi_pool_max: int = bounded(32, lo=1)
    au_threshold: float = bounded(0.01, lo=0.0)
    mc_samples: int = bounded(100, lo=1)             # MC draws for non-Gaussian KL and posterior means
    max_examples: int | None = bounded(None, lo=1)   # evaluate a prefix only (reduced runs)
    mi_au_whole_split: bool = False                  # MI and AU on the whole split even so
    # auto: fp32 unless bf16 evaluates a prefix of the split 1.3x faster here and moves the
    # run's own IW-NLL on it by under 0.1% (both checked before the test evaluation).
    precision: str = bounded("auto", choices=("auto", "fp32", "bf16"))
    bf16: bool | None = None                         # alias, as train.bf16


@dataclass
class KLScheduleConfig:
    """The KL weight as a function of the update step (see `repro.schedules.kl_weight`)."""

    kind: str = bounded("constant", choices=("constant", "linear", "logistic", "cyclical"))
    max_weight: float = bounded(1.0, lo=0.0)
    warmup_steps: int = bounded(0, lo=0)             # linear: steps from start_weight to max_weight
    # linear: the weight at step 0 (He et al.: 0.1); cyclical: at the start of every period
    start_weight: float = bounded(0.0, lo=0.0)
    logistic_k: float = bounded(0.0025, lo=0.0)      # logistic: slope
    logistic_x0: int = bounded(2500, lo=0)           # logistic: step where the weight is max/2
    cycle_steps: int = bounded(10_000, lo=1)         # cyclical (Fu et al. 2019): one period
    cycle_ramp: float = bounded(0.5, lo=0.0, hi=1.0)  # fraction of a period spent rising
    cycle_shape: str = bounded("linear", choices=("linear", "sigmoid", "cosine"))  # of the rise
    # cyclical by count (Fu et al.'s M): `cycles` equal periods over `cycle_total_steps` updates,
    # then max_weight; None: periods of `cycle_steps`, repeating for as long as training runs.
    cycles: int | None = bounded(None, lo=1)
    cycle_total_steps: int | None = bounded(None, lo=1)


@dataclass
class FreeBitsConfig:
    """The free-bits rule by name (docs/metrics.md §7); the variants are not interchangeable."""

    variant: str = bounded("none", choices=(
        "none", "kingma_group_batchmean", "li_example_total", "li_example_dim", "li_batchmean"))
    lam: float = bounded(0.0, lo=0.0)                # nats per group / per example / per dim target
    group_size: int = bounded(1, lo=1)               # kingma: latent dims per group


@dataclass
class ModelConfig:
    """Base of every paper's model config; subclasses add their typed fields.

    `shared_sizes` names, for a config that can enter the cross-method benchmark, the field that
    takes each size the protocols share (`repro.protocols.SHARED_SIZES`); a benchmarked config
    without it, or naming a field it lacks, is an error, never a size silently left out."""

    shared_sizes: typing.ClassVar[dict[str, str]] = {}


@dataclass
class RunConfig:
    paper: str
    variant: str
    model: ModelConfig
    preset: str = "custom"
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict, model_cls: type[ModelConfig]) -> "RunConfig":
        raw = dict(raw)
        model = _build(model_cls, raw.pop("model", {}), "model")
        return _build(cls, {**raw, "model": model}, "", prebuilt={"model"})


def _resolved_hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls, raw: dict, where: str, prebuilt: set[str] = frozenset()):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(unknown)} in '{where or 'run'}'; valid: {sorted(names)}")
    hints = _resolved_hints(cls)
    kwargs = {}
    for name, value in raw.items():
        if name in prebuilt:
            kwargs[name] = value
        else:
            kwargs[name] = _coerce(hints[name], value, f"{where}.{name}".lstrip("."))
    return cls(**kwargs)


def _coerce(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        if dataclasses.is_dataclass(value):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"'{where}' is a section; give a mapping, not {value!r}")
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            return _coerce(arg, value, where)
    if origin in (tuple, list):
        return tuple(value) if origin is tuple else list(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"'{where}' must be true or false, got {value!r}")
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"'{where}' must be a number, got {value!r}")
        if hint is int and float(value) != int(value):
            raise ConfigError(f"'{where}' must be a whole number, got {value!r}")
        return hint(value)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"'{where}' must be a string, got {value!r}")
    return value


def _parse_scalar(text: str):
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_overrides(cfg: RunConfig, assignments: list[str]) -> RunConfig:
    """Apply `section.key=value` strings (e.g. `model.latent_size=32`) and validate the result.

    Values are parsed as JSON where possible (`3`, `0.5`, `true`, `null`, `[1,2]`), else taken
    as strings. An unknown key raises `ConfigError` naming the valid ones.
    """
    model_cls = type(cfg.model)
    raw = cfg.to_dict()
    for assignment in assignments:
        if "=" not in assignment:
            raise ConfigError(f"override {assignment!r} must look like section.key=value")
        path, text = assignment.split("=", 1)
        keys = path.strip().split(".")
        node, node_cls = raw, RunConfig
        for depth, key in enumerate(keys):
            hints = _resolved_hints(node_cls)
            if key not in hints:
                valid = sorted(f.name for f in dataclasses.fields(node_cls))
                prefix = ".".join(keys[:depth]) or "run"
                raise ConfigError(f"unknown config key '{key}' in '{prefix}'; valid: {valid}")
            if depth == len(keys) - 1:
                node[key] = _parse_scalar(text)
            else:
                node_cls = model_cls if (node_cls is RunConfig and key == "model") else hints[key]
                if not dataclasses.is_dataclass(node_cls):
                    raise ConfigError(f"'{'.'.join(keys[:depth + 1])}' is a value, not a section")
                node = node[key]
    new = RunConfig.from_dict(raw, model_cls)
    validate(new)
    return new


# Names that become folder and file names (runs/<paper>/<variant>/<preset>/seed<k>, records):
# letters, digits, '.', '_' and '-', not starting with '.', so no name can climb out of its folder.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def check_name(kind: str, value) -> str:
    """`value` if it is safe as one path component, else a `ConfigError` saying what is allowed."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value):
        raise ConfigError(f"{kind} {value!r} cannot name a folder: use letters, digits, '.', '_' "
                          "and '-' only, starting with a letter or digit")
    return value


def validate_identity(cfg: "RunConfig") -> None:
    """The one check of every config value that becomes part of a path: paper, variant, preset,
    dataset and seed (a negative seed would print one run and train another)."""
    for kind, value in (("paper", cfg.paper), ("variant", cfg.variant), ("preset", cfg.preset),
                        ("data.dataset", cfg.data.dataset)):
        check_name(kind, value)
    if isinstance(cfg.seed, bool) or not isinstance(cfg.seed, int) or cfg.seed < 0:
        raise ConfigError(f"seed {cfg.seed!r} must be a whole number >= 0")


def validate(obj, where: str = "") -> None:
    """Check every bounded field of a (nested) config dataclass; raise `ConfigError` if out of
    range. A `RunConfig` also has its path-forming names checked (`validate_identity`)."""
    if isinstance(obj, RunConfig):
        validate_identity(obj)
        precision_setting(obj.train)
        precision_setting(obj.eval)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{where}.{f.name}".lstrip(".")
        if dataclasses.is_dataclass(value):
            validate(value, path)
            continue
        meta = f.metadata
        if value is None or not meta:
            continue
        if meta.get("choices") is not None and value not in meta["choices"]:
            raise ConfigError(f"'{path}' is {value!r}; choose one of {list(meta['choices'])}")
        if meta.get("lo") is not None and value < meta["lo"]:
            raise ConfigError(f"'{path}' is {value!r}; it must be at least {meta['lo']}")
        if meta.get("hi") is not None and value > meta["hi"]:
            raise ConfigError(f"'{path}' is {value!r}; it must be at most {meta['hi']}")


def flatten(cfg: RunConfig) -> dict[str, Any]:
    """`{'model.latent_size': 13, ...}`: the form MLflow params and table columns use."""
    out: dict[str, Any] = {}

    def walk(node, prefix):
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, name + ".")
            else:
                out[name] = value

    walk(cfg.to_dict(), "")
    return out


# How a run shares out its machine, not what it computes: a run resumed, or a sweep rerun, with
# another thread count is the same experiment. So is one in another precision: bf16 training
# reaches fp32's validation bound within 1% and bf16 evaluation moves IW-NLL by under 0.1%
# (tests/test_speed_numerics.py), and `auto` picks it per machine; the record says which ran.
RESOURCE_KEYS = (("train", "threads"), ("train", "precision"), ("train", "bf16"),
                 ("eval", "precision"), ("eval", "bf16"))


def precision_setting(section) -> str:
    """The precision a `TrainConfig` or `EvalConfig` asks for: its `bf16` alias when set, else
    `precision` ("auto", "fp32" or "bf16"); a contradiction is a `ConfigError`."""
    if section.bf16 is None:
        return section.precision
    alias = "bf16" if section.bf16 else "fp32"
    if section.precision not in ("auto", alias):
        raise ConfigError(f"bf16={str(section.bf16).lower()} contradicts precision="
                          f"{section.precision}; set only precision")
    return alias


def experiment_identity(config: dict) -> dict:
    """A config dict (`RunConfig.to_dict()`, a record's `config`) without its `RESOURCE_KEYS`."""
    out = json.loads(json.dumps(config))
    for section, key in RESOURCE_KEYS:
        out.get(section, {}).pop(key, None)
    return out


def config_hash(config: dict) -> str:
    """A stable short hash of a resolved config (`RunConfig.to_dict()` or a record's `config`),
    the thread count left out (`experiment_identity`)."""
    identity = json.dumps(experiment_identity(config), sort_keys=True)
    return hashlib.sha256(identity.encode()).hexdigest()[:12]


# What may change when a diverged run resumes from its last good checkpoint: the usual remedies.
# (Precision, the third, is a resource: any resume may change it, and the record's history says
# which precision ran each epoch. Records from before say "train.bf16" in their recoveries.)
RECOVERY_KEYS = (("optim", "lr"), ("optim", "grad_clip"))


def resumes_as(stored: dict, cfg: RunConfig, model_config: type[ModelConfig]) -> bool:
    """Whether a checkpoint written under the config dict `stored` continues the training `cfg`
    asks for. Keys added since count at their defaults (which keep the earlier behaviour); the
    thread count, the precision and the `eval` section do not count: the resumed run is scored under `cfg.eval`,
    which its record then holds."""
    return recovery_changes(stored, cfg, model_config) == {}


def recovery_changes(stored: dict, cfg: RunConfig, model_config: type[ModelConfig]) -> dict | None:
    """How `cfg` changes the `RECOVERY_KEYS` of the checkpoint config `stored`, as
    {"section.key": [old, new]}, when that is all it changes (by the rules of `resumes_as`);
    None when it changes anything else."""
    try:
        stored = RunConfig.from_dict(stored, model_config).to_dict()
    except (ValueError, KeyError, TypeError):      # a key since removed: not the same training
        return None
    def training(config: dict) -> dict:
        return {k: v for k, v in experiment_identity(config).items() if k != "eval"}

    old, new = training(stored), training(cfg.to_dict())
    changes = {}
    for section, key in RECOVERY_KEYS:
        before, after = old[section].pop(key), new[section].pop(key)
        if before != after:
            changes[f"{section}.{key}"] = [before, after]
    return changes if old == new else None

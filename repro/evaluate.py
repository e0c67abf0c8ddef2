"""One evaluation entry point for every model: IW-NLL, ELBO, PPL, KL, MI and AU.

Definitions (docs/metrics.md; N evaluation examples x, T(x) target tokens counting `<eos>`):

* `nll` (§1) -- importance-weighted NLL in nats per example: -mean_x [logsumexp_k w_k - log K],
  w_k = log p(x|z_k) + log p(z_k) - log q(z_k|x), z_k ~ q(z|x) i.i.d. (the IWAE bound; it
  tightens as K grows). For a model without a latent (`has_latent = False`) it is the exact
  -log p(x).
* `elbo`, `rec` (§2) -- the negative ELBO per example, reported as a positive "NLL <=" number:
  `rec` = mean -log p(x|z) at ONE z ~ q(z|x) per example, `elbo` = `rec` + `kl`.
* `ppl`, `elbo_ppl` (§3) -- exp(sum_x NLL(x) / sum_x T(x)) with the IW-NLL (IW-PPL) or the
  negative ELBO (ELBO-PPL, an upper bound); only for batches that report `num_targets`.
* `kl` (§4) -- KL(q(z|x) || p(z)) at weight 1, mean per example: analytic for Gaussian pairs,
  else Monte Carlo with `mc_samples` draws (recorded). Never the free-bits-clamped value.
* `mi` (§5) -- I_q(x; z) = mean_i [log q(z_i|x_i) - log q_agg(z_i)], one z_i ~ q(z|x_i) per
  example, q_agg = the mean of the M posteriors in the pool (x_i included). The pool is the
  whole evaluation set (`mi_pool="dataset"`, Li et al. 2019) or He et al. 2019's minibatches
  (`mi_pool="batch"`): within each evaluation batch, the sentences of one length in stream order,
  cut into pools of at most `mi_pool_max` (32, their batch size); averaged over examples. Because
  log q_agg(z_i) >= log q(z_i|x_i) - log M, the estimate is at most log M (3.47 nats for
  batches of 32, 9.21 for 10k examples): compare MI only at equal M (`mi_pool_size` is
  recorded). Negative values are estimator noise and are kept.
  Deviation from the common estimator (docs/metrics.md §5), recorded as `mi_estimator="paired"`:
  He et al. take E_q log q(z|x) analytically (`"analytic"`, the estimator of records that lack
  the option). Both have the same
  expectation, but the analytic term leaves the sampled log q_agg(z_i) uncancelled, with a
  variance of d/2 per example for d uninformative dimensions. Measured on a collapsed PTB VAE
  (d = 32, 500 sentences, 8 evaluation seeds) the analytic estimate has sd 0.20 nats and the
  paired one 0.007; on an informative MNIST model (KL 25) 0.37 against 0.02. The log-density at
  the sample is the posterior's own `log_prob` (for flows, with their log-determinant).
* `au` (§6) -- active units: the number of latent dimensions u whose unbiased variance across
  examples of E_q[z_u] is >= `au_threshold` (0.01, Burda et al. 2016). E_q[z] is `mu` for a
  Gaussian. Otherwise it has no closed form, and the variance is the covariance across examples
  of two independent Monte Carlo means of `mc_samples` draws each: their noises are independent,
  so it is unbiased for Var_x E_q[z_u|x]. The variance of a single Monte Carlo mean is not: it
  adds E_x Var_q(z_u|x) / `mc_samples`, which for a collapsed unit at 100 draws is 0.01, the
  threshold itself, so about half the collapsed units would count as active.
* A model's own metrics -- the per-example values of its `evaluation_terms(batch)`, averaged
  over the examples under their own names. A model may narrow the shared metrics above
  (`shared_metrics`; `applicable_metrics`): an implicit latent has samples but no density, so
  only `au` applies to it.

Per-step latents (event shape (T, d)): log densities sum over the event, as everywhere. AU
counts the d units of the last axis, pooling examples and time steps (the interface carries no
mask, so positions past a sentence's end are included if the posterior has them). The dataset
pool needs one event shape for all examples, so per-step latents of varying length take
`mi_pool="batch"`; the dataset pool raises NotImplementedError for them.

Randomness. For a `DiagonalGaussian` posterior the standard-normal noise of example i of the
stream (its position in iteration order) comes from its own CPU generator seeded by (seed, i):
the numbers do not depend on how the stream is cut into batches, on `iw_chunk`, or on the
device. Other posteriors draw through `rsample(n, generator)` with one generator per batch,
seeded by (seed, position of its first example): reproducible and independent of `iw_chunk`
(all K draws of a batch are taken before the decoder sees them in chunks), but not of the batch
cut. The global RNG is forked and seeded with `seed` for the duration, so the model's own Monte
Carlo (MC KL, flow means) is reproducible and the caller's random stream is left untouched.
"""
from __future__ import annotations

import dataclasses
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
from tqdm import tqdm

from repro import precision as precision_mod
from repro.config import ConfigError, EvalConfig, precision_setting
from repro.nn.distributions import DiagonalGaussian, has_analytic_kl

METRIC_NAMES = ("nll", "elbo", "kl", "mi", "au")
MI_POOLS = ("dataset", "batch")
BATCH_POOL_DEFINITION = "same-length sentences of one evaluation batch, in stream order"
MI_ESTIMATOR = "paired"     # recorded; records without it used "analytic" (module docstring, `mi`)
# Largest (rows, pool, *event) block scored at once by the MI pool scan (elements): 64 MiB in fp32.
PAIR_BLOCK_ELEMENTS = 1 << 24
# Gaussian pool members scored per block (the rows per block follow from the budget above).
POOL_BLOCK = 1024


@dataclass
class EvalResult:
    """Metric values (`nll`, `ppl`, `elbo`, `elbo_ppl`, `rec`, `kl`, `mi`, `au`, `num_examples`,
    `num_targets`, as computed), the estimator options that produced them, and per-example
    tensors (`nll`, `elbo`, `rec`, `kl`; `(N,)`, on the CPU, in stream order)."""

    metrics: dict[str, float]
    options: dict[str, Any]
    per_example: dict[str, torch.Tensor] = field(default_factory=dict)

    def prefixed(self, prefix: str) -> dict[str, float]:
        """`{"test/nll": ...}` for `prefix="test"`: the names records and MLflow use."""
        return {f"{prefix}/{name}": value for name, value in self.metrics.items()}


def exp_or_inf(x: float) -> float:
    """exp(x), or inf where it leaves float range: a diverged model's perplexity, not a crash."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def cpu_has_bf16() -> bool:
    return torch.ops.mkldnn._is_mkldnn_bf16_supported()


def require_bf16_support(device: torch.device) -> None:
    """Refuse bf16 autocast up front where it would fail mid-run: on a CPU without native bf16
    (no AVX-512 bf16 or AMX) oneDNN has no bf16 LSTM kernel, and the first LSTM call raises."""
    if device.type == "cpu" and not cpu_has_bf16():
        raise ConfigError(
            "bf16 autocast needs a CPU with native bf16 (AVX-512 bf16 or AMX); this one has "
            f"{torch.backends.cpu.get_cpu_capability()}. Set train.precision and eval.precision "
            "to auto or fp32 (or the old train.bf16=false and eval.bf16=false; bf16=False), or run "
            "on a GPU.")


# The numerics rule for bf16 evaluation: it may move IW-NLL by under this fraction. `auto` checks
# it on the run's own model, on a prefix of the split at a smaller K, before it uses bf16.
BF16_NLL_TOLERANCE = 1e-3
CHECK_EXAMPLES, CHECK_SAMPLES = 32, 50


def eval_precision(model, corpus, cfg: EvalConfig, device, seed: int = 0,
                   batch_size: int = 64) -> precision_mod.Choice:
    """The precision `evaluate_corpus` runs in under `cfg.precision` (or its `bf16` alias).
    `auto` evaluates this model's IW-NLL on the first `CHECK_EXAMPLES` examples of the split
    (K = `CHECK_SAMPLES`) in fp32, bf16, bf16 and fp32 (`_check_evaluations`), and is bf16 only
    where the faster bf16 pass beats the faster fp32 pass `BF16_MIN_SPEEDUP` times (on a CPU)
    and moves that IW-NLL by under `BF16_NLL_TOLERANCE` (`choose_eval_precision`)."""
    setting = precision_setting(cfg)
    device = torch.device(device) if device is not None else _model_device(model)
    if (setting != "auto" or precision_mod.forced_precision()
            or not precision_mod.native_bf16(device)):
        return precision_mod.resolve(setting, device)
    split = corpus.splits.get(cfg.split) if hasattr(corpus, "splits") else None
    if ("nll" not in applicable_metrics(model) or not hasattr(split, "subset")
            or not dataclasses.is_dataclass(corpus)):
        return precision_mod.Choice("fp32", "no IW-NLL to check bf16 evaluation against")
    head = dataclasses.replace(corpus, splits={**corpus.splits, cfg.split: split.subset(CHECK_EXAMPLES)})
    samples = min(cfg.iw_samples, CHECK_SAMPLES)
    try:
        checks = _check_evaluations(model, head.batches(cfg.split, batch_size, shuffle=False),
                                    samples, min(cfg.iw_chunk, samples), seed, device)
    except RuntimeError as err:
        # Posteriors that keep autocast outputs for later (an IAF's context, Z-Forcing's
        # backward states) meet fp32 weights outside autocast: such a model evaluates in fp32.
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return precision_mod.Choice("fp32", f"bf16 evaluation fails for this model ({first})")
    return choose_eval_precision(checks, device, f"IW-NLL (K={samples}) on the first "
                                                 f"{CHECK_EXAMPLES} {cfg.split} examples")


def _check_evaluations(model, batches: Iterable, samples: int, chunk: int, seed: int,
                       device) -> dict[str, dict]:
    """{"fp32" | "bf16": {"nll", "seconds"}}: the IW-NLL of `batches` at each precision and the
    faster of two passes, in fp32, bf16, bf16, fp32 order (the first pass of each also builds
    its kernels; a load that drifts biases neither)."""
    batches = list(batches)
    out: dict[str, dict] = {}
    for name in ("fp32", "bf16", "bf16", "fp32"):
        started = time.perf_counter()
        nll = evaluate(model, batches, ("nll",), iw_samples=samples, iw_chunk=chunk, seed=seed,
                       bf16=name == "bf16", device=device).metrics["nll"]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
        out[name] = {"nll": nll, "seconds": min(seconds, out.get(name, {}).get("seconds", math.inf))}
    return out


def choose_eval_precision(checks: dict[str, dict], device, what: str,
                          threshold: float = precision_mod.BF16_MIN_SPEEDUP) -> precision_mod.Choice:
    """bf16 where it moves the checked IW-NLL by under `BF16_NLL_TOLERANCE` and, on a CPU, runs
    the check at least `threshold` times faster (a CUDA device's bf16 is taken as faster)."""
    speedup = checks["fp32"]["seconds"] / checks["bf16"]["seconds"]
    change = abs(checks["bf16"]["nll"] / checks["fp32"]["nll"] - 1)
    fast = device.type == "cuda" or speedup >= threshold
    speed = f"bf16 evaluation {speedup:.2f}x fp32 here" + ("" if device.type == "cuda" else
                                                           f" (bf16 needs {threshold}x)")
    moved = f"bf16 moved {what} by {change:.4%} (limit {BF16_NLL_TOLERANCE:.1%})"
    verdict = "bf16" if fast and change < BF16_NLL_TOLERANCE else "fp32"
    return precision_mod.Choice(verdict, f"{speed}; {moved}", round(speedup, 3))


def evaluate(model, batches: Iterable, metrics: Iterable[str] | None = None, *,
             iw_samples: int = 500, iw_chunk: int = 100, mi_pool: str = "dataset",
             mi_pool_max: int = 32, au_threshold: float = 0.01, mc_samples: int = 100,
             seed: int = 0, bf16: bool = False, device=None, progress: bool = False) -> EvalResult:
    """Evaluate `model` on `batches` (any iterable of batches -- a list or a generator; it is
    consumed once, in one pass).

    `metrics` is a subset of `METRIC_NAMES`; by default all of them for a latent-variable model
    and `("nll",)` (exact) for a language model. `device` moves the model and batches there
    (default: where the model's parameters are). `bf16` autocasts the model's forward passes;
    log-sum-exps and accumulations stay in fp32 or wider. The model is put in eval mode and its
    previous mode restored.
    """
    wanted = _resolve_metrics(model, metrics)
    if mi_pool not in MI_POOLS:
        raise ValueError(f"mi_pool={mi_pool!r}; choose one of {list(MI_POOLS)}")
    if min(iw_samples, iw_chunk, mc_samples) < 1:
        raise ValueError("iw_samples, iw_chunk and mc_samples must be at least 1")
    if device is not None:
        model.to(device)
    device = torch.device(device) if device is not None else _model_device(model)
    if bf16:
        require_bf16_support(device)
    run = _Evaluation(model, wanted, device, iw_samples=iw_samples, iw_chunk=iw_chunk,
                      mi_pool=mi_pool, mi_pool_max=mi_pool_max, mc_samples=mc_samples, seed=seed,
                      bf16=bf16)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode(), _seeded_global_rng(seed, device):
            for batch in tqdm(batches, desc="eval", disable=not progress):
                run.add(batch.to(device))
            metrics_out, per_example, mi_pool_size = run.finish(au_threshold)
    finally:
        model.train(was_training)
    options = {"metrics": list(wanted), "iw_samples": iw_samples, "iw_chunk": iw_chunk,
               "mi_pool": mi_pool, "mi_pool_size": mi_pool_size, "mi_estimator": MI_ESTIMATOR,
               **({"mi_pool_max": mi_pool_max, "mi_pool_def": BATCH_POOL_DEFINITION}
                  if mi_pool == "batch" else {}),
               "au_threshold": au_threshold,
               "mc_samples": mc_samples, "seed": seed, "bf16": bf16,
               "nll_estimator": "iw" if model.has_latent else "exact",
               "kl_estimator": run.kl_estimator}
    return EvalResult(metrics_out, options, per_example)


def evaluate_corpus(model, corpus, cfg: EvalConfig, device, seed: int, batch_size: int = 64,
                    metrics: Iterable[str] | None = None, progress: bool = False) -> EvalResult:
    """`evaluate` on `corpus.batches(cfg.split, batch_size, shuffle=False)` with the options of
    `cfg`, in the precision `eval_precision` picks. With `cfg.max_examples`, the first
    `max_examples` examples of the split in stored
    (file) order are evaluated -- a prefix, not the shortest sentences -- which needs a
    dataclass corpus with `splits` whose splits offer `subset(n)` (as `TextCorpus` does).
    With `cfg.mi_au_whole_split` as well, MI and AU (cheap: one posterior per example) are
    scored in a second pass over the whole split, whose size is recorded as `mi_au_examples`.
    `batch_size` matters for `mi_pool="batch"` and is recorded."""
    wanted = _resolve_metrics(model, metrics)
    pooled = [m for m in wanted if m in ("mi", "au")] if (
        cfg.mi_au_whole_split and cfg.max_examples is not None) else []
    choice = eval_precision(model, corpus, cfg, device, seed, batch_size)
    whole = corpus
    if cfg.max_examples is not None:
        prefix = corpus.split(cfg.split).subset(cfg.max_examples)
        corpus = dataclasses.replace(corpus, splits={**corpus.splits, cfg.split: prefix})

    def run(on, names):
        return evaluate(model, on.batches(cfg.split, batch_size, shuffle=False), names,
                        iw_samples=cfg.iw_samples, iw_chunk=cfg.iw_chunk, mi_pool=cfg.mi_pool,
                        mi_pool_max=cfg.mi_pool_max,
                        au_threshold=cfg.au_threshold, mc_samples=cfg.mc_samples, seed=seed,
                        bf16=choice.precision == "bf16", device=device, progress=progress)

    result = run(corpus, [m for m in wanted if m not in pooled])
    result.options.update(split=cfg.split, max_examples=cfg.max_examples, batch_size=batch_size,
                          precision=choice.precision, precision_reason=choice.reason,
                          bf16_speedup=choice.speedup)
    if pooled:
        second = run(whole, pooled)
        result.metrics.update({m: second.metrics[m] for m in pooled})
        result.options.update(metrics=list(wanted), mi_pool_size=second.options["mi_pool_size"],
                              mi_au_examples=second.metrics["num_examples"])
    return result


def applicable_metrics(model) -> tuple[str, ...]:
    """The shared metrics defined for `model`: all for a latent-variable model unless it narrows
    them (`shared_metrics`: an implicit latent has no density, so no NLL, ELBO, KL or MI), the
    exact `nll` for a language model."""
    if not model.has_latent:
        return ("nll",)
    return tuple(getattr(model, "shared_metrics", None) or METRIC_NAMES)


def _resolve_metrics(model, metrics) -> tuple[str, ...]:
    applicable = applicable_metrics(model)
    wanted = applicable if metrics is None else tuple(dict.fromkeys(metrics))
    unknown = [m for m in wanted if m not in METRIC_NAMES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; choose from {list(METRIC_NAMES)}")
    latent_only = [m for m in wanted if m not in applicable]
    if latent_only and model.has_latent:
        raise ValueError(f"{latent_only} are not defined for {type(model).__name__}, whose "
                         f"shared metrics are {list(applicable)}")
    if latent_only:
        raise ValueError(f"{latent_only} need a latent variable; {type(model).__name__} has "
                         f"has_latent=False, so only the exact 'nll' (and ppl) applies")
    return wanted


def _model_device(model) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


@contextmanager
def _seeded_global_rng(seed: int, device: torch.device):
    cuda = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.default_generator.manual_seed(seed)
        if cuda:
            with torch.cuda.device(device):
                torch.cuda.manual_seed(seed)
        yield


def _mix(seed: int, index: int) -> int:
    """A 63-bit generator seed from (seed, index) (splitmix64's finaliser): nearby pairs give
    unrelated streams."""
    mask = (1 << 64) - 1
    x = (seed * 0x9E3779B97F4A7C15 + index) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return (x ^ (x >> 31)) >> 1


def _example_noise(seed: int, start: int, count: int,
                   shapes: list[tuple[int, ...]]) -> list[torch.Tensor]:
    """Standard normal noise for examples start..start+count-1 of the stream, one tensor
    `(shape[0], count, *shape[1:])` per requested shape, drawn in order from each example's
    own CPU generator. Each shape is its own draw, so the first ones do not change with the
    size of the later ones (the ELBO sample does not depend on K). The loop is over examples,
    not samples: a generator per example is what makes the numbers independent of the batch
    cut, and B small CPU draws per batch cost little beside K decoder passes."""
    per_example = []
    for i in range(start, start + count):
        generator = torch.Generator().manual_seed(_mix(seed, i))
        per_example.append([torch.randn(shape, generator=generator) for shape in shapes])
    return [torch.stack(draws, dim=1) for draws in zip(*per_example)]


def _wide(x: torch.Tensor) -> torch.Tensor:
    """fp32 for half-precision tensors (autocast outputs); fp32/fp64 pass unchanged."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _full_precision(posterior):
    if isinstance(posterior, DiagonalGaussian):
        return DiagonalGaussian(_wide(posterior.mu), _wide(posterior.logvar), posterior.event_dims)
    return posterior


@dataclass
class _Draws:
    """z for the ELBO `(1, B, *event)` with its log q, z for MI `(B, *event)` with its log q `(B,)`,
    and the K importance samples `(K, B, *event)` with log q `(K, B)`; None where not needed."""

    elbo: tuple[torch.Tensor, torch.Tensor] | None = None
    mi: tuple[torch.Tensor, torch.Tensor] | None = None
    iw: tuple[torch.Tensor, torch.Tensor] | None = None


class _Evaluation:
    """Accumulates per-example values batch by batch; `finish` turns them into metrics."""

    def __init__(self, model, wanted, device, *, iw_samples, iw_chunk, mi_pool, mi_pool_max,
                 mc_samples, seed, bf16):
        self.model, self.wanted, self.device = model, wanted, device
        self.iw_samples, self.iw_chunk, self.mc_samples, self.seed = (
            iw_samples, iw_chunk, mc_samples, seed)
        self.bf16 = bf16
        self.values: dict[str, list[torch.Tensor]] = {}
        self.num_targets: list[torch.Tensor] = []
        self.seen = 0
        self.kl_estimator = None
        self.mi = _MutualInformation(mi_pool, mi_pool_max) if "mi" in wanted else None
        self.au = _UnitCovariance() if "au" in wanted else None

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _keep(self, name: str, value: torch.Tensor) -> None:
        self.values.setdefault(name, []).append(value)

    def add(self, batch) -> None:
        if batch.num_targets is not None:
            self.num_targets.append(batch.num_targets)
        if self.model.has_latent:
            self._add_latent(batch)
        else:
            with self._autocast():
                log_px = self.model.log_likelihood(batch, None)
            self._keep("nll", -_wide(log_px)[0])
        if hasattr(self.model, "evaluation_terms"):
            with self._autocast():
                terms = self.model.evaluation_terms(batch)
            for name, value in terms.items():
                self._keep(name, _wide(value))
        self.seen += batch.size

    def _add_latent(self, batch) -> None:
        with self._autocast():
            posterior = _full_precision(self.model.posterior(batch))
        draws = self._draw(posterior)
        if "kl" in self.wanted or "elbo" in self.wanted:
            self._add_kl_elbo(batch, posterior, draws)
        if "nll" in self.wanted:
            self._keep("nll", -self._iw_log_marginal(batch, *draws.iw))
        if self.mi is not None:
            self.mi.add(posterior, *draws.mi, lengths=getattr(batch, "lengths", None))
        if self.au is not None:
            self.au.add(*self._two_mean_estimates(posterior))

    def _draw(self, posterior) -> _Draws:
        """One ELBO sample and one MI sample per example, then the K importance samples; the
        first two are drawn whenever anything is, so the K samples do not depend on which
        metrics were asked for."""
        k = self.iw_samples if "nll" in self.wanted else 0
        if not (k or "elbo" in self.wanted or "mi" in self.wanted):
            return _Draws()
        if isinstance(posterior, DiagonalGaussian):
            event = tuple(posterior.mu.shape[1:])
            shapes = [(2, *event)] + ([(k, *event)] if k else [])
            noise = _example_noise(self.seed, self.seen, posterior.batch_size, shapes)
            samples = [self._reparameterise(posterior, eps) for eps in noise]
        else:
            # An arbitrary posterior takes no external noise: one generator for the batch.
            generator = torch.Generator(self.device).manual_seed(_mix(self.seed, self.seen))
            samples = [posterior.rsample(2, generator)]
            samples += [posterior.rsample(k, generator)] if k else []
        (z, log_q), iw = samples[0], (samples[1] if k else None)
        return _Draws((z[:1], log_q[:1]), (z[1], log_q[1]), iw)

    @staticmethod
    def _reparameterise(posterior: DiagonalGaussian, eps: torch.Tensor):
        eps = eps.to(posterior.mu.device, posterior.mu.dtype)
        z = posterior.mu + torch.exp(0.5 * posterior.logvar) * eps
        return z, posterior.log_prob(z)

    def _add_kl_elbo(self, batch, posterior, draws: _Draws) -> None:
        with self._autocast():
            prior = self.model.prior(batch)
            kl = _wide(self.model.kl(batch, posterior, n_samples=self.mc_samples))
        self.kl_estimator = "analytic" if has_analytic_kl(posterior, prior) else "mc"
        self._keep("kl", kl)
        if "elbo" in self.wanted:
            with self._autocast():
                log_px_z = self.model.log_likelihood(batch, draws.elbo[0])
            rec = -_wide(log_px_z)[0]
            self._keep("rec", rec)
            self._keep("elbo", rec + kl)

    def _iw_log_marginal(self, batch, z: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
        """`z (K, B, *event)`, `log_q (K, B)` -> log p(x) estimate `(B,)`; the decoder sees
        `iw_chunk` samples of the whole batch at a time and a running log-sum-exp keeps memory
        at one chunk."""
        total = torch.full(log_q.shape[1:], -math.inf, device=log_q.device, dtype=log_q.dtype)
        for chunk_z, chunk_log_q in zip(z.split(self.iw_chunk), log_q.split(self.iw_chunk)):
            with self._autocast():
                log_px_z = self.model.log_likelihood(batch, chunk_z)
                log_pz = self.model.log_prior(chunk_z, batch)
            weights = _wide(log_px_z) + _wide(log_pz) - chunk_log_q
            total = torch.logaddexp(total, torch.logsumexp(weights, dim=0))
        return total - math.log(self.iw_samples)

    def _two_mean_estimates(self, posterior) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independent estimates of E_q[z] `(B, *event)` (module docstring, `au`); a
        Gaussian's mean is exact, so both are `mu`."""
        first = _wide(posterior.mean(self.mc_samples))
        if isinstance(posterior, DiagonalGaussian):
            return first, first
        return first, _wide(posterior.mean(self.mc_samples))

    def finish(self, au_threshold: float):
        if self.seen == 0:
            raise ValueError("no batches to evaluate")
        per_example = {name: torch.cat(parts).cpu() for name, parts in self.values.items()}
        metrics = {"num_examples": self.seen}
        targets = torch.cat(self.num_targets).sum().item() if self.num_targets else None
        if targets is not None:
            metrics["num_targets"] = targets
        for name in per_example:   # nll, elbo, rec, kl and the model's own `evaluation_terms`
            metrics[name] = per_example[name].mean().item()
        for name, ppl_name in (("nll", "ppl"), ("elbo", "elbo_ppl")):
            if name in per_example and targets is not None:
                metrics[ppl_name] = exp_or_inf(per_example[name].sum().item() / targets)
        mi_pool_size = None
        if self.mi is not None:
            metrics["mi"], mi_pool_size = self.mi.value()
        if self.au is not None:
            metrics["au"] = float((self.au.covariance() >= au_threshold).sum().item())
        return metrics, per_example, mi_pool_size


class _MutualInformation:
    """The aggregate-posterior MI estimator (docs/metrics.md §5) over a batch or dataset pool."""

    def __init__(self, pool: str, pool_max: int = 32):
        self.pool, self.pool_max = pool, pool_max
        self.log_q: list[torch.Tensor] = []         # log q(z_i|x_i) at the example's own draw
        self.log_q_agg: list[torch.Tensor] = []      # batch pool: scored as batches arrive
        self.z: list[torch.Tensor] = []              # dataset pool: scored at the end
        self.posteriors: list = []
        self.largest_batch = 0

    def add(self, posterior, z: torch.Tensor, log_q: torch.Tensor,
            lengths: torch.Tensor | None = None) -> None:
        """`z (B, *event)`: one draw per example; `log_q (B,)`: its density under its posterior;
        `lengths (B,)`: what makes two examples poolable under `pool="batch"` (None: all are)."""
        self.log_q.append(_wide(log_q))
        if self.pool == "batch":
            pools = batch_pools(lengths if lengths is not None else torch.zeros(len(z)), self.pool_max)
            self.log_q_agg.append(_log_pooled_density(z, posterior, pools))
            self.largest_batch = max(self.largest_batch, int(torch.bincount(pools).max()))
        else:
            self.z.append(z)
            self.posteriors.append(posterior)

    def value(self) -> tuple[float, int]:
        """(MI in nats, pool size M): the dataset size, or the largest batch for the batch pool
        (a smaller last batch has a lower cap)."""
        if self.pool == "batch":
            log_q_agg, size = torch.cat(self.log_q_agg), self.largest_batch
        else:
            events = {tuple(z.shape[1:]) for z in self.z}
            if len(events) > 1:
                raise NotImplementedError(
                    f"mi_pool='dataset' needs one latent shape for all examples, got {sorted(events)}"
                    " (per-step latents of varying length have no common aggregate posterior);"
                    " use mi_pool='batch'")
            z = torch.cat(self.z)
            log_q_agg, size = _log_aggregate_density(z, _pool_blocks(self.posteriors)), len(z)
        return (torch.cat(self.log_q) - log_q_agg).mean().item(), size


def batch_pools(lengths: torch.Tensor, pool_max: int) -> torch.Tensor:
    """`(B,) -> (B,)`: each example's pool id, He et al.'s way: examples of one length, in the
    order given, cut into runs of at most `pool_max`."""
    lengths = lengths.detach().cpu()
    _, group = torch.unique(lengths, return_inverse=True)
    order = torch.sort(group, stable=True).indices
    sorted_group = group[order]
    starts = torch.searchsorted(sorted_group, sorted_group)   # first position of each group
    rank = torch.empty_like(group)
    rank[order] = torch.arange(len(group)) - starts           # position within its group
    return group * len(group) + torch.div(rank, pool_max, rounding_mode="floor")


def _log_pooled_density(z: torch.Tensor, posterior, pools: torch.Tensor) -> torch.Tensor:
    """log q_agg(z_i) over the members of example i's pool only: logsumexp over j in pool(i) of
    log q(z_i|x_j), minus log |pool(i)|; `z (B, *event)`, `pools (B,)` -> (B,)."""
    event = tuple(z.shape[1:])
    grid = z.unsqueeze(1).expand(len(z), posterior.batch_size, *event)
    log_q = _wide(posterior.log_prob(grid))                   # (i, j): z_i under posterior j
    pools = pools.to(log_q.device)
    same = pools.unsqueeze(1) == pools.unsqueeze(0)
    members = same.sum(1).to(log_q.dtype)
    return torch.logsumexp(log_q.masked_fill(~same, -math.inf), dim=1) - members.log()


def _pool_blocks(posteriors: list) -> list:
    """The pool as blocks to score against: Gaussians re-cut into `POOL_BLOCK`-sized blocks of
    their stored (mu, logvar); other posteriors as they came, one per batch."""
    if not all(isinstance(p, DiagonalGaussian) for p in posteriors):
        return posteriors
    mu = torch.cat([p.mu for p in posteriors])
    logvar = torch.cat([p.logvar for p in posteriors])
    event_dims = posteriors[0].event_dims
    return [DiagonalGaussian(m, lv, event_dims)
            for m, lv in zip(mu.split(POOL_BLOCK), logvar.split(POOL_BLOCK))]


def _log_aggregate_density(z: torch.Tensor, pool: list) -> torch.Tensor:
    """log q_agg(z_i) = logsumexp_j log q(z_i|x_j) - log M over every member j of `pool`
    (posterior objects covering M examples in all); `z (N, *event) -> (N,)`. Scored in blocks of
    rows x pool members so memory stays at `PAIR_BLOCK_ELEMENTS`."""
    event = tuple(z.shape[1:])
    widest = max(p.batch_size for p in pool)
    rows = max(1, PAIR_BLOCK_ELEMENTS // (widest * math.prod(event)))
    members = sum(p.batch_size for p in pool)
    out = []
    for z_rows in z.split(rows):
        total = torch.full((len(z_rows),), -math.inf, device=z.device, dtype=z.dtype)
        for block in pool:
            grid = z_rows.unsqueeze(1).expand(len(z_rows), block.batch_size, *event)
            total = torch.logaddexp(total, torch.logsumexp(_wide(block.log_prob(grid)), dim=1))
        out.append(total)
    return torch.cat(out) - math.log(members)


class _UnitCovariance:
    """Unbiased per-unit covariance, across examples (and time steps), of two estimates of the
    posterior means (their variance when both are the same tensor), merged batch by batch (Chan
    et al.'s pairwise update) in fp64, so batches of different lengths can be pooled and nothing
    of size N is stored."""

    def __init__(self):
        self.count = 0
        self.mean_a = self.mean_b = self.comoment = None

    def add(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """`a, b (B, *event)`; units are the last axis."""
        a, b = (t.reshape(-1, t.shape[-1]).double() for t in (a, b))
        n, batch_a, batch_b = len(a), a.mean(0), b.mean(0)
        batch_comoment = ((a - batch_a) * (b - batch_b)).sum(0)
        if self.comoment is None:
            self.count, self.mean_a, self.mean_b, self.comoment = n, batch_a, batch_b, batch_comoment
            return
        delta_a, delta_b = batch_a - self.mean_a, batch_b - self.mean_b
        total = self.count + n
        self.mean_a = self.mean_a + delta_a * (n / total)
        self.mean_b = self.mean_b + delta_b * (n / total)
        self.comoment = self.comoment + batch_comoment + delta_a * delta_b * (self.count * n / total)
        self.count = total

    def covariance(self) -> torch.Tensor:
        return self.comoment / (self.count - 1)

"""Goyal et al. 2017, Z-Forcing: a stochastic RNN whose per-step latents are made to predict the
state of a backward RNN, so that they carry information about the future.

Implementation details (what we do; where the paper, or the co-author code `sordonia/zforcing`
`model.py` / `train_*.py`, says so):

- Time steps (`steps.py`): step t reads x_{t-1} and predicts x_t (the code's `x`/`y`). Text:
  one word per step, `<eos>` included, PTB sentences one at a time. Sequential MNIST: the
  binarised image in raster order, `pixels_per_step` pixels per step (1 in `paper`: "pixel by
  pixel", paper), Bernoulli outputs.
- Backward RNN: an LSTM over the targets from each sequence's own end, so its state b_t
  summarises x_t .. x_T and nothing past the end (paper: the backward RNN summarises the
  future; code `bwd_pass`). It shares the input embedding with the forward RNN (code
  `emb_mod`).
- Forward RNN: an LSTM whose step-t input is [embed(x_{t-1}), W z_t] (code `gen_mod`, a linear
  map of z_t); its state h_t predicts x_t, so z_t conditions the output at step t and every
  later step (paper), through h_t only (code `fwd_out_mod(h)`).
- Prior p(z_t | h_{t-1}) and posterior q(z_t | h_{t-1}, b_t): diagonal Gaussians from one-hidden-
  layer MLPs (paper; code `pri_mod`, `inf_mod`); h_{t-1} carries z_{<t}, so q is autoregressive
  in time and sampling it is a loop over steps. h_{-1} = 0 (code `init_hidden`).
- Auxiliary cost: -log N(b_t; tanh(mu), exp(logvar)) with (mu, logvar) from an MLP of z_t
  (`aux_input="z"`, the paper's equation) or of [h_{t-1}, z_t] (`"hz"`, the code's default; the
  authors report no significant difference, `sordonia/zforcing` issue #1); b_t is detached, a
  target only (paper; code `b_step.detach()`). Summed over the steps; over b's dimensions summed
  (`aux_reduction="sum"`, the code's `log_prob_gaussian(mean=False)`) or averaged (`"mean"`,
  its `mean=True`), which keeps the cost's scale independent of `hidden_size` (the presets'
  choice, reasoned in `presets.py`).
- Every Gaussian's (mu, logvar) is clamped to [-8, 8] (code `torch.clamp`), and the MLPs'
  activation is a leaky ReLU of slope 1/3 clamped to [-3, 3] (code `LReLU`).
- Loss per sequence: -log p(x|z) + kl_weight * KL + aux_weight * aux NLL, at one posterior path
  (code `train_blizzard.py`). KL weight min(1, 0.2 + 5e-5 * step) with KL annealing, 1 without
  (code `kla_sta`, `kld_step`; `repro.schedules.LinearRate`); aux weight linear from
  `aux_start` to `aux_end` over `aux_warmup_steps` (code: two epochs for Blizzard, 5e-5 per
  step for TIMIT).
- KL: sum over steps of the analytic KL(q(z_t | h_{t-1}, b_t) || p(z_t | h_{t-1})), with h
  along a path z ~ q: the usual stochastic-RNN estimate, unbiased for the sequence KL
  E_q[log q(z|x) - log p(z)]; `kl(n_samples)` averages n paths (`eval.mc_samples`).
- Initialisation: orthogonal recurrent weights for both LSTMs and zero forward-LSTM biases
  (code `LSTMCell.init_weights`, `nn.init.orthogonal(bwd_mod.weight_hh_l0)`).
- Padding (text): past a sentence's end, q and p are both N(0, I) (`standard_on_padding`), so
  a padded step adds exactly 0 to the KL and to log p(z) - log q(z), and nothing to log p(x|z)
  or the auxiliary cost (masked; the forward RNN is causal) -- the code multiplies each term by
  `x_mask`. Unlike a masked density, this keeps every sequence of a batch in one (T, d) space:
  the batch MI pool scores z_i under q(.|x_j), and a masked q would favour shorter x_j.
- LSTM baseline (`SequenceLM`): the same embedding, LSTM and output layer without z, scored
  by its exact likelihood, the baseline a stochastic RNN is read against.

Evaluation (`repro.evaluate`, one protocol for every paper) through the shared interface:
`posterior(batch)` is a `StepPosterior`, not a fixed Gaussian (q(z_t) depends on z_{<t}): its
`rsample` runs the loop and returns the exact log q of the whole path, its `log_prob(z)` scores
a given z sequence; `log_prior(z, batch)` / `prior(batch).log_prob(z)` run the forward RNN on
the given z. So the IW-NLL logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K is
over the whole sequence z_{1:T}, with the exact density of the proposal that drew it. MI uses
`mi_pool="batch"` (the dataset pool would score N^2 sequences, and needs one length for all);
over a whole sequence of latents it sits near its log M cap, so the per-step KL is the collapse
signal. MI scores each example's own sampled path; E_q[z] for AU is the posterior mean
mu_t averaged over paths. AU pools examples and steps, padded steps (mean 0) included: the
interface carries no mask.

Deviations from the paper and the code:
- The code also trains the backward RNN as a reverse language model (`--bwd`, default 0),
  offers a conditional layer norm (`--cond_ln`) and skips batches with KL >= 1e4 or a NaN loss;
  we implement none of them. `train/kl_skip_rate` logs the share of batches the code would have
  skipped; a NaN stops our run (trainer guard).
- The code's best-validation bookkeeping resets every epoch, so it saves (and later scores) the
  last epoch's model; we score the best validation epoch's, as for every paper here.
- Sizes, schedules, the learning-rate rule, data and every reduction: `presets.py`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from papers.goyal2017_zforcing.steps import Steps, make_steps, repeat_rows
from repro.config import ModelConfig, bounded
from repro.model import LanguageModel, LatentVariableModel
from repro.nn.distributions import DiagonalGaussian
from repro.schedules import LinearRate

LOG_2PI = math.log(2 * math.pi)
# The code skips a batch whose mean KL reaches this; we only count such batches.
SKIPPED_KL = 1e4
# Posterior paths sampled at once keep their forward states (paths x B x T x H) under this many
# elements, so K = 500 pixel-level MNIST paths never need ~100 GB at once: 4 GiB in fp32 on a
# GPU, where the step loop is launch-bound and wants many rows, 256 MiB on the CPU.
PATH_BLOCK_ELEMENTS = {"cuda": 1 << 30, "cpu": 1 << 26}


@dataclass
class ZForcingConfig(ModelConfig):
    # One recurrent size for the forward and backward LSTMs: the protocol's decoder size.
    shared_sizes = {"embed_size": "embed_size", "decoder_hidden": "hidden_size",
                    "latent_size": "latent_size"}
    embed_size: int = bounded(512, lo=1)             # code `emb_dim`
    hidden_size: int = bounded(1024, lo=1)           # forward and backward LSTM (`rnn_dim`)
    latent_size: int = bounded(256, lo=1)            # z_t (`z_dim`)
    mlp_size: int = bounded(512, lo=1)               # MLP hidden layers and z's input map (`mlp_dim`)
    pixels_per_step: int = bounded(1, lo=1)          # images only: 1 = pixel by pixel
    dropout: float = bounded(0.0, lo=0.0, hi=1.0)    # on embedded inputs (code `emb_mod`)
    kl_start: float = bounded(0.2, lo=0.0, hi=1.0)   # code `kla_sta`; 1.0 = no KL annealing
    kl_increment: float = bounded(5e-5, lo=0.0)      # per update (code `kld_step`)
    aux_start: float = bounded(0.0, lo=0.0)          # code `aux_sta`
    aux_end: float = bounded(0.0, lo=0.0)            # code `aux_end`; 0 and 0: no auxiliary cost
    aux_warmup_steps: int = bounded(0, lo=0)         # updates from aux_start to aux_end
    aux_input: str = bounded("z", choices=("z", "hz"))  # paper: z_t; code default: [h_{t-1}, z_t]
    # How the auxiliary NLL reduces over b_t's `hidden_size` dimensions: "sum" (the code's
    # `log_prob_gaussian(mean=False)`) or "mean" (its `mean=True`), which keeps the cost's
    # scale, and so what `aux_end` means, independent of the LSTM size (presets.py).
    aux_reduction: str = bounded("sum", choices=("sum", "mean"))
    param_clamp: float = bounded(8.0, lo=0.0)        # Gaussian parameters clamped to +-this


@dataclass
class SequenceLMConfig(ModelConfig):
    embed_size: int = bounded(512, lo=1)
    hidden_size: int = bounded(1024, lo=1)
    pixels_per_step: int = bounded(1, lo=1)
    dropout: float = bounded(0.0, lo=0.0, hi=1.0)


def kl_schedule_of(cfg: ZForcingConfig) -> LinearRate:
    """The code's annealing as a core schedule: start at `kl_start`, add `kl_increment` per
    update, stop at 1. The config keeps the code's two names, which its records hold."""
    return LinearRate(start_weight=cfg.kl_start, weight_per_step=cfg.kl_increment)


def aux_weight(step: int, cfg: ZForcingConfig) -> float:
    """Linear from `aux_start` to `aux_end` over `aux_warmup_steps` updates, then constant."""
    if cfg.aux_warmup_steps == 0:
        return cfg.aux_end
    return cfg.aux_start + (cfg.aux_end - cfg.aux_start) * min(1.0, step / cfg.aux_warmup_steps)


class ClampedLeakyReLU(nn.Module):
    """The code's `LReLU`: leaky ReLU of slope 1/3, clamped to [-3, 3]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 1 / 3).clamp(-3.0, 3.0)


def mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), ClampedLeakyReLU(), nn.Linear(n_hidden, n_out))


def init_lstm(lstm: nn.LSTM, zero_bias: bool) -> None:
    nn.init.orthogonal_(lstm.weight_hh_l0)
    if zero_bias:
        nn.init.zeros_(lstm.bias_ih_l0)
        nn.init.zeros_(lstm.bias_hh_l0)


def reverse_steps(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence's first `lengths[b]` steps, padding left in place:
    `(B, T, ...) -> (B, T, ...)`. Its own inverse."""
    t = torch.arange(x.shape[1], device=x.device)
    index = torch.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    index = index.view(*index.shape, *[1] * (x.dim() - 2)).expand_as(x)
    return x.gather(1, index)


def previous(h: torch.Tensor) -> torch.Tensor:
    """h_{t-1} for every step, h_{-1} = 0: `(N, T, H) -> (N, T, H)`."""
    return F.pad(h, (0, 0, 1, 0))[:, :-1]


def log_normal(x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mu, exp(logvar))."""
    return -0.5 * ((x - mu).pow(2) * torch.exp(-logvar) + logvar + LOG_2PI)


def wide(x: torch.Tensor) -> torch.Tensor:
    """fp32 for half-precision (autocast) tensors; fp32/fp64 unchanged."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def lstm_cell(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM update from pre-activations `(N, 4H)` in `nn.LSTM`'s gate order (i, f, g, o);
    the cell state stays fp32 over long (784-step) sequences under bf16 autocast."""
    i, f, g, o = wide(gates).chunk(4, -1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def standard_on_padding(mu: torch.Tensor, logvar: torch.Tensor, mask: torch.Tensor):
    """Gaussian parameters `(N, T, d)` (or `(N, d)` for one step) with padded steps, `mask`
    `(N, T)` (or `(N,)`) False, set to N(0, I) -- in q and p alike, so a padded step adds
    exactly 0 to the KL and to log p(z) - log q(z), and every sequence of a batch lives in the
    same (T, d) space (the batch MI pool compares densities across examples)."""
    keep = mask[..., None]
    return torch.where(keep, mu, 0.0), torch.where(keep, logvar, 0.0)


@dataclass
class Context:
    """What every step of a batch conditions on, computed once."""

    steps: Steps
    inputs: torch.Tensor    # (B, T, E) embedded x_{t-1}
    future: torch.Tensor    # (B, T, H) backward states b_t


@dataclass
class Path:
    """n posterior paths: z and the posterior means along them `(n, B, T, d)`, the exact log q
    of each whole path `(n, B)`, the analytic KL of each step given the path `(n, B, T)` (zero
    on padding), and the forward states `(n*B, T, H)` (None once paths are merged)."""

    z: torch.Tensor
    q_mu: torch.Tensor
    log_q: torch.Tensor
    kl: torch.Tensor
    hidden: torch.Tensor | None = None

    @staticmethod
    def merge(parts: list[Path]) -> Path:
        """Blocks of paths, concatenated along the sample axis (forward states dropped)."""
        fields = ("z", "q_mu", "log_q", "kl")
        return Path(*(torch.cat([getattr(part, name) for part in parts]) for name in fields))


class ZForcing(LatentVariableModel):
    """Stochastic RNN with a backward-RNN posterior and Z-Forcing's auxiliary cost."""

    def __init__(self, cfg: ZForcingConfig, io: nn.Module):
        super().__init__()
        self.cfg, self.io = cfg, io
        e, h, d, m = cfg.embed_size, cfg.hidden_size, cfg.latent_size, cfg.mlp_size
        self.backward_rnn = nn.LSTM(e, h, batch_first=True)
        self.forward_rnn = nn.LSTM(e + m, h, batch_first=True)
        self.z_to_input = nn.Linear(d, m)
        self.prior_net = mlp(h, m, 2 * d)
        self.posterior_net = mlp(2 * h, m, 2 * d)   # input [h_{t-1}, b_t], in that order
        self.aux_net = mlp(d + (h if cfg.aux_input == "hz" else 0), m, 2 * h)
        init_lstm(self.forward_rnn, zero_bias=True)
        init_lstm(self.backward_rnn, zero_bias=False)

    # --- the networks, step-parallel -------------------------------------------------------

    def _gaussian(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = wide(params).clamp(-self.cfg.param_clamp, self.cfg.param_clamp).chunk(2, -1)
        return mu, logvar

    def backward_states(self, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Embedded targets `(B, T, E)` -> b `(B, T, H)`; b_t reads x_T .. x_t of its own sequence."""
        states, _ = self.backward_rnn(reverse_steps(targets, lengths))
        return reverse_steps(states, lengths)

    def forward_states(self, inputs: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Embedded inputs `(B, T, E)` and given latents `(n, B, T, d)` -> h `(n*B, T, H)`."""
        z_in = self.z_to_input(z.flatten(0, 1))
        return self.forward_rnn(torch.cat([repeat_rows(inputs, z.shape[0]), z_in], -1))[0]

    def prior_params(self, h_prev: torch.Tensor, mask: torch.Tensor):
        """p(z_t | h_{t-1}): `(N, T, H), (N, T) -> 2 x (N, T, d)`."""
        return standard_on_padding(*self._gaussian(self.prior_net(h_prev)), mask)

    def posterior_params(self, h_prev: torch.Tensor, future: torch.Tensor, mask: torch.Tensor):
        """q(z_t | h_{t-1}, b_t): `(N, T, H), (N, T, H), (N, T) -> 2 x (N, T, d)`."""
        params = self.posterior_net(torch.cat([h_prev, future], -1))
        return standard_on_padding(*self._gaussian(params), mask)

    def aux_nll(self, z: torch.Tensor, h_prev: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """-log N(b_t; tanh(mu), exp(logvar)) per step, `(N, T, d), (N, T, H), (N, T, H) -> (N, T)`."""
        head_in = z if self.cfg.aux_input == "z" else torch.cat([h_prev, z], -1)
        mu, logvar = self._gaussian(self.aux_net(head_in))
        # b_t is only a target here: the cost moves z_t towards b_t, never b_t towards z_t.
        nll = -log_normal(wide(future.detach()), torch.tanh(mu), logvar)
        return nll.mean(-1) if self.cfg.aux_reduction == "mean" else nll.sum(-1)

    def aux_cost(self, ctx: Context, z: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The auxiliary NLL of one path, z `(B, T, d)` and its forward states `(B, T, H)`,
        summed over the real steps, `(B,)`."""
        per_step = self.aux_nll(z, previous(hidden), ctx.future)
        return torch.where(ctx.steps.mask, per_step, 0.0).sum(1)

    # --- the posterior loop ----------------------------------------------------------------

    def context(self, batch) -> Context:
        steps = self.io.steps(batch)
        future = self.backward_states(self.io.embed_targets(steps), steps.lengths)
        return Context(steps, self.io.embed_inputs(steps), future)

    def sample_path(self, ctx: Context, eps: torch.Tensor) -> Path:
        """Posterior paths from standard-normal noise `eps (n, B, T, d)`.

        z_t needs h_{t-1}, which needs z_{t-1}: a loop over steps. What does not depend on z
        is computed for all steps at once and broadcast over the n paths, and linear maps in a
        row are composed (z_t -> W z_t -> gates is one d x 4H product): the evaluation runs
        this loop for hundreds of paths. The arithmetic is `forward_states` and
        `posterior_params`'s (tested to agree)."""
        n, batch, steps, _ = eps.shape
        lstm, first, rest = self.forward_rnn, self.posterior_net[0], self.posterior_net[1:]
        w_x, w_z = lstm.weight_ih_l0.split([self.cfg.embed_size, self.cfg.mlp_size], 1)
        w_post_h, w_post_b = first.weight.split(self.cfg.hidden_size, 1)
        w_from_h = torch.cat([lstm.weight_hh_l0, w_post_h])
        w_from_z = w_z @ self.z_to_input.weight
        gate_bias = lstm.bias_ih_l0 + lstm.bias_hh_l0 + w_z @ self.z_to_input.bias
        gates_x = F.linear(ctx.inputs, w_x, gate_bias)                 # (B, T, 4H)
        post_b = F.linear(ctx.future, w_post_b, first.bias)             # (B, T, M)
        split = [gates_x.shape[-1], post_b.shape[-1]]
        mask = repeat_rows(ctx.steps.mask, n)
        noise = eps.flatten(0, 1)
        h = c = eps.new_zeros(n * batch, self.cfg.hidden_size)
        zs, hs, mus, logvars = [], [], [], []
        for t in range(steps):
            gates_h, post_h = F.linear(h, w_from_h).view(n, batch, -1).split(split, -1)
            post = rest((post_h + post_b[:, t]).flatten(0, 1))
            mu, logvar = standard_on_padding(*self._gaussian(post), mask[:, t])
            z = mu + torch.exp(0.5 * logvar) * noise[:, t]
            gates = (gates_h + gates_x[:, t]).flatten(0, 1) + F.linear(z, w_from_z)
            h, c = lstm_cell(gates, c)
            zs.append(z), hs.append(h), mus.append(mu), logvars.append(logvar)
        z, hidden = torch.stack(zs, 1), torch.stack(hs, 1)
        q_mu, q_logvar = torch.stack(mus, 1), torch.stack(logvars, 1)
        log_q = -0.5 * (noise.pow(2) + q_logvar + LOG_2PI)
        p_mu, p_logvar = self.prior_params(previous(hidden), mask)
        kl = DiagonalGaussian(q_mu, q_logvar).kl_per_dim(DiagonalGaussian(p_mu, p_logvar)).sum(-1)
        shape = (n, batch, steps, -1)
        return Path(z.view(shape), q_mu.view(shape), log_q.sum((1, 2)).view(n, batch),
                    kl.view(n, batch, steps), hidden)

    # --- the shared interface --------------------------------------------------------------

    def posterior(self, batch) -> StepPosterior:
        return StepPosterior(self, self.context(batch))

    def prior(self, batch) -> StepPrior:
        steps = self.io.steps(batch)
        return StepPrior(self, steps, self.io.embed_inputs(steps))

    def log_prior(self, z: torch.Tensor, batch) -> torch.Tensor:
        return self.prior(batch).log_prob(z)

    def log_likelihood(self, batch, z: torch.Tensor) -> torch.Tensor:
        steps = self.io.steps(batch)
        hidden = self.forward_states(self.io.embed_inputs(steps), z)
        return self.io.log_prob(hidden, steps, z.shape[0])

    def kl(self, batch, posterior=None, n_samples: int = 1) -> torch.Tensor:
        """Sum over steps of the analytic per-step KL along each of `n_samples` posterior paths,
        averaged over the paths, `(B,)` (see the module docstring)."""
        posterior = posterior if posterior is not None else self.posterior(batch)
        return posterior.sample(n_samples).kl.sum(2).mean(0)

    @property
    def kl_schedule(self) -> LinearRate:
        return kl_schedule_of(self.cfg)

    def loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        ctx = self.context(batch)
        mask = ctx.steps.mask
        eps = torch.randn((1, *mask.shape, self.cfg.latent_size), device=mask.device,
                          dtype=self.z_to_input.weight.dtype)
        path = self.sample_path(ctx, eps)
        rec = -self.io.log_prob(path.hidden, ctx.steps, 1)[0]
        kl_steps = path.kl[0]
        terms = self.elbo_terms(rec, kl_steps, step)
        aux = self.aux_cost(ctx, path.z[0], path.hidden)
        weight = aux_weight(step, self.cfg)
        terms["loss"] = terms["loss"] + weight * aux.mean()
        terms.update(aux_nll=aux.mean(), aux_weight=torch.tensor(weight),
                     kl_per_step=kl_steps.sum() / mask.sum(),
                     kl_skip_rate=(terms["kl"] >= SKIPPED_KL).float())
        return terms


def _log_density(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """z `(n, B, T, d)` under per-row parameters `(n*B, T, d)` -> `(n, B)`, summed over every
    step (padded steps are N(0, I) in q and p alike, see `standard_on_padding`)."""
    return log_normal(wide(z.flatten(0, 1)), mu, logvar).sum((1, 2)).view(z.shape[:2])


class StepPosterior:
    """q(z_{1:T} | x) = prod_t N(z_t; mu_t, exp(logvar_t)), (mu_t, logvar_t) = f(h_{t-1}, b_t):
    autoregressive, since h_{t-1} carries z_{<t}. Shapes: z `(n, B, T, d)`, densities `(n, B)`."""

    def __init__(self, model: ZForcing, ctx: Context):
        self.model, self.ctx = model, ctx

    @property
    def batch_size(self) -> int:
        return self.ctx.inputs.shape[0]

    def sample(self, n: int = 1, generator: torch.Generator | None = None) -> Path:
        """n paths, drawn in blocks whose forward states fit `PATH_BLOCK_ELEMENTS`."""
        batch, steps = self.ctx.steps.mask.shape
        device = self.ctx.inputs.device
        eps = torch.randn((n, batch, steps, self.model.cfg.latent_size), device=device,
                          dtype=self.model.z_to_input.weight.dtype, generator=generator)
        budget = PATH_BLOCK_ELEMENTS.get(device.type, PATH_BLOCK_ELEMENTS["cpu"])
        block = max(1, budget // (batch * steps * self.model.cfg.hidden_size))
        return Path.merge([self.model.sample_path(self.ctx, part) for part in eps.split(block)])

    def rsample(self, n: int = 1, generator: torch.Generator | None = None):
        path = self.sample(n, generator)
        return path.z, path.log_q

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        n = z.shape[0]
        h_prev = previous(self.model.forward_states(self.ctx.inputs, z))
        mu, logvar = self.model.posterior_params(h_prev, repeat_rows(self.ctx.future, n),
                                                 repeat_rows(self.ctx.steps.mask, n))
        return _log_density(z, mu, logvar)

    def mean(self, n_samples: int = 1) -> torch.Tensor:
        """E_q[z] `(B, T, d)`: the posterior means mu_t averaged over `n_samples` paths
        (E_q[z_t] = E_q[mu_t(z_{<t})], with less noise than averaging z); 0 on padding."""
        return self.sample(max(n_samples, 1)).q_mu.mean(0)


class StepPrior:
    """p(z_{1:T} | x) = prod_t N(z_t; prior(h_{t-1})), h_{t-1} a function of x_{<t} and z_{<t}:
    h follows the z being scored, so this is no fixed Gaussian; `log_prob(z (n, B, T, d)) ->
    (n, B)` runs the forward RNN on z."""

    def __init__(self, model: ZForcing, steps: Steps, inputs: torch.Tensor):
        self.model, self.steps, self.inputs = model, steps, inputs

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        h_prev = previous(self.model.forward_states(self.inputs, z))
        mu, logvar = self.model.prior_params(h_prev, repeat_rows(self.steps.mask, z.shape[0]))
        return _log_density(z, mu, logvar)


class SequenceLM(LanguageModel):
    """The LSTM baseline: the forward RNN without z, same embedding and output layer."""

    def __init__(self, cfg: SequenceLMConfig, io: nn.Module):
        super().__init__()
        self.cfg, self.io = cfg, io
        self.rnn = nn.LSTM(cfg.embed_size, cfg.hidden_size, batch_first=True)
        init_lstm(self.rnn, zero_bias=True)

    def log_likelihood(self, batch, z=None) -> torch.Tensor:
        steps = self.io.steps(batch)
        hidden, _ = self.rnn(self.io.embed_inputs(steps))
        return self.io.log_prob(hidden, steps, 1)


def build(cfg, corpus):
    m = cfg.model
    io = make_steps(corpus, m.embed_size, m.hidden_size, m.pixels_per_step, m.dropout)
    return SequenceLM(m, io) if isinstance(m, SequenceLMConfig) else ZForcing(m, io)

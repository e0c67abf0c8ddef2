"""Masked autoregressive networks and inverse autoregressive flow (IAF) posteriors.

`MADE` (Germain et al. 2015) maps `z (..., d)` and an optional context `h (..., C)` to
`num_outputs` vectors `(..., num_outputs, d)` whose i-th entries depend only on the inputs that
come before i in the network's `order` (and on h). It is the building block of both directions
of autoregressive flow: an IAF posterior (Kingma et al. 2016; `IAFStep`, `IAF`) and an
autoregressive-flow prior (Chen et al. 2017: a MADE without context whose shift is subtracted
from z, `num_outputs=1` for the mean-only flow).

IAF step, gated form (Kingma et al. 2016, Sec. 4; its exact form is tagged "unverified
(memory)" in docs/papers/kingma2016_iaf.md §Architecture, so the config names it,
`IAFConfig.update="gated"`):
    [m, s] = MADE(z, h),  sigma = sigmoid(s),  z' = sigma * z + (1 - sigma) * m,
    log|det dz'/dz| = sum_i log sigma_i.
The Jacobian is triangular in the step's order with diagonal sigma (m and s of coordinate i do
not depend on z_i), and z' is a convex combination of z and m: a step cannot amplify z by
dividing by a small scale, as the official code's affine form (z - m) / exp(s) can. It does not
bound z, though: m reads the previous z, so in a deep flow a draw far out can push each step's m
further out, and with the gate closed z follows it (Kingma 2016 `presets.py`, the depth-8 rows).
The official code's two stabilisers are options (`IAFConfig.weight_norm`, `output_scale`):
weight-normalised MADE layers, and (m, s) taken as 0.1 times the MADE's outputs (plus the gate
offset), which keeps each step's shift small. Steps alternate between ascending and descending
order, which is the paper's "reverse the ordering between steps" without permuting z.

Density. z_0 ~ N(mu, diag sigma_0^2) from the encoder, z_T = f_T(...f_1(z_0)), and
    log q(z_T|x) = log N(z_0; mu, sigma_0^2) - sum_t sum_i log sigma_{t,i}.
`IAFPosterior.log_prob(z_T)` inverts the flow: each step's inverse is sequential in d (coordinate
i needs z_<i first), d passes per step through the part of the MADE that coordinate reads
(`MADE.outputs_at`, a third of a full pass on average) -- cheap for one z, but the
aggregate-posterior MI scores every sample against every pool member with it (N x M
inversions). The same one-coordinate pass serves sequential sampling from an AF prior.

Per-dimension KL (`IAFPosterior.rsample_per_dim`, `mc_kl_per_dim`), for Kingma's grouped free
bits: for the single sample z_T, coordinate i gets
    kl_i = log N(z_{0,i}; mu_i, sigma_{0,i}^2) - sum_t log sigma_{t,i} - log p(z_{T,i}),
i.e. each log-density term is attributed to the coordinate index it acts on (the flow never
permutes coordinates). The kl_i sum to the single-sample Monte Carlo KL log q(z_T|x) - log p(z_T)
exactly; a kl_i is not the KL of a marginal and may be negative for one sample. This is the
attribution of the official code (`openai/iaf:tf_train.py`: per-element `logqs - logps`, the
IAF's per-element log-scale added to `logqs`, before the free-bits floor).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from repro.config import bounded
from repro.nn.distributions import LOG_2PI, DiagonalGaussian, StandardNormal, has_analytic_kl


@dataclass
class IAFConfig:
    """An IAF posterior on top of the encoder's diagonal Gaussian; `steps=0` is the Gaussian."""

    steps: int = bounded(0, lo=0)                      # IAF steps ("depth" in Kingma's Table 1)
    hidden_sizes: tuple[int, ...] = (320, 320)         # MADE hidden layers per step ("width")
    update: str = bounded("gated", choices=("gated",))  # the step's form (module docstring)
    gate_bias: float = 2.0                             # initial s: sigma = sigmoid(2) ~ 0.88
    # The official code's stabilisers (`openai/iaf`: weight-normalised autoregressive layers,
    # their (m, s) multiplied by 0.1). The defaults are the flow as it was before they existed,
    # so earlier run records keep their meaning; the image presets turn both on.
    weight_norm: bool = False
    output_scale: float = bounded(1.0, lo=0.0)


def hidden_degrees(size: int, latent_size: int) -> torch.Tensor:
    """Degrees 0 .. d-1 spread evenly and in ascending order over `size` hidden units, `(size,)`.
    A unit of degree k reads inputs of order position <= k; degree-0 units read only the
    context, and are what lets the first coordinate's outputs depend on it (without a context
    they are constant). Ascending degrees make the units any one output reads a prefix of each
    layer (`MADE.outputs_at`)."""
    return torch.arange(size) * latent_size // size


class MaskedLinear(nn.Linear):
    """A linear map with a fixed 0/1 connectivity `mask (out, in)`, `(..., in) -> (..., out)`."""

    def __init__(self, in_features: int, out_features: int, mask: torch.Tensor):
        super().__init__(in_features, out_features)
        self.register_buffer("mask", mask.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.mask, self.bias)


class MaskedWeightNorm(nn.Module):
    """Weight normalisation of a `MaskedLinear`, as a parametrization of its `weight`:
    w = g v / ||v * mask|| per output row. The norm counts the connections the mask keeps only
    (the official code normalises the masked weight too), so masked-out entries change nothing.
    A row the mask empties entirely (a degree-0 hidden unit reads only the context) has norm 0:
    the clamp keeps its gradient finite, and its weight is 0 whatever g is. `original0` is g
    `(out, 1)` and `original1` is v, the names `repro.nn.conv.data_dependent_init` reads."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def _norm(self, v: torch.Tensor) -> torch.Tensor:
        return (v * self.mask).pow(2).sum(1, keepdim=True).clamp_min(1e-24).sqrt()

    def forward(self, g: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # Masked entries are zeroed here, not only in the layer: an emptied row divides by the
        # clamped norm, and its unmasked-out v would otherwise become huge (if harmless) weights.
        return g * (v * self.mask) / self._norm(v)

    def right_inverse(self, weight: torch.Tensor):
        return self._norm(weight), weight


def masked_weight_norm(layer: MaskedLinear) -> MaskedLinear:
    parametrize.register_parametrization(layer, "weight", MaskedWeightNorm(layer.mask))
    return layer


class MADE(nn.Module):
    """Masked autoencoder for distribution estimation: `z (..., d)`, context `(..., C)` or None ->
    `(..., num_outputs, d)`; output i depends on z_j only where `order[j] < order[i]`.

    `order` is the position of each coordinate in the autoregressive order (a permutation of
    1..d; default ascending). The context enters the first hidden layer unmasked, as Kingma's
    `ar_multiconv2d` adds it, so every output may depend on it.
    """

    def __init__(self, latent_size: int, hidden_sizes: Sequence[int], num_outputs: int = 2,
                 context_size: int = 0, order: Sequence[int] | None = None,
                 activation: Callable[[torch.Tensor], torch.Tensor] = F.elu,
                 weight_norm: bool = False):
        super().__init__()
        if not hidden_sizes:
            raise ValueError("MADE needs at least one hidden layer")
        d = latent_size
        order = torch.arange(1, d + 1) if order is None else torch.as_tensor(order)
        if sorted(order.tolist()) != list(range(1, d + 1)):
            raise ValueError(f"order must be a permutation of 1..{d}, got {order.tolist()}")
        self.latent_size, self.num_outputs, self.activation = d, num_outputs, activation
        self.register_buffer("order", order)
        degrees = [order] + [hidden_degrees(h, d) for h in hidden_sizes]
        sizes = [d, *hidden_sizes]
        self.hidden = nn.ModuleList(
            MaskedLinear(sizes[k], sizes[k + 1], degrees[k + 1][:, None] >= degrees[k][None, :])
            for k in range(len(hidden_sizes)))
        # Strictly greater: output i never sees z_i, which is what makes the Jacobian triangular.
        out_mask = (order[:, None] > degrees[-1][None, :]).repeat(num_outputs, 1)
        self.output = MaskedLinear(sizes[-1], num_outputs * d, out_mask)
        self.context = nn.Linear(context_size, hidden_sizes[0], bias=False) if context_size else None
        if weight_norm:
            for layer in (*self.hidden, self.output):
                masked_weight_norm(layer)
        # prefix[k][l]: hidden units of layer l with degree < k, all that the outputs of the
        # coordinate at order position k read.
        self.prefix = [[int((deg < k).sum()) for deg in degrees[1:]] for k in range(d + 1)]
        self.coordinates = order.argsort().tolist()      # [k - 1]: the coordinate at position k

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        h = self.hidden[0](z)
        if self.context is not None:
            h = h + self.context(context)
        for layer in self.hidden[1:]:
            h = layer(self.activation(h))
        return self.output(self.activation(h)).unflatten(-1, (self.num_outputs, self.latent_size))

    def outputs_at(self, z: torch.Tensor, context: torch.Tensor | None, position: int) -> torch.Tensor:
        """`forward(z, context)[..., :, i]` for the coordinate i at order `position` (1..d),
        `(..., num_outputs)`, from the hidden units it reads only (a prefix of each layer): on
        average a third of a full pass's work, for the inverse that needs one coordinate a pass."""
        sizes = self.prefix[position]

        def masked(layer, rows, cols):
            return layer.weight[rows, cols] * layer.mask[rows, cols]

        first = self.hidden[0]
        h = F.linear(z, masked(first, slice(sizes[0]), slice(None)), first.bias[:sizes[0]])
        if self.context is not None:
            h = h + F.linear(context, self.context.weight[:sizes[0]])
        for layer, n_in, n_out in zip(self.hidden[1:], sizes, sizes[1:]):
            h = F.linear(self.activation(h), masked(layer, slice(n_out), slice(n_in)), layer.bias[:n_out])
        rows = [k * self.latent_size + self.coordinates[position - 1] for k in range(self.num_outputs)]
        return F.linear(self.activation(h), masked(self.output, rows, slice(sizes[-1])),
                        self.output.bias[rows])


def gated_update(z: torch.Tensor, m: torch.Tensor, s: torch.Tensor):
    """The numerically stable IAF update: `(z', log sigma)`, both shaped like z; z' lies between
    z and m coordinate-wise and log sigma = logsigmoid(s) is finite for any finite s."""
    gate = torch.sigmoid(s)
    return gate * z + (1 - gate) * m, F.logsigmoid(s)


class IAFStep(nn.Module):
    """One gated IAF step in a given order: `z (..., d)`, context `(..., C)` -> `z'`, log sigma."""

    def __init__(self, latent_size: int, hidden_sizes: Sequence[int], context_size: int,
                 order: Sequence[int] | None = None, gate_bias: float = 2.0,
                 weight_norm: bool = False, output_scale: float = 1.0):
        super().__init__()
        self.made = MADE(latent_size, hidden_sizes, 2, context_size, order, weight_norm=weight_norm)
        # (m, s) = output_scale * MADE + (0, gate_offset). Damping the MADE's outputs (the
        # official code's 0.1) keeps a step's shift small while its weights move, so a draw
        # far out is not carried further out step after step (the depth-8 divergence).
        self.output_scale = output_scale
        # A fresh step is the fixed map z' = sigmoid(gate_bias) * z: m = 0 and s = gate_bias for
        # every input, so training starts from (a rescaled) diagonal Gaussian and the gate near 1
        # (the paper's advice to start sigma close to 1, from memory; zero weights are ours).
        # Weight-normalised, the zero output is g = 0, and gate_bias is a fixed offset rather
        # than the output bias, which the data-dependent initialisation resets. Without weight
        # norm the bias holds it, as in the checkpoints written before the option existed
        # (a plain attribute, not a buffer, for the same reason).
        self.gate_offset = gate_bias if weight_norm else 0.0
        with torch.no_grad():
            self.made.output.bias.zero_()
            if weight_norm:
                self.made.output.parametrizations.weight.original0.zero_()
            else:
                self.made.output.weight.zero_()
                self.made.output.bias[latent_size:] = gate_bias

    def _shift_and_gate(self, raw: torch.Tensor, dim: int):
        m, s = _widen(raw).unbind(dim)
        return self.output_scale * m, self.gate_offset + self.output_scale * s

    def shift_and_gate_logit(self, z: torch.Tensor, context: torch.Tensor | None):
        """`(m, s)`, each `(..., d)`."""
        return self._shift_and_gate(self.made(z, context), -2)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None):
        return gated_update(z, *self.shift_and_gate_logit(z, context))

    def inverse(self, z_new: torch.Tensor, context: torch.Tensor | None = None):
        """`(z, log sigma)` with `forward(z) == (z_new, log sigma)`: pass k solves the coordinate
        i at order position k, z_i = (z'_i - (1 - sigma_i) m_i) / sigma_i, with (m_i, s_i) from
        the coordinates already solved; d passes in all. Unsolved coordinates hold their finite
        z' meanwhile (masked weights multiply them by 0; an inf there would make NaN).

        The MADE reads z clamped to +-`INVERSE_READ_LIMIT`. Scoring a sample under another
        example's flow (the MI pool) can divide by a gate near 0 and solve a coordinate to 1e6 or
        inf; the MADE's products of such inputs overflow fp32 into NaN. Clamped, m and s stay
        finite; the far coordinate itself is kept, and it shrinks by at most |m| a step
        (|z| >= |z'| - |m| since sigma <= 1), so the point stays far outside the base Gaussian
        and its log q far below the sample's own member's (in practice -inf). Points whose
        coordinates stay within the limit, every sample scored under its own posterior among
        them, are scored exactly."""
        z, log_gates = z_new, [None] * self.made.latent_size
        for position in range(1, self.made.latent_size + 1):
            i = self.made.coordinates[position - 1]
            read = z.clamp(-INVERSE_READ_LIMIT, INVERSE_READ_LIMIT)
            m, s = self._shift_and_gate(self.made.outputs_at(read, context, position), -1)
            gate = torch.sigmoid(s)
            solved = (z_new[..., i] - (1 - gate) * m) / gate
            z = torch.where(self.made.order == position, solved.unsqueeze(-1), z)
            log_gates[i] = F.logsigmoid(s)
        return z, torch.stack(log_gates, -1)


# What the MADE reads in an inverse pass (`IAFStep.inverse`): far beyond any z a posterior draws.
INVERSE_READ_LIMIT = 1e4


def _widen(x: torch.Tensor) -> torch.Tensor:
    """Half-precision (autocast) MADE outputs in fp32, so the flow's density stays exact."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class IAF(nn.Module):
    """A chain of gated IAF steps, alternating ascending and descending order:
    `z_0 (..., d)`, context `(..., C)` -> `z_T`, summed log sigma per coordinate `(..., d)`."""

    def __init__(self, latent_size: int, num_steps: int, hidden_sizes: Sequence[int],
                 context_size: int, gate_bias: float = 2.0, weight_norm: bool = False,
                 output_scale: float = 1.0):
        super().__init__()
        ascending = list(range(1, latent_size + 1))
        self.steps = nn.ModuleList(
            IAFStep(latent_size, hidden_sizes, context_size,
                    ascending if t % 2 == 0 else ascending[::-1], gate_bias, weight_norm,
                    output_scale)
            for t in range(num_steps))

    @classmethod
    def from_config(cls, cfg: IAFConfig, latent_size: int, context_size: int) -> "IAF":
        return cls(latent_size, cfg.steps, cfg.hidden_sizes, context_size, cfg.gate_bias,
                   cfg.weight_norm, cfg.output_scale)

    def forward(self, z: torch.Tensor, context: torch.Tensor | None = None):
        log_gates = torch.zeros_like(z)
        for step in self.steps:
            z, log_gate = step(z, context)
            log_gates = log_gates + log_gate
        return z, log_gates

    def inverse(self, z: torch.Tensor, context: torch.Tensor | None = None):
        log_gates = torch.zeros_like(z)
        # d partial passes a step read the same weights: normalise them once, not d times.
        with parametrize.cached():
            for step in reversed(self.steps):
                z, log_gate = step.inverse(z, context)
                log_gates = log_gates + log_gate
        return z, log_gates


class IAFPosterior:
    """q(z|x): a diagonal Gaussian `base` (mu, logvar `(B, d)`) pushed through `flow`, which
    reads the encoder's `context (B, C)`. The posterior interface of `repro.model`; log densities
    include the flow's log-determinant."""

    event_dims = 1

    def __init__(self, base: DiagonalGaussian, context: torch.Tensor, flow: IAF):
        if base.event_dims != 1:
            raise ValueError("IAFPosterior takes one latent vector per example (event_dims=1)")
        self.base, self.context, self.flow = base, context, flow

    @property
    def batch_size(self) -> int:
        return self.base.batch_size

    def rsample_per_dim(self, n: int = 1, generator: torch.Generator | None = None):
        """`z (n, B, d)` and log q(z|x) split over coordinates `(n, B, d)` (module docstring)."""
        mu, logvar = self.base.mu, self.base.logvar
        eps = torch.randn((n, *mu.shape), device=mu.device, dtype=mu.dtype, generator=generator)
        z0 = mu + torch.exp(0.5 * logvar) * eps
        z, log_gates = self.flow(z0, self.context)
        return z, -0.5 * (eps.pow(2) + logvar + LOG_2PI) - log_gates

    def rsample(self, n: int = 1, generator: torch.Generator | None = None):
        """`z (n, B, d)`, log q(z|x) `(n, B)`."""
        z, log_q_dims = self.rsample_per_dim(n, generator)
        return z, log_q_dims.sum(-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """`z (n, B, d) -> (n, B)`; each z[:, j] is scored under example j's posterior (so a pool
        of samples can be scored against every member). d partial MADE passes per step."""
        z0, log_gates = self.flow.inverse(z, self.context)
        return self.base.log_prob(z0) - log_gates.sum(-1)

    def mean(self, n_samples: int = 100) -> torch.Tensor:
        """E_q[z] by Monte Carlo over `n_samples` draws, `(B, d)` (no closed form under a flow)."""
        if n_samples < 1:
            raise ValueError("an IAF posterior's mean needs n_samples >= 1 (Monte Carlo)")
        return self.rsample(n_samples)[0].mean(0)


def log_prob_per_dim(prior, z: torch.Tensor) -> torch.Tensor:
    """log p(z) per coordinate `(..., d)` for a factorised prior (N(0, I) or a diagonal Gaussian)
    or a flow prior that splits its own density (`repro.nn.priors.AFPrior.log_prob_per_dim`)."""
    if isinstance(prior, StandardNormal):
        return -0.5 * (z.pow(2) + LOG_2PI)
    if isinstance(prior, DiagonalGaussian):
        return -0.5 * ((z - prior.mu).pow(2) * torch.exp(-prior.logvar) + prior.logvar + LOG_2PI)
    if hasattr(prior, "log_prob_per_dim"):     # by name: the flow priors' module imports this one
        return prior.log_prob_per_dim(z)
    raise TypeError(f"{type(prior).__name__} does not factorise over dimensions; a per-dimension "
                    "KL needs a factorised prior")


def mc_kl_per_dim(z: torch.Tensor, log_q_dims: torch.Tensor, prior) -> torch.Tensor:
    """Single-sample KL split over coordinates, `(n, B, d)`: log q_i - log p_i at z (sums to
    log q(z|x) - log p(z) exactly; module docstring)."""
    return log_q_dims - log_prob_per_dim(prior, z)


def sample_kl_dims(posterior, prior):
    """One reparameterised z `(1, B, d)` and the per-dimension KL `(B, d)` for the training loss:
    analytic for a Gaussian pair, else the single-sample Monte Carlo split at the same z (an IAF
    posterior's `rsample_per_dim`, a Gaussian's density per coordinate, against a flow prior's
    own split), so rec and KL form the single-sample ELBO of one draw."""
    if has_analytic_kl(posterior, prior):
        return posterior.rsample(1)[0], posterior.kl_per_dim(prior)
    if isinstance(posterior, DiagonalGaussian):
        z = posterior.rsample(1)[0]
        log_q_dims = log_prob_per_dim(posterior, z)
    else:
        z, log_q_dims = posterior.rsample_per_dim(1)
    return z, mc_kl_per_dim(z, log_q_dims, prior)[0]

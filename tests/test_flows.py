"""The IAF machinery (repro/nn/flows.py) on small tensors: MADE's autoregressive masks, the
flow's log-determinant against autograd's Jacobian, the inverse, the gated update's stability,
the per-dimension Monte Carlo KL, and the shared evaluation scoring an IAF posterior."""
import math

import pytest
import torch
from torch import distributions as D
from torch import nn
from torch.autograd.functional import jacobian

from repro.evaluate import evaluate
from repro.model import LatentVariableModel
from repro.nn.distributions import DiagonalGaussian, StandardNormal
from repro.nn.flows import (IAF, MADE, IAFPosterior, IAFStep, gated_update, mc_kl_per_dim,
                            sample_kl_dims)

from helpers_batches import VectorBatch

DTYPE = torch.float64


def _randomise_outputs(flow: nn.Module, scale: float, seed: int = 0) -> nn.Module:
    """Give every IAF step non-zero output weights (a fresh step is a fixed rescaling), so the
    flow is genuinely nonlinear and data-dependent."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in flow.modules():
            if isinstance(module, IAFStep):
                weight = module.made.output.weight
                weight.copy_(torch.randn(weight.shape, generator=gen, dtype=weight.dtype) * scale)
    return flow


def _flow(d=4, steps=3, context=3, scale=0.5, hidden=(16, 16), gate_bias=0.5):
    torch.manual_seed(0)
    return _randomise_outputs(IAF(d, steps, hidden, context, gate_bias), scale).to(DTYPE)


def _posterior(flow, batch=5, seed=1):
    gen = torch.Generator().manual_seed(seed)
    d, c = flow.steps[0].made.latent_size, flow.steps[0].made.context.in_features
    mu, logvar = (torch.randn(batch, d, generator=gen, dtype=DTYPE) for _ in range(2))
    context = torch.randn(batch, c, generator=gen, dtype=DTYPE)
    return IAFPosterior(DiagonalGaussian(mu, logvar), context, flow)


# --- MADE ----------------------------------------------------------------------------------

@pytest.mark.parametrize("order", [[1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [3, 1, 5, 2, 4]])
def test_made_output_i_depends_only_on_inputs_earlier_in_its_order(order):
    torch.manual_seed(0)
    made = MADE(5, (12, 12), num_outputs=2, context_size=3, order=order).to(DTYPE)
    z, h = torch.randn(5, dtype=DTYPE), torch.randn(3, dtype=DTYPE)
    dz = jacobian(lambda v: made(v, h), z)                        # (2, 5, 5): output, i, j
    rank = torch.tensor(order)
    allowed = rank[None, :] < rank[:, None]                       # [i, j]: j before i
    assert torch.all(dz[:, ~allowed] == 0)
    # Every permitted connection is realised (so the test above is not vacuous) ...
    assert torch.all(dz.abs().sum(0)[allowed] > 0)
    # ... and every output reads the context.
    assert torch.all(jacobian(lambda c: made(z, c), h).abs().sum(-1) > 0)
    # The one-coordinate pass of the inverse gives the same outputs as the full pass.
    batch, context = torch.randn(3, 2, 5, dtype=DTYPE), torch.randn(2, 3, dtype=DTYPE)
    full = made(batch, context)                                   # (3, 2, outputs, 5)
    for i, position in enumerate(order):
        assert torch.allclose(made.outputs_at(batch, context, position), full[..., i], atol=1e-12)


def test_made_refuses_an_order_that_is_not_a_permutation():
    with pytest.raises(ValueError, match="permutation"):
        MADE(3, (8,), order=[1, 1, 2])


# --- the IAF step and chain ----------------------------------------------------------------

def test_iaf_log_det_equals_log_abs_det_of_the_autograd_jacobian():
    flow = _flow()
    z0, h = torch.randn(4, dtype=DTYPE), torch.randn(3, dtype=DTYPE)
    _, log_gates = flow(z0, h)
    full = jacobian(lambda v: flow(v, h)[0], z0)
    assert torch.allclose(log_gates.sum(), torch.linalg.slogdet(full).logabsdet, atol=1e-10)
    # Each step's Jacobian is triangular in its own order, with diagonal sigma = exp(log_gate).
    z = z0
    for t, step in enumerate(flow.steps):
        jac = jacobian(lambda v: step(v, h)[0], z)
        rank = step.made.order
        later = rank[None, :] > rank[:, None]                     # [i, j]: j after i
        assert torch.all(jac[later] == 0)
        assert torch.allclose(torch.diagonal(jac), step(z, h)[1].exp())
        z = step(z, h)[0]
    # The paper reverses the ordering between steps.
    orders = [step.made.order.tolist() for step in flow.steps]
    assert orders[1] == orders[0][::-1] and orders[2] == orders[0]


def test_inverse_recovers_z0_and_log_prob_matches_the_sampled_log_q():
    posterior = _posterior(_flow(d=6, steps=4, scale=1.5))
    z, log_q = posterior.rsample(7)
    assert z.shape == (7, 5, 6) and log_q.shape == (7, 5)
    assert torch.allclose(posterior.log_prob(z), log_q, atol=1e-9)
    z0 = posterior.base.rsample(3)[0]
    assert torch.allclose(posterior.flow.inverse(posterior.flow(z0, posterior.context)[0],
                                                 posterior.context)[0], z0, atol=1e-10)


def test_log_prob_scores_each_sample_against_every_pool_member():
    """The MI pool hands `log_prob` a grid z[i, j] = z_i for every member j."""
    posterior = _posterior(_flow())
    z = posterior.rsample(1)[0][0]                                # (B, d): one z_i per example
    grid = z[:, None].expand(5, 5, 4)
    scores = posterior.log_prob(grid)                             # [i, j] = log q(z_i | x_j)
    for j in range(5):
        member = IAFPosterior(DiagonalGaussian(posterior.base.mu[j:j + 1], posterior.base.logvar[j:j + 1]),
                              posterior.context[j:j + 1], posterior.flow)
        assert torch.allclose(scores[:, j], member.log_prob(z[:, None])[:, 0], atol=1e-10)


def test_log_q_is_a_normalised_density_in_two_dimensions():
    posterior = _posterior(_flow(d=2, steps=2, scale=0.5), batch=1)
    axis = torch.linspace(-10, 10, 301, dtype=DTYPE)
    grid = torch.cartesian_prod(axis, axis)[:, None, :]           # (points, 1, 2)
    mass = posterior.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=1e-4)


def test_gated_update_stays_finite_between_z_and_m_for_extreme_gate_logits():
    z = torch.tensor([3.0, -2.0, 1e6, 0.5])
    m = torch.tensor([-1e6, 7.0, 0.0, 0.5])
    for s_value in (-1e4, -100.0, 0.0, 100.0, 1e4):
        s = torch.full_like(z, s_value)
        z_new, log_gate = gated_update(z, m, s)
        assert torch.isfinite(z_new).all() and torch.isfinite(log_gate).all()
        low, high = torch.minimum(z, m), torch.maximum(z, m)
        assert torch.all((z_new >= low) & (z_new <= high))
        # log sigma is computed stably: log(sigmoid(-1e4)) would be -inf.
        assert torch.allclose(log_gate, -nn.functional.softplus(-s))


def test_fresh_iaf_is_the_base_gaussian_rescaled_and_a_saturated_gate_is_the_identity():
    torch.manual_seed(0)
    for bias, steps in ((2.0, 3), (40.0, 2)):
        flow = IAF(3, steps, (8, 8), 2, gate_bias=bias).to(DTYPE)
        posterior = _posterior(flow, batch=4)
        z, log_q = posterior.rsample(6)
        scale = torch.sigmoid(torch.tensor(bias, dtype=DTYPE)) ** steps
        base = posterior.base
        gaussian = D.Normal(scale * base.mu, scale * torch.exp(0.5 * base.logvar))
        assert torch.allclose(log_q, gaussian.log_prob(z).sum(-1), atol=1e-10)
    # sigmoid(40) is 1 in floating point: the flow leaves z untouched, q is the base Gaussian.
    assert torch.allclose(log_q, base.log_prob(z), atol=1e-12)


# --- the per-dimension KL ----------------------------------------------------------------

def test_per_dim_mc_kl_sums_to_the_mc_kl_and_averages_to_the_analytic_kl_per_dim():
    prior = StandardNormal((4,))
    posterior = _posterior(_flow())
    z, log_q_dims = posterior.rsample_per_dim(3)
    kl_dims = mc_kl_per_dim(z, log_q_dims, prior)
    assert torch.allclose(kl_dims.sum(-1), posterior.log_prob(z) - prior.log_prob(z), atol=1e-9)
    # Under an identity flow each coordinate's term averages to that coordinate's Gaussian KL.
    identity = _posterior(IAF(4, 2, (8,), 3, gate_bias=40.0).to(DTYPE))
    torch.manual_seed(0)
    z, log_q_dims = identity.rsample_per_dim(40_000)
    mc = mc_kl_per_dim(z, log_q_dims, prior).mean(0)
    assert torch.allclose(mc, identity.base.kl_per_dim(prior), atol=0.05, rtol=0.03)


def test_sample_kl_dims_gives_the_kl_of_the_sample_it_returns():
    prior = StandardNormal((4,))
    posterior = _posterior(_flow())
    z, kl_dims = sample_kl_dims(posterior, prior)
    assert z.shape == (1, 5, 4) and kl_dims.shape == (5, 4)
    # The same z: its density recomputed through the inverse gives the same total.
    assert torch.allclose(kl_dims.sum(-1), (posterior.log_prob(z) - prior.log_prob(z))[0], atol=1e-9)
    gaussian = posterior.base
    assert torch.equal(sample_kl_dims(gaussian, prior)[1], gaussian.kl_per_dim(prior))


def test_monte_carlo_mean_of_an_iaf_posterior():
    posterior = _posterior(_flow())
    torch.manual_seed(0)
    mean = posterior.mean(20_000)
    torch.manual_seed(1)
    assert torch.allclose(mean, posterior.rsample(20_000)[0].mean(0), atol=0.05)
    with pytest.raises(ValueError, match="n_samples"):
        posterior.mean(0)


# --- the shared evaluation on an IAF model -------------------------------------------------



class ToyVAE(LatentVariableModel):
    """x (B, 3); q(z|x): a linear Gaussian over 4 dims (dims 0, 1 read x, dims 2, 3 do not, with
    small variance) optionally refined by an IAF reading x; p(x|z) = N(x; A z, I); N(0, I) prior."""

    def __init__(self, flow: IAF | None):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.W = torch.randn(2, 3, generator=gen, dtype=DTYPE)
        self.A = torch.randn(3, 4, generator=gen, dtype=DTYPE)
        self.flow = flow

    def posterior(self, batch):
        mu = torch.cat([batch.x @ self.W.T, torch.full((batch.size, 2), 0.3, dtype=DTYPE)], 1)
        logvar = torch.tensor([-1.0, -1.0, -4.0, -4.0], dtype=DTYPE).expand(batch.size, 4)
        base = DiagonalGaussian(mu, logvar)
        return base if self.flow is None else IAFPosterior(base, batch.x, self.flow)

    def prior(self, batch):
        return StandardNormal((4,))

    def log_likelihood(self, batch, z):
        return -0.5 * ((batch.x - z @ self.A.T).pow(2) + math.log(2 * math.pi)).sum(-1)


def _toy_batches():
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    return [VectorBatch(part) for part in x.split(50)]


def _evaluate(model, pool="dataset"):
    return evaluate(model, _toy_batches(), iw_samples=64, iw_chunk=16, mi_pool=pool, seed=3)


def test_evaluate_scores_an_identity_iaf_model_like_its_gaussian():
    gaussian = _evaluate(ToyVAE(None))
    identity = _evaluate(ToyVAE(IAF(4, 2, (8, 8), 3, gate_bias=40.0).to(DTYPE)))
    assert gaussian.options["kl_estimator"] == "analytic" and identity.options["kl_estimator"] == "mc"
    g, f = gaussian.metrics, identity.metrics
    assert f["kl"] == pytest.approx(g["kl"], rel=0.03)
    assert f["nll"] == pytest.approx(g["nll"], abs=0.25)     # independent IW noise, K = 64
    assert f["elbo"] == pytest.approx(g["elbo"], abs=0.3)
    assert f["mi"] == pytest.approx(g["mi"], abs=0.15)
    assert f["au"] == g["au"] == 2.0


@pytest.mark.parametrize("pool", ["dataset", "batch"])
def test_evaluate_scores_a_nonlinear_iaf_model(pool):
    flow = _randomise_outputs(IAF(4, 2, (8, 8), 3, gate_bias=1.0), 0.5).to(DTYPE)
    result = _evaluate(ToyVAE(flow), pool)
    m = result.metrics
    assert all(math.isfinite(m[k]) for k in ("nll", "elbo", "kl", "mi", "au"))
    assert m["nll"] <= m["elbo"] + 0.05            # the K-sample bound is the tighter one
    # Batches of 50 equal-sized examples: He et al.'s batch pools hold at most 32 of them.
    assert result.options["mi_pool_size"] == (200 if pool == "dataset" else 32)


def _collapsed_gate_posterior(batch=6, d=4):
    """fp32, two steps; the last one's gate for its first coordinate is sigmoid(-14) ~ 1e-6 for
    every member, so inverting a sample of member i under member j multiplies m_i - m_j by
    about 1e6, and the first step's MADE reads that. A trained IAF does this to the MI pool
    (kingma2016_iaf/mnist-iaf-d2-w320, cpu: about 30% of the cross pairs of each test batch
    came out NaN)."""
    torch.manual_seed(0)
    flow = _randomise_outputs(IAF(d, 2, (16, 16), 3, 2.0), 0.5)
    last = flow.steps[1].made
    with torch.no_grad():
        last.output.weight[d + last.coordinates[0]] = 0.0
        last.output.bias[d + last.coordinates[0]] = -14.0
    gen = torch.Generator().manual_seed(1)
    mu, logvar, context = (torch.randn(batch, n, generator=gen) for n in (d, d, 3))
    return IAFPosterior(DiagonalGaussian(mu, logvar), 3 * context, flow)


def test_a_pool_pair_whose_inverse_overflows_scores_as_impossible_not_nan():
    posterior = _collapsed_gate_posterior()
    with torch.no_grad():
        z = posterior.rsample(1)[0][0]
        scores = posterior.log_prob(z[:, None].expand(6, 6, 4))      # [i, j] = log q(z_i | x_j)
        diagonal = scores.diagonal()
        cross = scores[~torch.eye(6, dtype=torch.bool)]
        assert not torch.isnan(scores).any()
        assert torch.isfinite(diagonal).all() and (cross < diagonal.min() - 1e6).all()
        # The aggregate density of each z_i is its own member's term, exactly (log M aside).
        from repro.evaluate import _log_aggregate_density
        assert torch.allclose(_log_aggregate_density(z, [posterior]), diagonal - math.log(6))

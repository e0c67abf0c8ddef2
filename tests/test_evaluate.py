"""The evaluation on models whose answers are known in closed form.

Most tests use a linear-Gaussian latent model, x = W z + b + sigma*noise with z ~ N(0, I) and W
with orthogonal columns (W^T W = diag(s^2)), so that
  log p(x)      = log N(x; b, W W^T + sigma^2 I)                      (exact marginal)
  p(z|x)        = N(v * W^T (x - b) / sigma^2, diag v), v = 1 / (1 + s^2 / sigma^2)   (diagonal)
  I(x; z)       = 1/2 sum_k log(1 + s_k^2 / sigma^2)                   (population MI)
With the exact posterior every importance weight equals p(x), so the IW bound is exact at any K.
Closed forms are computed with torch.distributions, independently of the code under test.
"""
import math
from dataclasses import dataclass

import pytest
import torch
from torch import distributions as D

from repro.config import ConfigError, EvalConfig
from repro.data.text import TextBatch, TextCorpus, TextSplit, Vocab
from repro.evaluate import METRIC_NAMES, EvalResult, evaluate, evaluate_corpus
from repro.model import LanguageModel, LatentVariableModel
from repro.nn.distributions import DiagonalGaussian, StandardNormal

DTYPE = torch.float64


@dataclass
class VectorBatch:
    """Continuous x `(B, *shape)`; no token counts (like images)."""

    x: torch.Tensor

    @property
    def size(self) -> int:
        return self.x.shape[0]

    num_targets = None

    def to(self, device) -> "VectorBatch":
        return VectorBatch(self.x.to(device))


class NotGaussian:
    """A Gaussian posterior hidden behind the generic interface, so the evaluation (and
    `kl_divergence`) must take the Monte Carlo / `log_prob` paths meant for flows."""

    def __init__(self, inner: DiagonalGaussian):
        self.inner = inner

    @property
    def batch_size(self) -> int:
        return self.inner.batch_size

    def rsample(self, n=1, generator=None):
        return self.inner.rsample(n, generator)

    def log_prob(self, z):
        return self.inner.log_prob(z)

    def mean(self, n_samples=1):
        return self.inner.rsample(n_samples)[0].mean(0)


class LinearGaussian(LatentVariableModel):
    """x = W z + b + sigma * noise, with a choice of encoder."""

    def __init__(self, s=(1.3, 0.8), dim_x=5, sigma=1.0, encoder="exact", dtype=DTYPE, seed=0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        basis, _ = torch.linalg.qr(torch.randn(dim_x, len(s), generator=gen, dtype=dtype))
        self.register_buffer("W", basis * torch.tensor(s, dtype=dtype))
        self.register_buffer("b", torch.randn(dim_x, generator=gen, dtype=dtype))
        self.sigma, self.encoder = sigma, encoder
        self.var = 1 / (1 + torch.tensor(s, dtype=dtype) ** 2 / sigma ** 2)

    @property
    def latent_size(self) -> int:
        return self.W.shape[1]

    def sample_x(self, n: int, seed: int = 1) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_size, generator=gen, dtype=self.W.dtype)
        noise = torch.randn(n, self.W.shape[0], generator=gen, dtype=self.W.dtype)
        return z @ self.W.T + self.b + self.sigma * noise

    def exact_posterior(self, x):
        mu = self.var * ((x - self.b) @ self.W) / self.sigma ** 2
        return mu, self.var.log().expand_as(mu)

    def posterior(self, batch):
        mu, logvar = self.exact_posterior(batch.x)
        if self.encoder == "shifted":     # wrong on purpose (off-centre, too narrow): IW gaps
            mu, logvar = mu + 0.8, logvar - math.log(2.0)   # of ~1.6, 0.7, 0.3 nats at K=1, 10, 100
        elif self.encoder == "ignores_x":
            mu, logvar = torch.full_like(mu, 0.3), torch.full_like(logvar, -0.5)
        elif self.encoder == "deterministic":   # spread-out means, tiny variance
            mu, logvar = 3 * batch.x[:, :self.latent_size], torch.full_like(logvar, -24.0)
        gaussian = DiagonalGaussian(mu, logvar)
        return NotGaussian(gaussian) if self.encoder == "not_gaussian" else gaussian

    def prior(self, batch):
        return StandardNormal((self.latent_size,))

    def log_likelihood(self, batch, z):
        """`z (n, B, d) -> (n, B)`."""
        mean = z @ self.W.T + self.b
        return D.Normal(mean, self.sigma).log_prob(batch.x).sum(-1)

    # closed forms
    def log_marginal(self, x):
        cov = self.W @ self.W.T + self.sigma ** 2 * torch.eye(len(self.b), dtype=self.W.dtype)
        return D.MultivariateNormal(self.b, cov).log_prob(x)

    def population_mi(self) -> float:
        return float(-0.5 * self.var.log().sum())


def batches_of(x: torch.Tensor, size: int) -> list[VectorBatch]:
    return [VectorBatch(part) for part in x.split(size)]


def close(a, b, tol):
    return abs(a - b) <= tol


# --- IW-NLL -------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 7, 50])
def test_iw_nll_with_exact_posterior_is_exact_log_marginal(k):
    model = LinearGaussian()
    x = model.sample_x(64)
    result = evaluate(model, batches_of(x, 16), ["nll"], iw_samples=k, iw_chunk=5)
    truth = -model.log_marginal(x)
    torch.testing.assert_close(result.per_example["nll"], truth, rtol=0, atol=1e-10)
    assert close(result.metrics["nll"], truth.mean().item(), 1e-10)
    assert result.options["nll_estimator"] == "iw" and result.options["iw_samples"] == k


def test_iw_nll_with_exact_posterior_in_float32():
    model = LinearGaussian(dtype=torch.float32)
    x = model.sample_x(32)
    result = evaluate(model, batches_of(x, 16), ["nll"], iw_samples=20, iw_chunk=6)
    truth = -model.log_marginal(x.double()).mean().item()
    assert close(result.metrics["nll"], truth, 1e-4)


def test_iw_bound_of_wrong_posterior_lies_above_and_tightens_with_k():
    model = LinearGaussian(encoder="shifted")
    x = model.sample_x(400)
    truth = -model.log_marginal(x).mean().item()
    nll = [evaluate(model, batches_of(x, 100), ["nll"], iw_samples=k).metrics["nll"]
           for k in (1, 10, 100)]
    assert nll[0] > nll[1] > nll[2] > truth
    assert nll[2] - truth < 0.5 * (nll[0] - truth)


# --- ELBO and KL --------------------------------------------------------------------------------

def test_negative_elbo_exceeds_nll_by_kl_to_the_true_posterior():
    """E[-ELBO] = -log p(x) + KL(q(z|x) || p(z|x)); one sample per example, so the mean over
    N = 2000 has a standard error of about 0.04 nats (tolerance ~4 se)."""
    model = LinearGaussian(encoder="shifted")
    x = model.sample_x(2000)
    result = evaluate(model, batches_of(x, 500), ["elbo"])
    q = model.posterior(VectorBatch(x))
    exact_mu, exact_logvar = model.exact_posterior(x)
    gap = D.kl_divergence(D.Normal(q.mu, (0.5 * q.logvar).exp()),
                          D.Normal(exact_mu, (0.5 * exact_logvar).exp())).sum(-1)
    expected = (-model.log_marginal(x) + gap).mean().item()
    assert close(result.metrics["elbo"], expected, 0.15)
    assert close(result.metrics["elbo"], result.metrics["rec"] + result.metrics["kl"], 1e-9)
    assert "ppl" not in result.metrics and "elbo_ppl" not in result.metrics  # no token counts


def test_analytic_kl_matches_closed_form():
    model = LinearGaussian(encoder="shifted")
    x = model.sample_x(50)
    result = evaluate(model, batches_of(x, 20), ["kl"])
    q = model.posterior(VectorBatch(x))
    truth = D.kl_divergence(D.Normal(q.mu, (0.5 * q.logvar).exp()), D.Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(result.per_example["kl"], truth, rtol=0, atol=1e-12)
    assert result.options["kl_estimator"] == "analytic"


def test_monte_carlo_kl_matches_analytic_and_records_sample_count():
    x = LinearGaussian().sample_x(100)
    analytic = evaluate(LinearGaussian(encoder="shifted"), batches_of(x, 50), ["kl"])
    mc = evaluate(LinearGaussian(encoder="not_gaussian"), batches_of(x, 50), ["kl"],
                  mc_samples=4000)
    exact = evaluate(LinearGaussian(), batches_of(x, 50), ["kl"])
    assert mc.options["kl_estimator"] == "mc" and mc.options["mc_samples"] == 4000
    # not_gaussian wraps the exact posterior: per-example MC error ~ 1/sqrt(4000) x O(1)
    torch.testing.assert_close(mc.per_example["kl"], exact.per_example["kl"], rtol=0, atol=0.1)
    assert close(mc.metrics["kl"], exact.metrics["kl"], 0.02)
    assert analytic.metrics["kl"] > exact.metrics["kl"]


def test_generic_posterior_paths_agree_with_gaussian_ones():
    """IW-NLL is exact whatever the draws; MI by the generic `rsample`/`log_prob`, and AU by MC
    means, agree with the Gaussian paths (MI differs by draw noise: different draws)."""
    model = LinearGaussian(encoder="not_gaussian")
    x = model.sample_x(1000)
    generic = evaluate(model, batches_of(x, 250), iw_samples=4, mc_samples=100)
    gaussian = evaluate(LinearGaussian(), batches_of(x, 250), iw_samples=4)
    assert close(generic.metrics["nll"], -model.log_marginal(x).mean().item(), 1e-10)
    assert close(generic.metrics["mi"], gaussian.metrics["mi"], 0.15)
    assert generic.metrics["au"] == gaussian.metrics["au"] == 2


# --- MI and AU ----------------------------------------------------------------------------------

def test_mi_of_exact_posterior_approaches_population_mi():
    """s^2/sigma^2 = e - 1 per dimension gives I(x; z) = 1 nat, far below the log N cap."""
    s = math.sqrt(math.e - 1)
    model = LinearGaussian(s=(s, s))
    x = model.sample_x(2000)
    result = evaluate(model, batches_of(x, 500), ["mi", "kl"])
    assert close(model.population_mi(), 1.0, 1e-12)
    assert close(result.metrics["mi"], 1.0, 0.1)
    # the aggregate posterior is the prior, so E_x KL(q(z|x) || p(z)) is the MI too
    assert close(result.metrics["kl"], 1.0, 0.1)
    assert result.options["mi_pool"] == "dataset" and result.options["mi_pool_size"] == 2000


@pytest.mark.parametrize("pool", ["dataset", "batch"])
def test_encoder_that_ignores_x_has_no_information_and_no_active_units(pool):
    model = LinearGaussian(encoder="ignores_x")
    x = model.sample_x(400)
    result = evaluate(model, batches_of(x, 100), ["mi", "au"], mi_pool=pool)
    assert result.metrics["au"] == 0
    # Every posterior is the same, so q_agg = q(z|x) at every draw and the paired estimator is
    # exactly 0. He et al.'s analytic entropy term would read noise of sd sqrt(d/2)/sqrt(N) = 0.05.
    assert close(result.metrics["mi"], 0.0, 1e-9)
    assert result.options["mi_estimator"] == "paired"


def test_near_deterministic_encoder_reaches_the_log_pool_size_cap():
    """Each z_i is scored only by its own posterior, so log q_agg(z_i) = log q(z_i|x_i) - log M
    and the paired estimate is log M exactly (the analytic entropy term would add noise of sd
    sqrt(d/2)/sqrt(N) ~ 0.03)."""
    model = LinearGaussian(encoder="deterministic")
    x = model.sample_x(1000)
    batches = batches_of(x, 400)                      # sizes 400, 400, 200
    dataset = evaluate(model, batches, ["mi", "au"], mi_pool="dataset")
    batch = evaluate(model, batches, ["mi", "au"], mi_pool="batch", mi_pool_max=400)
    weighted = (800 * math.log(400) + 200 * math.log(200)) / 1000   # weighted by pool size
    assert close(dataset.metrics["mi"], math.log(1000), 1e-6)
    assert close(batch.metrics["mi"], weighted, 1e-6)
    assert dataset.metrics["au"] == batch.metrics["au"] == model.latent_size
    assert (dataset.options["mi_pool"], dataset.options["mi_pool_size"]) == ("dataset", 1000)
    assert (batch.options["mi_pool"], batch.options["mi_pool_size"]) == ("batch", 400)
    # He et al.'s pools (the default): runs of at most 32 -- 12 x 32 + 16 per batch of 400,
    # 6 x 32 + 8 for the 200.
    he = evaluate(model, batches, ["mi"], mi_pool="batch")
    pools = (2 * (384 * math.log(32) + 16 * math.log(16)) + 192 * math.log(32) + 8 * math.log(8)) / 1000
    assert close(he.metrics["mi"], pools, 1e-6) and he.options["mi_pool_size"] == 32


def test_au_uses_unbiased_variance_and_inclusive_threshold():
    """Means +-0.1 alternating: unbiased variance 0.01 * n / (n - 1) >= 0.01; the biased one
    (0.01) would also pass, so the threshold just above tells them apart."""

    class FixedMeans(LinearGaussian):
        def posterior(self, batch):
            mu = 0.1 * (-1.0) ** torch.arange(batch.size, dtype=DTYPE)[:, None].expand(-1, 2)
            return DiagonalGaussian(mu, torch.zeros_like(mu))

    model = FixedMeans()
    x = model.sample_x(10)
    unbiased = 0.01 * 10 / 9
    assert evaluate(model, batches_of(x, 4), ["au"], au_threshold=unbiased - 1e-12).metrics["au"] == 2
    assert evaluate(model, batches_of(x, 4), ["au"], au_threshold=unbiased + 1e-12).metrics["au"] == 0


@pytest.mark.parametrize("spread, active", [(0.0, 0), (math.sqrt(0.02), 16)])
def test_au_of_a_sampled_posterior_is_not_inflated_by_monte_carlo_noise(spread, active):
    """Posterior means +-`spread` (variance across examples 0, or 0.02 against the 0.01
    threshold) with unit posterior variance, behind the generic interface so E_q[z] is a Monte
    Carlo mean of 100 draws. One such mean per example would add 1/100 = 0.01 of noise variance
    and count about 8 of the 16 collapsed units as active (all 16 stay below the threshold with
    probability 2^-16); the estimate must count none of them, and all 16 informative ones."""

    class UnitVarianceMeans(LinearGaussian):
        def posterior(self, batch):
            signs = (-1.0) ** torch.arange(batch.size, dtype=DTYPE)[:, None]
            mu = (spread * signs).expand(-1, self.latent_size)
            return NotGaussian(DiagonalGaussian(mu, torch.zeros_like(mu)))

    model = UnitVarianceMeans(s=(1.0,) * 16, dim_x=20)
    x = model.sample_x(2000)
    result = evaluate(model, batches_of(x, 400), ["au"], mc_samples=100)
    assert result.metrics["au"] == active


# --- reproducibility ----------------------------------------------------------------------------

def test_chunk_size_and_batch_cut_do_not_change_the_numbers():
    model = LinearGaussian(encoder="shifted")
    x = model.sample_x(90)
    runs = [evaluate(model, batches_of(x, batch), iw_samples=24, iw_chunk=chunk)
            for batch, chunk in ((90, 24), (90, 1), (13, 5), (40, 7))]
    for run in runs[1:]:
        for name, value in runs[0].metrics.items():
            assert close(run.metrics[name], value, 1e-9), name
        torch.testing.assert_close(run.per_example["nll"], runs[0].per_example["nll"],
                                   rtol=0, atol=1e-10)


def test_same_seed_same_numbers_other_seed_other_numbers():
    model = LinearGaussian(encoder="shifted")
    x = model.sample_x(40)
    first, again, other = (evaluate(model, batches_of(x, 16), iw_samples=8, seed=seed)
                           for seed in (3, 3, 4))
    assert first.metrics == again.metrics
    assert first.metrics["nll"] != other.metrics["nll"]
    assert first.metrics["kl"] == other.metrics["kl"]   # analytic: no randomness
    assert first.options["seed"] == 3


def test_generator_input_and_global_rng_untouched():
    model = LinearGaussian(encoder="not_gaussian")
    x = model.sample_x(30)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    from_list = evaluate(model, batches_of(x, 10), iw_samples=4, mc_samples=20)
    assert torch.equal(torch.rand(3), expected_next)
    from_generator = evaluate(model, (b for b in batches_of(x, 10)), iw_samples=4, mc_samples=20)
    assert from_generator.metrics == from_list.metrics


@pytest.mark.needs_cpu_bf16
def test_bf16_autocast_stays_close_and_is_recorded():
    model = LinearGaussian(dtype=torch.float32, encoder="shifted")
    x = model.sample_x(64)
    full = evaluate(model, batches_of(x, 32), ["nll", "elbo", "kl"], iw_samples=16)
    half = evaluate(model, batches_of(x, 32), ["nll", "elbo", "kl"], iw_samples=16, bf16=True)
    assert half.options["bf16"] is True
    for name in ("nll", "elbo", "kl"):
        assert close(half.metrics[name], full.metrics[name], 0.02 * abs(full.metrics[name]) + 0.02)


def test_model_mode_restored_and_result_prefixed():
    model = LinearGaussian()
    model.train()
    result = evaluate(model, batches_of(model.sample_x(8), 8), ["kl"])
    assert model.training
    assert result.prefixed("test") == {"test/num_examples": 8, "test/kl": result.metrics["kl"]}


def test_bad_options_are_refused():
    model = LinearGaussian()
    batches = batches_of(model.sample_x(4), 4)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(model, batches, ["bleu"])
    with pytest.raises(ValueError, match="mi_pool"):
        evaluate(model, batches, ["mi"], mi_pool="corpus")
    with pytest.raises(ValueError, match="no batches"):
        evaluate(model, [], ["kl"])


# --- per-step latents ---------------------------------------------------------------------------

class PerStepLinear(LatentVariableModel):
    """x_t = w z_t + noise per position, z_t ~ N(0, 1): event shape (T, 1); exact posterior."""

    w, sigma = 1.5, 1.0

    def posterior(self, batch):
        var = 1 / (1 + self.w ** 2 / self.sigma ** 2)
        mu = (var * self.w * batch.x / self.sigma ** 2)[..., None]
        return DiagonalGaussian(mu, torch.full_like(mu, math.log(var)), event_dims=2)

    def prior(self, batch):
        return StandardNormal((batch.x.shape[1], 1))

    def log_likelihood(self, batch, z):
        return D.Normal(self.w * z[..., 0], self.sigma).log_prob(batch.x).sum(-1)

    def log_marginal(self, x):
        scale = torch.tensor(math.sqrt(self.w ** 2 + self.sigma ** 2), dtype=x.dtype)
        return D.Normal(0.0, scale).log_prob(x).sum(-1)


def test_per_step_latents_of_varying_length():
    model = PerStepLinear()
    gen = torch.Generator().manual_seed(0)
    batches = [VectorBatch(torch.randn(6, length, generator=gen, dtype=DTYPE)) for length in (3, 5)]
    result = evaluate(model, batches, ["nll", "kl", "au", "mi"], iw_samples=5, mi_pool="batch")
    truth = torch.cat([model.log_marginal(b.x) for b in batches])
    torch.testing.assert_close(result.per_example["nll"], -truth, rtol=0, atol=1e-10)
    assert result.metrics["au"] == 1                 # one unit on the last axis
    with pytest.raises(NotImplementedError, match="mi_pool='batch'"):
        evaluate(model, batches, ["mi"], mi_pool="dataset")


# --- perplexity on text -------------------------------------------------------------------------

VOCAB = Vocab(["w4", "w5", "w6", "w7"])   # ids: <pad> 0, <unk> 1, <bos> 2, <eos> 3, w4 4, ...


def hand_batch() -> TextBatch:
    """"w4 w5 w6" and "w7": 3 + 1 and 1 + 1 target tokens (<eos> counted, <bos> not) = 6."""
    tokens = torch.tensor([[2, 4, 5, 6, 3], [2, 7, 3, 0, 0]])
    return TextBatch(tokens, torch.tensor([5, 3]), pad_id=VOCAB.pad)


def token_cost(batch) -> torch.Tensor:
    """-log p of a sentence when each target token t costs 0.1 * id(t) nats; `(B,)`."""
    return 0.1 * (batch.targets * batch.target_mask).sum(1).double()


class TokenCostLM(LanguageModel):
    def log_likelihood(self, batch, z):
        return -token_cost(batch)[None]


class TokenCostVAE(LatentVariableModel):
    """q(z|x) = p(z) = N(0, 1) and x independent of z: every importance weight is log p(x)."""

    def posterior(self, batch):
        zeros = torch.zeros(batch.size, 2, dtype=DTYPE)
        return DiagonalGaussian(zeros, zeros.clone())

    def prior(self, batch):
        return StandardNormal((2,))

    def log_likelihood(self, batch, z):
        return (-token_cost(batch)).expand(z.shape[0], -1)


def test_language_model_ppl_counts_eos_not_bos():
    result = evaluate(TokenCostLM(), [hand_batch()])
    costs = [0.1 * (4 + 5 + 6 + 3), 0.1 * (7 + 3)]
    assert result.metrics["num_targets"] == 6 and result.metrics["num_examples"] == 2
    assert close(result.metrics["nll"], sum(costs) / 2, 1e-12)
    assert close(result.metrics["ppl"], math.exp(sum(costs) / 6), 1e-12)
    assert result.options["nll_estimator"] == "exact"
    with pytest.raises(ValueError, match="has_latent=False"):
        evaluate(TokenCostLM(), [hand_batch()], ["kl"])


def test_latent_model_iw_ppl_and_elbo_ppl_use_the_same_token_count():
    result = evaluate(TokenCostVAE(), [hand_batch()], iw_samples=5)
    ppl = math.exp((1.8 + 1.0) / 6)
    assert close(result.metrics["ppl"], ppl, 1e-12)
    assert close(result.metrics["elbo_ppl"], ppl, 1e-12)   # KL = 0, rec = -log p(x)


def test_evaluate_corpus_takes_a_prefix_and_records_options():
    sentences = [[4, 5, 6], [7], [4, 4], [5, 6, 7, 4], [6], [7, 7], [4]]
    split = TextSplit.from_lists(sentences)
    corpus = TextCorpus("toy", VOCAB, {"test": split}, sha256="")
    cfg = EvalConfig(split="test", max_examples=5)
    result = evaluate_corpus(TokenCostLM(), corpus, cfg, device="cpu", seed=0, batch_size=2)
    prefix = sentences[:5]
    assert result.metrics["num_examples"] == 5
    assert result.metrics["num_targets"] == sum(len(s) + 1 for s in prefix)
    expected_nll = sum(0.1 * (sum(s) + VOCAB.eos) for s in prefix) / 5
    assert close(result.metrics["nll"], expected_nll, 1e-12)
    assert result.options["max_examples"] == 5 and result.options["batch_size"] == 2
    assert isinstance(result, EvalResult)


class SentenceCodeVAE(TokenCostVAE):
    """A near-deterministic code (length, token sum) per sentence: distinct sentences never
    share posterior mass, so the paired MI estimate is exactly log M."""

    def posterior(self, batch):
        mask = batch.target_mask.double()
        code = torch.stack([mask.sum(1), (batch.targets * batch.target_mask).sum(1).double()], 1)
        return DiagonalGaussian(code, torch.full_like(code, -24.0))


@pytest.mark.parametrize("whole_split", [False, True])
def test_mi_and_au_can_take_the_whole_split_while_the_bound_takes_a_prefix(whole_split):
    sentences = [[4, 5, 6], [7], [4, 4], [5, 6, 7, 4], [6], [7, 7], [5]]
    corpus = TextCorpus("toy", VOCAB, {"test": TextSplit.from_lists(sentences)}, sha256="")
    cfg = EvalConfig(split="test", max_examples=3, iw_samples=2, mi_au_whole_split=whole_split)
    result = evaluate_corpus(SentenceCodeVAE(), corpus, cfg, device="cpu", seed=0, batch_size=2)
    pooled = 7 if whole_split else 3
    assert result.metrics["num_examples"] == 3      # the bound stays on the prefix
    assert result.metrics["num_targets"] == sum(len(s) + 1 for s in sentences[:3])
    assert close(result.metrics["mi"], math.log(pooled), 1e-9)
    assert result.options["mi_pool_size"] == pooled
    assert result.options.get("mi_au_examples") == (7 if whole_split else None)
    assert result.metrics["au"] == 2 and set(result.options["metrics"]) == set(METRIC_NAMES)


def test_bf16_is_refused_with_a_clear_error_on_a_cpu_without_bf16_kernels(monkeypatch):
    monkeypatch.setattr("repro.evaluate.cpu_has_bf16", lambda: False)
    model = LinearGaussian(dtype=torch.float32, encoder="shifted")
    with pytest.raises(ConfigError, match="native bf16"):
        evaluate(model, batches_of(model.sample_x(8), 4), ["nll"], iw_samples=2, bf16=True)

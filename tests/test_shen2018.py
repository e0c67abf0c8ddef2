"""Shen et al. 2018 (papers/shen2018_aux_ae): the two-phase schedule (the switch step, which
parameters learn in each phase), the phase-2 matching term against a hand computation, the
implicit latent (samplers that are non-linear in their noise, the MMD^2 estimator on known
answers, gradients into both samplers, only AU and the regulariser reported), the adversarial
option (reversed gradients, the discriminator's JS estimate on known answers), the Gaussian
ablation's interface (IW-NLL finite, analytic KL between q and p), the variants' configs, a
smoke reproduction of every variant, and the paper's claim (the plain VED collapses, the
two-phase model keeps information in z) on the committed cpu records."""
import json
import math

import pytest
import torch

from papers.shen2018_aux_ae.model import (AuxAutoencoderVED, DialogVED, ImplicitAuxAutoencoderVED,
                                          ImplicitLatent, ImplicitSampler, LatentDiscriminator,
                                          ReverseGradient, build, code_nll, discriminator_loss,
                                          js_estimate, mmd_squared, updates_per_epoch)
from papers.shen2018_aux_ae.presets import MODELS
from papers.shen2018_aux_ae.reported import DENSITY_METRICS, IMPLICIT_METRICS
from repro import schedules
from repro.config import ConfigError, KLScheduleConfig
from repro.data import load_corpus
from repro.evaluate import evaluate
from repro.nn.distributions import LOG_2PI, DiagonalGaussian
from repro.registry import get_paper, resolve
from repro.train import build_optimizer, train, validation_objective

from helpers_records import RECORDS, cpu_metrics

PAPER = "shen2018_aux_ae"
VARIANTS = ["ved", "ved-kl-anneal", "aux-ae-two-phase", "aux-ae-two-phase-gaussian"]
TWO_PHASE = "aux-ae-two-phase"                     # the implicit latent
GAUSSIAN = "aux-ae-two-phase-gaussian"             # its ablation: Gaussian latent, analytic KL
TWO_PHASES = [TWO_PHASE, GAUSSIAN]
DENSITY_VARIANTS = ["ved", "ved-kl-anneal", GAUSSIAN]


def config(variant, preset="smoke"):
    return resolve(PAPER, variant, preset)[1]


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(config(TWO_PHASE).data)


@pytest.fixture()
def batch(corpus):
    # valid, unshuffled: short responses first; 12 examples with 1-10 context turns
    return next(iter(corpus.batches("valid", 12, shuffle=False)))


def make(variant, corpus, seed=0):
    torch.manual_seed(seed)
    return build(config(variant), corpus)


def with_response(batch, response):
    return type(batch)(**{**batch.__dict__, "response": response})


def closed_form_kl(q, p):
    """KL(q || p) of two diagonal Gaussians per example (METRICS.md section 4), `(B,)`."""
    return (0.5 * (p.logvar - q.logvar + (q.logvar.exp() + (q.mu - p.mu) ** 2) / p.logvar.exp() - 1)).sum(-1)


# --- configs ---------------------------------------------------------------------------------

def test_one_variant_per_row_of_the_issue():
    assert list(get_paper(PAPER).variants) == VARIANTS == list(MODELS)


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_data_is_the_suite_default_on_dailydialog(preset):
    for variant in VARIANTS:
        data = config(variant, preset).data
        assert (data.dataset, data.substitute_for) == ("dailydialog", None)
        assert (data.max_length, data.max_context) == (40, 10)
        assert data.max_vocab == (500 if preset == "smoke" else 10_000)
    assert config(TWO_PHASE, "paper-swda").data.dataset == "swda"


def test_variants_differ_in_kl_schedule_and_training():
    weights = {v: [schedules.kl_weight(s, config(v, "paper").model.kl) for s in (0, 5_000, 10_000)]
               for v in VARIANTS}
    assert weights == {"ved": [1.0, 1.0, 1.0], "ved-kl-anneal": [0.0, 0.5, 1.0],
                       TWO_PHASE: [1.0, 1.0, 1.0], GAUSSIAN: [1.0, 1.0, 1.0]}
    assert config("ved-kl-anneal", "cpu").model.kl.warmup_steps == 3_700
    for variant in VARIANTS:
        m = config(variant, "paper").model
        assert (m.embed_size, m.utterance_hidden, m.context_hidden, m.decoder_hidden,
                m.latent_size, m.prior_hidden) == (200, 300, 600, 400, 200, 400)
        assert hasattr(m, "autoencoder_epochs") == (variant in TWO_PHASES)
    for variant in TWO_PHASES:
        two_phase = config(variant, "paper")
        assert two_phase.model.code_size == 200
        assert (two_phase.model.autoencoder_epochs, two_phase.train.epochs) == (10, 30)
        cpu = config(variant, "cpu")
        assert (cpu.model.autoencoder_epochs, cpu.train.epochs) == (3, 8)
        assert config("ved", "cpu").train.epochs == 5
        for preset in ("cpu", "paper"):
            cfg = config(variant, preset)
            assert (cfg.optim.name, cfg.optim.lr, cfg.train.early_stop_patience) == ("adam", 1e-3, None)
            assert cfg.model.dialog_eval.num_samples == 10
    assert config(TWO_PHASE, "paper").model.regulariser == "mmd"
    assert config(GAUSSIAN, "paper").model.regulariser == "gaussian_kl"


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper", "paper-swda"])
def test_the_ablation_differs_from_the_main_row_in_its_latent_only(preset):
    implicit, gaussian = config(TWO_PHASE, preset), config(GAUSSIAN, preset)
    assert (implicit.model.latent_samples, implicit.model.regulariser_weight_per_code_dim) == (8, 1.0)
    mmd_only = {"regulariser": "gaussian_kl", "latent_samples": 0, "regulariser_weight_per_code_dim": 0.0}
    strip = lambda cfg: {**cfg.to_dict(), "variant": None,  # noqa: E731
                         "model": {**cfg.to_dict()["model"], **mmd_only}}
    assert strip(implicit) == strip(gaussian)


def test_no_paper_number_is_claimed_and_each_row_lists_only_its_defined_metrics():
    paper = get_paper(PAPER)
    reported = [r for v in paper.variants.values() for r in v.reported.values()]
    assert reported and all(r.value is None and r.tag == "not retrieved" for r in reported)
    table = set(paper.table_metrics)
    assert {"test/mmd", "test/kl", "test/au"} <= table
    for name, variant in paper.variants.items():
        excluded = IMPLICIT_METRICS if name in DENSITY_VARIANTS else DENSITY_METRICS
        assert set(variant.reported) == table - set(excluded), name
    assert "test/mmd" not in str(DENSITY_METRICS) and "kl" not in " ".join(IMPLICIT_METRICS)
    assert "not a KL" in paper.variants[TWO_PHASE].reading_note


# --- the phase schedule ----------------------------------------------------------------------

def test_switch_falls_after_autoencoder_epochs_of_train_batches(corpus):
    cfg = config(TWO_PHASE)
    batches = sum(1 for _ in corpus.batches("train", cfg.data.batch_size, shuffle=True, seed=0))
    model = build(cfg, corpus)
    assert updates_per_epoch(cfg, corpus) == batches
    assert model.autoencoder_steps == cfg.model.autoencoder_epochs * batches
    assert [model.phase(s) for s in (0, batches - 1, batches, 10 * batches)] == [1, 1, 2, 2]
    # validation after an epoch of `step` updates: only epochs that ran phase-2 updates select
    assert [model.selectable(s) for s in (batches, batches + 1, 2 * batches)] == [False, True, True]
    cfg.train.epochs = cfg.model.autoencoder_epochs
    with pytest.raises(ConfigError, match="no phase-2 epoch"):
        build(cfg, corpus)


def _update(model, optimizer, batch, step):
    """One trainer update; returns which parameters got a gradient, by part."""
    optimizer.zero_grad(set_to_none=True)
    model.loss(batch, step)["loss"].backward()
    got = {part: [p.grad is not None for p in getattr(model, part).parameters()]
           for part in ("autoencoder", "ved")}
    optimizer.step()
    return got


@pytest.mark.parametrize("variant", TWO_PHASES)
def test_each_phase_trains_only_its_own_parameters(variant, corpus, batch):
    cfg = config(variant)
    model = make(variant, corpus)
    optimizer = build_optimizer(cfg, model)
    switch = model.autoencoder_steps

    before = {k: v.clone() for k, v in model.state_dict().items()}
    got = _update(model, optimizer, batch, switch - 1)
    assert all(got["autoencoder"]) and not any(got["ved"])
    after_one = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after_one[k])}
    assert changed and all(k.startswith("autoencoder.") for k in changed)

    before = {k: v.clone() for k, v in after_one.items()}
    got = _update(model, optimizer, batch, switch)
    assert all(got["ved"]) and not any(got["autoencoder"])
    after_two = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after_two[k])}
    assert changed and all(k.startswith("ved.") for k in changed)


def test_phase_one_loss_is_the_autoencoders_reconstruction(corpus, batch):
    model = make(TWO_PHASE, corpus)
    terms = model.loss(batch, step=0)
    assert set(terms) == {"loss", "rec"}
    code = model.autoencoder.encode(batch)
    expected = -model.autoencoder.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask,
                                                         code[None]).mean()
    torch.testing.assert_close(terms["loss"], expected)


# --- the matching term -----------------------------------------------------------------------

def test_matching_term_is_the_gaussian_nll_of_the_code_at_its_ml_variance_by_hand():
    code = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 2.0]])
    predicted = torch.zeros(1, 3, 2)
    # Squared residuals: dimension 0 (1, 0, 0), dimension 1 (0, 0, 4); their batch means are
    # the variances, 1/3 and 4/3, so each residual scores r^2 / sigma^2 = 3 where it is non-zero.
    normaliser = 0.5 * (math.log(1 / 3) + math.log(4 / 3) + 2 * LOG_2PI)
    expected = torch.tensor([[0.5 * 3 + normaliser, normaliser, 0.5 * 3 + normaliser]])
    torch.testing.assert_close(code_nll(code, predicted), expected)
    # The codes' scale only shifts it: e and ê ten times larger cost E log 10 more per example.
    torch.testing.assert_close(code_nll(10 * code, 10 * predicted), expected + 2 * math.log(10))


def test_phase_two_loss_of_the_gaussian_ablation_is_match_plus_kl_between_q_and_p(corpus, batch):
    model = make(GAUSSIAN, corpus)
    torch.manual_seed(1)
    terms = model.loss(batch, step=model.autoencoder_steps)
    assert set(terms) == {"loss", "match", "kl", "kl_weight", "code_elbo"}
    torch.manual_seed(1)
    code = model.autoencoder.encode(batch)
    c = model.ved.latent.context(batch)
    q, p = model.ved.latent.posterior(c, code), model.ved.latent.prior(c)
    z, _ = q.rsample(1)
    predicted = model.ved.generator(torch.cat([c, z[0]], -1))
    sigma2 = ((code - predicted) ** 2).mean(0)
    match = 0.5 * ((code - predicted) ** 2 / sigma2 + sigma2.log() + LOG_2PI).sum(-1)
    kl = closed_form_kl(q, p)
    torch.testing.assert_close(terms["match"], match.mean())
    torch.testing.assert_close(terms["kl"], kl.mean())
    torch.testing.assert_close(terms["loss"], (match + kl).mean())
    torch.testing.assert_close(terms["code_elbo"], -(match + kl).mean())
    # An annealed phase 2 would start its schedule at the switch, not at the run's step 0.
    model.cfg.kl = KLScheduleConfig(kind="linear", warmup_steps=10)
    weights = [float(model.loss(batch, model.autoencoder_steps + s)["kl_weight"]) for s in (0, 5)]
    assert weights == [0.0, 0.5]


# --- the implicit latent ---------------------------------------------------------------------

def _tanh_sampler(gain: float) -> ImplicitSampler:
    """A 1-d sampler z = tanh(gain * eps) that ignores its 1-d condition."""
    sampler = ImplicitSampler(condition_size=1, latent_size=1, hidden=1)
    with torch.no_grad():
        sampler.net[0].weight.copy_(torch.tensor([[0.0, gain]]))
        sampler.net[0].bias.zero_()
        sampler.net[2].weight.fill_(1.0)
        sampler.net[2].bias.zero_()
    return sampler


def test_a_sampler_is_a_non_gaussian_function_of_its_noise():
    sampler = _tanh_sampler(3.0)
    condition = torch.zeros(1, 1)
    eps = torch.randn(200_000, 1, 1, generator=torch.Generator().manual_seed(0))
    z = sampler(condition, eps).flatten()
    torch.testing.assert_close(z, torch.tanh(3.0 * eps).flatten())
    # tanh(3 eps) piles up near +-1: excess kurtosis about -1.8, where any Gaussian has 0.
    centred = z - z.mean()
    excess_kurtosis = (centred ** 4).mean() / (centred ** 2).mean() ** 2 - 3
    assert excess_kurtosis < -1.5


@pytest.mark.parametrize("which", ["posterior", "prior"])
def test_the_models_samplers_are_implicit(which, corpus, batch):
    model = make(TWO_PHASE, corpus).eval()
    assert model.shared_metrics == ("au",)
    latent = getattr(model, which)(batch)
    assert isinstance(latent, ImplicitLatent) and latent.batch_size == batch.size
    sampler, condition = latent.sampler, latent.condition
    a, b = (sampler.noise(1, condition, torch.Generator().manual_seed(s)) for s in (1, 2))
    z = {name: sampler(condition, eps) for name, eps in
         (("a", a), ("b", b), ("a+b", a + b), ("0", torch.zeros_like(a)), ("a again", a.clone()))}
    torch.testing.assert_close(z["a"], z["a again"])          # a function of the noise...
    assert (z["a"] - z["b"]).abs().amin(-1).gt(0).all()       # ...different noise, different z
    # mu + sigma * eps (a Gaussian) is affine in eps, so this second difference would vanish.
    second_difference = z["a+b"] - z["a"] - z["b"] + z["0"]
    assert second_difference.abs().max() > 1e-4
    z_n, log_q = latent.rsample(5)
    assert z_n.shape == (5, batch.size, model.cfg.latent_size) and log_q is None
    with pytest.raises(TypeError, match="no density"):
        latent.log_prob(z_n)


def test_prior_sampler_reads_only_the_context_and_posterior_sampler_the_response(corpus, batch):
    model = make(TWO_PHASE, corpus).eval()
    other = with_response(batch, torch.where(batch.response > 3, 4, batch.response))
    draw = lambda latent: latent.rsample(3, torch.Generator().manual_seed(0))[0]  # noqa: E731
    torch.testing.assert_close(draw(model.prior(other)), draw(model.prior(batch)))
    assert not torch.allclose(draw(model.posterior(other)), draw(model.posterior(batch)))


def test_mmd_of_two_point_clouds_by_hand():
    # x = {0, 0}, y = {1, 1}: the pooled pairs are at squared distance 0 (twice) and 1 (four
    # times), so the median bandwidth is sigma^2 = 1 and k(x, y) = exp(-1/2). Within x and within
    # y every distinct pair coincides (k = 1): MMD^2 = 1 + 1 - 2 exp(-1/2).
    x, y = torch.zeros(2, 1, 1), torch.ones(2, 1, 1)
    torch.testing.assert_close(mmd_squared(x, y), torch.tensor([2 - 2 * math.exp(-0.5)]))
    torch.testing.assert_close(mmd_squared(y, x), mmd_squared(x, y))
    torch.testing.assert_close(mmd_squared(x, x.clone()), torch.zeros(1))


def test_mmd_is_zero_for_one_distribution_grows_with_a_shift_and_ignores_the_scale():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(8, 4000, 3, generator=g), torch.randn(8, 4000, 3, generator=g)
    # Unbiased: zero in expectation for equal distributions, so its mean over 4000 examples is
    # within a few standard errors (about 0.002 here) of 0.
    assert abs(mmd_squared(x, y).mean()) < 0.01
    means = [mmd_squared(x, y + shift).mean().item() for shift in (0.0, 0.25, 0.5, 1.0, 2.0)]
    assert means == sorted(means) and means[1] > 0.005 and means[-1] > 0.5
    # The median bandwidth scales with z: an overall rescaling cannot shrink the regulariser.
    torch.testing.assert_close(mmd_squared(10 * x, 10 * (y + 1.0)), mmd_squared(x, y + 1.0))


def test_phase_two_loss_of_the_implicit_latent_is_match_plus_weighted_mmd_by_hand(corpus, batch):
    model = make(TWO_PHASE, corpus)
    cfg = model.cfg
    assert model.regulariser_weight == cfg.regulariser_weight_per_code_dim * cfg.code_size
    torch.manual_seed(1)
    terms = model.loss(batch, step=model.autoencoder_steps)
    assert set(terms) == {"loss", "match", "mmd"}
    torch.manual_seed(1)
    code = model.autoencoder.encode(batch)
    c = model.ved.encoder(batch)
    n, d = cfg.latent_samples, cfg.latent_size
    z_q = model.ved.posterior_sampler(torch.cat([c, code], -1), torch.randn(n, batch.size, d))
    z_p = model.ved.prior_sampler(c, torch.randn(n, batch.size, d))
    predicted = model.ved.generator(torch.cat([c.expand(n, *c.shape), z_q], -1))
    sigma2 = ((code - predicted) ** 2).mean((0, 1))
    match = 0.5 * ((code - predicted) ** 2 / sigma2 + sigma2.log() + LOG_2PI).sum(-1).mean(0)
    mmd = mmd_squared(z_q, z_p)
    torch.testing.assert_close(terms["match"], match.mean())
    torch.testing.assert_close(terms["mmd"], mmd.mean())
    torch.testing.assert_close(terms["loss"], (match + model.regulariser_weight * mmd).mean())


def test_gradients_reach_both_samplers_and_only_the_regulariser_trains_the_prior(corpus, batch):
    model = make(TWO_PHASE, corpus)

    def grad_norms(weight_per_dim):
        model.cfg.regulariser_weight_per_code_dim = weight_per_dim
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)
        model.loss(batch, step=model.autoencoder_steps)["loss"].backward()
        return {part: sum(float(p.grad.norm()) for p in getattr(model.ved, part).parameters()
                          if p.grad is not None)
                for part in ("posterior_sampler", "prior_sampler", "generator")}

    regularised, unregularised = grad_norms(1.0), grad_norms(0.0)
    assert all(norm > 0 for norm in regularised.values())
    assert unregularised["prior_sampler"] == 0 and unregularised["posterior_sampler"] > 0
    assert all(p.grad is None for p in model.autoencoder.parameters())


def test_evaluation_of_the_implicit_latent_reports_au_and_the_regulariser_never_a_kl(corpus, batch):
    model = make(TWO_PHASE, corpus)
    result = evaluate(model, [batch], mc_samples=16, seed=3)
    assert set(result.metrics) == {"au", "match", "mmd", "objective", "num_examples", "num_targets"}
    assert result.options["metrics"] == ["au"]
    assert 0 <= result.metrics["au"] <= model.cfg.latent_size
    torch.testing.assert_close(result.metrics["objective"],
                               result.metrics["match"] + model.regulariser_weight * result.metrics["mmd"])
    assert evaluate(model, [batch], mc_samples=16, seed=3).metrics == result.metrics  # seeded
    assert validation_objective(result.metrics) == result.metrics["objective"]
    with pytest.raises(ValueError, match="not defined"):
        evaluate(model, [batch], metrics=("kl",))


def test_posterior_mean_for_au_is_a_monte_carlo_estimate_that_converges(corpus, batch):
    model = make(TWO_PHASE, corpus).eval()
    with torch.no_grad():
        model.ved.posterior_sampler.net[-1].weight.mul_(5.0)   # spread z: a visible sampling error
        latent = model.posterior(batch)
        torch.manual_seed(0)
        rough = [latent.mean(2) for _ in range(2)]
        fine = [latent.mean(20_000) for _ in range(2)]
    assert (rough[0] - rough[1]).abs().max() > 10 * (fine[0] - fine[1]).abs().max()
    torch.testing.assert_close(fine[0], fine[1], atol=0.05, rtol=0)


# --- the adversarial option ------------------------------------------------------------------

def adversarial_config(preset="smoke"):
    cfg = config(TWO_PHASE, preset)
    cfg.model.regulariser = "adversarial"
    return cfg


def test_reversed_gradient_is_the_identity_forward_and_negated_backward():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = ReverseGradient.apply(x)
    torch.testing.assert_close(y, x.detach())
    (3 * y).sum().backward()
    torch.testing.assert_close(x.grad, torch.tensor([-3.0, -3.0]))


def test_discriminator_loss_and_its_js_estimate_on_known_answers():
    chance = torch.zeros(4, 3)
    torch.testing.assert_close(discriminator_loss(chance, chance), torch.full((3,), 2 * math.log(2)))
    torch.testing.assert_close(js_estimate(discriminator_loss(chance, chance)), torch.zeros(3))
    certain = discriminator_loss(torch.full((4, 3), 30.0), torch.full((4, 3), -30.0))
    torch.testing.assert_close(js_estimate(certain), torch.full((3,), math.log(2)))


@pytest.mark.parametrize("shift, low, high", [(0.0, -0.05, 0.05), (4.0, 0.5, math.log(2))])
def test_a_trained_discriminator_estimates_the_js_divergence(shift, low, high):
    # JS(N(0, 1), N(4, 1)) is about 0.65 nats; between equal distributions it is 0.
    torch.manual_seed(0)
    disc = LatentDiscriminator(context_size=1, latent_size=1, hidden=16)
    optimizer = torch.optim.Adam(disc.parameters(), lr=1e-2)
    c = torch.zeros(64, 1)

    def loss():
        return discriminator_loss(disc(c, torch.randn(8, 64, 1)), disc(c, torch.randn(8, 64, 1) + shift))

    for _ in range(300):
        optimizer.zero_grad()
        loss().mean().backward()
        optimizer.step()
    with torch.no_grad():                              # fresh draws: no credit for overfitting
        estimate = js_estimate(torch.stack([loss() for _ in range(20)])).mean().item()
    assert low < estimate <= high + 1e-6


def test_adversarial_penalty_trains_the_discriminator_down_and_the_samplers_up(corpus, batch):
    model = build(adversarial_config(), corpus)
    assert isinstance(model, ImplicitAuxAutoencoderVED) and model.shared_metrics == ("au",)

    def grads(reverse: bool):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(2)
        if reverse:
            penalty = model.code_terms(batch)["penalty"]
        else:                                          # the same draws, no reversal
            code = model.autoencoder.encode(batch)
            c = model.ved.context(batch)
            z_q, _ = model.ved.posterior(c, code).rsample(model.cfg.latent_samples)
            z_p, _ = model.ved.prior(c).rsample(model.cfg.latent_samples)
            penalty = discriminator_loss(model.discriminator(c.detach(), z_q),
                                         model.discriminator(c.detach(), z_p))
        penalty.mean().backward()
        return {part: torch.cat([p.grad.flatten() for p in module.parameters()])
                for part, module in (("discriminator", model.discriminator),
                                     ("posterior", model.ved.posterior_sampler),
                                     ("prior", model.ved.prior_sampler),
                                     ("context encoder", model.ved.encoder))}

    reversed_, plain = grads(True), grads(False)
    torch.testing.assert_close(reversed_["discriminator"], plain["discriminator"])
    # The encoder too is on the samplers' side, through them only: D reads c detached, else a
    # direct, unreversed path would break this equality.
    for part in ("posterior", "prior", "context encoder"):
        assert plain[part].abs().max() > 0
        torch.testing.assert_close(reversed_[part], -plain[part])


def test_adversarial_option_trains_and_reports_its_js_estimate_never_a_kl(tmp_path):
    cfg = adversarial_config()
    record = train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False).record
    metrics = record["metrics"]
    assert record["eval"]["metrics"] == ["au"]
    assert all(math.isfinite(metrics[f"test/{n}"]) for n in ("au", "adv_js", "adv_loss", "match"))
    torch.testing.assert_close(metrics["test/adv_js"], math.log(2) - metrics["test/adv_loss"] / 2)
    assert not [k for k in metrics if "kl" in k or "mmd" in k or k.split("/")[1] in ("nll", "elbo", "mi")]
    assert {"train/adv_loss", "train/adv_js"} <= set(record["history"][-1])


# --- the model interface ---------------------------------------------------------------------

@pytest.mark.parametrize("variant", DENSITY_VARIANTS)
def test_interface_gives_finite_iw_nll_and_the_analytic_kl(variant, corpus, batch):
    model = make(variant, corpus)
    q, p = model.posterior(batch), model.prior(batch)
    assert isinstance(q, DiagonalGaussian) and isinstance(p, DiagonalGaussian)
    torch.testing.assert_close(model.kl(batch), closed_form_kl(q, p))
    result = evaluate(model, [batch], iw_samples=8, iw_chunk=4)
    assert result.options["kl_estimator"] == "analytic" and result.options["nll_estimator"] == "iw"
    assert all(math.isfinite(result.metrics[m]) for m in ("nll", "ppl", "elbo", "kl", "mi", "au"))
    torch.testing.assert_close(result.metrics["kl"], model.kl(batch).mean().item(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", DENSITY_VARIANTS)
def test_prior_reads_only_the_context_and_posterior_the_response(variant, corpus, batch):
    model = make(variant, corpus).eval()
    other = with_response(batch, torch.where(batch.response > 3, 4, batch.response))
    torch.testing.assert_close(model.prior(other).mu, model.prior(batch).mu)
    assert not torch.allclose(model.posterior(other).mu, model.posterior(batch).mu)


@pytest.mark.parametrize("variant", TWO_PHASES)
def test_two_phase_likelihood_is_the_phase_one_decoder_fed_the_generated_code(variant, corpus, batch):
    model = make(variant, corpus).eval()
    assert isinstance(model, AuxAutoencoderVED) and isinstance(make("ved", corpus), DialogVED)
    assert isinstance(model, ImplicitAuxAutoencoderVED) == (variant == TWO_PHASE)
    z, _ = model.posterior(batch).rsample(3)
    c = model.ved.context(batch)
    code = model.ved.generator(torch.cat([c.expand(3, *c.shape), z], -1))
    direct = model.autoencoder.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask, code)
    torch.testing.assert_close(model.log_likelihood(batch, z), direct)
    assert model.decoder is model.autoencoder.decoder           # what generation drives


@pytest.mark.parametrize("variant", ["ved", GAUSSIAN, TWO_PHASE])
def test_responses_follow_the_prior_sample(variant, corpus, batch):
    model = make(variant, corpus).eval()
    with torch.no_grad():                            # wide prior: different z, different decodes
        if variant == TWO_PHASE:
            model.ved.prior_sampler.net[0].weight.mul_(4.0)
            model.ved.prior_sampler.net[-1].weight.mul_(10.0)
        else:
            prior_net = (model.latent if variant == "ved" else model.ved.latent).prior_net
            prior_net.net[-1].bias[4:] = 4.0
    rows = model.sample_responses(batch, 4, max_len=6, generator=torch.Generator().manual_seed(0)).tokens
    assert len(rows) == batch.size and all(len(row) == 4 for row in rows)
    assert any(len({tuple(s) for s in row}) > 1 for row in rows)


def test_switchboard_valid_and_test_load_and_are_scored():
    # Only SwDA's valid and test splits are stored here (`paper-swda` needs `repro data fetch
    # swda` to train); a model built on them must still evaluate: no train split, no phase 1.
    for variant, names in ((GAUSSIAN, ("nll", "elbo", "kl")), (TWO_PHASE, ("au", "mmd", "match"))):
        cfg = config(variant)
        cfg.data = config(variant, "paper-swda").data
        swda = load_corpus(cfg.data)
        assert {"valid", "test"} <= set(swda.splits)
        model = build(cfg, swda)
        assert model.autoencoder_steps == cfg.model.autoencoder_epochs * updates_per_epoch(cfg, swda)
        batches = [next(iter(swda.batches("test", 8, shuffle=False)))]
        result = evaluate(model, batches, iw_samples=4, iw_chunk=2, mc_samples=8)
        assert all(math.isfinite(result.metrics[m]) for m in names)


# --- smoke reproduction ----------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_smoke_reproduction(variant, tmp_path):
    cfg = config(variant)
    result = train(cfg, runs_root=tmp_path, records_root=tmp_path / "records", track=False, progress=False)
    record = result.record
    assert result.record_path.is_file() and record["dataset"] == "dailydialog"
    metrics = record["metrics"]
    trained = [set(k for k in epoch if k.startswith("train/")) for epoch in result.history]
    validated = [set(k for k in epoch if k.startswith("val/")) for epoch in result.history]
    if variant == TWO_PHASE:
        # No density: only AU of the shared metrics; the regulariser under its own name.
        assert record["eval"]["metrics"] == ["au"]
        assert all(math.isfinite(metrics[f"test/{n}"]) for n in ("au", "mmd", "match", "objective"))
        assert not [k for k in metrics if k.split("/")[1] in ("nll", "ppl", "elbo", "kl", "mi")]
        assert not [k for k in metrics if "kl" in k]
        assert record["train"]["best_val"] == pytest.approx(result.history[-1]["val/objective"])
        assert all({"val/au", "val/mmd", "val/objective"} <= v and "val/kl" not in v for v in validated)
    else:
        names = ("nll", "ppl", "elbo", "kl", "mi", "au")
        assert all(math.isfinite(metrics[f"test/{n}"]) for n in names)
        assert (record["eval"]["nll_estimator"], record["eval"]["kl_estimator"]) == ("iw", "analytic")
        assert "test/mmd" not in metrics
    if variant in TWO_PHASES:
        # One epoch per phase: the switch falls on the epoch boundary, never mid-epoch.
        assert len(trained) == 2
        assert "train/rec" in trained[0] and "train/match" not in trained[0]
        assert "train/match" in trained[1] and "train/rec" not in trained[1]
        phase_two = {"train/mmd"} if variant == TWO_PHASE else {"train/kl", "train/code_elbo"}
        assert phase_two <= trained[1] and not trained[1] & {"train/kl", "train/mmd"} - phase_two
    else:
        assert {"train/rec", "train/kl", "train/kl_weight"} <= trained[0]
    dialog = json.loads((result.run_dir / "dialog_metrics.json").read_text())["metrics"]
    assert dialog.items() <= record["metrics"].items()           # merged into the record
    n = cfg.model.dialog_eval.num_samples
    bleu = {f"test/bleu_zhao_{k}_{o}_n{n}_ref1" for k in ("prec", "rec", "f1") for o in range(1, 5)}
    assert bleu <= set(dialog)
    assert {f"test/distinct_1_n{n}", f"test/distinct_2_n{n}", "test/sacrebleu_corpus_n1_ref1",
            "test/rc_ppl_posterior"} <= set(dialog)
    assert dialog["test/dialog_num_examples"] == cfg.model.dialog_eval.max_examples


# --- the claim, on the committed records of the real (cpu preset) run --------------------------
# The two-phase rows skip until records of their current form are committed: the cpu record
# filed as aux-ae-two-phase before the implicit latent was built is the Gaussian form's.

def two_phase_metrics(variant: str) -> dict:
    metrics = cpu_metrics(PAPER, variant, required=False)
    record = json.loads((RECORDS / PAPER / f"{variant}__cpu__seed0.json").read_text())
    regulariser = record["config"]["model"].get("regulariser", "gaussian_kl")
    if regulariser != config(variant, "cpu").model.regulariser:
        pytest.skip(f"the {variant} cpu record has regulariser={regulariser!r}, from before the "
                    f"variant took its current form: rerun it (`repro train {PAPER} {variant} --preset cpu`)")
    return metrics


def test_real_run_plain_ved_collapses_and_the_auxiliary_autoencoder_keeps_z_informative():
    ved, aux = cpu_metrics(PAPER, "ved"), two_phase_metrics(GAUSSIAN)
    assert ved["test/kl"] < 0.5 and ved["test/au"] == 0 and ved["test/mi"] < 0.5
    assert aux["test/kl"] > 5.0 and aux["test/mi"] > ved["test/mi"] + 2.0
    assert aux["test/au"] > ved["test/au"]


def test_real_run_kl_annealing_alone_does_not_keep_z_informative_here():
    """Annealed to weight 1 over 3,700 updates, the VED's KL still falls to ~0 by the end: the
    auxiliary autoencoder, not the schedule, is what keeps information in z in this run."""
    anneal, aux = cpu_metrics(PAPER, "ved-kl-anneal"), two_phase_metrics(GAUSSIAN)
    assert anneal["test/kl"] < 0.5 and aux["test/kl"] > anneal["test/kl"] + 5.0
    assert aux["test/mi"] > anneal["test/mi"] + 2.0


SAMPLE_METRICS = ("distinct_2_n10", "bleu_zhao_rec_1_n10_ref1", "bleu_zhao_prec_1_n10_ref1")
IMPLICIT_PRECISION_NOT_REPRODUCED = pytest.mark.xfail(strict=True, reason=(
    "not reproduced at cpu scale (one seed) for the implicit latent: its BLEU precision is 0.271 "
    "against the VED's 0.287, while its distinct-2 (0.155 against 0.022) and BLEU recall (0.469 "
    "against 0.363) do improve"))


@pytest.mark.parametrize("variant, metric", [
    pytest.param(variant, metric, marks=IMPLICIT_PRECISION_NOT_REPRODUCED
                 if (variant, metric) == (TWO_PHASE, "bleu_zhao_prec_1_n10_ref1") else ())
    for variant in TWO_PHASES for metric in SAMPLE_METRICS])
def test_real_run_two_phase_samples_are_more_diverse_and_cover_the_reference_better(variant, metric):
    """The paper's case for the auxiliary autoencoder is generation (the training objective
    should match how responses are generated), so its sampled responses, not its likelihood,
    should improve. Written before the records, as one test over the three metrics; split per
    metric, with no bar changed, after the implicit latent's record (2026-12-07), so that the two
    that hold stay asserted and the one that does not is marked (strict: a record that bears
    it out fails here and gets the mark removed)."""
    ved, aux = cpu_metrics(PAPER, "ved"), two_phase_metrics(variant)
    assert aux[f"test/{metric}"] > ved[f"test/{metric}"], metric


def test_real_run_implicit_latent_reports_its_regulariser_and_no_density_metric():
    aux = two_phase_metrics(TWO_PHASE)
    assert math.isfinite(aux["test/mmd"]) and math.isfinite(aux["test/au"])
    assert not [k for k in aux if "kl" in k or k.split("/")[1] in ("nll", "ppl", "elbo", "mi")]

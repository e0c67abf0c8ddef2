"""Chen et al. 2017 (papers/chen2017_vlae): the shared evaluation on an AF-prior model with a
known answer, the training loss's KL and free bits, the text decoders' windows by gradients, the
variants' configs against the paper card, the reported numbers, and a smoke reproduction of every
runnable variant; the paper's qualitative claims are checked on the committed cpu records (last
section), not on toy data."""
import dataclasses
import json
import math

import pytest
import torch
from torch import distributions as D

from papers.chen2017_vlae.model import (FREE_NATS_PER_PIXEL, PIXELS, ImageVLAE,
                                        PixelCNNLM, TextVLAE, build, pixel_free_bits)
from repro.objectives import free_bits_kl
from papers.chen2017_vlae.presets import ROWS, WINDOWS
from repro import generate
from repro.config import flatten
from repro.sentence_models import CNNLM
from repro.data import load_corpus
from repro.evaluate import evaluate
from repro.model import LatentVariableModel
from repro.nn.cnn import DilatedCNNDecoder
from repro.nn.distributions import DiagonalGaussian, StandardNormal
from repro.nn.flows import IAFPosterior, sample_kl_dims
from repro.nn.pixelcnn import PixelCNNConfig, PixelCNNDecoder
from repro.nn.priors import AFPrior
from repro.registry import get_paper, resolve
from repro.train import train

from helpers_batches import VectorBatch
from helpers_records import cpu_metrics

PAPER = "chen2017_vlae"
DTYPE = torch.float64


def config(variant, preset):
    return resolve(PAPER, variant, preset)[1]


# --- the shared evaluation on an AF-prior model with a known answer -------------------------



A = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=DTYPE)   # orthogonal columns


class LinearGaussianAF(LatentVariableModel):
    """x = A z + N(0, I) with an AF prior over z (d = 2). With the prior's MADE weights zero and
    output bias b, the flow is eps = z - b, i.e. p(z) = N(b, I), so the exact posterior
    N(S (A^T x + b), S), S = (I + A^T A)^-1, is diagonal and log p(x) = log N(x; A b, A A^T + I)
    is known. `posterior_exact=False` shifts the posterior mean, leaving the IW bound loose."""

    def __init__(self, shift: torch.Tensor | None, posterior_exact: bool = True):
        super().__init__()
        self.af = AFPrior(2, 1, (8, 8)).to(DTYPE)
        if shift is not None:
            with torch.no_grad():
                self.af.steps[0].made.output.bias.copy_(shift)
        self.shift = torch.zeros(2, dtype=DTYPE) if shift is None else shift
        self.offset = 0.0 if posterior_exact else 0.7
        self.cov = torch.linalg.inv(torch.eye(2, dtype=DTYPE) + A.T @ A).diagonal()

    def posterior(self, batch):
        mu = (batch.x @ A + self.shift) * self.cov + self.offset
        return DiagonalGaussian(mu, self.cov.log().expand_as(mu))

    def prior(self, batch):
        return self.af

    def log_likelihood(self, batch, z):
        return D.Normal(z @ A.T, 1.0).log_prob(batch.x).sum(-1)

    def exact_log_marginal(self, x):
        return D.MultivariateNormal(A @ self.shift, A @ A.T + torch.eye(3, dtype=DTYPE)).log_prob(x)

    def exact_kl(self, x):
        q = self.posterior(VectorBatch(x))
        p = D.Normal(self.shift, torch.ones(2, dtype=DTYPE))
        return D.kl_divergence(D.Normal(q.mu, q.logvar.mul(0.5).exp()), p).sum(-1)


def toy_batches(shift):
    gen = torch.Generator().manual_seed(5)
    z = torch.randn(120, 2, generator=gen, dtype=DTYPE) + shift
    x = z @ A.T + torch.randn(120, 3, generator=gen, dtype=DTYPE)
    return x, [VectorBatch(part) for part in x.split(40)]


def test_iw_nll_and_kl_use_the_flow_prior_density():
    shift = torch.tensor([1.5, -1.0], dtype=DTYPE)
    model = LinearGaussianAF(shift)
    x, batches = toy_batches(shift)
    result = evaluate(model, batches, iw_samples=8, iw_chunk=4, mi_pool="batch", seed=0)
    # The exact posterior makes every importance weight equal log p(x): exact at any K, and
    # only if log p(z) is the flow's N(b, I), not N(0, I).
    assert result.metrics["nll"] == pytest.approx(-model.exact_log_marginal(x).mean().item(), abs=1e-9)
    assert result.options["kl_estimator"] == "mc"
    assert result.metrics["kl"] == pytest.approx(model.exact_kl(x).mean().item(), rel=0.05)
    # At the exact posterior the ELBO is tight too, up to its single-sample noise.
    assert result.metrics["elbo"] == pytest.approx(result.metrics["nll"], abs=0.5)


def test_an_identity_af_prior_evaluates_like_the_standard_normal():
    x, batches = toy_batches(torch.zeros(2, dtype=DTYPE))
    flow_model = LinearGaussianAF(None, posterior_exact=False)

    class Gaussian(LinearGaussianAF):
        def prior(self, batch):
            return StandardNormal((2,))

    gaussian = evaluate(Gaussian(None, posterior_exact=False), batches, iw_samples=16, iw_chunk=8,
                        mi_pool="batch", seed=0)
    flow = evaluate(flow_model, batches, iw_samples=16, iw_chunk=8, mi_pool="batch", seed=0)
    assert (gaussian.options["kl_estimator"], flow.options["kl_estimator"]) == ("analytic", "mc")
    g, f = gaussian.metrics, flow.metrics
    assert f["kl"] == pytest.approx(g["kl"], rel=0.03)              # MC (100 draws) vs closed form
    assert f["nll"] == pytest.approx(g["nll"], abs=1e-9)            # same draws, same densities
    assert f["nll"] < f["elbo"] - 0.05 and math.isfinite(f["mi"])


# --- the training loss ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mnist_smoke():
    cfg = config("mnist-vlae", "smoke")
    corpus = load_corpus(cfg.data)
    return cfg, corpus, next(iter(corpus.batches("train", 16, shuffle=False)))


def test_training_kl_is_log_q_minus_the_flow_log_prior_at_the_decoders_z(mnist_smoke):
    cfg, corpus, batch = mnist_smoke
    model = build(cfg, corpus)
    with torch.no_grad():                   # a prior away from N(0, I), so the two KLs differ
        for step in model.prior(batch).steps:
            step.made.output.bias.normal_(0, 1.0)
    torch.manual_seed(7)
    terms = model.loss(batch, step=0)
    torch.manual_seed(7)
    posterior = model.posterior(batch)
    z, log_q = posterior.rsample(1)
    rec = -model.log_likelihood(batch, z)[0]
    kl = (log_q - model.prior(batch).log_prob(z))[0]
    torch.testing.assert_close(terms["kl"], kl.mean())
    torch.testing.assert_close(terms["rec"], rec.mean())
    assert not torch.allclose(kl, posterior.kl_per_dim(StandardNormal((cfg.model.latent_size,))).sum(-1))


@pytest.mark.parametrize("variant", ["mnist-vlae", "mnist-iaf", "static-af"])
def test_the_kl_split_over_dimensions_sums_to_the_single_draw_kl(mnist_smoke, variant):
    _, corpus, batch = mnist_smoke
    model = build(config(variant, "smoke"), corpus)
    with torch.no_grad():                   # flows away from the identity, so every term counts
        for module in model.modules():
            if isinstance(module, AFPrior):
                for step in module.steps:
                    step.made.output.bias.normal_(0, 1.0)
    posterior, prior = model.posterior(batch), model.prior(batch)
    torch.manual_seed(3)
    z, kl = sample_kl_dims(posterior, prior)
    assert kl.shape == (batch.size, model.cfg.latent_size)
    if isinstance(prior, AFPrior):
        torch.testing.assert_close(prior.log_prob_per_dim(z).sum(-1), prior.log_prob(z))
    expected = (posterior.log_prob(z) - prior.log_prob(z))[0]
    torch.testing.assert_close(kl.sum(-1), expected, rtol=1e-4, atol=1e-4)


def test_free_bits_floor_each_dimensions_batch_mean_kl_at_its_share_of_784_hundredths(mnist_smoke):
    """Kingma's per-group form with single-dimension groups: lambda = 0.01 x 784 / d per
    dimension, so a KL spread evenly over the dimensions meets the floor at 7.84 nats."""
    cfg, corpus, batch = mnist_smoke
    d = cfg.model.latent_size
    fb = cfg.model.free_bits
    assert FREE_NATS_PER_PIXEL * PIXELS == pytest.approx(7.84)
    assert (fb.variant, fb.group_size) == ("kingma_group_batchmean", 1)
    assert fb.lam == pytest.approx(7.84 / d)
    model = build(cfg, corpus)
    with torch.no_grad():                   # half the dimensions above the floor, half below
        model.encoder.to_gaussian.bias[:d // 2] += 3.0
    torch.manual_seed(0)
    terms = model.loss(batch, step=0)
    torch.manual_seed(0)
    z, kl = sample_kl_dims(model.posterior(batch), model.prior(batch))
    rec = -model.log_likelihood(batch, z)[0]
    batch_mean = kl.mean(0)
    assert (batch_mean < fb.lam).any() and (batch_mean > fb.lam).any()
    torch.testing.assert_close(terms["loss"], rec.mean() + batch_mean.clamp_min(fb.lam).sum())
    torch.testing.assert_close(terms["kl"], kl.sum(-1).mean())      # logged unclamped


def test_pixel_free_bits_floor_each_dimension_at_its_share_on_a_known_kl():
    fb = pixel_free_bits(4)                              # 7.84 nats over 4 dimensions
    assert fb.lam == pytest.approx(1.96)
    kl = torch.tensor([[1.0, 3.0, 0.0, 5.0], [3.0, 1.0, 0.0, 1.0]])   # batch means 2, 2, 0, 3
    assert free_bits_kl(kl, fb).item() == pytest.approx(2.0 + 2.0 + 1.96 + 3.0)
    # The whole-code form the records before per-dimension groups used: one floor on the total.
    whole = dataclasses.replace(fb, lam=7.84, group_size=4)
    assert free_bits_kl(kl, whole).item() == pytest.approx(7.84)
    assert free_bits_kl(kl * 2, whole).item() == pytest.approx(14.0)


def test_tied_pixelcnn_applies_one_masked_layer_five_times():
    tied = PixelCNNDecoder(PixelCNNConfig(tied=True))
    untied = PixelCNNDecoder(PixelCNNConfig())
    assert len(tied.masked) == len(untied.masked) == 5
    assert all(layer is tied.masked[0] for layer in tied.masked)
    count = lambda m: sum(p.numel() for p in m.parameters())          # noqa: E731
    assert count(untied) - count(tied) == 4 * (12 * 12 * 9 + 12)
    assert tied.receptive_field == untied.receptive_field == (7, 13)
    # Still causal: logit (i, j) does not read pixel (i, j) or any later one.
    x = torch.zeros(1, 1, 28, 28, requires_grad=True)
    tied.logits(x, torch.zeros(1, 4, 28, 28))[0, 0, 10, 10].backward()
    grad = x.grad[0, 0]
    assert torch.all(grad[10, 10:] == 0) and torch.all(grad[11:] == 0) and grad[9, 10] != 0


def test_each_image_row_builds_its_decoder_prior_and_posterior(mnist_smoke):
    _, corpus, batch = mnist_smoke
    expected = {"mnist-gauss": (False, StandardNormal, DiagonalGaussian),
                "mnist-af": (False, AFPrior, DiagonalGaussian),
                "mnist-iaf": (False, StandardNormal, IAFPosterior),
                "mnist-local-gauss": (True, StandardNormal, DiagonalGaussian),
                "mnist-vlae": (True, AFPrior, DiagonalGaussian)}
    for variant, (pixelcnn, prior, posterior) in expected.items():
        model = build(config(variant, "smoke"), corpus)
        assert isinstance(model, ImageVLAE)
        assert (model.pixelcnn is not None) == pixelcnn
        assert isinstance(model.prior(batch), prior)
        assert isinstance(model.posterior(batch), posterior)
    assert isinstance(build(config("mnist-unconditional", "smoke"), corpus), PixelCNNLM)


def test_the_pixelcnn_decoder_depends_on_z(mnist_smoke):
    cfg, corpus, batch = mnist_smoke
    model = build(cfg, corpus)
    z = torch.randn(2, batch.size, cfg.model.latent_size)
    log_p = model.log_likelihood(batch, z)
    assert log_p.shape == (2, batch.size) and not torch.allclose(log_p[0], log_p[1])


# --- the text decoders' windows ---------------------------------------------------------------

@pytest.fixture(scope="module")
def ptb_smoke():
    return load_corpus(config("ptb-local4-af", "smoke").data)


def input_sensitivity(decoder, latent: int, length: int, t: int) -> torch.Tensor:
    """|d state_t / d embedded input_s| per input position s, `(length,)`, through the decoder's
    own `hidden_states` (the embedding's output is captured by a hook)."""
    torch.manual_seed(1)
    captured = []

    def keep(module, args, out):
        out.retain_grad()
        captured.append(out)

    handle = decoder.embed.register_forward_hook(keep)
    hidden, _ = decoder.hidden_states(torch.randint(4, 100, (2, length)),
                                      torch.randn(1, 2, latent, dtype=DTYPE))
    handle.remove()
    hidden[:, t].sum().backward()
    return captured[0].grad.abs().sum((0, 2))


@pytest.mark.parametrize("window", sorted(WINDOWS))
def test_local_text_decoder_sees_exactly_the_last_w_tokens(ptb_smoke, window):
    cfg = config(f"ptb-local{window}-af", "smoke")
    model = build(cfg, ptb_smoke).double()
    assert isinstance(model, TextVLAE) and isinstance(model.decoder, DilatedCNNDecoder)
    assert model.decoder.receptive_field == window
    length, t = 20, 15
    seen = input_sensitivity(model.decoder, cfg.model.latent_size, length, t)
    assert (seen[t - window + 1:t + 1] > 0).all(), "a token inside the window is not seen"
    assert (seen[:t - window + 1] == 0).all(), "a token before the window leaks in"
    assert (seen[t + 1:] == 0).all(), "a future token leaks in"


def test_unrestricted_text_decoder_sees_the_whole_history(ptb_smoke):
    cfg = config("ptb-af", "smoke")
    model = build(cfg, ptb_smoke).double()
    seen = input_sensitivity(model.decoder, cfg.model.latent_size, 20, 15)
    assert (seen[:16] > 0).all() and (seen[16:] == 0).all()


def test_the_text_lm_row_is_the_w4_decoder_without_z(ptb_smoke):
    lm = build(config("ptb-local4-lm", "smoke"), ptb_smoke)
    assert isinstance(lm, CNNLM) and not lm.has_latent
    assert lm.decoder.receptive_field == 4 and lm.decoder.in_z is None


def test_qualitative_prior_samples_are_drawn_from_the_af_prior(ptb_smoke, monkeypatch):
    model = build(config("ptb-local4-af", "smoke"), ptb_smoke).eval()
    with torch.no_grad():  # an AF prior at init is near the identity: make it visibly non-Gaussian
        for parameter in model.prior(None).parameters():
            parameter.normal_(0, 0.5)
    decoded = []
    real_decode = generate.decode
    monkeypatch.setattr(generate, "decode", lambda m, z, **kw: decoded.append(z) or real_decode(m, z, **kw))
    generate.qualitative(model, ptb_smoke, num=3, seed=7)
    with torch.no_grad():
        expected = model.prior(None).sample(3, generator=torch.Generator().manual_seed(7))
        gaussian = torch.randn(3, model.cfg.latent_size, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(decoded[0], expected) and not torch.allclose(decoded[0], gaussian, atol=1e-2)


# --- configs against the card -------------------------------------------------------------

IMAGE_ROWS = [v for v, row in ROWS.items() if row.dataset != "ptb"]
TEXT_ROWS = [v for v, row in ROWS.items() if row.dataset == "ptb"]


def test_the_issues_variants_exist_on_every_dataset():
    paper = get_paper(PAPER)
    runnable = {name for name, v in paper.variants.items() if v.runnable}
    assert runnable == set(ROWS)
    kinds = {(row.dataset, row.decoder, row.prior, row.posterior) for row in ROWS.values()}
    for dataset, local, unrestricted in (("mnist", "local", "unrestricted"), ("ptb", "local4", "lstm")):
        factorised = "factorised" if dataset == "mnist" else "lstm"
        assert {(dataset, factorised, "gauss", "gauss"), (dataset, factorised, "af", "gauss"),
                (dataset, factorised, "gauss", "iaf"), (dataset, local, "af", "gauss"),
                (dataset, local, "gauss", "gauss"), (dataset, local, None, "gauss"),
                (dataset, unrestricted, "af", "gauss")} <= kinds
    static = {(decoder, prior, posterior) for dataset, decoder, prior, posterior in kinds
              if dataset == "binarized_mnist"}
    assert static == {("factorised", "gauss", "iaf"), ("factorised", "af", "gauss"),
                      ("local", "af", "gauss")}          # the paper's static-MNIST rows
    for name, variant in paper.variants.items():
        if not variant.runnable:
            assert variant.not_run_reason and not variant.presets and variant.reported


@pytest.mark.parametrize("variant", IMAGE_ROWS)
def test_paper_preset_image_rows_are_the_cards(variant):
    cfg, row = config(variant, "paper"), ROWS[variant]
    assert cfg.data.dataset == row.dataset and not cfg.data.train_on_valid
    assert cfg.eval.iw_samples == 4096
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.polyak) == ("adamax", 0.002, 0.998)
    m = cfg.model
    pixelcnn = m.pixelcnn
    if row.prior is not None:
        # Factorised rows: Kingma's best MNIST model (z 32, 8 x 1920 flow); PixelCNN rows: z 64,
        # a 4 x 640 AF prior.
        kingma = row.decoder == "factorised"
        latent, steps, width = (32, 8, 1920) if kingma else (64, 4, 640)
        assert m.latent_size == latent and m.channels == (16, 32, 32) and m.hidden_size == 450
        assert (m.between_strided, m.shortcut) == (1, "conv")       # the IAF paper's App. B
        assert m.free_bits.variant == "kingma_group_batchmean" and m.free_bits.group_size == 1
        assert m.free_bits.lam * latent == pytest.approx(7.84)
        assert m.kl.kind == "constant" and m.kl.max_weight == 1.0
        assert (m.prior.steps, tuple(m.prior.hidden_sizes), m.prior.scale) == (
            (steps, (width, width), False) if row.prior == "af" else (0, (640, 640), False))
        # The IAF posterior has the AF prior's size: the paper's "equivalent" comparison.
        assert (m.iaf.steps, tuple(m.iaf.hidden_sizes)) == (
            (steps, (width, width)) if row.posterior == "iaf" else (0, tuple(m.iaf.hidden_sizes)))
        if row.posterior == "iaf":
            assert (m.iaf.weight_norm, m.iaf.output_scale) == (True, 0.1)
        assert m.decoder == ("factorised" if kingma else "pixelcnn")
    if row.decoder != "factorised":
        layers = 15 if row.decoder == "unrestricted" else 6
        assert (pixelcnn.filters, pixelcnn.masked_layers, pixelcnn.pointwise_blocks,
                pixelcnn.kernel_size, pixelcnn.tied) == (12, layers, 4, 3, True)
        assert pixelcnn.feature_maps == (0 if row.prior is None else 4)


@pytest.mark.parametrize("variant", TEXT_ROWS)
def test_paper_preset_text_rows_follow_the_cards_adaptation(variant):
    cfg, row = config(variant, "paper"), ROWS[variant]
    assert cfg.data.dataset == "ptb" and cfg.data.substitute_for is None
    m = cfg.model
    window = None if row.decoder == "lstm" else int(row.decoder.removeprefix("local"))
    if window is not None:
        assert 1 + (m.kernel_size - 1) * sum(m.dilations) == window
    if row.prior is None:
        return
    assert m.latent_size == 32 and m.z_mode == "input"
    assert m.decoder == ("lstm" if window is None else "cnn")
    assert m.free_bits.variant == "none"              # the card's "or no free bits", named
    assert (m.prior.steps, m.prior.scale) == ((2, False) if row.prior == "af" else (0, False))
    assert m.iaf.steps == (2 if row.posterior == "iaf" else 0)


# Every field where `cpu` differs from `paper`; presets.py lists each with its reason.
CPU_REDUCTIONS = {
    "image": {"train.epochs", "train.early_stop_patience", "eval.iw_samples", "eval.iw_chunk",
              "eval.max_examples", "model.prior.hidden_sizes", "model.iaf.hidden_sizes"},
    "text": {"train.epochs", "train.early_stop_patience", "eval.iw_samples", "eval.iw_chunk",
             "model.embed_size", "model.encoder_hidden", "model.decoder_hidden",
             "model.hidden_size", "model.bottleneck", "model.kl.warmup_steps"},
}


@pytest.mark.parametrize("variant", list(ROWS))
def test_cpu_differs_from_paper_only_in_the_declared_reductions(variant):
    cpu, paper = flatten(config(variant, "cpu")), flatten(config(variant, "paper"))
    changed = {k for k in paper if cpu[k] != paper[k]} - {"preset"}
    kind = "text" if ROWS[variant].dataset == "ptb" else "image"
    assert changed <= CPU_REDUCTIONS[kind], sorted(changed - CPU_REDUCTIONS[kind])


def test_reported_numbers_are_the_cards():
    paper = get_paper(PAPER)
    values = {(name, metric): (r.value, r.tag)
              for name, v in paper.variants.items() for metric, r in v.reported.items()}
    nll = {"static-iaf": 79.88, "static-af": 79.30, "static-vlae": 79.03, "mnist-iaf": 79.10,
           "mnist-unconditional": 87.55, "mnist-local-gauss": 79.48, "mnist-vlae": 78.53,
           "omniglot-unconditional": 95.02, "omniglot-vlae": 90.98, "omniglot-vlae-finetuned": 89.83,
           "caltech101-unconditional": 89.26, "caltech101-vlae": 77.36}
    expected = {(name, "test/nll"): (value, "verified") for name, value in nll.items()}
    expected.update({("static-vlae", "test/kl"): (13.3, "verified"),
                     ("mnist-local-gauss", "test/kl"): (10.60, "verified"),
                     ("mnist-vlae", "test/kl"): (11.73, "verified"),
                     ("cifar10-resnet-vlae", "test/bits_per_dim"): (3.04, "verified"),
                     ("cifar10-densenet-vlae", "test/bits_per_dim"): (2.95, "verified")})
    assert values == expected
    assert not any(paper.variant(v).reported for v in TEXT_ROWS)   # adaptation: no paper target


# --- smoke reproduction -------------------------------------------------------------------

@pytest.fixture(scope="module")
def cached_corpora():
    """`load_corpus` memoised for the smoke runs (the MNIST bundle is read once, not per row)."""
    cache = {}

    def load(cfg):
        key = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
        if key not in cache:
            cache[key] = load_corpus(cfg)
        return cache[key]
    return load


@pytest.mark.parametrize("variant", list(ROWS))
def test_smoke_reproduction(variant, tmp_path, monkeypatch, cached_corpora):
    monkeypatch.setattr("repro.train.load_corpus", cached_corpora)
    cfg = config(variant, "smoke")
    result = train(cfg, runs_root=tmp_path, records_root=tmp_path / "records", track=False,
                   progress=False)
    metrics, row = result.record["metrics"], ROWS[variant]
    assert result.record_path.is_file() and math.isfinite(metrics["test/nll"])
    if row.prior is None:
        assert result.record["eval"]["nll_estimator"] == "exact"
        return
    assert all(math.isfinite(metrics[f"test/{m}"]) for m in ("elbo", "kl", "mi", "au"))
    flow = row.prior == "af" or row.posterior == "iaf"
    assert result.record["eval"]["kl_estimator"] == ("mc" if flow else "analytic")
    if row.dataset == "ptb":
        samples = json.loads((result.run_dir / "samples.json").read_text())
        assert len(samples["prior_samples_greedy"]) == 5


# --- the claims, on the records of the real (cpu) run ------------------------------------------
# A record still to be run skips its claim; a committed one is required (`COMMITTED`). The cpu
# table is run a few rows per session (results/README.md lists what is left). Every bar below was
# written before its records existed, except where its docstring says otherwise.
COMMITTED = {"mnist-unconditional", "mnist-vlae", "mnist-local-gauss", "mnist-gauss", "mnist-af",
             "static-af", "static-iaf", "mnist-iaf", "static-vlae", "ptb-local4-af",
             "ptb-local4-gauss", "ptb-local4-lm", "ptb-local2-af", "ptb-af", "ptb-local8-af",
             "ptb-gauss", "ptb-iaf", "mnist-unrestricted-af"}


def cpu(variant: str) -> dict:
    return cpu_metrics(PAPER, variant, required=variant in COMMITTED)


def test_real_run_vlae_puts_information_in_z_that_its_local_decoder_cannot_model():
    """The paper's central claim on dynamic MNIST: a PixelCNN of small receptive field with an AF
    prior (VLAE, NLL 78.53, KL 11.73 in the App. D ablation) uses z -- over a nat, several
    active units -- and z buys likelihood that the same decoder alone (the unconditional
    PixelCNN, 87.55) does not reach: the VLAE's IW-NLL, an upper bound, below the PixelCNN's
    exact NLL."""
    vlae, alone = cpu("mnist-vlae"), cpu("mnist-unconditional")
    assert vlae["test/kl"] > 1.0 and vlae["test/au"] >= 2
    assert vlae["test/nll"] < alone["test/nll"]


def test_real_run_local_decoder_keeps_information_in_z_under_either_prior():
    """App. D: with the local PixelCNN the Gaussian prior keeps a lossy code too (KL 10.60) --
    the decoder's short context, not the flow, is what stops the collapse; the AF prior's gain
    over it (78.94 against 79.48) is half a nat, below what one seed per row can tell, so it
    is not asserted."""
    gauss = cpu("mnist-local-gauss")
    assert gauss["test/kl"] > 1.0 and gauss["test/au"] >= 2
    assert gauss["test/nll"] < cpu("mnist-unconditional")["test/nll"]


def test_real_run_af_prior_improves_on_the_standard_normal_prior():
    """Section 3's argument for the AF prior: a learned autoregressive prior lets the posterior
    pay less KL for the same code, so with the same factorised decoder the AF-prior VAE's bound
    and IW-NLL are below the N(0, I)-prior VAE's (the card gives no dynamic-MNIST number for
    either row)."""
    gauss, af = cpu("mnist-gauss"), cpu("mnist-af")
    assert af["test/elbo"] < gauss["test/elbo"] and af["test/nll"] < gauss["test/nll"]


def test_real_run_af_prior_matches_or_beats_the_equivalent_iaf_posterior_on_static_mnist():
    """Section 4.2 (verified): on static MNIST with the factorised decoder, the AF prior (79.30)
    beats the IAF posterior it mirrors (79.88). The paper's gap is 0.58 nats, under what one
    seed per row can resolve, so the bar allows the AF row to be up to half a nat worse; it
    still fails if the AF prior loses clearly. Written before the static-iaf record."""
    af, iaf = cpu("static-af"), cpu("static-iaf")
    assert af["test/nll"] < iaf["test/nll"] + 0.5, (af["test/nll"], iaf["test/nll"])


def test_real_run_vlae_beats_the_factorised_decoder_with_the_same_prior_on_static_mnist():
    """Section 4.2 (verified): on static MNIST the VLAE (79.03) is below the AF-prior VAE with the
    factorised decoder (79.30). Written after the static-vlae record (82.06 against 85.49), so
    its bar is the paper's ordering only, with no margin chosen from our numbers."""
    assert cpu("static-vlae")["test/nll"] < cpu("static-af")["test/nll"]


def test_real_run_unrestricted_pixelcnn_leaves_less_in_z_than_the_local_one():
    """The bits-back argument (Section 2): the more of the image the decoder can model alone,
    the less the optimum puts in z. Under the same AF prior, the unrestricted PixelCNN keeps a
    smaller KL than the local one of the VLAE. Written before the mnist-unrestricted-af record."""
    unrestricted, local = cpu("mnist-unrestricted-af"), cpu("mnist-vlae")
    assert unrestricted["test/kl"] < local["test/kl"], (unrestricted["test/kl"], local["test/kl"])


# PTB (the card's text adaptation, no paper target). Written before any PTB record existed.
def test_real_run_text_vlae_puts_information_in_z_that_its_window_decoder_cannot_model():
    """The card's first text outcome: a decoder that sees only the last 4 tokens leaves the
    sentence-level structure to z, so the AF-prior VAE keeps over a nat and at least two active
    units, and its IW-NLL (an upper bound) is below the exact NLL of the same decoder alone."""
    vlae, alone = cpu("ptb-local4-af"), cpu("ptb-local4-lm")
    assert vlae["test/kl"] > 1.0 and vlae["test/au"] >= 2, (vlae["test/kl"], vlae["test/au"])
    assert vlae["test/nll"] < alone["test/nll"], (vlae["test/nll"], alone["test/nll"])


def test_real_run_text_af_prior_matches_or_beats_the_gaussian_prior_with_a_window_decoder():
    """The card's second text outcome: the AF prior gives a slightly better NLL than N(0, I) with
    the same window-4 decoder. "Slightly" is below what one seed per row resolves, so, as for
    static MNIST, the AF row may be up to half a nat worse; a clear loss fails."""
    af, gauss = cpu("ptb-local4-af"), cpu("ptb-local4-gauss")
    assert af["test/nll"] < gauss["test/nll"] + 0.5, (af["test/nll"], gauss["test/nll"])


def test_real_run_text_window_decoder_keeps_more_in_z_than_the_unrestricted_lstm():
    """The ablation's direction on text: the full-history LSTM decoder can model a sentence
    without z and pays less KL for it than the window-4 decoder, both under the AF prior."""
    assert cpu("ptb-local4-af")["test/kl"] > cpu("ptb-af")["test/kl"]


def test_real_run_text_full_history_decoder_collapses_whatever_the_posterior_or_prior():
    """The bits-back argument on text: the unrestricted LSTM decoder models a sentence without z,
    so neither the AF prior nor the IAF posterior keeps a nat in z there (the window-4 decoder
    keeps 1.68 under the AF prior). Written before the ptb-gauss and ptb-iaf records."""
    for variant in ("ptb-gauss", "ptb-af", "ptb-iaf"):
        assert cpu(variant)["test/kl"] < 1.0, (variant, cpu(variant)["test/kl"])


def test_real_run_text_af_prior_matches_or_beats_the_equivalent_iaf_posterior():
    """Section 4.2 on text: the AF prior against the IAF posterior it mirrors, both with the
    unrestricted LSTM; half a nat of slack for one seed per row, as on static MNIST. Written
    before the ptb-iaf record."""
    af, iaf = cpu("ptb-af"), cpu("ptb-iaf")
    assert af["test/nll"] < iaf["test/nll"] + 0.5, (af["test/nll"], iaf["test/nll"])


def test_real_run_text_kl_falls_as_the_decoder_window_grows():
    """The card's 'smaller w, larger KL' over the window sweep w = 2, 4, 8 (AF prior)."""
    kls = [cpu(f"ptb-local{w}-af")["test/kl"] for w in sorted(WINDOWS)]
    assert kls == sorted(kls, reverse=True), dict(zip(sorted(WINDOWS), kls))


@pytest.mark.parametrize("variant", [v for v, row in ROWS.items() if row.dataset == "binarized_mnist"])
def test_static_mnist_rows_evaluate_the_whole_class_sorted_test_split(variant):
    """A prefix of static MNIST's test split is mostly zeros and ones (it is sorted by class):
    static-af scored 70.47 on the first 2,000 images against the paper's 79.30."""
    assert config(variant, "cpu").eval.max_examples is None

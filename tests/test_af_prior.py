"""The autoregressive-flow prior and the local PixelCNN decoder (repro/nn/priors.py) on small
tensors: log p(z) against the change of variables by autograd, the fresh prior against N(0, I),
sampling as the exact inverse of the density pass, normalisation, and the PixelCNN's causal
window by gradients."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd.functional import jacobian

from repro.nn.distributions import StandardNormal
from repro.nn.pixelcnn import MaskedConv2d, PixelCNNConfig, PixelCNNDecoder
from repro.nn.priors import AFPrior, AFPriorConfig, make_prior

DTYPE = torch.float64


def randomised_prior(d=4, steps=3, scale=False, weight_scale=0.5, seed=0) -> AFPrior:
    """A prior whose steps have random non-zero outputs (a fresh one is the identity), so the
    flow is genuinely nonlinear; the MADE's own masks keep it autoregressive."""
    torch.manual_seed(seed)
    prior = AFPrior(d, steps, (16, 16), scale).to(DTYPE)
    with torch.no_grad():
        for step in prior.steps:
            step.made.output.weight.normal_(0, weight_scale)
            step.made.output.bias.normal_(0, weight_scale)
    return prior


@pytest.mark.parametrize("scale", [False, True])
def test_log_prob_is_the_change_of_variables_density_by_autograd(scale):
    prior = randomised_prior(scale=scale)
    z = torch.randn(6, 4, dtype=DTYPE, generator=torch.Generator().manual_seed(1))
    log_dets = []
    for z_k, log_p in zip(z, prior.log_prob(z)):
        eps = prior.to_noise(z_k)[0]
        jac = jacobian(lambda v: prior.to_noise(v)[0], z_k)            # (d, d)
        log_dets.append(torch.linalg.slogdet(jac).logabsdet)
        torch.testing.assert_close(log_p, StandardNormal((4,)).log_prob(eps) + log_dets[-1])
    log_dets = torch.stack(log_dets)
    if scale:                          # the determinant term is exercised, not zero by accident
        assert log_dets.abs().max() > 0.1
    else:                              # mean-only: the flow preserves volume (the paper's prior)
        torch.testing.assert_close(log_dets, torch.zeros_like(log_dets))


def test_log_prob_keeps_the_sample_and_batch_axes():
    prior = randomised_prior()
    z = torch.randn(3, 5, 4, dtype=DTYPE)
    log_p = prior.log_prob(z)
    assert log_p.shape == (3, 5)
    torch.testing.assert_close(log_p[2, 4], prior.log_prob(z[2, 4]))


def test_a_fresh_prior_is_exactly_the_standard_normal():
    torch.manual_seed(0)
    prior = AFPrior(5, 4, (32, 32))
    z = torch.randn(7, 3, 5) * 3
    assert torch.equal(prior.log_prob(z), StandardNormal((5,)).log_prob(z))
    assert isinstance(make_prior(AFPriorConfig(steps=0), 5), StandardNormal)
    assert isinstance(make_prior(AFPriorConfig(steps=2), 5), AFPrior)


@pytest.mark.parametrize("scale", [False, True])
def test_sample_inverts_the_density_pass(scale):
    # Strong weights, so a sampler that stopped short of d sweeps a step would be visibly off
    # (weaker with a scale, whose exp(s) products would otherwise make the inverse ill-conditioned).
    prior = randomised_prior(d=6, steps=4, scale=scale, weight_scale=0.5 if scale else 1.0)
    noise = torch.randn(50, 6, generator=torch.Generator().manual_seed(3)).to(DTYPE)
    # The sampler draws its noise on the CPU from the generator, in float32, then converts.
    z = prior.sample(50, generator=torch.Generator().manual_seed(3))
    eps, _ = prior.to_noise(z.to(DTYPE))
    torch.testing.assert_close(eps, noise, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(z.to(DTYPE), noise, atol=1e-2)    # the flow did move the samples


def test_the_density_is_normalised_in_two_dimensions():
    prior = randomised_prior(d=2, steps=2, scale=True, weight_scale=0.3)
    axis = torch.linspace(-9, 9, 361, dtype=DTYPE)
    grid = torch.cartesian_prod(axis, axis)
    mass = prior.log_prob(grid).exp().sum() * (axis[1] - axis[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=5e-3)


def test_steps_alternate_their_autoregressive_order():
    prior = AFPrior(4, 3, (8, 8))
    orders = [step.made.order.tolist() for step in prior.steps]
    assert orders == [[1, 2, 3, 4], [4, 3, 2, 1], [1, 2, 3, 4]]
    assert all(step.made.activation is F.relu for step in prior.steps)


def test_a_prior_without_steps_is_refused():
    with pytest.raises(ValueError, match="steps"):
        AFPrior(4, 0, (8,))


# --- the local PixelCNN decoder ------------------------------------------------------------

def small_pixelcnn(masked_layers=3, feature_maps=2, seed=0) -> PixelCNNDecoder:
    torch.manual_seed(seed)
    cfg = PixelCNNConfig(feature_maps=feature_maps, filters=6, masked_layers=masked_layers,
                         pointwise_blocks=2)
    return PixelCNNDecoder(cfg).to(DTYPE).eval()


def pixel_sensitivity(decoder, i: int, j: int, side: int = 16):
    """|d logit(i, j) / d x| per pixel `(side, side)`, and the same for the features."""
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, side, side, generator=gen, dtype=DTYPE).requires_grad_()
    features = None
    if decoder.condition is not None:
        features = torch.randn(1, decoder.condition.in_channels, side, side, generator=gen,
                               dtype=DTYPE).requires_grad_()
    decoder.logits(x, features)[0, 0, i, j].backward()
    return x.grad[0, 0].abs(), (None if features is None else features.grad.abs().sum((0, 1)))


def window_mask(i: int, j: int, window: int, side: int = 16) -> torch.Tensor:
    """Pixels the logit at (i, j) may read: earlier in raster order, at most `window` rows up
    and `window` columns aside."""
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    before = (rows < i) | ((rows == i) & (cols < j))
    return before & (i - rows <= window) & ((cols - j).abs() <= window)


@pytest.mark.parametrize("masked_layers", [1, 3, 6])
def test_pixel_logit_reads_only_earlier_pixels_inside_its_window(masked_layers):
    decoder = small_pixelcnn(masked_layers)
    window = masked_layers
    assert decoder.receptive_field == (window + 1, 2 * window + 1)
    i, j = 10, 7
    sensitivity, _ = pixel_sensitivity(decoder, i, j)
    allowed = window_mask(i, j, window)
    assert (sensitivity[~allowed] == 0).all(), "a pixel outside the causal window leaks in"
    assert sensitivity[i, j] == 0, "the pixel predicts itself"
    # The window is reached at its edges: left, up, and up-left (not only near the pixel).
    for pixel in [(i, j - 1), (i, j - window), (i - 1, j), (i - window, j), (i - window, j - window)]:
        assert sensitivity[pixel] > 0, f"pixel {pixel} inside the window is not seen"


def test_the_feature_map_of_z_is_read_unmasked():
    decoder = small_pixelcnn(masked_layers=2)
    _, feature_sensitivity = pixel_sensitivity(decoder, 8, 8)
    # The feature map is a function of z, so the pixel may read it below and to the right too.
    assert feature_sensitivity[9, 9] > 0 and feature_sensitivity[8, 8] > 0


def test_the_card_decoder_sees_six_rows_up_and_six_columns_aside():
    decoder = PixelCNNDecoder(PixelCNNConfig())
    assert decoder.receptive_field == (7, 13)
    assert len(decoder.masked) + 1 == 6 and len(decoder.pointwise) == 4


def test_mask_a_excludes_the_centre_and_mask_b_keeps_it():
    a, b = MaskedConv2d(1, 1, 3, "A").mask, MaskedConv2d(1, 1, 3, "B").mask
    assert a.tolist() == [[1, 1, 1], [1, 0, 0], [0, 0, 0]]
    assert b.tolist() == [[1, 1, 1], [1, 1, 0], [0, 0, 0]]


def test_log_likelihood_scores_every_sample_of_z_against_its_image():
    decoder = small_pixelcnn(masked_layers=2)
    x = (torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) < 0.5).to(DTYPE)
    features = torch.randn(2 * 3, 2, 8, 8, dtype=DTYPE)               # n = 2 samples of z
    log_p = decoder.log_likelihood(x, features)
    assert log_p.shape == (2, 3)
    logits = decoder.logits(x[1:2], features[4:5])                    # sample 1, image 1
    expected = -F.binary_cross_entropy_with_logits(logits, x[1:2], reduction="sum")
    torch.testing.assert_close(log_p[1, 1], expected)
    assert (log_p < 0).all() and math.isfinite(log_p.sum().item())

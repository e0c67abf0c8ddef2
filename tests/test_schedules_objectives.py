import math
from types import SimpleNamespace

import pytest
import torch

from repro.config import FreeBitsConfig, KLScheduleConfig
from repro.data.noise import word_dropout
from repro.model import LatentVariableModel
from repro.nn.distributions import DiagonalGaussian, StandardNormal
from repro.objectives import elbo_loss, free_bits_kl
from repro.schedules import LinearRate, kl_weight


def test_constant_and_linear_schedules():
    assert kl_weight(0, KLScheduleConfig()) == 1.0
    lin = KLScheduleConfig(kind="linear", warmup_steps=100, max_weight=0.8)
    assert kl_weight(0, lin) == 0.0
    assert kl_weight(50, lin) == pytest.approx(0.4)
    assert kl_weight(100, lin) == pytest.approx(0.8) and kl_weight(10_000, lin) == pytest.approx(0.8)


def test_logistic_schedule_is_bowmans_sigmoid():
    cfg = KLScheduleConfig(kind="logistic", logistic_k=0.0025, logistic_x0=2500)
    assert kl_weight(2500, cfg) == pytest.approx(0.5)
    assert kl_weight(0, cfg) == pytest.approx(1 / (1 + math.exp(6.25)))
    assert kl_weight(10_000, cfg) > 0.999
    values = [kl_weight(s, cfg) for s in range(0, 6000, 500)]
    assert values == sorted(values)


def test_linear_rate_schedule_adds_its_slope_each_update_up_to_the_max():
    cfg = LinearRate(start_weight=0.2, weight_per_step=5e-5)
    assert kl_weight(0, cfg) == 0.2
    assert kl_weight(8_000, cfg) == min(1.0, 0.2 + 5e-5 * 8_000)      # the code's arithmetic
    assert kl_weight(16_000, cfg) == pytest.approx(1.0) and kl_weight(10**6, cfg) == 1.0
    assert kl_weight(10**6, LinearRate(start_weight=0.0, weight_per_step=1.0, max_weight=0.5)) == 0.5


def test_cyclical_schedule_restarts_each_period():
    cfg = KLScheduleConfig(kind="cyclical", cycle_steps=100, cycle_ramp=0.5)
    assert kl_weight(0, cfg) == 0.0
    assert kl_weight(25, cfg) == pytest.approx(0.5)
    assert kl_weight(50, cfg) == 1.0 and kl_weight(99, cfg) == 1.0
    assert kl_weight(100, cfg) == 0.0 and kl_weight(125, cfg) == pytest.approx(0.5)


def test_word_dropout_rate_and_protected_tokens():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(4, 1000, (200, 50))
    tokens[:, 0], tokens[:, -1], tokens[:5, -5:] = 2, 3, 0
    out = word_dropout(tokens, keep_rate=0.7, unk_id=1, protected_ids=(0, 2, 3), generator=gen)
    words = (tokens >= 4)
    dropped = (out == 1) & words
    assert dropped.sum() / words.sum() == pytest.approx(0.3, abs=0.01)
    assert torch.equal(out[~words], tokens[~words])           # <bos>/<eos>/<pad> untouched
    assert torch.equal(out[words & ~dropped], tokens[words & ~dropped])
    assert torch.equal(word_dropout(tokens, 1.0, 1, (0, 2, 3)), tokens)
    inputless = word_dropout(tokens, 0.0, 1, (0, 2, 3))
    assert (inputless[words] == 1).all()


def _kl_dims():
    # 4 examples x 2 dims; dim 0 carries information, dim 1 almost none.
    return torch.tensor([[2.0, 0.01], [1.0, 0.02], [0.0, 0.03], [1.0, 0.0]])


def test_free_bits_variants_by_name():
    kl = _kl_dims()
    assert free_bits_kl(kl, FreeBitsConfig()) == pytest.approx(kl.sum(1).mean())
    # Kingma: batch-mean per group (1.0, 0.015), each floored at 0.5.
    kingma = free_bits_kl(kl, FreeBitsConfig("kingma_group_batchmean", lam=0.5))
    assert kingma == pytest.approx(1.0 + 0.5)
    grouped = free_bits_kl(kl, FreeBitsConfig("kingma_group_batchmean", lam=0.5, group_size=2))
    assert grouped == pytest.approx(1.015)
    # Li fb=1: examples whose total KL < 1.02 are masked (example 3 with 0.03; example 4 with 1.0).
    assert free_bits_kl(kl, FreeBitsConfig("li_example_total", lam=1.02)) == pytest.approx((2.01 + 1.02) / 4)
    # Li fb=2: per example and dimension, mask entries below 0.015.
    assert free_bits_kl(kl, FreeBitsConfig("li_example_dim", lam=0.015)) == pytest.approx((2 + 1.02 + 0.03 + 1) / 4)
    # Li fb=3: the whole term disappears when the batch mean is below target.
    assert free_bits_kl(kl, FreeBitsConfig("li_batchmean", lam=10.0)) == 0.0


def test_free_bits_floor_has_no_gradient_below_lambda():
    kl = _kl_dims().requires_grad_()
    free_bits_kl(kl, FreeBitsConfig("kingma_group_batchmean", lam=0.5)).backward()
    assert torch.all(kl.grad[:, 1] == 0) and torch.all(kl.grad[:, 0] == 0.25)


def test_elbo_loss_reports_unclamped_kl():
    rec = torch.tensor([10.0, 12.0, 11.0, 9.0])
    terms = elbo_loss(rec, _kl_dims(), kl_weight=0.5, free_bits=FreeBitsConfig("kingma_group_batchmean", lam=0.5))
    assert terms["kl"] == pytest.approx(_kl_dims().sum(1).mean())
    assert terms["loss"] == pytest.approx(10.5 + 0.5 * 1.5)
    assert terms["elbo"] == pytest.approx(-(10.5 + _kl_dims().sum(1).mean()))


class TinyGaussianModel(LatentVariableModel):
    """Known pieces: q(z|x) = N(mu, diag exp(logvar)) with fixed parameters, p(z) = N(0, I),
    log p(x|z) = -|x - z|^2 / 2, two examples of two dimensions."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.mu = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
        self.logvar = torch.tensor([[0.0, -1.0], [0.5, 0.2]])
        self.x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])

    def posterior(self, batch):
        return DiagonalGaussian(self.mu, self.logvar)

    def prior(self, batch):
        return StandardNormal((2,))

    def log_likelihood(self, batch, z):
        return -0.5 * (self.x - z).pow(2).sum(-1)


def test_default_loss_is_the_single_sample_elbo_under_the_configs_schedule_and_free_bits():
    schedule = KLScheduleConfig(kind="linear", warmup_steps=100)          # weight 0.25 at step 25
    model = TinyGaussianModel(SimpleNamespace(kl=schedule,
                                              free_bits=FreeBitsConfig("li_example_total", lam=1.0)))
    torch.manual_seed(0)
    terms = model.loss(batch=None, step=25)
    torch.manual_seed(0)                                                 # the same draw by hand
    z = model.mu + torch.exp(0.5 * model.logvar) * torch.randn(1, 2, 2)[0]
    rec = 0.5 * (model.x - z).pow(2).sum(-1)
    kl = 0.5 * (model.mu.pow(2) + model.logvar.exp() - model.logvar - 1).sum(-1)
    assert (kl < 1.0).tolist() == [True, False]                          # free bits drop example 0
    assert float(terms["kl_weight"]) == 0.25
    torch.testing.assert_close(terms["rec"], rec.mean())
    torch.testing.assert_close(terms["kl"], kl.mean())                   # reported unclamped
    torch.testing.assert_close(terms["elbo"], -(rec + kl).mean())
    torch.testing.assert_close(terms["loss"], rec.mean() + 0.25 * (kl * (kl >= 1.0)).mean())
    # A model config without a free-bits rule trains on the plain ELBO.
    model.cfg = SimpleNamespace(kl=schedule)
    torch.manual_seed(0)
    torch.testing.assert_close(model.loss(batch=None, step=25)["loss"], rec.mean() + 0.25 * kl.mean())

"""Shen et al. 2018 (papers/shen2018_aux_ae): the two-phase schedule (the switch step, which
parameters learn in each phase), the phase-2 matching term against a hand computation, the
model interface (IW-NLL finite, analytic KL between q and p), the variants' configs against the
paper card, a smoke reproduction of every variant, and the paper's claim (the plain VED
collapses, the two-phase model keeps information in z) on the committed cpu records."""
import json
import math

import pytest
import torch

from papers.shen2018_aux_ae.model import AuxAutoencoderVED, DialogVED, build, code_nll, updates_per_epoch
from papers.shen2018_aux_ae.presets import MODELS
from repro import schedules
from repro.config import ConfigError, KLScheduleConfig
from repro.data import load_corpus
from repro.evaluate import evaluate
from repro.nn.distributions import LOG_2PI, DiagonalGaussian
from repro.registry import get_paper, resolve
from repro.train import build_optimizer, train

from helpers_records import cpu_metrics

PAPER = "shen2018_aux_ae"
VARIANTS = ["ved", "ved-kl-anneal", "aux-ae-two-phase"]
TWO_PHASE = "aux-ae-two-phase"


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


# --- configs against the card ----------------------------------------------------------------

def test_one_variant_per_row_of_the_issue():
    assert list(get_paper(PAPER).variants) == VARIANTS == list(MODELS)


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_data_is_the_cards_suite_default_on_dailydialog(preset):
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
                       TWO_PHASE: [1.0, 1.0, 1.0]}
    assert config("ved-kl-anneal", "cpu").model.kl.warmup_steps == 3_700
    for variant in VARIANTS:
        m = config(variant, "paper").model
        assert (m.embed_size, m.utterance_hidden, m.context_hidden, m.decoder_hidden,
                m.latent_size, m.prior_hidden) == (200, 300, 600, 400, 200, 400)
        assert hasattr(m, "autoencoder_epochs") == (variant == TWO_PHASE)
    two_phase = config(TWO_PHASE, "paper")
    assert (two_phase.model.code_size, two_phase.model.regulariser) == (200, "gaussian_kl")
    assert (two_phase.model.autoencoder_epochs, two_phase.train.epochs) == (10, 30)
    cpu = config(TWO_PHASE, "cpu")
    assert (cpu.model.autoencoder_epochs, cpu.train.epochs, config("ved", "cpu").train.epochs) == (3, 8, 5)
    for preset in ("cpu", "paper"):
        cfg = config(TWO_PHASE, preset)
        assert (cfg.optim.name, cfg.optim.lr, cfg.train.early_stop_patience) == ("adam", 1e-3, None)
        assert cfg.model.dialog_eval.num_samples == 10


def test_no_paper_number_is_claimed():
    paper = get_paper(PAPER)
    reported = [r for v in paper.variants.values() for r in v.reported.values()]
    assert reported and all(r.value is None and r.tag == "not retrieved" for r in reported)
    assert all(set(v.reported) == set(paper.table_metrics) for v in paper.variants.values())


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


def test_each_phase_trains_only_its_own_parameters(corpus, batch):
    cfg = config(TWO_PHASE)
    model = make(TWO_PHASE, corpus)
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


def test_phase_two_loss_is_match_plus_kl_between_q_and_p(corpus, batch):
    model = make(TWO_PHASE, corpus)
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


# --- the model interface ---------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_interface_gives_finite_iw_nll_and_the_analytic_kl(variant, corpus, batch):
    model = make(variant, corpus)
    q, p = model.posterior(batch), model.prior(batch)
    assert isinstance(q, DiagonalGaussian) and isinstance(p, DiagonalGaussian)
    torch.testing.assert_close(model.kl(batch), closed_form_kl(q, p))
    result = evaluate(model, [batch], iw_samples=8, iw_chunk=4)
    assert result.options["kl_estimator"] == "analytic" and result.options["nll_estimator"] == "iw"
    assert all(math.isfinite(result.metrics[m]) for m in ("nll", "ppl", "elbo", "kl", "mi", "au"))
    torch.testing.assert_close(result.metrics["kl"], model.kl(batch).mean().item(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("variant", VARIANTS)
def test_prior_reads_only_the_context_and_posterior_the_response(variant, corpus, batch):
    model = make(variant, corpus).eval()
    other = with_response(batch, torch.where(batch.response > 3, 4, batch.response))
    torch.testing.assert_close(model.prior(other).mu, model.prior(batch).mu)
    assert not torch.allclose(model.posterior(other).mu, model.posterior(batch).mu)


def test_two_phase_likelihood_is_the_phase_one_decoder_fed_the_generated_code(corpus, batch):
    model = make(TWO_PHASE, corpus).eval()
    assert isinstance(model, AuxAutoencoderVED) and isinstance(make("ved", corpus), DialogVED)
    z, _ = model.posterior(batch).rsample(3)
    c = model.ved.latent.context(batch)
    code = model.ved.generator(torch.cat([c.expand(3, *c.shape), z], -1))
    direct = model.autoencoder.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask, code)
    torch.testing.assert_close(model.log_likelihood(batch, z), direct)
    assert model.decoder is model.autoencoder.decoder           # what generation drives


@pytest.mark.parametrize("variant", ["ved", TWO_PHASE])
def test_responses_follow_the_prior_sample(variant, corpus, batch):
    model = make(variant, corpus).eval()
    with torch.no_grad():
        prior_net = (model.latent if variant == "ved" else model.ved.latent).prior_net
        prior_net.net[-1].bias[4:] = 4.0             # wide prior: different z, different decodes
    rows = model.sample_responses(batch, 4, max_len=6, generator=torch.Generator().manual_seed(0)).tokens
    assert len(rows) == batch.size and all(len(row) == 4 for row in rows)
    assert any(len({tuple(s) for s in row}) > 1 for row in rows)


def test_switchboard_valid_and_test_load_and_are_scored():
    # Only SwDA's valid and test splits are stored here (`paper-swda` needs `repro data fetch
    # swda` to train); a model built on them must still evaluate: no train split, no phase 1.
    cfg = config(TWO_PHASE)
    cfg.data = config(TWO_PHASE, "paper-swda").data
    swda = load_corpus(cfg.data)
    assert {"valid", "test"} <= set(swda.splits)
    model = build(cfg, swda)
    assert model.autoencoder_steps == cfg.model.autoencoder_epochs * updates_per_epoch(cfg, swda)
    batches = [next(iter(swda.batches("test", 8, shuffle=False)))]
    result = evaluate(model, batches, iw_samples=4, iw_chunk=2)
    assert all(math.isfinite(result.metrics[m]) for m in ("nll", "elbo", "kl"))


# --- smoke reproduction ----------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_smoke_reproduction(variant, tmp_path):
    cfg = config(variant)
    result = train(cfg, runs_root=tmp_path, records_root=tmp_path / "records", track=False, progress=False)
    record = result.record
    assert result.record_path.is_file() and record["dataset"] == "dailydialog"
    names = ("nll", "ppl", "elbo", "kl", "mi", "au")
    assert all(math.isfinite(record["metrics"][f"test/{n}"]) for n in names)
    assert (record["eval"]["nll_estimator"], record["eval"]["kl_estimator"]) == ("iw", "analytic")
    trained = [set(k for k in epoch if k.startswith("train/")) for epoch in result.history]
    if variant == TWO_PHASE:
        # One epoch per phase: the switch falls on the epoch boundary, never mid-epoch.
        assert len(trained) == 2
        assert "train/rec" in trained[0] and "train/match" not in trained[0]
        assert {"train/match", "train/kl", "train/code_elbo"} <= trained[1] and "train/rec" not in trained[1]
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

def test_real_run_plain_ved_collapses_and_the_auxiliary_autoencoder_keeps_z_informative():
    ved, aux = cpu_metrics(PAPER, "ved"), cpu_metrics(PAPER, TWO_PHASE)
    assert ved["test/kl"] < 0.5 and ved["test/au"] == 0 and ved["test/mi"] < 0.5
    assert aux["test/kl"] > 5.0 and aux["test/mi"] > ved["test/mi"] + 2.0
    assert aux["test/au"] > ved["test/au"]


def test_real_run_kl_annealing_alone_does_not_keep_z_informative_here():
    """Annealed to weight 1 over 3,700 updates, the VED's KL still falls to ~0 by the end: the
    auxiliary autoencoder, not the schedule, is what keeps information in z in this run."""
    anneal, aux = cpu_metrics(PAPER, "ved-kl-anneal"), cpu_metrics(PAPER, TWO_PHASE)
    assert anneal["test/kl"] < 0.5 and aux["test/kl"] > anneal["test/kl"] + 5.0
    assert aux["test/mi"] > anneal["test/mi"] + 2.0


def test_real_run_two_phase_samples_are_more_diverse_and_cover_the_reference_better():
    """The paper's case for the auxiliary autoencoder is generation (card: the objective should
    match generation), so its sampled responses, not its likelihood, should improve."""
    ved, aux = cpu_metrics(PAPER, "ved"), cpu_metrics(PAPER, TWO_PHASE)
    for name in ("distinct_2_n10", "bleu_zhao_rec_1_n10_ref1", "bleu_zhao_prec_1_n10_ref1"):
        assert aux[f"test/{name}"] > ved[f"test/{name}"], name

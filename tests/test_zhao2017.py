"""Zhao et al. 2017 (papers/zhao2017_kgcvae): the CVAE's mechanism on a real DailyDialog batch
(the loss terms, the closed-form KL between recognition and prior networks, a prior that reads
only the context, kgCVAE's act predictor and the act the decoder reads), the variants' configs
against the paper card, the reported numbers, and a smoke reproduction of every variant. The
paper's qualitative claims (BoW keeps the KL up, kgCVAE beats CVAE) are checked on the cpu
records, not here."""
import json
import math

import pytest
import torch

from papers.zhao2017_kgcvae.model import (DialogCVAE, EncoderDecoder, act_nll, build)
from papers.zhao2017_kgcvae.presets import MODELS
from repro import schedules
from repro.data import load_corpus
from repro.data.dialog import UNKNOWN_LABEL
from repro.dialog_models import bag_of_words_log_likelihood
from repro.registry import get_paper, resolve
from repro.train import train

from helpers_records import cpu_metrics

PAPER = "zhao2017_kgcvae"
VARIANTS = ["baseline", "cvae", "cvae-bow", "kgcvae"]


def config(variant, preset):
    return resolve(PAPER, variant, preset)[1]


@pytest.fixture(scope="module")
def corpus():
    return load_corpus(config("kgcvae", "smoke").data)


@pytest.fixture()
def batch(corpus):
    # valid, unshuffled: short responses first; 12 examples with 1-10 context turns
    return next(iter(corpus.batches("valid", 12, shuffle=False)))


def make(variant, corpus, seed=0, **changes):
    torch.manual_seed(seed)
    cfg = config(variant, "smoke")
    for key, value in changes.items():
        setattr(cfg.model, key, value)
    return build(cfg, corpus)


def with_acts(batch, acts):
    labels = {**batch.labels, "act": torch.as_tensor(acts).expand(batch.size).clone()}
    return type(batch)(**{**batch.__dict__, "labels": labels})


def with_response(batch, response):
    return type(batch)(**{**batch.__dict__, "response": response})


# --- configs against the card ----------------------------------------------------------------

def test_one_variant_per_row():
    assert list(get_paper(PAPER).variants) == VARIANTS == list(MODELS)


def test_paper_preset_is_the_released_code_configuration():
    for variant in VARIANTS:
        cfg = config(variant, "paper")
        m = cfg.model
        assert (m.embed_size, m.utterance_hidden, m.context_hidden, m.decoder_hidden) == (200, 300, 600, 400)
        assert m.topic_embed_size == 30 and m.init_scale == 0.08
        assert (cfg.data.dataset, cfg.data.substitute_for) == ("swda", None)
        assert (cfg.data.max_vocab, cfg.data.max_length, cfg.data.max_context) == (10_000, 40, 10)
        assert (cfg.data.batch_size, cfg.data.eval_batch_size) == (30, 60)
        assert (cfg.optim.name, cfg.optim.lr, cfg.optim.grad_clip) == ("adam", 1e-3, 5.0)
        assert cfg.train.max_steps == 60 * 3_000
        assert m.dialog_eval.num_samples == 10 and m.dialog_eval.max_examples is None
        if variant == "baseline":
            continue
        assert (m.latent_size, m.prior_hidden, m.bow_hidden) == (200, max(2 * 200, 100), 400)
        assert (m.act_embed_size, m.act_feature_size, m.act_hidden) == (30, 30, 400)
        weights = [schedules.kl_weight(step, m.kl) for step in (0, 5_000, 10_000, 50_000)]
        assert weights == [0.0, 0.5, 1.0, 1.0]                  # min(step / 10,000, 1)


def test_variants_differ_only_in_bow_and_knowledge_guidance():
    flags = {v: (m.bag_of_words, m.knowledge_guided) for v, m in MODELS.items() if v != "baseline"}
    assert flags == {"cvae": (False, False), "cvae-bow": (True, False), "kgcvae": (True, True)}
    assert not hasattr(MODELS["baseline"], "latent_size")


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_substitute_presets_declare_dailydialog_for_swda(preset):
    for variant in VARIANTS:
        cfg = config(variant, preset)
        assert (cfg.data.dataset, cfg.data.substitute_for) == ("dailydialog", "swda")
        assert cfg.model.topic_embed_size == 0
    cpu = config("kgcvae", "cpu")
    assert cpu.model.kl.warmup_steps == 3_700 and cpu.train.epochs == 5
    assert (cpu.data.batch_size, cpu.data.max_length, cpu.data.max_vocab) == (30, 40, 10_000)
    assert cpu.model.dialog_eval.num_samples == 10 and cpu.eval.iw_samples == 100


def test_the_shared_swda_data_scores_one_reference_per_context_only():
    """What the staged Switchboard data can be scored against: its test split's 5,481 contexts
    (5,543 turns less each of the 62 dialogs' first), each with its one next turn; there is no
    train split and no multi-reference file, so the paper's multi-reference BLEU cannot be
    computed here, and the BLEU columns are named `_ref1`."""
    from repro.config import DataConfig
    swda = load_corpus(DataConfig(dataset="swda"))
    assert sorted(swda.splits) == ["test", "valid"]
    assert len(swda.split("test")) == 5_481
    assert all(name.endswith("_n10_ref1") for name in get_paper(PAPER).table_metrics if "bleu_zhao" in name)


def test_reported_numbers_are_the_cards():
    paper = get_paper(PAPER)
    base = paper.variant("baseline").reported
    assert (base["test/ppl"].value, base["test/ppl"].tag) == (35.4, "unverified (reprint)")
    bleu = {k: r.value for k, r in base.items() if "bleu" in k}
    assert bleu == {"test/bleu_zhao_rec_1_n10_ref1": 0.405, "test/bleu_zhao_prec_1_n10_ref1": 0.336,
                    "test/bleu_zhao_rec_2_n10_ref1": 0.300, "test/bleu_zhao_prec_2_n10_ref1": 0.281,
                    "test/bleu_zhao_rec_3_n10_ref1": 0.272, "test/bleu_zhao_prec_3_n10_ref1": 0.254,
                    "test/bleu_zhao_rec_4_n10_ref1": 0.226, "test/bleu_zhao_prec_4_n10_ref1": 0.215}
    cvae, kg = paper.variant("cvae-bow").reported, paper.variant("kgcvae").reported
    assert (cvae["test/rc_ppl_posterior"].value, cvae["test/kl"].value) == (20.2, 11.36)
    assert (kg["test/rc_ppl_posterior"].value, kg["test/kl"].value) == (16.02, 13.08)
    assert paper.variant("cvae").reported["test/kl"].value == 2.02
    tags = {r.tag for v in paper.variants.values() for r in v.reported.values()}
    assert tags == {"unverified (reprint)", "unverified (memory)"}
    assert set(k for v in paper.variants.values() for k in v.reported) <= set(paper.table_metrics)


# --- the mechanism ---------------------------------------------------------------------------

def test_build_gives_each_row_its_model(corpus):
    baseline = make("baseline", corpus)
    assert isinstance(baseline, EncoderDecoder) and not baseline.has_latent
    cvae, bow, kg = (make(v, corpus) for v in ("cvae", "cvae-bow", "kgcvae"))
    assert all(isinstance(m, DialogCVAE) and m.has_latent for m in (cvae, bow, kg))
    assert cvae.bow is None and bow.bow is not None and not hasattr(bow, "act_classifier")
    assert kg.act_classifier[-1].out_features == len(corpus.label_names["act"]) == 4
    # The decoder shares the encoders' word embedding, whose padding row is zero.
    assert kg.decoder.embed is kg.context.embedding and not kg.context.embedding.weight[0].any()


@pytest.mark.parametrize("variant", ["cvae", "cvae-bow", "kgcvae"])
def test_loss_is_rec_plus_weighted_kl_plus_bow_plus_act(variant, corpus, batch):
    model = make(variant, corpus)
    torch.manual_seed(1)
    terms = model.loss(batch, step=5)
    expected = {"loss", "rec", "kl", "elbo", "kl_weight"} | ({"bow"} if variant != "cvae" else set()) \
        | ({"act"} if variant == "kgcvae" else set())
    assert set(terms) == expected
    assert float(terms["kl_weight"]) == pytest.approx(0.5)         # smoke warm-up: 10 updates
    total = terms["rec"] + terms["kl_weight"] * terms["kl"] + terms.get("bow", 0) + terms.get("act", 0)
    torch.testing.assert_close(terms["loss"], total)


def _same_z(model, batch, seed):
    """The z `model.loss` draws after `torch.manual_seed(seed)`, and c."""
    torch.manual_seed(seed)
    c = model.context(batch)
    z, _ = model._posterior(batch, c).rsample(1)
    return c, z


def test_bow_term_scores_one_softmax_from_c_and_z_against_every_target(corpus, batch):
    model = make("cvae-bow", corpus)
    torch.manual_seed(1)
    terms = model.loss(batch, step=0)
    c, z = _same_z(model, batch, 1)
    logits = model.bow.net(torch.cat([c, z[0]], -1))
    expected = -bag_of_words_log_likelihood(logits, batch.targets, batch.target_mask).mean()
    torch.testing.assert_close(terms["bow"], expected)


def test_kl_term_is_the_closed_form_between_recognition_and_prior(corpus, batch):
    model = make("kgcvae", corpus)
    q, p = model.posterior(batch), model.prior(batch)
    closed = 0.5 * (p.logvar - q.logvar + (q.logvar.exp() + (q.mu - p.mu) ** 2) / p.logvar.exp() - 1)
    torch.testing.assert_close(model.loss(batch, step=0)["kl"], closed.sum(-1).mean())
    torch.testing.assert_close(model.kl(batch), closed.sum(-1))    # what the evaluation reports


def test_prior_reads_only_the_context(corpus, batch):
    model = make("cvae-bow", corpus)
    # Every response word becomes one the context never uses: its embedding row is reached
    # through the response alone.
    fresh = min(set(range(4, len(corpus.vocab))) - set(batch.context.unique().tolist()))
    batch = with_response(batch, torch.where(batch.response > 3, fresh, batch.response))
    row = model.context.embedding.weight

    def fresh_grad(value):
        model.zero_grad(set_to_none=False)
        value.backward()
        return row.grad[fresh].abs().sum()

    prior, posterior = model.prior(batch), model.posterior(batch)
    assert fresh_grad(prior.mu.sum() + prior.logvar.sum()) == 0
    assert fresh_grad(posterior.mu.sum() + posterior.logvar.sum()) > 0     # q does read x
    other = with_response(batch, torch.where(batch.response > 3, fresh + 1, batch.response))
    torch.testing.assert_close(model.prior(other).mu, model.prior(batch).mu)


def test_kgcvae_act_loss_is_cross_entropy_of_the_classifier_on_c_and_z(corpus, batch):
    model = make("kgcvae", corpus)
    acts = batch.labels["act"].clone()
    acts[:3] = UNKNOWN_LABEL
    partly_known = with_acts(batch, acts)
    torch.manual_seed(1)
    terms = model.loss(partly_known, step=0)
    c, z = _same_z(model, partly_known, 1)
    logits = model.act_classifier(torch.cat([c, z[0]], -1))
    known = acts != UNKNOWN_LABEL
    expected = torch.nn.functional.cross_entropy(logits[known], acts[known])
    torch.testing.assert_close(terms["act"], expected)
    unknown = act_nll(logits, torch.full_like(acts, UNKNOWN_LABEL))
    assert unknown.item() == 0.0                                   # no NaN when no act is known


def test_kgcvae_recognition_network_reads_the_gold_act(corpus, batch):
    kg, plain = make("kgcvae", corpus), make("cvae-bow", corpus)
    for model, reads in ((kg, True), (plain, False)):
        a, b = (model.posterior(with_acts(batch, act)).mu for act in (0, 1))
        assert (not torch.allclose(a, b)) == reads
    unknown = kg.posterior(with_acts(batch, UNKNOWN_LABEL))       # the zero embedding row
    assert torch.isfinite(unknown.mu).all() and not kg.act_embedding.weight[4].any()


def _force_act(model, act):
    """Make the act classifier predict `act` with probability ~1 whatever (c, z)."""
    last = model.act_classifier[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-30.0)
        last.bias[act] = 30.0


def test_kgcvae_decoder_reads_the_gold_act_in_training_the_predicted_one_generating(corpus, batch):
    model = make("kgcvae", corpus).eval()
    z = model.posterior(batch).rsample(2)[0]
    gold = [model.decoder_log_likelihood(with_acts(batch, a), z, gold_act=True) for a in (0, 1)]
    predicted = [model.decoder_log_likelihood(with_acts(batch, a), z, gold_act=False) for a in (0, 1)]
    assert not torch.allclose(*gold)
    torch.testing.assert_close(*predicted)                          # never sees the annotation
    torch.testing.assert_close(model.log_likelihood(batch, z), predicted[0])
    model.cfg.eval_act = "gold"
    torch.testing.assert_close(model.log_likelihood(with_acts(batch, 1), z), gold[1])
    # The predicted act enters as its probability-weighted embedding: a certain prediction of
    # act 2 reads exactly like the gold act 2.
    _force_act(model, 2)
    torch.testing.assert_close(model.decoder_log_likelihood(batch, z, gold_act=False),
                               model.decoder_log_likelihood(with_acts(batch, 2), z, gold_act=True))
    sampled = model.sample_responses(batch, 3, max_len=5, generator=torch.Generator().manual_seed(0))
    assert sampled.acts.shape == (3, batch.size) and (sampled.acts == 2).all()
    assert len(sampled.tokens) == batch.size and all(len(row) == 3 for row in sampled.tokens)


def test_cvae_samples_differ_across_prior_draws_and_baseline_likelihood_is_exact(corpus, batch):
    model = make("cvae-bow", corpus, latent_size=8).eval()
    with torch.no_grad():
        model.prior_net.net[-1].bias[8:] = 4.0     # wide prior: different z, different greedy decodes
    rows = model.sample_responses(batch, 4, max_len=6, generator=torch.Generator().manual_seed(0)).tokens
    assert any(len({tuple(s) for s in row}) > 1 for row in rows)
    baseline = make("baseline", corpus).eval()
    with torch.no_grad():
        direct = baseline.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask,
                                                 baseline.context(batch)[None])
    torch.testing.assert_close(baseline.log_likelihood(batch), direct)


# --- smoke reproduction ----------------------------------------------------------------------

@pytest.mark.parametrize("variant", VARIANTS)
def test_smoke_reproduction(variant, tmp_path):
    cfg = config(variant, "smoke")
    result = train(cfg, runs_root=tmp_path, records_root=tmp_path / "records", track=False, progress=False)
    record, latent = result.record, variant != "baseline"
    assert record["substitute_for"] == "swda" and result.record_path.is_file()
    names = ("nll", "ppl", "elbo", "kl", "mi", "au") if latent else ("nll", "ppl")
    assert all(math.isfinite(record["metrics"][f"test/{n}"]) for n in names)
    assert record["eval"]["nll_estimator"] == ("iw" if latent else "exact")
    history = result.history[0]
    assert ("train/bow" in history) == (variant in ("cvae-bow", "kgcvae"))
    assert ("train/act" in history) == (variant == "kgcvae")
    dialog = json.loads((result.run_dir / "dialog_metrics.json").read_text())["metrics"]
    n = cfg.model.dialog_eval.num_samples
    bleu = {f"test/bleu_zhao_{k}_{o}_n{n}_ref1" for k in ("prec", "rec", "f1") for o in range(1, 5)}
    assert bleu <= set(dialog)
    assert {f"test/distinct_1_n{n}", "test/sacrebleu_corpus_n1_ref1"} <= set(dialog)
    assert ("test/rc_ppl_posterior" in dialog) == latent
    assert (f"test/act_acc_prior_n{n}" in dialog) == (variant == "kgcvae")
    assert dialog["test/dialog_num_examples"] == cfg.model.dialog_eval.max_examples
    rows = (result.run_dir / "dialog_samples.jsonl").read_text().splitlines()
    assert len(rows) == cfg.model.dialog_eval.max_examples
    assert len(json.loads(rows[0])["samples"]) == n


# --- the claims, on the committed records of the real (cpu preset) run ------------------------

def test_real_run_kl_annealing_alone_leaves_z_nearly_unused():
    """The card's BoW ablation: with KL annealing and no BoW loss the KL stays small (SwDA: 2.02)."""
    cvae = cpu_metrics(PAPER, "cvae")
    assert cvae["test/kl"] < 1.0 and cvae["test/au"] <= 5


def test_real_run_bag_of_words_loss_keeps_information_in_z():
    """The card: the BoW loss raises the KL several-fold (SwDA: 2.02 -> 11.36 with annealing);
    here the same holds for MI and active units, for both models that carry it."""
    cvae = cpu_metrics(PAPER, "cvae")
    for variant in ("cvae-bow", "kgcvae"):
        bow = cpu_metrics(PAPER, variant)
        assert bow["test/kl"] > 3 * cvae["test/kl"] and bow["test/kl"] > 2.0, variant
        assert bow["test/mi"] > cvae["test/mi"] + 1.0 and bow["test/au"] > cvae["test/au"], variant


def test_real_run_an_informative_z_makes_the_prior_samples_diverse():
    """Responses are greedy decodings of N prior draws of z: only a z that carries content
    makes them differ, so distinct-2 follows the KL."""
    cvae, bow = cpu_metrics(PAPER, "cvae"), cpu_metrics(PAPER, "cvae-bow")
    assert bow["test/distinct_2_n10"] > 2 * cvae["test/distinct_2_n10"]


def test_real_run_kgcvae_predicts_the_dialog_act_better_than_the_majority_class(corpus):
    """kgCVAE's act classifier, fed (c, z) with z from the prior, against always answering the
    most frequent act of the same test responses (here 'inform', 41.6%; the run: 46.4%)."""
    evaluated = corpus.split("test").subset(config("kgcvae", "cpu").model.dialog_eval.max_examples)
    acts = evaluated.labels["act"][evaluated.responses]
    acts = acts[acts != UNKNOWN_LABEL]
    majority = torch.bincount(acts).max().item() / len(acts)
    assert cpu_metrics(PAPER, "kgcvae")["test/act_acc_prior_n10"] > majority

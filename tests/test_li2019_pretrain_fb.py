"""Li et al. 2019 (papers/li2019_pretrain_fb): the three free-bits forms on a hand-built KL
tensor and against the official code's arithmetic, the autoencoder's zero KL weight and its
checkpoint selection, the fine-tuning run's pretrained encoder and fresh decoder, the order in
which `repro reproduce` and `repro sweep` train the rows, the presets against the paper's
settings, and the claims on the cpu records (every smoke preset trains in tests/test_presets.py)."""
import shutil

import pytest
import torch

from helpers_initialise import state_at_first_update
from helpers_records import cpu_metrics
from papers.li2019_pretrain_fb.model import build
from papers.li2019_pretrain_fb.presets import NAME, PRETRAIN, PRETRAINED, PTB_UPDATES_PER_EPOCH
from repro import schedules
from repro import train as train_mod
from repro.checkpoints import TrainError, run_dir_for
from repro.config import FreeBitsConfig, apply_overrides
from repro.data import load_corpus
from repro.evaluate import EvalResult
from repro.objectives import free_bits_kl
from repro.registry import get_paper, resolve
from repro.sweep import by_priority, jobs_for, make_jobs
from repro.train import train

# --- free bits: the three forms of the code's `--fb` ------------------------------------------
# Two sentences, three dimensions. Totals 3.6 and 0.5 (batch mean 2.05); the per-dimension
# batch means are 0.20, 0.35, 1.50.
KL = torch.tensor([[0.10, 0.50, 3.00],
                   [0.30, 0.20, 0.00]])


def _value_and_grad(variant: str, lam: float):
    kl = KL.clone().requires_grad_()
    value = free_bits_kl(kl, FreeBitsConfig(variant=variant, lam=lam))
    value.backward()
    return value.item(), kl.grad


def test_fb2_masks_each_sentences_dimension_not_the_dimensions_batch_mean():
    """`--fb 2`, λ / d = 0.25: kept are 0.50, 3.00 (sentence 1) and 0.30 (sentence 2), so the term
    is (3.50 + 0.30) / 2 = 1.90. Sentence 2's 0.30 keeps its gradient although dimension 1's
    batch mean (0.20) is under 0.25; its 0.20 gets none although dimension 2's mean (0.35) is
    over. A batch-mean test per dimension (Kingma's rule, groups of one) gives neither."""
    value, grad = _value_and_grad("li_example_dim", 0.25)
    assert value == pytest.approx(1.90)
    assert torch.equal(grad, torch.tensor([[0.0, 0.5, 0.5], [0.5, 0.0, 0.0]]))
    batch_mean_value, batch_mean_grad = _value_and_grad("kingma_group_batchmean", 0.25)
    assert batch_mean_value == pytest.approx(0.25 + 0.35 + 1.50)
    assert torch.equal(batch_mean_grad, torch.tensor([[0.0, 0.5, 0.5], [0.0, 0.5, 0.5]]))


def test_fb1_masks_each_sentences_total():
    """`--fb 1`, λ = 1: sentence 1 (3.6) keeps its KL, sentence 2 (0.5) drops it: 3.6 / 2."""
    value, grad = _value_and_grad("li_example_total", 1.0)
    assert value == pytest.approx(1.80)
    assert torch.equal(grad, torch.tensor([[0.5] * 3, [0.0] * 3]))


def test_fb3_masks_the_whole_term_on_the_batch_mean():
    """`--fb 3`: the batch-mean total 2.05 passes λ = 2 (the whole term kept) and fails λ = 2.1
    (no KL gradient at all)."""
    value, grad = _value_and_grad("li_batchmean", 2.0)
    assert value == pytest.approx(2.05) and torch.equal(grad, torch.full_like(KL, 0.5))
    value, grad = _value_and_grad("li_batchmean", 2.1)
    assert value == 0.0 and torch.equal(grad, torch.zeros_like(KL))


def test_each_form_is_the_official_codes_arithmetic():
    """`text_anneal_fb.py`'s masks, written out (a strict `>`, ties have probability zero here):
    fb 1 on each sentence's total, fb 2 on each (sentence, dimension) entry against λ / d, fb 3 on
    the batch mean of the totals; the KL term is then averaged over the batch."""
    kl = torch.rand(16, 32, generator=torch.Generator().manual_seed(0)) * 0.5
    target, total = 8.0, kl.sum(1)
    code = {
        ("li_example_total", target): ((total > target).float() * total).mean(),
        ("li_example_dim", target / 32): ((kl > target / 32).float() * kl).sum(1).mean(),
        ("li_batchmean", target): (total.mean() > target).float() * total.mean(),
    }
    assert 0 < (total > target).float().mean() < 1                 # some sentences each way
    for (variant, lam), expected in code.items():
        assert free_bits_kl(kl, FreeBitsConfig(variant=variant, lam=lam)) == pytest.approx(expected.item())


# --- presets ----------------------------------------------------------------------------------

def config(variant, preset):
    return resolve(NAME, variant, preset)[1]


def test_rows_pretrain_first_then_the_three_forms_and_the_two_baselines():
    paper = get_paper(NAME)
    assert list(paper.variants) == [PRETRAIN, "pretrain-fb-dim", "pretrain-fb-sentence",
                                    "pretrain-fb-batch", "vae-anneal", "vae-anneal-fb"]
    for name, var in paper.variants.items():
        pretrained = name in PRETRAINED
        assert var.requires == ((PRETRAIN,) if pretrained else ())
        assert (var.initialise is not None) == pretrained
        assert config(name, "cpu").model.pretrained_encoder == (PRETRAIN if pretrained else None)


def test_paper_preset_is_li_et_als_ptb_recipe():
    for name in get_paper(NAME).variants:
        cfg = config(name, "paper")
        m = cfg.model
        assert (m.embed_size, m.encoder_hidden, m.decoder_hidden, m.latent_size) == (256, 256, 256, 32)
        assert m.z_mode == "both" and m.decoder_dropout == 0.5 and m.word_keep_rate == 1.0
        assert (m.init_range, m.embed_init_range) == (0.01, 0.1)
        assert cfg.data.dataset == "ptb" and cfg.data.batch_size == 32 and cfg.train.epochs == 100
        o = cfg.optim
        assert (o.name, o.lr, o.momentum, o.grad_clip) == ("sgd", 0.5, 0.0, 5.0)
        assert (o.plateau_decay, o.plateau_patience, o.plateau_restores_best) == (0.5, 5, True)
        assert o.plateau_after_epoch == 15
        assert cfg.train.stop_after_decays == 5 and cfg.eval.iw_samples == 500
        assert cfg.eval.mi_pool == "dataset" and cfg.eval.au_threshold == 0.01


def test_lambda_is_8_nats_a_sentence_and_a_quarter_nat_a_dimension_for_fb2():
    forms = {"pretrain-fb-dim": ("li_example_dim", 0.25), "vae-anneal-fb": ("li_example_dim", 0.25),
             "pretrain-fb-sentence": ("li_example_total", 8.0),
             "pretrain-fb-batch": ("li_batchmean", 8.0),
             PRETRAIN: ("none", 0.0), "vae-anneal": ("none", 0.0)}
    for preset in ("cpu", "paper"):
        for name, (variant, lam) in forms.items():
            fb = config(name, preset).model.free_bits
            assert (fb.variant, fb.lam) == (variant, lam), (name, preset)


@pytest.mark.parametrize("preset, epochs", [("paper", 10), ("cpu", 2)])
def test_kl_weight_rises_from_0_to_1_over_the_annealing_epochs(preset, epochs):
    steps = epochs * PTB_UPDATES_PER_EPOCH
    for name in set(get_paper(NAME).variants) - {PRETRAIN}:
        kl = config(name, preset).model.kl
        assert schedules.kl_weight(0, kl) == 0.0
        assert schedules.kl_weight(steps // 2, kl) == pytest.approx(0.5, abs=1e-3)
        assert schedules.kl_weight(steps, kl) == 1.0


def test_ptb_epoch_is_1315_updates_of_32():
    cfg = config("vae-anneal", "cpu")
    corpus = load_corpus(cfg.data)
    assert sum(1 for _ in corpus.batches("train", cfg.data.batch_size, shuffle=True, seed=0)) \
        == PTB_UPDATES_PER_EPOCH


# --- the autoencoder ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_corpus():
    return load_corpus(config(PRETRAIN, "smoke").data)


def test_the_autoencoder_trains_on_the_reconstruction_alone(smoke_corpus):
    """KL weight 0 at every step, so the loss is the reconstruction term exactly, while the
    posterior still has a KL (z is sampled, only nothing pulls q towards the prior)."""
    for preset in ("smoke", "cpu", "paper"):
        kl = config(PRETRAIN, preset).model.kl
        assert all(schedules.kl_weight(step, kl) == 0.0 for step in (0, 1, 13_150, 10**7))
    cfg = config(PRETRAIN, "smoke")
    torch.manual_seed(0)
    model = build(cfg, smoke_corpus)
    batch = next(iter(smoke_corpus.batches("train", 8, shuffle=True, seed=0)))
    for step in (0, 10**6):
        terms = model.loss(batch, step)
        assert terms["kl_weight"] == 0.0 and terms["kl"] > 0
        assert torch.equal(terms["loss"], terms["rec"])
    annealed = build(config("vae-anneal", "smoke"), smoke_corpus).loss(batch, 10**6)
    assert annealed["kl_weight"] == 1.0


def test_the_autoencoder_keeps_the_epoch_of_best_validation_reconstruction(tmp_path):
    """`train.select_by="rec"` (the autoencoder) picks `best.pt` by the validation reconstruction,
    `"bound"` (every other row) by the negative ELBO: validation here reports rec 3, 1, 2 and
    ELBO 1, 3, 2 over three epochs, so the two pick epochs 2 and 1."""
    assert config(PRETRAIN, "cpu").train.select_by == "rec"
    assert all(config(n, "cpu").train.select_by == "bound" for n in get_paper(NAME).variants if n != PRETRAIN)
    real = train_mod.evaluate_corpus

    def scripted(model, corpus, eval_cfg, **kwargs):
        result = real(model, corpus, eval_cfg, **kwargs)
        if eval_cfg.split != "valid":
            return result
        epoch = scripted.calls
        scripted.calls += 1
        metrics = {**result.metrics, "rec": [3.0, 1.0, 2.0][epoch], "elbo": [1.0, 3.0, 2.0][epoch]}
        return EvalResult(metrics, result.options, result.per_example)

    best = {}
    for select_by in ("rec", "bound"):
        scripted.calls = 0
        cfg = apply_overrides(config(PRETRAIN, "smoke"), ["train.epochs=3", f"train.select_by={select_by}"])
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(train_mod, "evaluate_corpus", scripted)
            result = train(cfg, runs_root=tmp_path / select_by, records_root=None, track=False,
                           progress=False)
        best[select_by] = result.record["train"]["best_epoch"]
    assert best == {"rec": 2, "bound": 1}


# --- fine-tuning: the autoencoder's encoder, a fresh decoder ---------------------------------

@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A finished smoke `ae-pretrain` run; each test copies it into its own runs folder."""
    runs = tmp_path_factory.mktemp("li_pretrained")
    return train(config(PRETRAIN, "smoke"), runs_root=runs, records_root=None, track=False,
                 progress=False).run_dir


def _runs_with_pretrained(pretrained, runs):
    shutil.copytree(pretrained, run_dir_for(config(PRETRAIN, "smoke"), runs))
    return runs


@pytest.mark.parametrize("variant", PRETRAINED)
def test_fine_tuning_starts_from_the_pretrained_encoder_and_a_fresh_decoder(variant, pretrained,
                                                                            tmp_path, smoke_corpus):
    """At step 0 every encoder tensor is the autoencoder's best checkpoint's; every decoder
    tensor differs from the autoencoder's trained decoder and is exactly the decoder a fresh
    model of this seed starts with (the same as `vae-anneal-fb`'s, which differs in the encoder
    alone); the optimiser starts empty."""
    runs = _runs_with_pretrained(pretrained, tmp_path)
    cfg = config(variant, "smoke")
    seen = state_at_first_update(cfg, runs)
    model = seen["model"]
    ae = torch.load(pretrained / "best.pt", weights_only=True)
    encoder = [k for k in model if k.startswith("encoder.")]
    decoder = [k for k in model if k.startswith("decoder.")]
    assert encoder and decoder and set(encoder) | set(decoder) == set(model)
    assert all(torch.equal(model[k], ae[k]) for k in encoder)
    assert not any(torch.equal(model[k], ae[k]) for k in decoder)
    torch.manual_seed(cfg.seed)
    fresh = build(cfg, smoke_corpus).state_dict()
    assert all(torch.equal(model[k], fresh[k]) for k in decoder)
    assert not any(torch.equal(model[k], fresh[k]) for k in encoder)     # the copy did something
    baseline = state_at_first_update(config("vae-anneal-fb", "smoke"), tmp_path / "baseline")["model"]
    assert all(torch.equal(model[k], baseline[k]) for k in decoder)
    assert seen["optimizer_state"] == {}


def test_a_missing_pretraining_run_says_in_one_line_what_to_train_first(tmp_path):
    with pytest.raises(TrainError) as err:
        train(config("pretrain-fb-dim", "smoke"), runs_root=tmp_path, records_root=None,
              track=False, progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert message.endswith(f"run `repro train {NAME} {PRETRAIN} --preset smoke --seed 0 "
                            f"--runs-dir {tmp_path}` first")


def test_a_pretraining_run_of_other_sizes_or_vocabulary_is_refused(pretrained, tmp_path):
    runs = _runs_with_pretrained(pretrained, tmp_path)
    wider = apply_overrides(config("pretrain-fb-sentence", "smoke"), ["model.encoder_hidden=24"])
    with pytest.raises(TrainError, match="does not fit this run's encoder"):
        train(wider, runs_root=runs, records_root=None, track=False, progress=False)
    other_vocab = apply_overrides(config("pretrain-fb-sentence", "smoke"), ["data.max_vocab=300"])
    with pytest.raises(TrainError, match="another vocabulary"):
        train(other_vocab, runs_root=runs, records_root=None, track=False, progress=False)


def test_reproduce_and_sweep_train_the_autoencoder_of_each_seed_before_the_rows_that_read_it():
    """`repro reproduce` trains `make_jobs` in order, one at a time (rows in registration order,
    `ae-pretrain` first); `repro sweep` starts the same list in that order, or, with a deadline,
    in `by_priority` order (seed by seed). Either way each seed's `ae-pretrain` job comes before
    every row that reads it. (A parallel sweep may still start such a row before its autoencoder
    has finished: that row stops at once with the one-line error, and the sweep's one retry,
    after every first attempt has ended, runs it.)"""
    seeds = [0, 1, 2]
    for jobs in (make_jobs(NAME, None, seeds, "cpu"), by_priority(jobs_for(NAME, None, seeds, "cpu"))):
        assert len(jobs) == 6 * len(seeds)
        place = {(job.variant, job.seed): i for i, job in enumerate(jobs)}
        for variant in PRETRAINED:
            assert all(place[PRETRAIN, seed] < place[variant, seed] for seed in seeds)


# --- the claims, on the records of the real (cpu) run -------------------------------------------
# Written before any record existed; a record still to be run skips its claim.

def cpu(variant: str) -> dict:
    return cpu_metrics(NAME, variant, required=False)


def test_real_run_the_autoencoder_puts_the_sentence_into_z():
    """The method's premise: at KL weight 0 the encoder uses the latent space. Thresholds
    (ours, before the records): at least 16 of the 32 units active and MI of at least 4 nats
    (the whole-test-set estimate is capped at log 3,761 = 8.2)."""
    ae = cpu(PRETRAIN)
    assert ae["test/au"] >= 16 and ae["test/mi"] >= 4.0


@pytest.mark.parametrize("variant", PRETRAINED)
def test_real_run_pretrained_free_bits_keep_the_kl_near_or_above_the_target(variant):
    """Free bits stop pushing the KL down once it is under λ = 8 nats (per sentence, per batch,
    or 0.25 per dimension), so the trained KL sits near the target or above it. Threshold (ours,
    before the records): test KL of at least three quarters of λ, 6 nats."""
    assert cpu(variant)["test/kl"] >= 6.0


@pytest.mark.parametrize("variant", PRETRAINED)
def test_real_run_pretrained_free_bits_keep_more_active_units_than_annealing_alone(variant):
    """The paper's point: annealing alone leaves most units inactive, pretraining + free bits
    keeps more of them. Threshold (ours, before the records): strictly more active units than
    `vae-anneal`, and at least 4."""
    ours, anneal = cpu(variant), cpu("vae-anneal")
    assert ours["test/au"] > anneal["test/au"] and ours["test/au"] >= 4


def test_real_run_pretraining_adds_to_free_bits():
    """Pretraining is what the paper adds to free bits: the same `--fb 2` run with the
    autoencoder's encoder keeps at least as many active units and at least as much MI (within
    0.1 nat of estimator noise) as without it. Thresholds ours, before the records."""
    ours, plain = cpu("pretrain-fb-dim"), cpu("vae-anneal-fb")
    assert ours["test/au"] >= plain["test/au"] and ours["test/mi"] >= plain["test/mi"] - 0.1


# ---- under the benchmark's protocols ------------------------------------------------------

def test_the_benchmark_trains_the_autoencoder_first_under_the_protocol_but_gives_it_no_row():
    from repro.benchmark import methods
    from repro.protocols import protocol
    from repro.sweep import Job, waves, with_prerequisites
    proto = protocol("ptb", "cpu")
    assert (NAME, PRETRAIN) not in methods() and (NAME, "pretrain-fb-dim") in methods()
    _, pretrain = resolve(NAME, PRETRAIN, proto.preset)
    assert pretrain.train.select_by == "rec" and pretrain.model.kl.max_weight == 0.0
    assert pretrain.model.latent_size == proto.latent_size and pretrain.optim == proto.optim
    jobs = with_prerequisites([Job(NAME, "pretrain-fb-dim", proto.preset, 0)])
    assert waves(jobs) == [[Job(NAME, PRETRAIN, proto.preset, 0)], [Job(NAME, "pretrain-fb-dim", proto.preset, 0)]]


@pytest.mark.parametrize("dataset, latent", [("ptb", 32), ("synthetic", 4)])
def test_under_a_protocol_lambda_stays_a_quarter_nat_per_latent_dimension(dataset, latent):
    from repro.protocols import protocol
    proto = protocol(dataset, "cpu")
    assert proto.latent_size == latent
    lam = {v: resolve(NAME, v, proto.preset)[1].model.free_bits.lam
           for v in ("pretrain-fb-dim", "pretrain-fb-sentence", "pretrain-fb-batch")}
    assert lam == {"pretrain-fb-dim": 0.25, "pretrain-fb-sentence": 0.25 * latent,
                   "pretrain-fb-batch": 0.25 * latent}

"""Polyak averaging (repro/averaging.py) and its use by the trainer: the moving average against
a hand computation, validation and the best checkpoint reading the average, an exact resume of
it, Adamax, and training on train + valid (on Kingma's smoke MNIST preset)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from repro import train as train_mod
from repro.averaging import PolyakAverage, averaged, make_average
from repro.config import ConfigError, apply_overrides
from repro.data import load_corpus
from repro.registry import get_paper, resolve


def test_the_average_after_three_updates_is_the_hand_computed_one():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    average = PolyakAverage(model, decay=0.9)
    seen = [model.weight.detach().clone()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).pow(2).sum().backward()
        optimizer.step()
        average.update()
        seen.append(model.weight.detach().clone())
    # a_0 = w_0, a_t = 0.9 a_{t-1} + 0.1 w_t
    expected = 0.9 ** 3 * seen[0] + 0.1 * (0.9 ** 2 * seen[1] + 0.9 * seen[2] + seen[3])
    torch.testing.assert_close(average.average["weight"], expected)
    assert not torch.allclose(expected, seen[3])                    # the test is not vacuous


def test_averaged_swaps_the_average_in_and_back_out_even_on_an_error():
    model = nn.Linear(2, 2)
    average = PolyakAverage(model, decay=0.5)
    raw = model.weight.detach().clone()
    with torch.no_grad():
        average.average["weight"].fill_(7.0)
    with averaged(average):
        assert torch.all(model.weight == 7.0)
    assert torch.equal(model.weight, raw) and torch.all(average.average["weight"] == 7.0)
    with pytest.raises(RuntimeError), averaged(average):
        raise RuntimeError("an evaluation that fails")
    assert torch.equal(model.weight, raw)
    with averaged(None):                                            # averaging off: no-op
        assert torch.equal(model.weight, raw)
    assert make_average(model, 0.0) is None
    with pytest.raises(ValueError):
        PolyakAverage(model, 1.0)


def _cfg(*overrides):
    _, cfg = resolve("kingma2016_iaf", "mnist-diag", "smoke")
    return apply_overrides(cfg, ["train.epochs=2", "optim.polyak=0.5", *overrides])


def _checkpoint(run_dir, name):
    return torch.load(run_dir / name, weights_only=True)


def test_validation_and_the_best_checkpoint_are_the_averaged_weights(tmp_path):
    cfg = _cfg("train.epochs=1")
    assert cfg.optim.name == "adamax"
    result = train_mod.train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False)
    last, best = _checkpoint(result.run_dir, "last.pt"), _checkpoint(result.run_dir, "best.pt")
    average = last["polyak"]["average"]
    assert set(average) <= set(best) and last["polyak"]["decay"] == 0.5
    assert all(torch.equal(best[name], tensor) for name, tensor in average.items())
    assert not all(torch.equal(last["model"][name], tensor) for name, tensor in average.items())
    # The epoch's validation ELBO is that of the averaged weights, not of the raw ones.
    corpus = load_corpus(cfg.data)
    model = get_paper(cfg.paper).variant(cfg.variant).build(cfg, corpus)

    def validation_elbo(state):
        model.load_state_dict(state)
        return train_mod.evaluate_corpus(
            model, corpus, train_mod._validation_eval(cfg), device=torch.device("cpu"),
            seed=cfg.seed, batch_size=cfg.data.eval_batch_size, progress=False,
            metrics=train_mod._validation_metrics(model)).metrics["elbo"]

    logged = result.history[-1]["val/elbo"]
    assert validation_elbo(best) == pytest.approx(logged, rel=1e-6)
    assert validation_elbo(last["model"]) != pytest.approx(logged, rel=1e-6)


def test_a_resumed_run_continues_the_same_average(tmp_path, monkeypatch):
    straight = train_mod.train(_cfg(), runs_root=tmp_path / "a", records_root=None, track=False,
                               progress=False)
    real_log = train_mod.Tracker.log_metrics

    def die_after_first_epoch(self, metrics, step):
        raise KeyboardInterrupt("simulated kill after the first checkpoint")

    monkeypatch.setattr(train_mod.Tracker, "log_metrics", die_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(_cfg(), runs_root=tmp_path / "b", records_root=None, track=False,
                        progress=False)
    monkeypatch.setattr(train_mod.Tracker, "log_metrics", real_log)
    resumed = train_mod.train(_cfg(), runs_root=tmp_path / "b", records_root=None, track=False,
                              resume=True, progress=False)
    a, b = _checkpoint(straight.run_dir, "last.pt"), _checkpoint(resumed.run_dir, "last.pt")
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert all(torch.equal(a["polyak"]["average"][k], b["polyak"]["average"][k])
               for k in a["polyak"]["average"])
    assert resumed.record["metrics"] == straight.record["metrics"]


def test_polyak_is_bounded_and_refuses_the_plateau_restore(tmp_path):
    with pytest.raises(ConfigError):
        _cfg("optim.polyak=1.0")
    cfg = _cfg("optim.plateau_restores_best=true", "optim.plateau_decay=0.5")
    with pytest.raises(train_mod.TrainError, match="plateau_restores_best"):
        train_mod.train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False)


@pytest.mark.parametrize("dataset", ["mnist", "binarized_mnist"])
def test_train_on_valid_adds_the_valid_images_to_train(dataset):
    _, cfg = resolve("kingma2016_iaf", "mnist-diag", "smoke")
    plain = apply_overrides(cfg, [f"data.dataset={dataset}", "data.train_fraction=1.0"])
    both = apply_overrides(plain, ["data.train_on_valid=true"])
    a, b = load_corpus(plain.data), load_corpus(both.data)
    assert len(b.split("train")) == len(a.split("train")) + len(a.split("valid"))
    assert torch.equal(b.split("valid").pixels, a.split("valid").pixels)   # still reported
    assert torch.equal(b.split("train").pixels[:len(a.split("train"))], a.split("train").pixels)


def test_a_run_on_train_and_valid_selects_nothing_and_tests_the_last_average(tmp_path):
    cfg = _cfg("data.train_on_valid=true")
    result = train_mod.train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False)
    assert not (result.run_dir / "best.pt").exists()
    assert result.record["train"]["final_checkpoint"] == "last"
    assert result.record["train"]["best_epoch"] is None
    text = resolve("bowman2016", "vae-anneal-worddrop", "smoke")[1]
    with pytest.raises(Exception, match="image corpora"):
        load_corpus(apply_overrides(text, ["data.train_on_valid=true"]).data)


def test_a_run_trained_on_train_plus_valid_can_be_evaluated_again(tmp_path):
    """Under `data.train_on_valid` no epoch is selected and the averaged last weights are tested;
    `repro eval` must find those same weights (there is no best.pt)."""
    import dataclasses

    from repro.registry import resolve
    from repro.runs import load_trained
    from repro.checkpoints import load_checkpoint
    from repro.train import train

    _, cfg = resolve("kingma2016_iaf", "mnist-diag", "smoke")
    cfg.data = dataclasses.replace(cfg.data, train_on_valid=True)
    cfg.optim = dataclasses.replace(cfg.optim, polyak=0.9)
    result = train(cfg, runs_root=tmp_path, records_root=None, track=False, progress=False)
    assert not (result.run_dir / "best.pt").exists()
    _, _, model = load_trained(result.run_dir, device="cpu")
    average = load_checkpoint(result.run_dir / "last.pt", "cpu")["polyak"]["average"]
    for name, param in model.named_parameters():
        assert torch.equal(param.detach(), average[name]), name

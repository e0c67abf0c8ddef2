import json

import pytest

from repro.config import ConfigError, RunConfig, apply_overrides, flatten, validate
from repro.sentence_models import TextVAEConfig


def _cfg():
    return RunConfig(paper="p", variant="v", model=TextVAEConfig())


def test_override_sets_nested_values_with_types():
    cfg = apply_overrides(_cfg(), ["model.latent_size=32", "optim.lr=0.5", "train.bf16=true",
                                   "model.kl.kind=logistic", "data.max_length=null"])
    assert cfg.model.latent_size == 32 and isinstance(cfg.model.latent_size, int)
    assert cfg.optim.lr == 0.5 and cfg.train.bf16 is True
    assert cfg.model.kl.kind == "logistic" and cfg.data.max_length is None


def test_unknown_key_is_rejected_with_the_valid_ones():
    with pytest.raises(ConfigError, match="latent_sise.*valid:.*latent_size"):
        apply_overrides(_cfg(), ["model.latent_sise=3"])
    with pytest.raises(ConfigError, match="unknown config key 'optimm'"):
        apply_overrides(_cfg(), ["optimm.lr=1"])


@pytest.mark.parametrize("override, message", [
    ("model.latent_size=0", "at least 1"),
    ("model.word_keep_rate=-0.1", "at least 0"),
    ("model.word_keep_rate=1.5", "at most 1"),
    ("optim.name=rmsprop", "choose one of"),
    ("model.latent_size=2.5", "whole number"),
    ("train.bf16=maybe", "true or false"),
    ("optim.lr", "section.key=value"),
])
def test_out_of_range_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(_cfg(), [override])


def test_json_round_trip_is_exact():
    cfg = apply_overrides(_cfg(), ["model.free_bits.variant=kingma_group_batchmean", "seed=3"])
    again = RunConfig.from_dict(json.loads(cfg.to_json()), TextVAEConfig)
    assert again == cfg
    validate(again)


def test_from_dict_rejects_unknown_sections():
    raw = _cfg().to_dict()
    raw["model"]["nonsense"] = 1
    with pytest.raises(ConfigError, match="nonsense"):
        RunConfig.from_dict(raw, TextVAEConfig)


def test_flatten_names_every_leaf():
    flat = flatten(_cfg())
    assert flat["model.kl.kind"] == "constant" and flat["data.dataset"] == "ptb"
    assert not any(isinstance(v, dict) for v in flat.values())

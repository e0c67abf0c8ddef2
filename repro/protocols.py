"""The cross-method benchmark's protocols: what every method in one table shares.

A `Protocol` fixes the corpus and vocabulary, the batch size, optimiser, number of epochs, the
embedding, encoder, decoder and latent sizes, and the evaluation (IW-NLL with K = 500; MI pooled
over the whole test set and AU over it, even where a reduced scale takes the bound on a prefix;
AU threshold 0.01). A benchmarked variant's protocol config is its own preset at the protocol's
scale (so its KL schedule, free bits, flows, decoder type stay the paper's) with the shared sizes
and sections put in, then whatever its `Variant.fit_protocol` adjusts; `presets_for` names those
configs `benchmark-<dataset>-<scale>`, and `repro.registry.resolve` finds them, so `repro train`,
`repro sweep` and `--resume` work on them like on any other preset. Tables and statistics are in
`repro.benchmark`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from repro.config import (ConfigError, DataConfig, EvalConfig, ModelConfig, OptimConfig, RunConfig,
                          SyntheticConfig, TrainConfig)

DATASETS = ("ptb", "synthetic")
SCALES = ("smoke", "cpu", "paper")
# The sizes every method of one benchmark table shares (`ModelConfig.shared_sizes` says where
# each goes in a method's own config).
SHARED_SIZES = ("embed_size", "encoder_hidden", "decoder_hidden", "latent_size")


@dataclass(frozen=True, kw_only=True)
class Protocol:
    """What every method in one benchmark table shares."""

    dataset: str
    scale: str
    data: DataConfig
    optim: OptimConfig
    train: TrainConfig
    eval: EvalConfig
    embed_size: int
    encoder_hidden: int
    decoder_hidden: int          # LSTM units, or channels of a CNN decoder
    latent_size: int             # per sentence, or per step for per-step latents (Z-Forcing)
    reductions: str = ""         # what this scale leaves out, printed above the table
    seeds: tuple[int, ...] = field(default=(0, 1, 2))

    @property
    def name(self) -> str:
        return f"benchmark_{self.dataset}"

    @property
    def preset(self) -> str:
        return f"benchmark-{self.dataset}-{self.scale}"

    @property
    def experiment(self) -> str:
        return f"benchmark-{self.dataset}"

    def shared_sizes(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SHARED_SIZES}


def _eval(scale: str, max_examples: int | None) -> EvalConfig:
    if scale == "smoke":
        return EvalConfig(iw_samples=4, iw_chunk=2, max_examples=40, mc_samples=4)
    return EvalConfig(iw_samples=500, iw_chunk=100, mi_pool="dataset", au_threshold=0.01,
                      max_examples=max_examples, mi_au_whole_split=True)


PROTOCOLS: dict[tuple[str, str], Protocol] = {
    ("ptb", "smoke"): Protocol(
        dataset="ptb", scale="smoke", data=DataConfig(train_fraction=0.005, max_vocab=500),
        optim=OptimConfig(), train=TrainConfig(epochs=1), eval=_eval("smoke", None),
        embed_size=16, encoder_hidden=16, decoder_hidden=16, latent_size=4,
        reductions="seconds-long, for tests"),
    ("ptb", "cpu"): Protocol(
        dataset="ptb", scale="cpu", data=DataConfig(batch_size=32),
        optim=OptimConfig(lr=1e-3, grad_clip=5.0), train=TrainConfig(epochs=4),
        eval=_eval("cpu", 500), embed_size=128, encoder_hidden=256, decoder_hidden=256, latent_size=32,
        reductions="4 epochs; sizes 128/256/256/32 (embedding/encoder/decoder/latent) instead of He "
        "et al.'s 512/1024/1024/32; IW-NLL (K = 500), ELBO and KL on the first 500 test sentences; "
        "MI and AU on all 3761 (MI ceiling log 3761 = 8.2 nats), except for IAF posteriors, whose "
        "density at every other sentence's z costs too much there: on the 500 (ceiling 6.2)"),
    ("ptb", "paper"): Protocol(
        dataset="ptb", scale="paper", data=DataConfig(batch_size=32),
        optim=OptimConfig(lr=1e-3, grad_clip=5.0), train=TrainConfig(epochs=40, early_stop_patience=5),
        eval=_eval("paper", None), embed_size=512, encoder_hidden=1024, decoder_hidden=1024,
        latent_size=32, reductions="He et al. 2019's sizes; the whole test set"),
    ("synthetic", "smoke"): Protocol(
        dataset="synthetic", scale="smoke",
        data=DataConfig(dataset="synthetic", batch_size=32,
                        synthetic=SyntheticConfig(num_train=500, num_valid=50, num_test=50)),
        optim=OptimConfig(), train=TrainConfig(epochs=1, max_steps=10), eval=_eval("smoke", None),
        embed_size=16, encoder_hidden=16, decoder_hidden=16, latent_size=4,
        reductions="seconds-long, for tests"),
    ("synthetic", "cpu"): Protocol(
        dataset="synthetic", scale="cpu", data=DataConfig(dataset="synthetic", batch_size=32),
        optim=OptimConfig(), train=TrainConfig(epochs=10), eval=_eval("cpu", None),
        embed_size=64, encoder_hidden=64, decoder_hidden=64, latent_size=4,
        reductions="small LSTMs (64 units), latent 4, 10 epochs"),
    ("synthetic", "paper"): Protocol(
        dataset="synthetic", scale="paper", data=DataConfig(dataset="synthetic", batch_size=16),
        optim=OptimConfig(), train=TrainConfig(epochs=50), eval=_eval("paper", None),
        embed_size=50, encoder_hidden=50, decoder_hidden=50, latent_size=2,
        reductions="He et al. 2019's model on this corpus (docs/data.md §He: embedding 50, LSTMs "
        "50, latent 2, batch 16, 50 epochs); their decoder dropout 0.5 is not imposed"),
}


def protocol(dataset: str, scale: str) -> Protocol:
    if (dataset, scale) not in PROTOCOLS:
        raise ConfigError(f"no benchmark protocol for {dataset!r} at scale {scale!r}; "
                          f"datasets: {DATASETS}, scales: {SCALES}")
    return PROTOCOLS[(dataset, scale)]


def with_shared_sizes(model: ModelConfig, proto: Protocol) -> ModelConfig:
    """`model` with the protocol's sizes in the fields its config names (`ModelConfig.shared_sizes`:
    a model with one recurrent size, an LM or Z-Forcing, takes the decoder size there)."""
    taken = type(model).shared_sizes
    fields = {f.name for f in dataclasses.fields(model)}
    if not taken or set(taken) - set(SHARED_SIZES) or set(taken.values()) - fields:
        raise ConfigError(f"{type(model).__name__}.shared_sizes must map some of {SHARED_SIZES} to "
                          f"its own fields, not {taken}")
    sizes = proto.shared_sizes()
    return dataclasses.replace(model, **{field: sizes[size] for size, field in taken.items()})


def protocol_config(base: RunConfig, proto: Protocol, variant) -> RunConfig:
    """`base` (the method's own preset at the protocol's scale) under the protocol. Two
    exceptions, declared by the variant (`registry.Variant`): per-step latents have no dataset-wide
    aggregate posterior, so their MI is pooled per batch; a posterior whose density is costly to
    evaluate keeps MI and AU on the bound's prefix. The table names the runs scored otherwise
    than the rest (`_mixed_mi_scoring`)."""
    exceptions = {}
    if variant.latent_per_step:
        exceptions["mi_pool"] = "batch"
    if variant.costly_posterior_density:
        exceptions["mi_au_whole_split"] = False
    evaluation = dataclasses.replace(proto.eval, **exceptions)
    cfg = dataclasses.replace(
        base, preset=proto.preset, model=with_shared_sizes(base.model, proto),
        data=dataclasses.replace(proto.data), optim=dataclasses.replace(proto.optim),
        train=dataclasses.replace(proto.train), eval=evaluation)
    return variant.fit_protocol(cfg, proto) if variant.fit_protocol else cfg


def presets_for(variant, prerequisite: bool = False) -> dict:
    """A benchmarked variant's protocol presets, `benchmark-<dataset>-<scale>` -> config maker
    (none for other variants, except a `prerequisite`: one that a benchmarked variant of its
    paper starts from, `Variant.requires`). Kept apart from `variant.presets`, the paper's own."""
    if not (variant.benchmark or prerequisite):
        return {}
    return {proto.preset: (lambda proto=proto: protocol_config(variant.presets[proto.scale](), proto,
                                                               variant))
            for proto in PROTOCOLS.values()}

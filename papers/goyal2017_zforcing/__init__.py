"""Goyal et al. 2017, *Z-Forcing: Training Stochastic Recurrent Networks* (NIPS 2017).

Registers the paper's rows as variants `<dataset>-<arm>`: sequential MNIST (run), PTB as a
declared substitute for its IMDB language model (run), Blizzard and TIMIT (kept, not run); see
`model.py` for the method and its implementation details, `presets.py` for the settings and
every reduction, `reported.py` for what the paper reports (no number was retrieved). The
registration lives here because the presets need the model's config classes.
"""
from papers.goyal2017_zforcing.model import SequenceLMConfig, ZForcingConfig, build
from papers.goyal2017_zforcing.presets import NAME
from papers.goyal2017_zforcing.presets import PRESETS, SPEECH, SPEECH_PRESETS, VARIANTS
from papers.goyal2017_zforcing.reported import CONTEXT, reported
from repro.registry import Paper, Variant, presets_of_variant, register_paper

DATASETS = {
    "mnist": "sequential binarized MNIST",
    "ptb": "PTB sentences (substitute for the paper's IMDB)",
    "blizzard": "Blizzard speech",
    "timit": "TIMIT speech",
}
ARMS = {
    "lstm": "LSTM language model of the same size (exact likelihood)",
    "srnn": "stochastic RNN, no KL annealing, no auxiliary cost (paper: 'Ours')",
    "srnn-kla": "stochastic RNN with KL annealing (paper: 'Ours + kla')",
    "zforcing": "Z-Forcing auxiliary cost without KL annealing (completes the 2 x 2 on PTB)",
    "zforcing-kla": "Z-Forcing: KL annealing and the auxiliary cost (paper: 'Ours + kla, aux')",
}
# The KL is not a rate against an x-independent prior, so it bounds no mutual information.
READING_NOTE = (
    "the KL is against the prior p(z_t | h_{t-1}), which has read the past words and can follow "
    "the posterior, so it measures what z adds beyond the past and bounds no mutual information. "
    "MI and AU measure how much the posterior's z (the whole sequence z_1..z_T) varies with x, "
    "so MI above KL and active units at KL near 0 are expected: for these rows, KL is the "
    "collapse signal. The IW-NLL's proposal is the posterior over all T latents at once: with a "
    "KL of tens of nats, K samples typically close less of the gap to the ELBO than for one z per "
    "sentence, so its NLL is a looser upper bound than theirs at the same K. Its auxiliary cost "
    "is ours in scale: averaged over b_t's dimensions at weight 1 (the code sums them; its "
    "weight defaults to 0), it earns at most 3.08 nats a step, less than a word's likelihood "
    "costs, so it cannot outweigh the ELBO; the weight is untuned "
    "(`papers/goyal2017_zforcing/presets.py`).")
NOT_RUN = ("speech data not available here (Blizzard, TIMIT); the model has no Gaussian frame "
           "output")


def _variant(name: str) -> Variant:
    dataset, arm = name.split("-", 1)
    return Variant(
        name=name, description=f"{DATASETS[dataset]}: {ARMS[arm]}",
        model_config=SequenceLMConfig if arm == "lstm" else ZForcingConfig, build=build,
        presets=presets_of_variant(PRESETS, name, names=SPEECH_PRESETS if dataset in SPEECH else None),
        reported=reported(name), runnable=dataset not in SPEECH,
        not_run_reason=NOT_RUN if dataset in SPEECH else "",
        benchmark=dataset == "ptb" and arm != "lstm",
        reading_note=READING_NOTE if arm != "lstm" else "", latent_per_step=arm != "lstm")


PAPER = register_paper(Paper(
    name=NAME,
    title="Goyal et al. 2017 — Z-Forcing: Training Stochastic Recurrent Networks",
    citation=("Goyal, Sordoni, Côté, Ke, Bengio. NIPS 2017. arXiv:1711.05411. "
              "Code (speech only): sordonia/zforcing."),
    variants={name: _variant(name) for name in VARIANTS},
    table_metrics=("test/nll", "test/ppl", "test/elbo", "test/elbo_ppl", "test/kl", "test/mi",
                   "test/au"),
    notes=("One latent z_t per step: KL is per sequence, summed over steps (per word: kl x "
           "num_examples / num_targets); IW-NLL is over the whole z sequence; MI uses the batch "
           "pool and sits near its log M cap for sequence latents. PTB rows are a substitute for "
           "IMDB and have "
           "no paper target; MNIST cpu rows read a row per step (paper: a pixel). "
           "The auxiliary cost is averaged over b_t's dimensions at weight 1 (ours; the code sums "
           "them and defaults the weight to 0): at most 3.08 nats a step, so it cannot outweigh "
           "the ELBO; untuned (presets.py). "
           "No Z-Forcing number was retrieved. " + CONTEXT),
))

__all__ = ["PAPER"]

"""Xie et al. 2017: noising the training data of an LSTM language model acts as smoothing.

The model is the TF PTB-tutorial LSTM language model (`stanfordmlgroup/nlm-noising`, `lm.py`)
trained on the continuous PTB stream; the method is the noise applied to each training window
(`repro.data.noise`, shared with Bowman's word dropout). Implementation details, each with
where the paper's facts (`docs/papers/xie2017_noising.md`, "docs" below) or the reference
code say so:

- Model: embedding -> 2-layer LSTM -> softmax, embedding size = hidden size, input and output
  embeddings untied (docs §Architecture, verified from `lm.py`).
- Dropout with probability `dropout` on the input embeddings and on every LSTM layer's output,
  the top one included (docs; `lm.py`'s `DropoutWrapper(output_keep_prob)` on each cell), so
  between the layers too (`nn.LSTM(dropout=...)`) and before the softmax.
- Initialisation: every parameter U(-0.1, 0.1) (docs, verified); `lm.py` adds a forget bias of
  1.0 inside its `BasicLSTMCell`, so we add 1.0 to the forget gate's bias. PyTorch has two LSTM
  biases where TF has one; the second is zeroed (besides that 1.0) so their sum keeps the
  U(-0.1, 0.1) spread. (Whether TF 1.x gave its LSTM bias the scope's uniform initialiser or
  zeros is not checked; the docs say every parameter.)
- Stream training (docs §Training; `loader.py` `_reshape_data`): the train split is one token
  stream with `<eos>` after each sentence, cut into 20 rows and read in windows of 35; the LSTM
  state is carried from window to window (gradients truncated at the window edge) and reset at the start
  of each epoch and of each evaluation (`repro.data.stream`).
- Loss: the window's summed target NLL over the rows' mean (`sequence_loss_by_example` summed,
  divided by batch size, in `lm.py`); that scale matters for SGD at lr 1 with clipping at 5.
- Noising, training windows only (docs; `lm.py` calls `noise_batch` for the train split only),
  with one Bernoulli draw per input position (docs §Architecture, verified, `loader.py`
  `noise_batch`):
  * blank: probability γ, input -> `<_>`, an extra id appended after the vocabulary (docs); the
    softmax has that output too in every variant, as in the code;
  * unigram: probability γ, input -> a draw from the training unigram distribution (docs);
  * bigram KN: probability γ · N1+(x, •) / c(x) with x the input token itself
    (`--absolute_discounting`), and both the input and the target at that position replaced by
    independent draws from the continuation distribution ∝ N1+(•, w) (docs §Pitfalls: this
    breaks the (x, y) pairing; done exactly so). Counts are over consecutive pairs of the training
    stream, `<eos>` included, as `utils.py` counts them.
  No id is protected: in a stream `<eos>` is an ordinary token and the code noises it too.
- Noise draws come from torch's global RNG, seeded by the run's `seed` (in the record) and
  saved in every checkpoint, so a run is reproducible and resumes exactly; the code's NumPy
  draws are unseeded (docs §Pitfalls).
- Evaluation: exact log-likelihood of the stream, state carried across windows, at the eval
  batch size (1 in every preset: the paper's exact stateful test pass, docs §Evaluation).
  `test/ppl` is the per-token perplexity of the continuous PTB test stream with `<eos>` counted;
  `test/nll` is per row-window, not per sentence, and is not reported in the table.

Deviations (sizes, epochs and values not retrieved are in `presets.py`):
- None in the LR schedule: after an epoch without a new best validation PPL the rate is
  halved and the best epoch's parameters restored, and training stops after the 9th decay
  (`lm.py`; `optim.plateau_restores_best`, `train.stop_after_decays` in the presets). `lm.py`'s
  `tf.train.Saver` also restores the optimiser's variables with the parameters; SGD has none,
  and the trainer restores the optimiser state too, so an Adam override behaves as the code's
  `--optimizer adam` would. Test uses the best-validation checkpoint, as the code.
- Validation runs at batch 1 (the exact stream PPL), not at the training shape 20 x 35.
- The softmax has 10,003 outputs, the code's 10,001 plus our vocabulary's `<pad>` and `<bos>`,
  which never occur in a stream (PTB's own `<unk>` is our `<unk>`).
- The last window of each row may be shorter than 35 (the code drops it) so that evaluation
  scores every token after the first; training sees those few extra targets too.
- The code gives the training stream's first word one left context if it has none (its
  "edge case"); we do not (a continuation probability of ~2e-6).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from repro.data.stream import StreamBatch, StreamCorpus
from repro.config import ConfigError, ModelConfig, bounded
from repro.data.noise import NoiseConfig, build_noise
from repro.model import LanguageModel


@dataclass
class NoisingLMConfig(ModelConfig):
    hidden_size: int = bounded(512, lo=1)           # also the embedding size (`lm.py --hidden_dim`)
    num_layers: int = bounded(2, lo=1)
    dropout: float = bounded(0.0, lo=0.0, hi=1.0)   # `lm.py --drop_prob`
    init_scale: float = bounded(0.1, lo=0.0)        # U(-init_scale, init_scale)
    noise: NoiseConfig = field(default_factory=NoiseConfig)


class NoisedStreamLM(LanguageModel):
    """A stateful LSTM language model over stream windows, its training windows noised.

    `log_likelihood(batch)`: `StreamBatch` with `(rows, T)` inputs/targets -> `(1, rows)`
    summed target log-probabilities. The final LSTM state of each window is kept (detached) and
    continues the next window unless that window starts a stream.
    """

    def __init__(self, cfg: NoisingLMConfig, vocab, train_stream: torch.Tensor):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.blank_id = len(vocab)          # `<_>`, appended after the vocabulary as in the code
        size, hidden = len(vocab) + 1, cfg.hidden_size
        self.embed = nn.Embedding(size, hidden)
        self.lstm = nn.LSTM(hidden, hidden, cfg.num_layers, dropout=cfg.dropout, batch_first=True)
        self.dropout = nn.Dropout(cfg.dropout)
        self.proj = nn.Linear(hidden, size)
        self.noise = build_noise(cfg.noise, train_stream, size, self.blank_id)
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None
        self._initialise(cfg.init_scale)

    @torch.no_grad()
    def _initialise(self, scale: float) -> None:
        for param in self.parameters():
            param.uniform_(-scale, scale)
        hidden = self.cfg.hidden_size
        for layer in range(self.cfg.num_layers):
            bias = getattr(self.lstm, f"bias_hh_l{layer}")
            bias.zero_()
            bias[hidden:2 * hidden] = 1.0   # PyTorch's gate order is input, forget, cell, output

    def log_likelihood(self, batch: StreamBatch, z=None) -> torch.Tensor:
        inputs, targets = batch.inputs, batch.targets
        if self.training:
            inputs, targets = self.noise(inputs, targets)
        state = None if batch.starts_stream else self.state
        hidden, state = self.lstm(self.dropout(self.embed(inputs)), state)
        self.state = (state[0].detach(), state[1].detach())
        logits = self.proj(self.dropout(hidden)).float()
        token_nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none")
        return -token_nll.view(targets.shape).sum(1).unsqueeze(0)


def build(cfg, corpus) -> NoisedStreamLM:
    if not isinstance(corpus, StreamCorpus):
        raise ConfigError(f"{cfg.paper} trains a stream language model: data.dataset must be a "
                          f"stream corpus such as 'ptb_stream', not {cfg.data.dataset!r}")
    return NoisedStreamLM(cfg.model, corpus.vocab, corpus.stream("train"))

"""Zhao et al. 2017: a conditional VAE for dialog responses, kept from collapsing by a
bag-of-words loss, and kgCVAE, which also predicts the response's dialog act from (c, z).

Implementation details (what we do; where the paper's facts, `docs/papers/zhao2017_kgcvae.md`
("docs" below), say so; "code" = `snakeztc/NeuralDialog-CVAE`, read for this package):

- Context c: a hierarchical encoder (`repro.dialog_models.HierarchicalContextEncoder`): a bidirectional
  GRU over each context utterance (300 per direction), the last states of both directions joined
  with a one-hot floor bit (the turn's speaker is the responder: code, `data_utils.py`), then a
  GRU of 600 over the last 10 turns; c is its last state (docs §Architecture). On SwDA c
  also holds a 30-d topic embedding (docs); the speaker profiles of the documented c are not loaded
  by `repro.data.dialog`, so they are left out. DailyDialog has neither: c = the context state
  (docs §Substitutes: those inputs are dropped).
- Utterances are wrapped as `<bos> w.. <eos>` before encoding (docs §Data, preprocessing); the
  response is encoded by the same utterance encoder (code: `output_embedding`, `reuse=True`).
  One word embedding (200) is shared by the encoders and the decoder, its padding row fixed
  at zero (code: `embedding_mask`).
- Recognition network q(z|x, c): one linear layer on [c, x (, act features)] -> mu, log var
  (docs). Prior network p(z|c): tanh layer of max(2 x 200, 100) = 400, then linear (docs).
  Latent 200. Both are `DiagonalGaussian`s, so the KL is the analytic Gaussian-to-Gaussian one
  (docs/metrics.md §4) and the IW bound uses log p(z|c).
- kgCVAE (code: `use_hcf=True`): act embedding 30; tanh 30 of it joins the recognition input
  (docs); an act classifier, tanh 400 on [c, z] -> acts, trained by cross-entropy on the
  annotated act (docs). The decoder gets the act embedding in its initial-state input and,
  appended, at every step (code: `context_vector` in `decoder_fn_lib.py`; docs §Architecture
  names only the initial state): the gold act's embedding in training, the probability-weighted
  embedding of the predicted act when generating (docs). Examples whose act is unknown (DailyDialog's
  one mislabelled dialog) are left out of the act loss, give the recognition network a zero
  act embedding, and feed the decoder the predicted act (ours: the code has no unknown acts).
- Decoder: GRU 400, initial state = linear([c, z (, act)]) (docs); output projection to the
  vocabulary. No dropout and no word dropout (docs §Training: keep_prob = dec_keep_prob = 1).
- Bag-of-words loss (docs): tanh 400 on [c, z] -> vocabulary logits; the same softmax is scored
  against every target token (the response's words and `<eos>`, code: `labels`), summed per
  response. Loss = rec + w_KL KL + BoW (+ act NLL), each averaged over the batch (code:
  `aug_elbo`); w_KL = min(step / 10,000, 1) per update (docs §Training, `full_kl_step`).
- Initialisation U(-0.08, 0.08) for every weight matrix and embedding (docs); biases start at 0
  (ours: TF's bias defaults differ per layer).
- Baseline: the same context encoder and decoder without z, initial state = linear(c),
  scored by its exact likelihood (docs §Results: an HRED-style encoder-decoder).

Evaluation (docs/metrics.md §1-§8; the dialog metrics are `repro.dialog_models.dialog_metrics`):
- `log_likelihood(batch, z)`, used by the shared evaluation (IW-NLL, PPL, ELBO), feeds kgCVAE's
  decoder the act predicted from (z, c), as at generation time (docs), so its NLL bounds the
  likelihood of the response alone and compares with CVAE's and the baseline's
  (`model.eval_act="gold"` gives the gold-act variant instead).
- `rc_ppl_posterior` is the released code's perplexity (docs §Evaluation): one z from the
  recognition network, KL left out, and for kgCVAE the decoder fed the gold act (the code's `valid_model`
  runs with `forward=False`). It is what the paper's PPL column reports, not a bound.
- Responses: N = 10 per context, z drawn from the prior p(z|c), greedy decoding (code:
  `context_decoder_fn_inference`, `decode_type='greedy'`); the baseline samples its N responses
  from the decoder (ours: the docs do not say; texar's reprint of the baseline, "computed with
  5 sampling", has precision below recall, so its samples differ). Act accuracy: the act
  predicted with each prior sample against the annotation.

Deviations from the paper:
- Single-reference BLEU, so the BLEU numbers are not on the paper's scale. The paper scores
  against several references per context, collected for its SwDA test set and released as
  `data/test_multi_ref.json` (aligned with the test dialogs, its authors say in the repository's
  issue #12; the code never reads it). That file is not in the shared data store, whose SwDA
  test split gives one reference (the next turn) for each of its 5,481 contexts, and no SwDA
  train split is there to train on. `repro.bleu.zhao_bleu` implements the multi-reference form
  (precision = mean over samples of the best reference, recall = mean over references of the
  best sample), which equals the code's single-reference form for one reference. `<unk>`
  counts as a word in BLEU.
- DailyDialog (4 acts) stands in for Switchboard (42 acts) in the `smoke` and `cpu` presets;
  the first turn of a dialog is context only (the code prepends a `<s> <d> </s>` turn, so its
  first turn is also a response).
- Context utterances are read up to their length; the code runs its bidirectional encoder over
  zero-embedded padding (`get_bi_rnn_encode` infers lengths from non-zero embeddings, so the
  padding is skipped there too, except where a real word embeds to zero).
- Early stopping and epochs: see `presets.py`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from repro.config import ConfigError, KLScheduleConfig, bounded
from repro.data.dialog import UNKNOWN_LABEL
from repro.dialog_models import (BagOfWordsHead, DialogModelConfig, GaussianNetwork,
                          HierarchicalContextEncoder, ResponseDecoder, SampledResponses,
                          UtteranceEncoder, decode_responses)
from repro.model import LanguageModel, LatentVariableModel
from repro.nn.flows import sample_kl_dims
from repro.sentence_models import DecoderInputs

FULL_KL_STEP = 10_000  # code: `full_kl_step`, in updates


@dataclass
class EncoderDecoderConfig(DialogModelConfig):
    topic_embed_size: int = bounded(0, lo=0)         # SwDA: 30; 0 = no topic in c
    init_scale: float = bounded(0.08, lo=0.0)


@dataclass
class CVAEConfig(EncoderDecoderConfig):
    latent_size: int = bounded(200, lo=1)
    prior_hidden: int = bounded(400, lo=1)           # max(2 * latent, 100) in the code
    bag_of_words: bool = True
    bow_hidden: int = bounded(400, lo=1)
    knowledge_guided: bool = False                   # kgCVAE (code: use_hcf)
    act_embed_size: int = bounded(30, lo=1)
    act_feature_size: int = bounded(30, lo=1)        # tanh layer on the act embedding, into q
    act_hidden: int = bounded(400, lo=1)
    eval_act: str = bounded("predicted", choices=("predicted", "gold"))
    kl: KLScheduleConfig = field(default_factory=lambda: KLScheduleConfig(
        kind="linear", warmup_steps=FULL_KL_STEP))


def init_uniform(module: nn.Module, scale: float) -> None:
    """Weights and embeddings U(-scale, scale), biases 0, embedding padding rows 0."""
    for parameter in module.parameters():
        if parameter.dim() >= 2:
            nn.init.uniform_(parameter, -scale, scale)
        else:
            nn.init.zeros_(parameter)
    for sub in module.modules():
        if isinstance(sub, nn.Embedding) and sub.padding_idx is not None:
            with torch.no_grad():
                sub.weight[sub.padding_idx].zero_()


class DialogContext(nn.Module):
    """c `(B, Dc)`: the hierarchical context encoding, with the topic embedding where configured.
    Holds the word embedding the decoder shares."""

    def __init__(self, cfg: EncoderDecoderConfig, vocab, num_topics: int):
        super().__init__()
        self.embedding = nn.Embedding(len(vocab), cfg.embed_size, padding_idx=vocab.pad)
        self.encoder = HierarchicalContextEncoder(UtteranceEncoder(self.embedding, cfg.utterance_hidden),
                                                  cfg.context_hidden, vocab)
        self.topic = nn.Embedding(num_topics, cfg.topic_embed_size) if cfg.topic_embed_size else None
        self.output_size = cfg.context_hidden + cfg.topic_embed_size

    def forward(self, batch) -> torch.Tensor:
        c = self.encoder(batch)
        if self.topic is None:
            return c
        return torch.cat([self.topic(batch.labels["topic"]).to(c.dtype), c], -1)

    def encode_response(self, batch) -> torch.Tensor:
        """x `(B, 2H)`: the response through the utterance encoder (markers included)."""
        return self.encoder.utterances(batch.response, batch.lengths)


def _num_labels(corpus, name: str) -> int:
    names = getattr(corpus, "label_names", {}).get(name)
    if not names:
        raise ConfigError(f"{corpus.name} has no {name!r} labels; this model needs them "
                          f"(labels here: {sorted(getattr(corpus, 'label_names', {}))})")
    return len(names)


class EncoderDecoder(LanguageModel):
    """The baseline: p(x|c) by a GRU decoder whose initial state is linear in c; exact likelihood."""

    def __init__(self, cfg: EncoderDecoderConfig, vocab, num_topics: int = 0):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.context = DialogContext(cfg, vocab, num_topics)
        self.decoder = ResponseDecoder(self.context.embedding, cfg.decoder_hidden, self.context.output_size)
        self.decoder_inputs = DecoderInputs(1.0, vocab)
        init_uniform(self, cfg.init_scale)

    def log_likelihood(self, batch, z=None) -> torch.Tensor:
        condition = self.context(batch).unsqueeze(0)
        return self.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask, condition)

    def sample_responses(self, batch, num_samples: int, max_len: int, generator=None) -> SampledResponses:
        """N responses per context by ancestral sampling from the decoder (greedy would give N
        copies of one response)."""
        c = self.context(batch)
        condition = c.unsqueeze(0).expand(num_samples, *c.shape)
        return SampledResponses(decode_responses(self, condition, max_len, sample=True, generator=generator))


class DialogCVAE(LatentVariableModel):
    """CVAE / CVAE + BoW / kgCVAE: q(z|x, c (, y)), p(z|c), p(x|c, z (, y)), BoW and act heads."""

    def __init__(self, cfg: CVAEConfig, vocab, num_acts: int = 0, num_topics: int = 0):
        super().__init__()
        self.cfg, self.vocab = cfg, vocab
        self.context = DialogContext(cfg, vocab, num_topics)
        c_size, z_size = self.context.output_size, cfg.latent_size
        generation_size = c_size + z_size
        act_size = cfg.act_embed_size if cfg.knowledge_guided else 0
        recognition_act = cfg.act_feature_size if cfg.knowledge_guided else 0
        self.recognition = GaussianNetwork(c_size + self.context.encoder.utterances.output_size
                                           + recognition_act, z_size)
        self.prior_net = GaussianNetwork(c_size, z_size, cfg.prior_hidden)
        self.bow = BagOfWordsHead(generation_size, cfg.bow_hidden, len(vocab)) if cfg.bag_of_words else None
        if cfg.knowledge_guided:
            self.num_acts = num_acts
            # Row `num_acts` stands for an unknown act: a zero embedding, never predicted.
            self.act_embedding = nn.Embedding(num_acts + 1, cfg.act_embed_size, padding_idx=num_acts)
            self.act_features = nn.Sequential(nn.Linear(cfg.act_embed_size, cfg.act_feature_size), nn.Tanh())
            self.act_classifier = nn.Sequential(nn.Linear(generation_size, cfg.act_hidden), nn.Tanh(),
                                                nn.Linear(cfg.act_hidden, num_acts))
        self.decoder = ResponseDecoder(self.context.embedding, cfg.decoder_hidden,
                                       generation_size + act_size, step_condition_size=act_size)
        self.decoder_inputs = DecoderInputs(1.0, vocab)
        init_uniform(self, cfg.init_scale)

    # --- the model interface ---

    def posterior(self, batch):
        return self._posterior(batch, self.context(batch))

    def prior(self, batch):
        return self.prior_net(self.context(batch))

    def log_likelihood(self, batch, z):
        """log p(x|c, z) `(n, B)` for z `(n, B, d)`; kgCVAE's decoder gets the act predicted from
        (c, z) (or the gold act with `eval_act="gold"`)."""
        return self.decoder_log_likelihood(batch, z, gold_act=self.cfg.eval_act == "gold")

    def loss(self, batch, step: int) -> dict[str, torch.Tensor]:
        c = self.context(batch)
        z, kl_dims = sample_kl_dims(self._posterior(batch, c), self.prior_net(c))
        generation = self._generation_inputs(c, z)
        act_logits = self._act_logits(generation)
        rec = -self._decode(batch, generation, act_logits, gold_act=True)[0]
        terms = self.elbo_terms(rec, kl_dims, step)
        if self.bow is not None:
            terms["bow"] = -self.bow.log_likelihood(generation[0], batch.targets, batch.target_mask).mean()
            terms["loss"] = terms["loss"] + terms["bow"]
        if act_logits is not None:
            terms["act"] = act_nll(act_logits[0], batch.labels["act"])
            terms["loss"] = terms["loss"] + terms["act"]
        return terms

    # --- parts ---

    def decoder_log_likelihood(self, batch, z: torch.Tensor, gold_act: bool) -> torch.Tensor:
        """log p(x|c, z (, act)) `(n, B)`; `gold_act`: kgCVAE's decoder gets the annotated act
        (training, the code's perplexity), else the prediction from (c, z) (generation)."""
        generation = self._generation_inputs(self.context(batch), z)
        return self._decode(batch, generation, self._act_logits(generation), gold_act)

    def rc_log_likelihood(self, batch, z: torch.Tensor) -> torch.Tensor:
        """The released code's reconstruction term (its perplexity): gold act for kgCVAE."""
        return self.decoder_log_likelihood(batch, z, gold_act=True)

    def _posterior(self, batch, c: torch.Tensor):
        inputs = [c, self.context.encode_response(batch)]
        if self.cfg.knowledge_guided:
            inputs.append(self.act_features(self.act_embedding(self._act_index(batch))).to(c.dtype))
        return self.recognition(torch.cat(inputs, -1))

    def _generation_inputs(self, c: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """[c, z] `(n, B, Dc + d)` for z `(n, B, d)`."""
        return torch.cat([c.unsqueeze(0).expand(z.shape[0], *c.shape).to(z.dtype), z], -1)

    def _act_logits(self, generation: torch.Tensor) -> torch.Tensor | None:
        return self.act_classifier(generation).float() if self.cfg.knowledge_guided else None

    def _act_index(self, batch) -> torch.Tensor:
        act = batch.labels["act"]
        return torch.where(act == UNKNOWN_LABEL, self.num_acts, act)

    def _decoder_act(self, batch, act_logits: torch.Tensor, gold_act: bool) -> torch.Tensor:
        """The act embedding the decoder reads `(n, B, E)`: probability-weighted over the
        predicted acts, or the annotated act's where it is known and `gold_act`."""
        predicted = torch.softmax(act_logits, -1) @ self.act_embedding.weight[:self.num_acts]
        if not gold_act:
            return predicted
        known = (batch.labels["act"] != UNKNOWN_LABEL)[None, :, None]
        return torch.where(known, self.act_embedding(self._act_index(batch)).unsqueeze(0), predicted)

    def _decoder_condition(self, batch, generation, act_logits, gold_act: bool) -> torch.Tensor:
        if act_logits is None:
            return generation
        act = self._decoder_act(batch, act_logits, gold_act).to(generation.dtype)
        return torch.cat([generation, act], -1)

    def _decode(self, batch, generation, act_logits, gold_act: bool) -> torch.Tensor:
        condition = self._decoder_condition(batch, generation, act_logits, gold_act)
        return self.decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask, condition)

    def sample_responses(self, batch, num_samples: int, max_len: int, generator=None) -> SampledResponses:
        """N responses per context: z ~ p(z|c), kgCVAE's predicted act, greedy decoding (code)."""
        c = self.context(batch)
        z, _ = self.prior_net(c).rsample(num_samples, generator)
        generation = self._generation_inputs(c, z)
        act_logits = self._act_logits(generation)
        condition = self._decoder_condition(batch, generation, act_logits, gold_act=False)
        acts = act_logits.argmax(-1) if act_logits is not None else None
        return SampledResponses(decode_responses(self, condition, max_len), acts)


def act_nll(logits: torch.Tensor, acts: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy `(B, A), (B,) -> ()` over the examples whose act is known (0 if none)."""
    known = (acts != UNKNOWN_LABEL).sum().clamp(min=1)
    return F.cross_entropy(logits, acts, ignore_index=UNKNOWN_LABEL, reduction="sum") / known


def build(cfg, corpus):
    m = cfg.model
    num_topics = _num_labels(corpus, "topic") if m.topic_embed_size else 0
    if not isinstance(m, CVAEConfig):
        return EncoderDecoder(m, corpus.vocab, num_topics)
    num_acts = _num_labels(corpus, "act") if m.knowledge_guided else 0
    return DialogCVAE(m, corpus.vocab, num_acts, num_topics)


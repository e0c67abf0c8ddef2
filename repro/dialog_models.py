"""Dialog response models: shared parts and the sampled-response metrics driver.

Zhao et al. 2017 (CVAE, kgCVAE) assemble these parts in `papers/zhao2017_kgcvae`; any model of
a response given a `repro.data.dialog.DialogBatch` can reuse them. Shapes: B examples, C context
turns of up to U tokens, T response positions, n samples per example, V words.

Parts:
- `UtteranceEncoder`: bidirectional GRU over `<bos> w.. <eos>`; the last forward and backward
  states, concatenated: `(N, L), (N,) -> (N, 2H)`.
- `HierarchicalContextEncoder`: every context turn through the utterance encoder, joined with a
  one-hot floor bit (1: the turn's speaker is the responder, Zhao's `floor == out_floor`), then
  a GRU over the turns; its last state is the context c: `DialogBatch -> (B, H)`. Padding turns
  and padding tokens are never read (packed sequences).
- `GaussianNetwork`: an input vector -> `DiagonalGaussian`; one linear layer (Zhao's recognition
  network q(z|x, c)) or a tanh layer and a linear one (his prior network p(z|c)). The KL between
  the two is `posterior.kl_per_dim(prior)`.
- `ResponseDecoder`: a GRU over `<bos> w..` whose initial state is linear in a conditioning
  vector ([c, z] or [c, z, act]); the last `step_condition_size` entries of that vector are also
  appended to every input (kgCVAE's act embedding). Scores n conditioning vectors per response in
  one pass, and decodes through `repro.generate.decode` (pass the conditioning vector as "z").
- `BagOfWordsHead` / `bag_of_words_log_likelihood`: Zhao's auxiliary loss: one softmax over the
  vocabulary from [c, z], scored against every target token regardless of order.
- `decode_responses`: n responses per context from n conditioning vectors.
- `DialogModelConfig`: the encoder and decoder sizes and the evaluation settings these models share.

Metrics (`dialog_metrics`, docs/metrics.md §8). A model opts in with
`sample_responses(batch, num_samples, max_len, generator) -> SampledResponses` (how it draws its
N responses per context is its own: Zhao's CVAEs decode greedily from N prior samples of z), and,
if `has_latent`, `posterior` and `log_likelihood` for the reconstruction perplexity. Names, with
N the samples per context and a single reference per context everywhere here:
- `bleu_zhao_prec_<k>_n<N>_ref1`, `bleu_zhao_rec_<k>_n<N>_ref1`, `bleu_zhao_f1_<k>_n<N>_ref1`,
  k = 1..4: Zhao's sentence BLEU-k (NLTK method7, weights 1/k; k = 3 is his code's setting),
  precision = mean over the N samples, recall = max, averaged over contexts (`repro.bleu`).
- `sacrebleu_corpus_n1_ref1`: sacreBLEU corpus BLEU (0-100) of the first sample per context; its
  signature goes into the options.
- `distinct_<k>_n<N>`, k = 1, 2: distinct k-grams / all k-grams over every sampled response
  (Li et al. 2016), 0 when there are none.
- `act_acc_prior_n<N>`: accuracy of the dialog act the model predicts with each sample (kgCVAE),
  against the gold act, over samples and examples whose act is known.
- `rc_ppl_posterior`: exp(sum -log p(x|z, c) / sum T), one z ~ q(z|x, c) per example, the KL
  left out: the kgCVAE code's `rc_peplexity` (docs/metrics.md §3). Not a likelihood bound.
BLEU is computed on the vocabulary's tokens (lower-cased WordPunct, `<unk>` kept as a word).
"""
from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from repro.bleu import corpus_bleu, zhao_bleu
from repro.config import ModelConfig, bounded
from repro.data.dialog import UNKNOWN_LABEL
from repro.evaluate import exp_or_inf
from repro.generate import decode
from repro.nn.distributions import DiagonalGaussian
from repro.nn.lstm import OutputLayer

ZHAO_BLEU_ORDERS = 4
DISTINCT_ORDERS = (1, 2)
SAMPLES_TEXT_CONTEXTS = 100  # contexts written to the readable samples file (the JSONL has all)


# --- encoders ------------------------------------------------------------------------------

def with_markers(tokens: torch.Tensor, lengths: torch.Tensor, bos: int, eos: int, pad: int) -> torch.Tensor:
    """`(N, U)` word ids, `(N,)` lengths -> `(N, U + 2)` as `<bos> w.. <eos> <pad>..`: context turns
    are stored bare, responses with markers, and one encoder reads both."""
    out = torch.full((tokens.shape[0], tokens.shape[1] + 2), pad, dtype=tokens.dtype, device=tokens.device)
    out[:, 0] = bos
    out[:, 1:-1] = tokens
    out[torch.arange(len(tokens), device=tokens.device), lengths + 1] = eos
    return out


class UtteranceEncoder(nn.Module):
    """Bidirectional GRU; the last state of each direction, concatenated (Zhao's `bi_rnn`)."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int):
        super().__init__()
        self.embed = embedding
        self.rnn = nn.GRU(embedding.embedding_dim, hidden_size, batch_first=True, bidirectional=True)
        self.output_size = 2 * hidden_size

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """`tokens (N, L)`, `lengths (N,)` (>= 1, markers included) -> `(N, 2H)`."""
        packed = pack_padded_sequence(self.embed(tokens), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, last = self.rnn(packed)                       # (2, N, H), in the input's order
        return torch.cat([last[0], last[1]], -1)


class HierarchicalContextEncoder(nn.Module):
    """Context turns -> utterance encodings + floor bit -> GRU over turns -> c `(B, H)`."""

    def __init__(self, utterances: UtteranceEncoder, hidden_size: int, vocab):
        super().__init__()
        self.utterances = utterances
        self.rnn = nn.GRU(utterances.output_size + 2, hidden_size, batch_first=True)
        self.output_size = hidden_size
        self.bos, self.eos, self.pad = vocab.bos, vocab.eos, vocab.pad

    def forward(self, batch) -> torch.Tensor:
        """`DialogBatch` -> c `(B, H)`, the context GRU's state after the last real turn."""
        present = batch.context_lengths > 0                              # (B, C)
        lengths = batch.context_lengths[present]
        turns = with_markers(batch.context[present], lengths, self.bos, self.eos, self.pad)
        # Only the real turns are encoded: most examples have fewer than C turns of context.
        encoded = self.utterances(turns, lengths + 2)
        per_turn = encoded.new_zeros(*present.shape, encoded.shape[-1])
        per_turn[present] = encoded
        floor = nn.functional.one_hot((batch.context_speakers == batch.speaker[:, None]).long(), 2)
        joint = torch.cat([per_turn, floor.to(per_turn.dtype)], -1)
        packed = pack_padded_sequence(joint, batch.num_context.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, last = self.rnn(packed)
        return last[-1]


class GaussianNetwork(nn.Module):
    """`(..., D_in) -> DiagonalGaussian` over `(..., d)`: a linear layer, or with `hidden_size` a
    tanh layer first (Zhao's prior network)."""

    def __init__(self, input_size: int, latent_size: int, hidden_size: int = 0):
        super().__init__()
        layers = [nn.Linear(input_size, hidden_size), nn.Tanh()] if hidden_size else []
        self.net = nn.Sequential(*layers, nn.Linear(hidden_size or input_size, 2 * latent_size))

    def forward(self, inputs: torch.Tensor) -> DiagonalGaussian:
        mu, logvar = self.net(inputs).float().chunk(2, -1)
        return DiagonalGaussian(mu, logvar)


# --- decoder and bag of words --------------------------------------------------------------

def repeat_samples(t: torch.Tensor, n: int) -> torch.Tensor:
    """`(B, ...) -> (n*B, ...)`, sample-major (row k*B + b is sample k of example b)."""
    return t.unsqueeze(0).expand(n, *t.shape).reshape(-1, *t.shape[1:]) if n > 1 else t


class ResponseDecoder(nn.Module):
    """GRU response decoder conditioned on a vector `(n, B, D)`: initial state = linear(vector);
    its last `step_condition_size` entries are also appended to every input embedding."""

    def __init__(self, embedding: nn.Embedding, hidden_size: int, condition_size: int,
                 step_condition_size: int = 0):
        super().__init__()
        self.embed = embedding
        self.step_condition_size = step_condition_size
        self.init_state = nn.Linear(condition_size, hidden_size)
        self.rnn = nn.GRU(embedding.embedding_dim + step_condition_size, hidden_size, batch_first=True)
        self.out = OutputLayer(hidden_size, embedding.num_embeddings)

    def hidden_states(self, inputs: torch.Tensor, condition: torch.Tensor, state=None):
        """`inputs (B, T)`, `condition (n, B, D)` -> states `(n*B, T, H)` and the last state
        `(1, n*B, H)`; `state` continues a previous call (step-by-step decoding)."""
        n = condition.shape[0]
        flat = condition.reshape(-1, condition.shape[-1])
        emb = repeat_samples(self.embed(inputs), n)
        if self.step_condition_size:
            step = flat[:, -self.step_condition_size:]
            emb = torch.cat([emb, step.unsqueeze(1).expand(-1, emb.shape[1], -1).to(emb.dtype)], -1)
        if state is None:
            state = self.init_state(flat).unsqueeze(0).to(emb.dtype)
        return self.rnn(emb, state)

    def log_likelihood(self, inputs, targets, mask, condition) -> torch.Tensor:
        """Summed target log-probabilities `(n, B)` of the response under each conditioning vector."""
        hidden, _ = self.hidden_states(inputs, condition)
        n = condition.shape[0]
        return self.out(hidden, repeat_samples(targets, n), repeat_samples(mask, n)).view(n, -1)


def bag_of_words_log_likelihood(logits: torch.Tensor, targets: torch.Tensor,
                                mask: torch.Tensor) -> torch.Tensor:
    """Sum over the response's target tokens of log softmax(logits)[token], order ignored:
    `logits (..., B, V)`, `targets (B, T)`, `mask (B, T)` -> `(..., B)`. The targets are the
    response words and `<eos>` (Zhao's labels), padding excluded."""
    log_p = torch.log_softmax(logits.float(), -1)
    index = targets.expand(*log_p.shape[:-2], *targets.shape)
    return log_p.gather(-1, index).masked_fill(~mask, 0.0).sum(-1)


class BagOfWordsHead(nn.Module):
    """[c, z] -> tanh layer -> vocabulary logits (Zhao's `bow_fc1`, `bow_project`)."""

    def __init__(self, input_size: int, hidden_size: int, vocab_size: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(input_size, hidden_size), nn.Tanh(),
                                 nn.Linear(hidden_size, vocab_size))

    def log_likelihood(self, inputs: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """`inputs (..., B, D)` -> bag-of-words log-likelihood of the response `(..., B)`."""
        return bag_of_words_log_likelihood(self.net(inputs), targets, mask)


# --- generation ----------------------------------------------------------------------------

@dataclass
class SampledResponses:
    """N responses per context: `tokens[b][k]` word ids (no `<bos>`, cut before `<eos>`), and
    `acts (N, B)` the dialog act predicted with each sample, for models that predict one."""

    tokens: list[list[list[int]]]
    acts: torch.Tensor | None = None


def decode_responses(model, condition: torch.Tensor, max_len: int, sample: bool = False,
                     generator: torch.Generator | None = None) -> list[list[list[int]]]:
    """Decode one response per conditioning vector `(n, B, D)` -> `[B][n]` word ids, greedily or
    by ancestral sampling. `model` offers `decoder` (a `ResponseDecoder`), `decoder_inputs` and
    `vocab`, as `repro.generate.decode` needs."""
    n, batch = condition.shape[:2]
    rows = decode(model, condition.reshape(n * batch, -1), max_len=max_len, sample=sample,
                  generator=generator)
    eos = model.vocab.eos
    rows = [row[:row.index(eos)] if eos in row else row for row in rows]
    return [[rows[k * batch + b] for k in range(n)] for b in range(batch)]


# --- metrics -------------------------------------------------------------------------------

@dataclass
class DialogEvalConfig:
    """The sampled-response evaluation (docs/metrics.md §8); on `cfg.eval.split`."""

    num_samples: int = bounded(10, lo=1)             # N responses per context (Zhao's final run: 10)
    max_examples: int | None = bounded(None, lo=1)   # a prefix of the split: decoding is the cost
    max_len: int = bounded(41, lo=1)                 # decoded tokens, <eos> included (Zhao: 40 + </s>)
    batch_size: int = bounded(60, lo=1)


@dataclass
class DialogModelConfig(ModelConfig):
    """The sizes every model built from these parts shares (Zhao's released code's defaults)."""

    embed_size: int = bounded(200, lo=1)
    utterance_hidden: int = bounded(300, lo=1)       # per direction
    context_hidden: int = bounded(600, lo=1)
    decoder_hidden: int = bounded(400, lo=1)
    dialog_eval: DialogEvalConfig = field(default_factory=DialogEvalConfig)


def distinct_n(sentences: list[list[str]], n: int) -> float:
    """Distinct n-grams / all n-grams over `sentences` (Li et al. 2016); 0 when there are none."""
    grams = Counter(tuple(s[i:i + n]) for s in sentences for i in range(len(s) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def sampled_metric_name(base: str, num_samples: int | None, references: int | None = None) -> str:
    """The sample and reference counts in the name (docs/metrics.md §8):
    `("bleu_zhao_prec_3", 10, 1) -> "bleu_zhao_prec_3_n10_ref1"`."""
    name = base if num_samples is None else f"{base}_n{num_samples}"
    return name if references is None else f"{name}_ref{references}"


@dataclass
class _Collected:
    """What the pass over the batches keeps: per context its sample strings, reference, and
    act outcomes; and the reconstruction NLL sums."""

    samples: list[list[str]] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    act_hits: int = 0
    act_total: int = 0
    rc_nll: float = 0.0
    rc_targets: int = 0


@dataclass
class DialogEvaluation:
    """`metrics` (unprefixed names), one row per context (context, reference, samples, acts),
    and the sacreBLEU signature to record beside `sacrebleu_corpus_n1_ref1`."""

    metrics: dict[str, float]
    rows: list[dict]
    sacrebleu_signature: str


@torch.no_grad()
def dialog_metrics(model, batches, vocab, num_samples: int = 10, max_len: int = 41, seed: int = 0,
                   act_names: list[str] | None = None) -> DialogEvaluation:
    """The module docstring's metrics over `batches` (an iterable of `DialogBatch`; moved to
    the model's device). A model's `rc_log_likelihood(batch, z) -> (1, B)`, where it has one,
    replaces `log_likelihood` for `rc_ppl_posterior` (kgCVAE: the decoder fed the gold act, as
    the released code's PPL is). The model is put in eval mode and its mode restored; sampling
    draws from one generator seeded by `seed` on the model's device."""
    rc_log_likelihood = getattr(model, "rc_log_likelihood", model.log_likelihood)
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    was_training = model.training
    model.eval()
    out = _Collected()
    try:
        for batch in batches:
            _collect(model, batch.to(device), vocab, num_samples, max_len, generator, act_names,
                     rc_log_likelihood, out)
    finally:
        model.train(was_training)
    return _summarise(out, num_samples)


def _collect(model, batch, vocab, num_samples, max_len, generator, act_names, rc_log_likelihood,
             out: _Collected) -> None:
    sampled = model.sample_responses(batch, num_samples, max_len, generator)
    gold = batch.labels.get("act") if sampled.acts is not None else None
    for b, hyps in enumerate(sampled.tokens):
        row = _row(batch, b, hyps, vocab)
        if gold is not None:
            predicted = sampled.acts[:, b].tolist()
            row["act"] = _act_name(int(gold[b]), act_names)
            row["sample_acts"] = [_act_name(a, act_names) for a in predicted]
            if gold[b] != UNKNOWN_LABEL:
                out.act_hits += sum(a == int(gold[b]) for a in predicted)
                out.act_total += len(predicted)
        out.samples.append(row["samples"])
        out.references.append(row["reference"])
        out.rows.append(row)
    if model.has_latent:
        z, _ = model.posterior(batch).rsample(1, generator)
        out.rc_nll -= float(rc_log_likelihood(batch, z).sum())
        out.rc_targets += int(batch.num_targets.sum())


def _row(batch, b: int, hyps: list[list[int]], vocab) -> dict:
    """Example b as text: its context turns (oldest first), reference and samples."""
    words = lambda ids: " ".join(vocab.decode(ids))  # noqa: E731
    turns = zip(batch.context[b][:batch.num_context[b]], batch.context_lengths[b])
    return {"context": [words(turn[:length].tolist()) for turn, length in turns],
            "reference": words(batch.response[b].tolist()),
            "samples": [words(h) for h in hyps]}


def _act_name(act: int, act_names: list[str] | None) -> str | int:
    if act == UNKNOWN_LABEL:
        return "unknown"
    return act_names[act] if act_names else act


def _summarise(out: _Collected, num_samples: int) -> DialogEvaluation:
    bleu = zhao_bleu(out.samples, out.references, ZHAO_BLEU_ORDERS)
    metrics = {sampled_metric_name(k, num_samples, 1): v for k, v in bleu.items()}
    first = [hyps[0] for hyps in out.samples]
    score, signature = corpus_bleu(first, out.references)
    metrics[sampled_metric_name("sacrebleu_corpus", 1, 1)] = score
    tokens = [h.split() for hyps in out.samples for h in hyps]
    for k in DISTINCT_ORDERS:
        metrics[sampled_metric_name(f"distinct_{k}", num_samples)] = distinct_n(tokens, k)
    if out.act_total:
        metrics[sampled_metric_name("act_acc_prior", num_samples)] = out.act_hits / out.act_total
    if out.rc_targets:
        metrics["rc_ppl_posterior"] = exp_or_inf(out.rc_nll / out.rc_targets)
    metrics["dialog_num_examples"] = len(out.samples)
    return DialogEvaluation(metrics, out.rows, signature)


def evaluation_batches(corpus, split: str, cfg: DialogEvalConfig):
    """The batches `dialog_metrics` reads: the first `cfg.max_examples` examples of `split` in
    stored order (all without it), by response length, unshuffled."""
    if cfg.max_examples is not None:
        prefix = corpus.split(split).subset(cfg.max_examples)
        corpus = dataclasses.replace(corpus, splits={**corpus.splits, split: prefix})
    return corpus.batches(split, cfg.batch_size, shuffle=False)


def write_dialog_evaluation(model, corpus, run_cfg, run_dir: Path) -> tuple[dict[str, float], list[Path]]:
    """The `Variant.evaluate_extra` hook of dialog models: `dialog_metrics` on the run's
    evaluation split with `run_cfg.model.dialog_eval`, written beside the run as
    `dialog_metrics.json` (metrics prefixed with the split, as records name them, and the
    options), `dialog_samples.jsonl` (every context) and `dialog_samples.txt` (the first
    contexts, readable). Returns the prefixed metrics and the paths."""
    split, cfg, seed = run_cfg.eval.split, run_cfg.model.dialog_eval, run_cfg.seed
    result = dialog_metrics(model, evaluation_batches(corpus, split, cfg), corpus.vocab,
                            cfg.num_samples, cfg.max_len, seed, corpus.label_names.get("act"))
    prefixed = {f"{split}/{name}": value for name, value in result.metrics.items()}
    options = {**dataclasses.asdict(cfg), "split": split, "seed": seed, "references": 1,
               "sacrebleu_signature": result.sacrebleu_signature,
               "zhao_bleu": "NLTK method7 sentence BLEU, weights 1/k (repro.bleu.zhao_bleu)"}
    rows, run_dir = result.rows, Path(run_dir)
    paths = [run_dir / name for name in ("dialog_metrics.json", "dialog_samples.jsonl", "dialog_samples.txt")]
    paths[0].write_text(json.dumps({"metrics": prefixed, "options": options}, indent=2, sort_keys=True))
    paths[1].write_text("".join(json.dumps(row) + "\n" for row in rows))
    paths[2].write_text(format_samples(rows[:SAMPLES_TEXT_CONTEXTS]))
    return prefixed, paths


def format_samples(rows: list[dict]) -> str:
    """Readable text of `dialog_metrics` rows: context turns, reference (gold act), samples."""
    lines = []
    for row in rows:
        lines += [f"context: {turn}" for turn in row["context"]]
        act = f" ({row['act']})" if "act" in row else ""
        lines.append(f"reference{act}: {row['reference']}")
        acts = row.get("sample_acts", [None] * len(row["samples"]))
        lines += [f"  sample{'' if a is None else f' ({a})'}: {s}" for s, a in zip(row["samples"], acts)]
        lines.append("")
    return "\n".join(lines)

"""BLEU for dialogue responses: sacreBLEU corpus BLEU and the Zhao et al. (2017) protocol.

These are different quantities (docs/metrics.md §8); report both, each under its own name.

* `corpus_bleu`: sacreBLEU. n-gram counts and the brevity penalty are pooled over the corpus,
  4-gram uniform weights, its own tokeniser, scale 0-100, one hypothesis per segment.
* `zhao_bleu`: Zhao et al.'s sampled-response protocol. Per context c with N sampled responses
  h_i and M_c references r_j, every pair is scored with *sentence-level* BLEU against that one
  reference, smoothed by NLTK's "method7", and
      precision(c) = (1/N) sum_i max_j BLEU(h_i, r_j),   recall(c) = (1/M_c) sum_j max_i BLEU(h_i, r_j),
  each averaged over contexts; F1 = 2PR/(P+R) of the averages. Scale 0-1. With one reference
  this is the kgCVAE code's form (`snakeztc/NeuralDialog-CVAE:models/utils.py:get_bleu_stats`:
  precision = mean over the samples, recall = max); the multi-reference form is the paper's
  definition (taken from memory of the paper, not from code: the code never reads its
  multi-reference test file). The code's number is BLEU with weights (1/3, 1/3, 1/3), i.e.
  `bleu_zhao_*_3` here.

NLTK's smoothing is re-implemented (NLTK is not a dependency), following the behaviour of
`nltk.translate.bleu_score` as released since NLTK 3.6:
  - method4 (Chen & Cherry 2014): the k-th order with no match (k = 1, 2, ...) gets precision
    ln(|h|) / (2^k * K * d_n), K = 5, d_n = max(1, number of hypothesis n-grams); skipped when
    |h| <= 1;
  - method5: p'_n = (p'_{n-1} + p_n + p_{n+1}) / 3 from n = 1 up, with p'_0 = p_1 + 1 and, after
    the last order, the *unsmoothed 5-gram* precision whatever the maximum order;
  - method7: method4, then method5 on its output.
NLTK applies method5 to precisions, not to matched counts as Chen & Cherry do, so a perfect
match scores above 1 (p'_1 = 4/3); this is NLTK's behaviour and part of the published numbers.
NLTK before 3.6 had a different method4 (an inflated count, see nltk/nltk issue #2676), so
numbers computed in 2017 with the NLTK of the day need not match these.
Both NLTK and sacreBLEU return 0 when no unigram matches.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
from sacrebleu.metrics import BLEU

NLTK_METHOD4_K = 5      # Chen & Cherry's K for method 4; NLTK's default
NLTK_METHOD5_NEXT = 5   # NLTK's method5 always reads the 5-gram precision after the last order
SMOOTHINGS = ("method4", "method5", "method7")


def corpus_bleu(hypotheses: list[str], references: list[str],
                tokenize: str = "13a") -> tuple[float, str]:
    """sacreBLEU corpus BLEU (0-100) of detokenised strings, one reference each, and the
    signature string to record next to it."""
    bleu = BLEU(tokenize=tokenize)
    score = bleu.corpus_score(hypotheses, [references])
    return score.score, str(bleu.get_signature())


def _ngram_counts(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def _match_stats(hypothesis: list[str], references: list[list[str]],
                 max_order: int) -> tuple[list[int], list[int]]:
    """Clipped n-gram matches and hypothesis n-gram totals for n = 1..max_order (BLEU's
    modified precision: a reference n-gram is used at most as often as the most generous
    reference contains it)."""
    matches, totals = [], []
    for n in range(1, max_order + 1):
        hyp = _ngram_counts(hypothesis, n)
        ceiling = Counter()
        for reference in references:
            ceiling |= _ngram_counts(reference, n)
        matches.append(sum((hyp & ceiling).values()))
        totals.append(sum(hyp.values()))
    return matches, totals


def _brevity_penalty(hyp_len: int, references: list[list[str]]) -> float:
    """exp(1 - r/c) against the closest reference length r (ties: the shorter), 1 if c >= r."""
    ref_len = min((len(r) for r in references), key=lambda r: (abs(r - hyp_len), r))
    if hyp_len >= ref_len:
        return 1.0
    return math.exp(1 - ref_len / hyp_len) if hyp_len else 0.0


def sentence_bleu_exp(hypothesis: list[str], references: list[list[str]],
                      max_order: int = 4) -> float:
    """Sentence BLEU (0-100) with sacreBLEU's "exp" smoothing and effective order, i.e.
    `sacrebleu.sentence_bleu(" ".join(h), [" ".join(r) ...], smooth_method="exp",
    tokenize="none")` on pre-tokenised text.

    The k-th order with no match gets precision 1 / (2^k * total) (NIST/mteval); orders the
    hypothesis is too short to have are left out of the geometric mean.
    """
    matches, totals = _match_stats(hypothesis, references, max_order)
    if not any(matches):
        return 0.0
    log_precisions, halvings = [], 0
    for matched, total in zip(matches, totals):
        if total == 0:
            break
        if matched == 0:
            halvings += 1
            log_precisions.append(-math.log(2 ** halvings * total))
        else:
            log_precisions.append(math.log(matched / total))
    mean_log = math.fsum(log_precisions) / len(log_precisions)
    return 100.0 * _brevity_penalty(len(hypothesis), references) * math.exp(mean_log)


def _method4(precisions: list[float], matches: list[int], denominators: list[int],
             hyp_len: int) -> list[float]:
    if hyp_len <= 1:
        return precisions
    out, zero_orders = [], 0
    for p, matched, denominator in zip(precisions, matches, denominators):
        if matched == 0:
            zero_orders += 1
            p = math.log(hyp_len) / (2 ** zero_orders * NLTK_METHOD4_K * denominator)
        out.append(p)
    return out


def _method5(precisions: list[float], next_precision: float) -> list[float]:
    following = precisions[1:] + [next_precision]
    previous = precisions[0] + 1
    out = []
    for p, after in zip(precisions, following):
        previous = (previous + p + after) / 3
        out.append(previous)
    return out


def sentence_bleu_nltk(hypothesis: list[str], references: list[list[str]], max_order: int = 4,
                       smoothing: str = "method7") -> float:
    """NLTK-semantics sentence BLEU (0-1, may exceed 1 under method5/7) with uniform weights
    1/max_order over orders 1..max_order and the named Chen & Cherry smoothing.

    A precision still zero after smoothing gives 0 (NLTK raises there; Zhao's code catches
    the error and scores the hypothesis 0).
    """
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"smoothing {smoothing!r}; choose one of {list(SMOOTHINGS)}")
    matches, totals = _match_stats(hypothesis, references, max(max_order, NLTK_METHOD5_NEXT))
    if matches[0] == 0:
        return 0.0
    denominators = [max(1, t) for t in totals]
    raw = [m / d for m, d in zip(matches, denominators)]
    precisions = raw[:max_order]
    if smoothing in ("method4", "method7"):
        precisions = _method4(precisions, matches, denominators, len(hypothesis))
    if smoothing in ("method5", "method7"):
        precisions = _method5(precisions, raw[NLTK_METHOD5_NEXT - 1])
    if min(precisions) <= 0:
        return 0.0
    mean_log = math.fsum(math.log(p) for p in precisions) / max_order
    return _brevity_penalty(len(hypothesis), references) * math.exp(mean_log)


def zhao_bleu(samples: list[list[str]], references: list[str | list[str]],
              max_order: int = 4) -> dict[str, float]:
    """Zhao et al.'s sampled-response BLEU (the module docstring's formulas).

    `samples[c]` holds the sampled responses (whitespace-tokenised strings) for context c and
    `references[c]` its reference, or a list of its references (any number per context, at
    least one). For n = 1..max_order returns `bleu_zhao_prec_n`, `bleu_zhao_rec_n` (averaged
    over contexts) and `bleu_zhao_f1_n` = 2PR/(P+R) of those averages. BLEU-n is method7
    sentence BLEU with weights 1/n over orders 1..n against one reference at a time (never
    against all of a context's references at once); n = 3 is the code's (1/3, 1/3, 1/3)
    setting. The sample and reference counts belong in the metric names or the record next
    to these numbers (docs/metrics.md §8).
    """
    if len(samples) != len(references):
        raise ValueError(f"{len(samples)} sample lists for {len(references)} references")
    if any(len(hyps) == 0 for hyps in samples):
        raise ValueError("every context needs at least one sampled response")
    per_context_refs = [[refs] if isinstance(refs, str) else list(refs) for refs in references]
    if any(len(refs) == 0 for refs in per_context_refs):
        raise ValueError("every context needs at least one reference")
    out = {}
    for n in range(1, max_order + 1):
        # scores[c][i, j]: sample i of context c against its reference j
        scores = [np.array([[sentence_bleu_nltk(h.split(), [r.split()], n) for r in refs] for h in hyps])
                  for hyps, refs in zip(samples, per_context_refs)]
        precision = float(np.mean([s.max(axis=1).mean() for s in scores]))
        recall = float(np.mean([s.max(axis=0).mean() for s in scores]))
        both = precision + recall
        out[f"bleu_zhao_prec_{n}"] = precision
        out[f"bleu_zhao_rec_{n}"] = recall
        out[f"bleu_zhao_f1_{n}"] = 2 * precision * recall / both if both > 0 else 0.0
    return out

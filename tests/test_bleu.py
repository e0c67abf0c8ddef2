"""BLEU on known answers: sacreBLEU itself, NLTK's documented values, and hand derivations."""
import math

import pytest
import sacrebleu
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.bleu import corpus_bleu, sentence_bleu_exp, sentence_bleu_nltk, zhao_bleu

HYP1 = ("It is a guide to action which ensures that the military always obeys the commands "
        "of the party").split()
REF1 = "It is a guide to action that ensures that the military will forever heed Party commands".split()


def test_identical_text_scores_100():
    score, signature = corpus_bleu(["the cat sat on the mat", "a b c d e"],
                                   ["the cat sat on the mat", "a b c d e"])
    assert score == pytest.approx(100.0)
    assert "tok:13a" in signature and "nrefs:1" in signature
    assert sentence_bleu_exp("the cat sat on the mat".split(), ["the cat sat on the mat".split()]) \
        == pytest.approx(100.0)
    # method4 leaves non-zero precisions alone: 1.0 on the 0-1 scale
    assert sentence_bleu_nltk("a b c d e".split(), ["a b c d e".split()], 4, "method4") == 1.0


EXP_CASES = [
    ("the cat sat on the mat", ["the cat is on the mat"]),
    ("the the the the the the the", ["the cat is on the mat", "there is a cat on the mat"]),
    ("a b c", ["a b d c"]),                      # 3 tokens: effective order 3
    ("hello", ["hello world"]),                  # 1 token
    ("x y z w v", ["a b c"]),                    # no match at all
    ("a b c d e f g h", ["a b c d", "a b x d e f g h i j"]),   # closest reference length
    (" ".join(HYP1), [" ".join(REF1)]),
]


@pytest.mark.parametrize("hyp, refs", EXP_CASES)
def test_exp_smoothed_sentence_bleu_equals_sacrebleu(hyp, refs):
    ours = sentence_bleu_exp(hyp.split(), [r.split() for r in refs])
    theirs = sacrebleu.sentence_bleu(hyp, refs, smooth_method="exp", tokenize="none").score
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from("abcd"), min_size=1, max_size=9),
       st.lists(st.lists(st.sampled_from("abcde"), min_size=1, max_size=9), min_size=1, max_size=3))
def test_exp_smoothed_sentence_bleu_equals_sacrebleu_on_random_text(hyp, refs):
    ours = sentence_bleu_exp(hyp, refs)
    theirs = sacrebleu.sentence_bleu(" ".join(hyp), [" ".join(r) for r in refs],
                                     smooth_method="exp", tokenize="none").score
    assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


def test_nltk_smoothings_reproduce_nltk_documented_values():
    """Values printed in NLTK's `SmoothingFunction` docstring and bleu howto (NLTK >= 3.6)."""
    assert sentence_bleu_nltk(HYP1, [REF1], 4, "method4") == pytest.approx(0.4118, abs=1e-4)
    assert sentence_bleu_nltk(HYP1, [REF1], 4, "method5") == pytest.approx(0.4905, abs=1e-4)
    assert sentence_bleu_nltk(HYP1, [REF1], 4, "method7") == pytest.approx(0.4905, abs=1e-4)
    short = sentence_bleu_nltk("It is .".split(), ["It is a place of quiet contemplation .".split()],
                               4, "method4")
    assert 100 * short == pytest.approx(4.4267, abs=1e-4)


def test_method7_by_hand_with_no_4gram_match():
    """h = "the cat on the mat" (5), r = "the cat sat on the mat" (6).
    matches/totals: 1-grams 5/5, 2-grams 3/4 (the cat, on the, the mat), 3-grams 1/3
    (on the mat), 4-grams 0/2, 5-grams 0/1.
    method4: the first zero order gets ln 5 / (2 * 5 * 2).
    method5: p'1 = (1 + 1 + 1 + 3/4) / 3, p'2 = (p'1 + 3/4 + 1/3) / 3,
             p'3 = (p'2 + 1/3 + p4) / 3, p'4 = (p'3 + p4 + 0) / 3 (the raw 5-gram precision).
    BP = exp(1 - 6/5)."""
    p4 = math.log(5) / 20
    p1 = (2 + 1 + 0.75) / 3
    p2 = (p1 + 0.75 + 1 / 3) / 3
    p3 = (p2 + 1 / 3 + p4) / 3
    p4s = (p3 + p4 + 0) / 3
    expected = math.exp(1 - 6 / 5) * (p1 * p2 * p3 * p4s) ** 0.25
    got = sentence_bleu_nltk("the cat on the mat".split(), ["the cat sat on the mat".split()])
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(0.40770, abs=1e-5)


def test_method7_of_a_perfect_match_exceeds_one_as_in_nltk():
    """method5 averages precisions with p'_0 = p_1 + 1, so a perfect match gets p'_1 = 4/3.
    For Zhao's 3-gram weights the order after the last is the 5-gram: present for a 5-token
    sentence (p'_3 = 28/27), absent for a 4-token one (p'_3 = (10/9 + 1 + 0) / 3 = 19/27)."""
    five, four = "a b c d e".split(), "a b c d".split()
    assert sentence_bleu_nltk(five, [five], 3) == pytest.approx((4 / 3 * 10 / 9 * 28 / 27) ** (1 / 3))
    assert sentence_bleu_nltk(four, [four], 3) == pytest.approx((4 / 3 * 10 / 9 * 19 / 27) ** (1 / 3))


def test_no_unigram_match_scores_zero():
    assert sentence_bleu_nltk("x y z".split(), ["a b c".split()]) == 0.0
    assert sentence_bleu_exp("x y z".split(), ["a b c".split()]) == 0.0
    with pytest.raises(ValueError, match="smoothing"):
        sentence_bleu_nltk(["a"], [["a"]], smoothing="method3")


def test_zhao_precision_is_mean_and_recall_is_max_over_samples():
    samples = [["the cat sat on the mat", "a dog ran", "the cat on the mat"],
               ["hello there", "hello there friend"]]
    references = ["the cat sat on the mat", "hello there friend"]
    got = zhao_bleu(samples, references, max_order=4)
    for n in range(1, 5):
        scores = [[sentence_bleu_nltk(h.split(), [r.split()], n) for h in hyps]
                  for hyps, r in zip(samples, references)]
        precision = sum(sum(s) / len(s) for s in scores) / 2
        recall = sum(max(s) for s in scores) / 2
        assert got[f"bleu_zhao_prec_{n}"] == pytest.approx(precision, rel=1e-12)
        assert got[f"bleu_zhao_rec_{n}"] == pytest.approx(recall, rel=1e-12)
        assert got[f"bleu_zhao_f1_{n}"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert got["bleu_zhao_rec_4"] > got["bleu_zhao_prec_4"]
    with pytest.raises(ValueError):
        zhao_bleu([[]], ["a"])


def test_zhao_multi_reference_by_hand():
    """BLEU-1 of 2-token sentences under method7 is (2 p1 + 1) / 3 (method5 with p'_0 = p1 + 1
    and no 5-grams; BP = 1). Context 1: h1 = "a b", h2 = "c d" against r1 = "a b", r2 = "a x",
    r3 = "y z" gives the sample x reference matrix [[1, 2/3, 0], [0, 0, 0]]:
    precision = mean over samples of the best reference = (1 + 0) / 2,
    recall = mean over references of the best sample = (1 + 2/3 + 0) / 3.
    Context 2: one 1-token sample equal to its single reference: 1 and 1."""
    samples = [["a b", "c d"], ["a"]]
    got = zhao_bleu(samples, [["a b", "a x", "y z"], "a"], max_order=1)
    assert got["bleu_zhao_prec_1"] == pytest.approx((1 / 2 + 1) / 2, rel=1e-12)
    assert got["bleu_zhao_rec_1"] == pytest.approx((5 / 9 + 1) / 2, rel=1e-12)
    # With r1 alone it is the code's single-reference form: recall = max, precision = mean.
    single = zhao_bleu(samples, ["a b", "a"], max_order=1)
    assert (single["bleu_zhao_prec_1"], single["bleu_zhao_rec_1"]) == pytest.approx((3 / 4, 1.0))


def test_zhao_one_reference_in_a_list_is_the_single_reference_form():
    samples = [["the cat sat on the mat", "a dog ran"], ["hello there", "hello there friend"]]
    references = ["the cat on the mat", "hello friend"]
    assert zhao_bleu(samples, [[r] for r in references]) == zhao_bleu(samples, references)
    # a repeated reference changes nothing: each reference is scored on its own, then averaged
    assert zhao_bleu(samples, [[r, r] for r in references]) == pytest.approx(zhao_bleu(samples, references))
    with pytest.raises(ValueError, match="reference"):
        zhao_bleu([["a"]], [[]])

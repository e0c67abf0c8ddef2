"""The shared dialog parts (`repro/dialog_models.py`) on small hand-made tensors: the bag-of-words
likelihood, the Gaussian-to-Gaussian KL, the hierarchical encoder's use of lengths, the
decoder's conditioning paths, and the sampled-response metrics on known answers."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from repro.bleu import corpus_bleu, sentence_bleu_nltk
from repro.data.dialog import UNKNOWN_LABEL, DialogBatch
from repro.data.text import Vocab
from repro.dialog_models import (BagOfWordsHead, GaussianNetwork, HierarchicalContextEncoder,
                          ResponseDecoder, SampledResponses, UtteranceEncoder,
                          bag_of_words_log_likelihood, decode_responses, dialog_metrics,
                          distinct_n, sampled_metric_name, with_markers)
from repro.sentence_models import DecoderInputs
from repro.nn.distributions import DiagonalGaussian

VOCAB = Vocab([f"w{i}" for i in range(12)])   # ids 4..15 are words
PAD = VOCAB.pad


def dialog_batch(contexts, responses, context_speakers=None, speakers=None, acts=None) -> DialogBatch:
    """A `DialogBatch` from word-id lists: `contexts[b]` = turns, `responses[b]` = words."""
    B, C = len(contexts), max(len(c) for c in contexts)
    U = max(len(t) for c in contexts for t in c)
    context = torch.full((B, C, U), PAD)
    lengths = torch.zeros(B, C, dtype=torch.long)
    for b, turns in enumerate(contexts):
        for t, words in enumerate(turns):
            context[b, t, :len(words)] = torch.tensor(words)
            lengths[b, t] = len(words)
    T = max(len(r) for r in responses) + 2
    response = torch.full((B, T), PAD)
    for b, words in enumerate(responses):
        response[b, :len(words) + 2] = torch.tensor([VOCAB.bos, *words, VOCAB.eos])
    context_speakers = torch.tensor(context_speakers) if context_speakers else torch.zeros(B, C, dtype=torch.long)
    speakers = torch.tensor(speakers) if speakers else torch.ones(B, dtype=torch.long)
    labels = {"act": torch.tensor(acts if acts else [0] * B)}
    return DialogBatch(context, lengths, context_speakers, torch.tensor([len(c) for c in contexts]),
                       response, torch.tensor([len(r) + 2 for r in responses]), speakers, labels, PAD)


CONTEXTS = [[[4, 5, 6], [7, 8]], [[9, 10, 11, 12, 13]]]
RESPONSES = [[14, 4], [5, 6, 7]]


def test_bag_of_words_is_the_sum_of_log_softmax_over_the_response_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, len(VOCAB))
    batch = dialog_batch(CONTEXTS, RESPONSES)
    got = bag_of_words_log_likelihood(logits, batch.targets, batch.target_mask)
    log_p = torch.log_softmax(logits, -1)
    # targets: the words and <eos>, never the padding
    expected = [sum(log_p[b, t].item() for t in [*RESPONSES[b], VOCAB.eos]) for b in range(2)]
    assert got.tolist() == pytest.approx(expected, rel=1e-6)


def test_bag_of_words_ignores_order_and_padding():
    torch.manual_seed(0)
    logits = torch.randn(3, 2, len(VOCAB))             # a sample axis broadcasts
    batch = dialog_batch(CONTEXTS, RESPONSES)
    reordered = dialog_batch(CONTEXTS, [[4, 14], [7, 5, 6]])
    base = bag_of_words_log_likelihood(logits, batch.targets, batch.target_mask)
    assert base.shape == (3, 2)
    torch.testing.assert_close(base, bag_of_words_log_likelihood(logits, reordered.targets,
                                                                 reordered.target_mask))
    junk = batch.targets.masked_fill(~batch.target_mask, 9)   # padding positions hold a word now
    torch.testing.assert_close(base, bag_of_words_log_likelihood(logits, junk, batch.target_mask))


def test_bag_of_words_head_scores_its_own_logits():
    torch.manual_seed(0)
    head = BagOfWordsHead(6, 5, len(VOCAB))
    inputs = torch.randn(2, 6)
    batch = dialog_batch(CONTEXTS, RESPONSES)
    torch.testing.assert_close(head.log_likelihood(inputs, batch.targets, batch.target_mask),
                               bag_of_words_log_likelihood(head.net(inputs), batch.targets, batch.target_mask))


def test_kl_between_recognition_and_prior_networks_is_the_closed_form():
    torch.manual_seed(0)
    recognition, prior_net = GaussianNetwork(7, 3), GaussianNetwork(5, 3, hidden_size=4)
    q, p = recognition(torch.randn(4, 7)), prior_net(torch.randn(4, 5))
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(q.mu, (0.5 * q.logvar).exp()),
        torch.distributions.Normal(p.mu, (0.5 * p.logvar).exp()))
    torch.testing.assert_close(q.kl_per_dim(p), expected)
    assert isinstance(q, DiagonalGaussian) and q.mu.shape == (4, 3)
    assert len(prior_net.net) == 3 and len(recognition.net) == 1   # tanh layer only in the prior


def _context_encoder(seed=0):
    torch.manual_seed(seed)
    embedding = nn.Embedding(len(VOCAB), 6, padding_idx=PAD)
    return HierarchicalContextEncoder(UtteranceEncoder(embedding, 5), 7, VOCAB)


def test_with_markers_wraps_each_turn():
    tokens = torch.tensor([[4, 5, PAD], [6, 7, 8]])
    assert with_markers(tokens, torch.tensor([2, 3]), VOCAB.bos, VOCAB.eos, PAD).tolist() == [
        [VOCAB.bos, 4, 5, VOCAB.eos, PAD], [VOCAB.bos, 6, 7, 8, VOCAB.eos]]


def test_utterance_encoder_reads_tokens_up_to_the_length_in_both_directions():
    torch.manual_seed(0)
    encoder = UtteranceEncoder(nn.Embedding(len(VOCAB), 6), 5)
    tokens = torch.tensor([[2, 4, 5, 3, 0, 0]])
    padded = torch.tensor([[2, 4, 5, 3, 9, 10]])      # words after the length: never read
    lengths = torch.tensor([4])
    torch.testing.assert_close(encoder(tokens, lengths), encoder(padded, lengths))
    assert not torch.allclose(encoder(tokens, lengths), encoder(padded, torch.tensor([6])))


def test_hierarchical_encoder_ignores_padding_turns_and_padding_tokens():
    encoder = _context_encoder()
    batch = dialog_batch(CONTEXTS, RESPONSES)
    c = encoder(batch)
    assert c.shape == (2, 7)
    # Two more turn slots and three more token slots; every position past a length holds a word.
    C, U = batch.context.shape[1:]
    lengths = F.pad(batch.context_lengths, (0, 2))
    junk = torch.randint(4, len(VOCAB), (2, C + 2, U + 3))
    in_turn = torch.arange(U + 3) < lengths[..., None]
    junk[:, :C, :U] = torch.where(in_turn[:, :C, :U], batch.context, junk[:, :C, :U])
    padded = dialog_batch(CONTEXTS, RESPONSES)
    padded.context, padded.context_lengths = junk, lengths
    padded.context_speakers = F.pad(batch.context_speakers, (0, 2), value=1)
    torch.testing.assert_close(encoder(padded), c)


def test_hierarchical_encoder_reads_every_real_turn_and_the_floor():
    encoder = _context_encoder()
    c = encoder(dialog_batch(CONTEXTS, RESPONSES))
    first_turn_changed = dialog_batch([[[4, 5, 9], [7, 8]], CONTEXTS[1]], RESPONSES)
    assert not torch.allclose(encoder(first_turn_changed)[0], c[0])
    torch.testing.assert_close(encoder(first_turn_changed)[1], c[1])    # examples independent
    other_floor = dialog_batch(CONTEXTS, RESPONSES, speakers=[0, 1])
    assert not torch.allclose(encoder(other_floor)[0], c[0])
    # The floor is relative to the responder: swapping every speaker id changes nothing.
    swapped = dialog_batch(CONTEXTS, RESPONSES, context_speakers=[[1, 1], [1, 0]], speakers=[0, 0])
    torch.testing.assert_close(encoder(swapped), c)


def test_response_decoder_conditions_the_initial_state_and_every_step_on_the_act_part():
    torch.manual_seed(0)
    decoder = ResponseDecoder(nn.Embedding(len(VOCAB), 6), 5, condition_size=4, step_condition_size=2)
    inputs = torch.tensor([[2, 4, 5, 6]])
    condition = torch.randn(1, 1, 4)
    state = torch.randn(1, 1, 5)
    base, _ = decoder.hidden_states(inputs, condition, state)
    head_changed = condition.clone()
    head_changed[..., :2] += 1.0
    step_changed = condition.clone()
    step_changed[..., 2:] += 1.0
    # With the state given, only the step part of the condition still reaches the decoder,
    # and it reaches every position.
    torch.testing.assert_close(decoder.hidden_states(inputs, head_changed, state)[0], base)
    moved = (decoder.hidden_states(inputs, step_changed, state)[0] - base).abs().sum(-1)
    assert (moved > 1e-4).all()
    # From scratch, the head part sets the initial state.
    from_scratch = [decoder.hidden_states(inputs, cond)[0] for cond in (head_changed, condition)]
    assert not torch.allclose(*from_scratch)


def test_response_decoder_scores_n_conditions_in_one_pass():
    torch.manual_seed(0)
    decoder = ResponseDecoder(nn.Embedding(len(VOCAB), 6), 5, condition_size=4)
    batch = dialog_batch(CONTEXTS, RESPONSES)
    condition = torch.randn(3, 2, 4)
    joint = decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask, condition)
    single = torch.stack([decoder.log_likelihood(batch.inputs, batch.targets, batch.target_mask,
                                                 condition[k:k + 1])[0] for k in range(3)])
    torch.testing.assert_close(joint, single)


class _Decodable(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.vocab = VOCAB
        self.decoder = ResponseDecoder(nn.Embedding(len(VOCAB), 6), 5, condition_size=4)
        self.decoder_inputs = DecoderInputs(1.0, VOCAB)


def test_decode_responses_groups_samples_per_context_and_cuts_at_eos():
    model = _Decodable()
    condition = torch.randn(3, 2, 4) * 3
    out = decode_responses(model, condition, max_len=6)
    assert len(out) == 2 and all(len(row) == 3 for row in out)
    for b in range(2):
        for k in range(3):
            alone = decode_responses(model, condition[k:k + 1, b:b + 1], max_len=6)[0][0]
            assert out[b][k] == alone and VOCAB.eos not in alone


def test_distinct_n_on_hand_made_sentences():
    sentences = [["a", "b", "a"], ["a", "b", "c"], []]
    assert distinct_n(sentences, 1) == pytest.approx(3 / 6)
    assert distinct_n(sentences, 2) == pytest.approx(3 / 4)       # ab, ba, ab, bc
    assert distinct_n([["a"]], 2) == 0.0


class _FixedResponses(nn.Module):
    """Returns preset responses (as word ids) and acts; optionally a latent model whose
    reconstruction costs exactly 1.5 nats per target token."""

    def __init__(self, responses, acts=None, has_latent=False):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.responses, self.acts, self.has_latent = responses, acts, has_latent

    def sample_responses(self, batch, num_samples, max_len, generator):
        ids = [[VOCAB.encode(s.split()) for s in row[:num_samples]] for row in self.responses]
        return SampledResponses(ids, self.acts)

    def posterior(self, batch):
        return DiagonalGaussian(torch.zeros(batch.size, 2), torch.zeros(batch.size, 2))

    def log_likelihood(self, batch, z):
        return -1.5 * batch.num_targets.float().expand(z.shape[0], -1)


def test_zhao_bleu_precision_is_the_mean_and_recall_the_max_over_samples():
    batch = dialog_batch(CONTEXTS, [[4, 5, 6, 7], [8, 9, 10]])
    references = ["w0 w1 w2 w3", "w4 w5 w6"]
    samples = [["w0 w1 w2 w3", "w0 w1 w9", "w11"], ["w4 w5", "w4 w5 w6 w7", "w8 w9"]]
    acts = torch.tensor([[0, 1], [0, 2], [3, 1]])          # (N, B)
    batch.labels["act"] = torch.tensor([0, 1])
    result = dialog_metrics(_FixedResponses(samples, acts), [batch], VOCAB, num_samples=3)
    m = result.metrics
    for k in range(1, 5):
        scores = [[sentence_bleu_nltk(h.split(), [r.split()], k) for h in hyps]
                  for hyps, r in zip(samples, references)]
        assert m[f"bleu_zhao_prec_{k}_n3_ref1"] == pytest.approx(sum(sum(s) / 3 for s in scores) / 2)
        assert m[f"bleu_zhao_rec_{k}_n3_ref1"] == pytest.approx(sum(max(s) for s in scores) / 2)
    assert m["sacrebleu_corpus_n1_ref1"] == pytest.approx(corpus_bleu([s[0] for s in samples], references)[0])
    tokens = [h.split() for hyps in samples for h in hyps]
    assert m["distinct_1_n3"] == pytest.approx(distinct_n(tokens, 1))
    assert m["distinct_2_n3"] == pytest.approx(distinct_n(tokens, 2))
    assert m["act_acc_prior_n3"] == pytest.approx(4 / 6)   # 0: 0,0,3 -> 2 hits; 1: 1,2,1 -> 2 hits
    assert "rc_ppl_posterior" not in m and m["dialog_num_examples"] == 2
    assert result.rows[1]["samples"] == samples[1] and result.rows[0]["reference"] == references[0]
    assert result.rows[0]["context"] == ["w0 w1 w2", "w3 w4"]


def test_act_accuracy_skips_unknown_acts_and_rc_ppl_is_per_target_token():
    batch = dialog_batch(CONTEXTS, RESPONSES, acts=[UNKNOWN_LABEL, 2])
    samples = [["w0", "w1"], ["w2", "w3"]]
    acts = torch.tensor([[2, 2], [2, 0]])
    m = dialog_metrics(_FixedResponses(samples, acts, has_latent=True), [batch], VOCAB, num_samples=2).metrics
    assert m["act_acc_prior_n2"] == pytest.approx(1 / 2)     # only example 1 counts
    assert m["rc_ppl_posterior"] == pytest.approx(math.exp(1.5))


def test_metric_names_carry_sample_and_reference_counts():
    assert sampled_metric_name("bleu_zhao_prec_3", 10, 1) == "bleu_zhao_prec_3_n10_ref1"
    assert sampled_metric_name("distinct_2", 10) == "distinct_2_n10"
    assert sampled_metric_name("sacrebleu_corpus", 1, 1) == "sacrebleu_corpus_n1_ref1"

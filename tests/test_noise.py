"""The token-noise family (`repro.data.noise`) on small tensors: rates, positions, replacements,
targets, protected ids, and the Kneser-Ney tables on a hand-made bigram count table."""
from __future__ import annotations

import pytest
import torch

from repro.data.noise import (NoiseConfig, TokenNoise, bigram_kn_statistics, build_noise,
                              noise_mask, unigram_distribution, word_dropout)

V = 20
BLANK = 19


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tokens(shape=(400, 250), low=4, high=12) -> torch.Tensor:
    """Ids in [low, high): disjoint from the proposals below, so every noised position changes."""
    return torch.randint(low, high, shape, generator=_gen(1))


def _proposal(weights: dict[int, float]) -> torch.Tensor:
    p = torch.zeros(V)
    for i, w in weights.items():
        p[i] = w
    return p


def test_word_dropout_is_blank_noising_with_unk():
    """Same draws, same corrupted positions: word dropout at keep rate k is blank noising at
    γ = 1 - k with `<unk>` as the blank (0.75 and 0.25 are exact in binary)."""
    tokens = _tokens()
    dropped = word_dropout(tokens, keep_rate=0.75, unk_id=1, protected_ids=(0, 2, 3), generator=_gen())
    blanked, _ = TokenNoise(0.25, blank_id=1, protected_ids=(0, 2, 3))(tokens, tokens, _gen())
    assert torch.equal(dropped, blanked)
    assert (dropped != tokens).any()


def test_word_dropout_keeps_its_draws():
    """One uniform per position, dropped where u >= keep rate: Bowman's runs replay exactly."""
    tokens = _tokens()
    tokens[:, 0] = 2
    u = torch.rand(tokens.shape, generator=_gen())
    expected = tokens.masked_fill((u >= 0.62) & (tokens != 2), 1)
    assert torch.equal(word_dropout(tokens, 0.62, 1, (0, 2, 3), generator=_gen()), expected)


def test_blank_noising_rate_positions_and_untouched_targets():
    tokens, targets = _tokens(), _tokens() + 1
    inputs, out_targets = TokenNoise(0.2, blank_id=BLANK)(tokens, targets, _gen())
    changed = inputs != tokens
    assert changed.float().mean() == pytest.approx(0.2, abs=0.005)
    assert (inputs[changed] == BLANK).all()
    assert torch.equal(out_targets, targets)


def test_unigram_noising_draws_from_the_proposal_and_leaves_targets():
    tokens, targets = _tokens(), _tokens() + 1
    noise = TokenNoise(0.3, proposal=_proposal({13: 0.25, 14: 0.75}))
    inputs, out_targets = noise(tokens, targets, _gen())
    changed = inputs != tokens
    assert changed.float().mean() == pytest.approx(0.3, abs=0.005)
    drawn = inputs[changed]
    assert set(drawn.unique().tolist()) == {13, 14}
    assert (drawn == 13).float().mean() == pytest.approx(0.25, abs=0.01)
    assert torch.equal(out_targets, targets)


def test_kn_noising_rate_follows_the_context_and_targets_get_independent_draws():
    """Probability γ · share[x] per input x; the target at a noised position is replaced by its
    own draw (the code's KN scheme), nowhere else."""
    tokens = torch.randint(4, 7, (400, 250), generator=_gen(1))   # ids 4, 5, 6
    targets = tokens + 3                                         # ids 7, 8, 9
    share = torch.zeros(V)
    share[4], share[5], share[6] = 1.0, 0.5, 0.0
    noise = TokenNoise(0.4, proposal=_proposal({13: 0.5, 14: 0.5}), discount_share=share,
                       noise_targets=True)
    inputs, out_targets = noise(tokens, targets, _gen())
    changed = inputs != tokens
    for token, rate in ((4, 0.4), (5, 0.2), (6, 0.0)):
        assert changed[tokens == token].float().mean() == pytest.approx(rate, abs=0.01)
    assert torch.equal(out_targets != targets, changed)
    assert set(out_targets[changed].unique().tolist()) == {13, 14}
    same_draw = (inputs[changed] == out_targets[changed]).float().mean()
    assert same_draw == pytest.approx(0.5, abs=0.03)   # 1.0 if the target copied the input's draw


def test_protected_ids_are_never_replaced_in_inputs_or_targets():
    """Targets are the next tokens, so a target can be protected where its input is not."""
    sentences = _tokens((400, 251))
    sentences[:, 0], sentences[:, -1], sentences[:7, -6:] = 2, 3, 0
    tokens, next_tokens = sentences[:, :-1], sentences[:, 1:]
    noise = TokenNoise(1.0, proposal=_proposal({13: 1.0}), discount_share=torch.ones(V),
                       noise_targets=True, protected_ids=(0, 2, 3))
    inputs, targets = noise(tokens, next_tokens, _gen())
    special, next_special = tokens < 4, next_tokens < 4
    assert torch.equal(inputs[special], tokens[special])
    assert torch.equal(targets[next_special], next_tokens[next_special])
    assert (inputs[~special] == 13).all() and (targets[~special & ~next_special] == 13).all()


def test_zero_gamma_is_the_identity_and_draws_nothing():
    tokens = _tokens((5, 7))
    gen = _gen()
    before = gen.get_state()
    noise = TokenNoise(0.0)
    inputs, targets = noise(tokens, tokens + 1, gen)
    assert torch.equal(inputs, tokens) and torch.equal(targets, tokens + 1)
    assert torch.equal(gen.get_state(), before)


def test_noise_mask_takes_a_per_position_keep_probability():
    tokens = torch.full((2, 4000), 5)
    keep = torch.tensor([[1.0], [0.0]]).expand(2, 4000)
    mask = noise_mask(tokens, keep, generator=_gen())
    assert not mask[0].any() and mask[1].all()


# Hand-made stream "a b a c a b <eos> a" with a=4, b=5, c=6, <eos>=3: its bigram count table is
#   (a,b) 2, (b,a) 1, (a,c) 1, (c,a) 1, (b,<eos>) 1, (<eos>,a) 1.
#   As a context (the first N - 1 tokens): c(a) = 3 with successors {b, c}; c(b) = 2, {a, <eos>};
#   c(c) = 1, {a}; c(<eos>) = 1, {a}. The final a is no context. Ids 0-2 never occur.
#   Left contexts: a <- {b, c, <eos>}; b <- {a}; c <- {a}; <eos> <- {b}: 6 in all.
STREAM = torch.tensor([4, 5, 4, 6, 4, 5, 3, 4])


def test_kn_tables_on_a_hand_made_bigram_count_table():
    share, continuation = bigram_kn_statistics(STREAM, 8)
    assert share.tolist() == pytest.approx([0, 0, 0, 1.0, 2 / 3, 1.0, 1.0, 0])
    assert continuation.tolist() == pytest.approx([0, 0, 0, 1 / 6, 3 / 6, 1 / 6, 1 / 6, 0])
    assert unigram_distribution(STREAM, 8).tolist() == pytest.approx(
        [0, 0, 0, 1 / 8, 4 / 8, 2 / 8, 1 / 8, 0])


def test_kn_noising_probability_is_gamma_times_the_discount_share():
    """The adaptive γ of the hand-made table: γ · N1+(x, •) / c(x) for each input token x."""
    noise = build_noise(NoiseConfig("bigram_kn", 0.3), STREAM, 8, blank_id=7)
    inputs = torch.tensor([4, 5, 6, 3, 2]).repeat(20_000, 1)
    changed = noise(inputs, inputs, _gen())[0] != inputs
    # A noised token can be redrawn as itself: P(change) = rate * (1 - continuation[x]).
    expected = [0.3 * 2 / 3 * (1 - 3 / 6), 0.3 * (1 - 1 / 6), 0.3 * (1 - 1 / 6), 0.3 * (1 - 1 / 6), 0.0]
    assert changed.float().mean(0).tolist() == pytest.approx(expected, abs=0.01)


def test_build_noise_maps_each_scheme_to_its_member():
    blank = build_noise(NoiseConfig("blank", 0.1), STREAM, 8, blank_id=7)
    assert (blank.gamma, blank.blank_id, blank.proposal, blank.discount_share) == (0.1, 7, None, None)
    assert not blank.noise_targets
    unigram = build_noise(NoiseConfig("unigram", 0.1), STREAM, 8, blank_id=7)
    assert torch.allclose(unigram.proposal, unigram_distribution(STREAM, 8))
    assert unigram.discount_share is None and not unigram.noise_targets
    kn = build_noise(NoiseConfig("bigram_kn", 0.1), STREAM, 8, blank_id=7)
    share, continuation = bigram_kn_statistics(STREAM, 8)
    assert torch.allclose(kn.proposal, continuation) and torch.allclose(kn.discount_share, share)
    assert kn.noise_targets
    assert build_noise(NoiseConfig(), STREAM, 8, blank_id=7).gamma == 0.0
    with pytest.raises(ValueError, match="unknown noise scheme"):
        build_noise(NoiseConfig("trigram", 0.1), STREAM, 8, blank_id=7)


def test_tables_are_buffers_that_move_but_are_not_saved():
    noise = build_noise(NoiseConfig("bigram_kn", 0.1), STREAM, 8, blank_id=7)
    assert {name for name, _ in noise.named_buffers()} == {"proposal", "discount_share"}
    assert noise.state_dict() == {}


def test_inconsistent_members_are_refused():
    with pytest.raises(ValueError, match="exactly one"):
        TokenNoise(0.1)
    with pytest.raises(ValueError, match="exactly one"):
        TokenNoise(0.1, blank_id=1, proposal=torch.ones(3) / 3)
    with pytest.raises(ValueError, match="needs a proposal"):
        TokenNoise(0.1, blank_id=1, noise_targets=True)

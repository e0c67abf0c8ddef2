"""The causal dilated CNN decoder (`repro.nn.cnn`) on small tensors: causality and receptive
field by gradients, z reaching every block, the sample axis, padding, and step-by-step
generation matching one parallel pass (the contract `repro.generate` relies on)."""
import pytest
import torch

from repro.nn.cnn import DilatedCNNDecoder, receptive_field

# Yang et al.'s four decoders (kernel 3) and the receptive fields they imply.
CONFIGS = {
    "scnn": ((1, 2, 4), 15),
    "mcnn": ((1, 2, 4, 8, 16), 63),
    "lcnn": ((1, 2, 4, 8, 16) * 2, 125),
    "vlcnn": ((1, 2, 4, 8, 16) * 3, 187),
}
VOCAB, EMBED, LATENT = 11, 6, 3


def small_decoder(dilations, latent=LATENT, z_every_layer=False, seed=0) -> DilatedCNNDecoder:
    torch.manual_seed(seed)
    decoder = DilatedCNNDecoder(VOCAB, EMBED, channels=8, bottleneck=8, dilations=dilations,
                                kernel_size=3, latent_size=latent, z_every_layer=z_every_layer)
    return decoder.double().eval()


def input_sensitivity(decoder, length: int, t: int) -> torch.Tensor:
    """|d state_t / d embedded input_s| summed over batch and channels, per position s: `(T,)`."""
    torch.manual_seed(1)
    embedded = torch.randn(4, length, EMBED, dtype=torch.float64, requires_grad=True)
    z = torch.randn(1, 4, LATENT, dtype=torch.float64)
    decoder.features(embedded, z)[:, t].sum().backward()
    return embedded.grad.abs().sum((0, 2))


@pytest.mark.parametrize("z_every_layer", [False, True])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_state_t_sees_exactly_the_receptive_field_and_nothing_later(name, z_every_layer):
    dilations, field = CONFIGS[name]
    decoder = small_decoder(dilations, z_every_layer=z_every_layer)
    assert decoder.receptive_field == receptive_field(dilations, 3) == field
    length = field + 10
    t = length - 4                     # inputs exist both before the window and after t
    first = t - field + 1
    sensitivity = input_sensitivity(decoder, length, t)
    assert (sensitivity[first:t + 1] > 0).all(), "a position inside the window is not seen"
    assert (sensitivity[:first] == 0).all(), "a position before the window leaks in"
    assert (sensitivity[t + 1:] == 0).all(), "a future position leaks in (not causal)"


def block_outputs_depend_on_z(decoder) -> list[bool]:
    outputs = []
    hooks = [block.register_forward_hook(lambda m, i, out: outputs.append(out))
             for block in decoder.blocks]
    embedded = torch.randn(2, 9, EMBED, dtype=torch.float64)
    z = torch.randn(1, 2, LATENT, dtype=torch.float64, requires_grad=True)
    decoder.features(embedded, z)
    for hook in hooks:
        hook.remove()
    grads = [torch.autograd.grad(out.sum(), z, retain_graph=True)[0] for out in outputs]
    return [bool(g.abs().sum() > 0) for g in grads]


def test_z_at_the_input_reaches_every_block_through_the_residual_stream():
    decoder = small_decoder((1, 2, 4, 8))
    assert all(block_outputs_depend_on_z(decoder))
    with torch.no_grad():
        decoder.in_z.weight.zero_()    # cut the input path: nothing else carries z
    assert not any(block_outputs_depend_on_z(decoder))


def test_z_every_layer_feeds_each_block_directly():
    decoder = small_decoder((1, 2, 4, 8), z_every_layer=True)
    with torch.no_grad():
        decoder.in_z.weight.zero_()    # only the per-block paths are left
    assert all(block_outputs_depend_on_z(decoder))


def batch(length=7, size=3, seed=2):
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(1, VOCAB, (size, length + 1), generator=gen)
    return tokens[:, :-1], tokens[:, 1:]


def test_n_samples_of_z_are_scored_as_n_separate_passes():
    decoder = small_decoder((1, 2), z_every_layer=True)
    inputs, targets = batch()
    mask = torch.ones_like(targets, dtype=torch.bool)
    z = torch.randn(4, 3, LATENT, dtype=torch.float64)
    together = decoder.log_likelihood(inputs, targets, mask, z)
    apart = torch.cat([decoder.log_likelihood(inputs, targets, mask, z[i:i + 1]) for i in range(4)])
    assert together.shape == (4, 3)
    torch.testing.assert_close(together, apart)


def test_language_model_takes_no_z_and_a_conditioned_decoder_needs_one():
    lm = small_decoder((1, 2), latent=0)
    inputs, targets = batch()
    mask = torch.ones_like(targets, dtype=torch.bool)
    assert lm.log_likelihood(inputs, targets, mask, None).shape == (1, 3)
    with pytest.raises(ValueError, match="latent_size"):
        small_decoder((1, 2)).log_likelihood(inputs, targets, mask, None)


def test_trailing_padding_does_not_change_the_likelihood():
    decoder = small_decoder((1, 2, 4))
    inputs, targets = batch()
    z = torch.randn(1, 3, LATENT, dtype=torch.float64)
    mask = torch.ones_like(targets, dtype=torch.bool)
    pad = torch.zeros(3, 5, dtype=torch.long)
    padded = decoder.log_likelihood(torch.cat([inputs, pad], 1), torch.cat([targets, pad], 1),
                                    torch.cat([mask, pad.bool()], 1), z)
    torch.testing.assert_close(padded, decoder.log_likelihood(inputs, targets, mask, z))


def test_step_by_step_states_equal_one_pass_beyond_the_receptive_field():
    decoder = small_decoder((1, 2))               # receptive field 7 < 12 steps: the window slides
    inputs, _ = batch(length=12)
    z = torch.randn(1, 3, LATENT, dtype=torch.float64)
    full, _ = decoder.hidden_states(inputs, z)
    state, steps = None, []
    for t in range(inputs.shape[1]):
        hidden, state = decoder.hidden_states(inputs[:, t:t + 1], z, state)
        steps.append(hidden)
        assert state[1].shape[0] <= decoder.receptive_field - 1
    torch.testing.assert_close(torch.cat(steps, 1), full)


def test_generation_state_can_be_reordered_along_dim_1_like_an_lstm_state():
    # `repro.generate`'s beam search slices and concatenates both state tensors on dim 1.
    decoder = small_decoder((1, 2))
    inputs, _ = batch(length=5)
    z = torch.randn(1, 3, LATENT, dtype=torch.float64)
    _, state = decoder.hidden_states(inputs[:, :4], z)
    order = [2, 0, 1]
    reordered = tuple(torch.cat([part[:, r:r + 1] for r in order], 1) for part in state)
    hidden, _ = decoder.hidden_states(inputs[order, 4:], z[:, order], reordered)
    expected, _ = decoder.hidden_states(inputs[order], z[:, order])
    torch.testing.assert_close(hidden[:, -1], expected[:, -1])

"""A batch's shared prefix computed once gives the loss, token count, LoRA gradients and trained adapters of the
plain loss on the full rows (float32, dropout 0), and shared_prefix_length finds a prefix that is safe to share.

Tolerance, as tests/test_chunked_loss.py: per trained token (sums grow with the count), the loss within 1e-5
absolute, every gradient element within 1e-5 absolute + 1e-5 relative; adapters after training within 1e-5
absolute + 1e-5 relative."""

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten, tree_map

from synthia.platform import cpu_backend
from synthia.train.loss import chunked_summed_loss, summed_loss, trained_positions
from synthia.train.shared_prefix import (SharedPrefixUnsupported, common_prefix_length,
                                         shared_prefix_chunked_summed_loss, shared_prefix_length,
                                         shared_prefix_summed_loss, untrained_lead)
from tests.test_chunked_loss import TOLERANCE, assert_same_per_token, loss_and_grads, random_qwen2, with_trained_lora


def agent_batch(vocab_size, prefix_length=40, own_lengths=(12, 30, 21), lead=3, seed=3, pad_to=None):
    """Rows that open with the same prefix_length tokens (the tool prompt), then tokens of their own of different
    lengths, right-padded with zeros; each row's loss starts `lead` tokens into its own part and has a gap."""
    rng = np.random.default_rng(seed)
    prefix = rng.integers(1, vocab_size, prefix_length)
    width = pad_to or prefix_length + max(own_lengths) + 1
    tokens, mask = np.zeros((len(own_lengths), width), np.int32), np.zeros((len(own_lengths), width), np.float32)
    for row, own in enumerate(own_lengths):
        end = prefix_length + own
        tokens[row, :prefix_length], tokens[row, prefix_length:end] = prefix, rng.integers(1, vocab_size, own)
        mask[row, prefix_length + lead:end] = 1.0
        mask[row, prefix_length + lead + 2] = 0.0  # a user turn between two assistant turns
    return mx.array(tokens), mx.array(mask)


def shared(prefix_length):
    return lambda model, tokens, mask: shared_prefix_summed_loss(model, tokens, mask, prefix_length)


def assert_shared_equals_plain(model, tokens, mask):
    prefix_length = shared_prefix_length(tokens, mask)
    assert prefix_length > 0
    plain = loss_and_grads(model, summed_loss, tokens, mask)
    assert_same_per_token(plain, loss_and_grads(model, shared(prefix_length), tokens, mask))
    return plain


@pytest.fixture(scope="module")
def tiny_lora_model(tiny_model_dir):
    from mlx_lm.utils import load

    model, _ = load(str(tiny_model_dir))
    return with_trained_lora(model)


# ---------------------------------------------------------------------------------------------------------
# How long a prefix a batch shares
# ---------------------------------------------------------------------------------------------------------
def test_rows_that_differ_at_the_first_token_share_nothing():
    assert common_prefix_length([[5, 6, 7], [4, 6, 7]]) == 0
    tokens, mask = mx.array([[5, 6, 7, 8], [4, 6, 7, 8]]), mx.array([[0, 0, 1, 1], [0, 0, 1, 1.0]])
    assert shared_prefix_length(tokens, mask) == 0


def test_the_common_prefix_stops_at_the_first_difference_or_the_shortest_row():
    assert common_prefix_length([[1, 2, 3, 9], [1, 2, 3, 4], [1, 2, 3, 4, 5]]) == 3
    assert common_prefix_length([[1, 2], [1, 2, 3]]) == 2
    assert common_prefix_length([[1, 2, 3]]) == 3
    assert common_prefix_length([]) == 0


def test_identical_rows_share_everything_before_the_first_trained_target():
    row, row_mask = [1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 1, 1.0]
    assert common_prefix_length([row, row]) == 6
    # position 3 predicts token 4, which carries loss: positions 0-2 are shared, position 3 stays the row's own
    assert shared_prefix_length(mx.array([row, row]), mx.array([row_mask, row_mask])) == 3


def test_the_prefix_ends_before_the_earliest_trained_target_of_any_row():
    tokens = mx.array([[1, 2, 3, 4, 5, 6, 7], [1, 2, 3, 4, 5, 6, 8]])
    mask = mx.array([[0, 0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 1, 1.0]])
    assert untrained_lead([0, 0, 0, 0, 0, 1, 1]) == 4 and untrained_lead([0, 0, 0, 1, 1, 1, 1]) == 2
    assert shared_prefix_length(tokens, mask) == 2


def test_a_trained_first_token_is_no_target_and_does_not_shorten_the_prefix():
    assert untrained_lead([1, 0, 0, 1]) == 2  # mask[0] weighs no target: nothing predicts the first token


def test_rows_without_trained_tokens_do_not_shorten_the_prefix():
    tokens = mx.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7], [0, 0, 0, 0, 0, 0]])  # the last: a rank's missing row
    mask = mx.array([[0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 1], [0, 0, 0, 0, 0, 0.0]])
    assert shared_prefix_length(tokens, mask) == 4
    assert shared_prefix_length(tokens, mx.zeros(tokens.shape)) == 0


def test_the_prefix_rounds_down_to_the_asked_multiple():
    tokens, mask = agent_batch(512, prefix_length=45)
    assert shared_prefix_length(tokens, mask) == 45
    assert shared_prefix_length(tokens, mask, multiple=16) == 32


# ---------------------------------------------------------------------------------------------------------
# The same loss and gradients as the full rows
# ---------------------------------------------------------------------------------------------------------
def test_loss_and_lora_gradients_equal_the_full_rows_on_the_tiny_model(tiny_lora_model):
    tokens, mask = agent_batch(tiny_lora_model.args.vocab_size, pad_to=97)  # right-padded rows of 52, 70, 61
    _, ntoks, grads = assert_shared_equals_plain(tiny_lora_model, tokens, mask)
    assert ntoks.item() == mask[:, 1:].sum().item()
    assert any(mx.abs(g).max().item() > 0 for name, g in grads.items() if name.endswith("lora_a"))


@pytest.mark.parametrize("group_size", [32, 64])
def test_a_quantized_base_gives_the_full_rows_loss_and_gradients(tiny_model_dir, group_size):
    from mlx_lm.utils import load

    model, _ = load(str(tiny_model_dir))
    nn.quantize(model, group_size=group_size, bits=4)
    model = with_trained_lora(model)
    assert isinstance(model.layers[0].self_attn.q_proj.linear, nn.QuantizedLinear)
    assert_shared_equals_plain(model, *agent_batch(model.args.vocab_size))


@pytest.mark.parametrize("tied", [True, False])
def test_the_chunked_loss_with_a_shared_prefix_equals_the_plain_loss(tied):
    model = with_trained_lora(random_qwen2(tied=tied))
    tokens, mask = agent_batch(512, pad_to=81)
    prefix_length = shared_prefix_length(tokens, mask)
    positions = trained_positions(mask[:, prefix_length:], 16)

    def chunked_shared(model, tokens, mask):
        return shared_prefix_chunked_summed_loss(model, tokens, mask, prefix_length, 8, positions)

    plain = loss_and_grads(model, summed_loss, tokens, mask)
    assert_same_per_token(plain, loss_and_grads(model, chunked_shared, tokens, mask))
    assert_same_per_token(plain, loss_and_grads(model, lambda m, t, k: chunked_summed_loss(m, t, k, 8), tokens, mask))


def test_a_llama_model_like_smollm2_gives_the_full_rows_loss_and_gradients():
    from mlx_lm.models import llama

    mx.random.seed(0)
    args = llama.ModelArgs(model_type="llama", hidden_size=64, num_hidden_layers=2, intermediate_size=128,
                           num_attention_heads=4, rms_norm_eps=1e-5, vocab_size=512, num_key_value_heads=2,
                           tie_word_embeddings=True)
    assert_shared_equals_plain(with_trained_lora(llama.Model(args)), *agent_batch(512))


@pytest.mark.parametrize("chunk_size", [None, 8])
def test_gradient_checkpointing_gives_the_full_rows_loss_and_gradients(chunk_size):
    model = with_trained_lora(random_qwen2())
    tokens, mask = agent_batch(512, pad_to=81)
    prefix_length = shared_prefix_length(tokens, mask)

    def checkpointed(model, tokens, mask):
        if chunk_size is None:
            return shared_prefix_summed_loss(model, tokens, mask, prefix_length, checkpoint=True)
        return shared_prefix_chunked_summed_loss(model, tokens, mask, prefix_length, chunk_size, checkpoint=True)

    assert_same_per_token(loss_and_grads(model, summed_loss, tokens, mask),
                          loss_and_grads(model, checkpointed, tokens, mask))


def test_a_row_without_loss_that_does_not_share_the_prefix_changes_nothing():
    model = with_trained_lora(random_qwen2())
    tokens, mask = agent_batch(512)
    tokens = mx.concatenate([tokens, mx.zeros((1, tokens.shape[1]), tokens.dtype)])  # a rank's missing row
    mask = mx.concatenate([mask, mx.zeros((1, mask.shape[1]))])
    assert_shared_equals_plain(model, tokens, mask)


def test_the_cpu_blocked_attention_gives_the_full_rows_loss(monkeypatch):
    monkeypatch.setattr(mx.fast, "scaled_dot_product_attention", cpu_backend.scaled_dot_product_attention)
    model = with_trained_lora(random_qwen2())
    # own parts of at least MIN_QUERIES tokens, so the rows' queries take the blocked path too
    tokens, mask = agent_batch(512, prefix_length=70, own_lengths=(cpu_backend.MIN_QUERIES + 10, 90))
    assert_shared_equals_plain(model, tokens, mask)


@pytest.mark.parametrize("checkpoint", [False, True])
def test_prefix_length_zero_is_the_plain_loss(checkpoint):
    model = with_trained_lora(random_qwen2())
    tokens, mask = agent_batch(512)
    plain = loss_and_grads(model, summed_loss, tokens, mask)
    assert_same_per_token(plain, loss_and_grads(
        model, lambda m, t, k: shared_prefix_summed_loss(m, t, k, 0, checkpoint=checkpoint), tokens, mask))
    assert_same_per_token(plain, loss_and_grads(
        model, lambda m, t, k: shared_prefix_chunked_summed_loss(m, t, k, 0, 8, checkpoint=checkpoint), tokens, mask))


def test_the_prefix_runs_once_and_the_rows_run_only_their_own_tokens(monkeypatch):
    model = with_trained_lora(random_qwen2())
    tokens, mask = agent_batch(512, pad_to=81)
    embedded = []
    embed = type(model.model.embed_tokens).__call__
    monkeypatch.setattr(type(model.model.embed_tokens), "__call__",
                        lambda self, x: embedded.append(x.shape) or embed(self, x))
    prefix_length = shared_prefix_length(tokens, mask)
    mx.eval(shared_prefix_summed_loss(model, tokens, mask, prefix_length))
    assert embedded == [(1, 40), (3, 81 - 1 - 40)]


def test_models_that_may_not_use_a_plain_kv_cache_are_refused():
    model = with_trained_lora(random_qwen2())
    model.model_type = "gemma3"  # sliding-window layers need their own caches
    tokens, mask = agent_batch(512)
    with pytest.raises(SharedPrefixUnsupported, match="gemma3.*share_prefix"):
        shared_prefix_summed_loss(model, tokens, mask, 10)


def test_a_llama_with_sliding_window_layers_is_refused():
    from mlx_lm.models import llama

    args = llama.ModelArgs(model_type="llama", hidden_size=32, num_hidden_layers=2, intermediate_size=64,
                           num_attention_heads=4, rms_norm_eps=1e-6, vocab_size=64, num_key_value_heads=2,
                           layer_types=["sliding_attention", "full_attention"], sliding_window=8)
    tokens, mask = agent_batch(64)
    with pytest.raises(SharedPrefixUnsupported, match="RotatingKVCache"):
        shared_prefix_summed_loss(llama.Model(args), tokens, mask, 10)


# ---------------------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------------------
def trained_adapters(loss, batches, steps=6):
    """LoRA weights after `steps` Adam updates of the per-token mean through a compiled step, like the worker.
    A learning rate like the pipeline's: at 1e-2 this random model's training is chaotic, and float32 rounding
    differences between any two ways of summing grow tenfold per step."""
    model = with_trained_lora(random_qwen2())
    optimizer = optim.Adam(learning_rate=1e-3)
    value_and_grad = nn.value_and_grad(model, loss)
    state = [model.state, optimizer.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(*batch):
        (ce_sum, ntoks), grads = value_and_grad(model, *batch)
        return ce_sum / ntoks, tree_map(lambda g: g / ntoks, grads)

    losses = []
    for it in range(steps):
        value, grads = step(*batches[it % len(batches)])
        optimizer.update(model, grads)
        mx.eval(model.state, optimizer.state)
        losses.append(value.item())
    return losses, dict(tree_flatten(model.trainable_parameters()))


def test_a_few_optimizer_steps_give_the_same_adapters_as_the_full_rows():
    batches = [agent_batch(512, seed=seed, prefix_length=length, pad_to=97)
               for seed, length in ((3, 40), (4, 56))]
    plain_losses, plain = trained_adapters(summed_loss, batches)
    with_prefix = [(tokens, mask, shared_prefix_length(tokens, mask)) for tokens, mask in batches]
    shared_losses, adapters = trained_adapters(shared_prefix_summed_loss, with_prefix)
    assert plain_losses[-1] < plain_losses[0]
    assert np.allclose(shared_losses, plain_losses, **TOLERANCE)
    assert adapters.keys() == plain.keys() and plain
    for name, weight in plain.items():
        assert mx.allclose(adapters[name], weight, **TOLERANCE).item(), name

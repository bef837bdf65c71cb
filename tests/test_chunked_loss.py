"""chunked_summed_loss equals summed_loss (loss, token count, LoRA gradients) with a far lower peak, and so does the
loss the trainer builds with loss_and_inputs (logits only at the trained positions)."""

from functools import partial

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_lm.models import qwen2
from mlx_lm.tuner.utils import linear_to_lora_layers

from synthia.train.loss import (LOSS_SLOTS, ChunkedLossUnsupported, chunk_slices, chunked_summed_loss, loss_and_inputs,
                                summed_loss, trained_positions)

LORA = {"rank": 4, "scale": 20.0, "dropout": 0.0}
TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}


def random_qwen2(vocab_size=512, hidden_size=64, num_layers=2, tied=True, seed=0):
    mx.random.seed(seed)
    args = qwen2.ModelArgs(model_type="qwen2", hidden_size=hidden_size, num_hidden_layers=num_layers,
                           intermediate_size=2 * hidden_size, num_attention_heads=4, rms_norm_eps=1e-6,
                           vocab_size=vocab_size, num_key_value_heads=2, tie_word_embeddings=tied)
    return qwen2.Model(args)


def with_trained_lora(model, seed=1):
    """LoRA on every layer, lora_b nonzero (as after some training) so every gradient is nonzero."""
    model.freeze()
    linear_to_lora_layers(model, len(model.layers), LORA)
    mx.random.seed(seed)
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = 0.05 * mx.random.normal(module.lora_b.shape)
    mx.eval(model.parameters())
    return model


def batch(vocab_size, rows, length, seed=2):
    """Random tokens and a mask with a few loss spans per row, as synthia.data.render makes them."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, vocab_size, (rows, length), dtype=np.int32)
    mask = np.zeros((rows, length), np.float32)
    for row in range(rows):
        for start in sorted(rng.choice(length - 8, 3, replace=False)):
            mask[row, start:start + rng.integers(2, 8)] = 1.0
    return mx.array(tokens), mx.array(mask)


def loss_and_grads(model, loss, *inputs):
    (value, ntoks), grads = nn.value_and_grad(model, loss)(model, *inputs)
    mx.eval(value, ntoks, grads)
    return value, ntoks, dict(tree_flatten(grads))


def assert_same_per_token(plain, chunked):
    """Equal token counts; losses and gradients equal per trained token (sums grow with the count: per token is the
    scale of the mean loss the worker reports)."""
    ntoks = plain[1].item()
    assert chunked[1].item() == ntoks
    assert abs(chunked[0].item() - plain[0].item()) / ntoks <= 1e-5
    assert chunked[2].keys() == plain[2].keys() and plain[2]
    for name, grad in plain[2].items():
        assert mx.allclose(chunked[2][name] / ntoks, grad / ntoks, **TOLERANCE).item(), name


def assert_same_loss_and_gradients(model, tokens, mask, chunk_size, positions=None):
    plain = loss_and_grads(model, summed_loss, tokens, mask)
    chunked = loss_and_grads(model, lambda m, t, k: chunked_summed_loss(m, t, k, chunk_size, positions), tokens, mask)
    assert_same_per_token(plain, chunked)
    return plain


def test_loss_and_lora_gradients_equal_the_plain_loss_on_the_tiny_tied_model(tiny_model_dir):
    from mlx_lm.utils import load

    model, _ = load(str(tiny_model_dir))
    model = with_trained_lora(model)
    tokens, mask = batch(model.args.vocab_size, rows=2, length=70)
    _, ntoks, grads = assert_same_loss_and_gradients(model, tokens, mask, chunk_size=16)
    assert ntoks.item() == mask[:, 1:].sum().item()
    assert any(mx.abs(g).max().item() > 0 for name, g in grads.items() if name.endswith("lora_a"))


@pytest.mark.parametrize("chunk_size", [1, 7, 32, 1000])
def test_any_chunk_size_gives_the_plain_loss_with_a_separate_lm_head(chunk_size):
    model = with_trained_lora(random_qwen2(tied=False))
    tokens, mask = batch(512, rows=2, length=40)
    assert_same_loss_and_gradients(model, tokens, mask, chunk_size)


@pytest.mark.parametrize("tied", [True, False])
def test_a_quantized_base_gives_the_plain_loss(tied):
    model = random_qwen2(tied=tied)
    nn.quantize(model, group_size=32, bits=4)
    model = with_trained_lora(model)
    tokens, mask = batch(512, rows=1, length=50)
    assert_same_loss_and_gradients(model, tokens, mask, chunk_size=16)


@pytest.mark.parametrize("tied", [True, False])
def test_logits_only_at_the_trained_positions_give_the_plain_loss_and_gradients(tied):
    model = with_trained_lora(random_qwen2(tied=tied))
    tokens, mask = batch(512, rows=2, length=60)
    positions = trained_positions(mask, 16)
    assert positions.size < mask.size / 2 and positions.size % 16 == 0
    assert_same_loss_and_gradients(model, tokens, mask, chunk_size=8, positions=positions)


def test_the_trainers_chunked_loss_takes_the_trained_positions_and_gives_the_plain_loss():
    model = with_trained_lora(random_qwen2())
    tokens, mask = batch(512, rows=2, length=40)
    (plain, plain_inputs), (chunked, chunked_inputs) = loss_and_inputs(model, None), loss_and_inputs(model, 8)
    assert plain is summed_loss and len(plain_inputs(tokens, mask)) == 2
    *_, positions = chunked_inputs(tokens, mask)
    assert positions.size == LOSS_SLOTS < mask[:, 1:].size  # logits at one slot of positions, not at all 78
    assert_same_per_token(loss_and_grads(model, plain, *plain_inputs(tokens, mask)),
                          loss_and_grads(model, chunked, *chunked_inputs(tokens, mask)))


def test_a_batch_without_targets_has_zero_loss_and_zero_tokens():
    model = with_trained_lora(random_qwen2())
    tokens, _ = batch(512, rows=2, length=20)
    loss, inputs = loss_and_inputs(model, 8)
    ce_sum, ntoks = loss(model, *inputs(tokens, mx.zeros(tokens.shape)))
    assert ce_sum.item() == 0.0 and ntoks.item() == 0.0


def test_it_trains_inside_a_compiled_step_that_returns_the_gradients_like_the_worker():
    losses = {}
    for name, loss in {"plain": summed_loss, "chunked": lambda m, t, k: chunked_summed_loss(m, t, k, 16)}.items():
        model = with_trained_lora(random_qwen2())
        optimizer = optim.Adam(learning_rate=1e-2)
        value_and_grad = nn.value_and_grad(model, loss)
        state = [model.state, optimizer.state]

        @partial(mx.compile, inputs=state, outputs=state)
        def step(tokens, mask):
            (ce_sum, ntoks), grads = value_and_grad(model, tokens, mask)
            return ce_sum / ntoks, grads

        tokens, mask = batch(512, rows=2, length=48)
        losses[name] = []
        for _ in range(3):
            value, grads = step(tokens, mask)
            optimizer.update(model, grads)
            losses[name].append(value.item())
    assert losses["chunked"][-1] < losses["chunked"][0]
    assert np.allclose(losses["chunked"], losses["plain"], rtol=1e-5, atol=1e-5)


def peak_bytes_of_one_step(model, loss, tokens, mask):
    mx.clear_cache()
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    loss_and_grads(model, loss, tokens, mask)
    return mx.get_peak_memory() - before


def test_chunking_lowers_the_peak_memory_of_a_training_step():
    # Vocabulary x positions large enough that the logits dominate: 512 x 16384 x 4 B = 34 MB per copy.
    model = with_trained_lora(random_qwen2(vocab_size=16384, hidden_size=32, num_layers=1))
    tokens, mask = batch(16384, rows=1, length=513)
    plain = peak_bytes_of_one_step(model, summed_loss, tokens, mask)
    chunked = peak_bytes_of_one_step(model, lambda m, t, k: chunked_summed_loss(m, t, k, 32), tokens, mask)
    logits_bytes = 512 * 16384 * 4
    assert plain > 2 * logits_bytes
    assert chunked < plain / 4


def test_models_whose_logits_are_not_the_heads_output_are_refused():
    model = random_qwen2()
    model.model_type = "gemma2"  # soft-caps its logits after the head
    tokens, mask = batch(512, rows=1, length=20)
    with pytest.raises(ChunkedLossUnsupported, match="gemma2"):
        chunked_summed_loss(model, tokens, mask)


def test_chunks_cover_the_sequence_and_only_the_last_is_shorter():
    assert chunk_slices(10, 4) == [slice(0, 4), slice(4, 8), slice(8, 10)]
    assert chunk_slices(8, 4) == [slice(0, 4), slice(4, 8)]
    assert chunk_slices(3, 512) == [slice(0, 3)]
    with pytest.raises(ValueError, match="chunk_size"):
        chunk_slices(10, 0)

"""The training loss with a batch's shared prefix computed once (issue 28, point 1): every conversation of an agent
dataset opens with the same system prompt and tool definitions (~1,000 tokens), and the plain loss runs them through
the model again for every row, forward and backward.

Here the model's layers run one by one, each first on the prefix, once, as a batch of one, giving its keys and
values (through SharedPrefixCache, in mlx_lm's KV-cache protocol), then on only the rows' own tokens, from
position prefix_length on, each attending to the prefix's keys and values (broadcast over the rows) and causally
to its own tokens: the same attention as on the full rows, so the same loss. The prefix pass is inside the loss
function, so autodiff sums the gradients that reach the prefix from every row once, through the broadcast. Gradient
checkpointing is an option of the loss here, not mlx_lm's grad_checkpoint (which patches the layer class and would
take the prefix's keys and values, reaching the layer inside a cache object, for constants: no gradient through
them).

The prefix computes no logits, so it must end before the first position whose target carries loss:
position t predicts token t + 1 with weight mask[t + 1], so a prefix of P positions needs mask[1..P] = 0 in every
row, and the row keeps its position P, which predicts its own token P. shared_prefix_length finds the longest such
prefix on the host, before the step (a compiled step cannot read the batch's values). Rows without any trained
token (a rank's missing rows, all padding) are left out of that search: whatever they attend to, they add nothing
to the loss or the gradients. Right-padding needs no mask: it comes after every real token, which causal
attention never lets a real token see.
"""

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx_lm.models.base import create_attention_mask as create_layer_mask
from mlx_lm.models.cache import create_attention_mask, make_prompt_cache

from synthia.train.loss import DEFAULT_CHUNK_SIZE, SUPPORTED_MODEL_TYPES, OutputHead, at_positions, head_loss_sum


# ---------------------------------------------------------------------------------------------------------
# On the host: how long a prefix a batch shares
# ---------------------------------------------------------------------------------------------------------
def common_prefix_length(rows):
    """The number of leading tokens all rows (sequences of token ids) have in common; 0 for no rows."""
    rows = [np.asarray(row) for row in rows]
    if not rows:
        return 0
    shortest = min(len(row) for row in rows)
    same = np.ones(shortest, bool)
    for row in rows[1:]:
        same &= rows[0][:shortest] == row[:shortest]
    return int(shortest if same.all() else np.argmin(same))


def untrained_lead(mask_row):
    """How many leading positions of a row may be shared: those whose targets (the next token) carry no loss,
    so up to the one before the first trained token. A row without loss: all but its last position."""
    trained = np.flatnonzero(np.asarray(mask_row)[1:])
    return int(trained[0]) if trained.size else len(mask_row) - 1


def shared_prefix_length(tokens, mask, multiple=1):
    """The longest prefix the batch's rows that carry loss share, ending before any row's first trained target,
    rounded down to a multiple of `multiple` (so compiled shapes repeat); 0 when nothing is shared.
    tokens, mask: the padded [rows x width] batch (numpy or mx arrays)."""
    tokens, mask = np.asarray(tokens), np.asarray(mask)
    trained_rows = [row for row in range(len(mask)) if mask[row, 1:].any()]
    if not trained_rows:
        return 0
    length = min([common_prefix_length(tokens[trained_rows])] + [untrained_lead(mask[row]) for row in trained_rows])
    return length // multiple * multiple


# ---------------------------------------------------------------------------------------------------------
# In the step: the prefix once, then each row's own tokens
# ---------------------------------------------------------------------------------------------------------
class SharedPrefixUnsupported(ValueError):
    """The model's attention layers are not known to take the prefix through a KV cache; use the plain loss."""


class SharedPrefixCache:
    """One attention layer's keys and values of the shared prefix, in mlx_lm's KV-cache protocol (offset,
    update_and_fetch, make_mask). Made empty, for the prefix pass, it keeps the keys and values it is given; made
    with them, for the rows' own tokens, it puts them in front of the rows' own, broadcast over the rows, and keeps
    nothing, so the offset (the rows' first position, for RoPE and the causal mask) stays the prefix length."""

    def __init__(self, keys=None, values=None):
        self.keys, self.values = keys, values
        self.offset = 0 if keys is None else keys.shape[-2]

    def update_and_fetch(self, keys, values):
        if self.keys is None:
            self.keys, self.values, self.offset = keys, values, keys.shape[-2]
            return keys, values
        return self.in_front(self.keys, keys), self.in_front(self.values, values)

    @staticmethod
    def in_front(prefix, own):
        return mx.concatenate([mx.broadcast_to(prefix, (own.shape[0], *prefix.shape[1:])), own], axis=-2)

    def make_mask(self, length, return_array=False, window_size=None):
        """The rows' queries see every prefix key and their own keys causally ("causal" aligns to the last keys)."""
        return create_attention_mask(length, self.offset, return_array, window_size)


def check_supported(model):
    """Known model types whose every layer attends to all earlier positions: mlx_lm gives them a plain KVCache at
    every layer (sliding-window layers get a RotatingKVCache, which this does not imitate)."""
    model_type = getattr(model, "model_type", type(model).__name__)
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise SharedPrefixUnsupported(
            f"sharing a batch's prefix supports model types {', '.join(SUPPORTED_MODEL_TYPES)}; this model is "
            f"{model_type!r}. Fix: turn share_prefix off for it.")
    other = sorted({type(cache).__name__ for cache in make_prompt_cache(model)} - {"KVCache"})
    if other:
        raise SharedPrefixUnsupported(f"this {model_type} model has layers with a {', '.join(other)} (sliding-window "
                                      "attention); sharing a prefix knows full attention only. Fix: turn "
                                      "share_prefix off for it.")


def shared_prefix_hidden(model, tokens, prefix_length, checkpoint=False):
    """model.model's final hidden states at the rows' own input positions, tokens[:, prefix_length:-1], with the
    first prefix_length tokens of the first row run once. Layer by layer: the prefix (batch 1) gives its keys and
    values, which the rows' own tokens attend to. checkpoint: recompute each layer's activations in the backward
    pass, as mlx_lm's grad_checkpoint does, but with the prefix's keys and values as the checkpoint's outputs and
    inputs (mlx_lm's would see them as constants and drop their gradients). prefix_length 0: the full rows."""
    check_supported(model)
    body = model.model
    prefix = body.embed_tokens(tokens[:1, :prefix_length]) if prefix_length else None
    own = body.embed_tokens(tokens[:, prefix_length:-1])
    for layer in body.layers:
        prefix_keys_values = []
        if prefix_length:
            prefix, *prefix_keys_values = layer_step(prefix_layer, layer, checkpoint)(prefix)
        own = layer_step(own_layer, layer, checkpoint)(own, *prefix_keys_values)
    return body.norm(own)


def prefix_layer(layer, hidden):
    """(the layer's output, its keys and values) for the prefix: one row, causal."""
    cache = SharedPrefixCache()
    out = layer(hidden, create_layer_mask(hidden, cache), cache=cache)
    return out, cache.keys, cache.values


def own_layer(layer, hidden, keys=None, values=None):
    """The layer's output for the rows' own tokens, attending to the prefix's keys and values first, if any."""
    cache = SharedPrefixCache(keys, values)
    return layer(hidden, create_layer_mask(hidden, cache), cache=cache)


def layer_step(step, layer, checkpoint):
    if not checkpoint:
        return lambda *arrays: step(layer, *arrays)

    def with_parameters(parameters, *arrays):
        layer.update(parameters)
        return step(layer, *arrays)

    return lambda *arrays: mx.checkpoint(with_parameters)(layer.trainable_parameters(), *arrays)


def shared_prefix_summed_loss(model, tokens, mask, prefix_length, checkpoint=False):
    """summed_loss(model, tokens, mask) (sum of cross-entropy over the targets the mask marks, their count), with
    the first prefix_length tokens, the same in every row that carries loss, computed once (see
    shared_prefix_length). prefix_length 0: the plain loss."""
    hidden = shared_prefix_hidden(model, tokens, prefix_length, checkpoint)
    logits = OutputHead(model).project(hidden)
    own, weights = tokens[:, prefix_length:], mask[:, prefix_length + 1:]
    ce = nn.losses.cross_entropy(logits, own[:, 1:]) * weights
    return ce.astype(mx.float32).sum(), weights.sum()


def shared_prefix_chunked_summed_loss(model, tokens, mask, prefix_length, chunk_size=DEFAULT_CHUNK_SIZE,
                                      positions=None, checkpoint=False):
    """chunked_summed_loss with the prefix computed once. `positions`, if given, are trained_positions of the
    rows' own part, mask[:, prefix_length:]."""
    hidden = shared_prefix_hidden(model, tokens, prefix_length, checkpoint)
    head = OutputHead(model)
    targets, weights = tokens[:, prefix_length + 1:], mask[:, prefix_length + 1:]
    picked = (hidden, targets, weights) if positions is None else at_positions(positions, hidden, targets, weights)
    return head_loss_sum(head, *picked, chunk_size), weights.sum()

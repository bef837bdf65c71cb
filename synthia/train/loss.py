"""The training loss: cross-entropy summed over the targets the loss mask marks (the assistant turns), and their
count. Sums, not means, so that batches, accumulation steps and ranks with different numbers of trained tokens
combine into one per-token mean. `loss_and_inputs` picks the form a job asks for; both give the same loss.

summed_loss, the plain form, computes the logits of every position at once. chunked_summed_loss avoids that
[tokens x vocabulary] array: with Qwen2.5's 152,064-token vocabulary the logits dwarf everything else a LoRA step
holds: at 2,048 tokens one copy is 1.2 GB in float32 (0.6 GB in bf16), and the backward pass holds several (the
logits, their softmax, the gradient). Here the model's final hidden states go through the output head a chunk of
positions at a time inside one mx.custom_function: the forward pass keeps only each chunk's summed loss,
and the backward pass recomputes one chunk's logits at a time to get the gradient of the hidden states.
Loss and gradients equal summed_loss's up to the order of a float32 sum.

The peak is a few chunk-sized arrays, not one: MLX allocates an op's output when it queues the op, and
queues about ten ahead of the one running, so ~7 [batch x chunk x vocabulary] arrays are alive at the
peak (measured on the CPU with bench/memory.py); smaller chunks lower it further.

Only the positions that carry loss need logits, and in chat data they are few (the assistant turns: ~7%
of the shipped dataset's tokens). A compiled step cannot read the mask's values, so trained_positions()
finds them on the host, before the step, and passes their indices in; the hidden states are gathered at
those indices before the head. The count is rounded up to a multiple of a slot size, so that mx.compile
sees few distinct shapes (it traces again for each new one).
"""

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from synthia.train.jobs import JobError

LOSS_SLOTS = 64  # chunked loss: trained positions are padded to a multiple of this, so compiled shapes repeat
DEFAULT_CHUNK_SIZE = 128  # positions per chunk: the loss's peak is ~7 x rows x chunk x vocabulary x dtype
# mlx_lm models whose logits are exactly head(model.model(inputs)), the head being lm_head or the tied
# embedding; others scale or soft-cap their logits after the head (gemma, cohere), which this would skip.
SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral")


def summed_loss(model, tokens, mask):
    """(sum of cross-entropy over the targets the mask marks, their count), from the logits of every position."""
    inputs, targets, weights = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]
    ce = nn.losses.cross_entropy(model(inputs), targets) * weights
    return ce.astype(mx.float32).sum(), weights.sum()


def loss_and_inputs(model, chunk_size):
    """The summed masked loss a job asks for, and how a batch becomes its inputs: loss(model, *inputs(tokens,
    mask)). chunk_size None: summed_loss, logits of every position at once. A number: chunked_summed_loss,
    logits only at the trained positions (found on the host), chunk_size of them at a time."""
    if chunk_size is None:
        return summed_loss, lambda tokens, mask: (tokens, mask)
    try:
        OutputHead(model)
    except ChunkedLossUnsupported as error:
        raise JobError(f"loss_chunk_size {chunk_size}: {error}") from None

    def loss(model, tokens, mask, positions):
        return chunked_summed_loss(model, tokens, mask, chunk_size, positions)

    return loss, lambda tokens, mask: (tokens, mask, trained_positions(mask, LOSS_SLOTS))


# ---------------------------------------------------------------------------------------------------------
# The chunked form: logits only at the trained positions, a chunk of them at a time
# ---------------------------------------------------------------------------------------------------------
class ChunkedLossUnsupported(ValueError):
    """The model's logits are not head(hidden states); use the plain loss."""


def supports_chunked_loss(model):
    return getattr(model, "model_type", None) in SUPPORTED_MODEL_TYPES and hasattr(model, "model")


class OutputHead:
    """The model's output projection: hidden -> logits, and the (dequantized) weight rows of given tokens,
    which are d logit[token] / d hidden. Its weights get no gradient: right for LoRA and DoRA, which
    leave the head frozen, wrong for training the head itself."""

    def __init__(self, model):
        if not supports_chunked_loss(model):
            raise ChunkedLossUnsupported(
                f"the chunked loss supports model types {', '.join(SUPPORTED_MODEL_TYPES)}; this model is "
                f"{getattr(model, 'model_type', type(model).__name__)!r}. Fix: set loss_chunk_size to null "
                "(the plain loss) for it.")
        tied = "lm_head" not in model
        self.module = model.model.embed_tokens if tied else model.lm_head
        if not isinstance(self.module, (nn.Embedding, nn.QuantizedEmbedding, nn.Linear, nn.QuantizedLinear)):
            raise ChunkedLossUnsupported(f"the output head is a {type(self.module).__name__}; the chunked loss "
                                         "knows Embedding and Linear heads. Fix: set loss_chunk_size to null.")
        self.project = self.module.as_linear if tied else self.module

    def rows(self, tokens):
        head = self.module
        if isinstance(head, (nn.Embedding, nn.QuantizedEmbedding)):
            return head(tokens)
        if isinstance(head, nn.QuantizedLinear):
            biases = head.get("biases")
            return mx.dequantize(head.weight[tokens], head.scales[tokens], None if biases is None else biases[tokens],
                                 group_size=head.group_size, bits=head.bits, mode=head.mode)
        return head.weight[tokens]


def chunk_slices(length, chunk_size):
    """Slices of chunk_size positions covering range(length); the last may be shorter."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return [slice(start, min(start + chunk_size, length)) for start in range(0, length, chunk_size)]


def chunked_summed_loss(model, tokens, mask, chunk_size=DEFAULT_CHUNK_SIZE, positions=None):
    """summed_loss's (sum of cross-entropy over the targets the mask marks, their count), without
    ever holding more than a few chunks' logits. With `positions` (from trained_positions), logits only
    there; positions without loss may be left out, never one with loss."""
    inputs, targets, weights = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]
    head = OutputHead(model)
    hidden = model.model(inputs)
    picked = (hidden, targets, weights) if positions is None else at_positions(positions, hidden, targets, weights)
    return head_loss_sum(head, *picked, chunk_size), weights.sum()


def trained_positions(mask, slot_size):
    """On the host: the flat indices, in a [rows x (width - 1)] array of targets, of those the mask marks,
    then padding up to a multiple of slot_size (at least one slot). Padding is the index one past the end,
    which at_positions reads as a target without loss."""
    weights = np.asarray(mask)[:, 1:]
    found = np.flatnonzero(weights)
    slots = max(1, -(-len(found) // slot_size)) * slot_size
    positions = np.full(slots, weights.size, np.int32)
    positions[: len(found)] = found
    return mx.array(positions)


def at_positions(positions, hidden, targets, weights):
    """(hidden, targets, weights) at the flat positions, as one row each: [1, slots, hidden], [1, slots].
    An index one past the end takes the last position's hidden state and target, with weight 0."""
    count = weights.size
    inside = mx.minimum(positions, count - 1)
    padded_weights = mx.concatenate([weights.reshape(-1), mx.zeros((1,), weights.dtype)])
    return (hidden.reshape(count, hidden.shape[-1])[inside][None], targets.reshape(-1)[inside][None],
            padded_weights[positions][None])


def head_loss_sum(head, hidden, targets, weights, chunk_size):
    """Summed masked cross-entropy of head.project(hidden), one chunk of positions after another.

    Each chunk's input depends on the previous chunk's result (mx.depends), so MLX orders the chunks one
    after the other instead of side by side. The backward pass recomputes each chunk's logits and writes
    the gradient by hand, (softmax - one-hot) x weight, with the one-hot part taken as the target rows of
    the head's weights: half the [chunk x vocabulary] arrays of differentiating cross_entropy.
    Gradients flow to `hidden` only: the head's weights are constants here.
    """
    # Slices, not mx.split: a multi-output split inside the custom vjp breaks mx.compile (MLX 0.32).
    chunks = chunk_slices(hidden.shape[1], chunk_size)

    @mx.custom_function
    def loss_sum(hidden):
        losses = []
        for chunk in chunks:
            logits = head.project(after(hidden[:, chunk], losses[-1:]))
            ce = nn.losses.cross_entropy(logits, targets[:, chunk]) * weights[:, chunk]
            losses.append(ce.astype(mx.float32).sum())
        return sum(losses[1:], losses[0])

    @loss_sum.vjp
    def loss_sum_vjp(hidden, cotangent, _):
        grads = []
        for chunk in chunks:
            hidden_chunk = after(hidden[:, chunk], grads[-1:])
            logits = head.project(hidden_chunk)
            scale = (weights[:, chunk] * cotangent).astype(logits.dtype)[..., None]
            softmax_part = mx.softmax(logits, axis=-1, precise=True) * scale
            _, (grad,) = mx.vjp(head.project, [hidden_chunk], [softmax_part])
            grads.append(grad - scale * head.rows(targets[:, chunk]))
        return mx.concatenate(grads, axis=1)

    return loss_sum(hidden)


def after(array, previous):
    """`array`, evaluated only once the arrays in `previous` (a list of at most one) are."""
    return mx.depends(array, previous[0]) if previous else array

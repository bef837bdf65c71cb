"""The masked cross-entropy of synthia.worker without the [tokens x vocabulary] logits array.

With Qwen2.5's 152,064-token vocabulary the logits dwarf everything else a LoRA step holds: at 2,048
tokens one copy is 1.2 GB in float32 (0.6 GB in bf16), and the backward pass holds several (the logits,
their softmax, the gradient). Here the model's final hidden states go through the output head a chunk of
positions at a time inside one mx.custom_function: the forward pass keeps only each chunk's summed loss,
and the backward pass recomputes one chunk's logits at a time to get the gradient of the hidden states.
Loss and gradients equal worker.masked_loss's up to the order of a float32 sum.

The peak is a few chunk-sized arrays, not one: MLX allocates an op's output when it queues the op, and
queues about ten ahead of the one running, so ~11 [batch x chunk x vocabulary] buffers can be alive
(measured on the CPU; bench/memory.py). Smaller chunks lower it further at some speed.

Every position is computed, including those without loss: picking only the masked ones needs the mask's
values on the host, which mlx_lm's compiled training step cannot read, and the chunking already bounds
the memory.
"""

import mlx.core as mx
import mlx.nn as nn

DEFAULT_CHUNK_SIZE = 512  # positions per chunk; the loss's peak is ~11 x batch x chunk x vocabulary x 4 B
# mlx_lm models whose logits are exactly head(model.model(inputs)), the head being lm_head or the tied
# embedding; others scale or soft-cap their logits after the head (gemma, cohere), which this would skip.
SUPPORTED_MODEL_TYPES = ("qwen2", "qwen3", "llama", "mistral")


class ChunkedLossUnsupported(ValueError):
    """The model's logits are not head(hidden states); use the plain loss."""


def supports_chunked_loss(model):
    return getattr(model, "model_type", None) in SUPPORTED_MODEL_TYPES and hasattr(model, "model")


def output_head(model):
    """hidden -> logits: lm_head, or the tied embedding's transpose."""
    if not supports_chunked_loss(model):
        raise ChunkedLossUnsupported(
            f"chunked loss supports model types {', '.join(SUPPORTED_MODEL_TYPES)}; this model is "
            f"{getattr(model, 'model_type', type(model).__name__)!r}. Fix: turn the chunked loss off for it.")
    head = model.lm_head if "lm_head" in model else model.model.embed_tokens
    if head.trainable_parameters():
        raise ChunkedLossUnsupported("the output head is trainable, and the chunked loss treats it as frozen. "
                                     "Fix: freeze it (LoRA leaves it frozen) or turn the chunked loss off.")
    return head if "lm_head" in model else head.as_linear


def chunk_slices(length, chunk_size):
    """Slices of chunk_size positions covering range(length); the last may be shorter."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return [slice(start, min(start + chunk_size, length)) for start in range(0, length, chunk_size)]


def chunked_masked_loss(model, tokens, mask, chunk_size=DEFAULT_CHUNK_SIZE):
    """Mean cross-entropy over the target tokens the mask marks, and their count: worker.masked_loss's
    (loss, ntoks), without ever holding more than one chunk's logits."""
    inputs, targets, weights = tokens[:, :-1], tokens[:, 1:], mask[:, 1:]
    project = output_head(model)
    hidden = model.model(inputs)
    ntoks = weights.sum()
    return head_loss_sum(project, hidden, targets, weights, chunk_size) / mx.maximum(ntoks, 1), ntoks


def head_loss_sum(project, hidden, targets, weights, chunk_size):
    """Summed masked cross-entropy of project(hidden), one chunk of positions after another.

    Each chunk's input is made to depend on the previous chunk's result (mx.depends): otherwise MLX
    evaluates independent chunks side by side and holds all their logits at once. The backward pass
    recomputes each chunk's logits the same way, one chunk at a time, so nothing [tokens x vocabulary]
    is kept between the passes. Gradients flow to `hidden` only: the head's weights are constants here.
    """
    # Slices, not mx.split: a multi-output split inside the custom vjp breaks mx.compile (MLX 0.32).
    chunks = chunk_slices(hidden.shape[1], chunk_size)

    def chunk_loss(hidden_chunk, chunk):
        ce = nn.losses.cross_entropy(project(hidden_chunk), targets[:, chunk]) * weights[:, chunk]
        return ce.astype(mx.float32).sum()

    @mx.custom_function
    def loss_sum(hidden):
        losses = []
        for chunk in chunks:
            losses.append(chunk_loss(after(hidden[:, chunk], losses[-1:]), chunk))
        return sum(losses[1:], losses[0])

    @loss_sum.vjp
    def loss_sum_vjp(hidden, cotangent, _):
        grads = []
        for chunk in chunks:
            _, (grad,) = mx.vjp(lambda h: chunk_loss(h, chunk), [after(hidden[:, chunk], grads[-1:])], [cotangent])
            grads.append(grad)
        return mx.concatenate(grads, axis=1)

    return loss_sum(hidden)


def after(array, previous):
    """`array`, evaluated only once the arrays in `previous` (a list of at most one) are."""
    return mx.depends(array, previous[0]) if previous else array

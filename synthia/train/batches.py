"""From a token file to the batches a step trains on: examples with their loss masks, length-sorted batches, the
batch of each iteration, each rank's share of it, and the padded (tokens, mask) arrays.

The order of epoch e is a pure function of (seed, e), so a resumed run needs only the iteration number to see the
same batches as an uninterrupted one.
"""

import mlx.core as mx
import numpy as np

from synthia.data import token_files

PAD_TO = 32  # pad batches to a multiple of this, as mlx_lm does, so compiled shapes repeat


def load_token_file(path):
    """List of (tokens, loss mask) numpy pairs, one per example."""
    return [(tokens, loss_mask(len(tokens), spans)) for _, tokens, spans in token_files.read(path)]


def loss_mask(length, spans):
    """float32 per token: 1 where the token is a training target (inside a span: an assistant turn), else 0."""
    mask = np.zeros(length, dtype=np.float32)
    for start, end in spans:
        mask[start:end] = 1.0
    return mask


def batch_index_groups(lengths, batch_size, keep_remainder):
    """Indices sorted by length, cut into batches; the short last batch only when asked (evaluation)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    stop = len(order) if keep_remainder else len(order) - batch_size + 1
    return [order[i : i + batch_size] for i in range(0, max(stop, 0), batch_size)]


def training_batch_indices(groups, seed, iteration):
    """The batch of 1-based `iteration`: epochs visit every batch once, in an order drawn from (seed, epoch)."""
    epoch, position = divmod(iteration - 1, len(groups))
    return groups[np.random.default_rng([seed, epoch]).permutation(len(groups))[position]]


def rank_share(indices, rank, world):
    """The examples of a batch that one rank trains on: every world-th, from its rank."""
    return indices[rank::world]


def pack_batch(dataset, indices, rank, world, max_seq_length):
    """This rank's rows of a batch, right-padded into (tokens, mask); padding and missing rows carry no loss."""
    rows = max(1, -(-len(indices) // world))
    mine = [dataset[i] for i in rank_share(indices, rank, world)]
    width = padded_width(max((len(t) for t, _ in mine), default=1), max_seq_length)
    tokens, mask = np.zeros((rows, width), np.int32), np.zeros((rows, width), np.float32)
    for row, (t, m) in enumerate(mine):
        n = min(len(t), width)  # examples were fitted to max_seq_length by the parent
        tokens[row, :n], mask[row, :n] = t[:n], m[:n]
    return mx.array(tokens), mx.array(mask)


def padded_width(longest, max_seq_length):
    """A batch's width: its longest example padded to 1 + a multiple of PAD_TO (1 for the shifted targets)."""
    return min(1 + PAD_TO * ((longest + PAD_TO - 1) // PAD_TO), max_seq_length)


def evaluation_batches(dataset, batch_size, max_seq_length, num_batches=-1, rank=0, world=1):
    """Every example once, length-sorted, the short last batch included; the first `num_batches` (-1: all)."""
    groups = batch_index_groups([len(t) for t, _ in dataset], batch_size, keep_remainder=True)
    for indices in groups if num_batches < 0 else groups[:num_batches]:
        yield pack_batch(dataset, indices, rank, world, max_seq_length)

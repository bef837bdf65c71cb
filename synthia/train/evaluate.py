"""The masked loss of a model on token files: evaluate() (also the training loop's validation) and the evaluate
job, several models each on its splits."""

import math

import mlx.core as mx
from mlx_lm.utils import load

from synthia.train.batches import evaluation_batches, load_token_file
from synthia.train.loss import loss_and_inputs


def evaluate(model, dataset, batch_size, max_seq_length, num_batches=-1, world=None, chunk_size=None):
    """Per-token mean loss over a split (its first `num_batches` batches, or all with -1), every example once."""
    rank, size = (world.rank(), world.size()) if world else (0, 1)
    loss, inputs = loss_and_inputs(model, chunk_size)
    total, count = mx.array(0.0), mx.array(0.0)
    for tokens, mask in evaluation_batches(dataset, batch_size, max_seq_length, num_batches, rank, size):
        ce_sum, ntoks = loss(model, *inputs(tokens, mask))
        total, count = total + ce_sum, count + ntoks
        mx.eval(total, count)
    if world:
        total, count = mx.distributed.all_sum(total, stream=mx.cpu), mx.distributed.all_sum(count, stream=mx.cpu)
    return (total / count).item() if count.item() else None


def evaluate_job(job):
    """Each run: a model on its splits. {label: {split: {loss, perplexity}}}."""
    results = {}
    for run in job.runs:
        model, _ = load(run.model)
        model.eval()
        results[run.label] = {}
        for split, path in run.splits.items():
            loss = evaluate(model, load_token_file(path), job.batch_size, job.max_seq_length,
                            run.num_batches[split], chunk_size=job.loss_chunk_size)
            results[run.label][split] = {"loss": loss, "perplexity": math.exp(loss)}
            print(f"{run.label} {split}: loss {loss:.4f}  ppl {math.exp(loss):.3f}", flush=True)
        del model
        mx.clear_cache()  # the next run loads another copy of the model
    return results

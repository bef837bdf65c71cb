"""Training: the child process that trains, evaluates or scores one stage (python -m synthia.train.worker KIND
JOB.json), and what the parent needs to plan it.

Start with loop.py, the training loop. What the worker receives: jobs.py. Where the examples and batches come
from: batches.py (token files, loss masks, batch order, padding). Where the loss is: loss.py (plain and chunked);
shared_prefix.py, the same loss with the prefix a batch's rows share (the tool prompt) computed once (not yet used
by the loop).
checkpoint.py saves and resumes; evaluate.py measures a model's loss on token files; worker.py is the entry point.
schedule.py is the learning rate; memory_plan.py predicts each step's peak memory; fuse.py merges adapters.
"""

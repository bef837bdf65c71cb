"""The child process that trains or evaluates one stage (python -m synthia.train.worker JOB.json).

Start with worker.py (the loop, evaluation, checkpoints); loss.py is the masked loss, with or without the full logits;
schedule.py the learning rate; memory_plan.py predicts each step's peak memory; fuse.py merges adapters.
"""

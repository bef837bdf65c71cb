"""A run of stages in the parent process: where each stage's files live, the steps it runs, what it reports.

Start with stagedir.py (a stage's files and run.json) and steps.py (each external command as a list of strings);
runstate.py makes runs safe to interrupt; models.py resolves the base model; stage_memory.py plans a stage's
memory; reports.py prints and collects the results a person reads.
"""

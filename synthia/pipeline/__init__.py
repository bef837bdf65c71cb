"""A run of stages in the parent process: train_mlx.py's flow calls into here.

Start with stage.py (each stage skipped, continued or run, step by step) and plan.py (a stage's steps: the commands
and the typed jobs the worker reads). run.py holds the run's options, log line and error; resolve.py the settings;
inputs.py what every stage shares (base model, encoded data); stagedir.py a stage's files and run.json;
runstate.py the lock and safe-to-interrupt bookkeeping; steps.py each external command as a list of strings, run
with progress; models.py the base model; stage_memory.py a stage's memory plan; score_stages.py --test and
--evaluate; reports.py what a person reads after a stage; ship.py --export and --upload.
"""

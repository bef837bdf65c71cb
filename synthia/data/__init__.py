"""What a model is trained on, from a JSONL line to token ids and the spans that carry loss.

Start with validate.py (the dataset's rules and the strict JSON reader), then render.py (a conversation rendered
with the model's chat template, and the assistant turns that are trained). splits.py cuts stages and the
train/valid/test split; token_files.py stores what the worker reads; preview.py shows one line as the model sees it.
"""

"""What a model is trained on, from a JSONL line to token ids and the spans that carry loss.

Start with validate.py (the dataset's rules), then render.py (what is trained: a conversation rendered with the
model's chat template, and the assistant turns that carry loss). template_check.py says whether a chat template
keeps what training needs; encode.py encodes a whole dataset as render.py does one conversation, faster (pieces.py
tokenizes). splits.py cuts stages and the train/valid/test split; token_files.py stores what the worker reads;
preview.py shows one line as the model sees it.
"""

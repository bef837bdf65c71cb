"""What a model is trained on, from a JSONL line to token ids and the spans that carry loss.

Start with validate.py (the dataset's rules), then render.py (what is trained: a conversation rendered with the
model's chat template, and the assistant turns that carry loss).

validate.py leans on strict_json.py (standard JSON only, each problem naming its field), tool_schemas.py (a
record's tools compiled once, arguments checked against them; quick_schema.py is the fast yes) and findings.py
(a problem of one line). render.py leans on template_check.py (does a chat template keep what training needs?),
and encode.py encodes a whole dataset as render.py does one conversation, faster (pieces.py tokenizes).
splits.py cuts stages and the train/valid/test split; token_files.py stores what the worker reads; preview.py
shows one line as the model sees it.
"""

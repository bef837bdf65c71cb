"""The built-in demo (SmolLM2-135M, offline) and the tiny random model the tests train.

smollm2.py: the demo's base model and its closing summary; tiny_model.py: a Qwen2 in miniature built in seconds.
"""

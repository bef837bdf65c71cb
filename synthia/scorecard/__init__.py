"""Scoring tool calls by generation: does the model call the right tool with the right arguments?

Start with judge.py (reads calls out of text and judges one turn); generation.py generates the answers;
gguf_generation.py loads a model directory or a GGUF file to score (a GGUF runs in llama.cpp, with the tokenizer
and chat template it carries); runner.py runs scoring in a child process; card.py writes scorecard.md and the
charts. bfcl.py reads the Berkeley Function Calling Leaderboard's entries as prompts (from the bfcl-eval package)
and bfcl_judge.py judges calls by its rules, with per-category and group rates and their intervals.
"""

"""Scoring tool calls by generation: does the model call the right tool with the right arguments?

Start with judge.py (reads calls out of text and judges one turn); generation.py generates the answers;
runner.py runs scoring in a child process; card.py writes scorecard.md and the charts.
"""

"""What a person reads after --test: which held-out files each model is scored on, scorecard.md and loss.png."""

import json
from pathlib import Path

from synthia import data, scorecard, stagedir


def score_splits(number, output_dir, eval_data):
    """{label: OpenAI JSONL}: stage N's test split, every earlier stage's (the forgetting check), --eval-data."""
    files = {k: stagedir.stage_paths(output_dir, k).stage_dir / "data" / "test.jsonl" for k in range(1, number + 1)}
    splits = {f"stage{k} test": str(path) for k, path in files.items() if path.exists()}
    return {**splits, **({"eval-data": str(eval_data)} if eval_data else {})}


def write_reports(output_dir, numbers, base_results, log=print):
    """models/scorecard.md (base and every scored stage side by side) and models/loss.png; prints the scorecard."""
    output_dir = Path(output_dir)
    columns, curves = [("base", base_results)], []
    for number in numbers:
        paths = stagedir.stage_paths(output_dir, number)
        if (paths.stage_dir / "eval.json").exists():
            columns.append((f"stage {number}", json.loads((paths.stage_dir / "eval.json").read_text())))
        record = stagedir.read_run_json(paths) or {}
        if record.get("curves"):
            curves.append((f"stage {number}", record["curves"]["train"], record["curves"]["valid"]))
    text = scorecard.write_scorecard(columns, output_dir / "scorecard.md")
    if curves:
        scorecard.plot_losses(curves, output_dir / "loss.png")
    log(text)
    log(f"wrote {output_dir / 'scorecard.md'}" + (f" and {output_dir / 'loss.png'}" if curves else ""))


def held_out_test_split(examples, values, out_dir):
    """The dataset's test split (every category), as the stages draw it, written to out_dir/test.jsonl."""
    assignment = data.split_of_examples(examples, values["seed"], values["valid_fraction"], values["test_fraction"])
    path = out_dir / "test.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(ex.record, ensure_ascii=False) + "\n" for ex in examples
                            if assignment[ex.line] == "test"))
    return {"dataset test": str(path)}

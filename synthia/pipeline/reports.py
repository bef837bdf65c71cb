"""What a person reads: a finished stage's results and closing lines; after --test, which held-out files each
model is scored on, scorecard.md and loss.png."""

import json
from pathlib import Path

from synthia.data import stage_data
from synthia.pipeline import stagedir
from synthia.scorecard import bfcl_card, card, runner


def score_splits(number, output_dir, eval_data):
    """{label: OpenAI JSONL}: stage N's test split, every earlier stage's (the forgetting check), --eval-data."""
    files = {k: stagedir.stage_paths(output_dir, k).stage_dir / "data" / "test.jsonl" for k in range(1, number + 1)}
    splits = {f"stage{k} test": str(path) for k, path in files.items() if path.exists()}
    return {**splits, **({"eval-data": str(eval_data)} if eval_data else {})}


def write_reports(output_dir, numbers, base_results, log=print, bench=None, exports=()):
    """models/scorecard.md (base and every scored stage side by side, then `exports`: [(label, results, out_dir)]
    of exported files) and models/loss.png; with bench == "bfcl", the scorecard's BFCL section and models/bfcl.png.
    Prints the scorecard."""
    output_dir = Path(output_dir)
    columns, curves = [("base", base_results)], []
    bench_columns = [("base", runner.read_bfcl(output_dir / "base-eval"))] if bench else []
    for number in numbers:
        paths = stagedir.stage_paths(output_dir, number)
        if (paths.stage_dir / "eval.json").exists():
            columns.append((f"stage {number}", json.loads((paths.stage_dir / "eval.json").read_text())))
            bench_columns += [(f"stage {number}", runner.read_bfcl(paths.stage_dir))] if bench else []
        record = stagedir.read_run_json(paths) or {}
        if record.get("curves"):
            curves.append((f"stage {number}", record["curves"]["train"], record["curves"]["valid"]))
    columns += [(label, results) for label, results, _ in exports]
    bench_columns += [(label, runner.read_bfcl(out_dir)) for label, _, out_dir in exports] if bench else []
    bench_columns = [(label, result) for label, result in bench_columns if result]
    text = card.write_scorecard(columns, output_dir / "scorecard.md", bench_columns)
    written = [output_dir / "scorecard.md"]
    if curves:
        written.append(card.plot_losses(curves, output_dir / "loss.png"))
    if bench_columns:
        written.append(bfcl_card.plot_bfcl(bench_columns, output_dir / "bfcl.png"))
    log(text)
    log("wrote " + ", ".join(str(path) for path in written))


def held_out_test_split(examples, values, out_dir):
    """The dataset's test split (every category), as the stages draw it, written to out_dir/test.jsonl."""
    assignment = stage_data.split_of_examples(examples, values["seed"], values["valid_fraction"], values["test_fraction"])
    path = out_dir / "test.jsonl"
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(ex.record, ensure_ascii=False) + "\n" for ex in examples
                            if assignment[ex.line] == "test"))
    return {"dataset test": str(path)}


# ---------------------------------------------------------------- a stage's results
def collect_results(paths):
    trained = json.loads((paths.stage_dir / "train_result.json").read_text())
    evaluated = json.loads((paths.stage_dir / "eval_result.json").read_text())
    base_loss = evaluated["base"]["valid"]["loss"] if "base" in evaluated else trained["val_reports"][0]["val_loss"]
    return {
        "train": {k: v for k, v in trained.items() if k not in ("train_reports", "val_reports")},
        "curves": {"train": trained["train_reports"], "valid": trained["val_reports"]},
        "fuse_check": fuse_check(base_loss, trained["kept"]["val_loss"], evaluated["fused"]["valid"]["loss"]),
        "test": evaluated["fused"].get("test"),
    }


def fuse_check(base_loss, adapters_loss, fused_loss):
    """How closely the fused model matches base + adapters, and how much of the stage's gain it keeps."""
    gain = base_loss - adapters_loss
    return {"base_valid_loss": base_loss, "adapters_valid_loss": adapters_loss, "fused_valid_loss": fused_loss,
            "relative_difference": abs(fused_loss - adapters_loss) / adapters_loss,
            "gain_retained": (base_loss - fused_loss) / gain if gain > 0 else None}


def report_stage(record, log):
    """The lines that close a stage: what was fused, how the fused model compares, the test loss."""
    train, check = record["train"], record["fuse_check"]
    kept = train["kept"]
    log(f"fused the {kept['which']} adapters (iteration {kept['iteration']}, valid loss {kept['val_loss']:.4f})")
    if train.get("early_stopped"):
        log(f"stopped early at iteration {train['early_stopped']['iteration']}: {train['early_stopped']['reason']}")
    final_train = f"{train['final_train_loss']:.4f}" if train["final_train_loss"] is not None else "n/a"
    log(f"done: final train loss {final_train}, valid loss {train['final_valid_loss']:.4f}; fused valid loss "
        f"{check['fused_valid_loss']:.4f} ({100 * check['relative_difference']:.2f}% from base+adapters)")
    if check["gain_retained"] is not None:
        log(f"valid loss {check['base_valid_loss']:.4f} before the stage; the fused model keeps "
            f"{100 * check['gain_retained']:.0f}% of the gain")
    evaluated_bits = (record.get("memory") or {}).get("evaluate_bits")
    if evaluated_bits:
        log(f"the fused model's losses are those of its {evaluated_bits}-bit copy (full precision does not fit "
            "the memory budget)")
    if check["relative_difference"] > 0.01:
        quantized = record["config"]["train_bits"]
        log(f"WARNING: the fused model differs from base+adapters by more than 1%"
            + (f" (it is full precision, trained on a {quantized}-bit copy: the difference is that copy's "
               "quantization error)" if quantized and not evaluated_bits else ""))
    if record.get("test"):
        log(f"test loss {record['test']['loss']:.4f}, perplexity {record['test']['perplexity']:.3f}")

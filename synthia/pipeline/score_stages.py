"""Tool-calling scores in a run: --test scores every stage and the base model on held-out conversations (and, after
--export gguf, each exported file of the final stage in llama.cpp) and writes the scorecard; --evaluate scores one
model (an MLX directory or a .gguf file) and trains nothing."""

import dataclasses
from pathlib import Path

from synthia.gguf.exporter import GGUF_TYPES, gguf_path
from synthia.pipeline import models, reports, runstate, stagedir
from synthia.pipeline.inputs import validate_dataset
from synthia.pipeline.run import log
from synthia.platform import blas
from synthia.scorecard import bfcl_card, card, gguf_generation, runner


def score_model(label, model_dir, splits, out_dir, options, env, max_prompt_tokens, samples=True):
    settings = {"chat_template": options.chat_template, "limit": options.test_limit,
                "max_prompt_tokens": max_prompt_tokens, "samples": samples, "bench": options.bench,
                "bench_limit": options.bench_limit}
    return runner.score_model(label, model_dir, splits, out_dir, settings, env, options.rerun_command(), log)


def test_stages(numbers, configs, base_model, options, env):
    """--test: score every stage on its own and earlier test splits, the base model once, the exported files of
    the final stage when --export made them, then the scorecard."""
    needed = reports.score_splits(numbers[-1], options.output_dir, options.eval_data)
    if options.demo:  # one held-out set for every model: the last stage's test split holds every category's examples
        needed = {name: path for name, path in needed.items() if name == f"stage{numbers[-1]} test"}
    for number in numbers:
        paths = stagedir.stage_paths(options.output_dir, number)
        splits = needed if options.demo else reports.score_splits(number, options.output_dir, options.eval_data)
        score_model(number, paths.fused_dir, splits, paths.stage_dir, options, env, configs[number]["max_seq_length"],
                    samples=number == numbers[-1])  # sample answers of the final model only: generation is slow
    base_dir = models.resolve_model_dir(base_model)
    base = score_model("base", base_dir, needed, options.output / "base-eval", options, env,
                       configs[numbers[0]]["max_seq_length"], samples=False)
    exports = score_exports(needed, options, env, configs[numbers[-1]]["max_seq_length"]) if options.export else []
    reports.write_reports(options.output_dir, options.stage_numbers, base, log, options.bench, exports)


def score_exports(splits, options, env, max_prompt_tokens):
    """[(column label, results, out_dir)] for each GGUF file --export wrote of the final stage, scored in llama.cpp
    with the template the file carries, on the final stage's splits."""
    fused = stagedir.stage_paths(options.output_dir, options.stage_numbers[-1]).fused_dir
    columns = []
    for out_type in GGUF_TYPES:
        path = gguf_path(options.output / "gguf", fused.name, out_type)
        if path.is_file():
            out_dir = options.output / "gguf-eval" / out_type
            scored = dataclasses.replace(options, chat_template=None)  # the template the file carries
            results = score_model(f"GGUF {out_type}", path, splits, out_dir, scored, env, max_prompt_tokens,
                                  samples=False)
            columns.append((f"{card.EXPORT_PREFIX}{out_type}", results, out_dir))
    return columns


def evaluate_only(model, options, held_out_config):
    """--evaluate MODEL: score one model (an MLX directory, or a .gguf file in llama.cpp) on --eval-data (or the
    dataset's test split) and train nothing. held_out_config: a function giving stage 3's resolved config, whose
    split holds the test examples."""
    gguf = gguf_generation.is_gguf(model)
    if gguf:
        model_path = check_gguf(model)
    else:
        model_path = models.check_model_dir(model, "--evaluate")
        models.load_tokenizer(model_path, options.chat_template)  # a chat template that renders tools, before the child
    with runstate.output_lock(options.output):
        out_dir = options.output / "evaluate" / (model_path.stem if gguf else model_path.name)
        splits = ({"eval-data": str(options.eval_data)} if options.eval_data else reports.held_out_test_split(
            validate_dataset(options.dataset, options.strict), held_out_config(), out_dir))
        env, _ = blas.child_setup(options.blas, log)
        results = score_model("evaluate", model_path, splits, out_dir, options, env, None, samples=not gguf)
        bench = [(model_path.name, runner.read_bfcl(out_dir))] if options.bench else []
        log(card.write_scorecard([(model_path.name, results)], out_dir / "scorecard.md", bench))
        written = ["eval.json", "scorecard.md"] + ([] if gguf else ["samples.md"]) + \
            (["bfcl.json", "bfcl.png"] if bench else [])
        if bench:
            bfcl_card.plot_bfcl(bench, out_dir / "bfcl.png")
        log("wrote " + ", ".join(str(out_dir / name) for name in written))


def check_gguf(path):
    """A .gguf file to score in llama.cpp: it exists, llama-cpp-python is installed and its tokenizer rebuilds."""
    path = Path(path)
    if not path.is_file():
        raise gguf_generation.GGUFScoringError(f"--evaluate {path}: no such file. Fix: give the path of a .gguf "
                                               "file, e.g. models/gguf/synthia-stage3-q4_k_m.gguf")
    gguf_generation.import_llama_cpp()
    gguf_generation.gguf_tokenizer(path)
    return path

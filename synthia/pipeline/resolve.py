"""A stage's settings, resolved and checked: the YAML file read strictly, the layers merged in order (each override
said once), every value against its declaration (synthia.config) and the rules that tie keys together, then the
keys that depend on the model at hand."""

import importlib.util
from pathlib import Path

from synthia.config import ConfigError, check_config, load_yaml_file, override_lines, resolve, where_set
from synthia.data.validate import CATEGORIES
from synthia.pipeline import runstate
from synthia.pipeline.run import EXIT_INVALID, PipelineError
from synthia.train.loss import SUPPORTED_MODEL_TYPES


def load_yaml_config(path, settings, stage_numbers):
    """{"shared": {...}, "stages": {n: {...}}} from a YAML file; unknown keys and misplaced global keys rejected."""
    if not Path(path).is_file():
        problem = "a directory, not a file" if Path(path).is_dir() else "no such file"
        where = "" if Path(path).is_absolute() else f" (relative to {Path.cwd()})"
        raise PipelineError(f"--config {path}: {problem}{where}. Fix: pass the YAML file that overrides SETTINGS and "
                            "STAGES, or drop --config to train with train_mlx.py's own", EXIT_INVALID)
    try:
        return load_yaml_file(path, settings, (), stage_numbers)
    except ConfigError as e:
        raise PipelineError(str(e), EXIT_INVALID)


def resolve_stages(layers_by_stage, settings, config_path, quiet):
    """({stage: config}, the lines saying each override once) from {stage: [(name, values), ...]} (later layers win),
    each config checked; an error says which file or flag set the values at fault. quiet: how many leading layers are
    the script's own (their differences are not news)."""
    configs, notes = {}, {}
    for number, layers in layers_by_stage.items():
        configs[number], notes[number] = resolve(layers, quiet=quiet)
        try:
            check_stage_config(configs[number], number, settings)
        except PipelineError as e:
            origins = where_set(str(e), notes[number], config_path)
            raise PipelineError(str(e) + "".join(f"\n  {line}" for line in origins), e.exit_code) from None
    return configs, override_lines(notes)


def check_stage_config(values, number, settings):
    """Every key against its declaration, then the rules that tie keys together."""
    try:
        check_config(values, settings, f"stage {number}")
    except ConfigError as e:
        raise PipelineError(f"{e}. Fix it in the config file, STAGES/SETTINGS in train_mlx.py, or the flag",
                            EXIT_INVALID)
    unknown = set(values["categories"] or ()) - set(CATEGORIES)
    if unknown:
        raise PipelineError(f"stage {number}: categories={values['categories']!r} should be null (every category) "
                            f"or a list of: {', '.join(CATEGORIES)}", EXIT_INVALID)
    if values["valid_fraction"] + values["test_fraction"] >= 1:
        raise PipelineError(f"valid_fraction + test_fraction = {values['valid_fraction'] + values['test_fraction']}"
                            " leaves nothing to train on; keep their sum below 1 (default 0.1 + 0.1)", EXIT_INVALID)
    if values["save_every"] % values["grad_accumulation_steps"]:
        raise PipelineError(f"stage {number}: save_every={values['save_every']} must be a multiple of "
                            f"grad_accumulation_steps={values['grad_accumulation_steps']} (a checkpoint falls "
                            "between optimizer updates)", EXIT_INVALID)
    if values["report_to"] == "wandb" and importlib.util.find_spec("wandb") is None:
        raise PipelineError("report_to: wandb needs the wandb package: pip install wandb", EXIT_INVALID)


def check_against_model(values, number, model_dir):
    """Keys that only make sense for the model at hand (read from its config.json)."""
    layers = runstate.model_layer_count(model_dir)
    if layers is not None and values["num_layers"] > layers:
        raise PipelineError(f"stage {number}: num_layers={values['num_layers']} but {model_dir} has {layers} "
                            f"layers; use at most {layers}, or -1 for all", EXIT_INVALID)
    model_type = (runstate.read_model_config(model_dir) or {}).get("model_type")
    if values["loss_chunk_size"] and model_type not in SUPPORTED_MODEL_TYPES:
        raise PipelineError(f"stage {number}: loss_chunk_size={values['loss_chunk_size']} (the chunked loss) supports "
                            f"{', '.join(SUPPORTED_MODEL_TYPES)}, not {model_type!r} ({model_dir}). Fix: set "
                            "loss_chunk_size: null in the config file", EXIT_INVALID)

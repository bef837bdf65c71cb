"""synthia.train.fuse writes what mlx_lm's fuse and convert -q write, bit for bit, with a lower peak memory."""

import json
import subprocess
import sys
from pathlib import Path

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from synthia.train.fuse import FuseError, fuse_streaming, quantize_streaming
from synthia.train.memory_plan import plan_shards

REPO = Path(__file__).resolve().parents[1]
LORA_PARAMETERS = {"rank": 4, "scale": 20.0, "dropout": 0.0}
SMALL_SHARD_BYTES = 100_000  # the tiny model is ~560 kB: several shards

# mlx_lm's own fuse command, with the peak memory printed at the end.
REFERENCE_FUSE = """
import sys
import mlx.core as mx
from mlx_lm import fuse
sys.argv = ["fuse"] + sys.argv[1:]
fuse.main()
print(mx.get_peak_memory())
"""


def write_adapters(model_dir, adapter_dir, fine_tune_type, num_layers=2, seed=1):
    """mlx_lm's adapter files for model_dir, with random nonzero lora_b (a freshly made adapter is zero)."""
    from mlx_lm.tuner.utils import linear_to_lora_layers
    from mlx_lm.utils import load

    model, _ = load(str(model_dir))
    model.freeze()
    linear_to_lora_layers(model, num_layers, LORA_PARAMETERS, use_dora=fine_tune_type == "dora")
    mx.random.seed(seed)
    for _, module in model.named_modules():
        if hasattr(module, "lora_b"):
            module.lora_b = 0.05 * mx.random.normal(module.lora_b.shape)
        if hasattr(module, "m"):
            module.m = module.m * (1 + 0.1 * mx.random.normal(module.m.shape))
    adapter_dir.mkdir(parents=True)
    mx.save_safetensors(str(adapter_dir / "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
    config = {"fine_tune_type": fine_tune_type, "num_layers": num_layers, "lora_parameters": LORA_PARAMETERS}
    (adapter_dir / "adapter_config.json").write_text(json.dumps(config))
    return adapter_dir


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    return {kind: write_adapters(tiny_model_dir, root / kind, kind) for kind in ("lora", "dora")}


@pytest.fixture(scope="module")
def quantized_model_dir(tiny_model_dir, tmp_path_factory):
    from mlx_lm.convert import convert

    out = tmp_path_factory.mktemp("quantized") / "model"
    convert(str(tiny_model_dir), str(out), quantize=True, q_bits=4, q_group_size=64)
    return out


def saved_weights(model_dir):
    weights = {}
    for shard in sorted(Path(model_dir).glob("model*.safetensors")):
        weights.update(mx.load(str(shard)))
    return weights


def assert_bit_identical(expected_dir, actual_dir):
    expected, actual = saved_weights(expected_dir), saved_weights(actual_dir)
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, name
        assert actual[name].shape == value.shape, name
        assert bytes(memoryview(actual[name])) == bytes(memoryview(value)), name


def run_reference_fuse(base_dir, adapter_dir, out_dir, dequantize=False):
    """mlx_lm's fuse in a child process; its peak memory in bytes."""
    command = [sys.executable, "-c", REFERENCE_FUSE, "--model", str(base_dir), "--adapter-path", str(adapter_dir),
               "--save-path", str(out_dir)] + (["--dequantize"] if dequantize else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def fuse_in_this_process(monkeypatch, base_dir, adapter_dir, out_dir, dequantize=False):
    from mlx_lm import fuse

    monkeypatch.setattr(sys, "argv", ["fuse", "--model", str(base_dir), "--adapter-path", str(adapter_dir),
                                      "--save-path", str(out_dir)] + (["--dequantize"] if dequantize else []))
    fuse.main()


def run_streaming_fuse(base_dir, adapter_dir, out_dir, dequantize=False):
    """synthia.train.fuse's command line in a child process; its statistics."""
    command = [sys.executable, "-m", "synthia.train.fuse", "fuse", "--model", str(base_dir), "--adapter-path",
               str(adapter_dir), "--save-path", str(out_dir), "--max-shard-gb", str(SMALL_SHARD_BYTES / (1 << 30))]
    command += ["--dequantize"] if dequantize else []
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("kind", ["lora", "dora"])
def test_streaming_fuse_writes_mlx_lm_fuses_weights_bit_for_bit_with_a_lower_peak(
        tiny_model_dir, adapters, tmp_path, kind):
    reference_peak = run_reference_fuse(tiny_model_dir, adapters[kind], tmp_path / "reference")
    stats = run_streaming_fuse(tiny_model_dir, adapters[kind], tmp_path / "streamed")
    assert_bit_identical(tmp_path / "reference", tmp_path / "streamed")
    assert stats["fused_layers"] == 14  # 7 projections in each of the 2 layers
    assert stats["shards"] > 1
    assert stats["peak_memory_bytes"] < reference_peak
    assert stats["peak_memory_bytes"] < stats["bytes_written"]  # never the whole model at once


@pytest.mark.parametrize("dequantize", [False, True])
def test_streaming_fuse_into_a_quantized_base_matches_mlx_lm_and_says_what_it_wrote(
        quantized_model_dir, adapters, tmp_path, monkeypatch, dequantize):
    fuse_in_this_process(monkeypatch, quantized_model_dir, adapters["lora"], tmp_path / "reference", dequantize)
    stats = fuse_streaming(quantized_model_dir, adapters["lora"], tmp_path / "streamed", dequantize=dequantize,
                           max_shard_bytes=SMALL_SHARD_BYTES)
    assert_bit_identical(tmp_path / "reference", tmp_path / "streamed")
    assert stats["base_quantized"] is True
    assert stats["dequantized"] is dequantize
    assert stats["quantized_output"] is not dequantize
    config = json.loads((tmp_path / "streamed" / "config.json").read_text())
    assert ("quantization" in config) is not dequantize


def test_streamed_shards_have_an_index_and_the_directory_loads_and_chats(tiny_model_dir, adapters, tmp_path):
    from mlx_lm.utils import load

    out = tmp_path / "fused.partial"
    stats = fuse_streaming(tiny_model_dir, adapters["lora"], out, max_shard_bytes=SMALL_SHARD_BYTES)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in out.glob("model*.safetensors"))
    assert files == [f"model-{i:05d}-of-{stats['shards']:05d}.safetensors" for i in range(1, stats["shards"] + 1)]
    assert sorted(set(index["weight_map"].values())) == files
    assert index["weight_map"].keys() == saved_weights(out).keys()
    assert index["metadata"]["total_size"] == stats["bytes_written"]
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (out / name).read_bytes() == (tiny_model_dir / name).read_bytes()
    _, tokenizer = load(str(out))
    assert tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)


def test_streaming_quantize_writes_what_mlx_lm_convert_q_writes(tiny_model_dir, quantized_model_dir, tmp_path):
    stats = quantize_streaming(tiny_model_dir, tmp_path / "q4", bits=4, group_size=64,
                               max_shard_bytes=SMALL_SHARD_BYTES)
    assert_bit_identical(quantized_model_dir, tmp_path / "q4")
    expected_config = json.loads((quantized_model_dir / "config.json").read_text())
    assert json.loads((tmp_path / "q4" / "config.json").read_text()) == expected_config
    assert stats["shards"] >= 1 and stats["bits"] == 4


def test_a_missing_adapter_file_is_an_error_naming_it(tiny_model_dir, tmp_path):
    (tmp_path / "adapters").mkdir()
    (tmp_path / "adapters" / "adapter_config.json").write_text("{}")
    with pytest.raises(FuseError, match="adapters.safetensors is missing"):
        fuse_streaming(tiny_model_dir, tmp_path / "adapters", tmp_path / "out")


def test_an_output_directory_with_files_is_refused(tiny_model_dir, adapters, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("x")
    with pytest.raises(FuseError, match="already holds files"):
        fuse_streaming(tiny_model_dir, adapters["lora"], tmp_path / "out")


def test_shards_are_cut_at_the_byte_limit_and_a_big_tensor_stands_alone():
    sizes = {"a": 40, "b": 50, "c": 20, "huge": 500, "d": 10}
    assert plan_shards(sizes, 100) == [["a", "b"], ["c"], ["huge"], ["d"]]

"""GGUF export: tiny qwen2 and llama models written with the gguf package and checked by llama.cpp itself."""

import json
import os
import re
import shutil
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest

from synthia.gguf import exporter, verify
from synthia.gguf.native import template_engine
from synthia.demo.tiny_model import CHAT_TEMPLATE_PATH, build_tiny_model, random_weights, tokenizer_config

DATASET = Path(__file__).resolve().parents[1] / "dataset.jsonl"
CONVERSATIONS = 3
MAX_TOKENS = 256  # teacher-forced positions per conversation
# Top-1 agreement counts verify.py's default positions: all of them for f16; for q8_0, those where MLX's top-1
# leads the runner-up by half a logit. Tiny random models are far touchier than trained ones: MLX itself, run with
# its weights rounded through Q8_0, agrees with the unrounded MLX model on only 98.4% of the tiny llama's positions
# (99.5% of the tiny qwen2's), and llama.cpp also rounds activations to 8 bits for q8_0 matrix products.

# .ci/run installs llama-cpp-python and sets SYNTHIA_REQUIRE_LLAMA_CPP=1: there these tests fail without it.
needs_llama_cpp = pytest.mark.skipif(
    not exporter.llama_cpp_available() and not os.environ.get("SYNTHIA_REQUIRE_LLAMA_CPP"),
    reason="llama-cpp-python is not installed (pip install llama-cpp-python==0.3.36; .ci/run installs it)")
needs_template_engine = pytest.mark.skipif(
    template_engine.find_engine() is None and not os.environ.get(verify.REQUIRE_LLAMA_CPP_ENV),
    reason="llama.cpp's C++ template engine is not built (python -m synthia.gguf.native.template_engine --build; "
           "scripts/setup.sh --dev builds it)")


def build_tiny_llama(out_dir):
    """The tiny Qwen2 directory (tokenizer, template) with a llama-architecture model of random weights in it.

    Untied output and grouped-query attention, so the llama-only paths (output.weight, the K permutation by
    KV heads) are exercised; head_dim 16.
    """
    import mlx.core as mx
    from mlx.utils import tree_flatten
    from mlx_lm.models import llama

    out_dir = build_tiny_model(out_dir, num_heads=4, num_kv_heads=2, tie_word_embeddings=False)
    config = json.loads((out_dir / "config.json").read_text())
    for qwen_only in ("sliding_window", "use_sliding_window", "max_window_layers"):
        config.pop(qwen_only)
    config.update(architectures=["LlamaForCausalLM"], model_type="llama", rope_theta=10000.0, attention_bias=False,
                  mlp_bias=False, rms_norm_eps=1e-5)
    mx.random.seed(1)
    weights = dict(tree_flatten(llama.Model(llama.ModelArgs.from_dict(config)).parameters()))
    # Drawn like the embeddings (as tied models have it): MLX's default Linear init gives nearly flat logits
    # (std ~0.6), where any rounding flips near-ties; a trained model's logits are peaked like these.
    weights["lm_head.weight"] = mx.random.normal(weights["lm_head.weight"].shape)
    mx.save_safetensors(str(out_dir / "model.safetensors"), weights, metadata={"format": "mlx"})
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    return out_dir


def build_quantized_copy(model_dir, out_dir, bits=8, group_size=32):
    """An MLX-quantized copy of `model_dir`, as `mlx_lm convert -q` writes it (packed weights, scales, biases)."""
    from mlx_lm.utils import load_model, quantize_model, save_config, save_model

    model, config = load_model(Path(model_dir))
    model, config = quantize_model(model, config, group_size, bits)
    out_dir.mkdir(parents=True)
    save_model(out_dir, model)
    save_config(config, out_dir / "config.json")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(Path(model_dir) / name, out_dir / name)
    return out_dir


def read_gguf(path):
    import gguf

    reader = gguf.GGUFReader(path)
    return {name: field.contents() for name, field in reader.fields.items()}, {t.name: t for t in reader.tensors}


Exported = namedtuple("Exported", "model_dir paths")


def export(model_dir, out_dir, **kwargs):
    return Exported(model_dir, {verify.gguf_type_of(p): p for p in
                                exporter.export_gguf(model_dir, out_dir, "tiny", log=lambda line: None, **kwargs)})


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture(scope="module")
def qwen2_export(tiny_model_dir, tmp_path_factory):
    return export(tiny_model_dir, tmp_path_factory.mktemp("qwen2-gguf"))


@pytest.fixture(scope="module")
def llama_export(tiny_llama_dir, tmp_path_factory):
    return export(tiny_llama_dir, tmp_path_factory.mktemp("llama-gguf"))


@pytest.fixture(scope="module")
def conversations():
    return verify.dataset_conversations(DATASET, CONVERSATIONS)


# ---------------------------------------------------------------- the file format (no llama.cpp needed)

def test_export_writes_f16_and_q8_0_files_named_after_the_model(qwen2_export):
    assert qwen2_export.paths["f16"].name == "tiny-f16.gguf"
    assert qwen2_export.paths["q8_0"].name == "tiny-q8_0.gguf"
    assert not list(qwen2_export.paths["f16"].parent.glob("*.partial"))


def test_q4_k_m_is_written_only_when_llama_cpp_is_installed(qwen2_export):
    assert ("q4_k_m" in qwen2_export.paths) == exporter.llama_cpp_available()


def test_gguf_carries_the_tokenizer_and_the_training_chat_template(qwen2_export, tiny_model_dir):
    import gguf

    fields, _ = read_gguf(qwen2_export.paths["q8_0"])
    tokenizer = json.loads((tiny_model_dir / "tokenizer.json").read_text())
    ids = {t["content"]: t["id"] for t in tokenizer["added_tokens"]}
    assert fields["general.architecture"] == "qwen2"
    assert fields["tokenizer.ggml.model"] == "gpt2"
    assert fields["tokenizer.ggml.pre"] == "qwen2"
    assert fields["tokenizer.chat_template"] == CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    assert fields["tokenizer.ggml.eos_token_id"] == ids["<|im_end|>"]
    assert fields["tokenizer.ggml.padding_token_id"] == ids["<|endoftext|>"]
    assert fields["tokenizer.ggml.add_bos_token"] is False
    assert len(fields["tokenizer.ggml.merges"]) == len(tokenizer["model"]["merges"])
    types = fields["tokenizer.ggml.token_type"]
    assert types[ids["<|im_start|>"]] == gguf.TokenType.CONTROL
    assert types[ids["<tool_call>"]] == gguf.TokenType.USER_DEFINED  # not special in Qwen2.5, still one token


def test_q8_0_file_quantizes_matrices_and_keeps_norms_and_biases_in_f32(qwen2_export):
    _, tensors = read_gguf(qwen2_export.paths["q8_0"])
    assert tensors["blk.0.attn_q.weight"].tensor_type.name == "Q8_0"
    assert tensors["blk.0.attn_q.bias"].tensor_type.name == "F32"
    assert tensors["output_norm.weight"].tensor_type.name == "F32"
    assert "output.weight" not in tensors  # tied embeddings: llama.cpp reuses token_embd


def test_qwen2_weights_are_written_unchanged_in_f16(qwen2_export):
    import mlx.core as mx

    _, tensors = read_gguf(qwen2_export.paths["f16"])
    weights = mx.load(str(qwen2_export.model_dir / "model.safetensors"))
    expected = np.array(weights["model.layers.1.self_attn.q_proj.weight"]).astype(np.float16)
    np.testing.assert_array_equal(np.asarray(tensors["blk.1.attn_q.weight"].data), expected)


def test_llama_query_and_key_rows_are_reordered_for_llama_cpp_rope(llama_export):
    import mlx.core as mx

    _, tensors = read_gguf(llama_export.paths["f16"])
    weights = mx.load(str(llama_export.model_dir / "model.safetensors"))
    key = np.array(weights["model.layers.0.self_attn.k_proj.weight"]).astype(np.float16)
    head_dim = 16
    # Per KV head, rows (x0..x7 | y0..y7) become pairs (x0, y0, x1, y1, ...).
    expected = key.reshape(2, 2, head_dim // 2, -1).swapaxes(1, 2).reshape(key.shape)
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.attn_k.weight"].data), expected)
    assert "output.weight" in tensors


def test_quantized_mlx_model_is_dequantized_before_export(tiny_model_dir, tmp_path):
    import mlx.core as mx

    quantized = build_quantized_copy(tiny_model_dir, tmp_path / "q8")
    paths = exporter.export_gguf(quantized, tmp_path / "out", "tiny", types=("f16",), log=lambda line: None)
    _, tensors = read_gguf(paths[0])
    weights = mx.load(str(quantized / "model.safetensors"))
    expected = mx.dequantize(weights["model.layers.0.mlp.up_proj.weight"], weights["model.layers.0.mlp.up_proj.scales"],
                             weights["model.layers.0.mlp.up_proj.biases"], group_size=32, bits=8)
    np.testing.assert_array_equal(np.asarray(tensors["blk.0.ffn_up.weight"].data), np.array(expected).astype(np.float16))


def test_chat_template_given_at_export_replaces_the_directory_one(tiny_model_dir, tmp_path):
    template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8") + "{# trained with this copy #}"
    paths = exporter.export_gguf(tiny_model_dir, tmp_path, "tiny", types=("q8_0",), chat_template=template,
                                    log=lambda line: None)
    fields, _ = read_gguf(paths[0])
    assert fields["tokenizer.chat_template"] == template


def test_export_stops_before_writing_when_the_disk_is_too_small(tiny_model_dir, tmp_path, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(exporter.shutil, "disk_usage", lambda path: usage._replace(free=1000))
    with pytest.raises(exporter.GGUFExportError, match=rf"^{re.escape(str(tmp_path))}: the GGUF export needs "
                       r"\d+\.\d\d MB but only 1\.00 kB is free; free \d+\.\d\d MB or choose another output directory$"):
        exporter.export_gguf(tiny_model_dir, tmp_path, "tiny", types=("f16", "q8_0"), log=lambda line: None)
    assert not list(tmp_path.iterdir())


def test_a_failed_export_leaves_no_file_behind(tiny_model_dir, tmp_path, monkeypatch):
    def fail(array, ggml_type):
        raise KeyboardInterrupt

    monkeypatch.setattr(exporter, "encoded_tensor", fail)
    with pytest.raises(KeyboardInterrupt):
        exporter.export_gguf(tiny_model_dir, tmp_path, "tiny", types=("f16",), log=lambda line: None)
    assert not list(tmp_path.iterdir())


def test_needed_space_is_the_sum_of_the_tensor_sizes(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    parameters = sum(int(np.prod(a.shape)) for a in exporter.lazy_weights(
        exporter.weight_files(tiny_model_dir)).values())
    f16 = exporter.estimated_bytes(tiny_model_dir, "f16") - exporter.DISK_MARGIN_BYTES
    vectors = config["num_hidden_layers"] * (2 * config["hidden_size"] + 2 * 32 + config["hidden_size"]) \
        + config["hidden_size"]  # norms and q/k/v biases stay float32
    assert f16 == 2 * parameters + 2 * vectors


def test_unsupported_architecture_is_rejected_naming_the_file(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    (model_dir / "config.json").write_text(json.dumps({**config, "model_type": "gemma3"}))
    with pytest.raises(exporter.GGUFExportError, match=r"config\.json: model_type 'gemma3' .* supported: qwen2, llama"):
        exporter.export_gguf(model_dir, tmp_path / "out", "tiny", log=lambda line: None)


def test_a_tokenizer_split_llama_cpp_does_not_know_is_rejected(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{N}{1,2}|\s+"
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer))
    with pytest.raises(exporter.GGUFExportError, match=r"tokenizer\.json: pre-tokenizer split .* matches none"):
        exporter.export_gguf(model_dir, tmp_path / "out", "tiny", types=("f16",), log=lambda line: None)


def serialized_pre_tokenizer(*steps):
    """tokenizer.json's pre_tokenizer entry for these `tokenizers` steps, as the library writes it."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = steps[0] if len(steps) == 1 else pre_tokenizers.Sequence(list(steps))
    return {"pre_tokenizer": json.loads(tokenizer.to_str())["pre_tokenizer"]}


def family_pre_tokenizer(family):
    """The pre-tokenizer steps of each family's own tokenizer.json."""
    from tokenizers import Regex, pre_tokenizers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bytes_only = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    return {
        "gpt2": [byte_level],
        "smollm": [pre_tokenizers.Digits(individual_digits=True), byte_level],
        "qwen2": [pre_tokenizers.Split(Regex(exporter.QWEN2_PATTERN), behavior="isolated"), bytes_only],
        "llama3": [pre_tokenizers.Split(Regex(exporter.LLAMA3_PATTERN), behavior="isolated"), bytes_only],
    }[family]


@pytest.mark.parametrize("family, name", [("gpt2", "gpt-2"), ("smollm", "smollm"), ("qwen2", "qwen2"),
                                          ("llama3", "llama-bpe")])
def test_the_pre_tokenizer_name_follows_the_whole_split_sequence(family, name):
    # SmolLM2 splits every digit off before GPT-2's regex: as 'gpt-2', llama.cpp splits "   1" into "  ", " 1".
    assert exporter.pre_tokenizer_name(serialized_pre_tokenizer(*family_pre_tokenizer(family))) == name


@pytest.mark.parametrize("first_step, shown", [("digit runs", r"\p{N}+"), ("punctuation", "<Punctuation>")])
def test_a_split_before_byte_level_that_llama_cpp_has_no_name_for_is_rejected(first_step, shown):
    from tokenizers import pre_tokenizers

    step = (pre_tokenizers.Digits(individual_digits=False) if first_step == "digit runs"
            else pre_tokenizers.Punctuation())
    data = serialized_pre_tokenizer(step, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    expected = (r"tokenizer\.json: pre-tokenizer split " + re.escape(f"[{shown!r}, ")
                + r".* matches none that this export knows \(gpt-2, llama-bpe, qwen2, smollm\)")
    with pytest.raises(exporter.GGUFExportError, match=expected):
        exporter.pre_tokenizer_name(data)


def test_the_pre_tokenizer_name_recorded_at_import_is_written_and_said(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    tokenizer["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = r"\p{N}{1,2}|\s+"  # matches no name
    (model_dir / "tokenizer.json").write_text(json.dumps(tokenizer))
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    (model_dir / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer.ggml.pre": "qwen2"}))
    messages = []
    paths = exporter.export_gguf(model_dir, tmp_path / "out", "tiny", types=("f16",), log=messages.append)
    assert read_gguf(paths[0])[0]["tokenizer.ggml.pre"] == "qwen2"
    assert messages[0] == ("[gguf] tokenizer.ggml.pre 'qwen2': as in the GGUF file the model was imported from "
                           "(tokenizer_config.json)")


def test_a_model_without_chat_template_is_rejected(tiny_model_dir, tmp_path):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "tokenizer_config.json").read_text())
    del config["chat_template"]
    (model_dir / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(exporter.GGUFExportError, match=r"tokenizer_config\.json: no chat_template"):
        exporter.export_gguf(model_dir, tmp_path / "out", "tiny", types=("f16",), log=lambda line: None)


def test_copy_to_lmstudio_uses_the_publisher_and_model_folders(qwen2_export, tmp_path):
    files = [qwen2_export.paths["f16"], qwen2_export.paths["q8_0"]]
    copies = exporter.copy_to_lmstudio(files, tmp_path / "models", "synthia", "tiny-qwen", log=lambda line: None)
    assert copies == [tmp_path / "models" / "synthia" / "tiny-qwen" / f.name for f in files]
    assert [c.read_bytes() for c in copies] == [f.read_bytes() for f in files]


def test_lmstudio_names_with_a_slash_are_rejected(qwen2_export, tmp_path):
    with pytest.raises(exporter.GGUFExportError, match="publisher name 'a/b' must be one non-empty folder name"):
        exporter.copy_to_lmstudio([qwen2_export.paths["f16"]], tmp_path, "a/b", "m")


def test_command_line_reports_a_directory_without_a_model_as_one_error_line(tmp_path):
    with pytest.raises(SystemExit, match=r"^error: .*config\.json: not found; point --model at an MLX model"):
        exporter.main([str(tmp_path), str(tmp_path / "out"), "tiny", "--no-verify"])


def test_command_line_exports_and_copies_to_lmstudio(tiny_model_dir, tmp_path, capsys):
    exporter.main([str(tiny_model_dir), str(tmp_path / "gguf"), "tiny", "--types", "q8_0", "--no-verify",
                      "--lmstudio-dir", str(tmp_path / "lmstudio")])
    assert (tmp_path / "lmstudio" / "synthia" / "tiny" / "tiny-q8_0.gguf").is_file()
    assert "[gguf] wrote" in capsys.readouterr().out


def test_the_check_needs_a_conversation_with_a_tool_call(tiny_model_dir):
    chat = {"messages": [{"role": "user", "content": "Hello?"}, {"role": "assistant", "content": "Hello."}]}
    with pytest.raises(verify.GGUFVerifyError, match="none of the 2 conversations has a tool call"):
        verify.mlx_reference(tiny_model_dir, [chat, chat])


# ---------------------------------------------------------------- checked by llama.cpp

@pytest.fixture(scope="module")
def qwen2_reference(tiny_model_dir, conversations):
    return verify.mlx_reference(tiny_model_dir, conversations, max_tokens=MAX_TOKENS)


@pytest.fixture(scope="module")
def llama_reference(tiny_llama_dir, conversations):
    return verify.mlx_reference(tiny_llama_dir, conversations, max_tokens=MAX_TOKENS)


def verified(exported, reference, conversations, out_type):
    return verify.verify_gguf(exported.paths[out_type], exported.model_dir, conversations, reference=reference,
                                   max_tokens=MAX_TOKENS)


@needs_llama_cpp
@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_qwen2_gguf_matches_mlx_in_llama_cpp(qwen2_export, qwen2_reference, conversations, out_type):
    figures = verified(qwen2_export, qwen2_reference, conversations, out_type)
    assert figures["tokenization_identical"] == figures["texts"] == CONVERSATIONS
    assert figures["positions"] >= CONVERSATIONS * MAX_TOKENS // 2
    assert figures["top1_agreement"] >= 0.99
    assert figures["template_matches"], figures["template_difference"]
    assert verify.problems(figures) == []


@needs_llama_cpp
@pytest.mark.parametrize("out_type", ["f16", "q8_0"])
def test_llama_gguf_matches_mlx_in_llama_cpp(llama_export, llama_reference, conversations, out_type):
    figures = verified(llama_export, llama_reference, conversations, out_type)
    assert figures["tokenization_identical"] == figures["texts"]
    assert figures["top1_agreement"] >= 0.99
    assert figures["template_matches"], figures["template_difference"]


def with_rope_scaling(model_dir, out_dir, rope_scaling):
    shutil.copytree(model_dir, out_dir)
    config = json.loads((out_dir / "config.json").read_text())
    (out_dir / "config.json").write_text(json.dumps({**config, "rope_scaling": rope_scaling}))
    return out_dir


@needs_llama_cpp
@pytest.mark.parametrize("rope_scaling", [
    # Llama 3's scaling, with an original context short enough that it changes the first 256 positions.
    {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
     "original_max_position_embeddings": 64},
    {"type": "linear", "factor": 4.0},
], ids=["llama3", "linear"])
def test_llama_with_rope_scaling_matches_mlx_in_llama_cpp(tiny_llama_dir, conversations, tmp_path, rope_scaling):
    model_dir = with_rope_scaling(tiny_llama_dir, tmp_path / "model", rope_scaling)
    paths = exporter.export_gguf(model_dir, tmp_path / "out", "tiny", types=("f16",), log=lambda line: None)
    [figures] = verify.verify_exports(paths, model_dir, conversations, max_tokens=MAX_TOKENS, log=lambda line: None)
    assert figures["top1_agreement"] >= 0.99


@needs_llama_cpp
def test_q8_0_agreement_counts_the_positions_where_mlx_is_confident_and_says_so(qwen2_export, qwen2_reference,
                                                                               conversations):
    figures = verified(qwen2_export, qwen2_reference, conversations, "q8_0")
    assert figures["min_margin"] == verify.CONFIDENT_MARGIN == 0.5
    assert figures["all_positions"] == CONVERSATIONS * MAX_TOKENS
    assert figures["all_positions"] // 2 <= figures["positions"] < figures["all_positions"]
    assert (f"top-1 agreement {figures['top1_agreement']:.2%} over {figures['positions']} of "
            f"{CONVERSATIONS * MAX_TOKENS} positions (those where MLX's top-1 leads its runner-up by at least 0.5 "
            "logits) (need 99%)") in verify.format_figures(figures)


@needs_llama_cpp
def test_f16_agreement_counts_every_position(qwen2_export, qwen2_reference, conversations):
    figures = verified(qwen2_export, qwen2_reference, conversations, "f16")
    assert figures["min_margin"] == 0.0 and figures["positions"] == figures["all_positions"]
    assert f"over {figures['positions']} positions (need 99%)" in verify.format_figures(figures)


@needs_llama_cpp
def test_q4_k_m_from_llama_cpp_loads_and_its_agreement_is_reported(qwen2_export, qwen2_reference, conversations):
    figures = verified(qwen2_export, qwen2_reference, conversations, "q4_k_m")
    assert figures["tokenization_identical"] == figures["texts"]
    assert figures["required_agreement"] is None
    assert 0.0 < figures["top1_agreement"] <= 1.0
    assert "(reported)" in verify.format_figures(figures)


@needs_llama_cpp
def test_quantized_mlx_model_exports_to_a_gguf_that_matches_it(tiny_model_dir, conversations, tmp_path):
    quantized = build_quantized_copy(tiny_model_dir, tmp_path / "q8")
    paths = exporter.export_gguf(quantized, tmp_path / "out", "tiny", types=("f16",), log=lambda line: None)
    [figures] = verify.verify_exports(paths, quantized, conversations, max_tokens=MAX_TOKENS, log=lambda line: None)
    assert figures["top1_agreement"] >= 0.99


@needs_llama_cpp
def test_llama_export_without_the_rope_reordering_fails_the_check(tiny_llama_dir, llama_reference, conversations,
                                                                  tmp_path, monkeypatch):
    monkeypatch.setattr(exporter, "permute_for_llama_rope", lambda weight, n_heads: weight)
    broken = export(tiny_llama_dir, tmp_path, types=("f16", "q8_0"))
    f16, q8_0 = (verified(broken, llama_reference, conversations, out_type) for out_type in ("f16", "q8_0"))
    assert f16["top1_agreement"] < 0.99 and q8_0["top1_agreement"] < 0.99
    assert verify.problems(f16)[0] == (
        f"tiny-f16.gguf: top-1 agreement with MLX is {f16['top1_agreement']:.2%} over {CONVERSATIONS * MAX_TOKENS} "
        "positions, below 99%: a conversion error (tensor layout, RoPE order, dequantization), or a model too touchy "
        "for this type (then count only positions where MLX is more confident with --min-margin 0.5)")
    assert verify.problems(q8_0)[0] == (
        f"tiny-q8_0.gguf: top-1 agreement with MLX is {q8_0['top1_agreement']:.2%} over {q8_0['positions']} of "
        f"{CONVERSATIONS * MAX_TOKENS} positions (those where MLX's top-1 leads its runner-up by at least 0.5 logits), "
        "below 99%: a conversion error (tensor layout, RoPE order, dequantization), or a model too touchy for this "
        "type (then count only positions where MLX is more confident with --min-margin 1)")


@needs_llama_cpp
def test_a_template_other_than_the_training_one_is_reported(tiny_model_dir, qwen2_reference, conversations, tmp_path):
    template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8").replace("<tool_call>\\n", "<tool_call>")
    paths = exporter.export_gguf(tiny_model_dir, tmp_path, "tiny", types=("q8_0",), chat_template=template,
                                    log=lambda line: None)
    figures = verify.verify_gguf(paths[0], tiny_model_dir, conversations, reference=qwen2_reference,
                                      max_tokens=MAX_TOKENS)
    assert not figures["template_matches"]
    assert "at char" in figures["template_difference"]


@needs_template_engine
def test_cpp_engine_renders_the_template_llama_cpp_reads_from_the_file_to_the_training_text(qwen2_export,
                                                                                          qwen2_reference):
    rendered = template_engine.render_gguf_template(qwen2_export.paths["q8_0"], qwen2_reference.request_messages,
                                                    qwen2_reference.template_tools)
    assert rendered == qwen2_reference.texts[qwen2_reference.tool_conversation]


@needs_llama_cpp
@needs_template_engine
def test_the_check_renders_the_embedded_template_with_llama_cpps_cpp_engine(qwen2_export, qwen2_reference,
                                                                             conversations):
    figures = verified(qwen2_export, qwen2_reference, conversations, "q8_0")
    assert figures["template_engine"] == template_engine.ENGINE_NAME
    assert figures["template_matches"], figures["template_difference"]
    assert "renders the training text [llama.cpp C++ template engine" in verify.format_figures(figures)


@needs_template_engine
def test_a_file_the_template_engine_cannot_read_is_a_template_failure_with_its_reason(qwen2_reference, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a GGUF file")
    rendered, failure = verify.render_with_cpp_engine(template_engine.find_engine(), broken, qwen2_reference)
    assert rendered is None
    assert failure.startswith("llama.cpp's template engine cannot render it: ")
    assert "broken.gguf: llama.cpp cannot load this GGUF file" in failure


@needs_llama_cpp
def test_without_the_cpp_engine_outside_ci_the_python_fallback_renders_and_says_so(qwen2_export, qwen2_reference,
                                                                                    conversations, monkeypatch):
    monkeypatch.delenv(verify.REQUIRE_LLAMA_CPP_ENV, raising=False)
    monkeypatch.setattr(template_engine, "find_engine", lambda: None)
    figures = verified(qwen2_export, qwen2_reference, conversations, "q8_0")
    assert figures["template_matches"], figures["template_difference"]
    assert "[Python jinja2 fallback" in verify.format_figures(figures)


def test_a_missing_cpp_engine_is_an_error_when_llama_cpp_checks_are_required(monkeypatch):
    monkeypatch.setenv(verify.REQUIRE_LLAMA_CPP_ENV, "1")
    monkeypatch.setattr(template_engine, "find_engine", lambda: None)
    with pytest.raises(verify.GGUFVerifyError, match=r"SYNTHIA_REQUIRE_LLAMA_CPP is set but .* not built: run "
                                                          r"`python -m synthia\.gguf\.native\.template_engine --build`"):
        verify.template_engine_path()


def with_qwen25_tokenizer(model_dir, out_dir):
    """The tiny Qwen2 model grown to Qwen2.5's real vocabulary (151,665 tokens, 151,387 merges) and tokenizer."""
    import mlx.core as mx

    from synthia.starter_data import tokenizer as qwen_tokenizer

    try:
        tokenizer = qwen_tokenizer.load(fetch=False)
    except qwen_tokenizer.TokenizerUnavailable as e:
        pytest.skip(f"Qwen2.5's tokenizer is not available here ({e}); .ci/run builds it")
    shutil.copytree(model_dir, out_dir)
    config = {**json.loads((out_dir / "config.json").read_text()), "vocab_size": 151936}  # Qwen2.5's embedding rows
    mx.save_safetensors(str(out_dir / "model.safetensors"), random_weights(config, 0, "float32"))
    tokenizer.save(str(out_dir / "tokenizer.json"))
    settings = tokenizer_config(tokenizer, CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"), 4096)
    # All 22 added tokens, as Qwen2.5's own file lists them: transformers renumbers any it is not told about.
    settings["added_tokens_decoder"] = {
        str(t["id"]): {key: t[key] for key in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for t in json.loads(tokenizer.to_str())["added_tokens"]}
    (out_dir / "tokenizer_config.json").write_text(json.dumps(settings))
    (out_dir / "config.json").write_text(json.dumps(config))
    return out_dir


@needs_llama_cpp
def test_qwen25_real_tokenizer_tokenizes_every_text_as_training_does(tiny_model_dir, tmp_path):
    model_dir = with_qwen25_tokenizer(tiny_model_dir, tmp_path / "model")
    paths = exporter.export_gguf(model_dir, tmp_path / "out", "tiny", types=("f16",), log=lambda line: None)
    fields, _ = read_gguf(paths[0])
    assert fields["tokenizer.ggml.pre"] == "qwen2"
    conversations = verify.dataset_conversations(DATASET, 12)
    [figures] = verify.verify_exports(paths, model_dir, conversations, max_tokens=32, log=lambda line: None)
    assert figures["tokenization_mismatches"] == []
    assert figures["tokenization_identical"] == 12
    assert figures["template_matches"], figures["template_difference"]

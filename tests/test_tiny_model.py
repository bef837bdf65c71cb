"""The tiny offline model and the Qwen2.5 tool-calling chat template."""

import copy
import glob
import json
import os
import tarfile
from pathlib import Path

import pytest

from synthia.demo.tiny_model import CHAT_TEMPLATE_PATH, DEFAULT_TOOLS_PATH, build_tiny_model

OUR_DEFAULT_SYSTEM = "You are Synthia, a careful coding agent."
QWEN_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
QWEN_TEMPLATE_NAME = "Qwen-Qwen2.5-7B-Instruct.jinja"
TOOLS = json.loads(DEFAULT_TOOLS_PATH.read_text())


def call(name, arguments, call_id="call_1"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


READ_MAIN = call("read", {"file_path": "src/main.rs"})

CONVERSATIONS = {
    "text only, system": (
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
         {"role": "assistant", "content": "Hello."}],
        None,
    ),
    "text only, no system": (
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
         {"role": "user", "content": "Bye"}],
        None,
    ),
    "tool call without content": (
        [{"role": "system", "content": "You fix code."}, {"role": "user", "content": "What is in main?"},
         {"role": "assistant", "content": None, "tool_calls": [READ_MAIN]},
         {"role": "tool", "tool_call_id": "call_1", "content": "1\tfn main() {}"},
         {"role": "assistant", "content": "An empty main."}],
        TOOLS,
    ),
    "content, parallel calls, tool replies in a row, ends on tool": (
        [{"role": "user", "content": "Compare the two files & grep for <T>."},
         {"role": "assistant", "content": "Reading both — then searching.", "tool_calls": [
             call("read", {"file_path": "a.py", "limit": 5}, "c1"),
             call("read", {"file_path": "b.py"}, "c2"),
             call("grep", {"pattern": "<T>", "glob": "*.rs"}, "c3")]},
         {"role": "tool", "tool_call_id": "c1", "content": "x = 1"},
         {"role": "tool", "tool_call_id": "c2", "content": "ünïcode — 你好"},
         {"role": "tool", "tool_call_id": "c3", "content": ""},
         {"role": "assistant", "content": "Done."},
         {"role": "user", "content": "Run the tests."},
         {"role": "assistant", "content": "", "tool_calls": [call("bash", {"command": "cargo test"})]},
         {"role": "tool", "tool_call_id": "call_1", "content": "ok"}],
        TOOLS,
    ),
    "bare calls, later system message, empty tool_calls": (
        [{"role": "system", "content": "First."}, {"role": "user", "content": "Go"},
         {"role": "assistant", "content": "Sure", "tool_calls": []},
         {"role": "system", "content": "Second system."},
         {"role": "assistant", "content": None,
          "tool_calls": [{"name": "edit", "arguments": {"file_path": "x", "old_string": "a", "new_string": "b"}}]},
         {"role": "tool", "content": "edited"}],
        TOOLS[:1],
    ),
    "tools, no system": (
        [{"role": "user", "content": "List src"},
         {"role": "assistant", "content": None, "tool_calls": [call("list_dir", {"path": "src"})]}],
        TOOLS,
    ),
}


def glob_tmp(pattern):
    return sorted(glob.glob(f"/tmp/{pattern}") + glob.glob(f"/tmp/*/{pattern}"))


def find_qwen_template():
    """Qwen2.5-Instruct's own template from a local copy (llama.cpp ships it), or None: nothing is fetched."""
    if os.environ.get("QWEN25_CHAT_TEMPLATE"):
        return Path(os.environ["QWEN25_CHAT_TEMPLATE"]).read_text()
    member = f"vendor/llama.cpp/models/templates/{QWEN_TEMPLATE_NAME}"
    for path in glob_tmp(f"llama_cpp_python-*/{member}"):
        return Path(path).read_text()
    for sdist in glob_tmp("llama_cpp_python-*.tar.gz"):
        with tarfile.open(sdist) as archive:
            for info in archive:
                if info.name.endswith(member):
                    return archive.extractfile(info).read().decode()
    return None


@pytest.fixture(scope="module")
def qwen_template():
    text = find_qwen_template()
    if text is None:
        pytest.skip("no local copy of Qwen2.5's chat template (llama_cpp_python sdist in /tmp)")
    return text


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    from mlx_lm.utils import load

    return load(str(tiny_model_dir))


@pytest.fixture(scope="module")
def tokenizer(loaded):
    return loaded[1]


def render_with_transformers(tokenizer, template, messages, tools, add_generation_prompt):
    return tokenizer._tokenizer.apply_chat_template(
        copy.deepcopy(messages), tools=copy.deepcopy(tools), chat_template=template, tokenize=False,
        add_generation_prompt=add_generation_prompt)


def render_with_jinja2(template, messages, tools, add_generation_prompt):
    import jinja2

    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, tools=tools, add_generation_prompt=add_generation_prompt)


@pytest.mark.parametrize("add_generation_prompt", [False, True])
@pytest.mark.parametrize("name", CONVERSATIONS)
def test_template_renders_like_qwen(tokenizer, qwen_template, name, add_generation_prompt):
    messages, tools = CONVERSATIONS[name]
    ours = CHAT_TEMPLATE_PATH.read_text()
    has_system = messages[0]["role"] == "system"
    for render in (lambda t: render_with_transformers(tokenizer, t, messages, tools, add_generation_prompt),
                   lambda t: render_with_jinja2(t, messages, tools, add_generation_prompt)):
        expected = render(qwen_template)
        if not has_system:
            assert QWEN_DEFAULT_SYSTEM in expected
            expected = expected.replace(QWEN_DEFAULT_SYSTEM, OUR_DEFAULT_SYSTEM, 1)
        assert render(ours) == expected


def test_template_renders_tool_calls_and_results(tokenizer):
    messages, tools = CONVERSATIONS["tool call without content"]
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    assert '<tool_call>\n{"name": "read", "arguments": {"file_path": "src/main.rs"}}\n</tool_call><|im_end|>' in text
    assert "<|im_start|>user\n<tool_response>\n1\tfn main() {}\n</tool_response><|im_end|>\n" in text
    assert "\n<tools>\n" + json.dumps(TOOLS[0]) + "\n" in text
    no_system = tokenizer.apply_chat_template(messages[1:2], tokenize=False, add_generation_prompt=True)
    assert no_system == (f"<|im_start|>system\n{OUR_DEFAULT_SYSTEM}<|im_end|>\n"
                         "<|im_start|>user\nWhat is in main?<|im_end|>\n<|im_start|>assistant\n")


def test_model_directory_looks_like_qwen2(tiny_model_dir):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    tokenizer_config = json.loads((tiny_model_dir / "tokenizer_config.json").read_text())
    assert config["model_type"] == "qwen2"
    assert config["max_position_embeddings"] == 4096
    assert tokenizer_config["chat_template"] == CHAT_TEMPLATE_PATH.read_text()
    assert tokenizer_config["eos_token"] == "<|im_end|>"
    assert tokenizer_config["pad_token"] == "<|endoftext|>"


def test_loads_and_runs_with_mlx_lm(loaded):
    import mlx.core as mx

    model, tokenizer = loaded
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in tokenizer.eos_token_ids
    assert tokenizer.tool_call_start == "<tool_call>"  # mlx_lm recognised the template's tool-call format
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    logits = model(mx.array([prompt]))
    assert logits.shape == (1, len(prompt), model.args.vocab_size)
    assert mx.all(mx.isfinite(logits)).item()


def test_mlx_lm_generate_is_greedy_decoding_of_the_model(loaded):
    """mlx_lm's generate (KV cache, default sampler) emits the argmax of a cache-free forward pass at each step."""
    import mlx.core as mx
    from mlx_lm import generate

    model, tokenizer = loaded
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True)
    tokens = list(prompt)
    for _ in range(3):
        token = mx.argmax(model(mx.array([tokens]))[0, -1]).item()
        if token in tokenizer.eos_token_ids:
            break
        tokens.append(token)
    assert len(tokens) > len(prompt), "the tiny model ends its reply at once: nothing to compare"
    assert generate(model, tokenizer, prompt, max_tokens=3) == tokenizer.decode(tokens[len(prompt):])


@pytest.mark.parametrize("token", ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>"])
def test_special_tokens_are_single_tokens(tokenizer, token):
    ids = tokenizer.encode(f"x{token}\n", add_special_tokens=False)
    assert tokenizer.convert_ids_to_tokens(ids)[1] == token
    assert len(ids) == 3


def test_newline_after_generation_prompt_is_its_own_token(tokenizer):
    ids = tokenizer.encode("<|im_start|>assistant\n<tool_call>\n{", add_special_tokens=False)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == "<|im_start|>"
    assert tokens[-4:] == ["Ċ", "<tool_call>", "Ċ", "{"]  # Ċ is the byte-level spelling of "\n"


@pytest.mark.parametrize("text", [
    "plain ASCII text, with 12345 digits.",
    "ünïcödé — 你好, мир! 🙂\ttabs   and  spaces\n\n\r\nlines ",
    '{"name": "read", "arguments": {"file_path": "src/main.rs"}}',
    "<|im_start|>user\n<tool_response>\nok\n</tool_response><|im_end|>\n",
])
def test_encode_decode_round_trips(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_offsets_map_tokens_back_to_text(tokenizer):
    messages, tools = CONVERSATIONS["tool call without content"]
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    encoded = tokenizer._tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    offsets = encoded["offset_mapping"]
    assert len(offsets) == len(encoded["input_ids"])
    assert offsets[0] == (0, len("<|im_start|>"))
    assert all(a[1] == b[0] for a, b in zip(offsets, offsets[1:]))  # contiguous: no text is lost
    assert offsets[-1][1] == len(text)


def test_transformers_tokenizes_like_tokenizer_json(tiny_model_dir, tokenizer):
    # transformers 5 rebuilds Qwen2Tokenizer's pipeline from vocab and merges rather than using
    # tokenizer.json as written; both must agree.
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(tiny_model_dir / "tokenizer.json"))
    messages, tools = CONVERSATIONS["content, parallel calls, tool replies in a row, ends on tool"]
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False)
    assert tokenizer.encode(text, add_special_tokens=False) == raw.encode(text).ids


def test_build_is_deterministic(tiny_model_dir, tmp_path):
    again = build_tiny_model(tmp_path / "again")
    for name in ("tokenizer.json", "tokenizer_config.json", "config.json", "model.safetensors"):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name

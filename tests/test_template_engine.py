"""llama.cpp's own C++ chat-template engine (synthia.gguf.native.template_engine) renders exactly the training text
from the template embedded in a GGUF file, as llama-server does."""

import io
import os
import tarfile
from pathlib import Path

import pytest

from synthia.data import render
from synthia.gguf import exporter, verify
from synthia.gguf.native import template_engine
from synthia.demo.tiny_model import CHAT_TEMPLATE_PATH
from tests.test_tiny_model import find_qwen_template

DATASET = Path(__file__).resolve().parents[1] / "dataset.jsonl"
TOOL_CONVERSATIONS = 6

# scripts/test.sh builds the engine and sets SYNTHIA_REQUIRE_LLAMA_CPP=1: there these tests fail without it.
needs_engine = pytest.mark.skipif(
    template_engine.find_engine() is None and not os.environ.get(verify.REQUIRE_LLAMA_CPP_ENV),
    reason="llama.cpp's C++ template engine is not built (python -m synthia.gguf.native.template_engine --build)")


@pytest.fixture(scope="module")
def tool_conversations():
    records = verify.dataset_conversations(DATASET, 4 * TOOL_CONVERSATIONS)
    chosen = [r for r in records if verify.has_tool_call(r)][:TOOL_CONVERSATIONS]
    assert len(chosen) == TOOL_CONVERSATIONS
    return chosen


@pytest.fixture(scope="module")
def gguf_with(tiny_model_dir, tmp_path_factory):
    """The tiny model exported to GGUF with a given chat template embedded, once per template."""
    files = {}

    def export(template):
        if template not in files:
            out_dir = tmp_path_factory.mktemp("gguf")
            files[template], = exporter.export_gguf(tiny_model_dir, out_dir, "tiny", types=("f16",),
                                                    chat_template=template, log=lambda line: None)
        return files[template]
    return export


def training_tokenizer(model_dir, template):
    from mlx_lm.utils import load_tokenizer

    tokenizer = load_tokenizer(Path(model_dir))
    tokenizer._tokenizer.chat_template = template
    return tokenizer


def training_text(tokenizer, record):
    return render.render(tokenizer, record["messages"], verify.conversation_tools(record))


def llama_cpp_text(gguf_path, record):
    """As a client sends the conversation to llama-server: OpenAI JSON, tool-call arguments as JSON strings."""
    messages = [{k: v for k, v in m.items() if k != "weight"} for m in record["messages"]]
    return template_engine.render_gguf_template(gguf_path, messages, verify.conversation_tools(record))


def assert_same_text(expected, got):
    assert got == expected, verify.difference_context(expected, got)


# ---------------------------------------------------------------- rendering (needs the built engine)

@needs_engine
def test_cpp_engine_renders_our_tool_template_to_the_training_text(tiny_model_dir, tool_conversations, gguf_with):
    template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    tokenizer = training_tokenizer(tiny_model_dir, template)
    for record in tool_conversations:
        assert "<tool_call>" in training_text(tokenizer, record)
        assert_same_text(training_text(tokenizer, record), llama_cpp_text(gguf_with(template), record))


@needs_engine
def test_cpp_engine_renders_qwen25s_own_template_to_the_training_text(tiny_model_dir, tool_conversations, gguf_with):
    template = find_qwen_template()
    if template is None:
        pytest.skip("no local copy of Qwen2.5's chat template (scripts/test.sh sets QWEN25_CHAT_TEMPLATE)")
    tokenizer = training_tokenizer(tiny_model_dir, template)
    for record in tool_conversations:
        assert_same_text(training_text(tokenizer, record), llama_cpp_text(gguf_with(template), record))


@needs_engine
def test_a_template_without_the_newline_after_tool_call_is_a_mismatch(tiny_model_dir, tool_conversations, gguf_with):
    template = CHAT_TEMPLATE_PATH.read_text(encoding="utf-8")
    changed = template.replace("<tool_call>\\n", "<tool_call>")
    assert changed != template
    record = tool_conversations[0]
    expected = training_text(training_tokenizer(tiny_model_dir, template), record)
    got = llama_cpp_text(gguf_with(changed), record)
    assert got != expected
    assert "<tool_call>{" in got and "<tool_call>{" not in expected


@needs_engine
def test_cpp_engine_appends_the_generation_prompt_when_asked(gguf_with):
    messages = [{"role": "user", "content": "Hi"}]
    gguf_path = gguf_with(CHAT_TEMPLATE_PATH.read_text(encoding="utf-8"))
    without = template_engine.render_gguf_template(gguf_path, messages)
    assert template_engine.render_gguf_template(gguf_path, messages, add_generation_prompt=True) == \
        without + "<|im_start|>assistant\n"


@needs_engine
def test_a_template_the_engine_cannot_parse_is_an_error(gguf_with):
    # The driver's line ends the message; llama.cpp's common library may print the parser's reason before it (its
    # log lines appeared on a fresh clone's full run, not when this file runs alone).
    gguf_path = gguf_with("{% for m in messages %}{{ m.content }}")
    with pytest.raises(template_engine.TemplateEngineError, match=r"render_chat_template: std::exception$"):
        template_engine.render_gguf_template(gguf_path, [{"role": "user", "content": "Hi"}])


# ---------------------------------------------------------------- finding and building it (no engine needed)

def test_rendering_without_the_engine_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(template_engine, "find_engine", lambda: None)
    with pytest.raises(template_engine.TemplateEngineError,
                       match=r"^llama\.cpp's C\+\+ template engine is not built: run "
                             r"`python -m synthia\.gguf\.native\.template_engine --build` \(a few minutes, once\)$"):
        template_engine.render_gguf_template(tmp_path / "model.gguf", [])


def test_the_cached_binary_is_keyed_by_the_llama_cpp_version_and_the_libraries_content(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    venv, clone = tmp_path / "venv" / "lib", tmp_path / "clone" / "lib"
    for lib_dir in (venv, clone):
        lib_dir.mkdir(parents=True)
        (lib_dir / "libllama.so").write_bytes(b"llama 0.3.36")
        (lib_dir / "libggml.so").write_bytes(b"ggml")
    path = template_engine.engine_path("0.3.36", venv)
    assert path.parent == tmp_path / "cache" / "synthia"
    assert path.name.startswith("render_chat_template-0.3.36-")
    assert path != template_engine.engine_path("0.3.37", venv)
    assert path == template_engine.engine_path("0.3.36", clone)  # another checkout, the same wheel: reused
    (clone / "libllama.so").write_bytes(b"llama rebuilt")
    assert path != template_engine.engine_path("0.3.36", clone)


def test_the_engine_finds_the_current_installations_libraries_first(monkeypatch):
    monkeypatch.setattr(template_engine.sys, "platform", "linux")
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/local/lib")
    env = template_engine.loader_environment(Path("/clone/.venv/llama_cpp/lib"))
    assert env["LD_LIBRARY_PATH"] == os.pathsep.join(["/clone/.venv/llama_cpp/lib", "/usr/local/lib"])


def test_the_engine_links_to_the_installed_libllama(monkeypatch):
    monkeypatch.setattr(template_engine.sys, "platform", "linux")
    command = template_engine.link_command(["a.o", "b.o"], "out", Path("/venv/llama_cpp/lib"))
    assert command[1:5] == ["a.o", "b.o", "-o", "out"]
    assert command[-5:] == ["-L/venv/llama_cpp/lib", "-lllama", "-lggml", "-lggml-base",
                            "-Wl,-rpath,/venv/llama_cpp/lib"]


def sdist_with(tmp_path, names):
    sdist = tmp_path / "llama_cpp_python-0.0.1.tar.gz"
    with tarfile.open(sdist, "w:gz") as archive:
        for name in names:
            info = tarfile.TarInfo(f"llama_cpp_python-0.0.1/{name}")
            info.size = len(name)
            archive.addfile(info, io.BytesIO(name.encode()))
    return sdist


def test_only_the_sources_the_build_reads_are_unpacked_from_the_sdist(tmp_path):
    sdist = sdist_with(tmp_path, ["vendor/llama.cpp/common/chat.cpp", "vendor/llama.cpp/include/llama.h",
                                  "vendor/llama.cpp/vendor/nlohmann/json.hpp", "vendor/llama.cpp/vendor/stb/stb.h",
                                  "vendor/llama.cpp/src/llama.cpp", "llama_cpp/llama.py"])
    root = template_engine.extract_llama_cpp(sdist, tmp_path / "src")
    assert root == tmp_path / "src" / "llama_cpp_python-0.0.1" / "vendor" / "llama.cpp"
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "common/chat.cpp", "include/llama.h", "vendor/nlohmann/json.hpp"]


def test_an_archive_without_llama_cpp_sources_is_rejected_naming_it(tmp_path):
    sdist = sdist_with(tmp_path, ["llama_cpp/llama.py"])
    with pytest.raises(template_engine.TemplateEngineError, match=r"llama_cpp_python-0\.0\.1\.tar\.gz: no vendor/llama\.cpp"):
        template_engine.extract_llama_cpp(sdist, tmp_path / "src")


def test_a_llama_cpp_missing_a_listed_source_is_rejected_naming_it(tmp_path):
    sdist = sdist_with(tmp_path, ["vendor/llama.cpp/common/chat.cpp"])
    root = template_engine.extract_llama_cpp(sdist, tmp_path / "src")
    with pytest.raises(template_engine.TemplateEngineError, match=r"lacks common/chat-auto-parser-generator\.cpp"):
        template_engine.engine_sources(root)

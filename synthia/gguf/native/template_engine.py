"""llama.cpp's own chat-template engine (the C++ code llama-server --jinja renders prompts with), as a small binary.

    python -m synthia.gguf.native.template_engine --build   # once per llama-cpp-python version: ~4.5 CPU-minutes
    python -m synthia.gguf.native.template_engine           # where the binary is, or why there is none

llama-cpp-python exposes llama.cpp's template code only as llama_chat_apply_template (fixed formats, no tools);
the Jinja engine and the request handling of common/chat.cpp are not in its API. So this compiles
render_chat_template.cpp (next to this file) against the llama.cpp sources vendored in the source distribution
of the installed llama-cpp-python version, links it to that installation's libllama, and caches the binary in
~/.cache/synthia/ ($XDG_CACHE_HOME/synthia), keyed by the version, the driver source and the flags.
"""

import argparse
import hashlib
import json
import os
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata, util
from pathlib import Path

DRIVER = Path(__file__).with_name("render_chat_template.cpp")
ENGINE_NAME = "llama.cpp C++ template engine, as llama-server --jinja"
# The parts of common/ that common_chat_templates_apply reaches: the Jinja engine, chat.cpp and what it calls
# to build the tool-call parser for a template (every specialized parser is registered, so all of them link).
ENGINE_SOURCES = (
    "common/chat.cpp", "common/chat-auto-parser-generator.cpp", "common/chat-auto-parser-helpers.cpp",
    "common/chat-diff-analyzer.cpp", "common/chat-peg-parser.cpp", "common/peg-parser.cpp",
    "common/json-schema-to-grammar.cpp", "common/json-schema.cpp", "common/json.cpp", "common/common.cpp",
    "common/log.cpp", "common/unicode.cpp", "common/trie.cpp",
)
ENGINE_SOURCE_DIRS = ("common/jinja", "common/parsers")  # every .cpp in these
HEADER_DIRS = ("common", "include", "ggml/include", "vendor")  # include paths, under the sdist's vendor/llama.cpp
EXTRACTED_DIRS = ("common", "include", "ggml/include", "vendor/nlohmann")  # all the build reads of the 76 MB sdist
# -O0: the engine renders a few kilobytes, and these sources are template-heavy, so optimizing only costs
# build time. Function sections let the linker drop the parts of common.cpp that need sampling.cpp and others.
COMPILE_FLAGS = ("-std=c++17", "-O0", "-ffunction-sections", "-fdata-sections")
RENDER_TIMEOUT_SECONDS = 60


class TemplateEngineError(ValueError):
    """The C++ template engine is missing, cannot be built, or rejected a template; says the fix."""


# ---------------------------------------------------------------- where things are

def installed_llama_cpp():
    """(version, library directory) of the installed llama-cpp-python."""
    spec = util.find_spec("llama_cpp")
    if spec is None or not spec.submodule_search_locations:
        raise TemplateEngineError("the C++ template engine links to llama-cpp-python's libllama, which is not "
                                  "installed: `pip install llama-cpp-python==0.3.36` (or `source scripts/setup.sh --dev`)")
    lib_dir = Path(list(spec.submodule_search_locations)[0]) / "lib"
    return metadata.version("llama-cpp-python"), lib_dir


def cache_dir():
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "synthia"


def library_files(lib_dir):
    """The shared libraries the engine links to (libllama, libggml*), in a stable order."""
    return sorted(p for p in Path(lib_dir).glob("lib*") if p.name.startswith(("libllama", "libggml")))


def engine_fingerprint(version, lib_dir):
    """Changes whenever the binary would: another llama.cpp, driver or set of flags, or libraries with other
    content. Not their location: a fresh clone's .venv with the same wheel reuses the binary (render() points the
    loader at the current installation)."""
    digest = hashlib.sha256()
    for part in (version, " ".join(COMPILE_FLAGS), " ".join(ENGINE_SOURCES)):
        digest.update(part.encode() + b"\0")
    for library in library_files(lib_dir):
        digest.update(library.name.encode() + b"\0" + library.read_bytes())
    digest.update(DRIVER.read_bytes())
    return digest.hexdigest()[:12]


def loader_environment(lib_dir):
    """This installation's libraries first on the loader's path (the binary's rpath names the one it was built
    with, which may be gone)."""
    variable = "DYLD_LIBRARY_PATH" if sys.platform == "darwin" else "LD_LIBRARY_PATH"
    return {**os.environ, variable: os.pathsep.join(filter(None, [str(lib_dir), os.environ.get(variable)]))}


def engine_path(version, lib_dir):
    return cache_dir() / f"render_chat_template-{version}-{engine_fingerprint(version, lib_dir)}"


def find_engine():
    """The built engine for the installed llama-cpp-python, or None (not installed, or not built yet)."""
    try:
        path = engine_path(*installed_llama_cpp())
    except TemplateEngineError:
        return None
    return path if path.is_file() else None


# ---------------------------------------------------------------- building it

def download_sdist_command(version, dest):
    return [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
            f"llama-cpp-python=={version}", "-d", str(dest)]


def needed_members(archive):
    """The archive members under vendor/llama.cpp/ that the build reads (headers and sources), nothing else."""
    wanted = tuple(f"/vendor/llama.cpp/{d}/" for d in EXTRACTED_DIRS)
    return [m for m in archive.getmembers() if m.isfile() and any(w in m.name for w in wanted)]


def extract_llama_cpp(sdist, dest):
    """Unpack the llama.cpp sources of a llama-cpp-python sdist; returns their root (…/vendor/llama.cpp)."""
    with tarfile.open(sdist) as archive:
        members = needed_members(archive)
        if not members:
            raise TemplateEngineError(f"{sdist}: no vendor/llama.cpp sources in it; pass llama-cpp-python's sdist")
        archive.extractall(dest, members=members, filter="data")
    top = members[0].name.split("/vendor/llama.cpp/")[0]
    return Path(dest) / top / "vendor" / "llama.cpp"


def engine_sources(root):
    """Every .cpp the binary is made of, the driver last."""
    listed = [root / name for name in ENGINE_SOURCES]
    found = [p for d in ENGINE_SOURCE_DIRS for p in sorted((root / d).glob("*.cpp"))]
    missing = [str(p.relative_to(root)) for p in listed if not p.is_file()]
    if missing:
        raise TemplateEngineError(f"{root}: this llama.cpp lacks {', '.join(missing)}; the engine's source list "
                                  "(ENGINE_SOURCES in synthia/gguf/native/template_engine.py) needs updating for it")
    return listed + found + [DRIVER]


def compiler():
    return os.environ.get("CXX", "c++")


def compile_command(source, obj):
    """Run from the llama.cpp root, so paths are short; `source` may be absolute (the driver)."""
    return [compiler(), *COMPILE_FLAGS, *(f"-I{d}" for d in HEADER_DIRS), "-c", str(source), "-o", str(obj)]


def link_command(objects, out, lib_dir):
    drop_unused = "-Wl,-dead_strip" if sys.platform == "darwin" else "-Wl,--gc-sections"
    return [compiler(), *map(str, objects), "-o", str(out), drop_unused, f"-L{lib_dir}",
            "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{lib_dir}"]


def run_build_step(command, cwd=None):
    result = subprocess.run(command, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise TemplateEngineError(f"building the C++ template engine failed (exit code {result.returncode}):\n"
                                  f"  command: {shlex.join(command)}\n  in: {cwd}\n{result.stderr[-4000:]}")


def compile_and_link(root, out, lib_dir, jobs, log):
    sources = [s if s == DRIVER else s.relative_to(root) for s in engine_sources(root)]
    objects = [Path("synthia-build") / f"{i:02d}-{s.stem}.o" for i, s in enumerate(sources)]
    (root / objects[0].parent).mkdir(exist_ok=True)
    commands = [compile_command(s, o) for s, o in zip(sources, objects)]
    log(f"[template engine] in {root}: {len(commands)} compiles with {jobs} job(s), the first: {shlex.join(commands[0])}")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        list(pool.map(lambda command: run_build_step(command, cwd=root), commands))
    partial = out.with_name(f"{out.name}.{os.getpid()}.partial")  # two builds at once do not clash
    command = link_command(objects, partial, lib_dir)
    log(f"[template engine] linking: {shlex.join(command)}")
    run_build_step(command, cwd=root)
    os.replace(partial, out)  # all or nothing: a half-written binary never looks built


def build_engine(*, sdist=None, jobs=None, log=print):
    """Build the engine for the installed llama-cpp-python once; later calls return the cached binary."""
    version, lib_dir = installed_llama_cpp()
    out = engine_path(version, lib_dir)
    if out.is_file():
        log(f"[template engine] already built: {out}")
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="synthia-template-engine-") as work:
        if sdist is None:
            command = download_sdist_command(version, work)
            log(f"[template engine] fetching llama.cpp's sources: {shlex.join(command)}")
            run_build_step(command)
            sdist = next(Path(work).glob("llama_cpp_python-*.tar.gz"))
        root = extract_llama_cpp(sdist, Path(work) / "src")
        compile_and_link(root, out, lib_dir, jobs, log)
    log(f"[template engine] built {out} in {time.monotonic() - started:.0f} s")
    return out


# ---------------------------------------------------------------- using it

def render(request, engine=None):
    """The text llama.cpp renders for `request` (see render_chat_template.cpp for its keys)."""
    engine = engine or find_engine()
    if engine is None:
        raise TemplateEngineError("llama.cpp's C++ template engine is not built: run "
                                  "`python -m synthia.gguf.native.template_engine --build` (a few minutes, once)")
    try:
        result = subprocess.run([str(engine)], input=json.dumps(request).encode("utf-8"), capture_output=True,
                                timeout=RENDER_TIMEOUT_SECONDS, env=loader_environment(installed_llama_cpp()[1]))
    except OSError as e:
        raise TemplateEngineError(f"{engine}: cannot run it ({e}); rebuild with "
                                  "`python -m synthia.gguf.native.template_engine --build`") from None
    if result.returncode != 0:
        raise TemplateEngineError(result.stderr.decode("utf-8", errors="replace").strip()
                                  or f"{engine}: exit code {result.returncode}, no message")
    return result.stdout.decode("utf-8")


def render_gguf_template(gguf_path, messages, tools=None, *, add_generation_prompt=False, engine=None):
    """Render with the template, BOS and EOS that llama.cpp reads from a GGUF file, as llama-server does."""
    request = {"model": str(gguf_path), "messages": messages, "add_generation_prompt": add_generation_prompt}
    if tools:
        request["tools"] = tools
    return render(request, engine)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m synthia.gguf.native.template_engine", description=__doc__.split("\n")[0])
    parser.add_argument("--build", action="store_true", help="build the engine unless it is already cached")
    parser.add_argument("--sdist", type=Path, help="llama-cpp-python's sdist to build from (default: pip download)")
    parser.add_argument("--jobs", type=int, help="parallel compiles (default: every CPU)")
    args = parser.parse_args(argv)
    try:
        if args.build:
            build_engine(sdist=args.sdist, jobs=args.jobs)
            return
        version, lib_dir = installed_llama_cpp()
        path = engine_path(version, lib_dir)
        print(path if path.is_file() else f"not built for llama-cpp-python {version}: run with --build ({path})")
    except TemplateEngineError as e:
        raise SystemExit(f"error: {e}")


if __name__ == "__main__":
    main()

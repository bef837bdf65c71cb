#!/usr/bin/env bash
# Set up everything the tests need and run them, exactly as CI does (.ci/run calls this).
#   bash scripts/test.sh            # all tests
#   bash scripts/test.sh -k resume  # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh --dev
export SYNTHIA_REQUIRE_LLAMA_CPP=1  # the llama.cpp checks of exported GGUF files (C++ template engine included) must run, not skip

# Qwen2.5's own chat template (inside llama-cpp-python's source distribution) for the byte-identity test.
template_dir=$(mktemp -d)
if pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d "$template_dir" >/dev/null 2>&1 \
   && tar -xzf "$template_dir"/llama_cpp_python-*.tar.gz -C "$template_dir" --wildcards '*/Qwen-Qwen2.5-7B-Instruct.jinja'; then
  export QWEN25_CHAT_TEMPLATE=$(find "$template_dir" -name Qwen-Qwen2.5-7B-Instruct.jinja | head -n 1)
else
  say "Qwen2.5's template not available; its comparison test will skip (and say so below)"
fi
# Qwen2.5's real tokenizer, built from an npm package, for the dataset's exact token-length test.
python -c "from synthia.starter_data import tokenizer; tokenizer.load(fetch=True)" >/dev/null \
  || say "Qwen2.5's tokenizer not available; the exact token-length test will skip (and say so below)"

python -m pytest tests -q -rs -p no:cacheprovider "$@"   # -rs: every skipped test says why in the summary

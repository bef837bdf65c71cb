"""Token efficiency on the shipped dataset: what carries loss and what is padding, three ways of training, one run.

    python bench/token_efficiency.py                     # dataset.jsonl, Qwen2.5 tokenizer, ~30 s, no model
    python bench/token_efficiency.py --batch-size 4 --max-seq-length 1024
    python bench/token_efficiency.py --smoke             # 20 conversations, the tiny random Qwen2's tokenizer, seconds

Token arithmetic only. Every conversation is rendered with the default template
(synthia/chat_templates/qwen2.5-tools.jinja) and the Qwen2.5 tokenizer (synthia/starter_data/tokenizer.py), then
batched three ways, one epoch each:

  this pipeline   every assistant turn trained in one sequence (synthia.data.render.encode, fit_to_length), batches
                  from synthia.train.worker itself: length-sorted, right-padded to 1 + a multiple of 32
  mlx_lm.lora     --mask-prompt: mlx_lm's own ChatDataset (loss from the start of the LAST assistant message to the
  --mask-prompt   end) and its own iterate_batches and default_loss mask, run here on the same records
  one per turn    each assistant turn its own example (the conversation up to and including that turn, loss on
                  that turn), batched as this pipeline batches

"Computed" counts the model's input positions (batch rows x (width - 1)); padding is the positions past a row's
end; "attention" sums the squared input width of every row (causal attention here is computed on the padded
square). "Assistant tokens" are the tokens of every assistant turn (synthia.data.render's spans).
"""

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_TEMPLATE = ROOT / "synthia" / "chat_templates" / "qwen2.5-tools.jinja"
SMOKE_CONVERSATIONS = 20


def qwen_tokenizer(template=DEFAULT_TEMPLATE):
    """Qwen2.5's tokenizer as mlx_lm wraps it, with the pipeline's default chat template."""
    from mlx_lm.tokenizer_utils import TokenizerWrapper
    from transformers import PreTrainedTokenizerFast

    from synthia.starter_data import tokenizer as qwen

    hf = PreTrainedTokenizerFast(tokenizer_object=qwen.load(), eos_token="<|im_end|>", pad_token="<|endoftext|>")
    hf.chat_template = Path(template).read_text()
    return TokenizerWrapper(hf)


def tiny_tokenizer(directory, template=DEFAULT_TEMPLATE):
    """--smoke: the tokenizer of a tiny random Qwen2 built in `directory`, loaded as the pipeline loads a base
    model's, with the given template. No download, a second or two; its token counts mean nothing."""
    from synthia.demo.tiny_model import build_tiny_model
    from synthia.pipeline.models import load_tokenizer

    return load_tokenizer(build_tiny_model(Path(directory) / "tiny-model"), template)


def machine_lines():
    import mlx.core as mx
    import mlx_lm
    import tokenizers
    import transformers

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    return [f"machine: {cpu}, {os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}",
            f"python {platform.python_version()}, mlx {mx.__version__}, mlx-lm {mlx_lm.__version__}, "
            f"transformers {transformers.__version__}, tokenizers {tokenizers.__version__}"]


# ---------------------------------------------------------------------------------------------------------
# Counting one epoch of batches: (tokens, mask) arrays as the loss sees them
# ---------------------------------------------------------------------------------------------------------
class Tally:
    def __init__(self, name, examples):
        self.name, self.examples = name, examples
        self.batches = self.computed = self.padding = self.attention = 0
        self.trained = self.trained_assistant = 0

    def add(self, targets_mask, row_lengths, width, assistant_mask=None):
        """targets_mask: (rows, width - 1) 0/1 over the targets; assistant_mask likewise marks assistant tokens."""
        rows = targets_mask.shape[0]
        self.batches += 1
        self.computed += rows * (width - 1)
        self.padding += int(sum(max(0, width - 1 - min(n, width - 1)) for n in row_lengths))
        self.attention += rows * (width - 1) ** 2
        self.trained += int(targets_mask.sum())
        self.trained_assistant += int((targets_mask * assistant_mask).sum())


def pipeline_epoch(name, examples, batch_size, max_seq_length):
    """examples: [(tokens, spans)] trained as synthia.train.worker trains them, every batch of one epoch once."""
    import numpy as np

    from synthia.train import batches

    dataset = [(np.asarray(t, np.int32), span_mask(len(t), spans)) for t, spans in examples]
    tally = Tally(name, len(dataset))
    groups = batches.batch_index_groups([len(t) for t, _ in dataset], batch_size, keep_remainder=False)
    for indices in groups:
        tokens, mask = batches.pack_batch(dataset, indices, 0, 1, max_seq_length)
        targets = np.array(mask)[:, 1:]
        tally.add(targets, [len(dataset[i][0]) for i in indices], tokens.shape[1], assistant_mask=targets)
    return tally


def span_mask(length, spans):
    import numpy as np

    mask = np.zeros(length, np.float32)
    for start, end in spans:
        mask[start:end] = 1.0
    return mask


def mlx_lm_mask_prompt_epoch(records, tokenizer, assistant_masks, batch_size, max_seq_length):
    """One epoch of `mlx_lm.lora --mask-prompt` on these records: mlx_lm's ChatDataset, CacheDataset and
    iterate_batches, and the target mask of its default_loss (steps >= offset and steps <= length)."""
    import numpy as np
    from mlx_lm.tuner.datasets import CacheDataset, ChatDataset
    from mlx_lm.tuner.trainer import iterate_batches

    dataset = CacheDataset(ChatDataset(records, tokenizer, mask_prompt=True))
    by_tokens = {tuple(tokens): mask for tokens, mask in assistant_masks}
    tally = Tally("mlx_lm.lora --mask-prompt", len(records))
    np.random.seed(0)
    for batch, lengths in iterate_batches(dataset, batch_size, max_seq_length, loop=False):
        batch, lengths = np.array(batch), np.array(lengths)
        width = batch.shape[1]
        steps = np.arange(1, width)
        targets = ((steps >= lengths[:, :1]) & (steps <= lengths[:, 1:])).astype(np.float32)
        assistant = np.zeros_like(targets)
        for row, (_, length) in enumerate(lengths):
            mask = by_tokens[tuple(batch[row, :length].tolist())]
            assistant[row, : min(length, width) - 1] = mask[1:min(length, width)]
        tally.add(targets, [int(n) for _, n in lengths], width, assistant_mask=assistant)
    return tally


def per_turn_examples(encoded):
    """Each trained turn its own example: the conversation up to the turn's end, loss on the turn only."""
    return [(e.tokens[:end], [(start, end)]) for e in encoded for start, end in e.spans]


# ---------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------
def encode_dataset(path, tokenizer, max_seq_length, limit=None):
    """[(record as mlx_lm would read it, Encoded, Encoded fitted to max_seq_length or None)] of the first `limit`
    conversations (None: all)."""
    from dataclasses import replace

    from synthia.data import render, validate

    report = validate.validate_file(path)
    if report.errors:
        raise SystemExit(validate.format_report(report))
    default_tools = validate.load_default_tools()
    rows = []
    for ex in report.examples[:limit]:
        tools = ex.record.get("tools", default_tools)
        encoded = render.encode(tokenizer, ex.messages, tools)
        fitted = render.fit_to_length(replace(encoded), max_seq_length) if encoded.spans else None
        # mlx_lm renders the messages as given: hand it what the template wants (arguments as objects, no
        # `weight`), or the Qwen template would double-encode the arguments and the counts would differ.
        rows.append(({"messages": render.template_messages(ex.messages), "tools": tools}, encoded, fitted))
    return rows


def assistant_token_count(encoded):
    return sum(e - s for enc in encoded for s, e in enc.spans + enc.untrained_spans)


def table(tallies, assistant_tokens):
    base = tallies[0]
    header = (f"{'':28} {'examples':>8} {'batches':>7} {'computed':>10} {'padding':>8} {'trained':>9} "
              f"{'assistant':>10} {'computed':>9} {'attention':>9} {'computed per':>12}")
    header2 = (f"{'one epoch':28} {'':>8} {'':>7} {'tokens':>10} {'share':>8} {'targets':>9} "
               f"{'tok. w/ loss':>10} {'vs ours':>9} {'vs ours':>9} {'assistant tok':>12}")
    lines = [header, header2]
    for t in tallies:
        lines.append(f"{t.name:28} {t.examples:>8,} {t.batches:>7,} {t.computed:>10,} {t.padding / t.computed:>8.1%} "
                     f"{t.trained:>9,} {t.trained_assistant / assistant_tokens:>10.1%} "
                     f"{t.computed / base.computed:>8.2f}x {t.attention / base.attention:>8.2f}x "
                     f"{t.computed / max(t.trained_assistant, 1):>12.2f}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default=str(ROOT / "dataset.jsonl"), help="chat JSONL (default: dataset.jsonl)")
    parser.add_argument("--batch-size", type=int, default=2, help="examples per batch (pipeline default 2)")
    parser.add_argument("--max-seq-length", type=int, default=2048, help="tokens (pipeline default 2048)")
    parser.add_argument("--chat-template", default=str(DEFAULT_TEMPLATE), help="Jinja chat template")
    parser.add_argument("--smoke", action="store_true", help=f"the first {SMOKE_CONVERSATIONS} conversations with a "
                        "tiny random Qwen2's tokenizer: the same counting in seconds, figures meaningless")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"Token efficiency: python bench/token_efficiency.py {' '.join(sys.argv[1:] if argv is None else argv)}"
          .rstrip())
    print("\n".join(machine_lines()))
    with tempfile.TemporaryDirectory() as work:
        tokenizer = tiny_tokenizer(work, args.chat_template) if args.smoke else qwen_tokenizer(args.chat_template)
    tokenizer_name = "the tiny random Qwen2's tokenizer" if args.smoke else "Qwen2.5 tokenizer"
    rows = encode_dataset(args.dataset, tokenizer, args.max_seq_length, SMOKE_CONVERSATIONS if args.smoke else None)
    full = [enc for _, enc, _ in rows]
    fitted = [enc for _, _, enc in rows if enc is not None]
    assistant_tokens = assistant_token_count(full)
    print(f"data: {args.dataset}, {len(rows)} conversations ({len(rows) - len(fitted)} left out by the pipeline: no "
          f"trained turn fits), {sum(len(e.tokens) for e in full):,} tokens, {assistant_tokens:,} assistant tokens "
          f"in {sum(len(e.spans) + len(e.untrained_spans) for e in full):,} turns; {tokenizer_name}, "
          f"{Path(args.chat_template).name}; batch_size {args.batch_size}, max_seq_length {args.max_seq_length}\n")
    ours = pipeline_epoch("this pipeline (all turns)", [(e.tokens, e.spans) for e in fitted], args.batch_size,
                          args.max_seq_length)
    # mlx_lm truncates instead of dropping turns: its rows are the first max_seq_length tokens of each conversation.
    masks = [(e.tokens[: args.max_seq_length], span_mask(len(e.tokens), e.spans + e.untrained_spans)) for e in full]
    theirs = mlx_lm_mask_prompt_epoch([record for record, _, _ in rows], tokenizer, masks, args.batch_size,
                                      args.max_seq_length)
    per_turn = pipeline_epoch("one example per turn", per_turn_examples(fitted), args.batch_size,
                              args.max_seq_length)
    print(table([ours, theirs, per_turn], assistant_tokens))
    extra = theirs.trained - theirs.trained_assistant
    print(f"\nmlx_lm trained targets outside assistant turns: {extra:,} (the newline after <|im_end|> and one padding "
          "target per row: its mask runs to steps <= length)")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()

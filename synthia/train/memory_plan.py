"""Predict the peak memory and disk of each step of a stage, and find the settings that fit a budget.

    from synthia.train.memory_plan import ModelShape, PlanInputs, plan, format_plan, auto_fit, default_budget
    inputs = PlanInputs(model=ModelShape.from_config(json.load(open("model/config.json"))), lengths=lengths)
    budget, where = default_budget()
    print(format_plan(plan(inputs), budget, where))
    fitted, changes = auto_fit(inputs, budget)

The numbers are arithmetic on the model's config (every weight matrix of a Llama/Qwen2-style decoder),
the LoRA settings and the longest training batch, with a handful of constants (CALIBRATION) measured by
bench/memory.py against mx.get_peak_memory on small random models. Quantize and fuse are synthia.train.fuse's
streaming versions; evaluate is the worker's (each model it scores is loaded whole, one at a time).
"""

import itertools
import math
import os
import platform
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

from synthia.train.batches import padded_width

GB = 1e9
LORA_BYTES = 4  # mlx_lm makes LoRA parameters in float32 whatever the model's dtype
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
# mlx_lm's default LoRA targets: every Linear of a block (the attention and MLP projections).
DEFAULT_LORA_KEYS = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
DEFAULT_MAX_SHARD_BYTES = 2 << 30  # synthia.train.fuse's output shard
RUNTIME_BYTES = 0.5 * GB  # Python, MLX, mlx_lm and the tokenizer: outside mx.get_peak_memory
FEW_EXAMPLES = 0.05  # a shorter max_seq_length is offered only if at most this share of examples is longer

# Multipliers fitted to bench/memory.py's measurements (CPU, mlx 0.32, 2 runs of its grid): how many arrays
# of a given size are alive at a step's peak. On the CPU, MLX allocates an op's output when it queues the
# op, ahead of the one running, so neighbouring ops' arrays overlap more than the maths needs.
CALIBRATION = {
    # training: per LoRA block below the top one, kept for the backward pass (no checkpointing)
    "kept_intermediate": 5.5, "kept_attention": 0.9,
    # training: the block whose backward pass runs at the peak (its activations and gradients)
    "block_intermediate": 2.8, "block_attention": 1.7,
    "checkpoint_hidden": 15.0,  # [tokens x hidden] arrays per LoRA block under checkpointing (see below)
    "logits": 4.7,  # [tokens x vocabulary] arrays of the plain loss's backward pass
    "chunk_logits": 6.4,  # [rows x chunk x vocabulary] arrays of the chunked loss (at most 2 per chunk)
    "matrix_copies": 2.1,  # copies of a block's largest matrix (transposed or dequantized for the backward)
    # evaluation (forward only)
    "eval_intermediate": 2.5, "eval_attention": 0.9,
    "eval_logits": 2.2,  # [tokens x vocabulary] arrays of the plain loss
    "eval_chunk_logits": 6.4,  # [rows x chunk x vocabulary] arrays of the chunked loss (at most 2 per chunk)
    # synthia.train.fuse
    "quantize_tensor": 1.0,  # the full-precision tensor being quantized, beside its quantized form
    "fuse_update": 1.0,  # the float32 [out x in] LoRA update of the matrix being fused
}


@dataclass(frozen=True)
class ModelShape:
    """What the memory depends on, from a Llama/Qwen2-style config.json."""

    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    vocab_size: int
    tied_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2 has biases on q, k and v
    dtype_bytes: int = 2  # of the full-precision weights (bf16)
    bits: int | None = None  # when the model on disk is quantized
    group_size: int = 64

    @classmethod
    def from_config(cls, config):
        quantization = config.get("quantization") or {}
        return cls(hidden_size=config["hidden_size"], num_layers=config["num_hidden_layers"],
                   intermediate_size=config["intermediate_size"], num_heads=config["num_attention_heads"],
                   num_kv_heads=config.get("num_key_value_heads") or config["num_attention_heads"],
                   vocab_size=config["vocab_size"], tied_embeddings=config.get("tie_word_embeddings", False),
                   qkv_bias=config.get("model_type") == "qwen2" or config.get("attention_bias", False),
                   dtype_bytes=DTYPE_BYTES.get(config.get("torch_dtype"), 2),
                   bits=quantization.get("bits"), group_size=quantization.get("group_size", 64))

    @property
    def kv_dim(self):
        return self.num_kv_heads * (self.hidden_size // self.num_heads)

    def projections(self):
        """{key: (input dims, output dims)} of a block's linear layers."""
        h, kv, i = self.hidden_size, self.kv_dim, self.intermediate_size
        return {"self_attn.q_proj": (h, h), "self_attn.k_proj": (h, kv), "self_attn.v_proj": (h, kv),
                "self_attn.o_proj": (h, h), "mlp.gate_proj": (h, i), "mlp.up_proj": (h, i),
                "mlp.down_proj": (i, h)}

    def tensors(self):
        """(input dims, output dims, block index or None, LoRA key or None) of every weight in mlx_lm's
        order; vectors (norms, biases) have input dims 1."""
        h = self.hidden_size
        tensors = [(h, self.vocab_size, None, None)]
        for layer in range(self.num_layers):
            for key, (i, o) in self.projections().items():
                tensors.append((i, o, layer, key))
                if self.qkv_bias and key in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
                    tensors.append((1, o, layer, None))
            tensors += [(1, h, layer, None), (1, h, layer, None)]  # the two norms
        tensors.append((1, h, None, None))
        return tensors + ([] if self.tied_embeddings else [(h, self.vocab_size, None, None)])

    def matrices(self):
        """(input dims, output dims) of every weight matrix: embedding, blocks, and lm_head if untied."""
        embedding = [(self.hidden_size, self.vocab_size)]
        head = [] if self.tied_embeddings else [(self.hidden_size, self.vocab_size)]
        return embedding + list(self.projections().values()) * self.num_layers + head

    def vectors(self):
        """Parameters outside the matrices: norms and the q/k/v biases."""
        per_block = 2 * self.hidden_size + (self.hidden_size + 2 * self.kv_dim if self.qkv_bias else 0)
        return per_block * self.num_layers + self.hidden_size

    def parameters(self):
        return sum(i * o for i, o in self.matrices()) + self.vectors()

    def weight_bytes(self, bits=None, group_size=64):
        """Bytes of the weights, full precision or quantized as mlx_lm quantizes (matrices whose input
        size divides by group_size; a scale and a bias in the model's dtype per group)."""
        return sum(matrix_bytes(i, o, self.dtype_bytes, bits, group_size) for i, o in self.matrices()) \
            + self.vectors() * self.dtype_bytes

    def largest_matrix_bytes(self, dtype_bytes=None):
        return max(i * o for i, o in self.matrices()) * (dtype_bytes or self.dtype_bytes)


def matrix_bytes(inputs, outputs, dtype_bytes, bits, group_size):
    if bits is None or inputs % group_size:
        return inputs * outputs * dtype_bytes
    return inputs * outputs * bits // 8 + 2 * outputs * (inputs // group_size) * dtype_bytes


@dataclass(frozen=True)
class PlanInputs:
    """A stage's settings, in train_mlx.py's names, and the token lengths of its training examples."""

    model: ModelShape
    lengths: tuple = ()  # tokens per training example (after fitting to max_seq_length)
    batch_size: int = 2
    max_seq_length: int = 2048
    lora_rank: int = 8
    num_layers: int = 16  # blocks with LoRA, from the top; -1 = all
    lora_keys: tuple = DEFAULT_LORA_KEYS
    fine_tune_type: str = "lora"
    grad_checkpoint: bool = True
    grad_accumulation_steps: int = 1
    train_bits: int | None = 4  # None: train on the base as it is
    group_size: int = 64
    chunked_loss: bool = False
    chunk_size: int = 512
    eval_lengths: tuple | None = None  # the valid split's lengths; None: as lengths
    eval_bits: int | None = None  # score full-precision models quantized to this (None: as they are)
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES
    iters: int = 1000  # for the disk plan: checkpoints
    save_every: int = 100

    @property
    def lora_layers(self):
        return self.model.num_layers if self.num_layers < 0 else min(self.num_layers, self.model.num_layers)

    @property
    def train_base_bits(self):
        return self.model.bits or self.train_bits


@dataclass
class StepPlan:
    name: str
    parts: dict = field(default_factory=dict)  # component -> bytes (MLX allocations)

    @property
    def mlx_total(self):
        return sum(self.parts.values())

    @property
    def total(self):
        return self.mlx_total + RUNTIME_BYTES


def batch_positions(lengths, batch_size, max_seq_length):
    """(rows, positions) of the widest batch the worker builds: the longest example padded as it pads."""
    longest = min(max(lengths, default=max_seq_length), max_seq_length)
    return batch_size, padded_width(longest, max_seq_length) - 1


def lora_parameters(inputs):
    projections = inputs.model.projections()
    per_block = sum(inputs.lora_rank * (i + o) + (o if inputs.fine_tune_type == "dora" else 0)
                    for key, (i, o) in projections.items() if key in inputs.lora_keys)
    return per_block * inputs.lora_layers


def adapter_and_optimizer_bytes(inputs):
    """Parameters, gradients and Adam's two moments, plus the accumulated gradient when accumulating."""
    copies = 4 + (1 if inputs.grad_accumulation_steps > 1 else 0)
    return copies * lora_parameters(inputs) * LORA_BYTES


def activation_dtype_bytes(inputs):
    return inputs.model.dtype_bytes  # a quantized model computes in its scales' dtype, the original one


def block_bytes(inputs, rows, positions, kind):
    """[tokens x intermediate] and [heads x positions^2] arrays of one block (the [tokens x hidden] ones
    are folded into the first), counted with CALIBRATION's `{kind}_intermediate` and `{kind}_attention`.
    The block in its backward pass holds gradients, float32 whatever the model's dtype (the float32
    adapters promote them)."""
    m, c = inputs.model, CALIBRATION
    arrays = c[f"{kind}_intermediate"] * rows * positions * m.intermediate_size \
        + c[f"{kind}_attention"] * rows * m.num_heads * positions ** 2
    return arrays * (LORA_BYTES if kind == "block" else activation_dtype_bytes(inputs))


def train_activation_bytes(inputs, rows, positions):
    """The LoRA blocks' kept activations plus the block being differentiated (blocks below the lowest
    LoRA block need no backward pass). Under checkpointing a LoRA block keeps only its input and output,
    but on the CPU MLX queues the recomputation of several blocks ahead of their gradients, which the
    measured checkpoint_hidden (15 [tokens x hidden] arrays a block) folds in; Metal is unmeasured."""
    top = block_bytes(inputs, rows, positions, "block")
    if inputs.grad_checkpoint:
        kept = CALIBRATION["checkpoint_hidden"] * rows * positions * inputs.model.hidden_size \
            * activation_dtype_bytes(inputs)
        return inputs.lora_layers * kept + top
    return (inputs.lora_layers - 1) * block_bytes(inputs, rows, positions, "kept") + top


def loss_logit_bytes(inputs, rows, positions, plain_arrays, chunk_arrays):
    vocabulary_row = inputs.model.vocab_size * activation_dtype_bytes(inputs)
    if inputs.chunked_loss:
        chunk = min(inputs.chunk_size, positions)
        return min(chunk_arrays, 2 * math.ceil(positions / chunk)) * rows * chunk * vocabulary_row
    return plain_arrays * rows * positions * vocabulary_row


def train_step(inputs):
    m = inputs.model
    rows, positions = batch_positions(inputs.lengths, inputs.batch_size, inputs.max_seq_length)
    parts = {
        "weights": m.weight_bytes(inputs.train_base_bits, inputs.group_size),
        "adapters+optimizer": adapter_and_optimizer_bytes(inputs),
        "activations": train_activation_bytes(inputs, rows, positions),
        "logits": loss_logit_bytes(inputs, rows, positions, CALIBRATION["logits"], CALIBRATION["chunk_logits"]),
    }
    largest_block_matrix = max(i * o for i, o in m.projections().values())
    parts["temporaries"] = CALIBRATION["matrix_copies"] * largest_block_matrix * m.dtype_bytes
    return StepPlan("train", parts)


def plan_shards(sizes, max_bytes):
    """Names in order, cut into shards of at most max_bytes (a bigger tensor gets a shard of its own):
    how synthia.train.fuse cuts its output."""
    shards, used = [], 0
    for name, size in sizes.items():
        if not shards or used + size > max_bytes:
            shards.append([])
            used = 0
        shards[-1].append(name)
        used += size
    return shards


def streamed_peak(units, max_shard_bytes):
    """Peak of writing (output bytes, temporary bytes) units one at a time into shards that are saved and
    dropped when the next unit would not fit: the shard so far, the unit, and its temporaries."""
    shards = plan_shards(dict(enumerate(out for out, _ in units)), max_shard_bytes)
    peak = 0
    for shard in shards:
        filled = 0
        for index in shard:
            out, temporary = units[index]
            peak = max(peak, filled + out + temporary)
            filled += out
    return peak


def quantize_step(inputs):
    """synthia.train.fuse quantizes tensor by tensor: the shard so far, plus a full-precision tensor, its
    quantized form and the quantization's temporaries."""
    m, bits, group = inputs.model, inputs.train_bits, inputs.group_size
    units = [(matrix_bytes(i, o, m.dtype_bytes, bits if i > 1 else None, group),
              CALIBRATION["quantize_tensor"] * i * o * m.dtype_bytes if i > 1 else 0) for i, o, _, _ in m.tensors()]
    return StepPlan("quantize", {"weights": streamed_peak(units, inputs.max_shard_bytes)})


def fuse_step(inputs):
    """Into the full-precision base (dequantized when the base is quantized), as train_mlx.py fuses: the
    shard so far, plus a fused matrix and its float32 LoRA update."""
    m = inputs.model
    first_adapted = m.num_layers - inputs.lora_layers
    # The update is made in float32 and, for a 16-bit model, cast to its dtype before the addition.
    update_bytes = CALIBRATION["fuse_update"] * LORA_BYTES + (m.dtype_bytes if m.dtype_bytes < LORA_BYTES else 0)
    units = [(i * o * m.dtype_bytes, i * o * update_bytes if key in inputs.lora_keys and layer >= first_adapted else 0)
             for i, o, layer, key in m.tensors()]
    return StepPlan("fuse", {"weights": streamed_peak(units, inputs.max_shard_bytes)})


def evaluate_step(inputs):
    """The worker scores the base, base + adapters and the fused model one at a time: the largest counts."""
    m = inputs.model
    full = m.weight_bytes(inputs.eval_bits, inputs.group_size) if inputs.eval_bits else m.weight_bytes()
    if inputs.eval_bits:
        full += m.largest_matrix_bytes()  # quantized on load, one tensor at a time
    adapters = m.weight_bytes(inputs.train_base_bits, inputs.group_size) + lora_parameters(inputs) * LORA_BYTES
    lengths = inputs.eval_lengths if inputs.eval_lengths is not None else inputs.lengths
    rows, positions = batch_positions(lengths, inputs.batch_size, inputs.max_seq_length)
    return StepPlan("evaluate", {
        "weights": max(full, adapters),
        "activations": block_bytes(inputs, rows, positions, "eval"),
        "logits": loss_logit_bytes(inputs, rows, positions, CALIBRATION["eval_logits"],
                                   CALIBRATION["eval_chunk_logits"]),
    })


def plan(inputs):
    """{step: StepPlan} for the steps a stage runs: quantize (when training on a quantized copy of a
    full-precision base), train, fuse, evaluate."""
    steps = [train_step(inputs), fuse_step(inputs), evaluate_step(inputs)]
    if inputs.train_bits and not inputs.model.bits:
        steps.insert(0, quantize_step(inputs))
    return {step.name: step for step in steps}


# ---------------------------------------------------------------------------------------------------------
# Budget and report
# ---------------------------------------------------------------------------------------------------------
def default_budget():
    """(bytes, where the number comes from): Metal's recommended working set on a Mac, else the memory
    the OS reports available."""
    import mlx.core as mx

    info = mx.device_info() if hasattr(mx, "device_info") else {}
    if info.get("max_recommended_working_set_size"):
        return int(info["max_recommended_working_set_size"]), "Metal's recommended working set"
    available = meminfo_available(Path("/proc/meminfo"))
    if available is not None:
        return available, "MemAvailable in /proc/meminfo"
    if platform.system() == "Darwin" or hasattr(os, "sysconf"):
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "physical memory (sysconf)"
    raise RuntimeError("cannot tell how much memory this machine has; pass a budget in GB")


def meminfo_available(path):
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # kB
    return None


PART_COLUMNS = ("weights", "adapters+optimizer", "activations", "logits", "temporaries")


def format_plan(steps, budget, budget_source="budget"):
    """A table of each step's predicted peak in GB against the budget."""
    header = f"{'step':<10}" + "".join(f"{name:>20}" for name in PART_COLUMNS) + f"{'runtime':>10}{'total':>9}  fits"
    lines = [f"memory plan: budget {budget / GB:.1f} GB ({budget_source})", header]
    for step in steps.values():
        cells = "".join(f"{step.parts[name] / GB:>20.2f}" if name in step.parts else f"{'-':>20}"
                        for name in PART_COLUMNS)
        verdict = "yes" if step.total <= budget else f"NO, {(step.total - budget) / GB:.1f} GB over"
        lines.append(f"{step.name:<10}{cells}{RUNTIME_BYTES / GB:>10.2f}{step.total / GB:>9.2f}  {verdict}")
    return "\n".join(lines)


def over_budget(steps, budget):
    return [step.name for step in steps.values() if step.total > budget]


# ---------------------------------------------------------------------------------------------------------
# Disk
# ---------------------------------------------------------------------------------------------------------
def disk_plan(inputs):
    """Bytes a stage writes: the quantized training copy, the fused model, and the checkpoints
    (adapters + Adam state every save_every iterations, plus best/last/kept adapters)."""
    m, lora = inputs.model, lora_parameters(inputs) * LORA_BYTES
    checkpoints = (inputs.iters // inputs.save_every) * 3 * lora + 3 * lora
    plan_bytes = {"fused model": m.weight_bytes(), "checkpoints": checkpoints}
    if inputs.train_bits and not m.bits:
        plan_bytes = {"quantized copy": m.weight_bytes(inputs.train_bits, inputs.group_size), **plan_bytes}
    return plan_bytes


def format_disk(disk, directory):
    free = shutil.disk_usage(directory).free
    total = sum(disk.values())
    parts = ", ".join(f"{name} {size / GB:.2f} GB" for name, size in disk.items())
    verdict = "fits" if total <= free else f"does NOT fit: free {(total - free) / GB:.1f} GB more"
    return f"disk plan: {parts}; total {total / GB:.2f} GB, {free / GB:.1f} GB free in {directory}: {verdict}"


# ---------------------------------------------------------------------------------------------------------
# Fitting a budget
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    setting: str
    old: object
    new: object
    cost: str  # what it costs, in a few words

    def __str__(self):
        return f"{self.setting}: {self.old} -> {self.new} ({self.cost})"


class DoesNotFit(ValueError):
    """No change on the list brings every step under the budget."""


def shorter_max_seq_length(inputs):
    """The shortest multiple of 256 that at most FEW_EXAMPLES of the examples exceed, if shorter."""
    if not inputs.lengths:
        return None
    ordered = sorted(inputs.lengths)
    keep_index = math.ceil(len(ordered) * (1 - FEW_EXAMPLES)) - 1
    candidate = 256 * math.ceil(ordered[max(keep_index, 0)] / 256)
    return candidate if candidate < inputs.max_seq_length else None


def candidate_changes(inputs, allowed=None):
    """Single changes, cheapest in quality first; those that would change nothing, or whose setting is not in
    `allowed` (None: any), are left out."""
    changes = []
    if inputs.max_shard_bytes > 512 << 20:
        changes.append(Change("max_shard_bytes", inputs.max_shard_bytes, 512 << 20, "more, smaller weight files"))
    if not inputs.chunked_loss:
        changes.append(Change("chunked_loss", False, True, "same loss, a little slower"))
    if not inputs.grad_checkpoint:
        changes.append(Change("grad_checkpoint", False, True, "same result, ~25% slower"))
    if inputs.batch_size > 1:
        changes.append(Change("batch_size", inputs.batch_size, 1, "same effective batch through accumulation"))
    if inputs.eval_bits is None:
        changes.append(Change("eval_bits", None, 4, "scores 4-bit copies: the scores shift a little"))
    if not inputs.train_base_bits:
        changes.append(Change("train_bits", None, 4, "trains on a 4-bit copy (QLoRA): slightly lower quality"))
    for fewer in (inputs.lora_layers // 2, inputs.lora_layers // 4):
        if fewer >= 2:
            changes.append(Change("num_layers", inputs.num_layers, fewer, "fewer adapted layers: less capacity"))
    if (shorter := shorter_max_seq_length(inputs)) is not None:
        longer = sum(length > shorter for length in inputs.lengths)
        changes.append(Change("max_seq_length", inputs.max_seq_length, shorter,
                              f"{longer} of {len(inputs.lengths)} examples lose turns from the end"))
    return [change for change in changes if allowed is None or change.setting in allowed]


def apply_changes(inputs, changes):
    for change in changes:
        if change.setting == "batch_size":
            accumulation = inputs.grad_accumulation_steps * inputs.batch_size // change.new
            inputs = replace(inputs, batch_size=change.new, grad_accumulation_steps=accumulation)
        elif change.setting == "max_seq_length":
            inputs = replace(inputs, max_seq_length=change.new, lengths=tuple(min(n, change.new) for n in inputs.lengths))
        else:
            inputs = replace(inputs, **{change.setting: change.new})
    return inputs


def fits(inputs, budget):
    return not over_budget(plan(inputs), budget)


def fitting_options(inputs, budget, allowed=None):
    """[(changes, settings)] that bring every step under the budget, best first: the option whose
    costliest change comes earliest on candidate_changes' list, then the fewest changes. Options that
    only add changes to one already listed are left out."""
    candidates = candidate_changes(inputs, allowed)
    rank = {id(change): n for n, change in enumerate(candidates)}
    subsets = [list(s) for size in range(1, len(candidates) + 1) for s in itertools.combinations(candidates, size)
               if len({c.setting for c in s}) == size]
    subsets.sort(key=lambda s: (max(rank[id(c)] for c in s), len(s), [rank[id(c)] for c in s]))
    fitting = []
    for changes in subsets:
        if any(all(c in changes for c in listed) for listed, _ in fitting):
            continue
        settings = apply_changes(inputs, changes)
        if fits(settings, budget):
            fitting.append((changes, settings))
    return fitting


def auto_fit(inputs, budget, allowed=None):
    """(settings, changes): the inputs unchanged when every step fits, else the best fitting option."""
    if fits(inputs, budget):
        return inputs, []
    options = fitting_options(inputs, budget, allowed)
    if not options:
        raise DoesNotFit(f"no combination of {', '.join(str(c) for c in candidate_changes(inputs, allowed))} "
                         f"brings every step under {budget / GB:.1f} GB:\n" + format_plan(plan(inputs), budget))
    return options[0][1], options[0][0]

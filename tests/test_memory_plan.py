"""The memory plan's arithmetic on known configurations, the budget, the disk plan and auto_fit's choices."""

import json
from dataclasses import replace
from pathlib import Path

import mlx.core as mx
import pytest

from synthia.train.memory_plan import (CALIBRATION, GB, Change, DoesNotFit, ModelShape, PlanInputs, auto_fit,
                                 batch_positions, candidate_changes, default_budget, disk_plan, format_disk,
                                 format_plan, lora_parameters, meminfo_available, plan, train_step)

# Qwen2.5-Coder-7B-Instruct's config.json, the target.
QWEN_7B = {"model_type": "qwen2", "hidden_size": 3584, "num_hidden_layers": 28, "intermediate_size": 18944,
           "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
MAC_16GB_BUDGET = 10.7 * GB  # Metal's recommended working set on a 16 GB Mac


def qwen_7b(**settings):
    settings = {"lengths": (900,) * 300 + (2048,) * 4, **settings}
    return PlanInputs(model=ModelShape.from_config(QWEN_7B), **settings)


def test_qwen_7b_has_its_published_parameter_count():
    # Per block: q, o 3584^2; k, v 3584*512; gate, up, down 3584*18944; norms 2*3584; q/k/v biases 3584+512+512.
    block = 2 * 3584**2 + 2 * 3584 * 512 + 3 * 3584 * 18944 + 2 * 3584 + 4608
    expected = 28 * block + 2 * 152064 * 3584 + 3584  # + embedding, untied lm_head, final norm
    assert expected == 7_615_616_512
    assert ModelShape.from_config(QWEN_7B).parameters() == expected
    assert ModelShape.from_config(QWEN_7B).weight_bytes() == 2 * expected  # bf16


def test_qwen_7b_in_4_bits_counts_packed_weights_plus_a_scale_and_bias_per_64():
    # Every matrix quantizes (3584 and 18944 divide by 64): 4 bits + 2 x 16 bits / 64 = 0.5625 bytes a weight;
    # the 333,312 norm and bias parameters stay bf16.
    vectors = 28 * (2 * 3584 + 4608) + 3584
    assert ModelShape.from_config(QWEN_7B).weight_bytes(4, 64) == (7_615_616_512 - vectors) * 9 // 16 + 2 * vectors
    assert ModelShape.from_config(QWEN_7B).weight_bytes(4, 64) == 4_284_263_424


def test_weight_bytes_equal_the_files_of_the_tiny_model_full_and_4_bit(tiny_model_dir, tmp_path):
    from synthia.train.fuse import quantize_streaming

    shape = ModelShape.from_config(json.loads((tiny_model_dir / "config.json").read_text()))
    quantize_streaming(tiny_model_dir, tmp_path / "q4", bits=4, group_size=64)
    for directory, bits in ((tiny_model_dir, None), (tmp_path / "q4", 4)):
        on_disk = sum(v.nbytes for f in Path(directory).glob("model*.safetensors") for v in mx.load(str(f)).values())
        assert shape.weight_bytes(bits, 64) == on_disk


def test_lora_rank_8_on_16_blocks_of_qwen_7b_and_its_adam_state():
    # Per block r * (in + out): q, o 8*7168; k, v 8*4096; gate, up, down 8*22528.
    per_block = 2 * 8 * 7168 + 2 * 8 * 4096 + 3 * 8 * 22528
    inputs = qwen_7b(num_layers=16, lora_rank=8)
    assert lora_parameters(inputs) == 16 * per_block == 11_534_336
    # float32 parameters, gradients and Adam's two moments
    assert train_step(inputs).parts["adapters+optimizer"] == 4 * 4 * 11_534_336
    assert lora_parameters(replace(inputs, num_layers=-1)) == 28 * per_block


def test_the_widest_batch_is_the_longest_example_padded_like_the_worker():
    assert batch_positions([100, 900], 2, 2048) == (2, 928)  # 1 + 32 * ceil(900 / 32) = 929 tokens
    assert batch_positions([100, 5000], 1, 2048) == (1, 2047)  # fitted to max_seq_length


def test_logits_grow_with_the_widest_batch_and_chunking_bounds_them():
    inputs = qwen_7b(batch_size=2)
    assert train_step(inputs).parts["logits"] == CALIBRATION["logits"] * 2 * 2047 * 152064 * 2
    chunked = train_step(replace(inputs, chunked_loss=True, chunk_size=128)).parts["logits"]
    assert chunked == CALIBRATION["chunk_logits"] * 2 * 128 * 152064 * 2
    # A sequence of two chunks holds at most two arrays per chunk.
    two_chunks = train_step(replace(inputs, chunked_loss=True, chunk_size=1024)).parts["logits"]
    assert two_chunks == 4 * 2 * 1024 * 152064 * 2


def qwen_7b_block(kind, rows=2, positions=2047):
    """One block's arrays by hand: intermediate 18944, 28 heads; bf16 activations, float32 gradients."""
    c = CALIBRATION
    arrays = c[f"{kind}_intermediate"] * rows * positions * 18944 + c[f"{kind}_attention"] * rows * 28 * positions**2
    return arrays * (4 if kind == "block" else 2)


def test_without_checkpointing_every_lora_block_keeps_its_activations():
    activations = train_step(qwen_7b(grad_checkpoint=False, num_layers=16)).parts["activations"]
    assert activations == pytest.approx(15 * qwen_7b_block("kept") + qwen_7b_block("block"), rel=1e-12)


def test_checkpointing_keeps_hidden_states_per_lora_block_plus_the_block_in_its_backward_pass():
    activations = train_step(qwen_7b(grad_checkpoint=True, num_layers=16)).parts["activations"]
    kept = 16 * CALIBRATION["checkpoint_hidden"] * 2 * 2047 * 3584 * 2
    assert activations == pytest.approx(kept + qwen_7b_block("block"), rel=1e-12)
    assert activations < train_step(qwen_7b(grad_checkpoint=False, num_layers=16)).parts["activations"] / 2


def test_a_stage_on_a_full_precision_base_plans_quantize_train_fuse_evaluate():
    assert list(plan(qwen_7b(train_bits=4))) == ["quantize", "train", "fuse", "evaluate"]
    assert list(plan(qwen_7b(train_bits=None))) == ["train", "fuse", "evaluate"]


def test_the_table_shows_every_step_against_the_budget():
    table = format_plan(plan(qwen_7b()), MAC_16GB_BUDGET, "test budget")
    assert "budget 10.7 GB (test budget)" in table
    assert table.count("\n") == 5  # title, header, four steps
    evaluate_line = next(line for line in table.splitlines() if line.startswith("evaluate"))
    assert "NO" in evaluate_line  # a 15 GB bf16 model does not fit 10.7 GB
    assert "yes" in next(line for line in table.splitlines() if line.startswith("fuse"))


def test_budget_reads_memavailable_here(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    assert meminfo_available(meminfo) == 20_000_000 * 1024
    assert meminfo_available(tmp_path / "missing") is None
    budget, source = default_budget()
    if Path("/proc/meminfo").exists() and "max_recommended_working_set_size" not in mx.device_info():
        assert source == "MemAvailable in /proc/meminfo" and budget > 0


def test_disk_plan_counts_the_quantized_copy_the_fused_model_and_checkpoints(tmp_path):
    inputs = qwen_7b(iters=1000, save_every=100)
    lora_bytes = 4 * 11_534_336
    assert disk_plan(inputs) == {"quantized copy": 4_284_263_424, "fused model": 2 * 7_615_616_512,
                                 "checkpoints": 10 * 3 * lora_bytes + 3 * lora_bytes}
    assert "fits" in format_disk({"small": 1}, tmp_path)
    assert "does NOT fit" in format_disk({"huge": 10**18}, tmp_path)


def fits_except_train(**settings):
    """7B settings whose fuse and evaluate fit the Mac; the budget is then set just under train's total."""
    inputs = qwen_7b(eval_bits=4, max_shard_bytes=512 << 20, **settings)
    return inputs, plan(inputs)["train"].total - 1


def test_auto_fit_first_turns_on_the_chunked_loss():
    inputs, budget = fits_except_train(chunked_loss=False, grad_checkpoint=False, batch_size=2)
    fitted, changes = auto_fit(inputs, budget)
    assert changes == [Change("chunked_loss", False, True, "same loss, a little slower")]
    assert fitted.chunked_loss and not fitted.grad_checkpoint


def test_auto_fit_then_turns_on_gradient_checkpointing():
    inputs, budget = fits_except_train(chunked_loss=True, grad_checkpoint=False, batch_size=2)
    fitted, changes = auto_fit(inputs, budget)
    assert [c.setting for c in changes] == ["grad_checkpoint"] and fitted.grad_checkpoint


def test_auto_fit_then_halves_the_batch_keeping_the_effective_batch():
    inputs, budget = fits_except_train(chunked_loss=True, grad_checkpoint=True, batch_size=2)
    fitted, changes = auto_fit(inputs, budget)
    assert [c.setting for c in changes] == ["batch_size"]
    assert (fitted.batch_size, fitted.grad_accumulation_steps) == (1, 2)


def test_settings_that_fit_are_left_alone():
    inputs = qwen_7b(eval_bits=4)
    assert auto_fit(inputs, 1000 * GB) == (inputs, [])


def test_a_shorter_max_seq_length_is_offered_only_when_few_examples_are_longer():
    few_long = qwen_7b(lengths=(900,) * 98 + (2048,) * 2)
    offered = [c for c in candidate_changes(few_long) if c.setting == "max_seq_length"]
    assert offered == [Change("max_seq_length", 2048, 1024, "2 of 100 examples lose turns from the end")]
    many_long = qwen_7b(lengths=(900,) * 50 + (2048,) * 50)
    assert not [c for c in candidate_changes(many_long) if c.setting == "max_seq_length"]


def test_no_change_fitting_is_an_error_with_the_budget_and_the_table():
    with pytest.raises(DoesNotFit, match=r"under 1\.0 GB"):
        auto_fit(qwen_7b(), 1 * GB)

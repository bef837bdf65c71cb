"""The worker with loss_chunk_size set trains and evaluates exactly as with the plain loss, and refuses models whose
logits are not their output head's with a message that says what to set."""

import json
import shutil

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten
from mlx_lm.models import granite

from synthia.train import jobs
from synthia.train.loss import trained_positions
from tests.worker_jobs import random_examples, result_of, run_worker, train_job, write_token_file

CHUNK = 16
RTOL = 1e-5


@pytest.fixture(scope="module")
def token_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens")
    return (write_token_file(root / "train.tokens.npz", random_examples(12, 1024, seed=1)),
            write_token_file(root / "valid.tokens.npz", random_examples(5, 1024, seed=2)))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_model_dir, token_files):
    """The same 6-iteration run (dropout on) with the plain loss and with the chunked one."""
    runs = {}
    for name, chunk in {"plain": None, "chunked": CHUNK}.items():
        out = tmp_path_factory.mktemp(name)
        (out / "adapters").mkdir()
        job = train_job(tiny_model_dir, out / "adapters", *token_files, loss_chunk_size=chunk,
                        lora_parameters={"rank": 4, "scale": 10.0, "dropout": 0.1})
        done = run_worker("train", job, out / "train_job.json")
        assert done.returncode == 0, done.stdout + done.stderr
        runs[name] = (result_of(job), mx.load(str(out / "adapters" / "last_adapters.safetensors")))
    return runs


def test_training_with_a_chunked_loss_reports_the_plain_losses(trained):
    plain, chunked = trained["plain"][0], trained["chunked"][0]
    for key, loss in (("train_reports", "train_loss"), ("val_reports", "val_loss")):
        assert [r["iteration"] for r in chunked[key]] == [r["iteration"] for r in plain[key]]
        np.testing.assert_allclose([r[loss] for r in chunked[key]], [r[loss] for r in plain[key]], rtol=RTOL)
    assert plain["val_reports"][-1]["val_loss"] < plain["val_reports"][0]["val_loss"]  # it learned something


def test_training_with_a_chunked_loss_ends_with_the_plain_adapters(trained):
    plain, chunked = trained["plain"][1], trained["chunked"][1]
    assert plain.keys() == chunked.keys() and plain
    for name, weight in plain.items():
        # Adam divides by the gradient's size, so float32 summation-order noise in near-zero gradients moves
        # a weight by up to ~lr; 1e-5 is 1% of one update at lr 1e-3 (measured: at most 7e-6 after 6 updates).
        assert mx.allclose(chunked[name], weight, rtol=0, atol=1e-5).item(), name
    assert any(mx.abs(w).max().item() > 0 for name, w in plain.items() if name.endswith("lora_b"))


def test_evaluation_with_a_chunked_loss_gives_the_plain_losses(tmp_path, tiny_model_dir, token_files):
    results = {}
    for chunk in (None, CHUNK):
        run = {"label": "base", "model": str(tiny_model_dir), "num_batches": {"train": -1, "valid": -1},
               "splits": {"train": token_files[0], "valid": token_files[1]}}
        job = jobs.make_job("evaluate", batch_size=2, max_seq_length=256, loss_chunk_size=chunk,
                            result=str(tmp_path / f"{chunk}.json"), runs=[run])
        done = run_worker("evaluate", job, tmp_path / "eval_job.json")
        assert done.returncode == 0, done.stdout + done.stderr
        results[chunk] = result_of(job)["base"]
    for split in ("train", "valid"):
        assert results[CHUNK][split]["loss"] == pytest.approx(results[None][split]["loss"], rel=RTOL)


def tiny_granite(model_dir, tokenizer_dir):
    """A tiny Granite model: its logits are the head's output divided by logits_scaling."""
    mx.random.seed(0)
    config = {"model_type": "granite", "hidden_size": 64, "num_hidden_layers": 1, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 2, "rms_norm_eps": 1e-6, "vocab_size": 1024,
              "logits_scaling": 4.0, "attention_multiplier": 0.125, "embedding_multiplier": 1.0,
              "residual_multiplier": 1.0, "max_position_embeddings": 512, "attention_bias": False,
              "mlp_bias": False, "rope_theta": 10000.0, "tie_word_embeddings": True}
    model = granite.Model(granite.ModelArgs.from_dict(config))
    model_dir.mkdir()
    mx.save_safetensors(str(model_dir / "model.safetensors"), dict(tree_flatten(model.parameters())))
    (model_dir / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, model_dir / name)
    return model_dir


def test_a_model_that_scales_its_logits_is_refused_with_the_setting_to_change(tmp_path, tiny_model_dir, token_files):
    model_dir = tiny_granite(tmp_path / "granite", tiny_model_dir)
    (tmp_path / "adapters").mkdir()
    job = train_job(model_dir, tmp_path / "adapters", *token_files, loss_chunk_size=CHUNK)
    done = run_worker("train", job, tmp_path / "train_job.json")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "train_job.json" in done.stderr and "loss_chunk_size 16" in done.stderr and "'granite'" in done.stderr
    assert "Fix: set loss_chunk_size to null" in done.stderr


def test_trained_positions_list_the_marked_targets_then_pad_past_the_end():
    mask = np.zeros((2, 6), np.float32)
    mask[0, 2:4] = 1  # targets 1, 2 of row 0
    mask[1, 5] = 1  # target 4 of row 1: flat index 5 + 4
    assert trained_positions(mask, 4).tolist() == [1, 2, 9, 10]
    assert trained_positions(mask, 2).tolist() == [1, 2, 9, 10]
    assert trained_positions(np.zeros((1, 6), np.float32), 4).tolist() == [5, 5, 5, 5]

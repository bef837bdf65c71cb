"""train_mlx.py end to end on the tiny model: config, CLI, dry run, the three chained stages, failures."""

import json
import math
import sys

import mlx.core as mx
import numpy as np
import pytest
from mlx_lm.utils import load, load_tokenizer

import train_mlx
from synthia.data import render, token_files
from synthia.pipeline import steps
from synthia.platform import blas
from synthia.scorecard import bfcl, bfcl_judge
from synthia.train.batches import evaluation_batches, load_token_file
from synthia.train.loss import summed_loss
from synthia.data.validate import load_default_tools
from tests.sample_data import write_dataset

TEST_CONFIG = """\
train_bits: null        # the tiny model trains as it is
grad_checkpoint: false
num_layers: -1
steps_per_report: 1
steps_per_eval: 2
lora_parameters: {rank: 4, scale: 10.0, dropout: 0.0}
valid_fraction: 0.2     # 8 examples a category: enough held out in each stage
test_fraction: 0.2
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    (root / "test.yaml").write_text(TEST_CONFIG)
    write_dataset(root / "data.jsonl")
    return root


def cli(workspace, tiny_model_dir, *extra, output="models"):
    return ["--base-model", str(tiny_model_dir), "--dataset", str(workspace / "data.jsonl"),
            "--config", str(workspace / "test.yaml"), "--output-dir", str(workspace / output), *extra]


@pytest.fixture(scope="module")
def full_run(workspace, tiny_model_dir):
    """One real `--stage all --iters 3 --test` run, shared by the tests that inspect its outputs."""
    code = train_mlx.main(cli(workspace, tiny_model_dir, "--stage", "all", "--iters", "3", "--test"))
    assert code == 0
    return workspace / "models"


def run_record(models, number):
    return json.loads((models / f"stage{number}" / "run.json").read_text())


# --- configuration ---------------------------------------------------------------------------------------
def test_a_missing_chat_template_file_is_a_clear_error(workspace, tiny_model_dir, capsys):
    args = cli(workspace, tiny_model_dir, "--dry-run", "--chat-template", str(workspace / "nope.jinja"))
    assert train_mlx.main(args) == 2
    assert "nope.jinja: cannot read it (No such file or directory)" in capsys.readouterr().err


def test_a_config_path_that_does_not_exist_names_the_flag_and_the_fix(workspace, tiny_model_dir, capsys, monkeypatch):
    monkeypatch.chdir(workspace)
    args = cli(workspace, tiny_model_dir, "--dry-run")
    args[args.index("--config") + 1] = "confg.yaml"  # a typo, relative to the working directory
    assert train_mlx.main(args) == 2
    assert capsys.readouterr().err == (f"error: --config confg.yaml: no such file (relative to {workspace}). Fix: "
                                       "pass the YAML file that overrides SETTINGS and STAGES, or drop --config to "
                                       "train with train_mlx.py's own\n")


@pytest.mark.parametrize("budget", ["-1", "0", "nan"])
def test_a_memory_budget_that_is_not_a_positive_number_is_an_input_error(workspace, tiny_model_dir, capsys, budget):
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--dry-run", "--memory-budget", budget, output="budget")) == 2
    assert capsys.readouterr().err == (f"error: --memory-budget {float(budget):g}: the memory a step may use, in GB, "
                                       "must be a positive number. Fix: e.g. --memory-budget 12, or leave it out to "
                                       "use the machine's own\n")
    assert not (workspace / "budget").exists()


def test_help_explains_every_flag(capsys):
    with pytest.raises(SystemExit):
        train_mlx.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--stage", "--base-model", "--dataset", "--output-dir", "--iters", "--test", "--dry-run",
                 "--force", "--chat-template", "--preview", "--strict", "--config"):
        assert flag in text


# --- dry run, preview, bad input ---------------------------------------------------------------------------
def test_dry_run_prints_the_plan_and_trains_nothing(workspace, tiny_model_dir, capsys):
    code = train_mlx.main(cli(workspace, tiny_model_dir, "--dry-run", output="dry"))
    out = capsys.readouterr().out
    assert code == 0
    assert "would run train:" in out and "synthia.train.worker train" in out and "synthia.train.fuse fuse" in out
    assert "[stage 3] data: train" in out and "dry run: nothing was trained" in out
    assert f"--model {workspace / 'dry' / 'synthia-stage2'} --adapter-path {workspace / 'dry' / 'stage3'}" in out
    models = workspace / "dry"
    assert not list(models.rglob("*.safetensors")) and not list(models.glob("synthia-stage*"))
    assert (models / "stage1" / "data" / "train.tokens.npz").exists()


def test_preview_json_round_trips_to_the_rendered_conversation(workspace, tiny_model_dir, capsys):
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--preview", "3", "--json")) == 0
    shown = json.loads(capsys.readouterr().out)
    record = json.loads((workspace / "data.jsonl").read_text().splitlines()[2])
    tokenizer = load_tokenizer(tiny_model_dir)
    assert "".join(s["text"] for s in shown["segments"]) == render.render(tokenizer, record["messages"],
                                                                          load_default_tools())
    encoded = render.encode(tokenizer, record["messages"], load_default_tools())
    assert (shown["tokens"], shown["trained_tokens"]) == (len(encoded.tokens), encoded.trained_tokens)
    assert [s["text"] for s in shown["segments"] if s["trained"]][-1].endswith("<|im_end|>")


def test_preview_marks_trained_text_with_brackets_off_a_terminal(workspace, tiny_model_dir, capsys):
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--preview", "1")) == 0
    out = capsys.readouterr().out
    assert '[[<tool_call>\n{"name": "read"' in out and "trained" in out


def test_invalid_dataset_stops_before_training_with_file_and_line(workspace, tiny_model_dir, capsys):
    bad = workspace / "bad.jsonl"
    lines = (workspace / "data.jsonl").read_text().splitlines()
    lines[4] = lines[4].replace('"role": "tool"', '"role": "robot"', 1)
    bad.write_text("\n".join(lines) + "\n")
    args = cli(workspace, tiny_model_dir, output="bad") + ["--dataset", str(bad)]
    assert train_mlx.main(args) == 2
    err = capsys.readouterr().err
    assert f"{bad}:5: messages[3]" in err and "unknown role 'robot'" in err and "Traceback" not in err
    assert not (workspace / "bad").exists()


def test_a_template_that_drops_tools_stops_with_the_fix(workspace, tiny_model_dir, capsys):
    template = workspace / "plain.jinja"
    template.write_text("{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}")
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--dry-run", "--chat-template", str(template))) == 2
    err = capsys.readouterr().err
    assert "drops tool definitions" in err and "--chat-template" in err


def test_unreachable_hub_model_fails_with_a_clear_message(workspace, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    args = ["--base-model", "nobody/not-a-model", "--dataset", str(workspace / "data.jsonl"),
            "--output-dir", str(workspace / "offline"), "--dry-run"]
    assert train_mlx.main(args) == 1
    err = capsys.readouterr().err
    assert "cannot get the model 'nobody/not-a-model'" in err and "--base-model PATH" in err


def test_stage_two_alone_needs_stage_one(workspace, tiny_model_dir, capsys):
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--stage", "2", output="empty")) == 2
    err = capsys.readouterr().err
    assert "synthia-stage1, which is missing or unfinished" in err
    assert f"--output-dir {workspace / 'empty'} --stage 1)" in err  # the user's own flags, stage 1


# --- the worker's batches and loss -----------------------------------------------------------------------
def test_batches_carry_exactly_the_render_mask(tmp_path, tiny_model_dir):
    tokenizer = load_tokenizer(tiny_model_dir)
    records = [json.loads(line) for line in write_dataset(tmp_path / "d.jsonl", 2).read_text().splitlines()]
    records[0]["messages"][5]["weight"] = 0  # in context, not trained
    encoded = [render.encode(tokenizer, r["messages"], load_default_tools()) for r in records[:3]]
    assert encoded[0].untrained_turns == 1
    path = token_files.write(tmp_path / "t.tokens.npz", [(k, e.tokens, e.spans) for k, e in enumerate(encoded)])
    dataset = load_token_file(path)
    batches = list(evaluation_batches(dataset, 2, 4096))
    assert len(batches) == 2  # the short last batch is evaluated too
    from_batches = []
    for tokens, mask in batches:
        for row in range(tokens.shape[0]):
            trained = np.array(tokens[row])[np.array(mask[row]) > 0].tolist()
            from_batches += [trained] if trained else []
    from_render = [[t for start, end in e.spans for t in e.tokens[start:end]] for e in encoded]
    assert sorted(from_batches) == sorted(from_render)
    (start, end), = encoded[0].untrained_spans
    first = encoded[0].tokens
    rows = [(np.array(t[r]), np.array(m[r])) for t, m in batches for r in range(t.shape[0])]
    tokens, mask = next((t, m) for t, m in rows if t[: len(first)].tolist() == first)
    assert mask[start:end].sum() == 0 and mask.sum() == encoded[0].trained_tokens  # the weight-0 turn: no loss


def test_masked_loss_is_cross_entropy_over_trained_targets_only(tiny_model_dir):
    model, _ = load(str(tiny_model_dir))
    tokens = mx.array([[5, 9, 13, 17, 21, 25]])
    mask = mx.array([[0, 0, 1, 1, 0, 1]], dtype=mx.float32)
    ce_sum, ntoks = summed_loss(model, tokens, mask)
    logits = model(tokens[:, :-1])
    log_probs = logits - mx.logsumexp(logits, axis=-1, keepdims=True)
    picked = [-log_probs[0, j - 1, tokens[0, j].item()].item() for j in (2, 3, 5)]
    assert ntoks.item() == 3
    assert ce_sum.item() == pytest.approx(sum(picked), rel=1e-5)


def test_a_failed_step_names_stage_command_tail_and_fix(tmp_path):
    command = [sys.executable, "-c", "print('loading'); raise MemoryError('failed to allocate')"]
    with pytest.raises(steps.StepFailed) as failure:
        steps.run_step(2, "train", command, None, tmp_path / "log", "python train_mlx.py --stage 2")
    text = str(failure.value)
    assert "stage 2: step 'train' failed" in text and "MemoryError" in text and "loading" in text
    assert "batch_size" in text and "grad_checkpoint" in text and "max_seq_length" in text


# --- the real three-stage run ----------------------------------------------------------------------------
def test_full_run_produces_every_output(full_run):
    for number in (1, 2, 3):
        stage = full_run / f"stage{number}"
        for name in ("adapters.safetensors", "adapter_config.json", "run.json"):
            assert (stage / name).exists(), f"stage{number}/{name}"
        fused = full_run / f"synthia-stage{number}"
        assert (fused / "config.json").exists() and list(fused.glob("*.safetensors"))
        assert not (full_run / f"synthia-stage{number}.partial").exists()


def test_each_stage_starts_from_the_previous_fused_model(full_run, tiny_model_dir):
    assert run_record(full_run, 1)["base_model"] == str(tiny_model_dir)
    assert run_record(full_run, 2)["base_model"] == str(full_run / "synthia-stage1")
    assert run_record(full_run, 3)["base_model"] == str(full_run / "synthia-stage2")


def test_run_json_records_config_data_commands_and_losses(full_run):
    record = run_record(full_run, 2)
    assert record["config"]["iters"] == 3 and record["config"]["categories"] == train_mlx.STAGES[2]["categories"]
    assert set(record["data"]["train"]["categories"]) == {"tool_use", "tdd", "debugging", "planning"}
    assert record["data"]["train"]["trained_tokens"] > 0
    assert "synthia.train.worker train" in record["commands"]["train"]
    assert "synthia.train.fuse fuse" in record["commands"]["fuse"]
    assert set(record["timings"]) == {"train", "fuse", "evaluate"}
    assert math.isfinite(record["train"]["final_train_loss"]) and math.isfinite(record["train"]["final_valid_loss"])
    assert record["test"]["perplexity"] == pytest.approx(math.exp(record["test"]["loss"]))


def test_splits_are_stable_across_stages(full_run):
    def lines(number, split):
        return {line for line, _, _ in token_files.read(full_run / f"stage{number}" / "data" / f"{split}.tokens.npz")}

    for split in ("train", "valid", "test"):
        assert lines(1, split) <= lines(2, split) <= lines(3, split)
    assert not lines(3, "train") & lines(3, "test")


def test_fused_model_keeps_what_training_gained(full_run):
    for number in (1, 2, 3):
        check = run_record(full_run, number)["fuse_check"]
        assert check["relative_difference"] < 0.01, check


def test_dry_run_leaves_a_finished_stage_untouched(full_run, workspace, tiny_model_dir, tmp_path):
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(workspace.joinpath("data.jsonl").read_text().splitlines(True)[1:]))  # a tool_use line less
    data_dir = full_run / "stage1" / "data"
    before = {f.name: f.read_bytes() for f in data_dir.iterdir()}
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--dry-run") + ["--dataset", str(changed)]) == 0
    assert {f.name: f.read_bytes() for f in data_dir.iterdir()} == before


def test_rerun_skips_finished_stages_and_changed_inputs_need_force(full_run, workspace, tiny_model_dir, capsys):
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--stage", "all", "--iters", "3", "--test")) == 0
    assert capsys.readouterr().out.count("with the same inputs") == 3
    before = (full_run / "synthia-stage1" / "model.safetensors").stat().st_mtime_ns
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--stage", "1", "--iters", "4")) == 2
    assert "Re-run with --force" in capsys.readouterr().err
    assert (full_run / "synthia-stage1" / "model.safetensors").stat().st_mtime_ns == before


def test_bench_bfcl_scores_base_and_every_stage_on_the_same_entries(full_run, workspace, tiny_model_dir, capsys):
    """--test --bench bfcl after the stages: BFCL's entries for each model (the splits' scores are reused)."""
    args = cli(workspace, tiny_model_dir, "--stage", "all", "--iters", "3", "--test", "--bench", "bfcl",
               "--bench-limit", "2")
    assert train_mlx.main(args) == 0
    card = (full_run / "scorecard.md").read_text()
    section = card[card.index("## BFCL"):card.index("## Possible regressions")]
    header = next(line for line in section.splitlines() if line.startswith("| category"))
    assert [c.strip() for c in header.strip("|").split("|")] == ["category", "base", "stage 1", "stage 2", "stage 3"]
    assert (full_run / "bfcl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    entries = {e.id: e for name in bfcl.CATEGORIES for e in bfcl.select_entries(bfcl.load_category(name), 2)}
    for where in ("base-eval", "stage1", "stage2", "stage3"):
        result = json.loads((full_run / where / "bfcl.json").read_text())
        assert [r["id"] for r in result["entries"]] == list(entries)
        for record in result["entries"]:  # the stored verdict is BFCL's verdict on the stored calls
            assert record["passed"] == bfcl_judge.judge(record["calls"], entries[record["id"]]).passed
    capsys.readouterr()
    assert train_mlx.main(args) == 0
    assert capsys.readouterr().out.count("already holds these scores; skipping") == 4


def test_export_with_test_scores_each_gguf_file_of_the_final_stage_in_llama_cpp(full_run, workspace, tiny_model_dir):
    pytest.importorskip("llama_cpp", reason="pip install llama-cpp-python==0.3.36 (scripts/setup.sh --dev)")
    args = cli(workspace, tiny_model_dir, "--stage", "all", "--iters", "3", "--test", "--export", "gguf")
    assert train_mlx.main(args) == 0
    card = (full_run / "scorecard.md").read_text()
    header = next(line for line in card.splitlines() if line.startswith("| metric"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == [
        "base", "stage 1", "stage 2", "stage 3", "GGUF f16", "GGUF q8_0", "GGUF q4_k_m"]
    assert "## The GGUF files against the MLX model" in card
    mlx = json.loads((full_run / "stage3" / "eval.json").read_text())
    for out_type in ("f16", "q8_0", "q4_k_m"):
        scored = json.loads((full_run / "gguf-eval" / out_type / "eval.json").read_text())
        assert sorted(scored) == sorted(mlx)  # the final stage's splits, the same turns
        for split in mlx:
            assert [(t["line"], t["message"]) for t in scored[split]["turns"]] == \
                [(t["line"], t["message"]) for t in mlx[split]["turns"]]


def test_evaluate_scores_a_gguf_file_in_llama_cpp(full_run, workspace, tmp_path, capsys):
    pytest.importorskip("llama_cpp", reason="pip install llama-cpp-python==0.3.36 (scripts/setup.sh --dev)")
    gguf = full_run / "gguf" / "synthia-stage3-f16.gguf"
    assert gguf.is_file(), "made by the --export gguf --test test before this one"
    held_out = tmp_path / "mine.jsonl"
    held_out.write_text("".join((workspace / "data.jsonl").read_text().splitlines(True)[:2]))
    args = ["--evaluate", str(gguf), "--eval-data", str(held_out), "--output-dir", str(tmp_path / "out")]
    assert train_mlx.main(args) == 0
    out = tmp_path / "out" / "evaluate" / "synthia-stage3-f16"
    scores = json.loads((out / "eval.json").read_text())
    assert scores["eval-data"]["counts"]["conversations"] == 2 and scores["eval-data"]["turns"]
    assert (out / "scorecard.md").exists() and not (out / "samples.md").exists()
    missing = ["--evaluate", str(tmp_path / "nope.gguf"), "--output-dir", str(tmp_path / "out")]
    assert train_mlx.main(missing) == 2
    assert "nope.gguf: no such file" in capsys.readouterr().err


def test_training_child_runs_on_the_system_blas_unless_opted_out(full_run, workspace, tiny_model_dir):
    """What the training child had mapped (its own /proc/<pid>/maps), recorded in run.json."""
    system = blas.find_system_blas()
    if system is None or blas.mlx_backend(blas.inspect_mlx_install()) != "cpu":
        pytest.skip("no system OpenBLAS on this Linux CPU (apt-get install libopenblas0-pthread)")
    system = str(system.resolve())
    mapped = run_record(full_run, 1)["train"]["blas_libraries"]
    assert system in mapped
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--stage", "1", "--iters", "1", "--blas", "bundled",
                              output="bundled")) == 0
    mapped = run_record(workspace / "bundled", 1)["train"]["blas_libraries"]
    assert system not in mapped
    assert any("mlx_cpu.libs/libblas" in path for path in mapped)


def test_force_redoes_a_changed_stage_and_the_next_stage_sees_its_new_base(full_run, workspace, tiny_model_dir,
                                                                            capsys):
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--stage", "1", "--iters", "4", "--force")) == 0
    assert "--force: redoing it" in capsys.readouterr().out
    assert run_record(full_run, 1)["config"]["iters"] == 4
    assert train_mlx.main(cli(workspace, tiny_model_dir, "--stage", "2", "--iters", "3")) == 2
    assert "stage 2 finished earlier with different inputs" in capsys.readouterr().err


def test_test_writes_a_scorecard_with_base_and_every_stage(full_run):
    card = (full_run / "scorecard.md").read_text()
    header = next(line for line in card.splitlines() if line.startswith("| ") and "base" in line)
    # (the GGUF files' columns follow when a test before this one exported them)
    assert [c.strip() for c in header.strip("|").split("|")][1:5] == ["base", "stage 1", "stage 2", "stage 3"]
    assert (full_run / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for number in (1, 2, 3):
        scores = json.loads((full_run / f"stage{number}" / "eval.json").read_text())
        assert sorted(scores) == [f"stage{k} test" for k in range(1, number + 1)]  # the forgetting check
        assert scores[f"stage{number} test"]["counts"]["turns_scored"] > 0
        # Sample answers (slow to generate) for the final model only.
        assert (full_run / f"stage{number}" / "samples.md").exists() == (number == 3)
    base = json.loads((full_run / "base-eval" / "eval.json").read_text())
    assert sorted(base) == ["stage1 test", "stage2 test", "stage3 test"]


def test_evaluate_scores_a_model_and_trains_nothing(full_run, workspace, tmp_path, capsys):
    held_out = tmp_path / "mine.jsonl"
    held_out.write_text("".join((workspace / "data.jsonl").read_text().splitlines(True)[:3]))
    args = ["--evaluate", str(full_run / "synthia-stage3"), "--eval-data", str(held_out), "--output-dir",
            str(tmp_path / "out")]
    assert train_mlx.main(args) == 0
    scores = json.loads((tmp_path / "out" / "evaluate" / "synthia-stage3" / "eval.json").read_text())
    assert scores["eval-data"]["counts"]["conversations"] == 3 and scores["eval-data"]["turns"]
    assert not list((tmp_path / "out").rglob("*adapters.safetensors"))

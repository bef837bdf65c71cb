"""Splits that never leak, and held-out splits checked before anything trains."""

import json

import train_mlx
from synthia.data import stage_data, validate
from tests.sample_data import records, write_dataset


def examples_of(recs):
    return validate.validate_lines([json.dumps(r) for r in recs], "data.jsonl").examples


def split_by_content(recs, seed=42):
    assignment = stage_data.split_of_examples(examples_of(recs), seed, 0.1, 0.1)
    return {ex.fingerprint: assignment[ex.line] for ex in examples_of(recs)}


def test_appending_examples_moves_no_existing_example_to_another_split():
    before = split_by_content(records(per_category=8))
    extra = [r for r in records(per_category=16) if r not in records(per_category=8)][:50]
    assert len(extra) == 50
    after = split_by_content(records(per_category=8) + extra)
    assert {fp: after[fp] for fp in before} == before


def test_removing_examples_moves_no_remaining_example():
    full = split_by_content(records(per_category=8))
    fewer = split_by_content(records(per_category=8)[10:])
    assert all(full[fp] == split for fp, split in fewer.items())


def test_split_shares_follow_the_fractions():
    splits = list(split_by_content(records(per_category=100)).values())
    assert 0.07 < splits.count("test") / len(splits) < 0.13
    assert 0.07 < splits.count("valid") / len(splits) < 0.13


def test_the_seed_changes_the_split():
    assert split_by_content(records(per_category=8), seed=1) != split_by_content(records(per_category=8), seed=2)


def test_an_empty_valid_split_is_an_error_before_training(tmp_path, tiny_model_dir, capsys):
    write_dataset(tmp_path / "d.jsonl")
    (tmp_path / "c.yaml").write_text("num_layers: -1\ntrain_bits: null\nvalid_fraction: 0.0\n")
    code = train_mlx.main(["--base-model", str(tiny_model_dir), "--dataset", str(tmp_path / "d.jsonl"), "--config",
                           str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "m"), "--stage", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert "stage 1: the valid split is empty (train " in err and "valid 0" in err
    assert "raise valid_fraction/test_fraction (now 0.0/0.1)" in err
    assert not (tmp_path / "m" / "stage1" / "train_result.json").exists()


def test_an_empty_test_split_with_test_is_an_error_before_training(tmp_path, tiny_model_dir, capsys):
    write_dataset(tmp_path / "d.jsonl", per_category=12, categories=["tool_use"])
    (tmp_path / "c.yaml").write_text("num_layers: -1\ntrain_bits: null\ntest_fraction: 0.0\nvalid_fraction: 0.4\n")
    code = train_mlx.main(["--base-model", str(tiny_model_dir), "--dataset", str(tmp_path / "d.jsonl"), "--config",
                           str(tmp_path / "c.yaml"), "--output-dir", str(tmp_path / "m"), "--stage", "1", "--test"])
    assert code == 2
    assert "the test split is empty" in capsys.readouterr().err


def test_split_files_hold_each_record_as_written_and_normalised_ones_re_encoded(tmp_path):
    """A line the validator left alone is written byte for byte (key order, spacing, escapes kept); a line whose
    tool-call arguments were an object is written with them as a JSON string, as it trained."""
    from synthia.data import render

    plain, normalised = records(per_category=1, categories=["tool_use", "tdd"])
    as_object = json.loads(json.dumps(normalised))
    for message in as_object["messages"]:
        for call in message.get("tool_calls") or []:
            call["function"]["arguments"] = json.loads(call["function"]["arguments"])
    lines = [json.dumps(plain, indent=None, separators=(",", ":"), ensure_ascii=True), json.dumps(as_object)]
    examples = validate.validate_lines(lines, "data.jsonl").examples
    encoded = render.Encoded(tokens=[1, 2, 3], spans=[(1, 3)])
    written = stage_data.write_split(tmp_path, "train", [(ex, encoded) for ex in examples]).with_name("train.jsonl")
    first, second = written.read_text().splitlines()
    assert first == lines[0]
    assert json.loads(second) == examples[1].record and second != lines[1]
    assert all(isinstance(c["function"]["arguments"], str)
               for m in json.loads(second)["messages"] for c in m.get("tool_calls") or [])

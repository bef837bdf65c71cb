"""The typed configuration: YAML as users write it, every bad value an error before anything runs."""

import re

import pytest

import train_mlx
from synthia import config
from synthia.pipeline import resolve
from tests.sample_data import write_dataset


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("config")
    write_dataset(root / "data.jsonl")
    return root


TINY = "num_layers: -1\ntrain_bits: null\n"  # the tiny model has 2 layers


def with_tiny(yaml_text):
    """TINY's settings and then yaml_text, without the TINY lines whose key yaml_text sets (a repeated key is an
    error)."""
    own = {line.split(":")[0] for line in yaml_text.splitlines() if line[:1].isalpha()}
    return "".join(f"{line}\n" for line in TINY.splitlines() if line.split(":")[0] not in own) + yaml_text


def dry_run(workspace, tiny_model_dir, yaml_text=TINY, *flags):
    (workspace / "c.yaml").write_text(yaml_text)
    args = ["--base-model", str(tiny_model_dir), "--dataset", str(workspace / "data.jsonl"), "--dry-run",
            "--output-dir", str(workspace / "models"), "--config", str(workspace / "c.yaml"), *flags]
    return train_mlx.main(args)


def test_yaml_reads_exponent_floats_as_numbers():
    assert config.parse_yaml("learning_rate: 1e-5\nlr_min: 1e-6\nx: 3E+2\ny: 2.0\nn: 7") == {
        "learning_rate": 1e-5, "lr_min": 1e-6, "x": 300.0, "y": 2.0, "n": 7}


def test_exponent_learning_rates_in_a_config_file_plan_a_run(workspace, tiny_model_dir, capsys):
    assert dry_run(workspace, tiny_model_dir, TINY + "learning_rate: 1e-5\nlr_min: 1e-6\n") == 0
    out = capsys.readouterr().out
    assert "config file sets learning_rate=1e-05" in out and "cosine to 1e-06" in out


@pytest.mark.parametrize("yaml_text, message", [
    ("steps_per_report: 0\n", "steps_per_report=0 should be at least 1"),
    ("early_stop_patience: 0\n", "early_stop_patience=0 should be at least 1"),
    ("num_layers: 0\n", r"num_layers=0 cannot be 0 \(use -1 for all, or at least 1\)"),
    ("num_layers: -5\n", "num_layers=-5 should be at least -1"),
    ("num_layers: 3\n", "num_layers=3 but .* has 2 layers; use at most 2, or -1 for all"),
    ("lora_parameters: {rank: 0, scale: 20.0, dropout: 0.0}\n", r"lora_parameters.rank=0 should be at least 1"),
    ("lora_parameters: {rank: 8, alpha: 16}\n", r"lora_parameters: unknown key\(s\) alpha; known: .*rank"),
    ("warmup: soon\n", "warmup='soon' should be of type int"),
    ("lr_min: -1e-6\n", "lr_min=-1e-06 should be at least 0.0"),
    ("learning_rate: 0\n", "learning_rate=0 should be above 0"),
    ("val_batches: 0\n", "val_batches=0 cannot be 0"),
    ("keep: worst\n", "keep='worst' choose one of 'best', 'last'"),
    ("grad_checkpoint: yes please\n", "grad_checkpoint='yes please' should be of type bool"),
    ("batch_size: two\n", "batch_size='two' should be of type int"),
    ("categories: [tool_use, poetry]\n", "categories=.* should be null .* or a list of: tool_use"),
    ("valid_fraction: 0.5\ntest_fraction: 0.5\n", "valid_fraction \\+ test_fraction = 1.0 leaves nothing"),
    ("grad_accumulation_steps: 3\nsave_every: 100\n", "save_every=100 must be a multiple of grad_accumulation_steps=3"),
    ("- batch_size: 2\n", "the config must be a mapping of key: value lines, got a list"),
    ("just a string\n", "the config must be a mapping of key: value lines, got a str"),
    ("batch_sise: 4\n", r"unknown key\(s\) batch_sise; known: .*batch_size"),
    ("stages:\n  4: {iters: 1}\n", r"stages.4: no such stage \(known: 1, 2, 3\)"),
    ("stages:\n  2: {seed: 7}\n", "stages.2: seed apply to every stage .* set them at the top level"),
    ("stages:\n  2: {valid_fraction: 0.2}\n", "stages.2: valid_fraction apply to every stage"),
    ("batch_size: [1\n", "not valid YAML"),
])
def test_each_config_defect_is_an_error_before_anything_runs(workspace, tiny_model_dir, capsys, yaml_text, message):
    mapping = not yaml_text.startswith(("-", "just"))
    assert dry_run(workspace, tiny_model_dir, with_tiny(yaml_text) if mapping else yaml_text) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("error: ") and re.search(message, err), err


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "-1"], "batch_size=-1 should be at least 1"),
    (["--iters", "0"], "iters=0 should be at least 1"),
    (["--learning-rate", "-0.1"], "learning_rate=-0.1 should be above 0|should be at least 0"),
])
def test_bad_flags_are_errors_naming_the_key(workspace, tiny_model_dir, capsys, flags, message):
    assert dry_run(workspace, tiny_model_dir, TINY, *flags) == 2
    assert re.search(message, capsys.readouterr().err)


def resolved(*flags, stages=(1, 2, 3)):
    """The stages' configs as a run resolves them, from these command-line flags."""
    return train_mlx.resolve_configs(train_mlx.build_parser().parse_args(list(flags)), list(stages))


def test_config_file_overrides_defaults_and_flags_override_both(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("batch_size: 4\nstages:\n  2: {iters: 7, learning_rate: 3.0e-5}\n")
    values = resolved("--config", str(tmp_path / "c.yaml"), "--iters", "5", stages=[2])[2]
    assert (values["batch_size"], values["iters"], values["learning_rate"]) == (4, 5, 3.0e-5)
    assert values["categories"] == train_mlx.STAGES[2]["categories"]
    notes = capsys.readouterr().out
    assert "command line sets iters=5 (was 7 from config file stages.2)" in notes
    assert "config file sets batch_size=4 (was 2 from defaults)" in notes
    assert resolved("--config", str(tmp_path / "c.yaml"))[1]["iters"] == train_mlx.STAGES[1]["iters"]


def test_every_declared_default_passes_its_own_check():
    for number, values in resolved().items():  # resolve_configs checks each stage
        resolve.check_stage_config(values, number, train_mlx.SETTINGS)


def test_logging_only_keys_stay_out_of_the_fingerprint():
    values = resolved()[1]
    view = config.fingerprint_view(values, train_mlx.SETTINGS)
    assert "steps_per_report" not in view and "save_every" not in view and "report_to" not in view
    assert view["learning_rate"] == values["learning_rate"] and "steps_per_eval" in view


def test_an_error_between_keys_names_the_file_and_flags_that_set_them(workspace, tiny_model_dir, capsys):
    assert dry_run(workspace, tiny_model_dir, TINY + "stages:\n  2: {grad_accumulation_steps: 3}\n",
                   "--stage", "2") == 2
    err = capsys.readouterr().err
    assert "save_every=100 must be a multiple of grad_accumulation_steps=3" in err
    assert f"the config file {workspace / 'c.yaml'} stages.2 sets grad_accumulation_steps=3 (was 1 from" in err
    assert "Traceback" not in err


def load(tmp_path, text):
    (tmp_path / "c.yaml").write_text(text)
    return config.load_yaml_file(tmp_path / "c.yaml", train_mlx.SETTINGS, (), sorted(train_mlx.STAGES))


@pytest.mark.parametrize("text, line, column, key, first", [
    ("batch_size: 4\niters: 9\nbatch_size: 8\n", 3, 1, "batch_size", 1),
    ("stages:\n  2:\n    iters: 4\n    seed: 1\n    iters: 5\n", 5, 5, "iters", 3),
    ("lora_parameters: {rank: 8, scale: 20.0, rank: 16, dropout: 0.0}\n", 1, 41, "rank", 1),
])
def test_a_key_given_twice_is_an_error_naming_the_file_both_lines_and_the_key(tmp_path, text, line, column, key,
                                                                              first):
    """The first value would be lost without a word (PyYAML keeps the last): an error, before anything runs."""
    with pytest.raises(config.ConfigError) as refused:
        load(tmp_path, text)
    assert str(refused.value) == (f"{tmp_path / 'c.yaml'}:{line}:{column}: not valid YAML: key {key} is given twice "
                                  f"(first on line {first}): the first value would be lost without a word; delete "
                                  "one of the two")


def test_keys_a_merge_brings_in_may_still_be_overridden(tmp_path):
    text = "stages:\n  2: &base {iters: 4, batch_size: 2}\n  3:\n    <<: *base\n    iters: 6\n"
    assert load(tmp_path, text)["stages"] == {2: {"iters": 4, "batch_size": 2}, 3: {"iters": 6, "batch_size": 2}}


def test_a_key_given_twice_stops_the_cli_with_exit_status_2(workspace, tiny_model_dir, capsys):
    assert dry_run(workspace, tiny_model_dir, TINY + "batch_size: 4\nbatch_size: 8\n") == 2
    err = capsys.readouterr().err
    assert err == (f"error: {workspace / 'c.yaml'}:4:1: not valid YAML: key batch_size is given twice (first on line "
                   "3): the first value would be lost without a word; delete one of the two\n")

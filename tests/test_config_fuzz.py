"""Fuzzing the YAML config loader: whatever a --config file holds (random mappings of known and unknown keys,
wrong types, nested stages, huge numbers, NaN, inf, `1e-5`, anchors and aliases, deep nesting, repeated keys,
tags, bytes that are not UTF-8), it either loads into a config whose every stage passes the checks, or stops with
a ConfigError that names the file and the key. Never another exception; through the CLI, exit 2 and no traceback.
A key given twice keeps its last value: YAML's rule, accepted and documented in load_yaml_file."""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

import train_mlx
from synthia import config
from synthia.pipeline import resolve
from synthia.pipeline.run import PipelineError
from tests.sample_data import write_dataset

ROOT = Path(__file__).resolve().parents[1]
FUZZ = settings(max_examples=200, deadline=None, database=None)  # no .hypothesis/ in the repository

KNOWN = sorted(train_mlx.SETTINGS)
keys = st.one_of(st.sampled_from(KNOWN), st.sampled_from(["stages", "lora_parameters", "rank", "alpha"]),
                 st.text(max_size=8), st.integers(-2, 5), st.booleans(), st.none())
surrogates = st.integers(0xD800, 0xDFFF).map(chr)
texts = st.one_of(st.text(max_size=10), st.sampled_from(["1e-5", "1E5", ".inf", "-.inf", ".nan", "yes", "off", "~",
                                                         "0x10", "1:30", "2026-12-02", "tool_use", "best", "a\0b"]),
                  st.lists(st.text(max_size=3) | surrogates, max_size=3).map("".join))
scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(-10**40, 10**40),
                    st.floats(), st.sampled_from([1e-5, 2**31, 2**31 - 1, -2**31, 10**400, 0.5, 0.99]), texts)
lora = st.fixed_dictionaries({}, optional={"rank": scalars, "scale": scalars, "dropout": scalars,
                                           "keys": st.lists(texts | scalars, max_size=3) | scalars, "alpha": scalars})
values = st.recursive(scalars | lora, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(keys, inner, max_size=3), max_leaves=10)
stage_numbers = st.one_of(st.sampled_from([1, 2, 3, 4, 0, -1, "2", "x", 1.5, True, None]))
settings_map = st.dictionaries(keys, values, max_size=6)
# Known keys with values near the valid ones, so that many documents get past the loader to the checks.
plausible = st.one_of(st.integers(-2, 3000), st.floats(0, 1), st.none(), st.booleans(),
                      st.sampled_from([2, 4, 8, "best", "last", "lora", "dora", "adamw", "wandb", 1e-5, 2e-4]),
                      st.lists(st.sampled_from(["tool_use", "tdd", "debugging", "planning", "poetry"]), max_size=3),
                      st.just({"rank": 4, "scale": 10.0, "dropout": 0.0}))
near_valid = st.dictionaries(st.sampled_from(KNOWN), plausible, max_size=6)
stages = st.dictionaries(stage_numbers, settings_map | values, max_size=3) | values


@st.composite
def documents(draw):
    """A mapping dumped as YAML, optionally with hand-made YAML (anchors, repeated keys, tags, deep nesting) around."""
    mapping = draw(settings_map | near_valid)
    if draw(st.booleans()):
        mapping["stages"] = draw(stages | st.dictionaries(stage_numbers, near_valid, max_size=3))
    text = yaml.safe_dump(mapping, allow_unicode=draw(st.booleans()), default_flow_style=draw(st.booleans()))
    extras = draw(st.lists(st.sampled_from(RAW_FRAGMENTS), max_size=3))
    return "".join(extras[:1]) + text + "".join(extras[1:])


ALIAS_CHAIN = "a0: &a0 [1]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 300)) + "keys: *a299\n"
RAW_FRAGMENTS = [
    "batch_size: 4\nbatch_size: x\n",  # a repeated key: refused, naming both lines
    "base: &b {iters: 3}\n", "categories: &c [tool_use, *c]\n", "lora_parameters: &l {rank: *l}\n",
    "stages: {1: &s {iters: 5}, 2: *s}\n", "iters: *undefined\n", "x: !!binary aGVsbG8=\n", "seed: !!set {1, 2}\n",
    "name: !!python/object/apply:os.system [ls]\n", "keys: " + "[" * 3000 + "]" * 3000 + "\n",
    "focus: " + "{a: " * 400 + "1" + "}" * 400 + "\n", ALIAS_CHAIN, "learning_rate: 1e-5\n", "learning_rate: '1e-5'\n",
    "learning_rate: .nan\n", "lr_min: -.inf\n", "iters: 1e400\n", "seed: 99999999999999999999999\n",
    "\ufeffiters: 4\n", "iters: 4\r\n", "\tindented: 1\n", "---\na: 1\n---\nb: 2\n", "%YAML 1.1\n---\n",
    "? [a, b]\n: 1\n", "stages:\n  '2': {iters: 4}\n  2: {iters: 5}\n", "name: \"\\ud800\"\n", "name: \"a\\0b\"\n",
]


def outcome(path):
    """'loaded' or 'refused'; asserts the promises either way."""
    try:
        loaded = config.load_yaml_file(path, train_mlx.SETTINGS, (), sorted(train_mlx.STAGES))
    except config.ConfigError as e:
        assert str(e).startswith(str(path)), str(e)
        assert_names_a_key(path, str(e))
        return "refused"
    args = train_mlx.build_parser().parse_args(["--config", str(path)])
    for number in train_mlx.STAGES:
        layers = {number: [("defaults", train_mlx.DEFAULTS), (f"STAGES[{number}]", train_mlx.STAGES[number]),
                           ("config file", loaded["shared"]), (f"config file stages.{number}",
                                                               loaded["stages"].get(number, {}))]}
        try:
            configs, notes = resolve.resolve_stages(layers, train_mlx.SETTINGS, str(path), quiet=2)
        except PipelineError as e:  # only the rules tying keys together (fractions, categories) are left to fail
            assert e.exit_code == train_mlx.EXIT_INVALID and str(e)
            assert "STAGES/SETTINGS" not in str(e), str(e)  # the file's values were checked when it was read
            continue
        assert configs == train_mlx.resolve_configs(args, [number], announce=False)  # the run's own path agrees
        json.dumps(config.fingerprint_view(configs[number], train_mlx.SETTINGS), allow_nan=False)  # run.json holds it
        "\n".join(line for line, _ in notes).encode("utf-8")  # what is printed can be printed
    return "loaded"


def assert_names_a_key(path, message):
    """A refusal of a readable mapping names one of its keys (or the YAML line and column)."""
    try:
        document = config.read_yaml_mapping(path)
    except config.ConfigError:
        return  # not readable as a mapping: the message says so with the file's name (and line, when YAML has one)
    named = [config.key_name(k) for k in document] + ["stages"]
    assert any(name in message for name in named), message


def check_text(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        return outcome(path)


@FUZZ
@given(documents())
@example("learning_rate: 1e-5\nlr_min: 1e-6\n")
@example("batch_size: 4\nbatch_size: 8\n")
@example("lora_parameters: {rank: 16}\n")
@example("categories: &c [tool_use, *c]\n")
@example("iters: 1e400\n")
@example("stages: {2: {seed: 1}}\n")
def test_any_yaml_document_loads_into_a_checked_config_or_is_refused_naming_file_and_key(text):
    check_text(text)


@FUZZ
@given(st.binary(max_size=200) | documents().map(lambda t: t.encode("utf-8", "surrogatepass")),
       st.lists(st.tuples(st.integers(0, 200), st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])),
                max_size=2))
def test_any_bytes_load_or_are_refused_naming_the_file(data, insertions):
    for position, byte in insertions:
        data = data[:position] + byte + data[position:]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.yaml"
        path.write_bytes(data)
        outcome(path)


@pytest.mark.parametrize("text, message", [
    ("lora_parameters: {rank: 16}\n", "lora_parameters lacks scale, dropout; give all of rank, scale, dropout"),
    ("learning_rate: .inf\n", "learning_rate=inf should be a finite number"),
    ("iters: 1e400\n", "iters=inf should be of type int"),
    ("seed: 99999999999999999999999\n", "seed=99999999999999999999999 is out of range"),
    ("categories: &c [tool_use, *c]\n", "]] should be a list of str values like [a, b]"),
    ("name: \"\\ud800\"\n", "name='\\ud800' contains a lone surrogate escape"),
    ("base_model: \"a\\0b\"\n", "base_model='a\\x00b' contains a NUL character"),
    ("keys: " + "[" * 3000 + "]" * 3000 + "\n", "c.yaml:1:56: not valid YAML: nested more than 50 levels deep"),
    ("stages:\n  '2': {iters: 4}\n  2: {iters: 5}\n", "stages.2: stage 2 is given twice"),
    ("stages: {2: {batch_size: x}}\n", "stages.2: batch_size='x' should be of type int"),
    ("batch_size: [1\n", "c.yaml:2:1: not valid YAML: expected ',' or ']'"),
    ("name: x\0y\n", "character '\\x00' at offset 7 is not allowed"),
])
def test_what_the_fuzzer_found_is_refused_with_the_file_key_and_fix(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as refused:
        config.load_yaml_file(path, train_mlx.SETTINGS, (), sorted(train_mlx.STAGES))
    assert str(refused.value).startswith(str(path)) and message in str(refused.value), str(refused.value)


CLI_CASES = {
    "not-utf8.yaml": b"batch_size: 4\nname: caf\xe9\n",
    "deep.yaml": b"keys: " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "surrogate.yaml": b'name: "\\udc80"\n',
    "inf.yaml": b"learning_rate: .inf\n",
    "lora.yaml": b"lora_parameters: {rank: 16}\n",
    "self-reference.yaml": b"categories: &c [tool_use, *c]\n",
    "huge.yaml": b"stages: {3: {iters: 100000000000000000000}}\n",
    "binary.yaml": b"\x00\x01\x02\xff\xfe",
}


@pytest.mark.parametrize("name", sorted(CLI_CASES))
def test_a_bad_config_through_the_cli_exits_2_without_a_traceback(tmp_path_factory, name):
    root = tmp_path_factory.mktemp("cli")
    (root / name).write_bytes(CLI_CASES[name])
    command = [sys.executable, str(ROOT / "train_mlx.py"), "--config", str(root / name), "--dry-run", "--dataset",
               str(write_dataset(root / "d.jsonl")), "--output-dir", str(root / "models")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith(f"error: {root / name}"), result.stderr

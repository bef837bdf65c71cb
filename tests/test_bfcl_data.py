"""BFCL's entries as prompts: what is read from the bfcl-eval package, how functions become tools, the sample."""

import json

import pytest
from transformers import AutoTokenizer

from synthia.data.render import render
from synthia.scorecard import bfcl
from synthia.scorecard.bfcl import BFCLUnavailable, load_category, select_entries
from tests.bfcl_pairs import entry_by_id, load_or_skip

SIZES = {"simple_python": 400, "multiple": 200, "parallel": 200, "parallel_multiple": 200, "irrelevance": 240,
         "live_simple": 258, "live_multiple": 1053, "live_parallel": 16, "live_parallel_multiple": 24,
         "live_irrelevance": 884, "live_relevance": 16}


def test_every_category_loads_all_its_entries():
    assert {category: len(load_or_skip(category)) for category in bfcl.CATEGORIES} == SIZES


def test_ast_entries_carry_their_answer_and_the_others_none():
    for category in bfcl.CATEGORIES:
        entries = load_or_skip(category)
        assert all(e.category == category and e.id.startswith(category + "_") for e in entries)
        if category in bfcl.AST_CATEGORIES:
            assert all(e.answer for e in entries), category
        else:
            assert all(e.answer is None for e in entries), category


def test_a_function_becomes_an_openai_tool_with_json_schema_types():
    (tool,) = entry_by_id("simple_python_13").tools
    assert tool == {"type": "function", "function": {
        "name": "calculate_area_under_curve",
        "description": "Calculate the area under a mathematical function within a given interval. "
                       "Note that the provided function is in Python 3 syntax.",
        "parameters": {"type": "object", "required": ["function", "interval"], "properties": {
            "function": {"type": "string", "description": "The mathematical function as a string."},
            "interval": {"type": "array", "items": {"type": "number"},
                         "description": "An array that defines the interval to calculate the area under the curve "
                                        "from the start to the end point."},
            "method": {"type": "string", "description": "The numerical method to approximate the area under the "
                                                        "curve. The default value is 'trapezoidal'."}}}}}


def test_bfcl_type_names_are_converted_at_every_depth():
    def types_in(schema):
        found = {schema["type"]} if "type" in schema else set()
        for child in list(schema.get("properties", {}).values()) + ([schema["items"]] if "items" in schema else []):
            found |= types_in(child)
        return found

    seen = set()
    for category in bfcl.CATEGORIES:
        for entry in load_or_skip(category):
            seen |= set().union(*(types_in(t["function"]["parameters"]) for t in entry.tools))
    assert seen == {"object", "string", "integer", "number", "boolean", "array"}


def test_the_judge_keeps_bfcls_own_function_docs():
    entry = entry_by_id("simple_python_13")
    assert entry.functions[0]["parameters"]["properties"]["interval"] == {
        "type": "array", "items": {"type": "float"}, "description": entry.tools[0]["function"]["parameters"][
            "properties"]["interval"]["description"]}
    assert entry.functions[0]["parameters"]["type"] == "dict"


def test_dotted_function_names_are_offered_with_underscores():
    entry = entry_by_id("parallel_0")
    assert [t["function"]["name"] for t in entry.tools] == ["spotify_play"]
    assert [f["name"] for f in entry.functions] == ["spotify.play"]


def test_messages_are_the_entrys_one_turn_with_its_system_and_earlier_replies():
    entry = entry_by_id("live_irrelevance_125-11-0")
    assert [m["role"] for m in entry.messages] == ["system", "user", "assistant", "user"]
    assert entry.messages[-1] == {"role": "user", "content": "回答不正确，直接发起oncall"}


def test_an_entry_renders_with_the_stage_template(tiny_model_dir):
    entry = entry_by_id("parallel_0")
    text = render(AutoTokenizer.from_pretrained(tiny_model_dir), entry.messages, entry.tools,
                  add_generation_prompt=True)
    assert json.dumps(entry.tools[0], ensure_ascii=False) in text
    assert text.endswith(f"<|im_start|>user\n{entry.messages[0]['content']}<|im_end|>\n<|im_start|>assistant\n")


def test_select_entries_spreads_evenly_and_is_the_same_every_time():
    entries = list(range(100))
    assert select_entries(entries, 4) == [0, 25, 50, 75]
    assert select_entries(entries, 3) == [0, 33, 66]
    assert select_entries(entries, 1) == [0]
    assert select_entries(load_or_skip("live_parallel"), 5) == select_entries(load_category("live_parallel"), 5)


def test_select_entries_takes_all_when_the_limit_is_none_or_beyond_the_category():
    assert select_entries([1, 2, 3], None) == [1, 2, 3]
    assert select_entries([1, 2, 3], 3) == [1, 2, 3]
    assert select_entries([1, 2, 3], 50) == [1, 2, 3]


def test_select_entries_rejects_a_limit_below_one():
    with pytest.raises(ValueError, match=r"^--bench-limit must be at least 1, got 0$"):
        select_entries([1, 2, 3], 0)


def test_an_unknown_category_names_the_known_ones():
    with pytest.raises(BFCLUnavailable) as caught:
        load_category("simple_java")
    assert str(caught.value) == ("unknown BFCL category 'simple_java'. Fix: use one of simple_python, multiple, "
                                 "parallel, parallel_multiple, live_simple, live_multiple, live_parallel, "
                                 "live_parallel_multiple, irrelevance, live_irrelevance, live_relevance")
    assert caught.value.exit_code == 2


def test_a_missing_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(bfcl.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BFCLUnavailable) as caught:
        load_category("parallel")
    assert str(caught.value) == ("--bench bfcl reads BFCL's data from the bfcl-eval package, which is not "
                                 "installed. Fix: pip install --no-deps bfcl-eval==2026.3.23")
    assert caught.value.exit_code == 2


def fake_data(monkeypatch, tmp_path, files):
    (tmp_path / "possible_answer").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(bfcl, "data_dir", lambda: tmp_path)


def test_a_missing_data_file_is_named_with_the_fix(monkeypatch, tmp_path):
    fake_data(monkeypatch, tmp_path, {})
    with pytest.raises(BFCLUnavailable, match=r"BFCL_v4_parallel\.json: missing from bfcl-eval .*\. Fix: pip "
                                              r"install --no-deps bfcl-eval==2026\.3\.23$"):
        load_category("parallel")


def test_a_line_that_is_not_json_is_named_with_its_number(monkeypatch, tmp_path):
    fake_data(monkeypatch, tmp_path, {"BFCL_v4_irrelevance.json": '{"id": "irrelevance_0"\n'})
    with pytest.raises(BFCLUnavailable) as caught:
        load_category("irrelevance")
    assert str(caught.value) == (f"{tmp_path / 'BFCL_v4_irrelevance.json'}:1: not JSON (Expecting ',' delimiter). "
                                 "Fix: pip install --no-deps bfcl-eval==2026.3.23 --force-reinstall")


def test_answers_out_of_step_with_the_entries_are_rejected(monkeypatch, tmp_path):
    entry = {"question": [[{"role": "user", "content": "hi"}]], "function": []}
    fake_data(monkeypatch, tmp_path, {
        "BFCL_v4_live_parallel.json": json.dumps({"id": "live_parallel_0", **entry}) + "\n",
        "possible_answer/BFCL_v4_live_parallel.json": json.dumps({"id": "live_parallel_1", "ground_truth": []})})
    with pytest.raises(BFCLUnavailable, match=r"possible_answer/BFCL_v4_live_parallel\.json: its ids do not follow "
                                              r"BFCL_v4_live_parallel\.json's one for one\."):
        load_category("live_parallel")


def test_a_multi_turn_entry_is_rejected(monkeypatch, tmp_path):
    turn = [{"role": "user", "content": "hi"}]
    fake_data(monkeypatch, tmp_path, {"BFCL_v4_live_relevance.json": json.dumps(
        {"id": "live_relevance_0", "question": [turn, turn], "function": []})})
    with pytest.raises(BFCLUnavailable, match=r"BFCL_v4_live_relevance\.json: entry live_relevance_0 has 2 turns, "
                                              r"expected 1 \(only single-turn categories are supported\)"):
        load_category("live_relevance")


def normalized_words(text):
    return " ".join("".join(c.lower() if c.isalnum() else " " for c in text).split())


def test_no_bfcl_prompt_or_function_reaches_the_shipped_training_data():
    """What the model is scored on never reaches training: no BFCL question (its words, case and punctuation aside)
    stands in the shipped dataset or the starter data's task files, and none of BFCL's function names is a tool
    the shipped conversations offer."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shipped = [root / "dataset.jsonl", *sorted((root / "synthia" / "starter_data").rglob("*.py"))]
    corpus = normalized_words(" ".join(path.read_text(errors="replace") for path in shipped))
    offered = {tool["function"]["name"] for line in (root / "dataset.jsonl").read_text().splitlines() if line.strip()
               for tool in json.loads(line).get("tools", [])}
    offered |= {tool["function"]["name"] for tool in json.loads(
        (root / "synthia" / "data" / "default_tools.json").read_text())}
    leaked, shared_names = [], set()
    for category in bfcl.CATEGORIES:
        for entry in load_or_skip(category):
            for message in entry.messages:
                words = normalized_words(message["content"])
                if message["role"] == "user" and len(words.split()) >= 6 and words in corpus:
                    leaked.append(entry.id)
            shared_names |= {tool["function"]["name"] for tool in entry.tools} & offered
    assert not leaked, f"BFCL prompts found in the shipped data: {leaked[:10]}"
    assert not shared_names, f"BFCL function names offered as tools in the shipped data: {sorted(shared_names)}"

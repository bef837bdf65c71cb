"""Token files (synthia/data/token_files.py): what is written is read back, an earlier version's .jsonl files are still
read, and an encoded conversation crosses between processes as int32 without changing."""

import json
import pickle

import numpy as np

from synthia.data import render, stage_data, token_files
from synthia.train import batches

EXAMPLES = [(3, [5, 6, 7, 8, 9], [(1, 3), (4, 5)]), (8, [151643, 0, 2], [(0, 3)]), (12, [42], [])]


def test_what_is_written_is_read_back(tmp_path):
    path = token_files.write(tmp_path / "train.tokens.npz", EXAMPLES)
    assert path.name == "train.tokens.npz" and path.exists()
    back = token_files.read(path)
    assert [(line, ids.tolist(), spans) for line, ids, spans in back] == EXAMPLES
    assert all(ids.dtype == np.int32 for _, ids, _ in back)
    assert token_files.read(token_files.write(tmp_path / "empty.tokens.npz", [])) == []


def test_the_worker_masks_exactly_the_spans(tmp_path):
    loaded = batches.load_token_file(token_files.write(tmp_path / "t.tokens.npz", EXAMPLES))
    assert [mask.tolist() for _, mask in loaded] == [[0, 1, 1, 0, 1], [1, 1, 1], [0]]


def test_an_earlier_versions_jsonl_token_file_is_still_read(tmp_path):
    legacy = tmp_path / "test.tokens.jsonl"
    legacy.write_text("".join(json.dumps({"line": line, "tokens": ids, "spans": [list(s) for s in spans]}) + "\n"
                              for line, ids, spans in EXAMPLES))
    assert token_files.token_file(tmp_path, "test") == legacy  # a finished stage of an earlier version
    assert [(line, ids.tolist(), spans) for line, ids, spans in token_files.read(legacy)] == EXAMPLES
    token_files.write(tmp_path / "test.tokens.npz", EXAMPLES)
    assert token_files.token_file(tmp_path, "test") == tmp_path / "test.tokens.npz"


def test_writing_a_split_removes_an_earlier_versions_token_file(tmp_path):
    (tmp_path / "train.tokens.jsonl").write_text("{}\n")

    class Example:
        line, json_text = 1, '{"messages": []}'

    written = stage_data.write_split(tmp_path, "train", [(Example(), render.Encoded([1, 2, 3], [(1, 3)]))])
    assert written == tmp_path / "train.tokens.npz" and not (tmp_path / "train.tokens.jsonl").exists()
    assert token_files.token_file(tmp_path, "train") == written
    assert (tmp_path / "train.jsonl").read_text() == '{"messages": []}\n'


def test_an_encoded_conversation_crosses_processes_unchanged():
    encoded = render.Encoded(list(range(150_000, 151_000)), [(5, 9)], trained_turns=1, untrained_spans=[(1, 2)])
    state = encoded.__getstate__()
    assert state["tokens"].dtype == np.int32 and state["tokens"] is state["token_array"]  # pickled once
    back = pickle.loads(pickle.dumps(encoded))
    assert back == encoded and type(back.tokens) is list and back.token_array.tolist() == encoded.tokens

"""--upload: the model card of a finished run, and the upload against a local stand-in for the Hub's HTTP API.

Nothing leaves the machine: the stand-in listens on 127.0.0.1 and huggingface_hub is pointed at it (the endpoint
argument, and constants.ENDPOINT for the side request it makes on its own). The stand-in answers every file as a
regular (non-LFS) upload, so the test files travel inside the commit; the Xet/LFS protocol the real Hub uses for
large files is not exercised here.
"""

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import yaml

from synthia import hub
from synthia.files import size_text
from synthia.pipeline import stagedir
from synthia.scorecard import card as scorecard
from synthia.scorecard import generation

TOKEN = "hf_StandInSecret0123456789abcdefWXYZ"
REPO = "tester/synthia-test"
HUB_BASE = "Qwen/Qwen2.5-Coder-7B-Instruct"
MLX_LM_README = "---\nlanguage: en\nlibrary_name: mlx\npipeline_tag: text-generation\ntags:\n- mlx\n---\n"
STAGE_SETTINGS = {
    1: {"name": "tool-use", "focus": "tool-use reinforcement", "categories": ["tool_use"], "iters": 800,
        "learning_rate": 2e-5},
    2: {"name": "agentic", "focus": "agentic skills", "categories": ["tool_use", "tdd"], "iters": 1000,
        "learning_rate": 1.5e-5},
    3: {"name": "integration", "focus": "full integration", "categories": None, "iters": 1500, "learning_rate": 1e-5},
}
CATEGORY_COUNTS = {1: {"tool_use": (118, 12, 13)}, 2: {"tool_use": (118, 12, 13), "tdd": (40, 5, 4)},
                   3: {"tool_use": (118, 12, 13), "tdd": (40, 5, 4), "planning": (30, 3, 3)}}


# ---------------------------------------------------------------------------------------------------------
# A finished run, as train_mlx.py leaves it
# ---------------------------------------------------------------------------------------------------------
def split_data(counts, split_index):
    categories = {c: n[split_index] for c, n in counts.items()}
    total = sum(categories.values())
    return {"examples": total, "categories": categories, "tokens": 1000 * total, "trained_turns": 3 * total,
            "untrained_turns": 0, "trained_tokens": 200 * total, "untrained_assistant_tokens": 0}


def stage_record(number, fused_dir, base_model, base_model_dir, status="done"):
    """A run.json record with the keys train_mlx.py writes; stage n's numbers are easy to tell apart."""
    config = {"base_model": base_model, "seed": 42, "batch_size": 2, "max_seq_length": 2048, "num_layers": 16,
              "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.05}, "train_bits": 4, "keep": "best",
              "fine_tune_type": "lora", "optimizer": "adam", "grad_accumulation_steps": 1, **STAGE_SETTINGS[number]}
    kept = {"which": "best", "iteration": 200 * number, "val_loss": 1.5 - 0.25 * number}
    record = {"stage": number, "status": status, "config": config, "base_model": base_model,
              "base_model_dir": str(base_model_dir), "fingerprint": {"dataset": "c7f30595e88166e0"},
              "data": {split: split_data(CATEGORY_COUNTS[number], i)
                       for i, split in enumerate(("train", "valid", "test"))},
              "commands": {}, "timings": {}}
    if status == "done":
        record.update(
            train={"final_train_loss": 1.2, "final_valid_loss": kept["val_loss"] + 0.01, "best": kept, "kept": kept,
                   "early_stopped": None},
            fuse_check={"base_valid_loss": 2.0, "adapters_valid_loss": kept["val_loss"],
                        "fused_valid_loss": kept["val_loss"] + 0.001, "relative_difference": 0.001,
                        "gain_retained": 0.99},
            test={"loss": kept["val_loss"] + 0.05, "perplexity": 3.0}, fused_files=stagedir.fused_files(fused_dir))
    return record


def make_run(output_dir, model_dir, base_model=HUB_BASE, base_model_dir=None, unfinished=()):
    """models/stage{1,2,3}/run.json and models/synthia-stageN/ (the tiny model plus mlx_lm's README.md) for every
    finished stage. Stage 1 starts from `base_model`, resolved to `base_model_dir` (a Hub download by default)."""
    base_model_dir = base_model_dir or output_dir.parent / "hub-cache" / "snapshot"
    for number in (1, 2, 3):
        paths = stagedir.stage_paths(output_dir, number)
        paths.stage_dir.mkdir(parents=True)
        if number not in unfinished:
            shutil.copytree(model_dir, paths.fused_dir)
            (paths.fused_dir / "README.md").write_text(MLX_LM_README)
        base, base_dir = (base_model, base_model_dir) if number == 1 else (str(paths.fused_dir), paths.fused_dir)
        status = "running" if number in unfinished else "done"
        paths.run_json.write_text(json.dumps(stage_record(number, paths.fused_dir, base, base_dir, status)))
    return output_dir


@pytest.fixture
def run_dir(tmp_path, tiny_model_dir):
    return make_run(tmp_path / "models", tiny_model_dir)


def base_dir_with_readme(tmp_path, front_matter):
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "qwen2"}')
    (base / "README.md").write_text(f"---\n{yaml.safe_dump(front_matter)}---\n\n# The base model\n")
    return base


def front_matter(card):
    match = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert match, card[:200]
    return yaml.safe_load(match.group(1))


def card_row(card, first_cell):
    return next(line for line in card.splitlines() if line.startswith(f"| {first_cell} |"))


def write_gguf(path):
    import gguf

    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_name(path.stem)
    writer.add_tensor("token_embd.weight", np.arange(16, dtype=np.float32).reshape(4, 4))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def scorecard_turns(exact, total=20):
    return [{"category": "tool_use", "calls_expected": 1, "calls_emitted": 1, "valid": True, "names": True,
             "exact": k < exact, "schema_ok": True, "unknown_tool": False, "truncated": False} for k in range(total)]


def scored(exact):
    return {"settings": {"max_new_tokens": 64, "max_prompt_tokens": None, "limit": None},
            "counts": {"conversations": 10, "turns_scored": 20, "skipped_prompt_too_long": 0, "prompts_cut": 0,
                       "truncated": 0},
            "metrics": generation.metrics(scorecard_turns(exact))}


# ---------------------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------------------
def test_card_metadata_names_the_hub_base_model_its_license_mlx_and_text_generation(tmp_path, tiny_model_dir):
    base = base_dir_with_readme(tmp_path, {"license": "apache-2.0", "language": ["en"]})
    card = hub.model_card(make_run(tmp_path / "models", tiny_model_dir, base_model_dir=base), repo_id=REPO)
    assert front_matter(card) == {"base_model": HUB_BASE, "library_name": "mlx", "license": "apache-2.0",
                                  "pipeline_tag": "text-generation", "tags": list(hub.CARD_TAGS)}
    assert "- License: `apache-2.0`" in card
    assert "mlx_lm.generate --model tester/synthia-test" in card


def test_card_lists_every_stage_with_its_settings_kept_iteration_and_losses(run_dir):
    card = hub.model_card(run_dir)
    assert card_row(card, 1) == "| 1 | tool-use | 800 | 2e-05 | 2 | 8 | 16 | best (200) | 1.2500 | 1.2510 | 1.3000 |"
    assert card_row(card, 2) == "| 2 | agentic | 1000 | 1.5e-05 | 2 | 8 | 16 | best (400) | 1.0000 | 1.0010 | 1.0500 |"
    assert card_row(card, 3) == (
        "| 3 | integration | 1500 | 1e-05 | 2 | 8 | 16 | best (600) | 0.7500 | 0.7510 | 0.8000 |")
    assert "- Stage 2: agentic skills; categories tool_use, tdd; lora scale 20.0, dropout 0.05" in card
    assert "trained on a 4-bit copy (QLoRA), fused into full precision" in card


def test_card_counts_examples_per_category_and_split_for_each_stage(run_dir):
    card = hub.model_card(run_dir)
    assert card_row(card, "category") == "| category | stage 1 | stage 2 | stage 3 |"
    assert card_row(card, "tool_use") == "| tool_use | 118 / 12 / 13 | 118 / 12 / 13 | 118 / 12 / 13 |"
    assert card_row(card, "tdd") == "| tdd | 0 / 0 / 0 | 40 / 5 / 4 | 40 / 5 / 4 |"
    assert card_row(card, "total") == "| total | 118 / 12 / 13 | 158 / 17 / 17 | 188 / 20 / 20 |"
    assert card_row(card, "trained assistant turns (train)") == "| trained assistant turns (train) | 354 | 474 | 564 |"


def test_card_carries_the_scorecard_from_test_under_its_own_headings(run_dir):
    written = scorecard.write_scorecard([("base", scored(4)), ("stage 3", scored(15))], run_dir / "scorecard.md")
    card = hub.model_card(run_dir)
    assert "### Tool-calling scorecard" in card and "#### test" in card
    assert card_row(written, "all turns: exact") in card.splitlines()
    assert "may describe an earlier run" not in card


def test_a_scorecard_older_than_the_model_is_marked_as_possibly_stale(run_dir):
    scorecard.write_scorecard([("stage 3", scored(15))], run_dir / "scorecard.md")
    os.utime(run_dir / "scorecard.md", (0, 0))
    assert "it may describe an earlier run" in hub.model_card(run_dir)


def test_card_without_a_scorecard_says_how_to_make_one(run_dir):
    assert "`python train_mlx.py --test`" in hub.model_card(run_dir)


def test_a_license_named_other_keeps_its_name_and_link(tmp_path, tiny_model_dir):
    license_info = {"license": "other", "license_name": "qwen-research",
                    "license_link": "https://huggingface.co/Qwen/Qwen2.5-Coder-3B-Instruct/blob/main/LICENSE"}
    base = base_dir_with_readme(tmp_path, license_info)
    card = hub.model_card(make_run(tmp_path / "models", tiny_model_dir, base_model_dir=base))
    assert {k: front_matter(card)[k] for k in license_info} == license_info
    assert f"- License: `other` (qwen-research), {license_info['license_link']}" in card


def test_the_license_is_read_from_config_json_when_the_readme_has_none(tmp_path, tiny_model_dir):
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text('{"model_type": "qwen2", "license": "mit"}')
    card = hub.model_card(make_run(tmp_path / "models", tiny_model_dir, base_model_dir=base))
    assert front_matter(card)["license"] == "mit"


def test_an_unknown_license_sends_readers_to_the_base_models_card(run_dir):
    card = hub.model_card(run_dir)  # the Hub download holds no README.md (mlx_lm does not fetch it)
    assert "license" not in front_matter(card)
    assert f"- License: see the [base model's card](https://huggingface.co/{HUB_BASE})" in card


def test_a_local_base_model_is_named_in_the_text_but_not_as_base_model_metadata(tmp_path, tiny_model_dir):
    local = tmp_path / "demo-base"
    shutil.copytree(tiny_model_dir, local)
    card = hub.model_card(make_run(tmp_path / "models", tiny_model_dir, base_model=str(local), base_model_dir=local))
    assert "base_model" not in front_matter(card)
    assert f"- `{local}` (a local model directory; its origin was not recorded)" in card
    assert "- License: see the base model's card" in card


def test_card_of_a_run_with_nothing_finished_is_an_error_that_says_to_train(tmp_path, tiny_model_dir):
    output_dir = make_run(tmp_path / "models", tiny_model_dir, unfinished=(1, 2, 3))
    with pytest.raises(hub.HubUploadError, match=r"nothing to upload.*python train_mlx.py --stage all"):
        hub.model_card(output_dir)


# ---------------------------------------------------------------------------------------------------------
# A local stand-in for the Hub's HTTP API
# ---------------------------------------------------------------------------------------------------------
class StandInHub:
    """Answers, minimally, the requests huggingface_hub makes for whoami, repo_exists, create_repo, list_repo_files
    and create_commit (README validation, preupload, commit), checks the bearer token on each, and records them all."""

    def __init__(self, token=TOKEN, existing=()):
        self.token = token
        self.repos = {name: {} for name in existing}  # repo id -> {path: bytes} from every commit
        self.requests = []  # (method, path, body, authorization header)
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                stand_in.handle(self, "GET")

            def do_POST(self):
                stand_in.handle(self, "POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def paths(self):
        """(method, path) of each request, without the agent-registry side request huggingface_hub makes once."""
        return [(m, p) for m, p, _, _ in self.requests if p != "/api/agent-harnesses"]

    def handle(self, request, method):
        path = request.path.split("?")[0]
        body = request.rfile.read(int(request.headers.get("Content-Length") or 0))
        self.requests.append((method, path, body, request.headers.get("Authorization")))
        if path == "/api/agent-harnesses":
            return self.reply(request, 200, {"standardEnvVars": [], "harnesses": {}})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self.reply(request, 401, {"error": "Invalid credentials in Authorization header"},
                              {"X-Error-Message": "Invalid credentials in Authorization header"})
        status, answer = self.route(method, path, body)
        not_found = {"X-Error-Code": "RepoNotFound"} if status == 404 else {}
        self.reply(request, status, answer, not_found)

    def route(self, method, path, body):
        if (method, path) == ("GET", "/api/whoami-v2"):
            return 200, {"type": "user", "name": "tester"}
        if (method, path) == ("POST", "/api/repos/create"):
            request = json.loads(body)
            repo = f"{request.get('organization') or 'tester'}/{request['name']}"
            if repo in self.repos:
                return 409, {"error": "You already created this model repo", "url": f"{self.endpoint}/{repo}"}
            self.repos[repo] = {}
            return 200, {"url": f"{self.endpoint}/{repo}"}
        if (method, path) == ("POST", "/api/validate-yaml"):
            metadata = yaml.safe_load(re.match(r"---\n(.*?)\n---\n", json.loads(body)["content"], re.S).group(1))
            return (200, {"errors": [], "warnings": []}) if isinstance(metadata, dict) else \
                (400, {"errors": [{"message": "metadata is not a mapping"}]})
        match = re.fullmatch(r"/api/models/([^/]+/[^/]+)(/.*)?", path)
        if not match or match.group(1) not in self.repos:
            return 404, {"error": "Repository not found"}
        repo, rest = match.group(1), match.group(2) or ""
        if method == "GET" and (rest == "" or rest.startswith("/revision/")):
            return 200, {"id": repo, "sha": "0" * 40, "private": False, "siblings": []}
        if method == "GET" and rest.startswith("/tree/"):
            return 200, [{"type": "file", "path": path, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                         for path, data in self.repos[repo].items()]
        if method == "POST" and rest.startswith("/preupload/"):
            files = json.loads(body)["files"]
            return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None}
                                   for f in files]}
        if method == "POST" and rest.startswith("/commit/"):
            return self.commit(repo, body)
        return 404, {"error": f"the stand-in does not answer {method} {path}"}

    def commit(self, repo, body):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        for line in lines[1:]:
            if line["key"] == "file":
                self.repos[repo][line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] == "deletedFile":
                del self.repos[repo][line["value"]["path"]]
            else:
                return 400, {"error": f"the stand-in takes regular files and deletions only, not {line['key']}"}
        oid = f"{len(self.requests):040x}"
        return 200, {"commitUrl": f"{self.endpoint}/{repo}/commit/{oid}", "commitOid": oid, "success": True}

    @staticmethod
    def reply(request, status, answer, headers=None):
        data = json.dumps(answer).encode()
        request.send_response(status)
        for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                            **(headers or {})}.items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)


@pytest.fixture
def isolated_hub_client(tmp_path, monkeypatch):
    """huggingface_hub with no token of the user's, no proxy for 127.0.0.1, and its own side request (the agent
    registry, sent to constants.ENDPOINT) kept on this machine."""
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf-home" / "agents.json"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    _http.close_session()  # the next client reads NO_PROXY
    yield monkeypatch
    _http.close_session()


@pytest.fixture
def stand_in(isolated_hub_client):
    hub_api = StandInHub()
    isolated_hub_client.setattr("huggingface_hub.constants.ENDPOINT", hub_api.endpoint)
    hub_api.thread.start()
    yield hub_api
    hub_api.server.shutdown()
    hub_api.server.server_close()


def unused_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def upload_to(stand_in, run_dir, lines, **options):
    return hub.upload(REPO, run_dir, endpoint=stand_in.endpoint, log=lines.append, **options)


# ---------------------------------------------------------------------------------------------------------
# Uploading
# ---------------------------------------------------------------------------------------------------------
def test_upload_creates_the_repository_and_commits_the_fused_model_with_the_card(stand_in, run_dir):
    lines = []
    result = upload_to(stand_in, run_dir, lines, token=TOKEN)
    assert stand_in.paths() == [("GET", "/api/whoami-v2"), ("GET", f"/api/models/{REPO}"),
                                ("POST", "/api/repos/create"), ("POST", "/api/validate-yaml"),
                                ("POST", f"/api/models/{REPO}/preupload/main"),
                                ("POST", f"/api/models/{REPO}/commit/main")]
    model_dir = run_dir / "synthia-stage3"
    uploaded = stand_in.repos[REPO]
    assert {name: uploaded[name] for name in uploaded if name != "README.md"} == \
        {f.name: f.read_bytes() for f in model_dir.iterdir() if f.name != "README.md"}
    assert uploaded["README.md"].decode() == hub.model_card(run_dir, repo_id=REPO)  # mlx_lm's README replaced
    assert result["created"] is True and result["stage"] == 3
    assert result["commit_url"].startswith(f"{stand_in.endpoint}/{REPO}/commit/")
    assert f"[upload] created the repository {REPO}" in lines


def test_upload_to_an_existing_repository_adds_a_commit_without_creating_it(stand_in, run_dir):
    stand_in.repos[REPO] = {"notes.txt": b"the user's own"}
    result = upload_to(stand_in, run_dir, [], token=TOKEN)
    assert ("POST", "/api/repos/create") not in stand_in.paths()
    assert result["created"] is False
    assert stand_in.repos[REPO]["notes.txt"] == b"the user's own" and "model.safetensors" in stand_in.repos[REPO]


def test_model_files_an_earlier_upload_left_are_removed_in_the_same_commit(stand_in, run_dir):
    earlier = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "model.safetensors.index.json",
               "vocab.json", "synthia-old-q4_k_m.gguf"]
    stand_in.repos[REPO] = {**{name: b"old" for name in earlier}, "notes.txt": b"the user's own"}
    lines = []
    result = upload_to(stand_in, run_dir, lines, token=TOKEN)
    assert result["removed"] == earlier[:4]  # GGUF files stay unless this upload brings new ones
    assert sorted(stand_in.repos[REPO]) == sorted([f["path_in_repo"] for f in result["files"]]
                                                  + ["notes.txt", "synthia-old-q4_k_m.gguf"])
    assert "[upload] removing vocab.json: an earlier upload left it, and it would load with the new model" in lines


def test_upload_gguf_adds_the_gguf_files_replaces_older_ones_and_lists_them_in_the_card(stand_in, run_dir):
    (run_dir / "gguf").mkdir()
    gguf_paths = [write_gguf(run_dir / "gguf" / f"synthia-stage3-{kind}.gguf") for kind in ("f16", "q8_0")]
    stand_in.repos[REPO] = {"synthia-old-q4_k_m.gguf": b"old"}
    result = upload_to(stand_in, run_dir, [], token=TOKEN, include_gguf=True)
    for path in gguf_paths:
        assert stand_in.repos[REPO][path.name] == path.read_bytes()
    assert result["removed"] == ["synthia-old-q4_k_m.gguf"] and "synthia-old-q4_k_m.gguf" not in stand_in.repos[REPO]
    card = stand_in.repos[REPO]["README.md"].decode()
    assert "gguf" in front_matter(card)["tags"]
    assert f"| synthia-stage3-f16.gguf | {size_text(gguf_paths[0].stat().st_size)} |" in card


def test_upload_gguf_without_gguf_files_says_to_export_them(run_dir):
    with pytest.raises(hub.HubUploadError, match=r"no GGUF files in .*gguf.*python train_mlx.py --export gguf"):
        hub.upload(REPO, run_dir, include_gguf=True, dry_run=True, log=lambda m: None)


def test_a_gguf_older_than_the_model_is_flagged(run_dir):
    (run_dir / "gguf").mkdir()
    old = write_gguf(run_dir / "gguf" / "synthia-stage3-f16.gguf")
    os.utime(old, (0, 0))
    lines = []
    hub.upload(REPO, run_dir, include_gguf=True, dry_run=True, log=lines.append)
    assert any("WARNING" in line and "older than the model" in line and "--export gguf" in line for line in lines)


def test_dry_run_lists_the_repository_and_every_file_with_its_size_and_sends_nothing(stand_in, run_dir):
    lines = []
    result = upload_to(stand_in, run_dir, lines, dry_run=True)
    assert stand_in.requests == []
    model_dir = run_dir / "synthia-stage3"
    expected = {f.name: f.stat().st_size for f in model_dir.iterdir() if f.name != "README.md"}
    card_size = len(hub.model_card(run_dir, repo_id=REPO).encode())
    assert [(f["path_in_repo"], f["bytes"]) for f in result["files"]] == [*sorted(expected.items()),
                                                                          ("README.md", card_size)]
    assert lines[0].startswith(f"[upload] would upload stage 3's model ({model_dir}) to {stand_in.endpoint}/{REPO}: "
                               f"{len(expected) + 1} files")
    safetensors_line = next(line for line in lines if "model.safetensors " in line)
    assert size_text(expected["model.safetensors"]) in safetensors_line
    assert lines[-2] == f"[upload] not logged in: before a real upload, {hub.LOGIN_FIX}"
    assert lines[-1].startswith("[upload] dry run: nothing was uploaded")


def test_a_dry_run_with_a_token_checks_it_with_one_whoami_request(stand_in, run_dir):
    lines = []
    upload_to(stand_in, run_dir, lines, dry_run=True, token=TOKEN)
    assert stand_in.paths() == [("GET", "/api/whoami-v2")] and stand_in.repos == {}
    assert "[upload] the Hub accepts the token: logged in as tester" in lines


def test_a_dry_run_with_a_rejected_token_says_to_log_in_again(stand_in, run_dir):
    with pytest.raises(hub.HubUploadError, match=r"rejected the token \(401 Unauthorized\).*`hf auth login`"):
        upload_to(stand_in, run_dir, [], dry_run=True, token="hf_WrongToken9876543210zyxwvu")
    assert stand_in.paths() == [("GET", "/api/whoami-v2")]


def test_a_dry_run_that_cannot_reach_the_hub_lists_the_files_and_says_the_token_was_not_checked(isolated_hub_client,
                                                                                               run_dir):
    endpoint = f"http://127.0.0.1:{unused_port()}"  # nothing listens there
    isolated_hub_client.setattr("huggingface_hub.constants.ENDPOINT", endpoint)
    lines = []
    hub.upload(REPO, run_dir, token=TOKEN, endpoint=endpoint, dry_run=True, log=lines.append)
    assert lines[-2] == f"[upload] the token was not checked: cannot reach the Hub at {endpoint} (ConnectError)"


def test_model_dir_uploads_that_directory_with_a_card_that_does_not_invent_its_training(stand_in, run_dir,
                                                                                       tiny_model_dir):
    lines = []
    result = upload_to(stand_in, run_dir, lines, token=TOKEN, model_dir=tiny_model_dir)
    uploaded = stand_in.repos[REPO]
    assert {name: uploaded[name] for name in uploaded if name != "README.md"} == \
        {f.name: f.read_bytes() for f in tiny_model_dir.iterdir()}
    card = uploaded["README.md"].decode()
    assert f"uploaded from `{tiny_model_dir.name}`" in card and "cannot say how it was trained" in card
    assert "## Training stages" not in card and "base_model" not in front_matter(card)
    assert result["stage"] is None and result["model_dir"] == str(tiny_model_dir)
    assert lines[0].startswith(f"[upload] uploading the model in {tiny_model_dir} to {stand_in.endpoint}/{REPO}: ")


def test_model_dir_naming_a_finished_stage_uploads_that_stage_with_its_card(run_dir):
    lines = []
    result = hub.upload(REPO, run_dir, model_dir=run_dir / "synthia-stage2", dry_run=True, log=lines.append)
    assert result["stage"] == 2 and result["model_dir"] == str(run_dir / "synthia-stage2")
    assert lines[0].startswith(f"[upload] would upload stage 2's model ({run_dir / 'synthia-stage2'}) to ")
    card = hub.plan_upload(REPO, run_dir, False, lines.append, model_dir=run_dir / "synthia-stage2").card.decode()
    assert "This repository holds the fused model of stage 2 (agentic)" in card
    assert card_row(card, "2") and "| 3 |" not in card


def test_model_dir_that_is_not_a_model_is_an_input_error(run_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(hub.HubUploadError) as caught:
        hub.upload(REPO, run_dir, model_dir=tmp_path / "empty", dry_run=True, log=lambda m: None)
    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(f"--model {tmp_path / 'empty'}: not a model directory that loads:\n  "
                                        f"{tmp_path / 'empty' / 'config.json'}: missing\n")


def test_the_newest_finished_stage_is_uploaded_when_the_last_has_not_finished(tmp_path, tiny_model_dir):
    output_dir = make_run(tmp_path / "models", tiny_model_dir, unfinished=(3,))
    lines = []
    result = hub.upload(REPO, output_dir, dry_run=True, log=lines.append)
    assert result["stage"] == 2 and result["model_dir"] == str(output_dir / "synthia-stage2")
    assert "[upload] stage 3 has not finished (running); uploading stage 2, the newest finished stage" in lines
    assert "| 3 |" not in hub.model_card(output_dir)


def test_a_repository_name_that_is_not_one_is_rejected_with_an_example(run_dir):
    with pytest.raises(hub.HubUploadError, match=r"--upload 'a/b/c': not a Hub repository name.*yourname/synthia-7b"):
        hub.upload("a/b/c", run_dir, dry_run=True, log=lambda m: None)


def test_not_logged_in_says_to_run_hf_auth_login_or_set_hf_token_before_any_request(stand_in, run_dir):
    with pytest.raises(hub.HubUploadError, match=r"not logged in.*`hf auth login`.*HF_TOKEN"):
        upload_to(stand_in, run_dir, [])
    assert stand_in.requests == []


def test_a_rejected_token_says_to_log_in_again(stand_in, run_dir):
    wrong = "hf_WrongToken9876543210zyxwvu"
    with pytest.raises(hub.HubUploadError) as caught:
        upload_to(stand_in, run_dir, [], token=wrong)
    assert "rejected the token (401 Unauthorized)" in str(caught.value)
    assert "`hf auth login`" in str(caught.value) and "HF_TOKEN" in str(caught.value)
    assert wrong not in str(caught.value)
    assert stand_in.paths() == [("GET", "/api/whoami-v2")] and stand_in.repos == {}


def test_an_unreachable_hub_says_so_and_what_to_do(isolated_hub_client, run_dir):
    endpoint = f"http://127.0.0.1:{unused_port()}"  # nothing listens there
    isolated_hub_client.setattr("huggingface_hub.constants.ENDPOINT", endpoint)
    with pytest.raises(hub.HubUploadError, match=rf"cannot reach the Hugging Face Hub at {endpoint} .*run the same "
                                                 "command again"):
        hub.upload(REPO, run_dir, token=TOKEN, endpoint=endpoint, log=lambda m: None)


def test_hf_hub_offline_is_an_error_that_says_to_unset_it(isolated_hub_client, run_dir):
    isolated_hub_client.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    with pytest.raises(hub.HubUploadError, match="HF_HUB_OFFLINE is set.*unset it"):
        hub.upload(REPO, run_dir, token=TOKEN, log=lambda m: None)


@pytest.mark.parametrize("server_token", [TOKEN, "hf_SomeoneElsesToken"], ids=["accepted", "rejected"])
def test_the_token_is_sent_to_the_hub_and_appears_nowhere_else(stand_in, run_dir, server_token, capsys, caplog,
                                                               monkeypatch):
    stand_in.token = server_token
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # taken from the environment, as after `export HF_TOKEN=...`
    caplog.set_level(logging.DEBUG, logger="huggingface_hub")
    lines, outcome = [], ""
    try:
        outcome = json.dumps(hub.upload(REPO, run_dir, endpoint=stand_in.endpoint, log=lines.append))
    except hub.HubUploadError as e:
        outcome = f"{e!r} {e}"
    sent = {auth for _, path, _, auth in stand_in.requests if path != "/api/agent-harnesses"}
    assert sent == {f"Bearer {TOKEN}"}
    captured = capsys.readouterr()
    for text in (outcome, "\n".join(lines), captured.out, captured.err, caplog.text):
        assert TOKEN not in text
    assert not [p for p in run_dir.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]

"""Publish a finished run on the Hugging Face Hub: the newest finished stage's fused model (and, if asked, the GGUF
files in models/gguf/) with a model card written from the stages' run.json files and models/scorecard.md.

    upload("you/synthia-7b", "models", dry_run=True)        # the repository, every file and its size; sends nothing
    upload("you/synthia-7b", "models", include_gguf=True)   # creates the repository when needed, one commit
    upload("you/synthia-7b", "models", model_dir="models/synthia-stage2", dry_run=True)  # that model instead
    print(model_card("models"))                             # the README.md that goes with it

The token comes from `token`, else HF_TOKEN, else `hf auth login`'s stored one; it only ever goes into the
requests' Authorization header, never into a message, the log or a file. huggingface_hub is imported inside the
functions that use it, so importing this module stays cheap.
"""

import json
import re
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

import yaml

from synthia.files import size_text
from synthia.pipeline import runstate, stagedir

HUB_URL = "https://huggingface.co"
CARD_TAGS = ("mlx", "lora", "tool-use", "function-calling", "code", "synthia")
LOGIN_FIX = "run `hf auth login` (with a token that can write), or set HF_TOKEN to a write token"
NETWORK_MODULES = {"httpx", "httpx2", "httpcore", "httpcore2", "requests", "urllib3"}


class HubUploadError(ValueError):
    """Something the user can fix before uploading; the message says what to run. exit_code: 2 for what the user
    asked for (the repository name, the model), 1 for the login, the network or the Hub."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class UploadFile:
    path_in_repo: str
    source: Path | None  # None: generated here (the model card)
    size: int


# ---------------------------------------------------------------------------------------------------------
# What a finished run holds
# ---------------------------------------------------------------------------------------------------------
def stage_numbers(output_dir):
    """The stage numbers with a models/stageN directory, lowest first."""
    found = (re.fullmatch(r"stage(\d+)", p.name) for p in Path(output_dir).glob("stage*") if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def newest_finished_stage(output_dir, log=print):
    """(number, run.json record) of the highest-numbered stage that finished with its fused model intact."""
    skipped = []
    for number in reversed(stage_numbers(output_dir)):
        paths = stagedir.stage_paths(output_dir, number)
        problems = []
        record = stagedir.finished_stage(paths, warn=problems.append)
        if record is not None:
            for note in skipped:
                log(f"[upload] {note}; uploading stage {number}, the newest finished stage")
            return number, record
        status = (stagedir.read_run_json(paths) or {}).get("status", "no run.json")
        skipped.append(f"stage {number} has not finished ({status})" if not problems else
                       f"stage {number}'s model in {paths.fused_dir} does not match its run.json")
    raise HubUploadError(
        f"nothing to upload: no finished stage in {output_dir} (a models/stageN/run.json with status done and its "
        f"models/synthia-stageN/ model intact). Train first: python train_mlx.py --stage all"
        + (f" ({'; '.join(skipped)})" if skipped else ""), exit_code=2)


def stage_of(model_dir, output_dir):
    """(number, run.json record) of the finished stage whose fused model `model_dir` is, or (None, None)."""
    for number in stage_numbers(output_dir):
        paths = stagedir.stage_paths(output_dir, number)
        if paths.fused_dir.resolve() == Path(model_dir).resolve():
            record = stagedir.finished_stage(paths, warn=lambda message: None)
            return (number, record) if record is not None else (None, None)
    return None, None


def chain_records(output_dir, last):
    """{stage: run.json record or None} for stages 1..last: the chain that made the uploaded model."""
    return {n: stagedir.read_run_json(stagedir.stage_paths(output_dir, n)) for n in range(1, last + 1)}


def is_hub_name(record):
    """Whether stage 1 started from a Hub repository (resolved to a download) rather than a local directory."""
    from huggingface_hub.utils import validate_repo_id

    name = str(record.get("base_model", ""))
    if record.get("base_model_dir", name) == name:
        return False
    try:
        validate_repo_id(name)
    except ValueError:
        return False
    return True


def base_license(model_dir):
    """{"license", and "license_name"/"license_link" when given} from the base model directory's README.md front
    matter, else its config.json; {} when neither says."""
    from huggingface_hub.repocard import metadata_load

    if not model_dir or not Path(model_dir).is_dir():
        return {}
    readme = Path(model_dir) / "README.md"
    try:
        metadata = metadata_load(readme) if readme.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):  # a malformed front matter says nothing about the license
        metadata = None
    if isinstance(metadata, dict) and isinstance(metadata.get("license"), str):
        return {k: metadata[k] for k in ("license", "license_name", "license_link") if metadata.get(k)}
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"license": config["license"]} if isinstance(config.get("license"), str) else {}


def gguf_files(output_dir):
    return sorted((Path(output_dir) / "gguf").glob("*.gguf"))


# ---------------------------------------------------------------------------------------------------------
# The model card
# ---------------------------------------------------------------------------------------------------------
def model_card(output_dir, *, repo_id=None, gguf=(), stage=None):
    """README.md for the newest finished stage's model (or stage=(number, run.json record)'s): the Hub's metadata
    block, then base model, use, intended use, stages with their settings and losses, data counts per category,
    the scorecard and the license."""
    number, record = stage or newest_finished_stage(output_dir, log=lambda message: None)
    records = chain_records(output_dir, number)
    first = records[1] or {}
    base = str(first.get("base_model") or record.get("config", {}).get("base_model", "unknown"))
    hub_base = is_hub_name(first) if first else False
    license_info = base_license(first.get("base_model_dir"))
    title = repo_id.split("/")[-1] if repo_id else stagedir.stage_paths(output_dir, number).fused_dir.name
    stage_name = record["config"].get("name") or "unnamed"
    sections = [
        card_metadata(base if hub_base else None, license_info, bool(gguf)),
        f"# {title}", "",
        f"{title} is {base_reference(base, hub_base)} fine-tuned with LoRA on Apple's MLX in {number} curriculum "
        f"stage{'s' if number > 1 else ''} by Synthia's `train_mlx.py`, to call tools well in a coding agent. "
        f"This repository holds the fused model of stage {number} ({stage_name}) in MLX format"
        + (", and GGUF files for LM Studio and llama.cpp." if gguf else "."), "",
        *base_section(base, hub_base, license_info),
        *use_section(repo_id or title, gguf),
        *intended_use_section(),
        *stages_section(records),
        *data_section(records),
        *scorecard_section(output_dir, stagedir.stage_paths(output_dir, number).fused_dir),
        *license_section(base, hub_base, license_info),
    ]
    return "\n".join(sections).rstrip("\n") + "\n"


def directory_card(model_dir, *, repo_id=None, gguf=()):
    """README.md for a model directory that no finished stage of this run made (--model DIR): the license it
    declares, how to use it, and that its training is not recorded here."""
    license_info = base_license(model_dir)
    title = repo_id.split("/")[-1] if repo_id else Path(model_dir).name
    sections = [card_metadata(None, license_info, bool(gguf)), f"# {title}", "",
                f"{title} is an MLX model uploaded from `{Path(model_dir).name}` by Synthia's `train_mlx.py`"
                + (", with GGUF files for LM Studio and llama.cpp" if gguf else "") + ". No finished stage of this "
                "run made it, so this card cannot say how it was trained.", "",
                *use_section(repo_id or title, gguf), *intended_use_section(),
                "## License", "", f"License: {license_text(None, False, license_info)}.", ""]
    return "\n".join(sections).rstrip("\n") + "\n"


def card_metadata(hub_base, license_info, with_gguf):
    """The YAML front matter the Hub reads (base_model only for a Hub repository: a local path is not a model id)."""
    from huggingface_hub import ModelCardData

    data = ModelCardData(base_model=hub_base, library_name="mlx", pipeline_tag="text-generation",
                         tags=[*CARD_TAGS, *(["gguf"] if with_gguf else [])], **license_info)
    return f"---\n{data.to_yaml()}\n---\n"


def base_reference(base, hub_base):
    return f"[{base}]({HUB_URL}/{base})" if hub_base else f"`{base}`"


def base_section(base, hub_base, license_info):
    where = "" if hub_base else " (a local model directory; its origin was not recorded)"
    return ["## Base model", "", f"- {base_reference(base, hub_base)}{where}",
            f"- License: {license_text(base, hub_base, license_info)}", ""]


def license_text(base, hub_base, license_info):
    if not license_info:
        return f"see the [base model's card]({HUB_URL}/{base})" if hub_base else "see the base model's card"
    name = license_info.get("license_name") if license_info["license"] == "other" else None
    text = f"`{license_info['license']}`" + (f" ({name})" if name else "")
    return text + (f", {license_info['license_link']}" if license_info.get("license_link") else "")


def use_section(repo, gguf):
    lines = ["## Use", "", "```sh", "pip install mlx-lm",
             f"mlx_lm.generate --model {repo} --prompt \"Write a test for parse_args, then run it\"", "```", "",
             "It writes tool calls in its chat template's format (for Qwen2.5 models, `<tool_call>{\"name\": ..., "
             "\"arguments\": {...}}</tool_call>`); pass your tools' JSON schemas as the chat template's `tools`.", ""]
    if gguf:
        lines += ["GGUF files, for LM Studio and llama.cpp (`llama-cli -m FILE`):", "", "| file | size |", "|---|---|",
                  *(f"| {p.name} | {size_text(p.stat().st_size)} |" for p in gguf), ""]
    return lines


def intended_use_section():
    return ["## Intended use", "",
            "A coding assistant that works through tools in an agent loop: reading and editing files, running "
            "commands and tests, debugging, planning and reporting. Its calls are only as good as the tool schemas it "
            "saw in training: check them before they run, and keep a human in the loop for commands with side "
            "effects. It was not trained or evaluated for safety, for facts, or for languages other than English; "
            "the evaluation below uses held-out examples from the same dataset, not an independent benchmark.", ""]


def stages_section(records):
    lines = ["## Training stages", "",
             "Each stage trains LoRA adapters on the previous stage's fused model (stage 1 on the base model), keeps "
             "the adapters named under \"kept\" and fuses them in.", "",
             "| stage | name | iters | learning rate | batch size | LoRA rank | LoRA layers | kept (iteration) "
             "| valid loss, kept | fused valid loss | test loss |", "|---|" + "---|" * 10]
    for number, record in records.items():
        lines.append(stage_row(number, record))
    lines.append("")
    for number, record in records.items():
        if record:
            lines.append(f"- Stage {number}: {stage_details(record)}")
    return lines + [""]


def stage_row(number, record):
    if not record or "train" not in record:
        return f"| {number} | (no finished run.json) |" + " |" * 9
    config, train, check = record["config"], record["train"], record.get("fuse_check", {})
    kept = train.get("kept") or {}
    layers = "all" if config.get("num_layers") == -1 else config.get("num_layers")
    cells = [number, config.get("name", ""), config.get("iters"), f"{config.get('learning_rate'):g}",
             config.get("batch_size"), config.get("lora_parameters", {}).get("rank"), layers,
             f"{kept.get('which', '?')} ({kept.get('iteration')})", loss_text(kept.get("val_loss")),
             loss_text(check.get("fused_valid_loss")), loss_text((record.get("test") or {}).get("loss"))]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def loss_text(value):
    return "–" if value is None else f"{value:.4f}"


def stage_details(record):
    """The settings the table leaves out, in a sentence."""
    config, train = record["config"], record["train"]
    lora = config.get("lora_parameters", {})
    categories = ", ".join(config["categories"]) if config.get("categories") else "all"
    parts = [config.get("focus") or "", f"categories {categories}",
             f"{config.get('fine_tune_type', 'lora')} scale {lora.get('scale')}, dropout {lora.get('dropout')}",
             f"max_seq_length {config.get('max_seq_length')}", f"optimizer {config.get('optimizer')}",
             f"grad_accumulation_steps {config.get('grad_accumulation_steps')}",
             f"trained on a {config['train_bits']}-bit copy (QLoRA), fused into full precision"
             if config.get("train_bits") else "trained in full precision"]
    if train.get("early_stopped"):
        parts.append(f"stopped early at iteration {train['early_stopped']['iteration']} "
                     f"({train['early_stopped']['reason']})")
    return "; ".join(p for p in parts if p)


def data_section(records):
    """Examples per category as train / valid / test, one column per stage (after fitting to max_seq_length)."""
    numbers = [n for n, r in records.items() if r and "data" in r]
    if not numbers:
        return []
    data = {n: records[n]["data"] for n in numbers}
    categories = sorted({c for d in data.values() for split in d.values() for c in split.get("categories", {})})
    lines = ["## Data", "",
             "Examples per category, train / valid / test, as each stage used them (examples longer than "
             "max_seq_length lose whole turns from the end, or are left out):", "",
             "| category | " + " | ".join(f"stage {n}" for n in numbers) + " |", "|---|" + "---|" * len(numbers)]
    for category in categories:
        lines.append(f"| {category} | " + " | ".join(split_counts(data[n], category) for n in numbers) + " |")
    lines.append("| total | " + " | ".join(split_counts(data[n]) for n in numbers) + " |")
    lines.append("| trained assistant turns (train) | "
                 + " | ".join(str(data[n].get("train", {}).get("trained_turns", "–")) for n in numbers) + " |")
    fingerprints = {(records[n].get("fingerprint") or {}).get("dataset") for n in numbers} - {None}
    if fingerprints:
        lines += ["", f"Dataset fingerprint: {', '.join(sorted(fingerprints))}."]
    return lines + [""]


def split_counts(stage_data, category=None):
    def count(split):
        part = stage_data.get(split, {})
        return part.get("examples", 0) if category is None else part.get("categories", {}).get(category, 0)
    return " / ".join(str(count(split)) for split in ("train", "valid", "test"))


def scorecard_section(output_dir, fused_dir):
    """models/scorecard.md from --test, its headings moved under this card's, or how to make one."""
    path = Path(output_dir) / "scorecard.md"
    lines = ["## Evaluation", ""]
    if not path.is_file():
        return lines + ["No tool-calling scorecard yet: `python train_mlx.py --test` scores the base model and every "
                        "stage on held-out conversations (models/scorecard.md).", ""]
    if path.stat().st_mtime < (Path(fused_dir) / "config.json").stat().st_mtime:
        lines += ["*This scorecard was written before the uploaded model was made: it may describe an earlier run.*",
                  ""]
    text = path.read_text(encoding="utf-8")
    return lines + [("##" + line) if line.startswith("#") else line for line in text.splitlines()] + [""]


def license_section(base, hub_base, license_info):
    return ["## License", "",
            f"This model is a derivative of {base_reference(base, hub_base)} and carries its license: "
            f"{license_text(base, hub_base, license_info)}.", ""]


# ---------------------------------------------------------------------------------------------------------
# Uploading
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class UploadPlan:
    repo_id: str
    stage: int | None  # None: a --model directory no finished stage made
    model_dir: Path
    files: list  # [UploadFile], the card among them
    card: bytes
    include_gguf: bool


def check_repo_id(repo_id):
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except ValueError as e:
        raise HubUploadError(f"--upload {repo_id!r}: not a Hub repository name ({str(e).splitlines()[0]}). "
                             "Use NAMESPACE/NAME, e.g. --upload yourname/synthia-7b", exit_code=2) from None


def chosen_model(output_dir, model_dir, log):
    """(stage number or None, its run.json record or None, the directory to upload): `model_dir` when given (a
    stage's fused model keeps its stage's card), else the newest finished stage's model."""
    if model_dir is None:
        number, record = newest_finished_stage(output_dir, log=log)
        return number, record, stagedir.stage_paths(output_dir, number).fused_dir
    problems = runstate.model_dir_problems(model_dir)
    if problems:
        raise HubUploadError(f"--model {model_dir}: not a model directory that loads:\n  " + "\n  ".join(problems)
                             + "\n  Fix: name a complete MLX model directory (config.json, tokenizer, *.safetensors) "
                               "with --model, or drop --model to upload the newest finished stage's", exit_code=2)
    return (*stage_of(model_dir, output_dir), Path(model_dir))


def directory_files(model_dir):
    """{name: bytes} of the files at a model directory's top level (hidden ones left out)."""
    return {f.name: f.stat().st_size for f in sorted(Path(model_dir).iterdir())
            if f.is_file() and not f.name.startswith(".")}


def plan_upload(repo_id, output_dir, include_gguf, log, model_dir=None):
    """The newest finished stage's model files as run.json recorded them (or those of `model_dir`), mlx_lm's
    README.md replaced by the generated card, then the GGUF files, all at the repository's root."""
    check_repo_id(repo_id)
    number, record, model_dir = chosen_model(output_dir, model_dir, log)
    gguf = gguf_files(output_dir) if include_gguf else []
    if include_gguf and not gguf:
        raise HubUploadError(f"--upload-gguf: no GGUF files in {Path(output_dir) / 'gguf'}. Make them with "
                             "python train_mlx.py --export gguf, or drop --upload-gguf", exit_code=2)
    for warning in stale_gguf_warnings(gguf, model_dir):
        log(warning)
    card = (model_card(output_dir, repo_id=repo_id, gguf=gguf, stage=(number, record)) if record
            else directory_card(model_dir, repo_id=repo_id, gguf=gguf)).encode("utf-8")
    sizes = record["fused_files"] if record else directory_files(model_dir)
    files = [UploadFile(name, model_dir / name, size) for name, size in sorted(sizes.items()) if name != "README.md"]
    files.append(UploadFile("README.md", None, len(card)))
    files += [UploadFile(p.name, p, p.stat().st_size) for p in gguf]
    return UploadPlan(repo_id, number, model_dir, files, card, include_gguf)


def stale_gguf_warnings(gguf, model_dir):
    made = (Path(model_dir) / "config.json").stat().st_mtime
    return [f"[upload] WARNING: {p} is older than the model in {model_dir}: it may come from an earlier run. "
            "Re-export with python train_mlx.py --export gguf" for p in gguf if p.stat().st_mtime < made]


def stale_remote_files(remote_paths, plan):
    """Files an earlier upload left in the repository that would be loaded with the new model (an old shard, an old
    chat template), or, with GGUF files in this upload, older GGUF files: removed in the same commit."""
    patterns = (*stagedir.MODEL_FILE_PATTERNS, *(["*.gguf"] if plan.include_gguf else []))
    uploading = {f.path_in_repo for f in plan.files}
    return sorted(p for p in remote_paths
                  if "/" not in p and p not in uploading and any(fnmatch(p, pattern) for pattern in patterns))


def upload(repo_id, output_dir, *, model_dir=None, include_gguf=False, dry_run=False, token=None, endpoint=None,
           log=print):
    """Create `repo_id` on the Hub when needed and commit the newest finished stage's fused model (or `model_dir`)
    with its model card (and models/gguf/*.gguf with include_gguf) in one commit. dry_run sends nothing but the
    token check (when there is a token) and logs what would go. Returns {"repo_id", "url", "stage", "model_dir",
    "files": [{"path_in_repo", "source", "bytes"}], "total_bytes", "dry_run", "created", "removed", "commit_url"};
    it never holds the token."""
    plan = plan_upload(repo_id, output_dir, include_gguf, log, model_dir)
    url = f"{(endpoint or hub_endpoint()).rstrip('/')}/{repo_id}"
    result = {"repo_id": repo_id, "url": url, "stage": plan.stage, "model_dir": str(plan.model_dir),
              "files": [{"path_in_repo": f.path_in_repo, "source": str(f.source) if f.source else "generated",
                         "bytes": f.size} for f in plan.files],
              "total_bytes": sum(f.size for f in plan.files), "dry_run": dry_run, "created": None, "removed": None,
              "commit_url": None}
    what = f"stage {plan.stage}'s model ({plan.model_dir})" if plan.stage else f"the model in {plan.model_dir}"
    log(f"[upload] {'would upload' if dry_run else 'uploading'} {what} to {url}: {len(plan.files)} files, "
        f"{size_text(result['total_bytes'])}")
    card_source = "generated from run.json" if plan.stage else "generated"
    for f in plan.files:
        log(f"[upload]   {f.path_in_repo:<40} {size_text(f.size):>10}  {f.source or f'(model card, {card_source})'}")
    if dry_run:
        check_token(token, endpoint, repo_id, log)
        log("[upload] dry run: nothing was uploaded. A real upload creates the repository if it does not exist, and "
            "removes model files an earlier upload left there (old shards, tokenizer files"
            + (", GGUF files" if include_gguf else "") + ") in the same commit")
        return result
    result.update(send(plan, token, endpoint, log))
    return result


def hub_endpoint():
    from huggingface_hub import constants

    return constants.ENDPOINT


def check_token(token, endpoint, repo_id, log):
    """For a dry run: whether the Hub accepts the token a real upload would use (one whoami request). Without a
    token nothing is sent; a Hub that cannot be reached leaves the token unchecked, said so."""
    from huggingface_hub import HfApi, constants, get_token

    token = token or get_token()
    if not token:
        log(f"[upload] not logged in: before a real upload, {LOGIN_FIX}")
        return
    if constants.HF_HUB_OFFLINE:
        log("[upload] the token was not checked: HF_HUB_OFFLINE is set")
        return
    api = HfApi(endpoint=endpoint, token=token)
    try:
        name = api.whoami().get("name", "?")
    except Exception as e:
        if not is_network_error(e):
            raise hub_error(e, repo_id, api.endpoint, token) from None
        log(f"[upload] the token was not checked: cannot reach the Hub at {api.endpoint} ({type(e).__name__})")
        return
    log(f"[upload] the Hub accepts the token: logged in as {name}")


def send(plan, token, endpoint, log):
    """Log in, create the repository when it does not exist, and commit every file (and the removal of stale
    ones) in one commit."""
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token

    if constants.HF_HUB_OFFLINE:
        raise HubUploadError("HF_HUB_OFFLINE is set, so nothing can reach the Hub: unset it (and TRANSFORMERS_OFFLINE) "
                             "to upload, or use --dry-run to see what would be uploaded")
    token = token or get_token()
    if not token:
        raise HubUploadError(f"not logged in to the Hugging Face Hub: {LOGIN_FIX}. Then run the same command again")
    api = HfApi(endpoint=endpoint, token=token)
    operations = [CommitOperationAdd(f.path_in_repo, str(f.source) if f.source else plan.card) for f in plan.files]
    try:
        log(f"[upload] logged in as {api.whoami().get('name', '?')}")
        created = not api.repo_exists(plan.repo_id)
        if created:
            api.create_repo(plan.repo_id, exist_ok=True)
            log(f"[upload] created the repository {plan.repo_id}")
        removed = [] if created else stale_remote_files(api.list_repo_files(plan.repo_id), plan)
        for path in removed:
            log(f"[upload] removing {path}: an earlier upload left it, and it would load with the new model")
        info = api.create_commit(plan.repo_id, operations + [CommitOperationDelete(p) for p in removed],
                                 commit_message=f"Synthia stage {plan.stage} model, from train_mlx.py" if plan.stage
                                 else f"{plan.model_dir.name}, from train_mlx.py")
    except Exception as e:
        raise hub_error(e, plan.repo_id, api.endpoint, token) from None
    log(f"[upload] done: {info.commit_url}")
    return {"created": created, "removed": removed, "commit_url": info.commit_url}


def hub_error(error, repo_id, endpoint, token):
    """A HubUploadError that says what happened and what to run; the token is cut out of anything quoted."""
    from huggingface_hub.errors import HfHubHTTPError

    quoted = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    quoted = quoted.replace(token, "<token>")
    status = getattr(getattr(error, "response", None), "status_code", None)
    if isinstance(error, HfHubHTTPError) and status == 401:
        message = (f"the Hub at {endpoint} rejected the token (401 Unauthorized): {LOGIN_FIX} "
                   "(`hf auth login --force` replaces a stored one; HF_TOKEN, when set, wins over it)")
    elif isinstance(error, HfHubHTTPError) and status == 403:
        message = (f"the token may not write to {repo_id} (403 Forbidden): use a token with write access to that "
                   f"namespace (`hf auth login --force`), or upload under your own name")
    elif isinstance(error, HfHubHTTPError):
        message = f"the Hub at {endpoint} refused the upload to {repo_id} ({quoted}); run the same command to retry"
    elif is_network_error(error):
        message = (f"cannot reach the Hugging Face Hub at {endpoint} ({quoted}). Check the network connection (and "
                   "HF_ENDPOINT, if set), then run the same command again; --dry-run lists the files offline")
    else:
        raise error  # a bug, not the user's to fix: keep its traceback
    return HubUploadError(message)


def is_network_error(error):
    return isinstance(error, (ConnectionError, TimeoutError)) or type(error).__module__.split(".")[0] in NETWORK_MODULES

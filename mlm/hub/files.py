"""Which local files go to the Hub, and the layout of what goes there. `model_files` is the one definition of a
model repo's files, for `mlm push` and `--push_to_hub` alike: weights as safetensors, config, tokenizer, card,
the run and step records with local paths stripped, and a model kept beside it (ELECTRA's generator/); never a
pickle (pickled weights, training arguments, optimizer state), intermediate checkpoints, hidden or temporary
files, run outputs (predictions, logs, metrics) or a file that holds the token."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.errors import UserError
from mlm.hub.client import looks_like_repo_id
from mlm.run_record import RunRecord, public_spec

# Never uploaded from a model folder: intermediate checkpoints, hidden and temporary files (atomic writes, our
# staging folders), and the pickled TrainingArguments (it would hold `hub_token` if one was passed to the Trainer).
IGNORE_PATTERNS = [
    "checkpoint-*",
    ".*",
    "*/.*",
    "*.tmp",
    "*.tmp-*",
    "__pycache__/*",
    "*/__pycache__/*",
    "training_args.bin",
    "*/training_args.bin",
]
# For staging folders (already filtered, may hold checkpoint-N/ for "all_checkpoints").
STAGING_IGNORE = [".*", "*/.*"]
# What a model repo needs: these files of a model folder's top level (and of a model beside it), and no others.
MODEL_FILES = [
    "*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json", "tokenizer.json",
    "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt", "vocab.json",
    "merges.txt", "*.model", "chat_template.jinja", "README.md", "run_info.json", "mlm_step.json",
]  # fmt: skip
STEP_RECORD = "mlm_step.json"
RUN_RECORD = "run_info.json"
# Where the full training state of the newest checkpoint goes in the repo (`hub_strategy: checkpoint`).
LAST_CHECKPOINT = "last-checkpoint"
_TEXT_SUFFIXES = (
    ".json", ".md", ".txt", ".yaml", ".yml", ".jsonl", ".cfg", ".ini", ".toml", ".csv", ".tsv", ".py",
)  # fmt: skip


def matches(rel: str, patterns: list[str]) -> bool:
    """Whether the relative path `rel` (or its file name) matches one of `patterns`."""
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def files_to_upload(folder: Path, ignore: list[str]) -> list[Path]:
    """The files under `folder` that a push sends (none hidden, none matching `ignore`)."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        hidden = any(part.startswith(".") for part in rel.split("/"))
        if path.is_file() and not hidden and not matches(rel, ignore):
            out.append(path)
    return out


def model_files(folder: Path) -> tuple[list[str], list[str]]:
    """(files to push, what is left out) of the model folder `folder`, by relative name: the top-level files a
    model repo needs (`MODEL_FILES`), and those of a model kept beside it in a subfolder (ELECTRA's
    `generator/`: it has a config.json; checkpoints are not such models); hidden and temporary files are
    neither. Left-out subfolders are named once, with a slash."""
    beside = {d.name for d in folder.iterdir() if d.is_dir() and (d / "config.json").is_file()
              and not d.name.startswith(("checkpoint-", ".")) and d.name != LAST_CHECKPOINT}  # fmt: skip
    pushed: list[str] = []
    left: list[str] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        parts = rel.split("/")
        if not path.is_file() or any(p.startswith(".") for p in parts) or matches(rel, ["*.tmp", "*.tmp-*"]):
            continue
        if (len(parts) == 1 and matches(rel, MODEL_FILES)) or (
            len(parts) == 2 and parts[0] in beside and matches(parts[1], MODEL_FILES)
        ):
            pushed.append(rel)
        elif (top := rel if parts[0] in beside else parts[0] + ("/" if len(parts) > 1 else "")) not in left:
            left.append(top)
    return pushed, left


def public_json(folder: Path, name: str) -> bytes:
    """The run record (normalised by `RunRecord`) or step record of `folder` as pushed: no local paths."""
    if name == RUN_RECORD:
        data: Any = RunRecord.load(folder).to_dict()
    else:
        try:
            data = without_local_paths(json.loads((folder / name).read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            data = {}
    return (json.dumps(data, indent=2, default=str) + "\n").encode()


def without_local_paths(value: Any) -> Any:
    """`value` with every local path (absolute, or with a folder in it) cut to its last part; `hf:` and
    `builtin:` specs, Hub repo ids (`NAMESPACE/NAME` that is not a local folder) and other strings kept."""
    if isinstance(value, dict):
        return {k: without_local_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_local_paths(v) for v in value]
    if not isinstance(value, str) or value.startswith(("hf:", "builtin:")):
        return value
    local = os.path.isabs(value) or value.startswith("~") or os.path.exists(value)
    if local or (("/" in value or "\\" in value) and not looks_like_repo_id(value)):
        return public_spec(value)
    return value


def refuse_if_token_inside(folder: Path, files: list[Path], token: str | None) -> None:
    """Refuse to publish a text file that contains the token."""
    if not token or len(token) < 8:
        return
    needle = token.encode()
    for path in files:
        if path.suffix.lower() in _TEXT_SUFFIXES and path.stat().st_size < 50 * 1024 * 1024:
            if needle in path.read_bytes():
                rel = path.relative_to(folder)
                raise UserError(
                    f"refusing to push {folder}: {rel} contains your Hugging Face token; remove it first"
                )


def link_tree(src: Path, dst: Path, skip: Callable[[str], bool]) -> None:
    """Mirror `src`'s files into `dst` as hard links (copies where linking fails): a checkpoint rotated away or
    rewritten later cannot change what is being uploaded."""
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src).as_posix()
        if not path.is_file() or skip(rel) or any(part.startswith(".") for part in rel.split("/")):
            continue
        target = dst / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)

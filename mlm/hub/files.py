"""Which local files go to the Hub, and the layout of what goes there: what a model repo needs (weights, config,
tokenizer, card, training arguments, the run and step records with local paths stripped), never intermediate
checkpoints, hidden or temporary files, run outputs (predictions, logs, metrics) or a file that holds the token."""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.errors import UserError

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
# What a model repo needs: `mlm push` sends these files of the folder's top level, and no others.
MODEL_FILES = [
    "*.safetensors", "model.safetensors.index.json", "pytorch_model*.bin", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "*.model", "chat_template.jinja", "README.md", "training_args.bin",
    "run_info.json", "mlm_step.json",
]  # fmt: skip
# ... and of a Trainer checkpoint also what resuming training needs, so a pushed checkpoint stays resumable
# (`hub_strategy: checkpoint` pushes these under last-checkpoint/ only).
RESUME_FILES = [
    "optimizer*",
    "scheduler*",
    "scaler*",
    "rng_state*",
    "trainer_state.json",
    "checkpoint_complete.json",
]
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


def model_files(folder: Path, exclude: tuple[str, ...] = ()) -> tuple[list[str], list[str]]:
    """(files to push, what is left out) of `folder`, by relative name: the top-level files a model repo needs
    (`MODEL_FILES`; for a Trainer checkpoint also `RESUME_FILES`) less `exclude`, and the model files of a
    model kept beside it in a subfolder (ELECTRA's `generator/`: it has a config.json; checkpoints are not
    such models); hidden and temporary files are neither. Left-out subfolders are named once, with a slash."""
    wanted = MODEL_FILES + (RESUME_FILES if (folder / "trainer_state.json").is_file() else [])
    beside = {d.name for d in folder.iterdir() if d.is_dir() and (d / "config.json").is_file()
              and not d.name.startswith(("checkpoint-", ".")) and d.name != LAST_CHECKPOINT}  # fmt: skip
    pushed: list[str] = []
    left: list[str] = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        parts = rel.split("/")
        if not path.is_file() or any(p.startswith(".") for p in parts) or matches(rel, ["*.tmp", "*.tmp-*"]):
            continue
        model_file = (len(parts) == 1 and matches(rel, wanted)) or (
            len(parts) == 2 and parts[0] in beside and matches(parts[1], MODEL_FILES))  # fmt: skip
        if model_file and not matches(rel, list(exclude)):
            pushed.append(rel)
        elif (top := rel if parts[0] in beside else parts[0] + ("/" if len(parts) > 1 else "")) not in left:
            left.append(top)
    return pushed, left


def public_json(folder: Path, name: str) -> bytes:
    """The run record (normalised by `RunRecord`) or step record of `folder` as pushed: no local paths."""
    if name == RUN_RECORD:
        from mlm.run_record import RunRecord

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
    from mlm.hub.client import looks_like_repo_id
    from mlm.run_record import public_spec

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


def refuse_run_folder(folder: Path) -> None:
    """A training run's folder is not a model: name the models inside it (final/, the newest checkpoints)."""
    if (folder / "config.json").is_file():
        return
    checkpoints = sorted(folder.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]) if
                         p.name.split("-")[-1].isdigit() else -1, reverse=True)  # fmt: skip
    inside = [p for p in [folder / "final", *checkpoints] if (p / "config.json").is_file()]
    if inside:
        names = ", ".join(str(p) for p in inside[:3])
        raise UserError(
            f"cannot push {folder}: it is a training run folder, not a model; push the model in it: {names}"
        )


def refuse_if_token_inside(folder: Path, files: list[Path], token: str | None) -> None:
    """Refuse to publish a text file (or the pickled training arguments) that contains the token."""
    if not token or len(token) < 8:
        return
    needle = token.encode()
    for path in files:
        checked = path.suffix.lower() in _TEXT_SUFFIXES or path.name == "training_args.bin"
        if checked and path.stat().st_size < 50 * 1024 * 1024:
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

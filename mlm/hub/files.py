"""Which local files go to the Hub, and the layout of what goes there: never intermediate checkpoints, hidden or
temporary files, the pickled TrainingArguments, or a text file that holds the token."""

from __future__ import annotations

import fnmatch
import os
import shutil
from collections.abc import Callable
from pathlib import Path

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
# Files of a Trainer checkpoint that only matter to resume training (pushed under last-checkpoint/ only); a
# checkpoint's mlm_step.json holds the config a resume is checked against.
TRAINING_STATE_PATTERNS = [
    "optimizer*", "scheduler*", "scaler*", "rng_state*", "trainer_state.json", "mlm_step.json",
]  # fmt: skip
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


def refuse_if_token_inside(folder: Path, files: list[Path], token: str | None) -> None:
    """Refuse to publish a text file that contains the token (a config or report that captured it)."""
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

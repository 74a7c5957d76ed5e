"""Checkpoint folders: their step, completeness, rotation, and where a run resumes from.

- `mark_complete` writes `checkpoint_complete.json` into a checkpoint once every process has written
  everything (with the data position, `blocks_consumed`); `latest_complete_checkpoint` picks the newest
  checkpoint that has it, so a checkpoint cut short by a kill is never resumed from.
- `resolve_resume` turns the `resume` option (latest, a folder, a Hub repo id) into a checkpoint folder, and
  checks a folder given by name is a whole checkpoint (a file cut short is named).
- `check_resume_config`: each checkpoint holds the run's config (`mlm_step.json`); resuming with other values
  of the options that change what is trained (RESUME_FREE lists those that do not) is refused, naming them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from data_prep.errors import CorruptFileError, UserError
from data_prep.io import read_json

COMPLETE_FILE = "checkpoint_complete.json"
CHECKPOINT_PREFIX = "checkpoint-"


def checkpoint_step(folder: str | os.PathLike) -> int | None:
    name = Path(folder).name
    if not name.startswith(CHECKPOINT_PREFIX):
        return None
    try:
        return int(name[len(CHECKPOINT_PREFIX) :])
    except ValueError:
        return None


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    """checkpoint-N folders of `output_dir`, newest first."""
    found = []
    try:
        entries = list(output_dir.iterdir())
    except OSError:
        return []
    for p in entries:
        step = checkpoint_step(p)
        if step is not None and p.is_dir():
            found.append((step, p))
    return sorted(found, reverse=True)


def mark_complete(folder: str | os.PathLike, global_step: int, data: dict | None = None) -> None:
    """Record that `folder` is whole: every file with its size, the step and the data position. Written last
    (atomically), once every process has written its part."""
    from data_prep.io import write_json

    folder = Path(folder)
    files = {
        p.relative_to(folder).as_posix(): p.stat().st_size
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != COMPLETE_FILE and not p.name.startswith(".")
    }
    write_json(folder / COMPLETE_FILE, {"global_step": global_step, "data": data or {}, "files": files})


def read_complete(folder: str | os.PathLike) -> dict | None:
    """The completeness record of a checkpoint when it is whole (every listed file there, same size)."""
    folder = Path(folder)
    try:
        record = json.loads((folder / COMPLETE_FILE).read_text())
        for rel, size in record["files"].items():
            if (folder / rel).stat().st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def latest_complete_checkpoint(output_dir: str | os.PathLike) -> tuple[Path | None, list[Path]]:
    """(newest complete checkpoint or None, incomplete checkpoints newer than it)."""
    found = _checkpoints(Path(output_dir))
    skipped = []
    for _, path in found:
        if read_complete(path) is not None:
            return path, skipped
        skipped.append(path)
    return None, skipped


def remove_checkpoints(paths: list[Path]) -> None:
    """Delete (incomplete or rotated) checkpoints: renamed first, so a half-deleted one never looks whole."""
    for path in paths:
        trash = path.with_name(f".{path.name}.deleting-{os.getpid()}")
        try:
            os.replace(path, trash)
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)


def remove_unfinished(output_dir: str | os.PathLike, after: int) -> list[Path]:
    """Remove the checkpoints after step `after` never marked complete: a run that failed or was stopped
    while saving leaves no half-written checkpoint (the complete ones stay)."""
    unfinished = [p for s, p in _checkpoints(Path(output_dir)) if s > after and read_complete(p) is None]
    remove_checkpoints(unfinished)
    return unfinished


def rotate_complete(output_dir: str | os.PathLike, keep: int | None) -> None:
    """Keep the newest `keep` complete checkpoints; drop older complete and incomplete ones."""
    if not keep or keep < 1:
        return
    found = _checkpoints(Path(output_dir))
    complete = [p for _, p in found if read_complete(p) is not None]
    if not complete:
        return
    newest = checkpoint_step(complete[0])
    stale = complete[keep:] + [
        p for s, p in found if s < newest and p not in complete
    ]  # incomplete and older than a whole one: the leftovers of a kill
    remove_checkpoints(stale)


def data_state(folder: str | os.PathLike) -> dict:
    """The data position a checkpoint records ({} when none)."""
    record = read_complete(folder)
    return dict(record.get("data") or {}) if record else {}


def resolve_resume(resume: str | None, output_dir: str | os.PathLike, is_main: bool = True) -> str | None:
    """The `resume` option as a checkpoint folder, or None: 'latest' (or `--resume` alone) is the newest
    complete checkpoint in `output_dir` (incomplete newer ones are removed), 'auto' the same or None, a
    folder itself, a Hub repo id its pushed `last-checkpoint/` (downloaded into output_dir/hub_resume)."""
    if not resume or str(resume).lower() in ("false", "no", "none"):
        return None
    if str(resume).lower() in ("latest", "true", "yes", "auto"):
        out = Path(output_dir)
        last, incomplete = latest_complete_checkpoint(out) if out.is_dir() else (None, [])
        if incomplete and is_main:
            names = ", ".join(p.name for p in incomplete)
            print(f"resume: removing incomplete checkpoint(s) {names} (interrupted while being written)")
            remove_checkpoints(incomplete)
        if last is None:
            if str(resume).lower() == "auto":
                return None
            raise UserError(f"resume: no checkpoint found in {out}")
        return str(last)
    if Path(resume).is_dir():
        check_checkpoint(resume)
        return str(resume)
    from mlm.hub import looks_like_repo_id
    from mlm.hub import resolve_resume as resolve_hub_resume

    if looks_like_repo_id(resume):
        return resolve_hub_resume(resume, str(Path(output_dir) / "hub_resume"))
    raise UserError(f"resume: checkpoint not found: {resume}")


def find_resume(resume: str | None, output_dir: str | os.PathLike) -> Path | None:
    """The local checkpoint `resume` names, found without changing anything (no clean-up, no download): for a
    check before the run claims its folder. None for a fresh run or a Hub repo id."""
    value = str(resume or "").lower()
    if not value or value in ("false", "no", "none"):
        return None
    if value in ("latest", "true", "yes", "auto"):
        out = Path(output_dir)
        return latest_complete_checkpoint(out)[0] if out.is_dir() else None
    if Path(resume).is_dir():
        check_checkpoint(resume)
        return Path(resume)
    return None


def resumed_step(resume_from: str | None) -> int:
    """The optimizer step a run resumed from `resume_from` starts at (0 for a fresh run)."""
    if not resume_from:
        return 0
    state = Path(resume_from) / "trainer_state.json"
    if state.is_file():
        return int(read_json(state).get("global_step", 0))
    return checkpoint_step(resume_from) or 0


def stream_start(resume_from: str | None, global_batch: int) -> int:
    """Blocks of the stream consumed before `resume_from` (0 for a fresh run)."""
    data = data_state(resume_from) if resume_from else {}
    if data.get("streaming") and "blocks_consumed" in data:
        return int(data["blocks_consumed"])
    return resumed_step(resume_from) * global_batch  # no position saved: every step took one global batch


def check_checkpoint(folder: str | os.PathLike) -> None:
    """A folder given to resume from is a whole checkpoint: a UserError naming the missing or cut-short file."""
    from mlm.model_folder import check_model_folder

    folder = Path(folder)
    if (folder / COMPLETE_FILE).is_file() and read_complete(folder) is None:
        raise CorruptFileError(
            f"resume: checkpoint {folder} is incomplete: {_damage(folder)}; resume from another checkpoint"
        )
    if not (folder / "trainer_state.json").is_file():
        raise UserError(
            f"resume: {folder} is not a checkpoint (no trainer_state.json); give a checkpoint-N folder"
        )
    read_json(folder / "trainer_state.json")
    check_model_folder(folder)


def _damage(folder: Path) -> str:
    """What differs from a checkpoint's completeness record: the first missing or resized file."""
    try:
        files = json.loads((folder / COMPLETE_FILE).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"{COMPLETE_FILE} is damaged"
    for rel, size in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} is missing"
        if path.stat().st_size != size:
            return f"{rel} is {path.stat().st_size} bytes, {size} when it was saved"
    return f"{COMPLETE_FILE} is damaged"


# Options that do not change what is trained: they may differ when a run resumes. Every other option does
# (learning rate, seed, preset, batch size, objective, masking, schedule, length, precision, ...).
RESUME_FREE = frozenset(
    {
        # where the run is, and how it resumes or restarts
        "data_dir", "tokenizer_dir", "output_dir", "resume_from_checkpoint", "force",
        # logging, progress and the trackers
        "disable_tqdm", "report_to", "run_name", "project", "max_eval_samples", "skip_memory_metrics",
        "include_num_input_tokens_seen", "debug", "local_rank", "do_train", "do_eval", "do_predict",
        # the Hub and the model card
        "push_to_hub", "license", "language", "datasets",
        # how long it trains: a finished run is extended by resuming it with more steps
        "max_steps", "num_train_epochs", "max_time_minutes",
        # how fast the same computation runs
        "use_cpu", "attn_implementation", "masked_only_head", "cpu_reuse_memory", "cpu_threads",
    }
)  # fmt: skip
# ... and every option whose name starts with one of these
RESUME_FREE_PREFIXES = ("logging_", "log_", "eval_", "per_device_eval_", "save_", "hub_", "trackio_",
                        "dataloader_", "torch_compile", "ddp_")  # fmt: skip


# Options the run works out when they are left unset (mlm.batch_size): unset when resuming, they take the value
# the checkpoint records, so their being unset is no change
TAKEN_FROM_CHECKPOINT = frozenset({"per_device_train_batch_size", "learning_rate"})


def resume_free(name: str) -> bool:
    """Option `name` may differ between a checkpoint and the run that resumes it."""
    return name in RESUME_FREE or name.startswith(RESUME_FREE_PREFIXES)


DATA_KEY = "data_fingerprint"  # the packed data's identity, in the step record's inputs


def changed_options(saved: dict, current: dict) -> list[str]:
    """The options that change what is trained whose value differs between two step records (`config`),
    and "data_dir" when the packed data differs (`inputs.data_fingerprint`); as "key old -> new"."""
    old, new = _plain(saved.get("config") or {}), _plain(current.get("config") or {})
    changed = [
        f"{k} {old[k]!r} -> {new[k]!r}"
        for k in sorted(new)
        if not resume_free(k)
        and k in old
        and old[k] != new[k]
        and not (new[k] is None and k in TAKEN_FROM_CHECKPOINT)
    ]
    before = (saved.get("inputs") or {}).get(DATA_KEY)
    after = (current.get("inputs") or {}).get(DATA_KEY)
    if before and after and before != after:
        changed.append(f"data_dir (other packed data: {new.get('data_dir')})")
    return changed


def _plain(values: dict) -> dict:
    return json.loads(json.dumps(values, default=str))


def check_resume_config(checkpoint: str | os.PathLike, current: dict, output_dir: str | os.PathLike) -> None:
    """Refuse to resume `checkpoint` (whose `mlm_step.json` holds the config it was trained with) under a
    config `current` that trains something else; a checkpoint without the record is not checked."""
    path = Path(checkpoint) / "mlm_step.json"
    if not path.is_file():
        return
    changed = changed_options(read_json(path), current)
    if changed:
        raise UserError(
            f"resume: {checkpoint} was trained with other settings: {'; '.join(changed)}. Resuming would mix two "
            f"runs: set them back to resume, or start over with --force (deletes the checkpoints in {output_dir})"
        )


def start_over(output_dir: str | os.PathLike) -> None:
    """`force`: delete every checkpoint of `output_dir`, so the run starts from step 0 and none is resumed."""
    old = [p for _, p in _checkpoints(Path(output_dir))]
    if old:
        print(f"force: deleting {len(old)} checkpoint(s) of {output_dir} and starting over")
        remove_checkpoints(old)

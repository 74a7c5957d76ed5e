"""Which models to score: MODEL's main model and its intermediate checkpoints (with tokens seen)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from data_prep.errors import UserError
from data_prep.io import read_json
from mlm.model_folder import check_model_folder


@dataclass
class Checkpoint:
    """A model to fine-tune: its folder, name, pretraining step and tokens seen (None when unknown)."""

    path: str
    name: str
    step: int | None
    tokens_seen: int | None


def resolve_models(model: str) -> tuple[Checkpoint, list[Checkpoint]]:
    """(main checkpoint, intermediate checkpoints in step order) for MODEL (folders, or a Hub id)."""
    from mlm.hub import looks_like_repo_id

    paths = [Path(os.path.expanduser(p.strip())) for p in str(model).split(",") if p.strip()]
    if len(paths) == 1 and not paths[0].exists() and looks_like_repo_id(str(model).strip()):
        return Checkpoint(path=str(model).strip(), name=str(model).strip(), step=None, tokens_seen=None), []
    for p in paths:
        if not p.exists():
            raise UserError(f"model not found: {p} (not a folder, nor a Hub id)")
    if len(paths) == 1 and not _is_model(paths[0]):
        paths = _run_models(paths[0])
    else:
        for p in paths:
            if not _is_model(p):
                raise UserError(f"model folder {p} has no config.json: it is not a saved model")
    for p in paths:
        check_model_folder(p)  # weights cut short are named now, not after the runs before them
    infos = [checkpoint_info(p) for p in paths]
    main = infos[-1]
    # a checkpoint of the same step as the final model is the same weights: score it once
    others = [c for c in infos[:-1] if c.step is None or c.step != main.step]
    return main, others


def _run_models(run: Path) -> list[Path]:
    """A pretraining output folder's whole checkpoint-N folders in step order, then final/ if it has one."""
    found = sorted(
        (c for c in run.glob("checkpoint-*") if c.is_dir() and _whole_checkpoint(c)),
        key=lambda c: checkpoint_info(c).step or 0,
    )
    final = run / "final"
    if not _is_model(final) and not found:
        raise UserError(
            f"{run} is neither a model folder (no config.json) nor a pretraining output folder "
            "(no final/ or checkpoint-N/)"
        )
    return [*found, final] if _is_model(final) else found


def checkpoint_info(path: Path) -> Checkpoint:
    """Step and pretraining tokens seen, from run_info.json (or trainer_state.json, or the folder name)."""
    from mlm.run_record import RunRecord

    training = RunRecord.load(path).training
    step, tokens = training.steps, training.tokens_seen
    if step is None and (path / "trainer_state.json").is_file():
        state = read_json(path / "trainer_state.json")
        step = state.get("global_step")
        batch = state.get("train_batch_size")
        seq = None
        if (path / "config.json").is_file():
            seq = read_json(path / "config.json").get("max_position_embeddings")
        tokens = step * batch * seq if step is not None and batch and seq else None
    if step is None:
        from mlm.checkpoints import checkpoint_step

        step = checkpoint_step(path)
    return Checkpoint(path=str(path), name=path.name, step=step, tokens_seen=tokens)


def _is_model(path: Path) -> bool:
    return (path / "config.json").is_file()


def _whole_checkpoint(path: Path) -> bool:
    """A checkpoint-N to score: whole by its completeness record when it has one (a run cut off while saving
    leaves a checkpoint without it, or with files of other sizes), else a model folder with weights."""
    from mlm.checkpoints import COMPLETE_FILE, read_complete

    if (path / COMPLETE_FILE).exists():
        return read_complete(path) is not None
    weights = any(path.glob("*.safetensors")) or (path / "pytorch_model.bin").is_file()
    return _is_model(path) and weights


def pick_evenly(items: list, n: int | None) -> list:
    """At most `n` of `items`, evenly spaced and keeping the last (all when `n` is None)."""
    if n is None or len(items) <= n:
        return items
    if n == 0:
        return []
    if n == 1:
        return [items[-1]]
    idx = sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})
    return [items[i] for i in idx]

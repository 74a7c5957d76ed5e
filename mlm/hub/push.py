"""`mlm push`: send a finished model folder (or a Trainer checkpoint) to a Hub repo, with its model card.

Only a model folder is pushed (config.json and safetensors weights, whole); a run folder, a recipe's output or
any other folder is refused before any request, naming the model folders inside it. A push reads the local
files and never modifies or deletes them (only the generated card is refreshed)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.errors import UserError
from mlm.hub.client import HubClient, say, validate_repo_id
from mlm.hub.files import (
    IGNORE_PATTERNS,
    RUN_RECORD,
    STEP_RECORD,
    files_to_upload,
    model_files,
    public_json,
    refuse_if_token_inside,
)
from mlm.model_card import write_model_card
from mlm.model_folder import SAFE_WEIGHTS, check_model_folder, is_model_folder, models_inside
from mlm.run_record import RUN_RECORD_NAME, RunRecord


@dataclass
class PushConfig:
    # Folder to push: a model + tokenizer folder (pretrained or fine-tuned), or a Trainer checkpoint.
    folder: str = field(default="", metadata={"help": "model + tokenizer folder to push"})
    # Hub repo, `user/name` or `org/name` (a bare `name` goes to your own namespace).
    repo_id: str = field(default="", metadata={"help": "Hub repo id, e.g. user/my-bert"})
    # Create the repo private (ignored when the repo already exists).
    private: bool = field(default=False, metadata={"help": "create the repo as private"})
    # Branch to push to; created from main when missing. None: main.
    revision: str | None = field(default=None, metadata={"help": "branch to push to (created if missing)"})
    # Commit message; None: "Upload FOLDER_NAME with mlm".
    commit_message: str | None = field(default=None, metadata={"help": "commit message"})
    # Hub token; None (recommended): HF_TOKEN or the cached `hf auth login`. Never printed or written anywhere.
    token: str | None = field(
        default=None, metadata={"help": "Hub token (default: HF_TOKEN / hf auth login)"}
    )
    # Attempts in all (first try + retries) on 5xx, 429, timeouts and connection errors.
    max_retries: int = field(default=5, metadata={"help": "attempts on transient errors"})
    # Wait before the first retry, doubled after each failed attempt (capped at 60 s).
    retry_backoff_s: float = field(default=1.0, metadata={"help": "first retry wait in seconds (doubles)"})

    def validate(self) -> None:
        if not self.folder:
            raise UserError("push: no folder given (the model folder to push)")
        if not self.repo_id:
            raise UserError("push: no repo id given (e.g. your-name/my-bert)")
        validate_repo_id(self.repo_id)
        if self.max_retries < 1:
            raise UserError(f"push: max_retries must be at least 1, got {self.max_retries}")
        if self.retry_backoff_s < 0:
            raise UserError(f"push: retry_backoff_s must be >= 0, got {self.retry_backoff_s}")
        if self.revision is not None and not self.revision.strip():
            raise UserError("push: revision must be a branch name or left unset")


def public_config(cfg: PushConfig) -> dict:
    """`asdict(cfg)` without the token: what may be written to mlm_step.json, recipe copies and reports."""
    d = dataclasses.asdict(cfg)
    d["token"] = None if cfg.token is None else "<hidden>"
    return d


def push(cfg: PushConfig) -> str:
    """Push what a model repo needs of `cfg.folder` (`files.model_files`; the run and step records without
    local paths) to `cfg.repo_id` (created if needed), print the repo URL and commit, and return the commit URL.
    The model card (README.md) is written into the folder first when the folder has none or has one mlm
    generated. Nothing else in the folder is modified, whatever happens."""
    cfg.validate()
    folder = Path(cfg.folder)
    check_pushable(folder)
    hub = HubClient(cfg.repo_id, private=cfg.private, token=cfg.token, revision=cfg.revision,
                    max_retries=cfg.max_retries, retry_backoff_s=cfg.retry_backoff_s)  # fmt: skip
    token = hub.check_token()
    try:
        refresh_card(folder, hub.repo_id)
    except OSError as exc:
        say(f"warning: could not write the model card into {folder} ({exc}); pushing without refreshing it")
    names, left_out = model_files(folder)
    # any file of the folder that holds the token is a leak to stop, pushed or not
    refuse_if_token_inside(
        folder, sorted({*files_to_upload(folder, IGNORE_PATTERNS), *(folder / n for n in names)}), token
    )
    info = hub.upload_files(
        upload_plan(folder, names), cfg.commit_message or f"Upload {folder.resolve().name} with mlm"
    )
    say(f"pushed {folder.resolve().name} to {info.repo_url} (commit {info.commit_url})")
    if left_out:
        say(f"not pushed (not part of a model repo): {', '.join(left_out)}")
    return str(info.commit_url)


def check_pushable(folder: Path) -> None:
    """A UserError unless `folder` holds a model to publish: a config.json and whole safetensors weights. A
    folder of models (a run, a recipe's output, fine-tuning's pretrained/ and scratch/) names the models in it."""
    if not folder.is_dir():
        raise UserError(f"cannot push {folder}: no such folder")
    if not is_model_folder(folder):
        inside = [str(p) for p in models_inside(folder)]
        if not inside:
            raise UserError(f"cannot push {folder}: it holds no model (a config.json and model.safetensors)")
        more = f" (and {len(inside) - 5} more)" if len(inside) > 5 else ""
        raise UserError(
            f"cannot push {folder}: it is not a model folder; push a model folder inside it: "
            f"{', '.join(inside[:5])}{more}"
        )
    if not any((folder / name).is_file() for name in SAFE_WEIGHTS):
        raise UserError(
            f"cannot push {folder}: its weights are pickled (pytorch_model.bin), which is never published; "
            "save the model again with save_pretrained(folder) to write model.safetensors"
        )
    check_model_folder(folder)


def upload_plan(folder: Path, names: list[str]) -> dict[str, Path | bytes]:
    """Repo path -> what to upload: the local file, or for the run and step records their public copy."""
    public = (RUN_RECORD, STEP_RECORD)
    return {
        n: public_json((folder / n).parent, Path(n).name) if Path(n).name in public else folder / n
        for n in names
    }


def check_can_push(repo_id: str, token: str | None = None) -> None:
    """Fail before any work when a push to `repo_id` could not happen: offline mode, or no token."""
    from huggingface_hub import constants

    validate_repo_id(repo_id)
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"cannot push to {repo_id}: HF_HUB_OFFLINE=1 is set; unset it to reach the Hub")
    HubClient(repo_id, token=token).check_token()


def refresh_card(folder: Path, repo_id: str, record: RunRecord | None = None) -> bool:
    """Write the card of `folder` for `repo_id`, from the folder's run_info.json (else `record`), unless the
    folder holds a card the user wrote. Returns whether it was written."""
    if (folder / RUN_RECORD_NAME).is_file() or record is None:
        record = RunRecord.load(folder)
    return write_model_card(folder, dataclasses.replace(record, repo_id=repo_id))

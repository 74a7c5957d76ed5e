"""`HubPushCallback`: push checkpoints to the Hub from a background thread while the Trainer keeps training."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from transformers import TrainerCallback

from data_prep.errors import UserError
from mlm.hub.client import HubClient, resolve_token
from mlm.hub.files import (
    IGNORE_PATTERNS,
    LAST_CHECKPOINT,
    RUN_RECORD,
    STAGING_IGNORE,
    STEP_RECORD,
    files_to_upload,
    link_tree,
    matches,
    model_files,
    public_json,
    refuse_if_token_inside,
)
from mlm.hub.push import check_pushable, refresh_card, upload_plan
from mlm.hub.queue import PushJob, PushQueue
from mlm.run_record import RunRecord

HUB_STRATEGIES = ("end", "every_save", "checkpoint", "all_checkpoints")


class HubPushCallback(TrainerCallback):
    """Push checkpoints to the Hub from a background thread while the Trainer keeps training.

    strategy:
      - "end": nothing during training; `finish(final_folder)` pushes the final model.
      - "every_save": at each save, the checkpoint's model + tokenizer files (no optimizer state) go to the
        repo root, with a model card from the checkpoint's run_info.json.
      - "checkpoint": as every_save, and the whole checkpoint (optimizer, scheduler, RNG, trainer state) goes to
        `last-checkpoint/`, so `resume_from_hub` can resume training from it.
      - "all_checkpoints": as checkpoint, but each checkpoint keeps its own `checkpoint-N/` folder.

    Pushes go through a `PushQueue` (one at a time, only the newest waiting checkpoint). Failures never reach the
    Trainer: they are printed to stderr and collected. Call `finish(final_folder)` (or `wait()`) before the run
    ends, so it ends only once the last push has finished or failed. `record` is the card's run record for
    folders without a run_info.json.
    """

    def __init__(self, repo_id: str, strategy: str = "every_save", private: bool = False, token: str | None = None,
                 revision: str | None = None, max_retries: int = 5, retry_backoff_s: float = 1.0,
                 record: RunRecord | None = None):  # fmt: skip
        if strategy not in HUB_STRATEGIES:
            raise UserError(f"unknown hub_strategy {strategy!r}: choose one of {', '.join(HUB_STRATEGIES)}")
        self.strategy = strategy
        self.record = record
        self._hub = HubClient(repo_id, private=private, token=token, revision=revision,
                              max_retries=max_retries, retry_backoff_s=retry_backoff_s)  # fmt: skip
        self.queue = PushQueue(self._upload, self._hint)

    def __repr__(self) -> str:  # never show the token
        return f"HubPushCallback(repo_id={self.repo_id!r}, strategy={self.strategy!r})"

    @property
    def repo_id(self) -> str:
        return self._hub.given_repo_id

    @property
    def failures(self) -> list[str]:
        return self.queue.failures

    @property
    def pushed(self) -> list[str]:
        return self.queue.pushed

    @property
    def skipped(self) -> list[str]:
        return self.queue.skipped

    # ---- Trainer events ----
    def on_save(self, args, state, control, **kwargs):
        if self.strategy == "end" or not getattr(state, "is_world_process_zero", True):
            return
        label = f"checkpoint-{state.global_step}"
        try:
            job = self._stage(Path(args.output_dir), label, state.global_step)
        except Exception as exc:  # never break training
            self.queue.fail(label, f"could not prepare the push ({type(exc).__name__}: {exc})")
            return
        self.queue.submit(job)

    def _stage(self, output_dir: Path, label: str, step: int) -> PushJob:
        """Hard links of the checkpoint's files, laid out as the strategy wants them in the repo, with a card."""
        checkpoint = output_dir / label
        if not checkpoint.is_dir():
            raise FileNotFoundError(f"{checkpoint} does not exist")
        staging = Path(tempfile.mkdtemp(prefix=".hub-push-", dir=output_dir))
        try:
            root = set(model_files(checkpoint)[0])
            link_tree(checkpoint, staging, lambda rel: rel not in root or rel in (RUN_RECORD, STEP_RECORD))
            for name in root & {RUN_RECORD, STEP_RECORD}:
                (staging / name).write_bytes(public_json(checkpoint, name))
            delete = None
            if self.strategy in ("checkpoint", "all_checkpoints"):
                sub = LAST_CHECKPOINT if self.strategy == "checkpoint" else label
                link_tree(checkpoint, staging / sub, lambda rel: matches(rel, IGNORE_PATTERNS))
                delete = [f"{sub}/*"] if self.strategy == "checkpoint" else None
            record = RunRecord.load(checkpoint) if (checkpoint / "run_info.json").is_file() else self.record
            refresh_card(staging, self.repo_id, record or RunRecord())
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        message = f"Training in progress, step {step}" + (
            "" if self.strategy == "every_save" else ", checkpoint"
        )
        return PushJob(label, staging, message, delete, staged=True)

    # ---- final push and waiting ----
    def push_folder(self, folder: str | os.PathLike, commit_message: str | None = None) -> None:
        """Queue a push of a finished model folder (e.g. output_dir/final) to the repo root."""
        folder = Path(folder)
        self.queue.submit(PushJob(folder.name, folder, commit_message or "End of training"), final=True)

    def finish(
        self, final_folder: str | os.PathLike | None = None, commit_message: str | None = None
    ) -> list[str]:
        """Push the final model folder (if given) after any checkpoint push, wait for all pushes, return failures."""
        if final_folder is not None:
            self.push_folder(final_folder, commit_message)
        return self.wait()

    def wait(self, timeout: float | None = None) -> list[str]:
        """Block until no push is running or waiting; return the failures so far (one line each)."""
        return self.queue.wait(timeout)

    # ---- in the worker ----
    def _upload(self, job: PushJob) -> str:
        self._hub.check_token()
        token = resolve_token(self._hub.token)
        if job.staged:
            refuse_if_token_inside(job.folder, files_to_upload(job.folder, STAGING_IGNORE), token)
            return str(
                self._hub.upload(job.folder, job.message, job.delete_patterns, STAGING_IGNORE).commit_url
            )
        check_pushable(job.folder)  # a final folder: checked, carded and pushed as `mlm push` does
        refresh_card(job.folder, self.repo_id, self.record)
        names = model_files(job.folder)[0]
        refuse_if_token_inside(job.folder, [job.folder / n for n in names], token)
        return str(self._hub.upload_files(upload_plan(job.folder, names), job.message).commit_url)

    def _hint(self, label: str, job: PushJob | None) -> str:
        if job is not None and not job.staged:
            return f"; push it later with `mlm push {job.folder} {self.repo_id}`"
        if label.startswith("checkpoint-"):
            return f"; the checkpoint is kept locally, push it later with `mlm push OUTPUT_DIR/{label} {self.repo_id}`"
        return ""

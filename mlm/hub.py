"""Share models on the Hugging Face Hub: `push` a folder, push checkpoints in the background while training
(`HubPushCallback`), and resume training from a checkpoint pushed to the Hub (`resume_from_hub`).

A failed push never costs a checkpoint: pushes read the local files (or hard links to them) and never modify or
delete them; transient failures (5xx, 429, timeouts, connection errors) are retried with exponential backoff;
401/403 end with `UserError("not logged in or no write access to REPO_ID (HTTP 401)")`.

The token comes from where `huggingface_hub` looks (`HF_TOKEN`, the cached `hf auth login`), or `PushConfig.token`.
It is never printed, logged or written to a file, and a push refuses to upload a text file that contains it.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from transformers import TrainerCallback

from data_prep.errors import UserError
from mlm.model_card import write_model_card
from mlm.run_record import RunRecord

T = TypeVar("T")

HUB_STRATEGIES = ("end", "every_save", "checkpoint", "all_checkpoints")
LAST_CHECKPOINT = "last-checkpoint"
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
_STAGING_IGNORE = [".*", "*/.*"]
# Files of a Trainer checkpoint that only matter to resume training (pushed under last-checkpoint/ only).
TRAINING_STATE_PATTERNS = ["optimizer*", "scheduler*", "scaler*", "rng_state*", "trainer_state.json"]
_TEXT_SUFFIXES = (
    ".json",
    ".md",
    ".txt",
    ".yaml",
    ".yml",
    ".jsonl",
    ".cfg",
    ".ini",
    ".toml",
    ".csv",
    ".tsv",
    ".py",
)
_MAX_WAIT_S = 60.0


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
        _validate_repo_id(self.repo_id)
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


class HubPushError(UserError):
    """A push that failed for a reason other than credentials (after retries when the error was transient)."""


# ---- helpers -------------------------------------------------------------------------------------------------
def _validate_repo_id(repo_id: str) -> None:
    if (
        not re.fullmatch(r"(?:[A-Za-z0-9][\w.\-]{0,95}/)?[A-Za-z0-9][\w.\-]{0,95}", repo_id)
        or ".." in repo_id
    ):
        raise UserError(
            f"invalid Hub repo id {repo_id!r}: expected NAME or NAMESPACE/NAME (letters, digits, - _ .)"
        )


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _status_of(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _classify(exc: BaseException) -> tuple[str, str]:
    """("auth", "HTTP 401") | ("retry", reason) | ("fatal", reason)."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return "offline", "HF_HUB_OFFLINE is set"
    status = _status_of(exc)
    if isinstance(exc, HfHubHTTPError) and status is not None:
        if status in (401, 403):
            return "auth", f"HTTP {status}"
        if status in (408, 429) or status >= 500:
            return "retry", str(status)
        server_message = getattr(exc, "server_message", None) or ""
        detail = f": {server_message.strip().splitlines()[0]}" if server_message.strip() else ""
        return "fatal", f"HTTP {status}{detail}"
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return "retry", "timeout"
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return "retry", f"connection error: {type(exc).__name__}"
    if isinstance(exc, ValueError):
        return "fatal", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return "bug", ""


def _with_retries(
    fn: Callable[[], T], repo_id: str, max_retries: int, backoff_s: float, what: str = "push to"
) -> T:
    """Run `fn`, retrying transient Hub errors with exponential backoff; map the rest to UserError."""
    for attempt in range(1, max_retries + 1):
        try:
            return fn()
        except UserError:
            raise
        except Exception as exc:
            kind, reason = _classify(exc)
            if kind == "bug":
                raise
            if kind == "auth":
                access = "access" if what.startswith("download") else "write access"
                raise UserError(f"not logged in or no {access} to {repo_id} ({reason})") from None
            if kind == "offline":
                raise UserError(
                    f"cannot {what} {repo_id}: HF_HUB_OFFLINE=1 is set; unset it to reach the Hub"
                ) from None
            if kind == "fatal":
                raise HubPushError(f"{what} {repo_id} failed ({reason})") from None
            if attempt == max_retries:
                raise HubPushError(
                    f"{what} {repo_id} failed after {max_retries} attempts ({reason})"
                ) from None
            wait = min(backoff_s * 2 ** (attempt - 1), _MAX_WAIT_S)
            _say(
                f"{what} {repo_id} failed ({reason}), retrying in {wait:.1f} s (attempt {attempt + 1}/{max_retries})"
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


def _resolve_token(token: str | None) -> str | None:
    from huggingface_hub import get_token

    return token if token is not None else get_token()


def _matches(rel: str, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(name, p) for p in patterns)


def _files_to_upload(folder: Path, ignore: list[str]) -> list[Path]:
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if (
            path.is_file()
            and not _matches(rel, ignore)
            and not any(part.startswith(".") for part in rel.split("/"))
        ):
            out.append(path)
    return out


def _refuse_if_token_inside(folder: Path, files: list[Path], token: str | None) -> None:
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


class _Hub:
    """One repo's pushes (resolves the namespace once)."""

    def __init__(self, repo_id: str, *, private: bool, token: str | None, revision: str | None,
                 max_retries: int, retry_backoff_s: float):  # fmt: skip
        from huggingface_hub import HfApi

        _validate_repo_id(repo_id)
        self.api = HfApi(token=token)
        self._token = token
        self.given_repo_id = repo_id
        self._repo_id: str | None = repo_id if "/" in repo_id else None
        self.private = private
        self.revision = revision if revision not in (None, "", "main") else None
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self._ready = False

    def _retry(self, fn: Callable[[], T], what: str = "push to") -> T:
        return _with_retries(
            fn, self._repo_id or self.given_repo_id, self.max_retries, self.retry_backoff_s, what
        )

    def check_token(self) -> str:
        token = _resolve_token(self._token)
        if not token:
            raise UserError(
                f"not logged in: no Hugging Face token found to push to {self.given_repo_id} "
                "(set HF_TOKEN or run `hf auth login`)"
            )
        return token

    @property
    def repo_id(self) -> str:
        if self._repo_id is None:
            name = self._retry(lambda: self.api.whoami()["name"])
            self._repo_id = f"{name}/{self.given_repo_id}"
        return self._repo_id

    def ensure_repo(self) -> None:
        if self._ready:
            return

        def create() -> None:
            self.api.create_repo(self.repo_id, private=self.private, exist_ok=True)
            if self.revision:
                self.api.create_branch(self.repo_id, branch=self.revision, exist_ok=True)

        self._retry(create)
        self._ready = True

    def upload(
        self,
        folder: Path,
        commit_message: str,
        delete_patterns: list[str] | None = None,
        ignore_patterns: list[str] = IGNORE_PATTERNS,
    ) -> str:
        def upload() -> str:
            self.ensure_repo()
            info = self.api.upload_folder(
                repo_id=self.repo_id,
                folder_path=folder,
                commit_message=commit_message,
                revision=self.revision,
                ignore_patterns=list(ignore_patterns),
                delete_patterns=delete_patterns,
            )
            return str(getattr(info, "commit_url", None) or info)

        return self._retry(upload)


# ---- push a folder -------------------------------------------------------------------------------------------
def push(cfg: PushConfig) -> str:
    """Push `cfg.folder` to `cfg.repo_id` (created if needed) and return the commit URL.

    The model card (README.md) is written into the folder first when the folder has none or has one mlm
    generated. Nothing else in the folder is modified, whatever happens.
    """
    cfg.validate()
    folder = Path(cfg.folder)
    if not folder.is_dir():
        raise UserError(f"cannot push {folder}: no such folder")
    files = _files_to_upload(folder, IGNORE_PATTERNS)
    if not files:
        raise UserError(f"cannot push {folder}: it holds no files to upload")
    hub = _Hub(cfg.repo_id, private=cfg.private, token=cfg.token, revision=cfg.revision,
               max_retries=cfg.max_retries, retry_backoff_s=cfg.retry_backoff_s)  # fmt: skip
    token = hub.check_token()
    repo_id = hub.repo_id
    try:
        write_model_card(folder, dataclasses.replace(RunRecord.load(folder), repo_id=repo_id))
    except OSError as exc:
        _say(f"warning: could not write the model card into {folder} ({exc}); pushing without refreshing it")
    files = _files_to_upload(folder, IGNORE_PATTERNS)
    _refuse_if_token_inside(folder, files, token)
    message = cfg.commit_message or f"Upload {folder.resolve().name} with mlm"
    return hub.upload(folder, message)


# ---- background pushes during training ----------------------------------------------------------------------
@dataclass
class _Job:
    label: str
    staging: Path | None  # removed after the push (hard links / copies of the files)
    folder: Path
    message: str
    delete_patterns: list[str] | None = None

    def cleanup(self) -> None:
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)


def _link_tree(src: Path, dst: Path, skip: Callable[[str], bool]) -> None:
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


class HubPushCallback(TrainerCallback):
    """Push checkpoints to the Hub from a background thread while the Trainer keeps training.

    strategy:
      - "end": nothing during training; `finish(final_folder)` pushes the final model.
      - "every_save": at each save, the checkpoint's model + tokenizer files (no optimizer state) go to the
        repo root, with a model card from the checkpoint's run_info.json.
      - "checkpoint": as every_save, and the whole checkpoint (optimizer, scheduler, RNG, trainer state) goes to
        `last-checkpoint/`, so `resume_from_hub` can resume training from it.
      - "all_checkpoints": as checkpoint, but each checkpoint keeps its own `checkpoint-N/` folder.

    One push runs at a time; when saves come faster than pushes, only the newest waiting checkpoint is pushed.
    Failures never reach the Trainer: they are printed to stderr and collected. Call `finish(final_folder)` (or
    `wait()`) before the run ends, so it ends only once the last push has finished or failed.
    """

    def __init__(
        self,
        repo_id: str,
        strategy: str = "every_save",
        private: bool = False,
        token: str | None = None,
        revision: str | None = None,
        max_retries: int = 5,
        retry_backoff_s: float = 1.0,
        run_info: dict | None = None,
    ):
        if strategy not in HUB_STRATEGIES:
            raise UserError(f"unknown hub_strategy {strategy!r}: choose one of {', '.join(HUB_STRATEGIES)}")
        self.strategy = strategy
        self.run_info = dict(run_info or {})
        self._hub = _Hub(repo_id, private=private, token=token, revision=revision,
                         max_retries=max_retries, retry_backoff_s=retry_backoff_s)  # fmt: skip
        self.failures: list[str] = []
        self.pushed: list[str] = []  # commit URLs, in order
        self.skipped: list[str] = []  # checkpoints superseded by a newer one before their push started
        self._cond = threading.Condition()
        self._pending: _Job | None = None  # newest checkpoint waiting for the worker
        self._finals: list[_Job] = []  # final-model pushes, never dropped
        self._worker: threading.Thread | None = None
        self._busy = False

    def __repr__(self) -> str:  # never show the token
        return f"HubPushCallback(repo_id={self._hub.given_repo_id!r}, strategy={self.strategy!r})"

    @property
    def repo_id(self) -> str:
        return self._hub.given_repo_id

    # ---- Trainer events ----
    def on_save(self, args, state, control, **kwargs):
        if self.strategy == "end" or not getattr(state, "is_world_process_zero", True):
            return
        label = f"checkpoint-{state.global_step}"
        try:
            checkpoint = Path(args.output_dir) / label
            if not checkpoint.is_dir():
                raise FileNotFoundError(f"{checkpoint} does not exist")
            staging = Path(tempfile.mkdtemp(prefix=".hub-push-", dir=args.output_dir))
            try:
                _link_tree(
                    checkpoint, staging, lambda rel: _matches(rel, TRAINING_STATE_PATTERNS + IGNORE_PATTERNS)
                )
                delete = None
                if self.strategy in ("checkpoint", "all_checkpoints"):
                    sub = LAST_CHECKPOINT if self.strategy == "checkpoint" else label
                    _link_tree(checkpoint, staging / sub, lambda rel: _matches(rel, IGNORE_PATTERNS))
                    delete = [f"{sub}/*"] if self.strategy == "checkpoint" else None
                info = {**self.run_info, **RunRecord.load(checkpoint).to_dict(), "repo_id": self.repo_id}
                write_model_card(staging, info)
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            message = f"Training in progress, step {state.global_step}"
            if self.strategy != "every_save":
                message += ", checkpoint"
            self._submit(_Job(label, staging, staging, message, delete), final=False)
        except Exception as exc:  # never break training
            self._fail(label, f"could not prepare the push ({type(exc).__name__}: {exc})", None)

    # ---- final push and waiting ----
    def push_folder(self, folder: str | os.PathLike, commit_message: str | None = None) -> None:
        """Queue a push of a finished model folder (e.g. output_dir/final) to the repo root."""
        folder = Path(folder)
        self._submit(_Job(folder.name, None, folder, commit_message or "End of training"), final=True)

    def finish(
        self, final_folder: str | os.PathLike | None = None, commit_message: str | None = None
    ) -> list[str]:
        """Push the final model folder (if given) after any checkpoint push, wait for all pushes, return failures."""
        if final_folder is not None:
            self.push_folder(final_folder, commit_message)
        return self.wait()

    def wait(self, timeout: float | None = None) -> list[str]:
        """Block until no push is running or waiting; return the failures so far (one line each)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy, timeout=timeout)
            return list(self.failures)

    # ---- worker ----
    def _submit(self, job: _Job, final: bool) -> None:
        with self._cond:
            if final:
                self._finals.append(job)
            else:
                if self._pending is not None:
                    self.skipped.append(self._pending.label)
                    self._pending.cleanup()
                self._pending = job
            if not self._busy:
                self._busy = True
                self._worker = threading.Thread(target=self._run, name="mlm-hub-push", daemon=False)
                self._worker.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._pending is not None:
                    job, self._pending = self._pending, None
                elif self._finals:
                    job = self._finals.pop(0)
                else:
                    self._busy = False
                    self._cond.notify_all()
                    return
            try:
                self._push(job)
            except Exception as exc:  # a bug must not leave waiters hanging
                self._fail(job.label, f"{type(exc).__name__}: {exc}", job)
            finally:
                job.cleanup()

    def _push(self, job: _Job) -> None:
        try:
            self._hub.check_token()
            if job.staging is None:  # a final folder: card in place, like `mlm push`
                write_model_card(
                    job.folder, {**self.run_info, **RunRecord.load(job.folder).to_dict(), "repo_id": self.repo_id}
                )
            ignore = IGNORE_PATTERNS if job.staging is None else _STAGING_IGNORE
            files = _files_to_upload(job.folder, ignore)
            _refuse_if_token_inside(job.folder, files, _resolve_token(self._hub._token))
            url = self._hub.upload(job.folder, job.message, job.delete_patterns, ignore)
        except UserError as exc:
            self._fail(job.label, str(exc), job)
            return
        with self._cond:
            self.pushed.append(url)

    def _fail(self, label: str, reason: str, job: _Job | None) -> None:
        where = ""
        if job is not None and job.staging is None:
            where = f"; push it later with `mlm push {job.folder} {self.repo_id}`"
        elif label.startswith("checkpoint-"):
            where = f"; the checkpoint is kept locally, push it later with `mlm push OUTPUT_DIR/{label} {self.repo_id}`"
        line = f"{label}: {reason}{where}"
        _say(f"warning: hub push failed: {line}")
        with self._cond:
            self.failures.append(line)


# ---- resume from the Hub -------------------------------------------------------------------------------------
def looks_like_repo_id(value: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*", value)) and ".." not in value


def resume_from_hub(
    repo_id: str,
    local_dir: str | os.PathLike,
    *,
    token: str | None = None,
    revision: str | None = None,
    max_retries: int = 5,
    retry_backoff_s: float = 1.0,
) -> str:
    """Download `last-checkpoint/` of `repo_id` into `local_dir` and return the local checkpoint path."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    _validate_repo_id(repo_id)

    def download() -> str:
        try:
            return snapshot_download(
                repo_id,
                allow_patterns=[f"{LAST_CHECKPOINT}/*"],
                local_dir=str(local_dir),
                revision=revision,
                token=token,
            )
        except RevisionNotFoundError:
            raise UserError(f"cannot resume from {repo_id}: no revision {revision or 'main'}") from None
        except RepositoryNotFoundError:
            raise UserError(
                f"cannot resume from {repo_id}: no such model repo on the Hub, or no access"
            ) from None
        except EntryNotFoundError:
            raise UserError(f"cannot resume from {repo_id}: it has no {LAST_CHECKPOINT}/") from None

    path = _with_retries(download, repo_id, max_retries, retry_backoff_s, what="download from")
    checkpoint = Path(path) / LAST_CHECKPOINT
    if not (checkpoint / "trainer_state.json").is_file():
        raise UserError(
            f"cannot resume from {repo_id}: it has no {LAST_CHECKPOINT}/ with a trainer state "
            "(push it during training with hub_strategy: checkpoint)"
        )
    return str(checkpoint)


def resolve_resume(value: str, local_dir: str | os.PathLike, *, token: str | None = None) -> str:
    """`--resume` value -> local checkpoint path: an existing local folder as is, else a Hub repo id."""
    if Path(value).exists():
        return value
    if looks_like_repo_id(value):
        return resume_from_hub(value, local_dir, token=token)
    raise UserError(
        f"cannot resume from {value!r}: not a local checkpoint folder nor a Hub repo id (user/name)"
    )


# ---- command line --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlm.hub",
        description="Push a model folder to the Hugging Face Hub (token: HF_TOKEN or `hf auth login`).",
    )
    parser.add_argument("folder")
    parser.add_argument("repo_id")
    parser.add_argument("--private", action="store_true")
    parser.add_argument("--revision", default=None)
    parser.add_argument("--commit-message", "--commit_message", dest="commit_message", default=None)
    parser.add_argument("--max-retries", "--max_retries", dest="max_retries", type=int, default=5)
    parser.add_argument(
        "--retry-backoff-s", "--retry_backoff_s", dest="retry_backoff_s", type=float, default=1.0
    )
    args = parser.parse_args(argv)
    cfg = PushConfig(**{k: v for k, v in vars(args).items()})
    try:
        url = push(cfg)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

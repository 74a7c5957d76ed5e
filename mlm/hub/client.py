"""Talk to the Hub for one repo: resolve its namespace, create it (and the branch), upload a folder, and retry
transient failures (5xx, 429, timeouts, connection errors) with exponential backoff. 401/403 end with
`UserError("not logged in or no write access to REPO_ID (HTTP 401)")`; other failures with `HubPushError`."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from data_prep.errors import UserError

T = TypeVar("T")
_MAX_WAIT_S = 60.0


class HubPushError(UserError):
    """A push that failed for a reason other than credentials (after retries when the error was transient)."""


def say(message: str) -> None:
    """A progress or warning line for the user (stderr)."""
    print(message, file=sys.stderr, flush=True)


def validate_repo_id(repo_id: str) -> None:
    if (
        not re.fullmatch(r"(?:[A-Za-z0-9][\w.\-]{0,95}/)?[A-Za-z0-9][\w.\-]{0,95}", repo_id)
        or ".." in repo_id
    ):
        raise UserError(
            f"invalid Hub repo id {repo_id!r}: expected NAME or NAMESPACE/NAME (letters, digits, - _ .)"
        )


def looks_like_repo_id(value: str) -> bool:
    """Whether `value` reads as `NAMESPACE/NAME` (used to tell a Hub repo from a missing local folder)."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.\-]*/[A-Za-z0-9][\w.\-]*", value)) and ".." not in value


def resolve_token(token: str | None) -> str | None:
    """`token`, else the one `huggingface_hub` finds (HF_TOKEN, the cached `hf auth login`)."""
    from huggingface_hub import get_token

    return token if token is not None else get_token()


def classify(exc: BaseException) -> tuple[str, str]:
    """("auth" | "offline" | "retry" | "fatal" | "bug", reason) for an exception raised by a Hub call."""
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    if isinstance(exc, OfflineModeIsEnabled):
        return "offline", "HF_HUB_OFFLINE is set"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if isinstance(exc, HfHubHTTPError) and status is not None:
        if status in (401, 403):
            return "auth", f"HTTP {status}"
        if status in (408, 429) or status >= 500:
            return "retry", str(status)
        server_message = (getattr(exc, "server_message", None) or "").strip()
        return "fatal", f"HTTP {status}" + (f": {server_message.splitlines()[0]}" if server_message else "")
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return "retry", "timeout"
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return "retry", f"connection error: {type(exc).__name__}"
    if isinstance(exc, ValueError):
        return "fatal", str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return "bug", ""


def with_retries(
    fn: Callable[[], T], repo_id: str, max_retries: int, backoff_s: float, what: str = "push to"
) -> T:
    """Run `fn`, retrying transient Hub errors with exponential backoff; map the rest to UserError."""
    for attempt in range(1, max_retries + 1):
        try:
            return fn()
        except UserError:
            raise
        except Exception as exc:
            kind, reason = classify(exc)
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
            say(
                f"{what} {repo_id} failed ({reason}), retrying in {wait:.1f} s (attempt {attempt + 1}/{max_retries})"
            )
            time.sleep(wait)
    raise AssertionError("unreachable")


class HubClient:
    """One repo's pushes: resolves the namespace once, creates the repo and branch once, uploads folders."""

    def __init__(self, repo_id: str, *, private: bool = False, token: str | None = None,
                 revision: str | None = None, max_retries: int = 5, retry_backoff_s: float = 1.0):  # fmt: skip
        from huggingface_hub import HfApi

        validate_repo_id(repo_id)
        self.api = HfApi(token=token)
        self.token = token
        self.given_repo_id = repo_id
        self._repo_id: str | None = repo_id if "/" in repo_id else None
        self.private = private
        self.revision = revision if revision not in (None, "", "main") else None
        self.max_retries = max_retries
        self.retry_backoff_s = retry_backoff_s
        self._ready = False

    def __repr__(self) -> str:  # never show the token
        return f"HubClient(repo_id={self.given_repo_id!r})"

    def _retry(self, fn: Callable[[], T], what: str = "push to") -> T:
        return with_retries(
            fn, self._repo_id or self.given_repo_id, self.max_retries, self.retry_backoff_s, what
        )

    def check_token(self) -> str:
        """The token to push with; a UserError before any request when there is none."""
        token = resolve_token(self.token)
        if not token:
            raise UserError(
                f"not logged in: no Hugging Face token found to push to {self.given_repo_id} "
                "(set HF_TOKEN or run `hf auth login`)"
            )
        return token

    @property
    def repo_id(self) -> str:
        """`NAMESPACE/NAME`: a bare name goes to the token owner's namespace."""
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
        self, folder: Path, commit_message: str, delete_patterns: list[str] | None, ignore_patterns: list[str]
    ) -> Any:
        """Upload `folder` (less `ignore_patterns`) as one commit, deleting the repo files `delete_patterns`
        match (retried as a whole); returns `huggingface_hub.CommitInfo`."""

        def upload() -> Any:
            self.ensure_repo()
            return self.api.upload_folder(
                repo_id=self.repo_id,
                folder_path=folder,
                commit_message=commit_message,
                revision=self.revision,
                ignore_patterns=list(ignore_patterns),
                delete_patterns=delete_patterns,
            )

        return self._retry(upload)

    def upload_files(self, files: dict[str, Path | bytes], commit_message: str) -> Any:
        """Upload `files` (repo path -> local file or content) as one commit (retried as a whole)."""
        from huggingface_hub import CommitOperationAdd

        def upload() -> Any:
            self.ensure_repo()
            operations = [CommitOperationAdd(path_in_repo=k, path_or_fileobj=v) for k, v in files.items()]
            return self.api.create_commit(
                repo_id=self.repo_id,
                operations=operations,
                commit_message=commit_message,
                revision=self.revision,
            )

        return self._retry(upload)

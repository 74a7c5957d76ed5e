"""Resume training from a checkpoint pushed to the Hub (`hub_strategy: checkpoint` puts it in last-checkpoint/)."""

from __future__ import annotations

import os
from pathlib import Path

from data_prep.errors import UserError
from mlm.hub.client import looks_like_repo_id, validate_repo_id, with_retries
from mlm.hub.files import LAST_CHECKPOINT


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

    validate_repo_id(repo_id)

    def download() -> str:
        try:
            return snapshot_download(
                repo_id, allow_patterns=[f"{LAST_CHECKPOINT}/*"], local_dir=str(local_dir), revision=revision,
                token=token,
            )  # fmt: skip
        except RevisionNotFoundError:
            raise UserError(f"cannot resume from {repo_id}: no revision {revision or 'main'}") from None
        except RepositoryNotFoundError:
            raise UserError(
                f"cannot resume from {repo_id}: no such model repo on the Hub, or no access"
            ) from None
        except EntryNotFoundError:
            raise UserError(f"cannot resume from {repo_id}: it has no {LAST_CHECKPOINT}/") from None

    path = with_retries(download, repo_id, max_retries, retry_backoff_s, what="download from")
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

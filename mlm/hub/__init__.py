"""Share models on the Hugging Face Hub: `push` a folder (`mlm push`), push checkpoints in the background while
training (`HubPushCallback`), and resume training from a checkpoint pushed to the Hub (`resolve_resume`).

    client.py    one repo: namespace, create, upload, retries of transient errors
    files.py     which local files go up (`model_files`: the one list of a model repo's files), the repo layout
    push.py      `push(PushConfig)`: a model folder (nothing else) and its model card
    queue.py     pushes one at a time in a background thread, newest checkpoint first
    callback.py  `HubPushCallback`: Trainer saves -> queued pushes
    resume.py    download last-checkpoint/ to resume training

A failed push never costs a checkpoint: pushes read the local files (or hard links to them) and never modify or
delete them. The token comes from where `huggingface_hub` looks (`HF_TOKEN`, the cached `hf auth login`), or
`PushConfig.token`; it is never printed, logged or written to a file, and a push refuses to upload a text file
that contains it.
"""

from mlm.hub.callback import HUB_STRATEGIES, HubPushCallback
from mlm.hub.client import HubPushError, looks_like_repo_id
from mlm.hub.push import PushConfig, check_can_push, public_config, push
from mlm.hub.queue import PushJob, PushQueue
from mlm.hub.resume import resolve_resume, resume_from_hub

__all__ = [
    "HUB_STRATEGIES",
    "HubPushCallback",
    "HubPushError",
    "PushConfig",
    "PushJob",
    "PushQueue",
    "check_can_push",
    "looks_like_repo_id",
    "public_config",
    "push",
    "resolve_resume",
    "resume_from_hub",
]

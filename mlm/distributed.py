"""Process-group housekeeping for runs started with torchrun."""

from __future__ import annotations

import atexit

import torch.distributed as dist

_registered = False


def destroy_process_group_at_exit() -> None:
    """Destroy the default process group while the interpreter is still whole, at exit. Idempotent.

    A gloo process group still alive when the interpreter shuts down can abort the process (SIGABRT,
    "terminate called without an active exception") as its worker threads are torn down; whichever process
    finishes first (any rank but 0, which writes the final model) is the one that hits it. Destroying the
    group at exit rather than at the end of `pretrain`/`finetune` keeps it usable for a later step of the
    same process (a recipe runs pretraining, then fine-tuning).
    """
    global _registered
    if not _registered and dist.is_available():
        atexit.register(_destroy)
        _registered = True


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()

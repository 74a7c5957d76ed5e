"""The `mlm` command with a recorder, for a torchrun worker: what this process trained on and what it wrote.

tests/test_multinode.py starts `torchrun ... tests/rank_trace.py pretrain ...` where a user types
`torchrun ... -m mlm pretrain ...`: the same command (`mlm.cli.entry`, what `python -m mlm` runs), after the
recorder below is installed in the worker. The package has no test hook: the recorder wraps mlm's training
step and masking collator from outside, and watches writes with Python's audit hooks.

MLM_TRACE_DIR: each process appends JSON lines to `rank<RANK>.jsonl` there, one unbuffered write each (a
SIGKILL loses nothing recorded before it):

- `{"pid": PID}` first: torchrun starts its workers in sessions of their own, so killing a node (or cleaning
  up after a timeout) means killing its launcher's process group and this process.

- `{"step": S, "draws": [...]}` for every micro-batch `training_step` trained on, S the optimizer step it
  belongs to (1-based). The draws are the `sample_id`s of the items this process's DataLoader handed the
  masking collator (a draw id is `epoch * N + block`): what was read and masked, not what a sampler would
  say. Collated batches are matched to training steps in order (a DataLoader may collate a batch ahead of the
  step that uses it, so a collated batch counts only once a step takes it).
- `{"write": PATH, "op": OP}` for every file or folder under MLM_TRACE_ROOT this process opened for writing,
  made, renamed, linked, removed or changed the mode of (Python's audit events), or wrote with `torch.save`
  or safetensors' `save_file` (they write from C++ / Rust, which no audit event sees).

MLM_STEP_PAUSE: seconds to sleep before each micro-batch, so that a kill lands mid-run.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import deque

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
# audit event -> positions of its path arguments
_PATH_EVENTS = {
    "os.mkdir": (0,),
    "os.rename": (0, 1),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.remove": (0,),
    "os.rmdir": (0,),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.utime": (0,),
    "shutil.rmtree": (0,),
    "shutil.copyfile": (1,),
    "shutil.move": (0, 1),
}


def install(folder: str, root: str, pause: float) -> None:
    rank = os.environ.get("RANK", "0")
    fd = os.open(os.path.join(folder, f"rank{rank}.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    root = os.path.realpath(root)

    def log(**record) -> None:
        os.write(fd, (json.dumps(record) + "\n").encode())

    def wrote(path, op: str) -> None:
        if isinstance(path, int):
            return
        full = os.path.realpath(os.fsdecode(path))
        if full == root or full.startswith(root + os.sep):
            log(write=os.path.relpath(full, root), op=op)

    def audit(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & _WRITE_FLAGS)
            if writing:
                wrote(path, "open")
        elif event in _PATH_EVENTS:
            for i in _PATH_EVENTS[event]:
                if i < len(args) and isinstance(args[i], str | bytes | os.PathLike):
                    wrote(args[i], event)

    log(pid=os.getpid())  # a torchrun worker is in a session of its own: killing a node kills it by its id
    sys.addaudithook(audit)

    # writers below Python: wrapped before transformers imports them under its own names
    import safetensors.torch
    import torch

    def saving(fn, op, where):
        def wrapper(*args, **kwargs):
            target = where(args, kwargs)
            if isinstance(target, str | os.PathLike):
                wrote(target, op)
            return fn(*args, **kwargs)

        return wrapper

    torch.save = saving(torch.save, "torch.save", lambda a, k: a[1] if len(a) > 1 else k.get("f"))
    safetensors.torch.save_file = saving(
        safetensors.torch.save_file, "save_file", lambda a, k: a[1] if len(a) > 1 else k.get("filename")
    )

    from mlm.streaming import SeededMasking
    from mlm.trainer import PretrainTrainer

    collated: deque[list[int]] = deque()
    collate, train_step = SeededMasking.__call__, PretrainTrainer.training_step

    def recording_collate(self, items):
        if "sample_id" in items[0]:
            collated.append([int(it["sample_id"]) for it in items])
        return collate(self, items)

    def recording_step(self, *args, **kwargs):
        if pause:
            time.sleep(pause)
        log(step=self.state.global_step + 1, draws=collated.popleft())
        return train_step(self, *args, **kwargs)

    SeededMasking.__call__ = recording_collate
    PretrainTrainer.training_step = recording_step


if __name__ == "__main__":
    install(
        os.environ["MLM_TRACE_DIR"],
        os.environ["MLM_TRACE_ROOT"],
        float(os.environ.get("MLM_STEP_PAUSE") or 0),
    )
    from mlm.cli import entry

    entry()

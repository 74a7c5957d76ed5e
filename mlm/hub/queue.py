"""A background queue of pushes: one at a time, in a worker thread, so training never waits for the Hub.

Of the checkpoints waiting, only the newest is pushed (the older ones are `skipped`); final pushes are never
dropped. A failed push is reported (stderr and `failures`) and the next one goes on.

Not `HfApi.run_as_future` (a one-thread executor): it pushes every job in order, so a slow Hub makes a queue of
stale checkpoints that the final push waits behind, and leaves a failure inside a future; nor the Trainer's
`push_to_hub`, which skips a save while a push runs (the newest checkpoint can go unpushed until the end), does
not retry, and uploads straight from files the next save overwrites or checkpoint rotation deletes (ours
pushes hard links, staged when the checkpoint is saved)."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from data_prep.errors import UserError
from mlm.hub.client import say


@dataclass
class PushJob:
    label: str  # "checkpoint-N" or the final folder's name, as failures name it
    folder: Path  # what to upload
    message: str  # the commit message
    delete_patterns: list[str] | None = None  # repo files to delete in the same commit
    staged: bool = False  # `folder` is a staging copy (hard links), removed once the push is over

    def cleanup(self) -> None:
        if self.staged:
            shutil.rmtree(self.folder, ignore_errors=True)


class PushQueue:
    """Runs `push(job)` (which returns the commit URL) for each submitted job in a background thread.

    `hint(label, job)` adds advice to a failure line (e.g. how to push it later)."""

    def __init__(
        self,
        push: Callable[[PushJob], str],
        hint: Callable[[str, PushJob | None], str] = lambda label, job: "",
    ) -> None:
        self._push, self._hint = push, hint
        self.failures: list[str] = []  # one line per failed push
        self.pushed: list[str] = []  # commit URLs, in order
        self.skipped: list[str] = []  # checkpoints superseded by a newer one before their push started
        self._cond = threading.Condition()
        self._pending: PushJob | None = None  # newest checkpoint waiting for the worker
        self._finals: list[PushJob] = []  # final-model pushes, never dropped
        self._busy = False

    def submit(self, job: PushJob, final: bool = False) -> None:
        """Queue `job`; a waiting checkpoint (`final=False`) replaces the one waiting before it."""
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
                threading.Thread(target=self._run, name="mlm-hub-push", daemon=False).start()

    def wait(self, timeout: float | None = None) -> list[str]:
        """Block until no push is running or waiting; return the failures so far (one line each)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy, timeout=timeout)
            return list(self.failures)

    def fail(self, label: str, reason: str, job: PushJob | None = None) -> None:
        """Record a failed (or never started) push and warn on stderr."""
        line = f"{label}: {reason}{self._hint(label, job)}"
        say(f"warning: hub push failed: {line}")
        with self._cond:
            self.failures.append(line)

    def _next(self) -> PushJob | None:
        with self._cond:
            if self._pending is not None:
                job, self._pending = self._pending, None
                return job
            if self._finals:
                return self._finals.pop(0)
            self._busy = False
            self._cond.notify_all()
            return None

    def _run(self) -> None:
        while (job := self._next()) is not None:
            try:
                url = self._push(job)
            except UserError as exc:
                self.fail(job.label, str(exc), job)
            except Exception as exc:  # a bug must not leave waiters hanging
                self.fail(job.label, f"{type(exc).__name__}: {exc}", job)
            else:
                with self._cond:
                    self.pushed.append(url)
            finally:
                job.cleanup()

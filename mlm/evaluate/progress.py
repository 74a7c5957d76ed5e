"""What `mlm evaluate` shows while it runs: one line per run with an ETA, and the libraries kept quiet.

[evaluate] run 3/24 task sst2, pretrained, 1% labels, seed 2: dev accuracy=0.8125 (41 s, ETA 12 min)
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from data_prep.progress import settings
from mlm.progress import library_output

if TYPE_CHECKING:
    from mlm.evaluate.plan import Outcome, Run


class Progress:
    """Counts the runs of a plan and logs one line as each ends, with an ETA from the runs timed so far."""

    def __init__(self, runs: list[Run], log: Callable[[str], Any]) -> None:
        self.runs = runs
        self.log = log
        self.done = 0
        self.seconds: dict[str, list[float]] = {}  # method -> durations of the runs that trained

    def run_done(self, run: Run, outcome: Outcome) -> None:
        """Log the line of `run`, the next one of the plan."""
        self.done += 1
        if outcome.reused:
            took = "reused"
        else:
            took = f"{outcome.seconds:.0f} s"
            self.seconds.setdefault(run.group.method, []).append(outcome.seconds)
        eta = self.eta()
        took += f", ETA {format_duration(eta)}" if eta else ""
        scores = brief(outcome.result, run.group.task.metrics)
        self.log(f"[evaluate] run {self.done}/{len(self.runs)} {run.describe()}: {scores} ({took})")

    def eta(self) -> float | None:
        """Seconds the remaining runs should take, each at its method's mean (None: nothing timed yet)."""
        remaining = self.runs[self.done :]
        if not remaining or not self.seconds:
            return None
        mean = {method: statistics.mean(times) for method, times in self.seconds.items()}
        slowest = max(mean.values())
        return sum(mean.get(r.group.method, slowest) for r in remaining)


def format_duration(seconds: float) -> str:
    """42 s, 12 min, 3.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def brief(result: dict[str, Any], metrics: list[str]) -> str:
    """'dev accuracy=0.8125; test accuracy=0.8010' from a run's result."""
    parts = []
    for split, name in (("validation", "dev"), ("test", "test")):
        values = result.get(split) or {}
        scores = " ".join(f"{m}={values[m]:.4f}" for m in metrics if m in values)
        if scores:
            parts.append(f"{name} {scores}")
    return "; ".join(parts)


@contextlib.contextmanager
def quiet(verbose: bool = False) -> Iterator[None]:
    """Unless `verbose`: transformers and datasets log errors only, show no progress bars, and the Trainer's
    log dicts (`{'loss': ...}`, which it print()s) do not reach stdout."""
    if verbose:
        with settings(verbose=True):
            yield
        return
    with library_output(), open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        yield

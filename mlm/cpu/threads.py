"""CPU thread count chosen by measurement, and chosen again when the machine gets busier or quieter.

The matmuls of a training step are split across torch's threads and each waits for the slowest. When
another process holds one of the cores, the thread that shares it sets the pace: on 2 cores, 2 threads then
run 4-10x slower than 1. No fixed count is right on a machine whose load changes, so `cpu_threads: auto`
times the real training steps (nothing extra is computed):

- probe: a few steps at each candidate count (all cores, half, one; the current count last, measured
  afresh), the fastest median wins;
- watch: when the steps become `slowdown` times slower than the chosen count measured, probe again at once;
  every `recheck_s` seconds probe anyway (the load may have gone); a probe that keeps the choice doubles
  that interval, up to `max_recheck_s`, a change resets it;
- a candidate whose first step is already far slower than the best is dropped after that step, so a probe
  on a busy machine costs about two slow steps.

Every choice is logged (logger `mlm`) with the timings behind it, and a new one is shown on stderr
unless `--quiet`. Changing the count changes the order of float sums, so
a run with `auto` is not bitwise reproducible; a fixed `cpu_threads` is.
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback

from data_prep.errors import UserError
from data_prep.progress import quiet

logger = logging.getLogger("mlm")


def candidate_counts(most: int) -> list[int]:
    """The thread counts a probe tries: all, half and one (most first, no repeats)."""
    return sorted({most, max(1, most // 2), 1}, reverse=True)


class ThreadTuner(TrainerCallback):
    """Times each training step (`on_step_begin` to `on_step_end`) and sets torch's thread count."""

    def __init__(
        self,
        most: int,
        probe_steps: int = 3,
        slowdown: float = 1.5,
        recheck_s: float = 30.0,
        max_recheck_s: float = 960.0,
        clock: Callable[[], float] = time.perf_counter,
        set_threads: Callable[[int], None] = torch.set_num_threads,
    ) -> None:
        self.candidates = candidate_counts(most)
        self.probe_steps, self.slowdown = probe_steps, slowdown
        self.base_recheck_s, self.max_recheck_s = recheck_s, max_recheck_s
        self.recheck_s = recheck_s
        self.clock, self.set_threads = clock, set_threads
        self.current = self.most = most
        self.chosen_s = 0.0  # median step time of the chosen count when it was last measured
        self.queue: list[int] = []  # counts still to time in this probe
        self.timings: dict[int, list[float]] = {}
        self.recent: deque[float] = deque(maxlen=probe_steps)
        self.last_probe = 0.0
        self.began: float | None = None
        self.warm = False
        self.why = ""
        self.reference: float | None = None
        self.history: list[dict] = []  # each choice: step, threads, seconds per step of each count tried
        self.tokens: int | None = None  # set by `CountTokens` where batches differ in size: time per token

    # -- the callback -----------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._start_probe("start")

    def on_step_begin(self, args, state, control, **kwargs):
        self.began = self.clock()

    def on_train_end(self, args, state, control, **kwargs):
        self.set_threads(self.most)  # the process goes on (a notebook, a test): leave it as it was

    def on_step_end(self, args, state, control, **kwargs):
        if self.began is None:
            return
        seconds, self.began = self.clock() - self.began, None
        if self.tokens:
            seconds *= 1000 / self.tokens  # seconds per 1,000 tokens: padded batches differ in length
        if self.queue:
            self._probe_step(seconds, state.global_step)
        else:
            self._watch_step(seconds)

    # -- probing ----------------------------------------------------------------------------------------
    def _start_probe(self, why: str) -> None:
        """Time the other counts, then the current one again (a slowdown may have passed by then)."""
        if len(self.candidates) < 2:
            return
        self.why = why
        full = len(self.recent) == self.recent.maxlen
        self.reference = statistics.median(self.recent) if full else None  # the current count, just watched
        others = [n for n in self.candidates if n != self.current]
        self.queue = [*others, self.current] if self.history else list(self.candidates)
        self.timings = {}
        self._use(self.queue[0])

    def _use(self, threads: int) -> None:
        self.current, self.warm = threads, True
        self.set_threads(threads)
        self.timings[threads] = []

    def _probe_step(self, seconds: float, step: int) -> None:
        known = [statistics.median(t) for n, t in self.timings.items() if n != self.current and t]
        if self.reference is not None:
            known.append(self.reference)
        hopeless = bool(known) and seconds > 2 * min(known)  # already far slower: one step is enough
        if self.warm and not hopeless:  # the first step after a change is not timed
            self.warm = False
            return
        times = self.timings[self.current]
        times.append(seconds)
        if len(times) < self.probe_steps and not hopeless:
            return
        self.queue.pop(0)
        if self.queue:
            self._use(self.queue[0])
        else:
            self._choose(step)

    def _choose(self, step: int) -> None:
        medians = {n: statistics.median(t) for n, t in self.timings.items()}
        fastest = min(medians, key=medians.get)
        previous = self.history[-1]["threads"] if self.history else None
        self.recheck_s = (
            self.base_recheck_s if fastest != previous else min(2 * self.recheck_s, self.max_recheck_s)
        )
        self.current, self.chosen_s = fastest, medians[fastest]
        self.set_threads(fastest)
        self.recent.clear()
        self.last_probe = self.clock()
        self.history.append({"step": step, "threads": fastest, "seconds_per_step": medians, "why": self.why})
        tried = ", ".join(f"{n}: {s:.3f}" for n, s in sorted(medians.items(), reverse=True))
        message = f"cpu_threads auto ({self.why}; step {step}): s/step by threads {tried} -> {fastest}"
        logger.info(message)
        if fastest != previous and not quiet():  # a new choice is shown; a kept one is only logged
            tqdm.write(message, file=sys.stderr)

    # -- watching ---------------------------------------------------------------------------------------
    def _watch_step(self, seconds: float) -> None:
        if not self.history:
            return
        self.recent.append(seconds)
        if (
            len(self.recent) == self.recent.maxlen
            and statistics.median(self.recent) > self.slowdown * self.chosen_s
        ):
            self._start_probe(
                f"steps slowed from {self.chosen_s:.3f} to {statistics.median(self.recent):.3f} s"
            )
        elif self.clock() - self.last_probe > self.recheck_s:
            self._start_probe(f"recheck after {self.recheck_s:.0f} s")


class CountTokens:
    """Wraps a data collator and tells the tuner the size of each batch (`input_ids` elements), so that
    batches padded to different lengths are compared per token."""

    def __init__(self, collator: Callable, tuner: ThreadTuner) -> None:
        self.collator, self.tuner = collator, tuner

    def __call__(self, features):
        batch = self.collator(features)
        self.tuner.tokens = int(batch["input_ids"].numel())
        return batch


def parse_cpu_threads(value: str) -> int | None:
    """None for "auto", else the fixed thread count (>= 1); anything else is a `UserError`."""
    text = str(value).strip().lower()
    if text == "auto":
        return None
    if not (text.isdigit() and int(text) >= 1):
        raise UserError(f"cpu_threads must be 'auto' or a positive integer, got {value!r}")
    return int(text)


def configure_cpu_threads(value: str, on_cpu: bool, world_size: int) -> ThreadTuner | None:
    """Apply `cpu_threads` for a run: a fixed count is set now; "auto" returns the tuner to add to the
    Trainer, or None where there is nothing to tune (GPU, one core, OMP_NUM_THREADS set, several processes)."""
    fixed = parse_cpu_threads(value)
    if not on_cpu:
        return None
    if fixed is not None:
        torch.set_num_threads(fixed)
        return None
    most = torch.get_num_threads()
    if most < 2 or world_size > 1 or os.environ.get("OMP_NUM_THREADS"):
        return None
    return ThreadTuner(most)

"""What a user sees while training: one progress bar with rate and ETA (under a time budget: elapsed of the
budget and tokens/s), the newest loss on it rather than a printed dict per log, and the libraries' own output
(load reports, `Map` bars) kept out of the way unless `mlm --verbose`. `mlm --quiet` hides the bars.

The settings are `data_prep.progress`'s (`configure(quiet=..., verbose=...)`), shared with the data steps."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

from transformers import PrinterCallback, ProgressCallback

from data_prep.progress import bar, quiet, verbose


class StepProgress(ProgressCallback):
    """The Trainer's progress bar. With `budget_s` (pretraining under `max_time_minutes`) it counts seconds
    of the budget, not steps of a bound never reached, and shows tokens/s; logs go on the bar as a postfix
    (printed as dicts only when verbose); `show=False` shows no bar (`disable_tqdm`, `--quiet`)."""

    def __init__(self, show: bool = True, budget_s: float | None = None, tokens_per_step: int | None = None):
        super().__init__()
        self.show, self.budget_s, self.tokens_per_step = show, budget_s, tokens_per_step
        self.started = 0.0
        self.first_step = 0
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step, self.current_step = time.perf_counter(), state.global_step, 0
        if not (self.show and state.is_world_process_zero):
            return
        if self.budget_s is None:
            return super().on_train_begin(args, state, control, **kwargs)
        fmt = "{l_bar}{bar}| {n:.0f}/{total:.0f} s of the time budget [{elapsed}<{remaining}{postfix}]"
        self.training_bar = bar(total=round(self.budget_s), desc="pretrain", bar_format=fmt)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is None:
            return
        if self.budget_s is None:
            return super().on_step_end(args, state, control, **kwargs)
        elapsed = time.perf_counter() - self.started
        self.training_bar.update(min(elapsed, self.budget_s) - self.training_bar.n)
        if self.tokens_per_step:
            rate = (state.global_step - self.first_step) * self.tokens_per_step / max(elapsed, 1e-9)
            self.postfix["tokens/s"] = f"{rate:,.0f}"
        self.postfix["step"] = str(state.global_step)
        self.training_bar.set_postfix(self.postfix, refresh=False)

    def on_prediction_step(self, args, state, control, **kwargs):
        if self.show and verbose():
            super().on_prediction_step(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if verbose():
            if self.training_bar is not None:
                return super().on_log(args, state, control, logs=logs, **kwargs)
            return PrinterCallback().on_log(args, state, control, logs=dict(logs or {}), **kwargs)
        if self.training_bar is not None and logs and "loss" in logs:
            self.postfix["loss"] = f"{logs['loss']:.4g}"
            self.training_bar.set_postfix(self.postfix)

    def on_train_end(self, args, state, control, **kwargs):
        if self.training_bar is not None:
            self.training_bar.close()
            self.training_bar = None


def install(trainer: Any, budget_s: float | None = None, tokens_per_step: int | None = None) -> None:
    """Put a `StepProgress` in place of the Trainer's own progress (or printer) callback."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    show = not (trainer.args.disable_tqdm or quiet())
    trainer.add_callback(StepProgress(show, budget_s, tokens_per_step))


@contextlib.contextmanager
def library_output(verbose: bool = False, bars: bool = False) -> Iterator[None]:
    """Unless `verbose`: transformers and datasets log errors only (no load reports or advice), and show
    their own progress bars (`Map`, loading weights) only if `bars`."""
    if verbose:
        yield
        return
    import datasets.utils
    import transformers.utils.logging as tf_logging
    from datasets.utils import logging as ds_logging

    levels = tf_logging.get_verbosity(), ds_logging.get_verbosity()
    shown = tf_logging.is_progress_bar_enabled(), not datasets.utils.are_progress_bars_disabled()
    tf_logging.set_verbosity_error()
    ds_logging.set_verbosity_error()
    if not bars:
        tf_logging.disable_progress_bar()
        datasets.utils.disable_progress_bars()
    try:
        yield
    finally:
        tf_logging.set_verbosity(levels[0])
        ds_logging.set_verbosity(levels[1])
        if shown[0]:
            tf_logging.enable_progress_bar()
        if shown[1]:
            datasets.utils.enable_progress_bars()

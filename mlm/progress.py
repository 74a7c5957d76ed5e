"""What a user sees while training: one progress bar labelled with what it trains, with rate and ETA (under a
time budget: elapsed of the budget), tokens/s and the model FLOP utilisation (MFU), the newest loss on it rather
than a printed dict per log; one line per evaluation of a fine-tuning run; a summary of what the run made at
the end (`say`). The libraries' own output (load reports, `Map` bars, the Trainer's log dicts) stays out of the
way unless asked for (`mlm --verbose`, `data_prep.progress.configure(verbose=True)`), from the command line
and from Python alike. `mlm --quiet` hides the bars.

The settings are `data_prep.progress`'s (`configure(quiet=..., verbose=...)`), shared with the data steps."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from transformers import PrinterCallback, ProgressCallback, TrainerCallback

from data_prep.progress import bar, quiet, verbose
from mlm.model_card.text import fmt_share


def say(line: str) -> None:
    """Print a line of what a run did or made, on stdout, above any progress bar."""
    from tqdm.auto import tqdm

    tqdm.write(line, file=sys.stdout)


def device_peak(device: Any) -> tuple[float, str]:
    """`mlm.flops.device_peak_flops(device)`: the peak FLOP/s of one device and where it comes from (a
    datasheet for a known GPU, else a short matmul probe), for the MFU a run shows. Call it once, before
    training; the probe's random matrices leave torch's random state as it was (the run's draws unchanged)."""
    import torch

    from mlm.flops import device_peak_flops

    device = torch.device(device)
    cuda = (
        [device.index if device.index is not None else torch.cuda.current_device()]
        if device.type == "cuda"
        else []
    )
    with torch.random.fork_rng(devices=cuda):
        return device_peak_flops(device)


def fmt_value(value: Any) -> str:
    """A metric as the summaries print it: 0.812, 5.525, 250.9, 1.235e+04; integers as 1,536."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3f}" if abs(value) < 10 else f"{value:.4g}"


class StepProgress(ProgressCallback):
    """The Trainer's progress bar, labelled with what it trains (`label`: "pretrain", "fine-tune (pretrained)").
    With `budget_s` (pretraining under `max_time_minutes`) it counts seconds of the budget, not steps of a
    bound never reached. With `tokens_per_step` it shows tokens/s, and with `flops_per_token` and
    `peak_flops` (the peak of all devices together) the share of that peak the model's FLOPs reach (`MFU`).
    The newest loss goes on the bar as a postfix (the log dicts are printed only when asked for:
    `data_prep.progress.verbose`); `show=False` shows no bar (`disable_tqdm`, `--quiet`)."""

    def __init__(
        self,
        show: bool = True,
        budget_s: float | None = None,
        tokens_per_step: int | None = None,
        label: str | None = None,
        flops_per_token: float | None = None,
        peak_flops: float | None = None,
    ):
        super().__init__()
        self.show, self.budget_s, self.tokens_per_step = show, budget_s, tokens_per_step
        self.label, self.flops_per_token, self.peak_flops = label, flops_per_token, peak_flops
        self.started = 0.0
        self.first_step = 0
        self.postfix: dict[str, str] = {}

    def on_train_begin(self, args, state, control, **kwargs):
        self.started, self.first_step, self.current_step = time.perf_counter(), state.global_step, 0
        if not (self.show and state.is_world_process_zero):
            return
        if self.budget_s is None:
            self.training_bar = bar(total=state.max_steps, desc=self.label or "")
            self.training_bar.update(state.global_step)  # a resumed run starts where it stopped
            self.current_step = state.global_step
            return
        fmt = "{l_bar}{bar}| {n:.0f}/{total:.0f} s of the time budget [{elapsed}<{remaining}{postfix}]"
        self.training_bar = bar(total=round(self.budget_s), desc=self.label or "pretrain", bar_format=fmt)

    def on_step_end(self, args, state, control, **kwargs):
        if self.training_bar is None:
            return
        elapsed = time.perf_counter() - self.started
        if self.budget_s is None:
            self.training_bar.update(state.global_step - self.current_step)
            self.current_step = state.global_step
        else:
            self.training_bar.update(min(elapsed, self.budget_s) - self.training_bar.n)
        if self.tokens_per_step:
            rate = (state.global_step - self.first_step) * self.tokens_per_step / max(elapsed, 1e-9)
            self.postfix["tokens/s"] = f"{rate:,.0f}"
            if self.flops_per_token and self.peak_flops:
                self.postfix["MFU"] = fmt_share(rate * self.flops_per_token / self.peak_flops)
        if self.budget_s is not None:
            self.postfix["step"] = str(state.global_step)
        if self.postfix:
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


def install(
    trainer: Any,
    budget_s: float | None = None,
    tokens_per_step: int | None = None,
    label: str | None = None,
    flops_per_token: float | None = None,
    peak_flops: float | None = None,
) -> StepProgress:
    """Put a `StepProgress` in place of the Trainer's own progress (or printer) callback; returns it."""
    trainer.remove_callback(ProgressCallback)
    trainer.remove_callback(PrinterCallback)
    show = not (trainer.args.disable_tqdm or quiet())
    progress = StepProgress(show, budget_s, tokens_per_step, label, flops_per_token, peak_flops)
    trainer.add_callback(progress)
    return progress


class EvaluationLines(TrainerCallback):
    """One line per evaluation during training, above the bar: `epoch 2: validation accuracy 0.812,
    f1_macro 0.790, loss 0.412 (best)`. `metrics`: the names to show, in order (the Trainer's `eval_` prefix
    left out), then the loss; `is_best(state)`: whether this evaluation is the best so far (the one kept)."""

    def __init__(
        self, metrics: list[str], is_best: Callable[[Any], bool] | None = None, split: str = "validation"
    ) -> None:
        self.metrics, self.is_best, self.split = list(metrics), is_best, split

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not state.is_world_process_zero or not metrics:
            return
        names = [*self.metrics, *([] if "loss" in self.metrics else ["loss"])]
        values = [
            f"{name} {fmt_value(metrics[f'eval_{name}'])}" for name in names if f"eval_{name}" in metrics
        ]
        best = " (best)" if self.is_best is not None and self.is_best(state) else ""
        say(f"{at(state.global_step, state.epoch)}: {self.split} {', '.join(values)}{best}")


def at(step: int, epoch: float | None) -> str:
    """`epoch 2` at the end of an epoch, else `step 50 (epoch 1.28)`."""
    epoch = epoch or 0.0
    if abs(epoch - round(epoch)) < 1e-6 and round(epoch) > 0:
        return f"epoch {round(epoch)}"
    return f"step {step} (epoch {epoch:.2f})"


@contextlib.contextmanager
def run_output() -> Iterator[None]:
    """What a training run shows, from the `mlm` command or from Python: the libraries kept quiet (no load
    reports, no `Map` or shard-writing bars) unless asked for (`data_prep.progress.verbose`)."""
    with library_output(verbose=verbose()):
        yield


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

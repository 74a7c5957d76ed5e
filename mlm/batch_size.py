"""The per-device batch of a pretraining run that leaves `per_device_train_batch_size` unset, and the learning
rate that goes with it.

- CPU (or `use_cpu`): 64, as before; the default learning rate unchanged.
- One GPU: the largest power of two that fits and still pays. Starting at 64 (`START`), the batch doubles
  while a training step of the real model fits in memory (below `HEADROOM` of it at its peak, room kept for
  the optimizer's moments) and the tokens/s rise by at least 10% (`MIN_GAIN`), up to 4096 (`CAP`); the
  first doubling that runs out of memory, or gains less, stops it. If 64 does not fit, the batch halves
  until one does. The choice is printed once:
  `per_device_train_batch_size auto: 512 (64: 0.31M tok/s, ..., 512: 1.45M tok/s, 1024: 1.51M tok/s, +4% -> stop)`.
  With `learning_rate` unset, the default rate for the blocks (1e-3 BERT, 3e-3 ModernBERT: measured at
  batch 32 and used at the default 64) is scaled by the square root of the batch over 64 (the square-root
  rule for Adam, Malladi et al. 2022), at most 4 times: these rates are already high ones, and a GPU batch
  of thousands is beyond what they were measured at (`scaled_learning_rate`). A rate given is kept.
- A distributed launch: 64, not searched (each process would time its own GPU, and they must agree).
- A resumed run takes, for what the user left unset, the batch and rate its checkpoint's `mlm_step.json`
  records (the checkpoints record the resolved config), so it trains on as it began and nothing is searched
  again; `mlm.checkpoints` counts an option left unset as no change from the checkpoint's value. A checkpoint
  on the Hub is downloaded after this choice: there, a searched batch other than the checkpoint's is refused
  by the resume check, which names the value to set.

The result is a resolved copy of the config (`resolve_batch_size`) holding the batch and the learning rate the
run uses; the user's config is never changed. The search (`search_batch_size`) is a pure function of a step
timer `try_step(batch) -> seconds per step, or None when it does not fit`; `StepTimer` is that timer on the
GPU: forward and backward of the model on real packed blocks under the run's precision, synchronised, an
out-of-memory error caught and the memory freed after each try.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from data_prep.errors import UserError

DEFAULT_BATCH = 64  # the CPU default, the search's start, and the batch the default learning rates apply at
START = 64
CAP = 4096
MIN_GAIN = 0.10  # a doubling must raise tokens/s by this much to be taken
HEADROOM = 0.9  # a step whose peak memory is above this share of the GPU's does not fit
MAX_LR_FACTOR = 4.0  # the square-root rule stops at 4x the default rate (batch 1024)

StepFn = Callable[[int], "float | None"]


@dataclass(frozen=True)
class Trial:
    """One timed batch: seconds per training step, None when it did not fit."""

    batch: int
    seconds: float | None
    tokens_per_second: float | None = None


@dataclass(frozen=True)
class BatchChoice:
    """The search's result: the batch, every trial in order, and why it stopped (gain, oom or cap)."""

    batch: int
    trials: tuple[Trial, ...]
    stop: str

    def describe(self) -> str:
        """One line: `per_device_train_batch_size auto: 512 (256: 1.21M tok/s, 512: 1.45M tok/s, 1024: 1.51M
        tok/s, +4% -> stop)`."""
        at = next(i for i, t in enumerate(self.trials) if t.batch == self.batch and t.seconds is not None)
        parts = []
        for i, t in enumerate(self.trials):
            stop = " -> stop" if i > at else ""  # the doubling after the choice, that did not fit or pay
            if t.seconds is None:
                parts.append(f"{t.batch}: out of memory{stop}")
                continue
            text = f"{t.batch}: {format_rate(t.tokens_per_second)} tok/s"
            if stop:
                text += f", {t.tokens_per_second / self.trials[at].tokens_per_second - 1:+.0%}{stop}"
            parts.append(text)
        if self.stop == "cap":
            parts.append(f"cap {CAP}")
        return f"per_device_train_batch_size auto: {self.batch} ({', '.join(parts)})"


def format_rate(x: float | None) -> str:
    if x is None:
        return "?"
    if x >= 1e6:
        return f"{x / 1e6:.2f}M"
    if x >= 1e3:
        return f"{x / 1e3:.1f}k"
    return f"{x:.0f}"


def search_batch_size(
    try_step: StepFn,
    tokens_per_example: int,
    start: int = START,
    cap: int = CAP,
    min_gain: float = MIN_GAIN,
) -> BatchChoice:
    """The largest power-of-two batch from `start` up to `cap` that fits (`try_step` not None) and whose
    tokens/s are at least (1 + min_gain) times the previous one's; below `start` when `start` does not fit.
    A UserError when not even one example fits."""
    trials: list[Trial] = []

    def run(batch: int) -> Trial:
        seconds = try_step(batch)
        rate = batch * tokens_per_example / seconds if seconds is not None and seconds > 0 else None
        trial = Trial(batch, seconds if rate is not None else None, rate)
        trials.append(trial)
        return trial

    best = run(start)
    while best.seconds is None:  # the start does not fit: halve until one does
        if best.batch == 1:
            raise UserError(
                f"pretrain: one block of {tokens_per_example} tokens does not fit in GPU memory for a training "
                "step; use a smaller preset or shorter blocks"
            )
        best = run(best.batch // 2)
        if best.seconds is not None:
            return BatchChoice(best.batch, tuple(trials), "oom")
    while True:
        if best.batch * 2 > cap:
            return BatchChoice(best.batch, tuple(trials), "cap")
        nxt = run(best.batch * 2)
        if nxt.seconds is None:
            return BatchChoice(best.batch, tuple(trials), "oom")
        if nxt.tokens_per_second < best.tokens_per_second * (1 + min_gain):
            return BatchChoice(best.batch, tuple(trials), "gain")
        best = nxt


def scaled_learning_rate(rate: float, batch: int, reference: int = DEFAULT_BATCH) -> float:
    """`rate` (the default for a batch of `reference`) at `batch`: square-root scaling (the rule for Adam:
    the gradient noise falls with the square root of the batch), at most `MAX_LR_FACTOR` times `rate`."""
    return rate * min(math.sqrt(batch / reference), MAX_LR_FACTOR)


def is_out_of_memory(e: BaseException) -> bool:
    """A CUDA out-of-memory error, including the cuBLAS/cuDNN ones raised as a plain RuntimeError."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "out of memory" in text or "CUBLAS_STATUS_ALLOC_FAILED" in text or "CUDNN_STATUS_ALLOC_FAILED" in text
    )


class StepTimer:
    """`try_step` for the search: seconds per training step of `model` (forward and backward, no optimizer
    step, so the weights do not change) on `make_batch(batch)` moved to `device`, under `autocast` (a dtype
    or None); the mean of `steps` steps after one warm-up. Memory for the optimizer's two moments of every
    trainable weight is held during the try. None when it runs out of memory or its peak is above
    `headroom` of the GPU's memory. The gradients and the memory are freed after every try."""

    def __init__(
        self,
        model: torch.nn.Module,
        make_batch: Callable[[int], dict[str, torch.Tensor]],
        device: torch.device,
        autocast: torch.dtype | None = None,
        steps: int = 3,
        headroom: float = HEADROOM,
    ) -> None:
        self.model, self.make_batch, self.device = model, make_batch, torch.device(device)
        self.autocast, self.steps, self.headroom = autocast, steps, headroom
        self.optimizer_elements = 2 * sum(p.numel() for p in model.parameters() if p.requires_grad)

    def __call__(self, batch: int) -> float | None:
        was_training = self.model.training
        self.model.train()
        seconds: float | None = None
        try:
            seconds = self._time(batch)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not is_out_of_memory(e):
                raise
            seconds = None
        finally:
            self.model.zero_grad(set_to_none=True)
            self.model.train(was_training)
            self._free()
        if seconds is not None and self._peak_fraction() > self.headroom:
            return None
        return seconds

    def _time(self, batch: int) -> float:
        inputs = {k: v.to(self.device, non_blocking=True) for k, v in self.make_batch(batch).items()}
        self._reset_peak()
        reserve = torch.empty(self.optimizer_elements, dtype=torch.float32, device=self.device)
        self._step(inputs)  # warm-up: kernels chosen, memory allocated
        self._sync()
        started = time.perf_counter()
        for _ in range(self.steps):
            self._step(inputs)
        self._sync()
        del reserve
        return (time.perf_counter() - started) / self.steps

    def _step(self, inputs: dict[str, torch.Tensor]) -> None:
        self.model.zero_grad(set_to_none=True)
        with torch.autocast(
            self.device.type, dtype=self.autocast or torch.float32, enabled=bool(self.autocast)
        ):
            out = self.model(**inputs)
        loss = out["loss"] if isinstance(out, dict) else out[0]
        loss.backward()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def _reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _peak_fraction(self) -> float:
        if self.device.type != "cuda":
            return 0.0
        total = torch.cuda.get_device_properties(self.device).total_memory
        return torch.cuda.max_memory_allocated(self.device) / total

    def _free(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def block_batches(objective: Any, train_split: Any) -> Callable[[int], dict[str, torch.Tensor]]:
    """Training batches of n blocks as the run makes them: the first packed blocks (repeated when there are
    fewer than n) through the objective's collator, its masking seeded."""
    from mlm.data import BlockDataset

    blocks = BlockDataset(train_split.select(range(min(len(train_split), CAP))))
    collator = objective.collator(0)
    return lambda n: collator([blocks[i] for i in range(n)])


def gpu_step_timer(cfg: Any, objective: Any, model: torch.nn.Module, train_split: Any) -> StepTimer:
    """The `StepTimer` of a run on this process's GPU: the model moved there (the Trainer would move it), the
    precision `device_values` chooses. It times the model as built, without activation recomputation: the
    batch it picks fits without it."""
    from mlm.options import device_values

    device = torch.device("cuda", torch.cuda.current_device())
    model.to(device)
    dtype = torch.bfloat16 if device_values(cfg)["bf16"] else torch.float16 if cfg.fp16 else None
    return StepTimer(model, block_batches(objective, train_split), device, autocast=dtype)


def recorded_config(cfg: Any) -> tuple[str | None, dict]:
    """The checkpoint this run resumes (found without changing anything) and the config its `mlm_step.json`
    records; (None, {}) for a fresh run, a Hub checkpoint (not downloaded yet) or a checkpoint without one."""
    from data_prep.steps import read_step_metadata
    from mlm.checkpoints import find_resume

    checkpoint = None if cfg.force else find_resume(cfg.resume_from_checkpoint, cfg.output_dir)
    if checkpoint is None:
        return None, {}
    meta = read_step_metadata(checkpoint) or {}
    return str(checkpoint), dict(meta.get("config") or {})


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _say(line: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        print(line, flush=True)


def resolve_batch_size(
    cfg: Any,
    default_learning_rate: float,
    seq_len: int,
    timer: Callable[[], StepFn] | None = None,
    gpu: bool | None = None,
) -> Any:
    """The config the run trains with (a copy; `cfg` itself when nothing is to be set): an unset
    `per_device_train_batch_size` or `learning_rate` takes the value recorded in the checkpoint the run
    resumes; else the batch is searched with `timer()` on one GPU (`gpu`: default, the config's device) and
    is 64 elsewhere, and the learning rate is `default_learning_rate` scaled to a searched batch, or stays
    unset (the default for the blocks, as before). A config checked against a checkpoint's record compares
    equal when they agree: a batch or rate the resolution set is recorded, an unset one stays unset."""
    from mlm.options import on_gpu

    checkpoint, recorded = recorded_config(cfg)
    batch, rate = cfg.per_device_train_batch_size, cfg.learning_rate
    if batch is None and recorded.get("per_device_train_batch_size") is not None:
        batch = int(recorded["per_device_train_batch_size"])
        _say(f"per_device_train_batch_size: {batch} (as {checkpoint} was trained)")
    if rate is None and recorded.get("learning_rate") is not None:
        rate = float(recorded["learning_rate"])
    choice = None
    if batch is None:
        gpu = on_gpu(cfg) if gpu is None else gpu
        if gpu and _distributed():
            _say(f"per_device_train_batch_size auto: {DEFAULT_BATCH} (not searched under a distributed launch, "
                 "where the processes must agree: set per_device_train_batch_size to fill the GPUs)")  # fmt: skip
        elif gpu and timer is not None:
            choice = search_batch_size(timer(), seq_len)
        batch = choice.batch if choice is not None else DEFAULT_BATCH
    if choice is not None:
        line = choice.describe()
        if rate is None:
            rate = scaled_learning_rate(default_learning_rate, batch)
            line += (f"; learning_rate {rate:.3g} = {default_learning_rate:g} x sqrt({batch}/{DEFAULT_BATCH}) "
                     f"(at most x{MAX_LR_FACTOR:g})")  # fmt: skip
        _say(line)
    if batch == cfg.per_device_train_batch_size and rate == cfg.learning_rate:
        return cfg
    return dataclasses.replace(cfg, per_device_train_batch_size=batch, learning_rate=rate)


def resolve_pretraining_batch(
    cfg: Any, objective: Any, model: torch.nn.Module, data: Any, learning_rate: float
):
    """`resolve_batch_size` for a pretraining run: the search times `model` on the run's packed blocks."""
    return resolve_batch_size(
        cfg,
        learning_rate,
        data.seq_len,
        timer=lambda: gpu_step_timer(cfg, objective, model, data.splits["train"]),
    )

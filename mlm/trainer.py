"""The pretraining `Trainer` and its callbacks: time budget, exact resume, the run record in checkpoints,
the mask-rate schedule."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from transformers import Trainer, TrainerCallback

from data_prep.io import match_file_modes
from data_prep.tokenizer import portable_tokenizer_config
from mlm.checkpoints import mark_complete, resumed_step, rotate_complete
from mlm.data import BlockDataset, stack_collate
from mlm.run_record import RunRecord
from mlm.streaming import EpochSampler, PackedStream, step_seed


class TimeBudget(TrainerCallback):
    """Fit the step count and the LR schedule to a wall-clock budget (`max_time_minutes`).

    Training starts with `max_steps` = MAX_STEPS (a bound never reached). After `calibrate` steps, and again
    every `refit` steps, the seconds per step so far (evaluations and saves included, the first `skip` steps
    left out) give the number of steps that fit before the deadline; `state.max_steps` is set to it and the
    scheduler's lambdas are rebuilt for that total (same schedule type and warmup ratio), continuing from the
    current step. When the next step would end after the deadline, the current step is made the last one, so
    Trainer's usual end-of-training evaluation and save run. The budget counts from the start of training.
    """

    MAX_STEPS = 10_000_000

    CALIBRATE, REFIT, SKIP = 20, 25, 3

    def __init__(self, budget_s: float, scheduler_type: str, warmup_steps: float) -> None:
        self.budget_s, self.scheduler_type, self.warmup_steps = budget_s, str(scheduler_type), warmup_steps
        self.calibrate, self.refit, self.skip = self.CALIBRATE, self.REFIT, self.SKIP
        self.started = self.t_skip = 0.0
        self.step_skip = 0
        self.total: int | None = None
        self.scheduler = None

    def _set_schedule(self, total: int) -> None:
        from transformers import get_scheduler

        sched = getattr(self.scheduler, "scheduler", self.scheduler)  # unwrap an accelerate wrapper
        if not isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            return
        dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        # TrainingArguments' rule: below 1, a share of the steps
        warmup = math.ceil(self.warmup_steps * total) if self.warmup_steps < 1 else int(self.warmup_steps)
        fresh = get_scheduler(self.scheduler_type, dummy, num_warmup_steps=warmup, num_training_steps=total)
        if isinstance(fresh, torch.optim.lr_scheduler.LambdaLR):
            sched.lr_lambdas = [fresh.lr_lambdas[0] for _ in sched.optimizer.param_groups]

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self.started = time.perf_counter()
        self.step_skip, self.scheduler = state.global_step, lr_scheduler
        # until the first measurement: a schedule as if the run took `calibrate` * 100 steps
        self._set_schedule(state.global_step + self.calibrate * 100)

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        done = state.global_step - self.step_skip
        if done == self.skip:
            self.t_skip = now
        if done <= self.skip:
            return
        per_step = (now - self.t_skip) / (done - self.skip)
        left = self.started + self.budget_s - now
        if left < per_step:  # the next step would end after the deadline: stop at the next step
            state.max_steps = min(state.max_steps, state.global_step + 1)
            if self.total != state.max_steps:  # the schedule ends (LR reaches zero) at the last step
                self.total = state.max_steps
                self._set_schedule(self.total)
            if left <= 0:
                state.max_steps = state.global_step
                control.should_training_stop = True
                control.should_save = args.save_strategy == "steps"
            return
        if done >= self.calibrate and (self.total is None or done % self.refit == 0):
            self.total = max(state.global_step + 1, state.global_step + int(left / per_step))
            state.max_steps = self.total
            self._set_schedule(self.total)


class TrainEvalCollator:
    """Masks training batches; passes the pre-masked evaluation batches through."""

    def __init__(self, masker) -> None:
        self.masker = masker

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if "labels" in items[0]:
            return stack_collate(items)
        return self.masker(items)


class PretrainTrainer(Trainer):
    """Trainer that keeps the time spent in evaluation apart, for honest training throughput.

    Data order for exact resume: map-style blocks come from `EpochSampler`, its epoch set as each epoch begins
    (`SamplerEpoch`); a `PackedStream` gets a plain DataLoader: it splits itself across processes, and
    accelerate would otherwise make every process read all of it."""

    eval_seconds = 0.0
    epoch_sampler: EpochSampler | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Both heads return the mean over their masked tokens and ignore `num_items_in_batch`. Told they take
        # it (the stock head's forward has **kwargs), the Trainer would skip its division by the accumulation
        # steps and multiply by the number of processes: logged and eval losses times GA x world size.
        self.model_accepts_loss_kwargs = False
        self.add_callback(SamplerEpoch(self))

    # The one private method of Trainer overridden here: transformers has no public way to give the training
    # DataLoader a sampler of one's own but to rebuild that DataLoader (accelerate's wrapping, worker seeding,
    # column removal) in `get_train_dataloader`. tests/test_trainer.py fails, naming it, when transformers
    # renames the method, changes its parameters or stops building the training DataLoader with it.
    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if isinstance(dataset, BlockDataset):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            self.epoch_sampler = EpochSampler(len(dataset), seed)
            return self.epoch_sampler
        return super()._get_train_sampler(train_dataset)

    def get_train_dataloader(self):
        stream = self.train_dataset
        if not isinstance(stream, PackedStream):
            return super().get_train_dataloader()
        a = self.args
        stream.configure(a.train_batch_size, a.process_index, a.world_size)
        workers = a.dataloader_num_workers
        return torch.utils.data.DataLoader(
            stream,
            batch_size=a.train_batch_size,
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=a.dataloader_pin_memory,
            persistent_workers=bool(a.dataloader_persistent_workers and workers > 0),
            prefetch_factor=a.dataloader_prefetch_factor if workers > 0 else None,
        )

    def evaluate(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.eval_seconds += time.perf_counter() - t


class SamplerEpoch(TrainerCallback):
    """Sets the epoch of the trainer's `EpochSampler` as each epoch begins, to the epoch the Trainer starts:
    `int(state.epoch)` (the Trainer sets `state.epoch` to epoch + (step + 1) / steps_in_epoch after each step, a
    whole number at an epoch's end; a resumed run's state says where it stopped). The Trainer's own `set_epoch`
    on the DataLoader does not reach the sampler through accelerate's wrappers in a resumed distributed run
    (`SkipBatchSampler` around `BatchSamplerShard`)."""

    def __init__(self, trainer: PretrainTrainer) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args, state, control, **kwargs):
        sampler = self.trainer.epoch_sampler
        if sampler is not None:
            sampler.set_epoch(int(state.epoch or 0))


class ExactResumeCallback(TrainerCallback):
    """Exact resume and complete checkpoints.

    - Every optimizer step seeds torch's RNG (dropout) from (seed, step, process), so a resumed run draws
      what the uninterrupted one drew, whatever ran before (masking has its own seeds: `SeededMasking`).
    - Each checkpoint gets `checkpoint_complete.json` once every process has written its files (barrier),
      holding the data position; only then are older checkpoints rotated out (`keep` = save_total_limit).
    """

    def __init__(self, seed, keep, global_batch, streaming, resume_from, data_start) -> None:
        self.seed, self.keep, self.global_batch, self.streaming = seed, keep, global_batch, streaming
        self.base_step = resumed_step(resume_from)
        self.base_blocks = data_start if streaming else self.base_step * global_batch

    def on_step_begin(self, args, state, control, **kwargs):
        torch.manual_seed(step_seed(self.seed, state.global_step, args.process_index))

    def on_save(self, args, state, control, **kwargs):
        if args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # every process has written its part (e.g. rng_state_N.pth)
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not state.is_world_process_zero or not folder.is_dir():
            return
        blocks = self.base_blocks + (state.global_step - self.base_step) * self.global_batch
        data = {"streaming": self.streaming, "blocks_consumed": blocks, "global_batch": self.global_batch}
        mark_complete(folder, state.global_step, data)
        rotate_complete(args.output_dir, self.keep)


class RunRecordCallback(TrainerCallback):
    """Writes the run record (run_info.json, for the model card) into every checkpoint as it is saved, and
    the step record (`write_config(folder)`: mlm_step.json, the config a resume is checked against); makes
    its tokenizer config portable and its weights as readable as its other files.
    `record_at(step, eval_metrics, wall_seconds)` builds the run record from the newest evaluation."""

    def __init__(
        self,
        record_at: Callable[[int, dict, float], RunRecord],
        write_config: Callable[[Path], None] | None = None,
    ) -> None:
        self.record_at, self.write_config = record_at, write_config
        self.started = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not state.is_world_process_zero or not folder.is_dir():
            return
        last_eval = next((h for h in reversed(state.log_history) if "eval_loss" in h), {})
        record = self.record_at(state.global_step, last_eval, time.perf_counter() - self.started)
        record.save(folder)
        if self.write_config is not None:
            self.write_config(folder)
        portable_tokenizer_config(folder, model_max_length=record.model.max_seq_length)
        match_file_modes(folder)  # the weights as readable as the other files


class MaskRateSchedule(TrainerCallback):
    """Moves the masking collator's rate linearly from `start` at step 0 to `final` at the last step
    (`mlm_probability_final`). The rate depends only on the step, so a resumed run masks as an uninterrupted
    one; the collator must run in this process (no dataloader workers)."""

    def __init__(self, collator, start: float, final: float) -> None:
        self.collator, self.start, self.final = collator, start, final

    def _set(self, state) -> None:
        progress = min(1.0, state.global_step / max(1, state.max_steps))
        self.collator.rate = self.start + (self.final - self.start) * progress

    def on_train_begin(self, args, state, control, **kwargs):
        self._set(state)

    def on_step_begin(self, args, state, control, **kwargs):
        self._set(state)

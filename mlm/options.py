"""The training options of `pretrain` and `finetune`: every `transformers.TrainingArguments` field by its
own name, our defaults in a plain subclass, and the one place they become the `TrainingArguments` a
`Trainer` gets.

`MlmTrainingArguments` is the `HfArgumentParser` pattern of the transformers examples with one difference:
constructing it checks nothing and touches no device (`TrainingArguments.__post_init__` would set up the
accelerator and the process group). A step validates its config once (`check_training`), and builds the
real `TrainingArguments`, with the values the package works out, in `trainer_arguments`; the config stays
as the user wrote it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from transformers import TrainingArguments

from data_prep.errors import UserError
from mlm.cpu.threads import parse_cpu_threads
from mlm.sampling import check_sampling

# tracker (a `report_to` name) -> (modules of which one must be importable, the pip argument that installs it)
TRACKERS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"),
    "trackio": (("trackio",), "trackio"),
    "wandb": (("wandb",), "wandb"),
    "mlflow": (("mlflow",), "mlflow"),
    "comet_ml": (("comet_ml",), "comet_ml"),
    "neptune": (("neptune",), "neptune"),
    "clearml": (("clearml",), "clearml"),
    "dagshub": (("dagshub",), "dagshub"),
    "dvclive": (("dvclive",), "dvclive"),
    "codecarbon": (("codecarbon",), "codecarbon"),
    "swanlab": (("swanlab",), "swanlab"),
    "azure_ml": (("azureml",), "azureml-core"),
    "flyte": (("flytekit",), "flytekit"),
    "kubeflow": (("kubeflow",), "kubeflow"),
}


@dataclass
class MlmTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the defaults both steps share; `None` means "chosen for the device"."""

    GROUP: ClassVar[str] = "training"
    # fields the package sets itself, with the reason: a value other than the default is refused
    FIXED: ClassVar[dict[str, str]] = {}

    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: on for CUDA GPUs)"})
    disable_tqdm: bool = field(default=False, metadata={"help": "hide the progress bars"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    warmup_steps: float = field(
        default=0.1, metadata={"help": "warmup: optimizer steps, or a share of all steps when below 1"}
    )
    logging_steps: float | None = field(
        default=None, metadata={"help": "log the training loss every N steps (default: the step's own)"}
    )
    dataloader_num_workers: int | None = field(
        default=None, metadata={"help": "dataloader worker processes (default: 0 on CPU, 4 on GPU)"}
    )
    dataloader_pin_memory: bool | None = field(
        default=None, metadata={"help": "pinned host memory for batches (default: on for GPUs)"}
    )
    hub_strategy: str = field(
        default="end", metadata={"help": "what is pushed: end, every_save, checkpoint or all_checkpoints"}
    )
    cpu_threads: str = field(
        default="auto",
        metadata={
            "help": "CPU: torch threads, or 'auto': timed on the training steps at start, and again when the "
            "steps slow down or every few minutes (another process busy on a core), the choice logged"
        },
    )

    def __post_init__(self) -> None:
        """Nothing: the values are checked once by `check_training`, and `trainer_arguments` builds the real
        `TrainingArguments` (whose own checks run then)."""


@dataclass
class CardArguments:
    """What the model card states that the run cannot know by itself."""

    GROUP: ClassVar[str] = "model card"

    license: str | None = field(
        default=None, metadata={"help": "licence named in the model card (default: none stated)"}
    )
    language: list[str] | None = field(default=None, metadata={"help": "language code(s), e.g. en"})
    datasets: list[str] | None = field(
        default=None, metadata={"help": "Hub dataset ids the model was trained on"}
    )


def on_gpu(cfg: TrainingArguments) -> bool:
    """The run trains on a CUDA GPU."""
    import torch

    return torch.cuda.is_available() and not cfg.use_cpu


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


def check_training(cfg: MlmTrainingArguments) -> None:
    """The training options' values (a UserError naming the first wrong one); changes nothing."""
    for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
        value = getattr(cfg, name)  # None: chosen for the device (pretraining's batch, mlm.batch_size)
        _check(value is None or value >= 1, f"{name} must be >= 1, got {value}")
    lr = cfg.learning_rate
    _check(lr is None or (math.isfinite(lr) and lr > 0), f"learning_rate must be positive, got {lr}")
    _check(cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}")
    _check(cfg.warmup_steps >= 0, f"warmup_steps must be >= 0, got {cfg.warmup_steps}")
    for name in ("adam_beta1", "adam_beta2"):
        _check(0 <= getattr(cfg, name) < 1, f"{name} must be in [0, 1), got {getattr(cfg, name)}")
    _check(cfg.adam_epsilon > 0, f"adam_epsilon must be positive, got {cfg.adam_epsilon}")
    _check(cfg.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {cfg.max_grad_norm}")
    _check(cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}")
    _check(cfg.logging_steps is None or cfg.logging_steps > 0,
           f"logging_steps must be positive, got {cfg.logging_steps}")  # fmt: skip
    workers = cfg.dataloader_num_workers
    _check(workers is None or workers >= 0, f"dataloader_num_workers must be >= 0, got {workers}")
    _check(cfg.num_train_epochs >= 0, f"num_train_epochs must be >= 0, got {cfg.num_train_epochs}")
    _check_choice("lr_scheduler_type", cfg.lr_scheduler_type)
    _check_choice("optim", cfg.optim)
    _check_choice("hub_strategy", cfg.hub_strategy)
    check_sampling(cfg.train_sampling_strategy)  # fine-tuning's default: chosen for the device
    _check(not cfg.push_to_hub or bool(cfg.hub_model_id),
           "push_to_hub needs hub_model_id (e.g. your-name/my-bert)")  # fmt: skip
    _check(not (cfg.fp16 and cfg.bf16), "set at most one of fp16 and bf16")
    _check(not cfg.fp16 or on_gpu(cfg), "fp16 needs a CUDA GPU; on the CPU leave it unset (or use bf16)")
    check_trackers(trackers(cfg.report_to))
    parse_cpu_threads(cfg.cpu_threads)
    check_fixed(cfg)


def check_fixed(cfg: MlmTrainingArguments) -> None:
    """Options the package sets itself keep their default; another value is refused with the reason."""
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    for name, reason in cfg.FIXED.items():
        if getattr(cfg, name) != defaults[name]:
            raise UserError(f"{name} cannot be set here: {reason}")


def _check_choice(name: str, value: Any) -> None:
    """`value` is a member of the transformers enum that `TrainingArguments` takes for `name`."""
    from transformers.trainer_utils import HubStrategy, SchedulerType
    from transformers.training_args import OptimizerNames

    enum = {"lr_scheduler_type": SchedulerType, "optim": OptimizerNames, "hub_strategy": HubStrategy}[name]
    valid = [e.value for e in enum]
    _check(getattr(value, "value", value) in valid, f"unknown {name} {value!r}; valid: {', '.join(valid)}")


def trackers(report_to: Any) -> list[str]:
    """The tracker names in `report_to` ("tensorboard,trackio", "tensorboard trackio" or a list); [] for
    "none"."""
    text = " ".join(report_to) if isinstance(report_to, (list, tuple)) else str(report_to or "none")
    names = [n for n in text.replace(",", " ").split() if n]
    return [] if names in ([], ["none"]) else names


def check_trackers(names: list[str]) -> None:
    """Each tracker is known and installed; a missing one is one line with the command that installs it."""
    import importlib.util

    for name in names:
        if name in ("all", "none"):
            _check(len(names) == 1, f"report_to '{name}' cannot be combined with other trackers")
            continue
        _check(name in TRACKERS, f"unknown report_to '{name}'; valid: none, all, {', '.join(TRACKERS)}")
        modules, package = TRACKERS[name]
        if not any(importlib.util.find_spec(m) for m in modules):
            raise UserError(f"report_to {name}: {modules[0]} is not installed; install it with: "
                            f"pip install {package}")  # fmt: skip


def device_values(cfg: MlmTrainingArguments) -> dict[str, Any]:
    """The options left to the device, chosen: on a GPU bf16 autocast, TF32 (Ampere and newer), pinned
    memory and 4 persistent, prefetching loader workers, so the GPU never waits for masking; on the CPU fp32
    and batches made in the training process (workers would take cores from the matmuls)."""
    import torch

    cuda = on_gpu(cfg)
    workers = cfg.dataloader_num_workers
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if cuda else 0
    values: dict[str, Any] = {
        "bf16": bool(cuda and torch.cuda.is_bf16_supported()) if cfg.bf16 is None else cfg.bf16,
        "dataloader_num_workers": workers,
        "dataloader_persistent_workers": cfg.dataloader_persistent_workers or workers > 0,
        "dataloader_prefetch_factor": cfg.dataloader_prefetch_factor or (4 if workers > 0 else None),
        "dataloader_pin_memory": cuda if cfg.dataloader_pin_memory is None else cfg.dataloader_pin_memory,
        "report_to": trackers(cfg.report_to) or "none",
    }
    if cfg.tf32 is None and cuda and torch.cuda.get_device_capability(0)[0] >= 8:
        values["tf32"] = True  # what is not under bf16 autocast
    return values


def trainer_arguments(cfg: MlmTrainingArguments, **derived: Any) -> TrainingArguments:
    """The `TrainingArguments` a `Trainer` gets: the user's values, the device's choices, then `derived`
    (what the step works out: the learning rate, the step count, its output folder...). The package pushes
    to the Hub itself (`mlm.hub`), so the Trainer's own push stays off."""
    names = [f.name for f in dataclasses.fields(TrainingArguments) if f.init]
    values = {name: getattr(cfg, name) for name in names}
    values.update(device_values(cfg), push_to_hub=False, hub_model_id=None, hub_strategy="end")
    values["logging_steps"] = cfg.logging_steps or 500  # TrainingArguments' default when none is given
    if values["per_device_train_batch_size"] is None:  # unset, and not resolved by the step: the CPU default
        values["per_device_train_batch_size"] = 64  # (pretraining resolves it for the device: mlm.batch_size)
    values.update(derived)
    try:
        return TrainingArguments(**values)
    except ValueError as e:  # transformers' own checks (e.g. bf16 on hardware without it)
        raise UserError(f"invalid training settings: {str(e).strip().splitlines()[0]}") from None


def cpu_thread_tuner(cfg: MlmTrainingArguments, world_size: int):
    """Apply `cpu_threads`: a fixed count is set now; for 'auto' on a CPU run, the `ThreadTuner` callback to
    add to the Trainer (None where there is nothing to tune)."""
    from mlm.cpu.threads import configure_cpu_threads

    return configure_cpu_threads(cfg.cpu_threads, not on_gpu(cfg), world_size)


def hardware(cfg: MlmTrainingArguments) -> str:
    """The device training runs on, in words (for the run record)."""
    from mlm.run_record import describe_hardware

    return describe_hardware(on_gpu(cfg))

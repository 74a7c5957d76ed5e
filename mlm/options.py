"""Option groups shared by the steps: each option is defined (name, type, help) and validated once, here.

A step's config inherits the groups it takes (`class PretrainConfig(ModelOptions, MaskingConfig,
TrainerOptions, HubOptions, CardOptions)`), so YAML, the command line and Python all use the flat names that
`transformers` users know (`learning_rate`, `mlm_probability`, `hub_model_id`), while the code passes each
group on whole (`as_group(cfg, TrainerOptions)`), never field by field. A step that wants other defaults
says so with `@with_defaults(learning_rate=1e-3, ...)`: the type, help and checks stay those of the group.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from data_prep.errors import UserError

G = TypeVar("G")


@dataclass(frozen=True)
class ChosenLater:
    """A `with_defaults` value: no fixed default (None); the step's `validate` picks one, as `rule` says."""

    rule: str


def with_defaults(**defaults: Any):
    """Class decorator, placed *under* `@dataclass`: new defaults for options inherited from groups."""

    def wrap(cls: type) -> type:
        annotations = cls.__dict__.get("__annotations__", {})
        for name, value in defaults.items():
            base = next((b.__dataclass_fields__[name] for b in cls.__mro__[1:]
                         if name in getattr(b, "__dataclass_fields__", {})), None)  # fmt: skip
            if base is None:
                raise TypeError(f"{cls.__name__}: no inherited option {name!r}")
            annotations[name] = base.type
            if isinstance(value, ChosenLater):
                help_text = f"{base.metadata.get('help', '')} (default: {value.rule})"
                setattr(cls, name, field(default=None, metadata={**base.metadata, "help": help_text}))
            elif isinstance(value, (list, dict)):
                setattr(cls, name, field(default_factory=lambda v=value: type(v)(v), metadata=base.metadata))
            else:
                setattr(cls, name, field(default=value, metadata=base.metadata))
        cls.__annotations__ = annotations
        return cls

    return wrap


def option_groups(cls: type) -> list[type]:
    """The option groups (classes with a `GROUP` title) a config inherits, in definition order."""
    return [b for b in reversed(cls.__mro__) if "GROUP" in b.__dict__ and dataclasses.is_dataclass(b)]


def group_of(cls: type, name: str) -> str:
    """Title of the group that defines option `name` of config `cls` ("" for the config's own options)."""
    for group in reversed(option_groups(cls)):
        if name in {f.name for f in dataclasses.fields(group)}:
            return group.GROUP
    return ""


def as_group(cfg: Any, group: type[G]) -> G:
    """The values of `group`'s options in `cfg`, as a `group` instance."""
    return group(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(group)})


def validate_groups(cfg: Any) -> None:
    """Run the checks of every option group `cfg` inherits."""
    for group in option_groups(type(cfg)):
        group.validate(cfg)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UserError(message)


@dataclass
class TrainerOptions:
    """Optimisation and run options; the names, and meanings, are `transformers.TrainingArguments`'."""

    GROUP: ClassVar[str] = "optimisation and schedule"

    learning_rate: float = field(default=5e-5, metadata={"help": "peak learning rate"})
    num_train_epochs: float = field(default=3.0, metadata={"help": "passes over the training data"})
    max_steps: int = field(default=-1, metadata={"help": "optimizer steps; <= 0 means use num_train_epochs"})
    per_device_train_batch_size: int = field(default=32, metadata={"help": "sequences per device per step"})
    per_device_eval_batch_size: int = field(default=64, metadata={"help": "sequences per device in eval"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.999, metadata={"help": "AdamW beta2"})
    adam_epsilon: float = field(default=1e-8, metadata={"help": "AdamW epsilon"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "scheduler: linear, cosine, ..."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps spent warming up, in [0, 1)"})
    optim: str | None = field(
        default=None, metadata={"help": "optimizer (default: adamw_torch_fused, the fused AdamW kernel)"}
    )
    seed: int = field(default=42, metadata={"help": "random seed"})
    logging_steps: int | None = field(default=None, metadata={"help": "log the training loss every N steps"})
    use_cpu: bool = field(default=False, metadata={"help": "train on CPU even when a GPU is present"})
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: on for CUDA GPUs)"})
    dataloader_num_workers: int | None = field(
        default=None, metadata={"help": "dataloader worker processes (default: 0 on CPU, 4 on GPU)"}
    )
    dataloader_pin_memory: bool | None = field(
        default=None, metadata={"help": "pinned host memory for batches (default: on for GPUs)"}
    )
    torch_compile: bool = field(default=False, metadata={"help": "compile the model with torch.compile"})
    report_to: str = field(
        default="none",
        metadata={
            "help": "trackers, comma-separated: none, all, tensorboard, trackio, wandb, mlflow, ... "
            '(tensorboard and trackio: pip install "mlm[tensorboard]", "mlm[trackio]")'
        },
    )
    disable_tqdm: bool = field(default=False, metadata={"help": "hide progress bars"})
    cpu_threads: str = field(
        default="auto",
        metadata={
            "help": "CPU: torch threads, or 'auto': timed on the training steps at start, and again when the "
            "steps slow down or every few minutes (another process busy on a core), the choice logged"
        },
    )

    def peak_learning_rate(self) -> float:
        """The learning rate to train with (a step that picks its default later overrides this)."""
        return self.learning_rate

    def validate(self) -> None:
        for name in (
            "per_device_train_batch_size",
            "per_device_eval_batch_size",
            "gradient_accumulation_steps",
        ):
            _check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(math.isfinite(self.learning_rate) and self.learning_rate > 0,
               f"learning_rate must be positive, got {self.learning_rate}")  # fmt: skip
        _check(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _check(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("adam_beta1", "adam_beta2"):
            _check(0 <= getattr(self, name) < 1, f"{name} must be in [0, 1), got {getattr(self, name)}")
        _check(self.adam_epsilon > 0, f"adam_epsilon must be positive, got {self.adam_epsilon}")
        _check(self.max_grad_norm >= 0, f"max_grad_norm must be >= 0, got {self.max_grad_norm}")
        _check(self.seed >= 0, f"seed must be >= 0, got {self.seed}")
        _check(self.logging_steps is None or self.logging_steps >= 1,
               f"logging_steps must be >= 1, got {self.logging_steps}")  # fmt: skip
        _check(self.dataloader_num_workers is None or self.dataloader_num_workers >= 0,
               f"dataloader_num_workers must be >= 0, got {self.dataloader_num_workers}")  # fmt: skip
        _check(self.num_train_epochs >= 0, f"num_train_epochs must be >= 0, got {self.num_train_epochs}")
        _check_choice("lr_scheduler_type", self.lr_scheduler_type, "SchedulerType")
        if self.optim is not None:
            _check_choice("optim", self.optim, "OptimizerNames")
        check_trackers(trackers(self.report_to))
        from mlm.cpu.threads import parse_cpu_threads

        parse_cpu_threads(self.cpu_threads)


# tracker (a `report_to` name) -> (modules of which one must be importable, the pip argument that installs it)
TRACKERS: dict[str, tuple[tuple[str, ...], str]] = {
    "tensorboard": (("tensorboard", "tensorboardX"), '"mlm[tensorboard]"'),
    "trackio": (("trackio",), '"mlm[trackio]"'),
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


def trackers(report_to: str) -> list[str]:
    """The tracker names in `report_to` ("tensorboard,trackio" or "tensorboard trackio"); [] for "none"."""
    names = [n for n in report_to.replace(",", " ").split() if n]
    return [] if names in ([], ["none"]) else names


def check_trackers(names: list[str]) -> None:
    """Each tracker must be known and installed; a missing one is one line with the command that installs it."""
    import importlib.util

    for name in names:
        if name in ("all", "none"):
            _check(len(names) == 1, f"report_to '{name}' cannot be combined with other trackers")
            continue
        _check(name in TRACKERS, f"unknown report_to '{name}'; valid: none, all, {', '.join(TRACKERS)}")
        modules, package = TRACKERS[name]
        if not any(importlib.util.find_spec(m) for m in modules):
            raise UserError(
                f"report_to {name}: {modules[0]} is not installed; install it with: pip install {package}"
            )


def _check_choice(name: str, value: str, enum_name: str) -> None:
    """`value` must be a member of the transformers enum `enum_name` (the names TrainingArguments takes)."""
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    enum = {"SchedulerType": SchedulerType, "OptimizerNames": OptimizerNames}[enum_name]
    valid = [e.value for e in enum]
    _check(value in valid, f"unknown {name} {value!r}; valid: {', '.join(valid)}")


@dataclass
class HubOptions:
    """Pushing to the Hugging Face Hub while training (names as in `TrainingArguments`)."""

    GROUP: ClassVar[str] = "Hub"

    push_to_hub: bool = field(default=False, metadata={"help": "push the model to the Hugging Face Hub"})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id, e.g. me/my-bert"})
    hub_strategy: str = field(
        default="end", metadata={"help": "end, every_save, checkpoint or all_checkpoints"}
    )
    hub_private_repo: bool = field(default=False, metadata={"help": "create the Hub repo as private"})

    def validate(self) -> None:
        from mlm.hub import HUB_STRATEGIES

        _check(self.hub_strategy in HUB_STRATEGIES,
               f"unknown hub_strategy '{self.hub_strategy}'; valid: {', '.join(HUB_STRATEGIES)}")  # fmt: skip
        _check(not self.push_to_hub or bool(self.hub_model_id),
               "push_to_hub needs hub_model_id (e.g. your-name/my-bert)")  # fmt: skip


@dataclass
class CardOptions:
    """What the model card states that the run cannot know by itself."""

    GROUP: ClassVar[str] = "model card"

    license: str | None = field(
        default=None, metadata={"help": "licence named in the model card (default: none stated)"}
    )
    language: list[str] | None = field(default=None, metadata={"help": "language code(s), e.g. en"})
    datasets: list[str] | None = field(
        default=None, metadata={"help": "Hub dataset ids the model was trained on"}
    )

    def validate(self) -> None:
        pass


def training_arguments(opts: TrainerOptions, **extra: Any) -> dict[str, Any]:
    """`TrainingArguments` keyword arguments for the options `opts` holds, the per-device defaults filled in,
    then `extra` (what only the step knows: output_dir, eval strategy, ...).

    Device defaults: the fused AdamW kernel everywhere; on a GPU bf16 autocast, TF32 (Ampere and newer),
    pinned memory and 4 persistent, prefetching loader workers, so the GPU never waits for masking; on the
    CPU fp32 and batches made in the training process (workers would take cores from the matmuls)."""
    import torch

    cuda = torch.cuda.is_available() and not opts.use_cpu
    values = dataclasses.asdict(as_group(opts, TrainerOptions))
    values.pop("cpu_threads")  # not a TrainingArguments option: see `cpu_thread_tuner`
    values["warmup_steps"] = values.pop("warmup_ratio")  # transformers 5: a float < 1 is a ratio of the steps
    values["learning_rate"] = opts.peak_learning_rate()
    values["optim"] = opts.optim or "adamw_torch_fused"
    values["report_to"] = trackers(opts.report_to) or "none"
    if opts.bf16 is None:
        values["bf16"] = bool(cuda and torch.cuda.is_bf16_supported())
    workers = opts.dataloader_num_workers
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if cuda else 0
    values.update(
        dataloader_num_workers=workers,
        dataloader_persistent_workers=workers > 0,
        dataloader_prefetch_factor=4 if workers > 0 else None,
        dataloader_pin_memory=cuda if opts.dataloader_pin_memory is None else opts.dataloader_pin_memory,
    )
    if cuda and torch.cuda.get_device_capability(0)[0] >= 8:
        values["tf32"] = True  # what is not under bf16 autocast (Ampere and newer only)
    values.update(extra)
    return values


def cpu_thread_tuner(opts: TrainerOptions, world_size: int):
    """Apply `cpu_threads`: a fixed count is set now; for 'auto' on a CPU run, the `ThreadTuner` callback to
    add to the Trainer (None where there is nothing to tune)."""
    import torch

    from mlm.cpu.threads import configure_cpu_threads

    return configure_cpu_threads(
        opts.cpu_threads, not (torch.cuda.is_available() and not opts.use_cpu), world_size
    )


def hardware(opts: TrainerOptions) -> str:
    """The device training runs on, in words (for the run record)."""
    import torch

    from mlm.run_record import describe_hardware

    return describe_hardware(torch.cuda.is_available() and not opts.use_cpu)

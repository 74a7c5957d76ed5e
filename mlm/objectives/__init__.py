"""Pretraining objectives: one file each, registered by name (the `objective` option).

An objective is everything pretraining does that depends on the pretext task: the collator that turns
packed blocks into a training batch, the model it trains, its evaluation set and metrics, what `final/`
holds, and what the model card says about it. `mlm.pretrain` knows nothing else about the task, so a new
objective is one new file with a class decorated by `@register` (see `mlm.objectives.mlm`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch
from transformers import PretrainedConfig, PreTrainedModel

from data_prep.errors import UserError
from mlm.run_record import ObjectiveFacts

_REGISTRY: dict[str, type[Objective]] = {}


class Objective:
    """Base class of a pretraining objective; subclasses set `name` and implement the methods that raise.

    `options` is a dataclass of the objective's own settings, filled from the `objective_options` mapping
    of the pretraining config (unknown keys and wrong types are one-line errors, as everywhere)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    options: ClassVar[type | None] = None

    def __init__(self, cfg: Any, tokenizer: Any) -> None:
        self.cfg, self.tokenizer = cfg, tokenizer
        self.opts = self.parse_options(cfg.objective_options)

    @classmethod
    def parse_options(cls, values: dict[str, Any] | None) -> Any:
        """The objective's options from the config's `objective_options` (validated)."""
        from mlm.config import config_from_dict

        if cls.options is None:
            if values:
                raise UserError(f"objective '{cls.name}' takes no objective_options, got {', '.join(values)}")
            return None
        opts = config_from_dict(cls.options, values or {}, f"objective_options ({cls.name})")
        if hasattr(opts, "validate"):  # an objective's options may check their values
            opts.validate()
        return opts

    def build_model(self, model_config: PretrainedConfig) -> PreTrainedModel:
        """The freshly initialised model that pretraining trains."""
        raise NotImplementedError

    def from_pretrained(self, name: str) -> PreTrainedModel:
        """The model to continue pretraining from checkpoint `name` (`model_name_or_path`)."""
        raise UserError(
            f"objective '{self.name}' cannot start from a checkpoint (model_name_or_path); use objective: mlm"
        )

    def collator(self, seed: int | None) -> Callable[[list[dict]], dict[str, torch.Tensor]]:
        """Turns packed items (input_ids, word_start, sample_id) into a batch; draws from torch's global RNG
        when `seed` is None (pretraining seeds each batch from its draw ids), from its own seed otherwise."""
        raise NotImplementedError

    def compute_metrics(self, eval_pred: Any) -> dict[str, float]:
        """Metrics on the evaluation set besides the loss (the Trainer prefixes them with `eval_`)."""
        return {}

    def preprocess_logits_for_metrics(self, logits: Any, labels: torch.Tensor) -> torch.Tensor:
        """What of the logits `compute_metrics` needs (kept small: eval never holds vocab-sized tensors)."""
        return logits[0] if isinstance(logits, tuple) else logits

    def summary(self, eval_metrics: dict[str, float]) -> dict[str, float | None]:
        """The metrics reported for the run (metrics.json, the model card) from `trainer.evaluate()`."""
        return {"eval_loss": eval_metrics.get("eval_loss")}

    def export(self, trainer: Any, folder: Path) -> None:
        """Write the final checkpoint (native `transformers` classes) into `folder`."""
        trainer.save_model(str(folder))
        self.tokenizer.save_pretrained(str(folder))

    def card_facts(self) -> ObjectiveFacts:
        """What the model card says about this objective."""
        return ObjectiveFacts(name=self.name, description=self.description)


def register(cls: type[Objective]) -> type[Objective]:
    """Class decorator: make an objective available under `cls.name`."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    if cls.options is not None and not dataclasses.is_dataclass(cls.options):
        raise TypeError(f"{cls.__name__}.options must be a dataclass")
    _REGISTRY[cls.name] = cls
    return cls


def objective_names() -> list[str]:
    return sorted(_REGISTRY)


def get_objective(name: str) -> type[Objective]:
    """The objective class registered as `name`; a UserError listing the valid names otherwise."""
    if name not in _REGISTRY:
        raise UserError(f"unknown objective {name!r}; valid: {', '.join(objective_names())}")
    return _REGISTRY[name]


def _register_builtins() -> None:
    """Import every module of this package: each registers its objectives (a new file needs no other edit)."""
    import importlib
    import pkgutil

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


_register_builtins()

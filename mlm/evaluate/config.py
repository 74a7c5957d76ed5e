"""The options of `mlm evaluate` (`EvaluateConfig`) and the parsing of its list options."""

from __future__ import annotations

from dataclasses import dataclass, field

from data_prep.errors import UserError


@dataclass
class EvaluateConfig:
    """Settings of `mlm evaluate`."""

    model: str = field(
        default="",
        metadata={
            "help": "checkpoint folder; or a pretraining output folder (its final/ model, plus every "
            "checkpoint-N for the pretraining curve); or a comma-separated list of checkpoints"
        },
    )
    suite: str = field(default="", metadata={"help": "suite YAML file listing the tasks", "required": True})
    output_dir: str | None = field(
        default=None, metadata={"help": "folder for results (default: runs/evaluate/SUITE_NAME)"}
    )
    seeds: int | None = field(
        default=None, metadata={"help": "fine-tuning seeds per task and method (default: the suite's, or 3)"}
    )
    seeds_at_full: int | None = field(
        default=None,
        metadata={"help": "seeds for label fraction 1.0, the costliest runs (default: same as seeds)"},
    )
    label_fractions: list[str] = field(
        default_factory=list,
        metadata={"help": "shares of the training labels, e.g. 0.01,0.1,1.0 (default: the suite's, or 1.0)"},
    )
    tasks: list[str] = field(
        default_factory=list, metadata={"help": "evaluate only these tasks of the suite (default: all)"}
    )
    no_scratch: bool = field(default=False, metadata={"help": "skip the from-scratch baseline"})
    no_tfidf: bool = field(default=False, metadata={"help": "skip the TF-IDF + logistic regression baseline"})
    curve_tasks: list[str] = field(
        default_factory=list,
        metadata={"help": "tasks scored for every intermediate checkpoint (default: all evaluated tasks)"},
    )
    curve_label_fractions: list[str] = field(
        default_factory=list,
        metadata={"help": "label fractions scored for intermediate checkpoints (default: the smallest)"},
    )
    max_checkpoints: int | None = field(
        default=None,
        metadata={
            "help": "at most this many intermediate checkpoints, evenly spaced (0: none; default: all)"
        },
    )
    save_models: bool = field(
        default=False,
        metadata={
            "help": "keep the fine-tuned classifiers of the main model (one folder per run, for `mlm push`)"
        },
    )
    force: bool = field(default=False, metadata={"help": "rerun fine-tuning runs that have results already"})
    use_cpu: bool = field(default=False, metadata={"help": "train on the CPU even when a GPU is available"})
    disable_tqdm: bool = field(default=True, metadata={"help": "hide the progress bars of each run"})
    verbose: bool = field(
        default=False,
        metadata={"help": "show each run's training logs and library messages, not just one line per run"},
    )

    def validate(self) -> None:
        """Raise UserError on a missing or out-of-range setting."""
        if not str(self.model).strip():
            raise UserError("evaluate: MODEL (a checkpoint or pretraining output folder) is required")
        if not str(self.suite).strip():
            raise UserError("evaluate: --suite SUITE.yaml is required")
        for name in ("seeds", "seeds_at_full"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise UserError(f"evaluate: '{name}' must be >= 1, got {value}")
        if self.max_checkpoints is not None and self.max_checkpoints < 0:
            raise UserError(f"evaluate: 'max_checkpoints' must be >= 0, got {self.max_checkpoints}")
        parse_fractions(self.label_fractions, "label_fractions")
        parse_fractions(self.curve_label_fractions, "curve_label_fractions")


def split_names(values: list[str]) -> list[str]:
    """['a,b', 'c'] -> ['a', 'b', 'c'] (the CLI takes both `--tasks a b` and `--tasks a,b`)."""
    return [n.strip() for v in values or [] for n in str(v).split(",") if n.strip()]


def parse_fractions(values: list[str] | list[float], what: str) -> list[float]:
    """'0.01,0.1' / ['0.01', '1.0'] -> sorted distinct floats in (0, 1]."""
    out: list[float] = []
    for part in split_names([str(v) for v in values or []]):
        try:
            x = float(part)
        except ValueError:
            raise UserError(f"evaluate: {what}: {part!r} is not a number") from None
        if not 0 < x <= 1:
            raise UserError(f"evaluate: {what} must be in (0, 1], got {x}")
        out.append(x)
    return sorted(set(out))

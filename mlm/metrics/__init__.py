"""Classification metrics as `evaluate.Metric` modules shipped in the package (no Hub download).

`load_metric(name)` returns a ready metric; `compute_metrics(names, predictions, references)` computes
several at once and names each result after the metric (``{"accuracy": ..., "f1_macro": ...}``). The metrics
of multi-label classification and regression are in `mlm.metrics.problems`.
"""

from __future__ import annotations

from collections.abc import Sequence

import evaluate

from data_prep.errors import UserError
from mlm.metrics.accuracy import Accuracy
from mlm.metrics.f1 import F1
from mlm.metrics.matthews_correlation import MatthewsCorrelation
from mlm.metrics.problems import (
    DEFAULT_METRICS,
    LOWER_IS_BETTER,
    MULTI_LABEL,
    MULTI_LABEL_METRICS,
    PROBLEM_TYPES,
    REGRESSION,
    REGRESSION_METRICS,
    SINGLE_LABEL,
    compute_multi_label,
    compute_regression,
)

# name -> (class, config_name). The config name of F1 is its default average.
METRICS: dict[str, tuple[type[evaluate.Metric], str | None]] = {
    "accuracy": (Accuracy, None),
    "f1": (F1, "binary"),
    "f1_macro": (F1, "macro"),
    "f1_micro": (F1, "micro"),
    "f1_weighted": (F1, "weighted"),
    "matthews_correlation": (MatthewsCorrelation, None),
}

# Metrics that only make sense with exactly two classes.
BINARY_ONLY = frozenset({"f1"})


def metric_names() -> list[str]:
    """The names `load_metric` accepts."""
    return list(METRICS)


def check_metric_names(
    names: Sequence[str], where: str = "metrics", problem_type: str = SINGLE_LABEL
) -> None:
    """Raise UserError if a name is not a metric of `problem_type`, listing the valid ones."""
    valid = {SINGLE_LABEL: METRICS, MULTI_LABEL: MULTI_LABEL_METRICS, REGRESSION: REGRESSION_METRICS}[
        problem_type
    ]
    unknown = [n for n in names if n not in valid]
    if unknown:
        kind = "" if problem_type == SINGLE_LABEL else f" for {problem_type}"
        raise UserError(
            f"{where}: unknown metric {', '.join(map(repr, unknown))}{kind}; valid: {', '.join(valid)}"
        )


def load_metric(name: str) -> evaluate.Metric:
    """Instantiate the shipped metric `name` (in memory, nothing cached on disk)."""
    check_metric_names([name], where="load_metric")
    cls, config_name = METRICS[name]
    return cls(config_name=config_name, keep_in_memory=True)


def compute_metrics(names: Sequence[str], predictions, references, pos_label: int = 1) -> dict[str, float]:
    """Compute each metric in `names` on class ids; returns {name: value}."""
    check_metric_names(names)
    results: dict[str, float] = {}
    for name in names:
        kwargs = {"pos_label": pos_label} if name == "f1" else {}
        out = load_metric(name).compute(predictions=predictions, references=references, **kwargs)
        results[name] = float(next(iter(out.values())))
    return results


__all__ = [
    "Accuracy",
    "BINARY_ONLY",
    "DEFAULT_METRICS",
    "F1",
    "LOWER_IS_BETTER",
    "METRICS",
    "MULTI_LABEL",
    "MULTI_LABEL_METRICS",
    "MatthewsCorrelation",
    "PROBLEM_TYPES",
    "REGRESSION",
    "REGRESSION_METRICS",
    "SINGLE_LABEL",
    "check_metric_names",
    "compute_metrics",
    "compute_multi_label",
    "compute_regression",
    "load_metric",
    "metric_names",
]

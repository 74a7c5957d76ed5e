"""Fine-tuning metrics, by the names users type, computed by scikit-learn and SciPy.

`compute_metrics(names, predictions, references)` scores class ids (single-label classification) and names each
result after its metric (``{"accuracy": ..., "f1_macro": ...}``); `check_metric_names` refuses a name that is
not a metric of the problem type, listing the valid ones. The problem types and the metrics of each are in
`mlm.metrics.problems`.
"""

from __future__ import annotations

from collections.abc import Sequence

from data_prep.errors import UserError
from mlm.metrics.problems import (
    BINARY_ONLY,
    DEFAULT_METRICS,
    LOWER_IS_BETTER,
    METRICS,
    MULTI_LABEL,
    MULTI_LABEL_METRICS,
    PROBLEM_TYPES,
    REGRESSION,
    REGRESSION_METRICS,
    SINGLE_LABEL,
    compute_multi_label,
    compute_regression,
    label_arrays,
)


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


def compute_metrics(names: Sequence[str], predictions, references, pos_label: int = 1) -> dict[str, float]:
    """Each metric in `names` on class ids (`pos_label`: the positive class of binary `f1`); {name: value}."""
    check_metric_names(names)
    preds, refs = label_arrays(predictions, references)
    return {
        name: METRICS[name](preds, refs, **({"pos_label": pos_label} if name == "f1" else {}))
        for name in names
    }


__all__ = [
    "BINARY_ONLY",
    "DEFAULT_METRICS",
    "LOWER_IS_BETTER",
    "METRICS",
    "MULTI_LABEL",
    "MULTI_LABEL_METRICS",
    "PROBLEM_TYPES",
    "REGRESSION",
    "REGRESSION_METRICS",
    "SINGLE_LABEL",
    "check_metric_names",
    "compute_metrics",
    "compute_multi_label",
    "compute_regression",
]

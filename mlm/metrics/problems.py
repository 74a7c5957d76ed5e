"""Problem types of fine-tuning and the metrics of each, computed by scikit-learn and SciPy.

Single-label classification is scored on class ids (`METRICS`), multi-label classification on a 0/1 matrix (a
label applies when its sigmoid is at least `THRESHOLD`), regression on the predicted numbers. A score that is
undefined for the inputs (no rows, one class only, constant predictions) is 0, not NaN or a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    matthews_corrcoef,
    mean_absolute_error,
    mean_squared_error,
)

SINGLE_LABEL = "single_label_classification"
MULTI_LABEL = "multi_label_classification"
REGRESSION = "regression"
PROBLEM_TYPES = (SINGLE_LABEL, MULTI_LABEL, REGRESSION)
THRESHOLD = 0.5  # on the sigmoid of each label's logit (multi-label)

DEFAULT_METRICS = {
    SINGLE_LABEL: ["accuracy", "f1_macro"],
    MULTI_LABEL: ["f1_micro", "f1_macro"],
    REGRESSION: ["mse", "pearsonr", "spearmanr"],
}
# Metrics where lower is better (the others: higher is better).
LOWER_IS_BETTER = frozenset({"loss", "mse", "mae"})
# Metrics that only make sense with exactly two classes.
BINARY_ONLY = frozenset({"f1"})


def label_arrays(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """`predictions` and `references` as 1-D int64 arrays of class ids, of equal length."""
    preds = np.asarray(predictions, dtype=np.int64).reshape(-1)
    refs = np.asarray(references, dtype=np.int64).reshape(-1)
    if preds.shape != refs.shape:
        raise ValueError(f"{preds.size} predictions but {refs.size} references")
    return preds, refs


def _label_score(fn: Callable[..., float], **kwargs) -> Callable[[np.ndarray, np.ndarray], float]:
    """`fn(refs, preds, **kwargs)`, a `sklearn.metrics` score of class ids, as a float; 0.0 on no rows."""

    def score(preds: np.ndarray, refs: np.ndarray) -> float:
        if refs.size == 0:
            return 0.0
        with warnings.catch_warnings():
            # "a single label was found in y_true and y_pred": the score is still the right one (0 for MCC)
            warnings.simplefilter("ignore", UserWarning)
            return float(fn(refs, preds, **kwargs))

    return score


def binary_f1(preds: np.ndarray, refs: np.ndarray, pos_label: int = 1) -> float:
    """F1 of the class `pos_label` (0 when it is neither predicted nor a reference); a ValueError on more than
    two classes."""
    labels = np.union1d(preds, refs)
    if labels.size > 2:
        raise ValueError(f"f1 (binary) needs 2 classes, found {labels.size}; use f1_macro")
    if pos_label not in labels:
        return 0.0
    return _label_score(f1_score, pos_label=pos_label, average="binary", zero_division=0.0)(preds, refs)


def _f1(average: str) -> Callable[[np.ndarray, np.ndarray], float]:
    return _label_score(f1_score, average=average, zero_division=0.0)


# Single-label classification, on class ids. "f1" is the F1 of the positive class (`pos_label`); "f1_micro"
# equals accuracy here; a class never predicted scores 0 in the averages.
METRICS: dict[str, Callable[..., float]] = {
    "accuracy": _label_score(accuracy_score),
    "f1": binary_f1,
    "f1_macro": _f1("macro"),
    "f1_micro": _f1("micro"),
    "f1_weighted": _f1("weighted"),
    "matthews_correlation": _label_score(matthews_corrcoef),  # the multiclass form (Gorodkin) past 2 classes
}

MULTI_LABEL_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "f1_micro": _f1("micro"),
    "f1_macro": _f1("macro"),
    "f1_weighted": _f1("weighted"),
    "accuracy": _label_score(accuracy_score),  # every label of a text right
}


def _correlation(fn: Callable) -> Callable[[np.ndarray, np.ndarray], float]:
    def score(preds: np.ndarray, refs: np.ndarray) -> float:
        if preds.size < 2 or np.ptp(preds) == 0 or np.ptp(refs) == 0:
            return 0.0  # undefined for constant inputs: no linear (or rank) relation shown
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(fn(preds, refs)[0])

    return score


REGRESSION_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "mse": lambda preds, refs: float(mean_squared_error(refs, preds)),
    "mae": lambda preds, refs: float(mean_absolute_error(refs, preds)),
    "pearsonr": _correlation(stats.pearsonr),
    "spearmanr": _correlation(stats.spearmanr),
}


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -60, 60)))


def multi_label_predictions(logits: np.ndarray) -> np.ndarray:
    """0/1 matrix: the labels whose sigmoid is at least `THRESHOLD`."""
    return (sigmoid(np.asarray(logits)) >= THRESHOLD).astype(np.int64)


def compute_multi_label(names: Sequence[str], logits, references) -> dict[str, float]:
    """Each metric in `names` for multi-label logits (texts x labels) against 0/1 references."""
    preds = multi_label_predictions(np.asarray(logits))
    refs = np.asarray(references).astype(np.int64).reshape(preds.shape)
    return {name: MULTI_LABEL_METRICS[name](preds, refs) for name in names}


def compute_regression(names: Sequence[str], predictions, references) -> dict[str, float]:
    """Each metric in `names` for predicted numbers against the true ones."""
    preds = np.asarray(predictions, dtype=np.float64).reshape(-1)
    refs = np.asarray(references, dtype=np.float64).reshape(-1)
    return {name: REGRESSION_METRICS[name](preds, refs) for name in names}

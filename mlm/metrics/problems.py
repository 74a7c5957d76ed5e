"""Problem types of fine-tuning and the metrics of each beyond single-label classification.

Single-label classification is scored by the `evaluate` modules of this package (`mlm.metrics.METRICS`) on
class ids. Multi-label classification is scored on a 0/1 matrix (a label applies when its sigmoid is at least
`THRESHOLD`), regression on the predicted numbers, both with scikit-learn and SciPy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, mean_squared_error

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


def _f1(average: str) -> Callable[[np.ndarray, np.ndarray], float]:
    return lambda preds, refs: float(f1_score(refs, preds, average=average, zero_division=0.0))


MULTI_LABEL_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "f1_micro": _f1("micro"),
    "f1_macro": _f1("macro"),
    "f1_weighted": _f1("weighted"),
    "accuracy": lambda preds, refs: float(accuracy_score(refs, preds)),  # every label of a text right
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

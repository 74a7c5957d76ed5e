"""Shared helpers for the metric modules: their MetricInfo, input checks, and calling scikit-learn."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import datasets
import evaluate
import numpy as np


def label_metric_info(description: str, citation: str, inputs: str, url: str) -> evaluate.MetricInfo:
    """MetricInfo of a metric over integer class ids (`predictions`, `references`)."""
    return evaluate.MetricInfo(
        description=description,
        citation=citation,
        inputs_description=inputs,
        features=datasets.Features(
            {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
        ),
        reference_urls=[url],
    )


def as_label_arrays(predictions, references) -> tuple[np.ndarray, np.ndarray]:
    """Return `predictions` and `references` as 1-D int64 arrays of equal length."""
    preds = np.asarray(predictions, dtype=np.int64).reshape(-1)
    refs = np.asarray(references, dtype=np.int64).reshape(-1)
    if preds.shape != refs.shape:
        raise ValueError(f"{preds.size} predictions but {refs.size} references")
    return preds, refs


def sklearn_score(fn: Callable[..., Any], predictions, references, **kwargs: Any) -> float:
    """`fn(references, predictions, **kwargs)`, a `sklearn.metrics` score, as a float; 0.0 on empty inputs."""
    preds, refs = as_label_arrays(predictions, references)
    if refs.size == 0:
        return 0.0
    with warnings.catch_warnings():
        # "a single label was found in y_true and y_pred": the score is still the right one (0 for MCC)
        warnings.simplefilter("ignore", UserWarning)
        return float(fn(refs, preds, **kwargs))

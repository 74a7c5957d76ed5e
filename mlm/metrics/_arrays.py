"""Shared helpers for the metric modules: their MetricInfo, input checks and the confusion matrix."""

from __future__ import annotations

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


def confusion_matrix(preds: np.ndarray, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, matrix) where matrix[i, j] counts references labels[i] predicted as labels[j]."""
    labels = np.union1d(preds, refs)
    ref_idx = np.searchsorted(labels, refs)
    pred_idx = np.searchsorted(labels, preds)
    matrix = np.zeros((labels.size, labels.size), dtype=np.int64)
    np.add.at(matrix, (ref_idx, pred_idx), 1)
    return labels, matrix


def safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den is 0 (scikit-learn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out

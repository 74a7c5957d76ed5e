"""The metrics agree with scikit-learn, keep the names users type, and need no `evaluate` module."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from data_prep.errors import UserError
from mlm.metrics import (
    METRICS,
    MULTI_LABEL,
    MULTI_LABEL_METRICS,
    REGRESSION,
    REGRESSION_METRICS,
    check_metric_names,
    compute_metrics,
)

REPO = Path(__file__).resolve().parents[1]


def _random(n_classes: int, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, n_classes, n)
    # correlated predictions: right 60% of the time
    preds = np.where(rng.random(n) < 0.6, refs, rng.integers(0, n_classes, n))
    return preds, refs


def test_the_names_users_type() -> None:
    assert list(METRICS) == [
        "accuracy", "f1", "f1_macro", "f1_micro", "f1_weighted", "matthews_correlation"
    ]  # fmt: skip
    assert list(MULTI_LABEL_METRICS) == ["f1_micro", "f1_macro", "f1_weighted", "accuracy"]
    assert list(REGRESSION_METRICS) == ["mse", "mae", "pearsonr", "spearmanr"]


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_against_sklearn(n_classes: int, seed: int) -> None:
    preds, refs = _random(n_classes, seed=seed)
    got = compute_metrics(
        ["accuracy", "f1_macro", "f1_micro", "f1_weighted", "matthews_correlation"], preds, refs
    )
    assert got["accuracy"] == pytest.approx(accuracy_score(refs, preds))
    for average in ("macro", "micro", "weighted"):
        assert got[f"f1_{average}"] == pytest.approx(f1_score(refs, preds, average=average))
    assert got["matthews_correlation"] == pytest.approx(matthews_corrcoef(refs, preds))
    assert all(type(v) is float for v in got.values())


@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_f1_pos_label(pos_label: int) -> None:
    preds, refs = _random(2, seed=3)
    got = compute_metrics(["f1"], preds, refs, pos_label=pos_label)
    assert got["f1"] == pytest.approx(f1_score(refs, preds, pos_label=pos_label))


def test_edge_cases() -> None:
    # a class that is never predicted counts 0 in macro F1 (sklearn's zero_division=0)
    refs, preds = [0, 1, 2, 2], [0, 1, 1, 1]
    got = compute_metrics(["f1_macro", "matthews_correlation"], preds, refs)
    assert got["f1_macro"] == pytest.approx(f1_score(refs, preds, average="macro", zero_division=0))
    assert got["matthews_correlation"] == pytest.approx(matthews_corrcoef(refs, preds))
    # constant predictions: MCC 0, not NaN
    assert compute_metrics(["matthews_correlation"], [1, 1, 1], [0, 1, 0])["matthews_correlation"] == 0.0
    assert compute_metrics(["accuracy"], [1, 0], [1, 1])["accuracy"] == 0.5
    # the positive class neither predicted nor a reference: binary F1 0
    assert compute_metrics(["f1"], [0, 0], [0, 0])["f1"] == 0.0
    # no rows: every score 0
    assert compute_metrics(list(METRICS), [], []) == dict.fromkeys(METRICS, 0.0)
    with pytest.raises(ValueError, match="binary"):
        compute_metrics(["f1"], [0, 1, 2], [0, 1, 2])
    with pytest.raises(ValueError, match="3 predictions but 2 references"):
        compute_metrics(["accuracy"], [0, 1, 1], [0, 1])


def test_unknown_metric_lists_valid_names() -> None:
    with pytest.raises(UserError) as e:
        compute_metrics(["bleu"], [0], [0])
    assert "'bleu'" in str(e.value)
    for name in METRICS:
        assert name in str(e.value)
    with pytest.raises(UserError, match=f"'accuracy' for {REGRESSION}; valid: mse, mae"):
        check_metric_names(["accuracy"], problem_type=REGRESSION)
    check_metric_names(["accuracy"], problem_type=MULTI_LABEL)


def test_no_evaluate_module_is_imported() -> None:
    """Nothing the fine-tuning, the baselines or the comparison engine import loads `evaluate` (the library)."""
    code = (
        "import sys, mlm.metrics, mlm.finetune, mlm.baselines, mlm.evaluate, mlm.cli; "
        "print('evaluate' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

"""The shipped metric modules agree with scikit-learn and load without the Hub."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from data_prep.errors import UserError
from mlm.metrics import compute_metrics, load_metric, metric_names


def _random(n_classes: int, n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    refs = rng.integers(0, n_classes, n)
    # correlated predictions: right 60% of the time
    preds = np.where(rng.random(n) < 0.6, refs, rng.integers(0, n_classes, n))
    return preds, refs


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


@pytest.mark.parametrize("pos_label", [0, 1])
def test_binary_f1_pos_label(pos_label: int) -> None:
    preds, refs = _random(2, seed=3)
    got = load_metric("f1").compute(predictions=preds, references=refs, pos_label=pos_label)
    assert got["f1"] == pytest.approx(f1_score(refs, preds, pos_label=pos_label))


def test_average_argument_overrides_config() -> None:
    preds, refs = _random(3, seed=4)
    got = load_metric("f1").compute(predictions=preds, references=refs, average="weighted")
    assert got["f1"] == pytest.approx(f1_score(refs, preds, average="weighted"))


def test_edge_cases() -> None:
    # a class that is never predicted counts 0 in macro F1 (sklearn's zero_division=0)
    refs, preds = [0, 1, 2, 2], [0, 1, 1, 1]
    got = compute_metrics(["f1_macro", "matthews_correlation"], preds, refs)
    assert got["f1_macro"] == pytest.approx(f1_score(refs, preds, average="macro", zero_division=0))
    assert got["matthews_correlation"] == pytest.approx(matthews_corrcoef(refs, preds))
    # constant predictions: MCC 0, not NaN
    assert compute_metrics(["matthews_correlation"], [1, 1, 1], [0, 1, 0])["matthews_correlation"] == 0.0
    assert compute_metrics(["accuracy"], [1, 0], [1, 1])["accuracy"] == 0.5
    with pytest.raises(ValueError, match="binary"):
        load_metric("f1").compute(predictions=[0, 1, 2], references=[0, 1, 2])


def test_unknown_metric_lists_valid_names() -> None:
    with pytest.raises(UserError) as e:
        load_metric("bleu")
    assert "'bleu'" in str(e.value)
    for name in metric_names():
        assert name in str(e.value)


def test_info_declares_int_features() -> None:
    for name in metric_names():
        metric = load_metric(name)
        assert metric.description and metric.citation and metric.inputs_description
        assert set(metric.features) == {"predictions", "references"}


def test_evaluate_load_from_module_file() -> None:
    evaluate = pytest.importorskip("evaluate")
    path = Path(__file__).resolve().parents[1] / "mlm" / "metrics" / "matthews_correlation.py"
    metric = evaluate.load(str(path))
    preds, refs = _random(2, seed=5)
    got = metric.compute(predictions=preds, references=refs)
    assert got["matthews_correlation"] == pytest.approx(matthews_corrcoef(refs, preds))

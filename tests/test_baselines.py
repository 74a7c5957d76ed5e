"""The TF-IDF + logistic-regression baseline."""

from __future__ import annotations

import random

import datasets
import pytest

from data_prep.errors import UserError
from mlm.baselines import tfidf_baseline

WORDS = "the a cat dog sat on mat film story actor scene was very long short day night house tree".split()


def _rows(n: int, seed: int, pairs: bool = False) -> datasets.Dataset:
    """'great'/'awful' decide the label; pairs: does the second text repeat the first's marker?"""
    rng = random.Random(seed)
    data: dict[str, list] = {"text": [], "label": []}
    if pairs:
        data["text2"] = []
    for _ in range(n):
        marker = rng.choice(["great", "awful"])
        words = rng.choices(WORDS, k=6) + [marker]
        rng.shuffle(words)
        data["text"].append(" ".join(words))
        if pairs:
            data["text2"].append(" ".join(rng.choices(WORDS, k=4)))
        data["label"].append("positive" if marker == "great" else "negative")
    return datasets.Dataset.from_dict(data)


def test_easy_task() -> None:
    result = tfidf_baseline(_rows(200, 0), _rows(100, 1), text_column="text", label_column="label")
    assert result["accuracy"] > 0.9 and result["f1_macro"] > 0.9
    assert result["labels"] == ["negative", "positive"]
    assert result["train_samples"] == 200 and result["test_samples"] == 100 and result["num_features"] > 0


def test_pairs_and_more_metrics() -> None:
    result = tfidf_baseline(
        _rows(200, 2, pairs=True),
        _rows(60, 3, pairs=True),
        text_column="text",
        text_pair_column="text2",
        label_column="label",
        metric_names=["accuracy", "f1", "matthews_correlation"],
    )
    assert result["accuracy"] > 0.85 and result["matthews_correlation"] > 0.7


def test_tiny_training_set_and_errors() -> None:
    tiny = datasets.Dataset.from_dict({"text": ["great", "awful"], "label": ["1", "0"]})
    assert tfidf_baseline(tiny, tiny, text_column="text", label_column="label")["accuracy"] == 1.0
    unseen = datasets.Dataset.from_dict({"text": ["meh"], "label": ["2"]})
    with pytest.raises(UserError, match="'2' not seen in the training data"):
        tfidf_baseline(tiny, unseen, text_column="text", label_column="label")
    with pytest.raises(UserError, match="no column 'sentence'; columns found: text, label"):
        tfidf_baseline(tiny, tiny, text_column="sentence", label_column="label")

"""Non-neural reference points for the classification tasks: TF-IDF + logistic regression.

Choices (fixed, so numbers are comparable across runs): word unigrams and bigrams, sublinear term frequency
(1 + log tf), terms kept when they occur in at least 2 training documents (falls back to 1 on a training set
too small to have any), lower-casing and scikit-learn's default token pattern; LogisticRegression with its
default L2 penalty and C=1.0, lbfgs, max_iter=1000. A sentence pair is joined into one text as "a [SEP] b".
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import datasets
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from data_prep.errors import UserError
from mlm import labelled_data, metrics


def _texts(ds: datasets.Dataset, text_column: str, text_pair_column: str | None) -> list[str]:
    first = ["" if t is None else str(t) for t in ds[text_column]]
    if not text_pair_column:
        return first
    second = ["" if t is None else str(t) for t in ds[text_pair_column]]
    return [f"{a} [SEP] {b}" for a, b in zip(first, second)]


def _vectorize(train_texts: list[str], min_df: int) -> tuple[TfidfVectorizer, object]:
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=min_df)
    return vectorizer, vectorizer.fit_transform(train_texts)


def tfidf_baseline(
    train: datasets.Dataset,
    test: datasets.Dataset,
    text_column: str,
    label_column: str,
    text_pair_column: str | None = None,
    seed: int = 0,
    metric_names: Sequence[str] = ("accuracy", "f1_macro"),
    C: float = 1.0,
) -> dict:
    """Fit TF-IDF + logistic regression on `train`, score `test`; returns the metrics and a few counts."""
    for name, ds in (("train", train), ("test", test)):
        for column in (text_column, text_pair_column, label_column):
            if column and column not in ds.column_names:
                raise UserError(
                    f"tfidf baseline: {name} data has no column '{column}'; columns found: {', '.join(ds.column_names)}"
                )
    metrics.check_metric_names(metric_names, where="tfidf baseline: metrics")
    started = time.time()
    label_map = labelled_data.build_label_map(train[label_column])
    if len(label_map) < 2:
        raise UserError(f"tfidf baseline: the training data has {len(label_map)} label(s); need at least 2")
    labelled_data.check_labels(test, label_column, label_map, "tfidf baseline: test data")
    y_train = np.asarray(labelled_data.label_ids(train, label_column, label_map))
    y_test = np.asarray(labelled_data.label_ids(test, label_column, label_map))

    train_texts = _texts(train, text_column, text_pair_column)
    try:
        vectorizer, x_train = _vectorize(train_texts, min_df=2)
    except ValueError:  # nothing occurs twice: a tiny training set
        vectorizer, x_train = _vectorize(train_texts, min_df=1)
    classifier = LogisticRegression(C=C, max_iter=1000, random_state=seed)
    classifier.fit(x_train, y_train)
    predictions = classifier.predict(vectorizer.transform(_texts(test, text_column, text_pair_column)))

    pos_label = 1
    if "f1" in metric_names and len(label_map) != 2:
        raise UserError(
            f"tfidf baseline: metric 'f1' is binary but there are {len(label_map)} labels; use f1_macro"
        )
    results: dict = metrics.compute_metrics(list(metric_names), predictions, y_test, pos_label=pos_label)
    results.update(
        {
            "labels": label_map,
            "train_samples": len(train),
            "test_samples": len(test),
            "num_features": len(vectorizer.vocabulary_),
            "runtime": time.time() - started,
        }
    )
    return results

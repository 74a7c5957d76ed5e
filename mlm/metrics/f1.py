"""F1 score: binary (of `pos_label`), or macro / micro / weighted over classes."""

from __future__ import annotations

import evaluate
import numpy as np

from mlm.metrics import _arrays

AVERAGES = ("binary", "macro", "micro", "weighted")

_DESCRIPTION = """\
The F1 score is the harmonic mean of precision and recall: F1 = 2 * (precision * recall) / (precision + recall).
`average="binary"` scores the class `pos_label` only; "macro" is the unweighted mean of the per-class scores,
"weighted" weights them by each class's number of references, "micro" counts all decisions together (equal to
accuracy for single-label classification). A class with no prediction and no reference scores 0.
The metric's config name (`F1(config_name="macro")`) sets the default average.
"""

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

_INPUTS = """\
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    average (str): "binary", "macro", "micro" or "weighted"; default: the config name if it is one of
        these, else "binary".
    pos_label (int): the positive class for average="binary" (default 1).
Returns:
    f1 (float): in [0, 1].
Example:
    >>> F1(keep_in_memory=True).compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'f1': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class F1(evaluate.Metric):
    """F1 score, computed with numpy (no Hub download); matches scikit-learn's f1_score."""

    def _info(self) -> evaluate.MetricInfo:
        return _arrays.label_metric_info(
            _DESCRIPTION, _CITATION, _INPUTS, "https://en.wikipedia.org/wiki/F-score"
        )

    def _compute(self, predictions, references, average: str | None = None, pos_label: int = 1) -> dict:
        if average is None:
            average = self.config_name if self.config_name in AVERAGES else "binary"
        if average not in AVERAGES:
            raise ValueError(f"f1: unknown average {average!r}; valid: {', '.join(AVERAGES)}")
        preds, refs = _arrays.as_label_arrays(predictions, references)
        labels, matrix = _arrays.confusion_matrix(preds, refs)
        tp = np.diag(matrix)
        fp = matrix.sum(axis=0) - tp
        fn = matrix.sum(axis=1) - tp
        if average == "micro":
            return {"f1": float(_arrays.safe_divide(2 * tp.sum(), 2 * tp.sum() + fp.sum() + fn.sum()))}
        per_class = _arrays.safe_divide(2 * tp, 2 * tp + fp + fn)
        if average == "binary":
            if labels.size > 2:
                raise ValueError(
                    f"f1: average='binary' needs 2 classes, found {labels.size}; use average='macro'"
                )
            hit = np.flatnonzero(labels == pos_label)
            return {"f1": float(per_class[hit[0]]) if hit.size else 0.0}
        if average == "macro":
            return {"f1": float(per_class.mean()) if per_class.size else 0.0}
        support = matrix.sum(axis=1)
        return {"f1": float(_arrays.safe_divide((per_class * support).sum(), support.sum()))}

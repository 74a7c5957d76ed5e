"""F1 score: binary (of `pos_label`), or macro / micro / weighted over classes."""

from __future__ import annotations

import evaluate
import numpy as np
from sklearn.metrics import f1_score

from mlm.metrics import common

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
    """F1 score, computed by scikit-learn's f1_score (no Hub download)."""

    def _info(self) -> evaluate.MetricInfo:
        return common.label_metric_info(
            _DESCRIPTION, _CITATION, _INPUTS, "https://en.wikipedia.org/wiki/F-score"
        )

    def _compute(self, predictions, references, average: str | None = None, pos_label: int = 1) -> dict:
        if average is None:
            average = self.config_name if self.config_name in AVERAGES else "binary"
        if average not in AVERAGES:
            raise ValueError(f"f1: unknown average {average!r}; valid: {', '.join(AVERAGES)}")
        if average == "binary":
            labels = np.union1d(*common.as_label_arrays(predictions, references))
            if labels.size > 2:
                raise ValueError(
                    f"f1: average='binary' needs 2 classes, found {labels.size}; use average='macro'"
                )
            if pos_label not in labels:  # no reference and no prediction of the positive class
                return {"f1": 0.0}
        kwargs = {"pos_label": pos_label} if average == "binary" else {}
        score = common.sklearn_score(
            f1_score, predictions, references, average=average, zero_division=0.0, **kwargs
        )
        return {"f1": score}

"""Accuracy: the fraction of predictions equal to their reference."""

from __future__ import annotations

import evaluate
from sklearn.metrics import accuracy_score

from mlm.metrics import common

_DESCRIPTION = "Accuracy is the proportion of correct predictions among all predictions made."

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
    normalize (bool): return the fraction (True, default) or the count (False) of correct predictions.
Returns:
    accuracy (float or int): in [0, 1] when normalize, else a count.
Example:
    >>> Accuracy(keep_in_memory=True).compute(predictions=[0, 1, 1], references=[0, 1, 0])
    {'accuracy': 0.6666666666666666}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class Accuracy(evaluate.Metric):
    """Accuracy, computed by scikit-learn (no Hub download)."""

    def _info(self) -> evaluate.MetricInfo:
        return common.label_metric_info(
            _DESCRIPTION, _CITATION, _INPUTS, "https://en.wikipedia.org/wiki/Accuracy_and_precision"
        )

    def _compute(self, predictions, references, normalize: bool = True) -> dict:
        score = common.sklearn_score(accuracy_score, predictions, references, normalize=normalize)
        return {"accuracy": score if normalize else int(score)}

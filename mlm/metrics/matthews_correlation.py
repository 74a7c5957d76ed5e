"""Matthews correlation coefficient (MCC), the multiclass form (Gorodkin 2004) for more than 2 classes."""

from __future__ import annotations

import evaluate
from sklearn.metrics import matthews_corrcoef

from mlm.metrics import common

_DESCRIPTION = """\
The Matthews correlation coefficient measures the quality of classifications from the whole confusion
matrix: +1 is perfect, 0 no better than chance, -1 total disagreement. It stays meaningful on unbalanced
classes, which is why GLUE reports it for CoLA. When a prediction or reference column is constant, it is 0.
"""

_CITATION = """\
@article{matthews1975,
  title={Comparison of the predicted and observed secondary structure of T4 phage lysozyme},
  author={Matthews, Brian W.},
  journal={Biochimica et Biophysica Acta (BBA) - Protein Structure},
  volume={405},
  number={2},
  pages={442--451},
  year={1975}
}
@article{gorodkin2004,
  title={Comparing two K-category assignments by a K-category correlation coefficient},
  author={Gorodkin, Jan},
  journal={Computational Biology and Chemistry},
  volume={28},
  number={5},
  pages={367--374},
  year={2004}
}
"""

_INPUTS = """\
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
Returns:
    matthews_correlation (float): in [-1, 1].
Example:
    >>> MatthewsCorrelation(keep_in_memory=True).compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'matthews_correlation': 0.5773502691896258}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class MatthewsCorrelation(evaluate.Metric):
    """Matthews correlation, computed by scikit-learn (no Hub download)."""

    def _info(self) -> evaluate.MetricInfo:
        return common.label_metric_info(
            _DESCRIPTION, _CITATION, _INPUTS, "https://en.wikipedia.org/wiki/Phi_coefficient"
        )

    def _compute(self, predictions, references) -> dict:
        score = common.sklearn_score(matthews_corrcoef, predictions, references)
        return {"matthews_correlation": score}

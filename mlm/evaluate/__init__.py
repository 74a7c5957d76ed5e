"""`mlm evaluate MODEL --suite SUITE.yaml`: what pretraining buys, on a suite of classification tasks.

For every task of the suite, the checkpoint is fine-tuned with N seeds (median and spread reported), the same
architecture is trained from scratch with the same seeds, and TF-IDF + logistic regression is fitted on the
same labels. `label_fractions` repeats this on a stratified, seeded share of the training labels (the
label-efficiency curve). When MODEL is a pretraining output folder holding `checkpoint-N` folders (or a
comma-separated list of checkpoints), every checkpoint is also fine-tuned (pretrained method only) and
downstream accuracy is plotted against the pretraining tokens each one had seen.

Suite files (YAML) define the tasks; see suites/README.md. Outputs in `output_dir`: results.json, results.md,
results.png (bar chart), label_efficiency.png (with several label fractions), pretraining_curve.png (with
several checkpoints), mlm_step.json, and runs/ (one folder per fine-tuning run: its metrics are reused when
`mlm evaluate` runs again with the same settings, so an interrupted evaluation resumes where it stopped) and
data/ (each task's data as read, with labels transformed and test subsets drawn).

Modules, in the order `evaluate()` uses them: config (options), suite (suite files), plan (what to run),
models (checkpoints to score), data (each task's data), runs (one run, reused when unchanged), progress (the
line per run), results (rows, results.json, results.md), plots (the charts), pipeline (`evaluate` itself).
"""

from mlm.evaluate.config import EvaluateConfig, parse_fractions
from mlm.evaluate.data import prepare_task_data
from mlm.evaluate.models import Checkpoint, resolve_models
from mlm.evaluate.pipeline import evaluate
from mlm.evaluate.plan import METHODS
from mlm.evaluate.plots import write_plots
from mlm.evaluate.results import STEP, results_markdown, summarize
from mlm.evaluate.suite import SPLITS, FileOptions, Suite, Task, load_suite

__all__ = [
    "METHODS",
    "SPLITS",
    "STEP",
    "Checkpoint",
    "EvaluateConfig",
    "FileOptions",
    "Suite",
    "Task",
    "evaluate",
    "load_suite",
    "parse_fractions",
    "prepare_task_data",
    "resolve_models",
    "results_markdown",
    "summarize",
    "write_plots",
]

"""What an evaluation will run: the tasks, label fractions, seeds and models of a config and a suite; what each
run gives (`Outcome`).

Every run is listed before the first starts (for the progress line's "run 3/24" and its ETA), grouped as the
results table groups them: one group per task, method, label fraction and model, one run per seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data_prep.errors import UserError
from mlm.evaluate.config import EvaluateConfig, parse_fractions, split_names
from mlm.evaluate.models import Checkpoint, pick_evenly, resolve_models
from mlm.evaluate.suite import Suite, Task

METHODS = ("pretrained", "scratch", "tfidf")


@dataclass
class Group:
    """The runs behind one row of the results: a task, method, label fraction and model over seeds."""

    task: Task
    method: str  # one of METHODS
    fraction: float
    model: Checkpoint
    intermediate: bool  # an intermediate checkpoint of the pretraining curve
    seeds: list[int]
    runs_dir: Path

    @property
    def runs(self) -> list[Run]:
        return [Run(self, seed) for seed in self.seeds]


@dataclass
class Run:
    """One fine-tuning (or TF-IDF) run of a group, with one seed."""

    group: Group
    seed: int

    @property
    def folder(self) -> Path:
        g = self.group
        prefix = g.model.name if g.intermediate else g.method
        return g.runs_dir / g.task.name / f"{prefix}-f{g.fraction:g}-seed{self.seed}"

    def describe(self) -> str:
        g = self.group
        what = g.model.name if g.intermediate else g.method
        return f"task {g.task.name}, {what}, {g.fraction * 100:g}% labels, seed {self.seed}"


@dataclass
class Outcome:
    """What a run gave: its metrics, whether they were reused from an earlier evaluation, the seconds it took."""

    result: dict[str, Any]
    reused: bool
    seconds: float


@dataclass
class Plan:
    """An evaluation resolved: what to run, and where the results go."""

    cfg: EvaluateConfig
    suite: Suite
    output_dir: Path
    main: Checkpoint
    others: list[Checkpoint]  # intermediate checkpoints, for the pretraining curve
    tasks: list[Task]
    fractions: list[float]
    seeds: list[int]
    seeds_full: list[int]  # the seeds at label fraction 1.0
    groups: list[Group]

    @property
    def runs(self) -> list[Run]:
        return [run for group in self.groups for run in group.runs]


def make_plan(cfg: EvaluateConfig, suite: Suite) -> Plan:
    """Resolve the config against the suite: tasks, fractions, seeds, models, and the groups of runs."""
    main, others = resolve_models(cfg.model)
    tasks = _pick_tasks(suite, split_names(cfg.tasks))
    curve_tasks = split_names(cfg.curve_tasks) or [t.name for t in tasks]
    unknown = [t for t in curve_tasks if t not in [x.name for x in tasks]]
    if unknown:
        raise UserError(f"evaluate: curve_tasks {', '.join(unknown)} are not among the evaluated tasks")
    seeds = list(range(cfg.seeds or suite.seeds))
    plan = Plan(
        cfg=cfg,
        suite=suite,
        output_dir=Path(cfg.output_dir or f"runs/evaluate/{suite.name}"),
        main=main,
        others=pick_evenly(others, cfg.max_checkpoints),
        tasks=tasks,
        fractions=parse_fractions(cfg.label_fractions, "label_fractions") or suite.label_fractions,
        seeds=seeds,
        seeds_full=list(range(cfg.seeds_at_full)) if cfg.seeds_at_full else seeds,
        groups=[],
    )
    curve_fractions = parse_fractions(cfg.curve_label_fractions, "curve_label_fractions")
    for task in tasks:
        plan.groups += _main_groups(plan, task)
        if task.name in curve_tasks:
            plan.groups += _curve_groups(plan, task, curve_fractions or plan.fractions[:1])
    return plan


def _pick_tasks(suite: Suite, wanted: list[str]) -> list[Task]:
    if not wanted:
        return suite.tasks
    names = [t.name for t in suite.tasks]
    unknown = [t for t in wanted if t not in names]
    if unknown:
        raise UserError(f"evaluate: unknown task(s) {', '.join(unknown)}; the suite has: {', '.join(names)}")
    return [t for t in suite.tasks if t.name in wanted]


def _main_groups(plan: Plan, task: Task) -> list[Group]:
    """The main model and the baselines, at every label fraction."""
    skip = {"scratch": plan.cfg.no_scratch, "tfidf": plan.cfg.no_tfidf or not task.single_label}
    groups = []
    for fraction in plan.fractions:
        for method in (m for m in METHODS if not skip.get(m)):
            seeds = _seeds(plan, fraction)
            if method == "tfidf" and _tfidf_is_deterministic(task, fraction):
                seeds = seeds[:1]
            groups.append(Group(task, method, fraction, plan.main, False, seeds, plan.output_dir / "runs"))
    return groups


def _curve_groups(plan: Plan, task: Task, fractions: list[float]) -> list[Group]:
    """Each intermediate checkpoint, pretrained only, at the curve's label fractions."""
    return [
        Group(task, "pretrained", fraction, ck, True, _seeds(plan, fraction), plan.output_dir / "runs")
        for ck in plan.others
        for fraction in fractions
    ]


def _seeds(plan: Plan, fraction: float) -> list[int]:
    return plan.seeds_full if fraction >= 1.0 else plan.seeds


def _tfidf_is_deterministic(task: Task, fraction: float) -> bool:
    """All rows, no subset: every seed sees the same labels and lbfgs gives the same model."""
    return fraction >= 1.0 and task.max_train_samples is None

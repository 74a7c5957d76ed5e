"""`evaluate(cfg)`: read the suite, plan the runs, run them task by task, write the results."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

from data_prep.outputs import output_folder
from mlm.evaluate.config import EvaluateConfig
from mlm.evaluate.data import TaskData, prepare_task_data
from mlm.evaluate.plan import Plan, make_plan
from mlm.evaluate.plots import write_plots
from mlm.evaluate.progress import Progress, quiet
from mlm.evaluate.results import STEP, collect_results, group_rows, write_results
from mlm.evaluate.runs import execute
from mlm.evaluate.suite import load_suite


def evaluate(cfg: EvaluateConfig, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run the suite; write results.json / results.md / PNGs into output_dir; return the results."""
    cfg.validate()
    plan = make_plan(cfg, load_suite(cfg.suite))
    config = dataclasses.asdict(cfg)
    with output_folder(plan.output_dir, STEP, inputs(plan), in_place=True, config=config):
        started = time.perf_counter()
        rows = run_plan(plan, log)
        results = collect_results(plan, rows, time.perf_counter() - started)
        results["plots"] = write_plots(results, plan.output_dir)
        table = write_results(results, plan)
    log("\n" + table)
    return results


def inputs(plan: Plan) -> dict[str, list[str]]:
    """What an evaluation reads: the models, the suite and the tasks' data files."""
    return {
        "model": [p.strip() for p in str(plan.cfg.model).split(",") if p.strip()],
        "suite": [str(plan.cfg.suite)],
        "data": [f.path for task in plan.tasks for f in task.files.values()],
    }


def run_plan(plan: Plan, log: Callable[[str], Any]) -> list[dict]:
    """Every run of the plan in order (each task's data prepared before its first run); the result rows."""
    progress = Progress(plan.runs, log)
    data: dict[str, TaskData] = {}
    rows: list[dict] = []
    for group in plan.groups:
        task = group.task
        if task.name not in data:
            with quiet(plan.cfg.verbose):
                data[task.name] = prepare_task_data(task, plan.output_dir / "data" / task.name)
            sizes = ", ".join(f"{s} {n:,}" for s, n in data[task.name].rows.items())
            log(f"[evaluate] task {task.name}: {sizes}")
        results = []
        for run in group.runs:
            outcome = execute(plan, run, data[task.name])
            progress.run_done(run, outcome)
            results.append(outcome.result)
        rows += group_rows(group, results)
    return rows

"""The results: one row per task / split / method / label fraction / model (median and spread over seeds),
written as results.json and the Markdown table results.md."""

from __future__ import annotations

import dataclasses
import os
import statistics
from pathlib import Path
from typing import Any

from data_prep.io import write_json
from mlm.evaluate.plan import METHODS, Group, Plan
from mlm.evaluate.runs import finetune_settings

STEP = "evaluate"
SPLIT_NAMES = (("validation", "dev"), ("test", "test"))  # fine-tuning's split -> the name in the results
# the fine-tuning settings results.json states (the others are in each run's mlm_step.json)
REPORTED_SETTINGS = ("learning_rate", "num_train_epochs", "min_train_steps", "per_device_train_batch_size",
                     "weight_decay", "warmup_steps", "max_seq_length", "long_text", "metric_for_best_model")  # fmt: skip


def summarize(values: list[float]) -> dict[str, Any]:
    """Median and spread (min, max, standard deviation) of one metric over seeds."""
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "std": float(statistics.pstdev(values)) if len(values) > 1 else 0.0,
        "values": [float(v) for v in values],
    }


def group_rows(group: Group, runs: list[dict]) -> list[dict]:
    """The rows of one group (a row per split scored by every run): each metric summarized over seeds."""
    task, rows = group.task, []
    for split, name in SPLIT_NAMES:
        if not runs or not all(split in r for r in runs):
            continue
        row = {
            "task": task.name,
            "split": name,
            "method": group.method,
            "label_fraction": group.fraction,
            "train_samples": int(statistics.median(r.get("train_samples", 0) for r in runs)),
            "metric": task.metric,
            "seeds": [r.get("seed") for r in runs],
            "folders": [str(run.folder) for run in group.runs],
            "metrics": {m: summarize([float(r[split][m]) for r in runs]) for m in task.metrics},
        }
        if group.method == "pretrained":
            ck = group.model
            row.update(checkpoint=ck.name, step=ck.step, tokens_seen=ck.tokens_seen)
        row["intermediate"] = group.intermediate
        rows.append(row)
    return rows


def collect_results(plan: Plan, rows: list[dict], runtime_s: float) -> dict:
    """The results.json of an evaluation (with the fine-tuning settings of its first task)."""
    finetune = finetune_settings(plan, plan.tasks[0])
    return {
        "model": plan.main.path,
        "suite": str(plan.suite.path),
        "suite_name": plan.suite.name,
        "checkpoints": [dataclasses.asdict(c) for c in [*plan.others, plan.main]],
        "label_fractions": plan.fractions,
        "seeds": plan.seeds,
        "seeds_at_full": plan.seeds_full,
        "finetune": {k: finetune.get(k) for k in REPORTED_SETTINGS},
        "rows": rows,
        "runtime_s": round(runtime_s, 1),
    }


def write_results(results: dict, plan: Plan) -> str:
    """Write results.json, results.md (showing the plots `results["plots"]` names, drawn before by
    `mlm.evaluate.plots.write_plots`) and mlm_step.json; return the Markdown table."""
    from data_prep.steps import write_step_metadata

    out = plan.output_dir
    write_json(out / "results.json", results)
    text = results_markdown(results)
    (out / ".results.md.tmp").write_text(text + "\n")
    os.replace(out / ".results.md.tmp", out / "results.md")
    inputs = {"model": plan.main.path, "suite": str(Path(plan.cfg.suite).resolve())}
    write_step_metadata(out, STEP, dataclasses.asdict(plan.cfg), inputs)
    return text


def main_rows(results: dict) -> list[dict]:
    """Rows of the main model and the baselines (not the intermediate checkpoints)."""
    return [r for r in results["rows"] if not r.get("intermediate")]


def results_markdown(results: dict) -> str:
    """The results as Markdown: the main table, the pretraining curve's table, and the plots."""
    lines = [*_header(results), *main_table(results), *_curve_table(results)]
    plots = results.get("plots") or {}
    if plots:
        lines += ["", *(f"![{name}]({Path(p).name})" for name, p in plots.items())]
    return "\n".join(lines)


def _header(results: dict) -> list[str]:
    settings = ", ".join(f"{k}={v}" for k, v in results["finetune"].items() if v is not None)
    return [
        f"# Evaluation: {results['model']} on suite {results['suite_name']}",
        "",
        f"Median over seeds (min–max in brackets); seeds {len(results['seeds'])} "
        f"({len(results['seeds_at_full'])} at label fraction 1.0). Fine-tuning: {settings}.",
        "",
    ]


def _cell(summary: dict | None) -> str:
    if not summary:
        return "-"
    s = f"{summary['median']:.4f}"
    if len(summary["values"]) > 1:
        s += f" ({summary['min']:.4f}–{summary['max']:.4f})"
    return s


def main_table(results: dict) -> list[str]:
    """A line per task, split, label fraction and metric; a column per method."""
    lines = [
        "| task | split | metric | labels | pretrained | from scratch | TF-IDF + LogReg |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = main_rows(results)
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    keys = sorted(
        {(r["task"], r["split"], r["label_fraction"]) for r in rows},
        key=lambda k: (tasks.index(k[0]), k[1], k[2]),
    )
    for task, split, fraction in keys:
        group = {
            r["method"]: r
            for r in rows
            if (r["task"], r["split"], r["label_fraction"]) == (task, split, fraction)
        }
        any_row = next(iter(group.values()))
        labels = f"{any_row['train_samples']:,} ({fraction:.0%})"
        for metric in any_row["metrics"]:
            cells = [_cell(group[m]["metrics"].get(metric)) if m in group else "-" for m in METHODS]
            lines.append(f"| {task} | {split} | {metric} | {labels} | " + " | ".join(cells) + " |")
    return lines


def _curve_table(results: dict) -> list[str]:
    """The pretrained model's score at every checkpoint, where there are intermediate ones."""
    curve = [r for r in results["rows"] if r.get("intermediate")]
    if not curve:
        return []
    lines = [
        "",
        "## Pretraining curve",
        "",
        "| checkpoint | step | tokens seen | task | split | labels | metric | pretrained |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = {(c["task"], c["split"], c["label_fraction"]) for c in curve}
    pretrained = [r for r in results["rows"] if r["method"] == "pretrained"]
    shown = [r for r in pretrained if (r["task"], r["split"], r["label_fraction"]) in keys]
    for r in sorted(shown, key=lambda r: (r["task"], r["split"], r["label_fraction"], r.get("step") or 0)):
        tokens = f"{r['tokens_seen']:,}" if r.get("tokens_seen") else "-"
        lines.append(
            f"| {r.get('checkpoint')} | {r.get('step') or '-'} | {tokens} | {r['task']} | {r['split']} | "
            f"{r['train_samples']:,} ({r['label_fraction']:.0%}) | {r['metric']} | "
            f"{_cell(r['metrics'][r['metric']])} |"
        )
    return lines

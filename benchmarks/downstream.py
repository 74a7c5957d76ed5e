"""Downstream benchmark: does 30 minutes of in-domain pretraining on 2 CPU cores beat TF-IDF and scratch?

    .venv/bin/python benchmarks/downstream.py            # about 80 minutes on 2 CPU cores

1. `mlm run recipes/imdb_pretrain.yaml`: tokenizer + the recipe's tiny encoder pretrained for 28 minutes (wall clock) on the
   50,000 unlabelled IMDB reviews in ../shared/data, keeping its checkpoints (reused when already done).
2. `mlm evaluate` with suites/imdb_sst2_cpu.yaml:
   - SST-2 (GLUE dev and SentEval labelled test) at 1% and 100% of the training labels, pretrained vs the same
     model from scratch vs TF-IDF + logistic regression, plus the pretraining curve (1% labels, a few
     intermediate checkpoints);
   - IMDB test at 100% (of the suite's CPU-sized training subset).
3. Prints one JSON object per line per task / split / method / label fraction:
   {"task", "split", "method", "label_fraction", "accuracy", "seeds", ...} and writes the same lines to
   benchmarks/results/downstream-YYYYMMDD.jsonl; copies the plots to benchmarks/results/ and rewrites the
   "Downstream" section of BENCHMARKS.md (between its markers) from the measured numbers.

Fine-tuning runs are cached in runs/downstream/: an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import yaml
from harness import REPO as ROOT
from harness import Results, log, markdown_table, write_marked_section

from data_prep.io import read_json
from mlm.evaluate import EvaluateConfig, evaluate
from mlm.recipe import RunConfig, plan_recipe, run_recipe

CPU_SUITE = "suites/imdb_sst2_cpu.yaml"
START, END = "<!-- downstream:start -->", "<!-- downstream:end -->"
METHODS = ("pretrained", "scratch", "tfidf")
# reference points of ../shared/data/README.md: TF-IDF + LogReg on the full training sets
REFERENCE = {("sst2", "dev"): 0.828, ("imdb", "test"): 0.907}


def jsonl_rows(results: dict) -> list[dict]:
    out = []
    for r in results["rows"]:
        s = r["metrics"].get("accuracy") or r["metrics"][r["metric"]]
        row = {
            "task": r["task"],
            "split": r["split"],
            "method": r["method"],
            "label_fraction": r["label_fraction"],
            "accuracy": round(s["median"], 4),
            "seeds": len(s["values"]),
            "accuracy_min": round(s["min"], 4),
            "accuracy_max": round(s["max"], 4),
            "train_samples": r["train_samples"],
        }
        if r["method"] == "pretrained":
            row.update(checkpoint=r.get("checkpoint"), tokens_seen=r.get("tokens_seen"))
        out.append(row)
    return out


def suite_variant(
    folder: Path, name: str, tasks: list[str] | None = None, suite: str = CPU_SUITE, **finetune
) -> Path:
    """`suite` (default suites/imdb_sst2_cpu.yaml) cut to `tasks`, with `finetune` options set; data paths
    made absolute (they are relative to the project root) so the variant can live in `folder`."""
    data = yaml.safe_load((ROOT / suite).read_text())
    data["tasks"] = {t: data["tasks"][t] for t in tasks or data["tasks"]}
    data["finetune"] = {**data.get("finetune", {}), **finetune}
    for spec in data["tasks"].values():
        for split in ("train", "dev", "test"):
            if isinstance(spec.get(split), dict):
                spec[split]["path"] = _absolute(spec[split]["path"])
            elif spec.get(split):
                spec[split] = _absolute(spec[split])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _absolute(spec: str) -> str:
    """A path relative to the project root made absolute; other specs (builtin:, hf:) kept."""
    return str((ROOT / spec).resolve()) if (ROOT / spec).exists() else spec


def imdb_recipe_pretrained(out: Path, minutes: float, saved_as: str, **changes) -> Path:
    """recipes/imdb_pretrain.yaml at `minutes` of pretraining (no intermediate checkpoints), with `changes`
    (a dict value updates that section, any other value replaces the key), saved in `out`'s parent as
    `saved_as` and run into `out`; reused when its final/ exists. Returns that final checkpoint."""
    recipe = yaml.safe_load((ROOT / "recipes" / "imdb_pretrain.yaml").read_text())
    recipe["output_dir"] = str(out)
    recipe["pretrain"].update(max_time_minutes=minutes, save_total_limit=2, save_steps=500)
    for key, value in changes.items():
        recipe[key] = {**recipe[key], **value} if isinstance(value, dict) else value
    path = out.parent / saved_as
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe))
    final = out / "pretrain" / "final"
    if not (final / "config.json").is_file():
        run_recipe(RunConfig(recipe=str(path), steps=["prepare", "tokenizer", "pack", "pretrain"]), log=log)
    return final


def evaluated_rows(cfg: EvaluateConfig, **extra) -> list[dict]:
    """`mlm evaluate` with `cfg`; its `jsonl_rows`, each with `extra` added and printed as a JSON line."""
    rows = jsonl_rows(evaluate(cfg, log=log))
    for row in rows:
        row.update(extra)
        print(json.dumps(row), flush=True)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="recipes/imdb_pretrain.yaml")
    p.add_argument("--suite", default="suites/imdb_sst2_cpu.yaml")
    p.add_argument("--output-dir", default="runs/downstream")
    p.add_argument("--results-dir", default="benchmarks/results")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--seeds-at-full", type=int, default=1, help="seeds at 100%% labels (the costly runs)")
    p.add_argument("--max-checkpoints", type=int, default=3, help="intermediate checkpoints on the curve")
    p.add_argument("--skip-imdb", action="store_true")
    p.add_argument(
        "--force-pretrain", action="store_true", help="pretrain again even if a finished run exists"
    )
    p.add_argument("--benchmarks-md", default="BENCHMARKS.md")
    args = p.parse_args()
    os.chdir(ROOT)
    started = time.perf_counter()
    results_file = Results("downstream", args.results_dir)

    log(f"[downstream] pretraining: mlm run {args.recipe}")
    plan = plan_recipe(RunConfig(recipe=args.recipe))
    pretrain_dir = Path(plan.configs["pretrain"].output_dir)
    if (
        (pretrain_dir / "final" / "config.json").is_file()
        and (pretrain_dir / "metrics.json").is_file()
        and not (args.force_pretrain)
    ):
        # `mlm run` redoes (and first deletes) a pretraining whose config fingerprint changed, which happens
        # whenever PretrainConfig gains a field: never throw away a finished 28-minute run for that
        log(f"[downstream] reusing the finished pretraining in {pretrain_dir} (--force-pretrain redoes it)")
    else:
        run_recipe(RunConfig(recipe=args.recipe, steps=["prepare", "tokenizer", "pack", "pretrain"]), log=log)
    pre_metrics = read_json(pretrain_dir / "metrics.json")
    log(
        f"[downstream] pretrained: {pre_metrics.get('steps')} steps, {pre_metrics.get('tokens_seen'):,} tokens"
    )

    out = Path(args.output_dir)
    stages = [
        (
            "sst2",
            EvaluateConfig(
                model=str(pretrain_dir),
                suite=args.suite,
                output_dir=str(out / "sst2"),
                tasks=["sst2"],
                seeds=args.seeds,
                seeds_at_full=args.seeds_at_full,
                label_fractions=["0.01", "1.0"],
                curve_label_fractions=["0.01"],
                max_checkpoints=args.max_checkpoints,
            ),
        )
    ]
    if not args.skip_imdb:
        stages.append(
            (
                "imdb",
                EvaluateConfig(
                    model=str(pretrain_dir / "final"),
                    suite=args.suite,
                    output_dir=str(out / "imdb"),
                    tasks=["imdb"],
                    seeds=args.seeds,
                    seeds_at_full=args.seeds_at_full,
                    label_fractions=["1.0"],
                ),
            )
        )
    results_dir = Path(args.results_dir)
    jsonl = results_file.path
    results_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pretrain_dir / "metrics.json", jsonl.with_name(jsonl.stem + "-pretrain-metrics.json"))
    all_rows: list[dict] = []
    evaluated: dict[str, dict] = {}
    for name, cfg in stages:
        log(f"[downstream] evaluate: {name} ({time.perf_counter() - started:.0f} s so far)")
        results = evaluate(cfg, log=log)
        evaluated[name] = results
        rows = jsonl_rows(results)
        for row in rows:
            print(json.dumps(row), flush=True)
        all_rows += rows
        results_file.write(rows)
        for plot, path in results.get("plots", {}).items():
            shutil.copyfile(path, results_dir / f"downstream-{name}-{plot}.png")
    wall = time.perf_counter() - started
    write_section(Path(args.benchmarks_md), args, pre_metrics, evaluated, all_rows, jsonl, wall)
    log(f"[downstream] done in {wall / 60:.1f} min; lines in {jsonl}")
    return 0


def _fmt(row: dict | None) -> str:
    if row is None:
        return "-"
    s = f"{row['accuracy']:.4f}"
    if row["seeds"] > 1:
        s += f" ({row['accuracy_min']:.3f}–{row['accuracy_max']:.3f})"
    return s


def write_section(
    md: Path, args, pre: dict, evaluated: dict, rows: list[dict], jsonl: Path, wall: float
) -> None:
    """Rewrite the Downstream section of BENCHMARKS.md (between its markers) from the measured rows."""
    main = [r for r in rows if r["method"] != "pretrained" or r.get("checkpoint") == "final"]
    arch = yaml.safe_load(Path(args.recipe).read_text())["pretrain"].get("architecture", "bert")
    blocks = {"bert": "BERT", "modernbert": "ModernBERT"}.get(arch, arch)
    lines = [
        START,
        "## Downstream",
        "",
        f"What 28 minutes of in-domain pretraining on 2 CPU cores buys. A `tiny` {blocks} (2 layers, 128 wide, "
        "16k WordPiece vocabulary, sequences of 128) pretrained with `recipes/imdb_pretrain.yaml` "
        f"({pre.get('steps')} steps, {pre.get('tokens_seen', 0):,} tokens seen, "
        f"{pre.get('train_tokens_per_second', 0):,.0f} tokens/s, MLM accuracy "
        f"{(pre.get('masked_accuracy') or 0):.3f}), then fine-tuned with `mlm evaluate` and "
        f"`{args.suite}` against the same model from scratch and TF-IDF + logistic regression trained on the "
        "same labels. Accuracy, median over seeds (min–max).",
        "",
        "```",
        ".venv/bin/python benchmarks/downstream.py",
        "```",
        "",
    ]
    keys = list(dict.fromkeys((r["task"], r["split"], r["label_fraction"]) for r in main))
    table = []
    for task, split, fraction in keys:
        by = {
            r["method"]: r
            for r in main
            if (r["task"], r["split"], r["label_fraction"]) == (task, split, fraction)
        }
        gap = (
            f"{100 * (by['pretrained']['accuracy'] - by['scratch']['accuracy']):+.1f} points"
            if "pretrained" in by and "scratch" in by
            else "-"
        )
        n = next(iter(by.values()))["train_samples"]
        table.append([task, split, f"{n:,} ({fraction:.0%})", *(_fmt(by.get(m)) for m in METHODS), gap])
    header = [
        "task",
        "split",
        "labels",
        "pretrained",
        "from scratch",
        "TF-IDF + LogReg",
        "pretrained − scratch",
    ]
    lines += markdown_table(header, table)
    curve = [r for r in rows if r["method"] == "pretrained" and r.get("tokens_seen")]
    if len({r.get("checkpoint") for r in curve}) > 1:
        lines += ["", "Pretraining curve (SST-2, 1% labels, median accuracy):", ""]
        points = sorted(curve, key=lambda r: (r["task"], r["split"], r["tokens_seen"]))
        lines += markdown_table(["checkpoint", "tokens seen", "split", "accuracy"],
                                [[r["checkpoint"], r["tokens_seen"], r["split"], _fmt(r)]
                                 for r in points if r["label_fraction"] == 0.01])  # fmt: skip
    lines += ["", "Goals (issue 5):", ""]
    goals = _goals(main)
    for line in goals:
        lines.append(f"- {line}")
    if any(line.endswith("not met") for line in goals):
        lines += [
            "",
            f"What would close the gap: the pretraining is far from converged: after {pre.get('steps')} steps "
            f"the MLM loss is still {pre.get('eval_loss') or 0:.2f} (masked accuracy "
            f"{(pre.get('masked_accuracy') or 0):.3f}, barely past predicting frequent words), and the curve "
            "above still rises with tokens seen. A longer budget (hours, not 28 minutes, on these 2 cores), "
            "or a GPU, which gives the same 28 minutes many times the tokens and lets the `mini`/`small` presets "
            "train long enough to pay off; fine-tuning on the full training sets (suites/imdb_sst2.yaml: "
            "all 67,349 SST-2 sentences, IMDB at 256 tokens) rather than the CPU subsets.",
        ]
    plots = sorted(p.name for p in Path(args.results_dir).glob("downstream-*.png"))
    lines += [""] + [f"![{p}](benchmarks/results/{p})" for p in plots]
    lines += [
        "",
        f"Raw lines: `{jsonl.as_posix()}`. Whole benchmark: {wall / 60:.0f} min wall time on "
        "the 2 CPU cores (fine-tuning runs are cached in runs/downstream, so reruns are quicker).",
        END,
    ]
    write_marked_section(md, START, END, lines)


def _goals(main: list[dict]) -> list[str]:
    def get(task, split, method, fraction):
        return next(
            (
                r
                for r in main
                if (r["task"], r["split"], r["method"], r["label_fraction"])
                == (task, split, method, fraction)
            ),
            None,
        )

    out = []
    for split in ("dev", "test"):
        pre, scr, tf = (get("sst2", split, m, 1.0) for m in ("pretrained", "scratch", "tfidf"))
        if pre and scr and tf:
            ok = pre["accuracy"] > tf["accuracy"] and pre["accuracy"] - scr["accuracy"] >= 0.05
            out.append(
                f"SST-2 {split}, {pre['train_samples']:,} labels (the suite's 100%): pretrained {pre['accuracy']:.4f} vs TF-IDF {tf['accuracy']:.4f} "
                f"({100 * (pre['accuracy'] - tf['accuracy']):+.1f}) and scratch {scr['accuracy']:.4f} "
                f"({100 * (pre['accuracy'] - scr['accuracy']):+.1f}; goal ≥ +5): {'met' if ok else 'not met'}"
            )
        pre, scr = get("sst2", split, "pretrained", 0.01), get("sst2", split, "scratch", 0.01)
        if pre and scr:
            gap = pre["accuracy"] - scr["accuracy"]
            out.append(
                f"SST-2 {split}, 1% labels: pretrained − scratch = {100 * gap:+.1f} points (goal ≥ +10): "
                f"{'met' if gap >= 0.10 else 'not met'}"
            )
    pre, tf = get("imdb", "test", "pretrained", 1.0), get("imdb", "test", "tfidf", 1.0)
    if pre and tf:
        out.append(
            f"IMDB test: pretrained {pre['accuracy']:.4f} vs TF-IDF on the same labels {tf['accuracy']:.4f} and "
            f"the full-train reference 0.907: {'met' if pre['accuracy'] > max(tf['accuracy'], 0.907) else 'not met'}"
        )
    return out


if __name__ == "__main__":
    sys.exit(main())

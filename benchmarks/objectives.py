"""Objectives study: what learns most per minute of CPU, objective (mlm, electra) x architecture (bert,
modernbert) x preset (tiny, mini), at equal wall-clock, on two domains of different kinds.

    .venv/bin/python benchmarks/objectives.py --stage screen     # every config at --screen-minutes
    .venv/bin/python benchmarks/objectives.py --stage confirm --configs electra-bert-tiny,mlm-bert-tiny,...
    .venv/bin/python benchmarks/objectives.py --quick            # smoke run: 1 minute each, one seed

Run it on an idle machine: every pretraining runs alone, with all threads, for the same wall-clock budget
(`max_time_minutes`; the step count and schedule are fitted to it), so a config that learns more per token
or runs more tokens per second wins. For each domain the data steps (prepare, tokenizer, pack) are shared.

Domains: IMDB (`recipes/imdb_pretrain.yaml`: the 50,000 unlabelled reviews), scored on SST-2 and IMDB with
`suites/imdb_sst2_cpu.yaml` (full training subset and 1% of it), and the built-in documentation corpus
(`recipes/demo.yaml`), scored on the demo task, so that no default is chosen for movie reviews alone. Each
pretrained model is fine-tuned with `mlm evaluate` beside the same architecture from scratch and TF-IDF.

Rows (one per config, task, split, method and label fraction, with per-seed values) go to
benchmarks/results/objectives-STAGE-YYYYMMDD.jsonl (rewritten after each config); the table is printed and,
with `--write-md`, written to BENCHMARKS.md between its markers with a plot (`--table-from` redraws them from rows).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import yaml
from harness import REPO as ROOT
from harness import Results, log, markdown_table, read_jsonl, write_marked_section
from masking import common_mlm_scores

from data_prep.io import read_json
from mlm.evaluate import EvaluateConfig, evaluate
from mlm.evaluate.suite import PER_RUN_KEYS
from mlm.masking import MaskingConfig
from mlm.recipe import RunConfig, plan_recipe, run_recipe


def markers(section: str) -> tuple[str, str]:
    """The BENCHMARKS.md markers of a section (the screen's kept their first name)."""
    name = "objectives" if section == "screen" else f"objectives-{section}"
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


# A config masks as the API does by default (single tokens at 15%) unless a setting says, whatever the domain's
# recipe masks, so that a name means the same pretraining when a recipe changes (imdb_pretrain.yaml masks spans).
DEFAULT_MASKING = asdict(MaskingConfig())
CONFIGS = {  # name -> pretraining options on top of the domain's recipe: 1e-3 and batch 64 unless a setting says
    f"{objective}-{arch}-{preset}": {
        "objective": objective,
        "architecture": arch,
        "preset": preset,
        "learning_rate": 1e-3,
        "per_device_train_batch_size": 64,
        **DEFAULT_MASKING,
    }
    for preset in ("tiny", "mini")
    for arch in ("bert", "modernbert")
    for objective in ("mlm", "electra")
    if not (objective == "electra" and arch == "modernbert")  # ELECTRA builds its own (BERT-style) blocks
}
SETTINGS = {  # training settings a config name may add after "+", e.g. mlm-modernbert-tiny+lr3e-3+nodropout
    "lr2e-3": {"learning_rate": 2e-3},
    "lr3e-3": {"learning_rate": 3e-3},
    "lr5e-3": {"learning_rate": 5e-3},
    "bs32": {"per_device_train_batch_size": 32},
    # a GPU's batch (benchmarks/gpu_pretrain.sh); at ~10 ms a step, evaluate and save every 2,000 steps, not 250
    "gpu": {"per_device_train_batch_size": 256, "eval_steps": 2000, "save_steps": 2000},
    "nodropout": {"config_overrides": {"hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}},
    "spans3": {"mask_span_mean": 3.0},
    "rate30to15": {"mlm_probability": 0.3, "mlm_probability_final": 0.15},
    # ModernBERT's classifier on the mean of the token states
    "meanpool": {"config_overrides": {"classifier_pooling": "mean"}},
}
DOMAINS = {
    "imdb": {"recipe": "recipes/imdb_pretrain.yaml", "suite": "suites/imdb_sst2_cpu.yaml", "tasks": None},
    "pydocs": {"recipe": "recipes/demo.yaml", "suite": None, "tasks": None},
}
DEMO_TASK = {  # the demo task as a suite task; its fine-tuning settings are recipes/demo.yaml's
    "train": "builtin:pydocs@train",
    "dev": "builtin:pydocs@validation",
    "test": "builtin:pydocs@test",
    "metrics": ["accuracy", "f1_macro"],
}


def options(name: str) -> dict:
    """The pretraining options of a config name: a CONFIGS entry, then each "+SETTING" of SETTINGS."""
    base, *settings = name.split("+")
    unknown = [x for x in [base] if x not in CONFIGS] + [x for x in settings if x not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown config part(s) {', '.join(unknown)}: configs {', '.join(CONFIGS)}; "
                         f"settings {', '.join(SETTINGS)}")  # fmt: skip
    merged = dict(CONFIGS[base])
    for setting in settings:
        for key, value in SETTINGS[setting].items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def study_recipe(domain: str, name: str, minutes: float, out: Path) -> Path:
    """The domain's recipe with this config's pretraining options, its own pretrain folder, shared data."""
    base = yaml.safe_load((ROOT / DOMAINS[domain]["recipe"]).read_text())
    shared = out / domain / "data"
    recipe = {k: v for k, v in base.items() if k not in ("finetune", "report")}
    recipe.update(name=f"{domain}-{name}", output_dir=str(out / domain / name))
    recipe["prepare"] = {**base["prepare"], "output_dir": str(shared / "prepared")}
    recipe["tokenizer"] = {**base["tokenizer"], "output_dir": str(shared / "tokenizer")}
    recipe["pack"] = {**base["pack"], "output_dir": str(shared / "packed")}
    pre = {**base["pretrain"], **options(name), "max_time_minutes": minutes, "save_total_limit": 2}
    pre.pop("max_steps", None)
    recipe["pretrain"] = pre
    path = out / "recipes" / f"{domain}-{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def suite_for(domain: str, out: Path, seeds: int) -> str:
    """The domain's suite; for pydocs, the demo task with recipes/demo.yaml's fine-tuning settings."""
    if DOMAINS[domain]["suite"]:
        return DOMAINS[domain]["suite"]
    finetune = yaml.safe_load((ROOT / DOMAINS[domain]["recipe"]).read_text())["finetune"]
    settings = {k: v for k, v in finetune.items() if k not in PER_RUN_KEYS}
    suite = {"name": "pydocs_demo", "seeds": seeds, "finetune": settings, "tasks": {"demo": DEMO_TASK}}
    path = out / "recipes" / "pydocs_demo_suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    return str(path)


def pretrain_config(domain: str, name: str, minutes: float, out: Path, score_only: bool = False) -> dict:
    """Pretrain one config (reused when finished with the same recipe); its metrics. `score_only`: take the
    checkpoint already there (a copied corpus has new file times, which would start the pretraining again)."""
    recipe = study_recipe(domain, name, minutes, out)
    if not score_only:
        log(f"[objectives] {domain} {name}: pretraining for {minutes:g} min")
        run_recipe(RunConfig(recipe=str(recipe), steps=["prepare", "tokenizer", "pack", "pretrain"]), log=log)
    folder = Path(plan_recipe(RunConfig(recipe=str(recipe))).configs["pretrain"].output_dir)
    if score_only and not (folder / "final").is_dir():
        raise SystemExit(f"--score-only: no pretrained checkpoint in {folder / 'final'}")
    return {"folder": folder, "metrics": read_json(folder / "metrics.json")}


def mlm_at_15(domain: str, name: str, run: dict, out: Path) -> dict:
    """An MLM model's loss and accuracy on its domain's validation blocks masked once at 15% (token level),
    and with the unmasked words shuffled: comparable across masking settings, whose own eval losses are not.
    Empty for ELECTRA (its checkpoint is the discriminator, with no masked-LM head)."""
    if options(name)["objective"] != "mlm":
        return {}
    final = run["folder"] / "final"
    scores = common_mlm_scores({name: final}, out / domain / "data" / "packed", final)[name]
    return {k: round(v, 4) for k, v in scores.items() if k != "positions"}


def model_kind(name: str) -> str:
    """The fine-tuned architecture: ELECTRA's discriminator is its own kind; otherwise bert or modernbert."""
    cfg = options(name)
    return "electra" if cfg["objective"] == "electra" else cfg["architecture"]


def scratch_name(name: str) -> str:
    """The from-scratch twin of a config: its model kind and preset, and the settings that change the
    fine-tuned model (model overrides such as the classifier's pooling); training settings do not."""
    shaping = [s for s in name.split("+")[1:] if "config_overrides" in SETTINGS[s]]
    return "+".join([f"scratch-{model_kind(name)}-{options(name)['preset']}", *shaping])


def score(domain: str, name: str, run: dict, args, out: Path, scratch: bool, tfidf: bool) -> list[dict]:
    """`mlm evaluate` of one pretrained config; scratch once per model kind and domain, TF-IDF once per domain."""
    results = evaluate(
        EvaluateConfig(
            model=str(run["folder"] / "final"),
            suite=suite_for(domain, out, args.seeds),
            output_dir=str(out / domain / name / "evaluate"),
            seeds=args.seeds,
            label_fractions=args.label_fractions.split(","),
            no_scratch=not scratch,
            no_tfidf=not tfidf,
            tasks=[t for t in args.tasks.split(",") if t],
        ),
        log=log,
    )
    rows = []
    for r in results["rows"]:
        if r.get("intermediate"):
            continue
        s = r["metrics"].get("accuracy") or r["metrics"][r["metric"]]
        config = {"pretrained": name, "scratch": scratch_name(name)}
        row = {"domain": domain, "config": config.get(r["method"], r["method"]),
               "task": r["task"], "split": r["split"], "method": r["method"],
               "label_fraction": r["label_fraction"], "accuracy": round(s["median"], 4),
               "values": [round(v, 4) for v in s["values"]]}  # fmt: skip
        if r["method"] == "pretrained":
            m = run["metrics"]
            row.update(options(name), steps=m.get("steps"), tokens_seen=m.get("tokens_seen"),
                       tokens_per_second=round(m.get("train_tokens_per_second") or 0),
                       eval_loss=m.get("eval_loss"), minutes=args.minutes, **run.get("mlm_at_15", {}))  # fmt: skip
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


SHOWN = {("sst2", "dev"), ("imdb", "test"), ("demo", "test")}  # the splits the goals name


def shown_columns(rows: list[dict]) -> list[tuple]:
    """The (domain, task, split, label fraction) columns of the rows whose task and split are in SHOWN."""
    return sorted({(r["domain"], r["task"], r["split"], r["label_fraction"]) for r in rows
                   if (r["task"], r["split"]) in SHOWN})  # fmt: skip


def seeds_min_max(row: dict) -> tuple[float, float] | None:
    """The lowest and highest seed of a row; None for a single seed."""
    values = row.get("values") or []
    return (min(values), max(values)) if len(values) > 1 else None


def seed_counts(rows: list[dict], default: int) -> str:
    """The fine-tuning seeds of the rows: "3", or "1 or 3" when cells differ."""
    counts = sorted({len(r.get("values") or [0]) for r in rows}) or [default]
    return " or ".join(map(str, counts))


def accuracy_cell(row: dict) -> str:
    """The median, with the seeds' range when there are several: 0.802 (0.790-0.813)."""
    low_high = seeds_min_max(row)
    spread = f" ({low_high[0]:.3f}-{low_high[1]:.3f})" if low_high else ""
    return f"{row['accuracy']:.3f}{spread}"


def loss_note(row: dict) -> str:
    """The pretraining eval loss of a row, and its loss at 15% token masking when measured: " (4.79; 4.81)"."""
    losses = [f"{row[k]:.2f}" for k in ("eval_loss", "loss_at_015") if row.get(k)]
    return f" ({'; '.join(losses)})" if losses else ""


def table(rows: list[dict]) -> list[str]:
    """Markdown: one row per config, one column per (domain, task, split, label fraction) of SHOWN."""
    cols = shown_columns(rows)
    configs = list(dict.fromkeys(r["config"] for r in rows))
    header = ["config", "tokens seen (pretraining eval loss; at 15% token masking)"]
    header += [f"{d}/{t} {s} {f:.0%}" for d, t, s, f in cols]
    lines = []
    cell = {(r["config"], r["domain"], r["task"], r["split"], r["label_fraction"]): r for r in rows}
    for c in configs:
        seen = {r["domain"]: r for r in rows if r["config"] == c and r.get("tokens_seen")}
        vals = [cell.get((c, *col)) for col in cols]
        text = [accuracy_cell(v) if v else "-" for v in vals]
        tokens = (
            ", ".join(f"{d} {r['tokens_seen'] / 1e6:.1f}M" + loss_note(r) for d, r in seen.items()) or "-"
        )
        lines.append([c, tokens, *text])
    return markdown_table(header, lines)


def seed_range(row: dict) -> list[list[float]] | None:
    """Error bars from the median to the seeds' min and max (none for one seed)."""
    low_high = seeds_min_max(row)
    if not low_high:
        return None
    return [[row["accuracy"] - low_high[0]], [low_high[1] - row["accuracy"]]]


def plot(rows: list[dict], path: Path) -> None:
    """One panel per SHOWN column: each config's pretrained bar beside its scratch bar; TF-IDF dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = shown_columns(rows)
    fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3.4), squeeze=False)
    for ax, (domain, task, split, fraction) in zip(axes[0], cols):
        here = [
            r
            for r in rows
            if (r["domain"], r["task"], r["split"], r["label_fraction"]) == (domain, task, split, fraction)
        ]
        pre = [r for r in here if r["method"] == "pretrained"]
        scratch = {r["config"]: r for r in here if r["method"] == "scratch"}
        for i, r in enumerate(pre):
            twin = scratch.get(scratch_name(r["config"]))  # none when its scratch twin was not run
            for x, row, color, name in (
                (i - 0.2, r, "tab:blue", "pretrained"),
                (i + 0.2, twin, "tab:orange", "scratch"),
            ):
                if row is None:
                    continue
                ax.bar(
                    x,
                    row["accuracy"],
                    0.4,
                    yerr=seed_range(row),
                    color=color,
                    label=None if name in ax.get_legend_handles_labels()[1] else name,
                )
        for r in here:
            if r["method"] == "tfidf":
                ax.axhline(r["accuracy"], color="gray", linestyle=":", label="TF-IDF")
        ax.set_xticks(
            range(len(pre)),
            [r["config"].replace(f"-{options(r['config'])['preset']}", "") for r in pre],
            rotation=30,
            fontsize=8,
        )
        ax.set_title(f"{task} {split}, {fraction:.0%} labels", fontsize=9)
        ax.set_ylim(min([r["accuracy"] for r in here] + [0.5]) - 0.05, 1.0)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--stage",
        choices=["screen", "confirm", "gpu"],
        default="screen",
        help="gpu: configs pretrained on a GPU by benchmarks/gpu_pretrain.sh, scored here with --score-only",
    )
    p.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help="comma-separated names from CONFIGS, each with optional +SETTING parts",
    )
    p.add_argument("--domains", default="imdb,pydocs")
    p.add_argument("--minutes", type=float, default=None, help="pretraining budget (screen 8, confirm 28)")
    p.add_argument("--seeds", type=int, default=None, help="fine-tuning seeds (screen 1, confirm 3)")
    p.add_argument("--label-fractions", default="0.01,1.0")
    p.add_argument("--tasks", default="", help="only these tasks of the domains' suites (default: all)")
    p.add_argument("--output-dir", default="runs/objectives")
    p.add_argument("--results-dir", default="benchmarks/results")
    p.add_argument(
        "--no-baselines",
        action="store_true",
        help="no scratch or TF-IDF runs (their rows come from an earlier jsonl, see --table-from)",
    )
    p.add_argument(
        "--score-only",
        action="store_true",
        help="no pretraining: fine-tune the checkpoints an earlier run of these configs left in --output-dir",
    )
    p.add_argument(
        "--pretrain-only",
        action="store_true",
        help="pretrain the configs and stop (their metrics are printed; score later with --score-only)",
    )
    p.add_argument("--write-md", action="store_true", help="write the table into BENCHMARKS.md")
    p.add_argument(
        "--section",
        help="with --write-md: the BENCHMARKS.md section (its title, markers and plot) when not the stage's own",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 1 minute, 1 seed, tiny configs, pydocs")
    p.add_argument(
        "--table-from",
        help="no runs: the table of these jsonl files, comma-separated (with --write-md, into BENCHMARKS.md)",
    )
    args = p.parse_args()
    if args.quick:
        args.minutes, args.seeds, args.domains = 1.0, 1, "pydocs"
        args.configs = "mlm-bert-tiny,electra-bert-tiny,mlm-modernbert-tiny"
    args.minutes = args.minutes or {"screen": 8.0, "confirm": 28.0, "gpu": 5.0}[args.stage]
    args.seeds = args.seeds or (1 if args.stage == "screen" else 3)
    args.section = args.section or args.stage
    os.chdir(ROOT)
    out, started, rows = Path(args.output_dir) / args.stage, time.perf_counter(), []
    results = (
        None
        if args.table_from or args.pretrain_only
        else Results(f"objectives-{args.stage}", args.results_dir)
    )
    if args.table_from:
        rows = read_jsonl(args.table_from.split(","))
        args.domains = ""
    for domain in filter(None, args.domains.split(",")):
        scratched: set[str] = set()
        for i, name in enumerate(args.configs.split(",")):
            run = pretrain_config(domain, name, args.minutes, out, args.score_only)
            if args.pretrain_only:
                print(json.dumps({"domain": domain, "config": name, **run["metrics"]}), flush=True)
                continue
            run["mlm_at_15"] = mlm_at_15(domain, name, run, out)
            kind = scratch_name(name)
            fresh = not args.no_baselines
            scored = score(
                domain, name, run, args, out, scratch=fresh and kind not in scratched, tfidf=fresh and i == 0
            )
            rows += scored
            scratched.add(kind)
            results.write(scored)
    if args.pretrain_only:
        return 0
    jsonl = args.table_from or results.path
    lines = table(rows)
    print("\n".join(lines))
    if args.write_md:
        png = Path(args.results_dir) / f"objectives-{args.section}.png"
        plot(rows, png)
        budget = (f"{args.minutes:g} min of pretraining per config on one GPU (`benchmarks/gpu_pretrain.sh`), "
                  "fine-tuned on 2 CPU cores" if args.stage == "gpu" else
                  f"{args.minutes:g} min of pretraining per config on 2 CPU cores")  # fmt: skip
        intro = (f"## Objectives study ({args.section}, issue 11)\n\n`benchmarks/objectives.py --stage {args.stage}`: "
                 f"{budget}, {seed_counts(rows, args.seeds)} fine-tuning "
                 f"seed(s), accuracy: median (min-max over seeds). Rows: `{jsonl}`.\n\n![objectives]({png})\n")  # fmt: skip
        start, end = markers(args.section)
        write_marked_section(Path("BENCHMARKS.md"), start, end, [start, intro, *lines, end])
    log(f"[objectives] done in {(time.perf_counter() - started) / 60:.1f} min; rows in {jsonl}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Masking studies: token vs whole-word masking, rate 0.15 vs 0.3 vs 0.4, at the same pretraining budget.

    .venv/bin/python benchmarks/masking.py          # about 70 minutes on 2 CPU cores

1. `mlm run` of each study: recipes/masking_study.yaml with the study's masking settings (STUDIES): the same IMDB data, tokenizer, packed blocks,
   `tiny` model and budget of 2,500 steps of 64 x 128 tokens; only the masking differs. A token budget, not
   wall clock, so a busy machine cannot favour one study. `--parallel 2` pretrains two at once with one
   thread each (more tokens/s in all than one run on two threads on this machine). Finished runs are reused.
2. Every model is scored on one common MLM task: the same validation blocks masked once at 15% token masking
   (80/10/10, seed 0). Each model's own eval loss is at its own masking and not comparable across rates.
3. `mlm evaluate` of each model on SST-2 (suites/imdb_sst2_cpu.yaml) at 1% and 10% of the training labels,
   3 seeds; the from-scratch and TF-IDF rows once, beside the first study.
4. Prints one JSON object per line (task, split, method, recipe, masking, mlm_probability, label_fraction,
   accuracy, seeds, ...), writes them to benchmarks/results/masking-YYYYMMDD.jsonl and rewrites the
   "Masking studies" section of BENCHMARKS.md (between its markers) from the measured numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml
from downstream import jsonl_rows
from harness import REPO as ROOT
from harness import Results, log, markdown_table, write_marked_section

from data_prep.io import read_json
from mlm.evaluate import EvaluateConfig, evaluate
from mlm.recipe import RunConfig, plan_recipe, run_recipe

START, END = "<!-- masking:start -->", "<!-- masking:end -->"
BASE = "recipes/masking_study.yaml"
# each study: the base recipe's pretraining with these masking settings
STUDIES = {
    "masking_token_015": {},
    "masking_token_03": {"mlm_probability": 0.3},
    "masking_token_04": {"mlm_probability": 0.4},
    "masking_wwm_015": {"whole_word_mask": True},
}


def study_recipes(base: str, names: list[str], folder: Path) -> list[str]:
    """The recipe of each study: `base` with the study's masking settings, its own name and run folder."""
    recipe = yaml.safe_load((ROOT / base).read_text())
    paths = []
    for name in names:
        study = {**recipe, "name": name, "output_dir": f"runs/{name}"}
        study["pretrain"] = {**recipe["pretrain"], **STUDIES[name]}
        path = folder / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(study, sort_keys=False))
        paths.append(str(path))
    return paths


def pretrain_all(recipes: list[str], parallel: int, logs: Path) -> None:
    """Pretrain each recipe not yet finished, `parallel` at a time, each process on 2 // parallel threads."""
    threads = max(1, (os.cpu_count() or 2) // parallel)
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    todo = []
    for recipe in recipes:
        out = Path(plan_recipe(RunConfig(recipe=recipe)).configs["pretrain"].output_dir)
        if (out / "final" / "config.json").is_file() and (out / "metrics.json").is_file():
            log(f"[masking] reusing the finished pretraining in {out}")
        else:
            todo.append(recipe)
    running: list[tuple[str, subprocess.Popen]] = []
    logs.mkdir(parents=True, exist_ok=True)
    while todo or running:
        while todo and len(running) < parallel:
            recipe = todo.pop(0)
            name = Path(recipe).stem
            log(f"[masking] pretraining {name} ({threads} thread(s)); log in {logs / name}.log")
            with open(logs / f"{name}.log", "w") as f:
                cmd = [sys.executable, "-m", "mlm", "run", recipe, "--steps", "pretrain"]
                running.append((recipe, subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)))
        time.sleep(5)
        for recipe, proc in list(running):
            if proc.poll() is not None:
                running.remove((recipe, proc))
                if proc.returncode != 0:
                    raise SystemExit(f"[masking] pretraining {recipe} failed (exit {proc.returncode})")


def common_mlm_scores(models: dict[str, Path], packed_dir: Path, tokenizer_dir: Path, n: int = 512) -> dict:
    """MLM loss and accuracy of each model on the same validation blocks, masked once at 15% (token level)."""
    import datasets
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    from mlm.data import BlockDataset, FixedEvalSet
    from mlm.masking import MaskingCollator, MaskingConfig

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    blocks = BlockDataset(datasets.load_from_disk(str(packed_dir))["validation"])
    collator = MaskingCollator(
        MaskingConfig(mlm_probability=0.15),
        vocab_size=len(tok),
        mask_token_id=tok.mask_token_id,
        pad_token_id=tok.pad_token_id,
        special_token_ids=tok.all_special_ids,
        seed=0,
    )
    eval_set = FixedEvalSet(blocks, collator, n)
    t = eval_set.tensors
    # the same inputs with the unmasked content tokens of each row shuffled among themselves: a model that
    # uses word order scores worse on them; one that only counts which words are there scores the same
    shuffled = t["input_ids"].clone()
    rng = torch.Generator().manual_seed(0)
    for r in range(shuffled.shape[0]):
        idx = ((t["labels"][r] == -100) & ~collator.is_special[shuffled[r]]).nonzero().squeeze(1)
        shuffled[r, idx] = shuffled[r, idx[torch.randperm(len(idx), generator=rng)]]
    out = {}
    for name, path in models.items():
        model = AutoModelForMaskedLM.from_pretrained(str(path)).eval()
        scores = {}
        for key, inputs in (("", t["input_ids"]), ("_shuffled", shuffled)):
            loss_sum, correct, count = 0.0, 0, 0
            with torch.no_grad():
                for i in range(0, len(eval_set), 32):
                    ids, mask = inputs[i : i + 32], t["attention_mask"][i : i + 32]
                    labels = t["labels"][i : i + 32]
                    logits = model(input_ids=ids, attention_mask=mask).logits
                    sel = labels != -100
                    picked = logits[sel]
                    loss_sum += float(torch.nn.functional.cross_entropy(picked, labels[sel], reduction="sum"))
                    correct += int((picked.argmax(-1) == labels[sel]).sum())
                    count += int(sel.sum())
            scores[f"loss_at_015{key}"] = loss_sum / count
            scores[f"accuracy_at_015{key}"] = correct / count
        out[name] = scores | {"positions": count}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", default=BASE, help="the base recipe")
    p.add_argument("--studies", default=",".join(STUDIES), help=f"which of {', '.join(STUDIES)}")
    p.add_argument("--suite", default="suites/imdb_sst2_cpu.yaml")
    p.add_argument("--label-fractions", default="0.01,0.1")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--parallel", type=int, default=2, help="pretraining runs at once")
    p.add_argument("--output-dir", default="runs/masking_study")
    p.add_argument("--results-dir", default="benchmarks/results")
    p.add_argument("--benchmarks-md", default="BENCHMARKS.md")
    args = p.parse_args()
    os.chdir(ROOT)
    started = time.perf_counter()
    results_file = Results("masking", args.results_dir)
    out = Path(args.output_dir)
    recipes = study_recipes(args.base, [n for n in args.studies.split(",") if n], out / "recipes")

    log("[masking] shared data: prepare, tokenizer, pack (reused when unchanged)")
    run_recipe(RunConfig(recipe=recipes[0], steps=["prepare", "tokenizer", "pack"]), log=log)
    pretrain_all(recipes, args.parallel, out / "logs")
    pretrain_seconds = time.perf_counter() - started

    studies = {}
    for recipe in recipes:
        plan = plan_recipe(RunConfig(recipe=recipe))
        pre = plan.configs["pretrain"]
        studies[Path(recipe).stem] = {
            "recipe": recipe,
            "dir": Path(pre.output_dir),
            "mlm_probability": pre.mlm_probability,
            "whole_word_mask": pre.whole_word_mask,
            "metrics": read_json(Path(pre.output_dir) / "metrics.json"),
            "packed": Path(plan.configs["pack"].output_dir),
            "tokenizer": Path(plan.configs["tokenizer"].output_dir),
        }
    first = next(iter(studies.values()))
    log("[masking] common MLM score: 15% token masking of the same validation blocks")
    common = common_mlm_scores(
        {name: s["dir"] / "final" for name, s in studies.items()}, first["packed"], first["tokenizer"]
    )

    rows: list[dict] = []
    for i, (name, s) in enumerate(studies.items()):
        log(f"[masking] evaluate {name} ({time.perf_counter() - started:.0f} s so far)")
        results = evaluate(
            EvaluateConfig(
                model=str(s["dir"] / "final"),
                suite=args.suite,
                output_dir=str(out / name),
                tasks=["sst2"],
                seeds=args.seeds,
                label_fractions=args.label_fractions.split(","),
                no_scratch=i > 0,
                no_tfidf=i > 0,
            ),
            log=log,
        )
        masking = "whole-word" if s["whole_word_mask"] else "token"
        for row in jsonl_rows({"rows": [r for r in results["rows"] if not r.get("intermediate")]}):
            if row["method"] == "pretrained":
                m = s["metrics"]
                row.update(
                    recipe=s["recipe"],
                    masking=masking,
                    mlm_probability=s["mlm_probability"],
                    tokens_seen=m.get("tokens_seen"),
                    own_eval_loss=round(m.get("eval_loss") or 0, 4),
                    own_masked_accuracy=round(m.get("masked_accuracy") or 0, 4),
                    loss_at_015=round(common[name]["loss_at_015"], 4),
                    accuracy_at_015=round(common[name]["accuracy_at_015"], 4),
                    loss_at_015_shuffled=round(common[name]["loss_at_015_shuffled"], 4),
                )
            rows.append(row)
            print(json.dumps(row), flush=True)
    jsonl = results_file.write(rows)
    wall = time.perf_counter() - started
    write_section(Path(args.benchmarks_md), args, studies, rows, jsonl, pretrain_seconds, wall)
    log(f"[masking] done in {wall / 60:.1f} min; lines in {jsonl}")
    return 0


def _fmt(row: dict | None) -> str:
    if row is None:
        return "-"
    return f"{row['accuracy']:.3f} ({row['accuracy_min']:.3f}–{row['accuracy_max']:.3f})"


def _minutes(studies: dict) -> str:
    low, high = (f(s["metrics"]["wall_seconds"] for s in studies.values()) / 60 for f in (min, max))
    return f"{low:.0f}" if round(low) == round(high) else f"{low:.0f}–{high:.0f}"


def write_section(md: Path, args, studies: dict, rows: list[dict], jsonl: Path, pre_s: float, wall: float):
    """Rewrite the "Masking studies" section of BENCHMARKS.md from the measured rows."""
    fractions = sorted({r["label_fraction"] for r in rows})
    steps = {s["metrics"].get("steps") for s in studies.values()}
    tokens = {s["metrics"].get("tokens_seen") for s in studies.values()}
    lines = [
        START,
        "## Masking studies (issue 5)",
        "",
        "Token vs whole-word masking and masking rate 0.15 / 0.3 / 0.4 (80/10/10 replacement in each), at the "
        f"same budget: {', '.join(f'{s:,}' for s in sorted(steps))} steps, "
        f"{', '.join(f'{t:,}' for t in sorted(tokens))} tokens seen, `tiny` preset, 16k WordPiece, "
        "the 50,000 unlabelled IMDB reviews (`recipes/masking_study.yaml` with each study's settings). Pretrained two at a time with one "
        f"thread each ({_minutes(studies)} min of wall time each). Then SST-2 fine-tuning with "
        f"`mlm evaluate` and `{args.suite}` at {', '.join(f'{f:.0%}' for f in fractions)} of the training "
        f'labels, {args.seeds} seeds: accuracy median (min–max). "MLM at 15%": loss and accuracy of '
        "each model on the same validation blocks masked once at 15% token masking (each study's own eval "
        'loss is at its own masking, so it is not comparable across studies). "Context shuffled": the same, '
        "with each row's unmasked words shuffled among themselves; a model that uses word order loses more "
        "there, one that only counts which words are present (a bag of words) loses nothing.",
        "",
        "```",
        ".venv/bin/python benchmarks/masking.py",
        "```",
        "",
    ]
    header = [
        "study",
        "masking",
        "rate",
        "own eval loss",
        "MLM at 15%: loss / accuracy",
        "context shuffled: loss (+)",
    ]
    header += [f"SST-2 {split}, {f:.0%}" for split in ("dev", "test") for f in fractions]
    table = []
    pre = [r for r in rows if r["method"] == "pretrained"]
    for name, s in studies.items():
        mine = [r for r in pre if r["recipe"] == s["recipe"]]
        if not mine:
            continue
        r0 = mine[0]
        shuffled = round(r0["loss_at_015_shuffled"] - r0["loss_at_015"], 3) or 0.0
        line = [f"`{name}`", r0["masking"], str(r0["mlm_probability"]), f"{r0['own_eval_loss']:.3f}",
                f"{r0['loss_at_015']:.3f} / {r0['accuracy_at_015']:.3f}",
                f"{r0['loss_at_015_shuffled']:.3f} ({shuffled:+.3f})"]  # fmt: skip
        for split in ("dev", "test"):
            for f in fractions:
                line.append(
                    _fmt(next((r for r in mine if (r["split"], r["label_fraction"]) == (split, f)), None))
                )
        table.append(line)
    for method, label in (("scratch", "same model from scratch"), ("tfidf", "TF-IDF + LogReg")):
        line = [label, "", "", "", "", ""]
        for split in ("dev", "test"):
            for f in fractions:
                key = (method, split, f)
                line.append(
                    _fmt(
                        next((r for r in rows if (r["method"], r["split"], r["label_fraction"]) == key), None)
                    )
                )
        table.append(line)
    lines += markdown_table(header, table)
    lines += [
        "",
        f"Raw lines: `{jsonl.as_posix()}`. This run of the script: {wall / 60:.0f} min on the 2 CPU cores "
        f"(pretraining {pre_s / 60:.0f} min of it; finished pretrainings and fine-tuning runs are reused).",
        END,
    ]
    write_marked_section(md, START, END, lines)


if __name__ == "__main__":
    sys.exit(main())

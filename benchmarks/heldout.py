"""Held-out check: the defaults on a corpus and tasks that no default was chosen on.

    .venv/bin/python benchmarks/heldout.py      # 15 minutes of pretraining, then ~25 min of fine-tuning
    .venv/bin/python benchmarks/heldout.py --pretrain-minutes 8 --output-dir runs/heldout8 --name heldout-8min

Every default of issue 11 was chosen on IMDB / SST-2 and on the built-in documentation corpus. This script
runs them as a new user would on something else: `recipes/imdb_pretrain.yaml` unchanged but for its corpus
(WikiText-2, 2.3 MB of encyclopedia text: a *small* corpus, which 15 minutes pass over many times) and its
budget (`--pretrain-minutes`), then `mlm evaluate` with the fine-tuning settings of suites/imdb_sst2_cpu.yaml
on three SentEval tasks of other kinds: TREC (question type, 6 classes), SUBJ (subjective or objective
sentence) and CR (customer-review polarity), at 10% and 100% of their training labels, pretrained vs the same
model from scratch vs TF-IDF + logistic regression.

The tasks' files are read in place from ../shared/data/senteval and written as JSON lines under the output
folder (TREC's coarse label; SUBJ and CR, which have no test split, split 80/20 by a fixed seed). Rows, one
per task / split / method / label fraction, printed and written to benchmarks/results/NAME-YYYYMMDD.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

import yaml
from downstream import CPU_SUITE, evaluated_rows, imdb_recipe_pretrained
from harness import REPO as ROOT
from harness import SHARED, WIKITEXT, Results, log

from mlm.evaluate import EvaluateConfig
from mlm.evaluate.suite import load_suite

SENTEVAL = SHARED / "senteval"
TASKS = ("trec", "subj", "cr")


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="latin-1").splitlines() if line.strip()]


def _split(rows: list[dict], seed: int = 0, test_share: float = 0.2) -> tuple[list[dict], list[dict]]:
    """A seeded split, stratified by label."""
    rng, train, test = random.Random(seed), [], []
    for label in sorted({r["label"] for r in rows}):
        group = [r for r in rows if r["label"] == label]
        rng.shuffle(group)
        cut = round(len(group) * test_share)
        test += group[:cut]
        train += group[cut:]
    rng.shuffle(train)
    return train, test


def task_rows(task: str) -> tuple[list[dict], list[dict]]:
    """(train, test) rows {"text", "label"} of a SentEval task, read in place."""
    if task == "trec":
        split = {}
        for name, file in (("train", "train_5500.label"), ("test", "TREC_10.label")):
            pairs = [line.split(" ", 1) for line in _lines(SENTEVAL / "TREC" / file)]
            split[name] = [{"text": text, "label": label.split(":")[0]} for label, text in pairs]
        return split["train"], split["test"]
    files = {
        "subj": ("SUBJ", "subj.objective", "subj.subjective"),
        "cr": ("CR", "custrev.neg", "custrev.pos"),
    }
    folder, *labelled = files[task]
    rows = [
        {"text": t, "label": name.split(".")[1]}
        for name in labelled
        for t in _lines(SENTEVAL / folder / name)
    ]
    return _split(rows)


def write_tasks(folder: Path) -> dict[str, dict]:
    """Each task's train/test JSON-lines files under `folder`, as suite task entries."""
    entries = {}
    for task in TASKS:
        entry = {"text_column": "text", "label_column": "label"}
        for split, rows in zip(("train", "test"), task_rows(task)):
            path = folder / task / f"{split}.jsonl"
            text = "".join(json.dumps(r) + "\n" for r in rows)
            if not path.is_file() or path.read_text() != text:  # unchanged: kept, so its runs are reused
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
            entry[split] = str(path)
        entries[task] = entry
    return entries


def wikitext_pretrained(out: Path, minutes: float) -> Path:
    """recipes/imdb_pretrain.yaml on WikiText-2 for `minutes`, run into `out` (reused when finished)."""
    corpus = [str(WIKITEXT / "valid.txt"), str(WIKITEXT / "test.txt")]
    return imdb_recipe_pretrained(out, minutes, "heldout_pretrain.yaml", name="heldout_wikitext2",
                                  prepare={"corpus": corpus, "strip_html": False})  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain-minutes", type=float, default=15.0)
    p.add_argument("--output-dir", default="runs/heldout")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--label-fractions", default="0.1,1.0")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--model", help="a pretrained checkpoint to fine-tune (no pretraining here)")
    p.add_argument("--name", default="heldout", help="the results file's name, before its date")
    p.add_argument("--no-baselines", action="store_true",
                   help="no scratch or TF-IDF runs (run again without it: finished runs are reused)")  # fmt: skip
    args = p.parse_args()
    os.chdir(ROOT)
    results = Results(args.name)
    missing = [str(d) for d in (SENTEVAL, WIKITEXT) if not d.is_dir()]
    if missing:
        raise SystemExit(
            f"heldout.py: no {', '.join(missing)} (the shared data; MLM_SHARED_DATA names its folder)"
        )
    out = Path(args.output_dir).resolve()
    started = time.perf_counter()
    data = yaml.safe_load((ROOT / CPU_SUITE).read_text())  # its fine-tuning settings, these tasks
    data.update(name="heldout", description="SentEval TREC, SUBJ, CR (held out), accuracy",
                label_fractions=[float(f) for f in args.label_fractions.split(",")],
                tasks=write_tasks(out / "tasks"))  # fmt: skip
    suite = out / "heldout_suite.yaml"
    suite.write_text(yaml.safe_dump(data, sort_keys=False))
    load_suite(suite)  # a mistake in it shows now, not after the pretraining
    final = Path(args.model) if args.model else wikitext_pretrained(out / "wikitext2", args.pretrain_minutes)
    cfg = EvaluateConfig(model=str(final.resolve()), suite=str(suite), output_dir=str(out / "evaluate"),
                         tasks=args.tasks.split(","), seeds=args.seeds, seeds_at_full=args.seeds,
                         label_fractions=args.label_fractions.split(","),
                         no_scratch=args.no_baselines, no_tfidf=args.no_baselines)  # fmt: skip
    rows = evaluated_rows(
        cfg,
        pretrain_minutes=None if args.model else args.pretrain_minutes,
        model=os.path.relpath(final, ROOT),
    )
    jsonl = results.write(rows)
    log(f"[heldout] done in {(time.perf_counter() - started) / 60:.1f} min; lines in {jsonl}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

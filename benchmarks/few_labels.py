"""Few labels: does a floor on optimizer steps (`min_train_steps`) let a few hundred labels learn?

    .venv/bin/python benchmarks/few_labels.py --model runs/long_text/imdb/pretrain/final

With 1% of SST-2's training sentences (673 labels) and the suite's 3 epochs of batch 32, fine-tuning
takes 66 optimizer steps. For each `--values` of `min_train_steps`, `mlm evaluate` runs the
SST-2 task of suites/imdb_sst2_cpu.yaml at `--fraction` of the labels, `--seeds` seeds: the model and the
same model from scratch (TF-IDF once). One JSON line per value / method, printed and written to
benchmarks/results/few_labels-YYYYMMDD.jsonl.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from downstream import evaluated_rows, suite_variant
from harness import REPO as ROOT
from harness import Results, log

from mlm.evaluate import EvaluateConfig


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a pretrained model folder")
    p.add_argument("--task", default="sst2")
    p.add_argument("--fraction", default="0.01")
    p.add_argument("--values", default="0,300", help="min_train_steps values, comma-separated")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--output-dir", default="runs/few_labels")
    args = p.parse_args()
    os.chdir(ROOT)
    results = Results("few_labels")
    out = Path(args.output_dir).resolve()
    started = time.perf_counter()
    rows = []
    for i, value in enumerate(int(v) for v in args.values.split(",")):
        suite = suite_variant(out, f"{args.task}_min{value}", [args.task], min_train_steps=value)
        cfg = EvaluateConfig(model=str(Path(args.model).resolve()), suite=str(suite),
                             output_dir=str(out / f"min{value}"), tasks=[args.task], seeds=args.seeds,
                             seeds_at_full=args.seeds, label_fractions=[args.fraction], no_tfidf=i > 0)  # fmt: skip
        rows += evaluated_rows(cfg, min_train_steps=value, model=args.model)
    jsonl = results.write(rows)
    log(f"[few_labels] done in {(time.perf_counter() - started) / 60:.1f} min; lines in {jsonl}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What `long_text` changes on IMDB: truncate vs head_tail vs chunks, pretrained and from scratch.

    .venv/bin/python benchmarks/long_text.py                          # 28-minute pretraining, then ~40 min
    .venv/bin/python benchmarks/long_text.py --pretrain-minutes 10    # a shorter pretraining
    .venv/bin/python benchmarks/long_text.py --model PATH/final --modes chunks --no-scratch --name long_text-gpu

1. Pretraining: `recipes/imdb_pretrain.yaml` with `max_time_minutes` set to `--pretrain-minutes` (and no
   intermediate checkpoints), into runs/long_text/pretrain (reused when finished); or `--model`, a checkpoint
   pretrained elsewhere (e.g. on a GPU by benchmarks/gpu_pretrain.sh).
2. For each mode, `mlm evaluate` on the IMDB task of suites/imdb_sst2_cpu.yaml (4,000 training reviews, a
   fixed 5,000 of the test reviews, 128 tokens) with `long_text` set: the pretrained model and the same
   model from scratch (TF-IDF, which reads whole reviews, once).
3. One JSON line per mode / method (accuracy median over seeds, the seeds, fine-tuning seconds) printed and
   written to benchmarks/results/NAME-YYYYMMDD.jsonl (`--name`, default long_text).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from downstream import imdb_recipe_pretrained, jsonl_rows, suite_variant
from harness import REPO as ROOT
from harness import Results, log

from mlm.evaluate import EvaluateConfig, evaluate

MODES = ("truncate", "head_tail", "chunks")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretrain-minutes", type=float, default=28.0)
    p.add_argument("--output-dir", default="runs/long_text")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--model", help="a pretrained checkpoint to fine-tune (no pretraining here)")
    p.add_argument("--no-scratch", action="store_true", help="no from-scratch runs")
    p.add_argument("--name", default="long_text", help="the results file's name, before its date")
    args = p.parse_args()
    os.chdir(ROOT)
    results_file = Results(args.name)
    out = Path(args.output_dir).resolve()
    started = time.perf_counter()
    final = (
        Path(args.model)
        if args.model
        else imdb_recipe_pretrained(out / "imdb", args.pretrain_minutes, "imdb_pretrain_long_text.yaml")
    )
    rows = []
    for mode in args.modes.split(","):
        suite = suite_variant(out, f"imdb_{mode}", ["imdb"], long_text=mode)
        cfg = EvaluateConfig(model=str(final), suite=str(suite), output_dir=str(out / mode),
                             tasks=["imdb"], seeds=args.seeds, seeds_at_full=args.seeds, label_fractions=["1.0"],
                             no_tfidf=mode != "truncate", no_scratch=args.no_scratch)  # fmt: skip
        t = time.perf_counter()
        results = jsonl_rows(evaluate(cfg, log=log))  # the time goes in every row, so not evaluated_rows
        for row in results:
            row.update(long_text=mode, pretrain_minutes=None if args.model else args.pretrain_minutes,
                       evaluate_seconds=round(time.perf_counter() - t))  # fmt: skip
            print(json.dumps(row), flush=True)
        rows += results
    jsonl = results_file.write(rows)
    log(f"[long_text] done in {(time.perf_counter() - started) / 60:.1f} min; lines in {jsonl}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

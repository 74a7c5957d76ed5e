"""Fine-tuning defaults by measurement: learning rate x epochs, pretrained and from scratch, chosen on dev.

    .venv/bin/python benchmarks/finetune_defaults.py --model runs/objectives/screen/pydocs/mlm-bert-tiny/pretrain/final \
        --suite runs/objectives/screen/recipes/pydocs_demo_suite.yaml --task demo

For each learning rate and epoch count, `mlm evaluate` fine-tunes the model and the same architecture from
scratch on one task of `--suite` (`--fraction` of its labels, `--seeds` seeds), with `metric_for_best_model`
set so the weights of the best dev epoch are kept (`--no-best` to keep the last). One JSON line per setting /
method / split is written to benchmarks/results/finetune_defaults-TASK[-TAG]-YYYYMMDD.jsonl; the table printed at the
end gives, for each method, every setting's dev and test accuracy and marks the one dev picks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from downstream import evaluated_rows, suite_variant
from harness import REPO as ROOT
from harness import Results, log, markdown_table

from mlm.evaluate import EvaluateConfig


def sweep(args: argparse.Namespace, out: Path) -> list[dict]:
    """Every (learning rate, epochs) setting for the model and from scratch; the rows of `evaluated_rows`."""
    rows = []
    for lr in (float(v) for v in args.lrs.split(",")):
        for epochs in (float(v) for v in args.epochs.split(",")):
            name = f"{args.task}_lr{lr:g}_ep{epochs:g}"
            best = {} if args.no_best else {"metric_for_best_model": "accuracy"}
            suite = suite_variant(out, name, [args.task], suite=args.suite, learning_rate=lr,
                                  num_train_epochs=epochs, **best)  # fmt: skip
            cfg = EvaluateConfig(model=str(Path(args.model).resolve()), suite=str(suite), output_dir=str(out / name),
                                 tasks=[args.task], seeds=args.seeds, seeds_at_full=args.seeds,
                                 label_fractions=[args.fraction], no_tfidf=bool(rows))  # fmt: skip
            rows += evaluated_rows(cfg, learning_rate=lr, num_train_epochs=epochs, best_epoch=not args.no_best,
                                   model=args.model)  # fmt: skip
    return rows


def table(rows: list[dict]) -> list[str]:
    """Markdown: a line per method and setting, dev and test accuracy; `*` marks the best dev per method
    (none when the task has no dev split)."""
    cell = {(r["method"], r.get("learning_rate"), r.get("num_train_epochs"), r["split"]): r for r in rows}
    fmt = lambda r: "-" if r is None else f"{r['accuracy']:.3f}"  # noqa: E731
    lines = []
    for method in ("pretrained", "scratch"):
        settings = sorted({(k[1], k[2]) for k in cell if k[0] == method})
        dev = {s: cell.get((method, *s, "dev")) for s in settings}
        scored = [s for s in settings if dev[s]]
        pick = max(scored, key=lambda s: dev[s]["accuracy"]) if scored else None
        for s in settings:
            mark = " *" if s == pick else ""
            lines.append(
                [
                    f"{method}{mark}",
                    f"{s[0]:g}",
                    f"{s[1]:g}",
                    fmt(dev[s]),
                    fmt(cell.get((method, *s, "test"))),
                ]
            )
    lines += [
        ["tfidf", "-", "-", f"{r['accuracy']:.3f} ({r['split']})", ""] for r in rows if r["method"] == "tfidf"
    ]
    return markdown_table(["method", "learning rate", "epochs", "dev", "test"], lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="a pretrained model folder")
    p.add_argument("--suite", default="suites/imdb_sst2_cpu.yaml")
    p.add_argument("--task", default="sst2")
    p.add_argument("--fraction", default="1.0")
    p.add_argument("--lrs", default="1e-4,3e-4,1e-3")
    p.add_argument("--epochs", default="4,10")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--no-best", action="store_true", help="keep the last epoch, not the best on dev")
    p.add_argument("--output-dir", default="runs/finetune_defaults")
    p.add_argument(
        "--tag", default="", help="added to the results file's name, e.g. the model's architecture"
    )
    args = p.parse_args()
    os.chdir(ROOT)
    results = Results("-".join(filter(None, ("finetune_defaults", args.task, args.tag))))
    started = time.perf_counter()
    rows = sweep(args, Path(args.output_dir).resolve() / args.task)
    print("\n".join(table(rows)))
    jsonl = results.write(rows)
    log(f"[finetune_defaults] done in {(time.perf_counter() - started) / 60:.1f} min; lines in {jsonl}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

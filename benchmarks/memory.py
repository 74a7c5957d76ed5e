"""Peak memory of each step on pathological and plain corpora, run as a user runs them (the `mlm` CLI).

Cases:
- `one-line`: a 50 MB corpus that is a single line (real reviews joined by spaces: a dump with its
  newlines lost), through prepare, train-tokenizer (wordpiece, 16k) and pack (128 tokens);
- `pretrain`: `mlm pretrain` (tiny, 16k vocabulary, batch 32) for `--pretrain-steps` steps on the packed
  plain corpus (the same reviews, one per line).

Each step is a subprocess sampled from /proc (`harness.run_measured`): peak RSS (VmHWM) and anonymous memory.
`--checkout DIR` runs another checkout's code (e.g. a `git worktree` of an older commit) to compare.
Last lines: one JSON object per step, also appended to `benchmarks/results/memory-YYYYMMDD.jsonl`.

    .venv/bin/python benchmarks/memory.py                       # about 10 minutes
    .venv/bin/python benchmarks/memory.py --checkout /tmp/old   # the same with older code
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from harness import REPO as ROOT
from harness import Results, log, machine_line, real_documents, run_measured


def write_one_line(path: Path, target_bytes: int) -> int:
    """Real documents joined by spaces into one line of about `target_bytes`."""
    docs, _ = real_documents(target_bytes)
    text = " ".join(d.replace("\n", " ") for d in docs)
    path.write_text(text[:target_bytes] + "\n", encoding="utf-8")
    return path.stat().st_size


def write_plain(path: Path, target_bytes: int) -> int:
    docs, _ = real_documents(target_bytes)
    path.write_text("\n".join(d.replace("\n", " ") for d in docs) + "\n", encoding="utf-8")
    return path.stat().st_size


def mlm_step(checkout: Path, name: str, args: list[str], timeout: float) -> dict:
    """Run `mlm NAME ARGS` from `checkout`; its peak memory and time (a failure stops the benchmark)."""
    cmd = [sys.executable, "-m", "mlm", name, *args]
    t = time.perf_counter()
    out, err, rc, peaks = run_measured(cmd, timeout)
    seconds = time.perf_counter() - t
    if rc != 0:
        raise SystemExit(f"{name} failed ({rc}): {(err or out).strip().splitlines()[-1:]}")
    log(
        f"  {name:16s} {seconds:6.1f} s  peak {peaks['vmhwm_mb']:7.0f} MB  anonymous {peaks['anon_mb']:7.0f} MB"
    )
    return {"step": name, "seconds": round(seconds, 1), "peak_rss_mb": round(peaks["vmhwm_mb"]),
            "anon_mb": round(peaks["anon_mb"])}  # fmt: skip


def corpus_steps(checkout: Path, corpus: Path, tmp: Path, tag: str, timeout: float) -> list[dict]:
    """prepare, train-tokenizer and pack of `corpus` into `tmp/tag-*`."""
    data, tok, packed = tmp / f"{tag}-data", tmp / f"{tag}-tok", tmp / f"{tag}-packed"
    rows = [mlm_step(checkout, "prepare", ["--corpus", str(corpus), "--output_dir", str(data)], timeout)]
    rows.append(mlm_step(checkout, "train-tokenizer", ["--data_dir", str(data), "--output_dir", str(tok),
                                                       "--kind", "wordpiece", "--vocab_size", "16000"], timeout))  # fmt: skip
    rows.append(mlm_step(checkout, "pack", ["--data_dir", str(data), "--tokenizer_dir", str(tok),
                                            "--output_dir", str(packed), "--max_seq_length", "128"], timeout))  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkout", default=str(ROOT), help="the code to measure (a checkout of this repository)"
    )
    p.add_argument("--one-line-mb", type=float, default=50.0)
    p.add_argument("--plain-mb", type=float, default=30.0)
    p.add_argument("--pretrain-steps", type=int, default=100)
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per step")
    p.add_argument("--results-dir", default=None, help="where the jsonl goes (default: benchmarks/results)")
    opts = p.parse_args(argv)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    results = Results("memory", opts.results_dir)
    checkout = Path(opts.checkout).resolve()
    os.environ["PYTHONPATH"] = str(checkout)  # the steps run that checkout's code
    commit = os.popen(f"git -C {checkout} rev-parse --short HEAD").read().strip()
    log(f"machine: {machine_line()}; code: {checkout} at {commit}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="mlm-memory-") as t:
        tmp = Path(t)
        size = write_one_line(tmp / "one-line.txt", int(opts.one_line_mb * 1e6))
        log(f"one-line: {size / 1e6:.0f} MB in one line")
        rows += [dict(r, case="one-line", corpus_mb=round(size / 1e6)) for r in
                 corpus_steps(checkout, tmp / "one-line.txt", tmp, "one", opts.timeout)]  # fmt: skip
        size = write_plain(tmp / "plain.txt", int(opts.plain_mb * 1e6))
        log(f"plain: {size / 1e6:.0f} MB, one review per line")
        plain = corpus_steps(checkout, tmp / "plain.txt", tmp, "plain", opts.timeout)
        rows += [dict(r, case="plain", corpus_mb=round(size / 1e6)) for r in plain]
        run = mlm_step(checkout, "pretrain", ["--data_dir", str(tmp / "plain-packed"), "--output_dir",
                                              str(tmp / "run"), "--preset", "tiny", "--max_steps",
                                              str(opts.pretrain_steps), "--per_device_train_batch_size", "32",
                                              "--disable_tqdm", "true"], opts.timeout)  # fmt: skip
        rows.append(dict(run, case="plain", corpus_mb=round(size / 1e6)))
    for r in rows:
        r["commit"] = commit
        print(json.dumps(r), flush=True)
    log(f"rows in {results.write(rows)}")
    return rows


if __name__ == "__main__":
    main()

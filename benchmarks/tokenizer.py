"""Tokenizer training speed and peak memory, and the `max_train_bytes` cap that keeps memory bounded.

For each size, a JSON-lines corpus of that many MB is generated from real documents (repeated in shuffled
order, each copy made unique; see harness.write_corpus) and `data_prep.tokenizer.train_tokenizer` trains a
30k WordPiece on it in a fresh subprocess (reading the corpus file directly, as `mlm train-tokenizer
--corpus` does), capped at `--cap-mb` of text (the config's `max_train_bytes`, default 1 GB). Reported:
MB/s of text trained on, seconds, peak resident memory of that process. Last line: one JSON object.

    .venv/bin/python benchmarks/tokenizer.py                           # 100 MB and 2 GB, cap 1 GB
    .venv/bin/python benchmarks/tokenizer.py --sizes 25,50,100,400 --cap-mb 100
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import Results, log, machine_line, peak_rss_mb, real_documents, run_measured, write_corpus


def child(corpus: str, out: str, cap_bytes: int, kind: str) -> None:
    from data_prep.tokenizer import TokenizerConfig, train_tokenizer

    t = time.perf_counter()
    tok = train_tokenizer(
        TokenizerConfig(
            output_dir=out, corpus=[corpus], kind=kind, vocab_size=30522, max_train_bytes=cap_bytes
        )
    )
    seconds = time.perf_counter() - t
    stats = json.loads((Path(out) / "stats.json").read_text())
    result = {
        "seconds": seconds,
        "train_bytes": stats["train_bytes"],
        "vocab_size": len(tok),
        "peak_rss_mb": max(peak_rss_mb(), peak_rss_mb(children=True)),
    }
    print(json.dumps(result), flush=True)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100,2000", help="corpus sizes in MB, comma-separated")
    p.add_argument("--cap-mb", type=float, default=1000.0, help="max_train_bytes in MB (the default is 1 GB)")
    p.add_argument("--kind", default="wordpiece", choices=["wordpiece", "bpe", "unigram"])
    p.add_argument("--tmp-dir", default="/tmp")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--results-dir", default=None, help="where the jsonl goes (default: benchmarks/results)")
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.child:
        corpus, out, cap = opts.child
        child(corpus, out, int(cap), opts.kind)
        return {}

    results = Results("tokenizer", opts.results_dir)
    log(f"machine: {machine_line()}")
    docs, source = real_documents()
    log(f"documents: {len(docs)} from {source}")
    root = Path(tempfile.mkdtemp(prefix="mlm-tok-bench-", dir=opts.tmp_dir))
    runs = []
    try:
        for size in [float(s) for s in opts.sizes.split(",") if s.strip()]:
            corpus = root / f"corpus-{size:g}MB.jsonl"
            write_corpus(corpus, int(size * 1e6), docs=docs, unique=True)
            cap = int(opts.cap_mb * 1e6)
            cmd = [sys.executable, str(Path(__file__)), "--kind", opts.kind, "--child", str(corpus)]
            cmd += [str(root / "tok"), str(cap)]
            stdout, stderr, rc, peaks = run_measured(cmd, opts.timeout)
            corpus.unlink()
            shutil.rmtree(root / "tok", ignore_errors=True)
            if rc != 0:
                raise RuntimeError(f"tokenizer training failed:\n{stderr[-4000:]}")
            r = json.loads(stdout.strip().splitlines()[-1]) | peaks
            mb = r["train_bytes"] / 1e6
            run = {
                "corpus_mb": size,
                "cap_mb": opts.cap_mb,
                "trained_mb": round(mb, 1),
                "seconds": round(r["seconds"], 1),
                "mb_per_s": round(mb / r["seconds"], 3),
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
                "peak_anon_mb": round(r["anon_mb"], 1),
                "vocab_size": r["vocab_size"],
            }
            runs.append(run)
            log(
                f"{size:g} MB corpus (cap {opts.cap_mb:g} MB): trained on {mb:.0f} MB in {r['seconds']:.1f}s = "
                f"{run['mb_per_s']:.2f} MB/s, peak RSS {run['peak_rss_mb']:.0f} MB (anonymous {r['anon_mb']:.0f} MB), "
                f"vocab {r['vocab_size']}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    result = {"kind": opts.kind, "runs": runs}
    log(f"row in {results.write([result])}")
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()

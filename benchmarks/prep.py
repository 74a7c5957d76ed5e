"""Data preparation speed and memory: `prepare` + `pack` against the tokenizer's own speed and `run_mlm.py`.

Three ways over the same JSON-lines corpus (real text, see harness.real_documents), each in its own
subprocess so its peak resident memory (the process and its children) is measured on its own:
  ours      `data_prep.prepare.prepare` then `data_prep.packing.pack` (128-token blocks), as `mlm` runs them
  ceiling   the raw Rust tokenizer: `tokenizer.backend_tokenizer.encode_batch` over the same texts, 1,000 a call
            (reading the file is not counted; nothing is cleaned, packed or written)
Each path imports its libraries (torch, transformers, datasets) before its clock starts.
  run_mlm   the `run_mlm.py` path: `load_dataset("json")`, `map(tokenize_function, batched=True)` with
            `return_special_tokens_mask=True`, then `map(group_texts, batched=True)` into 128-token blocks
MB are UTF-8 bytes of the corpus' text. Peak memory: `peak_rss_mb` is the kernel's high-water mark of the
process (ru_maxrss, VmHWM), which counts the pages of the memory-mapped Arrow files it reads and writes
(page cache the kernel drops under pressure); `peak_anon_mb` is its own (anonymous) memory, sampled. Then (optional, `--rss-sizes`) peak memory of ours on generated
corpora of growing size (real documents repeated in shuffled order, each copy made unique so the
deduplication keeps it), deleted afterwards. Last line: one JSON object.

    .venv/bin/python benchmarks/prep.py                          # 40 MB speed run
    .venv/bin/python benchmarks/prep.py --rss-sizes 250,500,1000 # + memory on generated corpora (MB)
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import (
    DEFAULT_CACHE,
    Results,
    benchmark_data,
    log,
    machine_line,
    peak_rss_mb,
    real_documents,
    run_measured,
    write_corpus,
)

HERE = Path(__file__).resolve().parent


def text_bytes(corpus: Path) -> int:
    total = 0
    with open(corpus, encoding="utf-8") as f:
        for line in f:
            total += len(json.loads(line)["text"].encode())
    return total


# ------------------------------------------------------------------------------------- child processes


def child_ours(corpus: str, tokenizer: str, work: str, num_proc: int | None) -> dict:
    from transformers import AutoTokenizer  # noqa: F401  (imports are start-up, not throughput: done first)

    from data_prep.packing import PackConfig, pack
    from data_prep.prepare import PrepareConfig, prepare

    t0 = time.perf_counter()
    prepare(PrepareConfig(corpus=[corpus], output_dir=f"{work}/prepared", num_proc=num_proc))
    t1 = time.perf_counter()
    stats = pack(
        PackConfig(
            data_dir=f"{work}/prepared",
            tokenizer_dir=tokenizer,
            output_dir=f"{work}/packed",
            max_seq_length=128,
            num_proc=num_proc,
        )
    )
    t2 = time.perf_counter()
    return {
        "prepare_s": t1 - t0,
        "pack_s": t2 - t1,
        "seconds": t2 - t0,
        "tokens": sum(stats["tokens"].values()),
    }


def child_ceiling(corpus: str, tokenizer: str, work: str, num_proc: int | None) -> dict:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
    backend = tok.backend_tokenizer
    t0 = time.perf_counter()
    tokens = 0
    for i in range(0, len(texts), 1000):
        tokens += sum(len(e.ids) for e in backend.encode_batch(texts[i : i + 1000], add_special_tokens=False))
    return {"seconds": time.perf_counter() - t0, "tokens": tokens}


def child_run_mlm(corpus: str, tokenizer: str, work: str, num_proc: int | None) -> dict:
    """transformers/examples/pytorch/language-modeling/run_mlm.py, default (not line_by_line) path."""
    from itertools import chain

    from datasets import load_dataset
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer)
    max_seq_length = 128
    t0 = time.perf_counter()
    raw = load_dataset("json", data_files={"train": corpus}, cache_dir=f"{work}/cache")

    def tokenize_function(examples):
        return tok(examples["text"], return_special_tokens_mask=True)

    tokenized = raw.map(tokenize_function, batched=True, num_proc=num_proc, remove_columns=["text"])

    def group_texts(examples):
        concatenated = {k: list(chain(*examples[k])) for k in examples}
        total_length = len(concatenated[list(examples.keys())[0]])
        total_length = (total_length // max_seq_length) * max_seq_length
        return {
            k: [t[i : i + max_seq_length] for i in range(0, total_length, max_seq_length)]
            for k, t in concatenated.items()
        }

    grouped = tokenized.map(group_texts, batched=True, num_proc=num_proc)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "blocks": len(grouped["train"])}


CHILDREN = {"ours": child_ours, "ceiling": child_ceiling, "run_mlm": child_run_mlm}


def run_child(kind: str, corpus: Path, tokenizer: Path, num_proc: int | None, timeout: float) -> dict:
    """Run one measurement in a fresh interpreter; returns its result with `peak_rss_mb`."""
    with tempfile.TemporaryDirectory(prefix=f"mlm-prep-{kind}-", dir=corpus.parent) as work:
        cmd = [sys.executable, str(Path(__file__)), "--child", kind, "--corpus", str(corpus)]
        cmd += ["--tokenizer", str(tokenizer), "--work", work]
        if num_proc:
            cmd += ["--num-proc", str(num_proc)]
        stdout, stderr, rc, peaks = run_measured(cmd, timeout)
        if rc != 0:
            raise RuntimeError(f"{kind} failed:\n{stdout[-2000:]}\n{stderr[-4000:]}")
        return json.loads(stdout.strip().splitlines()[-1]) | peaks


def child_main(opts) -> None:
    import datasets

    datasets.disable_progress_bars()
    out = CHILDREN[opts.child](opts.corpus, opts.tokenizer, opts.work, opts.num_proc)
    out["peak_rss_mb"] = max(peak_rss_mb(), peak_rss_mb(children=True))
    print(json.dumps(out), flush=True)


# ------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mb", type=float, default=40.0, help="corpus size for the speed comparison (MB of text)")
    p.add_argument("--rss-sizes", default="", help="comma-separated generated corpus sizes in MB for memory")
    p.add_argument("--num-proc", type=int, default=None, help="num_proc for every path (default: 1 process)")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--tmp-dir", default="/tmp", help="where generated corpora and outputs go")
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--quick", action="store_true", help="5 MB, no memory sweep, no results file")
    p.add_argument("--results-dir", default=None, help="where the jsonl goes (default: benchmarks/results)")
    p.add_argument("--no-speed", action="store_true", help="only the memory runs (--rss-sizes)")
    p.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--corpus", help=argparse.SUPPRESS)
    p.add_argument("--tokenizer", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    opts = p.parse_args(argv)
    if opts.child:
        child_main(opts)
        return {}
    if opts.quick:
        opts.mb, opts.rss_sizes = 5.0, ""

    results = Results("prep", opts.results_dir) if (opts.results_dir or not opts.quick) else None
    log(f"machine: {machine_line()}")
    tokenizer = benchmark_data(Path(opts.cache_dir))["tokenizer"]
    log(f"tokenizer: {tokenizer} (WordPiece, 30k)")
    docs, source = real_documents(limit_bytes=int(opts.mb * 1e6) if opts.mb < 60 else None)
    root = Path(tempfile.mkdtemp(prefix="mlm-prep-bench-", dir=opts.tmp_dir))
    result: dict = {}
    try:
        if not opts.no_speed:
            corpus = root / "corpus.jsonl"
            # a bit more than the text: JSON escaping and keys
            write_corpus(corpus, int(opts.mb * 1e6 * 1.05), docs=docs)
            mb = text_bytes(corpus) / 1e6
            log(f"corpus: {mb:.1f} MB of text from {source}")
            runs = {}
            for kind in ("ceiling", "ours", "run_mlm"):
                runs[kind] = run_child(kind, corpus, tokenizer, opts.num_proc, opts.timeout)
                r = runs[kind]
                extra = (
                    f" (prepare {r['prepare_s']:.1f}s = {mb / r['prepare_s']:.2f} MB/s, pack {r['pack_s']:.1f}s = "
                    f"{mb / r['pack_s']:.2f} MB/s)"
                    if kind == "ours"
                    else ""
                )
                log(
                    f"{kind:8s}: {r['seconds']:7.1f}s {mb / r['seconds']:7.2f} MB/s, peak RSS {r['peak_rss_mb']:.0f} MB "
                    f"(anonymous {r['anon_mb']:.0f} MB + mapped files {r['file_mb']:.0f} MB)" + extra
                )
            ours, ceiling, run_mlm = runs["ours"], runs["ceiling"], runs["run_mlm"]
            result = {
                "corpus_mb": round(mb, 1),
                "mb_per_s": round(mb / ours["seconds"], 3),
                "pack_mb_per_s": round(mb / ours["pack_s"], 3),
                "prepare_mb_per_s": round(mb / ours["prepare_s"], 3),
                "ceiling_mb_per_s": round(mb / ceiling["seconds"], 3),
                "run_mlm_mb_per_s": round(mb / run_mlm["seconds"], 3),
                "share_of_ceiling": round(ceiling["seconds"] / ours["seconds"], 3),
                "pack_share_of_ceiling": round(ceiling["seconds"] / ours["pack_s"], 3),
                "peak_rss_mb": round(ours["peak_rss_mb"], 1),
                "peak_anon_mb": round(ours["anon_mb"], 1),
                "run_mlm_peak_rss_mb": round(run_mlm["peak_rss_mb"], 1),
                "run_mlm_peak_anon_mb": round(run_mlm["anon_mb"], 1),
            }
            log(
                f"ours = {100 * result['share_of_ceiling']:.0f}% of the tokenizer ceiling (pack alone "
                f"{100 * result['pack_share_of_ceiling']:.0f}%), {run_mlm['seconds'] / ours['seconds']:.2f}x run_mlm"
            )
            corpus.unlink()
        sweep = []
        for size in [float(s) for s in opts.rss_sizes.split(",") if s.strip()]:
            big = root / f"corpus-{size:g}MB.jsonl"
            t = time.perf_counter()
            write_corpus(big, int(size * 1e6), docs=docs, unique=True)
            log(f"generated {big.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.0f}s")
            r = run_child("ours", big, tokenizer, opts.num_proc, opts.timeout)
            big.unlink()
            sweep.append(
                {
                    "corpus_mb": size,
                    "peak_rss_mb": round(r["peak_rss_mb"], 1),
                    "peak_anon_mb": round(r["anon_mb"], 1),
                    "peak_file_mb": round(r["file_mb"], 1),
                    "seconds": round(r["seconds"], 1),
                    "mb_per_s": round(size / r["seconds"], 3),
                }
            )
            log(
                f"memory: {size:g} MB corpus -> peak RSS {r['peak_rss_mb']:.0f} MB (anonymous {r['anon_mb']:.0f} MB, "
                f"mapped files {r['file_mb']:.0f} MB) "
                f"(prepare {r['prepare_s']:.0f}s, pack {r['pack_s']:.0f}s)"
            )
        if sweep:
            result["rss_sweep"] = sweep
            result["peak_rss_mb_largest"] = sweep[-1]["peak_rss_mb"]
            result["peak_anon_mb_largest"] = sweep[-1]["peak_anon_mb"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if results:
        log(f"row in {results.write([result])}")
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()

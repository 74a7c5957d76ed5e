"""Shared helpers of the benchmark scripts: the benchmark corpus, machine facts, peak memory."""

from __future__ import annotations

import gzip
import json
import os
import platform
import random
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("MLM_SHARED_DATA", REPO.parent / "shared" / "data"))
IMDB_UNSUP = SHARED / "imdb" / "unsup.jsonl.gz"
WIKITEXT = SHARED / "wikitext2"
DEFAULT_CACHE = Path(os.environ.get("MLM_BENCH_CACHE", "/tmp/mlm-bench"))


def log(msg: str) -> None:
    print(msg, flush=True)


def machine() -> str:
    """A one-line description of the CPU (and GPU when present)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    out = f"{name}, {os.cpu_count()} logical CPUs"
    try:
        import torch

        if torch.cuda.is_available():
            out = f"{torch.cuda.get_device_name(0)} (host: {out})"
    except ImportError:
        pass
    return out


def real_documents(limit_bytes: int | None = None) -> tuple[list[str], str]:
    """Real English documents for benchmarks: IMDB unsup reviews, else WikiText-2, else builtin:pydocs."""
    docs: list[str] = []
    total = 0
    if IMDB_UNSUP.is_file():
        source = f"{IMDB_UNSUP} (IMDB unsup reviews, <br /> as newlines)"
        with gzip.open(IMDB_UNSUP, "rt", encoding="utf-8") as f:
            for line in f:
                text = json.loads(line)["text"].replace("<br /><br />", "\n").replace("<br />", "\n")
                docs.append(text)
                total += len(text.encode())
                if limit_bytes and total >= limit_bytes:
                    break
        return docs, source
    if WIKITEXT.is_dir():
        source = f"{WIKITEXT} (WikiText-2 valid+test, one document per line)"
        for name in ("valid.txt", "test.txt"):
            for line in (WIKITEXT / name).read_text(encoding="utf-8").splitlines():
                if len(line.strip()) > 20:
                    docs.append(line.strip())
        return docs, source
    from data_prep.sources import iter_corpus

    for batch in iter_corpus(["builtin:pydocs"]):
        docs += batch
    return docs, "builtin:pydocs"


def write_corpus(
    path: Path, target_bytes: int, seed: int = 0, docs: list[str] | None = None, unique: bool = False
) -> int:
    """Write a JSON-lines corpus of about `target_bytes` by repeating shuffled real documents; returns bytes.

    `unique`: every repeated copy of a document gets its sentences in a new order and a copy number, so
    deduplication keeps it (the corpus then really is `target_bytes` of distinct documents)."""
    if docs is None:
        docs, _ = real_documents(limit_bytes=200_000_000)
    rng = random.Random(seed)
    order = list(range(len(docs)))
    written, copy = 0, 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        while written < target_bytes:
            rng.shuffle(order)
            for i in order:
                text = docs[i]
                if unique and copy:
                    parts = text.split(". ")
                    rng.shuffle(parts)
                    text = ". ".join(parts) + f" ({copy})"
                line = json.dumps({"text": text}, ensure_ascii=False) + "\n"
                f.write(line)
                written += len(line.encode())
                if written >= target_bytes:
                    break
            copy += 1
    return written


def benchmark_data(
    cache: Path = DEFAULT_CACHE, corpus_bytes: int = 12_000_000, vocab_size: int = 30522, seq_len: int = 128
) -> dict[str, Path]:
    """Prepared corpus, 30k WordPiece tokenizer and packed blocks for the throughput benchmark (cached)."""
    import datasets

    from data_prep.packing import PackConfig, pack
    from data_prep.prepare import PrepareConfig, prepare
    from data_prep.tokenizer import TokenizerConfig, train_tokenizer

    datasets.disable_progress_bars()
    root = cache / f"throughput-{corpus_bytes}-{vocab_size}-{seq_len}"
    paths = {
        "corpus": root / "corpus.jsonl",
        "prepared": root / "prepared",
        "tokenizer": root / "tokenizer",
        "packed": root / "packed",
    }
    if (paths["packed"] / "stats.json").is_file():
        return paths
    root.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    docs, source = real_documents(limit_bytes=corpus_bytes)
    with open(paths["corpus"], "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"text": d}, ensure_ascii=False) + "\n")
    (root / "SOURCE.txt").write_text(source + "\n")
    log(f"[data] {len(docs)} documents from {source}")
    prepare(PrepareConfig(corpus=[str(paths["corpus"])], output_dir=str(paths["prepared"])))
    train_tokenizer(
        TokenizerConfig(
            output_dir=str(paths["tokenizer"]), data_dir=str(paths["prepared"]), vocab_size=vocab_size
        )
    )
    pack(
        PackConfig(
            data_dir=str(paths["prepared"]),
            tokenizer_dir=str(paths["tokenizer"]),
            output_dir=str(paths["packed"]),
            max_seq_length=seq_len,
        )
    )
    log(f"[data] ready in {time.perf_counter() - t:.0f}s under {root}")
    return paths


def peak_rss_mb(children: bool = False) -> float:
    """Peak resident set size (MB) of this process, or of its waited-for children."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def run_measured(
    cmd: list[str], timeout: float, interval: float = 0.2
) -> tuple[str, str, int, dict[str, float]]:
    """Run `cmd`; return stdout, stderr, exit code and its peak memory in MB, sampled from /proc every
    `interval` s: `anon_mb` (RssAnon: the process's own memory), `file_mb` (RssFile: pages of memory-mapped
    files, e.g. Arrow tables, that the kernel drops under pressure) and `vmhwm_mb` (VmHWM, the kernel's
    high-water mark of both together, what getrusage calls ru_maxrss). Sampling sees the direct child only."""
    import subprocess
    import tempfile

    keys = {"RssAnon": "anon_mb", "RssFile": "file_mb", "VmHWM": "vmhwm_mb"}
    peaks = dict.fromkeys(keys.values(), 0.0)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + timeout
        while proc.poll() is None:
            try:
                with open(f"/proc/{proc.pid}/status") as f:
                    for line in f:
                        key = line.split(":", 1)[0]
                        if key in keys:
                            peaks[keys[key]] = max(peaks[keys[key]], int(line.split()[1]) / 1024)
            except (OSError, ValueError, IndexError):
                pass
            if time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"{cmd} ran over {timeout}s")
            time.sleep(interval)
        out.seek(0)
        err.seek(0)
        return out.read(), err.read(), proc.returncode, peaks


def write_marked_section(md: Path, start: str, end: str, lines: list[str]) -> None:
    """Put `lines` (which begin with `start` and end with `end`) in place of that marked section of `md`,
    or append them; what followed the old section stays as it was."""
    text = md.read_text() if md.is_file() else ""
    section = "\n".join(lines) + "\n"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section + rest.split(end, 1)[1].removeprefix("\n")
    else:
        text = (text.rstrip("\n") + "\n\n" if text else "") + section
    md.write_text(text)

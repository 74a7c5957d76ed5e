"""What every benchmark script shares: the step timer, the machine description, the results (JSON lines
and Markdown tables), the benchmark corpus and data, peak memory, and pretraining built for timing.

    from harness import StepTimer, Results, log, machine, markdown_table

Importing it puts this checkout first on `sys.path` (its `mlm` and `data_prep`, not an installed copy)
and makes the Hub offline unless the environment says otherwise (`HF_HUB_OFFLINE`, `HF_DATASETS_OFFLINE`):
both must happen before transformers is imported, so a script imports this first. It imports neither torch
nor transformers itself (the child processes whose memory prep.py and tokenizer.py measure import it too):
`StepTimer`, a `TrainerCallback`, is made on first use. Progress goes to stderr (`log`); results (JSON
lines, tables) to stdout and `benchmarks/results/`.
"""

from __future__ import annotations

import datetime
import gzip
import json
import os
import platform
import random
import resource
import shlex
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

RESULTS_DIR = REPO / "benchmarks" / "results"
SHARED = Path(os.environ.get("MLM_SHARED_DATA", REPO.parent / "shared" / "data"))
IMDB_UNSUP = SHARED / "imdb" / "unsup.jsonl.gz"
WIKITEXT = SHARED / "wikitext2"
DEFAULT_CACHE = Path(os.environ.get("MLM_BENCH_CACHE", "/tmp/mlm-bench"))
# the optimizer settings of every timed pretraining, ours and stock (`timed_pretraining`, throughput.py)
OPTIMIZER: dict[str, Any] = dict(learning_rate=1e-3, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.98,
                                 adam_epsilon=1e-6, max_grad_norm=1.0, lr_scheduler_type="linear",
                                 warmup_steps=0.06)  # fmt: skip


def log(msg: str) -> None:
    """A progress line, to stderr (stdout is for results)."""
    print(msg, file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """No progress bars, load reports or Trainer log dicts from datasets, transformers and `mlm`."""
    import datasets
    import transformers

    from data_prep.progress import configure

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    configure(quiet=True, verbose=False)


# ------------------------------------------------------------------------------------------------ timing


def _make_step_timer() -> type:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Steady-state step time of a `Trainer` run: from the end of step `skip` (start-up, first batches and
        allocations left out) to the end of the last step. Every `trainer.train()` starts it afresh.

        `steps`: stop after that many steps in all (else the Trainer's `max_steps`); `seconds`: stop once that
        long has passed since step `skip`. `first_step_at` is the `clock()` at the end of the first step. On
        CUDA the device is synchronised at the marks that may count (step `skip`, the last step; every step
        with `seconds`), not in between."""

        def __init__(self, skip: int = 2, steps: int | None = None, seconds: float | None = None) -> None:
            self.skip, self.steps, self.seconds = skip, steps, seconds
            self.reset()

        def reset(self) -> None:
            self.start: float | None = None
            self.first_step_at: float | None = None
            self.marks: list[tuple[int, float]] = []  # (step, time) of step `skip` and of the last step

        def on_train_begin(self, args, state, control, **kwargs):
            self.reset()
            return control

        def on_step_end(self, args, state, control, **kwargs):
            step = state.global_step
            last = self.steps if self.steps is not None else state.max_steps
            stop = self.steps is not None and step >= self.steps
            if step == self.skip or step >= last or stop or self.seconds is not None:
                synchronise()  # a mark that may count: the device's work done first
            now = clock()
            if self.first_step_at is None:
                self.first_step_at = now
            if self.start is not None and self.seconds is not None and now - self.start >= self.seconds:
                stop = True
            if step == self.skip:
                self.start = now
                self.marks = [(step, now)]
            elif step > self.skip:
                self.marks[1:] = [(step, now)]
            if stop:
                control.should_training_stop = True
            return control

        @property
        def timed_steps(self) -> int:
            return self.marks[-1][0] - self.marks[0][0] if len(self.marks) > 1 else 0

        @property
        def elapsed(self) -> float:
            return self.marks[-1][1] - self.marks[0][1] if len(self.marks) > 1 else 0.0

        def seconds_per_step(self) -> float:
            if not self.timed_steps:
                raise RuntimeError(f"no step after step {self.skip} was timed (run more steps than `skip`)")
            return self.elapsed / self.timed_steps

        def tokens_per_second(self, tokens_per_step: int) -> float:
            return tokens_per_step / self.seconds_per_step()

    StepTimer.__module__, StepTimer.__qualname__ = __name__, "StepTimer"
    return StepTimer


_LAZY: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    """`StepTimer`, made (and transformers imported) on first use."""
    if name == "StepTimer":
        if name not in _LAZY:
            _LAZY[name] = _make_step_timer()
        return _LAZY[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def clock() -> float:
    """The step timer's clock (`time.perf_counter`)."""
    return time.perf_counter()


def synchronise() -> None:
    """Wait for the GPU's queued work, if a GPU is in use."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median(values: Sequence[float]) -> float:
    import statistics

    return statistics.median(values)


# ------------------------------------------------------------------------------------------------ machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The machine now: CPU model, cores (and those this process may use), torch threads, GPU, versions of
    python, torch and transformers, and the load average (1, 5, 15 minutes)."""
    import torch
    import transformers

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def machine_line(info: dict[str, Any] | None = None) -> str:
    """The machine in one line, for logs."""
    m = info or machine()
    gpu = f"{m['gpu']}, host " if m["gpu"] else ""
    load = "/".join(f"{x:.2f}" for x in m["load_average"])
    return (f"{gpu}{m['cpu']}, {m['cores']} logical CPUs ({m['usable_cores']} usable), "
            f"{m['torch_threads']} torch threads; torch {m['torch']}, transformers {m['transformers']}; "
            f"load average {load}")  # fmt: skip


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran, as it could be typed again from the repository root."""
    args = list(sys.argv if argv is None else argv)
    if args:
        try:
            args[0] = str(Path(args[0]).resolve().relative_to(REPO))
        except ValueError:
            pass
    return shlex.join(["python", *args])


# ------------------------------------------------------------------------------------------------ results


class Results:
    """A script's rows, appended to FOLDER/NAME-YYYYMMDD.jsonl (FOLDER: benchmarks/results), each with the
    date, the command line and the machine: as described when the script started (load average before)
    and, at each write, the load average after (`load_average_after`).

        results = Results("throughput")      # at the start
        results.write(rows)                  # as rows are ready; returns the file"""

    def __init__(
        self, name: str, folder: str | Path | None = None, argv: Sequence[str] | None = None
    ) -> None:
        self.name, self.folder = name, Path(folder) if folder is not None else RESULTS_DIR
        self.command = command_line(argv)
        self.machine = machine()
        self.started = datetime.datetime.now().isoformat(timespec="seconds")

    @property
    def path(self) -> Path:
        return self.folder / f"{self.name}-{self.started[:10].replace('-', '')}.jsonl"

    def stamp(self, row: dict[str, Any]) -> dict[str, Any]:
        after = [round(x, 2) for x in os.getloadavg()]
        machine = {**self.machine, "load_average_after": after}
        return {**row, "date": self.started, "command": self.command, "machine": machine}

    def write(self, rows: Iterable[dict[str, Any]]) -> Path:
        path = self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(self.stamp(row), default=str) + "\n")
        return path


def write_jsonl(name: str, rows: Iterable[dict[str, Any]], folder: str | Path | None = None) -> Path:
    """`rows` appended to FOLDER/NAME-YYYYMMDD.jsonl with date, command and machine (see `Results`)."""
    return Results(name, folder).write(rows)


def read_jsonl(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    return [json.loads(line) for p in paths for line in Path(p).read_text().splitlines() if line.strip()]


def cell(value: Any) -> str:
    """A table cell: '-' for None, thousands separators for large numbers, 3 significant digits for small."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """A Markdown table's lines: the header, the separator, a line per row (cells through `cell`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return lines


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


# ------------------------------------------------------------------------------------------------ data


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
    """Prepared corpus (`real_documents`), a WordPiece tokenizer of `vocab_size` trained on it and its
    packed blocks of `seq_len` tokens, made once and cached under `cache`."""
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
    for folder in ("prepared", "tokenizer", "packed"):  # an earlier run killed half-way
        if paths[folder].exists():
            import shutil

            shutil.rmtree(paths[folder])
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


# ------------------------------------------------------------------------------------------------ memory


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


# ------------------------------------------------------------------------------------------------ pretraining


def timed_pretraining(data_dir: str | Path, output_dir: str | Path, **options: Any):
    """What `mlm pretrain` builds for these options (`mlm.pretrain.build_pretraining`), set up for timing
    the training steps: `OPTIMIZER`, no evaluation, no checkpoints, no progress bars or loggers, a long
    schedule; `options` (any `PretrainConfig` field) override these. Returns the `PretrainRun` (`run.trainer`)."""
    from mlm.pretrain import PretrainConfig, build_pretraining

    values: dict[str, Any] = dict(
        data_dir=str(data_dir),
        output_dir=str(output_dir),
        max_steps=1_000_000,
        eval_steps=0,
        save_steps=0,
        max_eval_samples=1,
        logging_steps=10_000,
        disable_tqdm=True,
        report_to="none",
        seed=0,
        **OPTIMIZER,
    )
    values.update(options)
    return build_pretraining(PretrainConfig(**values))

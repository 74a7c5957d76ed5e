"""Pretraining speed on a busy machine: `cpu_threads: auto` against fixed thread counts.

Conditions: `idle`; `busy` (another process spins on one core for the whole run); `busy-late` (it starts
half-way, so the tuner must notice). Settings: auto and each fixed count from 1 to all cores, alternating
within each round. Every run trains what `mlm pretrain` builds (`harness.timed_pretraining`) for `--seconds`
of wall clock; the figure is train tokens/s from the end of step 2 to the end (`harness.StepTimer`), so the
tuner's probes and rechecks are counted against it. One row per condition and setting: printed as JSON
lines and appended to benchmarks/results/threads-busy-YYYYMMDD.jsonl (not with `--quick`).

    .venv/bin/python benchmarks/busy.py                   # 3 conditions x 3 settings x 2 rounds, ~20 min
    .venv/bin/python benchmarks/busy.py --quick           # smoke run (2 minutes)
    .venv/bin/python benchmarks/throughput.py --busy      # the same (its old name)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from harness import (
    DEFAULT_CACHE,
    Results,
    StepTimer,
    benchmark_data,
    log,
    machine_line,
    quiet_libraries,
    timed_pretraining,
)

SPIN = "while True:\n    pass\n"
CONDITIONS = ("idle", "busy", "busy-late")


class Competitor:
    """Another process busy on one core (pure Python spinning), started and stopped on demand."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        if self.proc is None:
            self.proc = subprocess.Popen([sys.executable, "-c", SPIN])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class BusyTimer(StepTimer):
    """The step timer, stopping after `seconds`, that starts the competitor `busy_at` seconds after step 2
    (None: never)."""

    def __init__(self, seconds: float, competitor: Competitor, busy_at: float | None) -> None:
        super().__init__(skip=2, seconds=seconds)
        self.competitor, self.busy_at = competitor, busy_at

    def on_step_end(self, args, state, control, **kwargs):
        control = super().on_step_end(args, state, control, **kwargs)
        if (
            self.busy_at is not None
            and self.start is not None
            and time.perf_counter() - self.start >= self.busy_at
        ):
            self.competitor.start()
        return control


def one_run(packed: Path, setting: str, condition: str, opts, most: int) -> float:
    """Train for `opts.seconds` with `cpu_threads: setting` under `condition`; tokens/s."""
    torch.set_num_threads(most)
    competitor = Competitor()
    timer = BusyTimer(
        opts.seconds, competitor, {"idle": None, "busy": 0.0, "busy-late": opts.seconds / 2}[condition]
    )
    with tempfile.TemporaryDirectory(prefix="mlm-busy-") as tmp:
        run = timed_pretraining(packed, tmp, preset=opts.preset, per_device_train_batch_size=opts.batch_size,
                                cpu_threads=setting, use_cpu=True)  # fmt: skip
        run.trainer.add_callback(timer)
        if condition == "busy":
            competitor.start()
            time.sleep(0.5)
        try:
            run.trainer.train()
        finally:
            competitor.stop()
        tokens_per_step = opts.batch_size * run.data.seq_len
    torch.set_num_threads(most)
    return timer.tokens_per_second(tokens_per_step)


def summarise(rates: dict, settings: list[str], preset: str) -> list[dict]:
    """One row per condition and setting: mean tokens/s over rounds, and auto's share of the best fixed."""
    rows = []
    for condition in CONDITIONS:
        means = {s: statistics.mean(rates[(condition, s)]) for s in settings}
        best_fixed = max(v for s, v in means.items() if s != "auto")
        for s in settings:
            rows.append({"preset": preset, "condition": condition, "cpu_threads": s, "tokens_per_s": round(means[s]),
                         "rounds": [round(v) for v in rates[(condition, s)]],
                         "share_of_best_fixed": round(means[s] / best_fixed, 3)})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="wall-clock seconds per run")
    p.add_argument("--preset", default="tiny", help="the model size")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="the most threads (default: torch's own choice)")
    p.add_argument("--corpus-bytes", type=int, default=12_000_000, help="text for tokenizer and packing")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--results-dir", default=None, help="where the jsonl goes (default: benchmarks/results)")
    p.add_argument("--quick", action="store_true", help="smoke run: 6 s per run, one round, no results file")
    opts = p.parse_args(argv)
    if opts.quick:
        opts.seconds, opts.rounds = min(opts.seconds, 6), 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_libraries()
    logging.basicConfig(format="%(message)s")
    logging.getLogger("mlm").setLevel(logging.INFO)  # the tuner's choices
    if opts.threads:
        torch.set_num_threads(opts.threads)
    most = torch.get_num_threads()
    settings = ["auto", *[str(n) for n in range(1, most + 1)]]
    results = Results("threads-busy", opts.results_dir) if (opts.results_dir or not opts.quick) else None
    log(f"machine: {machine_line()}; {opts.seconds:.0f} s per run, {opts.rounds} round(s)")
    packed = benchmark_data(Path(opts.cache_dir), corpus_bytes=opts.corpus_bytes)["packed"]
    rates: dict[tuple[str, str], list[float]] = {}
    for r in range(opts.rounds):
        for condition in CONDITIONS:
            for setting in settings if r % 2 == 0 else settings[::-1]:
                rate = one_run(packed, setting, condition, opts, most)
                rates.setdefault((condition, setting), []).append(rate)
                log(f"round {r + 1} {condition:9s} cpu_threads={setting:4s}: {rate:8.0f} tokens/s")
    rows = summarise(rates, settings, opts.preset)
    if results:
        results.write(rows)
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()

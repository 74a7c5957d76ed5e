"""Pretraining speed on a busy machine: `cpu_threads: auto` against fixed thread counts.

Conditions: `idle`; `busy` (another process spins on one core for the whole run); `busy-late` (it starts
half-way, so the tuner must notice). Settings: auto and each fixed count from 1 to all cores, alternating
within each round. Every run trains what `mlm pretrain` builds (`make_ours`, which throughput.py passes in) for
`--seconds` of wall clock; the figure is train tokens/s from the end of step 2 to the end, so the tuner's
probes and rechecks are counted against it. Last lines: one JSON object per condition and setting, also
written to `benchmarks/results/threads-busy.jsonl`.

    .venv/bin/python benchmarks/throughput.py --busy              # 3 conditions x 3 settings x 2 rounds, ~20 min
    .venv/bin/python benchmarks/throughput.py --busy --quick      # smoke run (2 minutes)
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from common import benchmark_data, log, machine
from transformers import TrainerCallback

RESULTS = Path(__file__).parent / "results" / "threads-busy.jsonl"
SPIN = "while True:\n    pass\n"


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


class TimedRun(TrainerCallback):
    """Stops training after `seconds`; counts steps from the end of step `skip`; starts the competitor at
    `busy_at` seconds (None: never)."""

    def __init__(self, seconds: float, skip: int, competitor: Competitor, busy_at: float | None) -> None:
        self.seconds, self.skip, self.competitor, self.busy_at = seconds, skip, competitor, busy_at
        self.start: float | None = None
        self.steps, self.elapsed = 0, 0.0

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        if state.global_step == self.skip:
            self.start = now
        if self.start is None:
            return control
        self.steps, self.elapsed = state.global_step - self.skip, now - self.start
        if self.busy_at is not None and self.elapsed >= self.busy_at:
            self.competitor.start()
        if self.elapsed >= self.seconds:
            control.should_training_stop = True
        return control


def one_run(paths: dict, setting: str, condition: str, opts, most: int, make_ours: Callable) -> float:
    """Train for `opts.seconds` with `cpu_threads: setting` under `condition`; tokens/s."""
    import datasets
    from transformers import AutoTokenizer

    torch.set_num_threads(most)
    tokenizer = AutoTokenizer.from_pretrained(str(paths["tokenizer"]))
    seq = len(datasets.load_from_disk(str(paths["packed"]))["train"][0]["input_ids"])
    competitor = Competitor()
    timed = TimedRun(
        opts.seconds, 2, competitor, {"idle": None, "busy": 0.0, "busy-late": opts.seconds / 2}[condition]
    )
    with tempfile.TemporaryDirectory(prefix="mlm-busy-") as tmp:
        common = dict(output_dir=tmp, per_device_train_batch_size=opts.batch_size, learning_rate=1e-3,
                      weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6, max_grad_norm=1.0,
                      lr_scheduler_type="linear", warmup_steps=0.06, max_steps=1_000_000, logging_steps=10_000,
                      disable_tqdm=True, seed=0)  # fmt: skip
        trainer, _, _, _ = make_ours(str(paths["packed"]), tokenizer, opts.preset, common, seq, "cpu",
                                     {"cpu_threads": setting})  # fmt: skip
        trainer.add_callback(timed)
        if condition == "busy":
            competitor.start()
            time.sleep(0.5)
        try:
            trainer.train()
        finally:
            competitor.stop()
    torch.set_num_threads(most)
    return timed.steps * opts.batch_size * seq / timed.elapsed


def run(opts, make_ours: Callable) -> list[dict]:
    """Every condition and setting, `opts.rounds` times; `make_ours` is throughput.py's (the trainer of
    `mlm pretrain`): passed in, so that this module does not import the one that runs it."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    logging.basicConfig(format="%(message)s")
    logging.getLogger("mlm").setLevel(logging.INFO)  # the tuner's choices
    most = torch.get_num_threads()
    settings = ["auto", *[str(n) for n in range(1, most + 1)]]
    conditions = ["idle", "busy", "busy-late"]
    if opts.quick:
        opts.seconds, opts.rounds = min(opts.seconds, 6), 1
    log(f"machine: {machine()}; {most} threads; {opts.seconds:.0f} s per run, {opts.rounds} round(s)")
    paths = benchmark_data(Path(opts.cache_dir), corpus_bytes=opts.corpus_bytes)
    rates: dict[tuple[str, str], list[float]] = {}
    for r in range(opts.rounds):
        for condition in conditions:
            for setting in settings if r % 2 == 0 else settings[::-1]:
                rate = one_run(paths, setting, condition, opts, most, make_ours)
                rates.setdefault((condition, setting), []).append(rate)
                log(f"round {r + 1} {condition:9s} cpu_threads={setting:4s}: {rate:8.0f} tokens/s")
    rows = summarise(rates, conditions, settings, opts)
    if not opts.quick:
        RESULTS.parent.mkdir(exist_ok=True)
        with RESULTS.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def summarise(rates: dict, conditions: list[str], settings: list[str], opts) -> list[dict]:
    """One row per condition and setting: mean tokens/s over rounds, and auto's share of the best fixed."""
    rows = []
    stamp = time.strftime("%Y-%m-%d %H:%M")
    for condition in conditions:
        means = {s: statistics.mean(rates[(condition, s)]) for s in settings}
        best_fixed = max(v for s, v in means.items() if s != "auto")
        for s in settings:
            rows.append({"date": stamp, "machine": machine(), "preset": opts.preset, "condition": condition,
                         "cpu_threads": s, "tokens_per_s": round(means[s]),
                         "rounds": [round(v) for v in rates[(condition, s)]],
                         "share_of_best_fixed": round(means[s] / best_fixed, 3)})  # fmt: skip
    return rows

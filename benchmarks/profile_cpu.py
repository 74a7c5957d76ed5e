"""Where a CPU pretraining step's time goes: `torch.profiler` over a few steps of `mlm pretrain`'s own set-up
(the same data and options as benchmarks/throughput.py), the top operators by self CPU time.

    .venv/bin/python benchmarks/profile_cpu.py                       # ModernBERT tiny, 16k vocabulary, 32 x 128
    .venv/bin/python benchmarks/profile_cpu.py --preset mini --architecture bert

Writes the table to stdout and to benchmarks/results/profile-cpu-PRESET-ARCH-DATE.txt. Time it on an idle
machine (`uptime` before and after): a busy core changes where the time goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from harness import REPO, benchmark_data, log, machine_line, quiet_libraries, timed_pretraining


def profile(args: argparse.Namespace) -> str:
    """The profiler's table of `args.steps` steps after `args.warmup` untimed ones."""
    import torch
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    torch.set_num_threads(args.threads)
    data = benchmark_data(vocab_size=args.vocab_size)
    with tempfile.TemporaryDirectory() as out:
        run = timed_pretraining(data["packed"], out, preset=args.preset, architecture=args.architecture,
                                per_device_train_batch_size=args.batch_size, cpu_threads=str(args.threads),
                                use_cpu=True, max_steps=args.warmup + args.steps)  # fmt: skip
        trainer = run.trainer
        trainer.create_optimizer_and_scheduler(num_training_steps=args.warmup + args.steps)
        trainer.current_gradient_accumulation_steps = 1  # what train() sets before its first step
        loader = iter(trainer.get_train_dataloader())
        model = trainer.model.train()

        def step() -> (
            None
        ):  # what Trainer's loop does for one step (the loss and backward of its training_step)
            trainer.training_step(model, next(loader))
            trainer.optimizer.step()
            trainer.optimizer.zero_grad(set_to_none=True)

        for _ in range(args.warmup):
            step()
        started = time.perf_counter()
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        seconds = (time.perf_counter() - started) / args.steps
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    tokens = args.batch_size * 128 / seconds
    return f"{args.architecture} {args.preset}, batch {args.batch_size} x 128, {args.threads} threads: " \
           f"{seconds * 1000:.0f} ms/step under the profiler ({tokens:,.0f} tokens/s)\n{table}"  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--architecture", default="modernbert")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=16384)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rows", type=int, default=25)
    args = p.parse_args()
    quiet_libraries()
    log(machine_line())
    text = profile(args)
    print(text)
    results = REPO / "benchmarks" / "results"
    path = results / f"profile-cpu-{args.preset}-{args.architecture}-{time.strftime('%Y%m%d')}.txt"
    path.write_text(machine_line() + "\n" + text + "\n")
    log(f"[profile] -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

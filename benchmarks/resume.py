"""Resume benchmark: seconds from `--resume` to the first new training step, after 10,000 steps.

`mlm pretrain --streaming --resume latest` continues the stream at the position saved in the checkpoint;
the baseline is the Trainer's default resume of the same stream, which replays (reads and masks) every batch
already trained on before the first new step (`time_resume(..., replay=True)` sets that up through the
public builders of `mlm.pretrain`). Both resume the same checkpoint on the same data, in this
process, one after the other; the time runs from the `pretrain()` call (config, data, model, checkpoint
loading included) to the end of the first new training step.

The 10,000 steps are faked, not trained: a real 2-step checkpoint is renamed checkpoint-10000 and its
trainer_state.json (global_step) and completeness record (data position: 10,000 global batches) say 10,000
steps, exactly what a 10,000-step run writes. The stream wraps round the corpus, so the data need not hold
10,000 batches; the replay baseline still reads and masks 10,000 batches. Resume at 1,000 steps is timed too,
to show the cost does not grow with the step count. `map_style_resume_s`: the map-style path (the Trainer
skips sampler indices only; no data is read).

    nice -n 19 .venv/bin/python benchmarks/resume.py            # last line: JSON {"resume_s", ...}
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import time
from pathlib import Path

from harness import Results, StepTimer, log, machine_line, quiet_libraries

TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def make_data(cache: Path, docs: int, seq_len: int) -> Path:
    """Synthetic documents -> prepare -> tokenizer -> pack (cached)."""
    from data_prep.packing import PackConfig, pack
    from data_prep.prepare import PrepareConfig, prepare
    from data_prep.tokenizer import TokenizerConfig, train_tokenizer

    packed = cache / f"packed-{docs}-{seq_len}"
    if (packed / "stats.json").is_file():
        return packed
    rng = random.Random(0)
    words = [f"w{i}" for i in range(3000)]
    cache.mkdir(parents=True, exist_ok=True)
    corpus = cache / "corpus.jsonl"
    with open(corpus, "w") as f:
        for _ in range(docs):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(80, 200)))
            f.write(json.dumps({"text": text}) + "\n")
    prep = cache / "prepared"
    prepare(PrepareConfig(corpus=[str(corpus)], output_dir=str(prep), validation_size=50))
    tok = cache / "tokenizer"
    train_tokenizer(TokenizerConfig(data_dir=str(prep), output_dir=str(tok), vocab_size=1024))
    pack(
        PackConfig(data_dir=str(prep), tokenizer_dir=str(tok), output_dir=str(packed), max_seq_length=seq_len)
    )
    return packed


def config(packed: Path, out: Path, batch: int, streaming: bool, **kw):
    from mlm.pretrain import PretrainConfig

    base = dict(
        data_dir=str(packed),
        output_dir=str(out),
        preset="tiny",
        config_overrides=TINY,
        per_device_train_batch_size=batch,
        streaming=streaming,
        logging_steps=1000,
        eval_steps=0,
        max_eval_samples=16,
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    base.update(kw)
    return PretrainConfig(**base)


def fake_checkpoint(template: Path, run_dir: Path, steps: int, global_batch: int, streaming: bool) -> Path:
    """A copy of the 2-step checkpoint `template` that says `steps` steps (trainer state, data position)."""
    from mlm.checkpoints import mark_complete

    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    ckpt = run_dir / f"checkpoint-{steps}"
    shutil.copytree(template, ckpt)
    state_file = ckpt / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state.update(global_step=steps, max_steps=steps + 1)
    state_file.write_text(json.dumps(state))
    blocks = steps * global_batch
    mark_complete(
        ckpt, steps, {"streaming": streaming, "blocks_consumed": blocks, "global_batch": global_batch}
    )
    return ckpt


def time_resume(cfg, replay: bool) -> float:
    """Seconds from the start of pretraining (resume=...) to the end of its first training step.

    `replay`: the Trainer's own resume of a stream, for comparison: the stream read from its start, the
    batches already seen skipped by the Trainer (what `pretrain` does instead: start at the saved position)."""
    from mlm.pretrain import build_pretraining, train
    from mlm.streaming import PackedStream

    start = time.perf_counter()
    run = build_pretraining(cfg)
    if replay:
        run.trainer.train_dataset = PackedStream(cfg.data_dir, "train", start=0, seed=cfg.seed)
        run.trainer.args.ignore_data_skip = False
    timer = StepTimer(skip=1)
    run.trainer.add_callback(timer)
    train(run)
    return timer.first_step_at - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--small_steps", type=int, default=1_000)
    parser.add_argument("--batch", type=int, default=32, help="sequences per step")
    parser.add_argument("--seq_len", type=int, default=128)
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3, help="runs of the fast resume (median)")
    parser.add_argument("--cache", default=os.environ.get("MLM_BENCH_CACHE", "/tmp/mlm-bench") + "/resume")
    parser.add_argument(
        "--results-dir", default=None, help="where the jsonl goes (default: benchmarks/results)"
    )
    args = parser.parse_args()

    import datasets
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_libraries()
    results_file = Results("resume", args.results_dir)
    torch.set_num_threads(1)
    cache = Path(args.cache)
    packed = make_data(cache, args.docs, args.seq_len)
    n_blocks = len(datasets.load_from_disk(str(packed))["train"])
    log(f"data: {n_blocks} blocks of {args.seq_len} tokens; batch {args.batch}; {machine_line()}")

    from mlm.pretrain import pretrain

    templates = {}
    for streaming in (True, False):  # real 2-step checkpoints (also warms up imports and caches)
        out = cache / ("template-stream" if streaming else "template-map")
        shutil.rmtree(out, ignore_errors=True)
        pretrain(config(packed, out, args.batch, streaming, max_steps=2, save_steps=2))
        templates[streaming] = out / "checkpoint-2"

    def run(steps: int, streaming: bool, replay: bool) -> float:
        run_dir = cache / "run"
        ckpt = fake_checkpoint(templates[streaming], run_dir, steps, args.batch, streaming)
        cfg = config(
            packed,
            run_dir,
            args.batch,
            streaming,
            max_steps=steps + 1,
            save_steps=0,
            resume_from_checkpoint=str(ckpt),
        )
        seconds = time_resume(cfg, replay)
        what = (
            "stream, position" if streaming and not replay else "stream, replay" if streaming else "map-style"
        )
        log(f"resume after {steps:>6} steps ({what}): {seconds:.2f} s")
        return seconds

    results = {}
    for steps, key in ((args.small_steps, f"_at_{args.small_steps}"), (args.steps, "")):
        results[f"resume_s{key}"] = statistics.median(run(steps, True, False) for _ in range(args.repeats))
        results[f"baseline_resume_s{key}"] = run(steps, True, True)
    results["map_style_resume_s"] = statistics.median(
        run(args.steps, False, False) for _ in range(args.repeats)
    )
    results.update(
        steps=args.steps,
        batch=args.batch,
        seq_len=args.seq_len,
        blocks=n_blocks,
        torch_threads=1,
    )
    shutil.rmtree(cache / "run", ignore_errors=True)
    row = {k: round(v, 3) if isinstance(v, float) else v for k, v in results.items()}
    log(f"row in {results_file.write([row])}")
    print(json.dumps(row))


if __name__ == "__main__":
    main()

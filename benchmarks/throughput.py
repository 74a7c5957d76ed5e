"""Pretraining throughput: the stock `run_mlm.py` set-up against `mlm pretrain`, side by side.

Baseline: `BertForMaskedLM` + `DataCollatorForLanguageModeling` + stock `Trainer`/`TrainingArguments`, fed
the packed blocks as `run_mlm.py` feeds its grouped texts (python lists with `attention_mask` and
`special_tokens_mask` columns). Ours: what `mlm.pretrain.pretrain` builds (the masked-only head, the
`MaskingCollator` over int tensors, its `TrainingArguments` and per-device defaults). Same model size,
tokenizer, packed data, batch size, sequence length, threads, optimizer settings and precision.

Both run in this process, alternating (baseline round, ours round, ...) after a warm-up round each; a
`TrainerCallback` timestamps step ends and the first `--skip` steps of every round are left out, so the figure
is steady-state train tokens/s. Last lines: one JSON object per preset.

    .venv/bin/python benchmarks/throughput.py                 # tiny and mini on CPU
    .venv/bin/python benchmarks/throughput.py --quick         # smoke run (a minute)
    .venv/bin/python benchmarks/throughput.py --busy          # cpu_threads auto vs fixed, one core busy
    python benchmarks/throughput.py --device cuda --presets tiny,mini,small
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from common import DEFAULT_CACHE, benchmark_data, log, machine
from transformers import TrainerCallback

# dense bf16 tensor-core peak (TFLOP/s) of common GPUs, keyed on a part of torch.cuda.get_device_name()
GPU_BF16_PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 125.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,  # fp16 (no bf16)
    "T4": 65.0,  # fp16 (no bf16)
}

LR, WD, BETAS, EPS, CLIP = 1e-3, 0.01, (0.9, 0.98), 1e-6, 1.0


def gpu_peak_flops(name: str) -> float | None:
    for key, tflops in GPU_BF16_PEAK_TFLOPS.items():  # most specific keys first
        if key in name:
            return tflops * 1e12
    return None


def cpu_peak_flops(seconds: float = 3.0, n: int = 2048) -> float:
    """Best fp32 matmul FLOP/s of this machine, with the current torch thread count."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)
    best, until = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < until:
        t = time.perf_counter()
        for _ in range(3):
            torch.mm(a, b, out=out)
        best = max(best, 3 * 2 * n**3 / (time.perf_counter() - t))
    return best


def train_flops_per_step(config, batch: int, seq: int, scored_rows: float) -> float:
    """Matmul FLOPs of one training step (forward + backward = 3x forward) of a BERT encoder + MLM head."""
    h, i, layers, v = (
        config.hidden_size,
        config.intermediate_size,
        config.num_hidden_layers,
        config.vocab_size,
    )
    per_token = layers * (2 * (4 * h * h + 2 * h * i) + 4 * seq * h)  # projections, FFN, scores + values
    per_scored_row = 2 * h * h + 2 * h * v  # transform + decoder
    return 3 * (batch * seq * per_token + scored_rows * per_scored_row)


class StepTimer(TrainerCallback):
    """Timestamps the end of step `skip` and of the last step of a round (synchronising CUDA there)."""

    def __init__(self, skip: int) -> None:
        self.skip, self.last = skip, 0
        self.marks: list[tuple[int, float]] = []

    def arm(self, steps: int) -> None:
        self.last, self.marks = steps, []

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step in (self.skip, self.last):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append((state.global_step, time.perf_counter()))
        return control

    def seconds_per_step(self) -> float:
        (s0, t0), (s1, t1) = self.marks[0], self.marks[-1]
        return (t1 - t0) / (s1 - s0)


class ScoredRows:
    """Data collator wrapper counting the label-carrying positions of the batches it makes.

    The counts live in shared memory: on a GPU the collator runs in DataLoader worker processes."""

    def __init__(self, inner) -> None:
        import multiprocessing

        self.inner = inner
        self._rows, self._batches = multiprocessing.Value("q", 0), multiprocessing.Value("q", 0)

    def __call__(self, items):
        out = self.inner(items)
        pos = out.get("masked_positions")
        rows = pos.numel() if pos is not None else int((out["labels"] != -100).sum())
        with self._rows.get_lock():  # one lock for the pair
            self._rows.value += rows
            self._batches.value += 1
        return out

    def reset(self) -> None:
        self._rows.value = self._batches.value = 0

    def per_batch(self) -> float:
        return self._rows.value / max(1, self._batches.value)


def make_baseline(
    packed, tokenizer, preset: str, args_common: dict, seq: int, device: str, model_vocab: int = 0
):
    """The run_mlm.py set-up: AutoModelForMaskedLM.from_config, DataCollatorForLanguageModeling, Trainer."""
    import numpy as np
    from transformers import BertForMaskedLM, DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from mlm.modeling import build_config

    vocab = max(len(tokenizer), model_vocab)
    config = build_config(preset, vocab, seq, pad_token_id=tokenizer.pad_token_id)
    model = BertForMaskedLM(config)
    special = np.array(sorted(tokenizer.all_special_ids))

    def add_masks(batch):  # what run_mlm.py's tokenize_function + group_texts leave in the dataset
        ids = np.asarray(batch["input_ids"])
        return {
            "attention_mask": (ids != tokenizer.pad_token_id).astype(np.int8).tolist(),
            "special_tokens_mask": np.isin(ids, special).astype(np.int8).tolist(),
        }

    train = packed["train"].select_columns(["input_ids"])
    train = train.map(add_masks, batched=True, desc="baseline columns")
    collator = ScoredRows(DataCollatorForLanguageModeling(tokenizer=tokenizer, mlm_probability=0.15))
    args = TrainingArguments(**args_common, bf16=device == "cuda", use_cpu=device == "cpu")
    return Trainer(model=model, args=args, train_dataset=train, data_collator=collator), collator


def make_ours(
    data_dir: str,
    tokenizer,
    preset: str,
    args_common: dict,
    seq: int,
    device: str,
    extra: dict,
    model_vocab: int = 0,
):
    """What mlm.pretrain.pretrain builds for training, through its public builders (no evaluation, no
    checkpoints); the model vocabulary is at least `model_vocab`, as the baseline's."""
    from mlm.modeling import build_config
    from mlm.objectives import get_objective
    from mlm.options import training_arguments
    from mlm.pretrain import PretrainConfig, build_trainer, load_data

    names = ("output_dir", "per_device_train_batch_size", "learning_rate", "weight_decay", "adam_epsilon",
             "max_grad_norm", "lr_scheduler_type", "max_steps", "logging_steps", "disable_tqdm", "seed")  # fmt: skip
    cfg = PretrainConfig(
        data_dir=data_dir,
        preset=preset,
        adam_beta1=args_common["adam_beta1"],
        adam_beta2=args_common["adam_beta2"],
        warmup_steps=args_common["warmup_steps"],
        use_cpu=device == "cpu",
        bf16=device == "cuda",
        eval_steps=0,
        save_steps=0,
        max_eval_samples=1,
        **{k: args_common[k] for k in names},
        **extra,
    )
    cfg.validate()
    data = load_data(cfg)
    objective = get_objective(cfg.objective)(cfg, data.tokenizer)
    config = build_config(
        preset,
        max(len(tokenizer), model_vocab),
        seq,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation=cfg.attn_implementation,
        pad_vocab_to_multiple_of=cfg.pad_vocab_to_multiple_of,
        architecture=cfg.architecture,
        cls_token_id=tokenizer.cls_token_id,
        sep_token_id=tokenizer.sep_token_id,
    )
    trainer = build_trainer(cfg, objective, objective.build_model(config), data).trainer
    collator = ScoredRows(trainer.data_collator)
    trainer.data_collator = collator
    reuse = device == "cpu" and cfg.cpu_reuse_memory
    if reuse:  # build_trainer switched it on; run_round switches it on for our rounds only
        from mlm.cpu.memory import reuse_freed_memory

        reuse_freed_memory(False)
    keys = ("optim", "bf16", "tf32", "dataloader_num_workers", "dataloader_pin_memory", "torch_compile")
    settings = {k: v for k, v in training_arguments(cfg).items() if k in keys}
    return trainer, collator, settings, reuse


def run_round(trainer, timer: StepTimer, steps: int, reuse_memory: bool = False) -> float:
    """Train `steps` more steps; return seconds per steady-state step.

    `reuse_memory`: what `mlm pretrain` does on CPU (mlm.cpu.memory.reuse_freed_memory, process-wide), switched
    on for this round only and back to glibc's steady state afterwards, so the baseline runs as stock."""
    from mlm.cpu.memory import reuse_freed_memory

    trainer.args.max_steps = steps  # every train() call starts a fresh TrainerState at step 0
    timer.arm(steps)
    if reuse_memory:
        reuse_freed_memory(True)
    try:
        trainer.train()
    finally:
        if reuse_memory:
            reuse_freed_memory(False)
    return timer.seconds_per_step()


def bench_preset(preset: str, paths: dict, opts, peak: float, device: str) -> dict:
    import datasets
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(paths["tokenizer"]))
    packed = datasets.load_from_disk(str(paths["packed"]))
    seq = len(packed["train"][0]["input_ids"])
    steps = opts.steps or {"tiny": 12, "mini": 8, "small": 30}.get(preset, 10)
    if device == "cuda":
        steps = opts.steps or 60
    with tempfile.TemporaryDirectory(prefix="mlm-throughput-") as tmp:
        common = dict(
            output_dir=tmp,
            per_device_train_batch_size=opts.batch_size,
            learning_rate=LR,
            weight_decay=WD,
            adam_beta1=BETAS[0],
            adam_beta2=BETAS[1],
            adam_epsilon=EPS,
            max_grad_norm=CLIP,
            lr_scheduler_type="linear",
            warmup_steps=0.06,
            max_steps=1,
            logging_steps=10_000,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            seed=0,
        )
        torch.manual_seed(0)
        base, base_rows = make_baseline(
            packed, tokenizer, preset, dict(common, output_dir=f"{tmp}/base"), seq, device, opts.model_vocab
        )
        torch.manual_seed(0)
        extra = json.loads(opts.ours_options) if opts.ours_options else {}
        ours, ours_rows, dev, reuse = make_ours(
            str(paths["packed"]),
            tokenizer,
            preset,
            dict(common, output_dir=f"{tmp}/ours"),
            seq,
            device,
            extra,
            opts.model_vocab,
        )
        timers = {}
        for name, trainer in (("baseline", base), ("ours", ours)):
            timers[name] = StepTimer(opts.skip)
            trainer.add_callback(timers[name])
        log(
            f"[{preset}] {device}, batch {opts.batch_size} x {seq} tokens, tokenizer vocab {len(tokenizer)}, "
            f"model vocab {base.model.config.vocab_size}, "
            f"{torch.get_num_threads()} threads; ours: {json.dumps(dev, default=str)}"
        )
        # warm-up: one short round each (allocator, kernels, compile), not counted
        for name, trainer in (("baseline", base), ("ours", ours)):
            t = time.perf_counter()
            run_round(trainer, timers[name], opts.skip + 2, reuse and name == "ours")
            log(f"[{preset}] warm-up {name}: {time.perf_counter() - t:.1f}s")
        per_step: dict[str, list[float]] = {"baseline": [], "ours": []}
        base_rows.reset()
        ours_rows.reset()
        for r in range(opts.rounds):
            for name, trainer in (("baseline", base), ("ours", ours)):
                s = run_round(trainer, timers[name], opts.skip + steps, reuse and name == "ours")
                per_step[name].append(s)
                log(
                    f"[{preset}] round {r + 1}/{opts.rounds} {name:8s}: {s * 1000:8.1f} ms/step "
                    f"{opts.batch_size * seq / s:10.0f} tokens/s"
                )
    tokens = opts.batch_size * seq
    result = {"preset": preset, "device": device}
    flops = {}
    for name, rows in (("baseline", base_rows), ("ours", ours_rows)):
        best = min(per_step[name])  # least-disturbed round; the median is printed too
        med = sorted(per_step[name])[len(per_step[name]) // 2]
        model = (base if name == "baseline" else ours).model
        # rows the head scores: every position for BertForMaskedLM, the masked ones (or slots) for ours
        scored = opts.batch_size * seq if name == "baseline" else rows.per_batch()
        f = train_flops_per_step(model.config, opts.batch_size, seq, scored)
        flops[name] = f / best
        log(
            f"[{preset}] {name:8s}: {tokens / best:9.0f} tokens/s (median round {tokens / med:.0f}), "
            f"{scored:.0f} scored rows/step, {f / 1e9:.1f} GFLOP/step, {f / best / 1e9:.1f} GFLOP/s = "
            f"{100 * f / best / peak:.1f}% of peak"
        )
        result["baseline_tokens_per_s" if name == "baseline" else "tokens_per_s"] = round(tokens / best, 1)
    result["ratio"] = round(result["tokens_per_s"] / result["baseline_tokens_per_s"], 2)
    result["ratio_median"] = round(
        sorted(per_step["baseline"])[len(per_step["baseline"]) // 2]
        / sorted(per_step["ours"])[len(per_step["ours"]) // 2],
        2,
    )
    result["model_flops_share_of_peak"] = round(flops["ours"] / peak, 4)
    result["baseline_model_flops_share_of_peak"] = round(flops["baseline"] / peak, 4)
    log(f"[{preset}] ratio ours/baseline: {result['ratio']:.2f}x (medians: {result['ratio_median']:.2f}x)")
    return result


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--presets", default=None, help="comma-separated (default: tiny,mini on CPU; +small on GPU)"
    )
    p.add_argument("--steps", type=int, default=0, help="timed steps per round (default: per preset)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds per side")
    p.add_argument("--skip", type=int, default=2, help="steps left out at the start of every round")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
    p.add_argument(
        "--model-vocab",
        type=int,
        default=30522,
        help="model vocabulary at least this (a small corpus gives a smaller tokenizer; the head cost stays)",
    )
    p.add_argument("--corpus-bytes", type=int, default=12_000_000, help="text for tokenizer and packing")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--ours-options", default="", help="JSON of PretrainConfig overrides for our side")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny only, few steps, one round")
    p.add_argument("--busy", action="store_true",
                   help="instead: cpu_threads auto vs fixed counts, idle and with a process busy on one core "
                   "(benchmarks/busy.py)")  # fmt: skip
    p.add_argument("--seconds", type=float, default=60.0, help="--busy: wall-clock seconds per run")
    p.add_argument("--preset", default="tiny", help="--busy: the model size")
    opts = p.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import torch
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.busy:
        import busy

        return busy.run(opts, make_ours)
    device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    presets = (
        opts.presets.split(",")
        if opts.presets
        else (["tiny", "mini", "small"] if device == "cuda" else ["tiny", "mini"])
    )
    if opts.quick:
        presets = presets if opts.presets else ["tiny"]
        opts.steps, opts.rounds, opts.skip = opts.steps or 3, 1, 1

    log(f"machine: {machine()}; torch {torch.__version__}, transformers {transformers.__version__}")
    paths = benchmark_data(Path(opts.cache_dir), corpus_bytes=opts.corpus_bytes)
    if device == "cuda":
        name = torch.cuda.get_device_name(0)
        peak = gpu_peak_flops(name)
        if peak is None:
            log(f"unknown GPU {name!r}: no peak in the table, measuring a bf16 matmul instead")
            peak = gpu_matmul_peak()
        log(f"peak: {peak / 1e12:.0f} TFLOP/s (bf16 dense, {name})")
    else:
        peak = cpu_peak_flops()
        log(
            f"peak: {peak / 1e9:.1f} GFLOP/s (fp32 matmul 2048^3, {torch.get_num_threads()} threads, measured now)"
        )
    results = [bench_preset(preset, paths, opts, peak, device) for preset in presets]
    for r in results:
        print(
            json.dumps(
                {k: r[k] for k in ("preset", "device", "baseline_tokens_per_s", "tokens_per_s", "ratio")}
                | {
                    "ratio_median": r["ratio_median"],
                    "model_flops_share_of_peak": r["model_flops_share_of_peak"],
                }
            ),
            flush=True,
        )
    return results


def gpu_matmul_peak(n: int = 8192) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 20 * 2 * n**3 / (time.perf_counter() - t)


if __name__ == "__main__":
    main()

"""Pretraining throughput: `mlm pretrain` against the informed user's own set-up, block type by block type.

Each block type is compared with its stock counterpart, trained by a stock `Trainer` with
`DataCollatorForLanguageModeling` (15% masking, 80/10/10), fed the packed blocks as `run_mlm.py` feeds its
grouped texts (python lists with `attention_mask` and `special_tokens_mask` columns):

- ModernBERT: `ModernBertForMaskedLM` with `sparse_prediction=True` (transformers' own option: the head on
  the masked positions only) vs ours (`architecture: modernbert`);
- BERT: `BertForMaskedLM` (the full head, every position scored) vs ours (the masked-only head);
- ELECTRA: transformers' `ElectraForMaskedLM` (generator, full head) + `ElectraForPreTraining`
  (discriminator) sharing embeddings, in a minimal training step (`StockElectra`) vs `objective: electra`.

Ours is what `mlm pretrain` builds (`mlm.pretrain.build_pretraining`: its model, collator, Trainer and
device defaults) with `cpu_threads` fixed at `--threads`. Same on both sides: the model config (the stock
model is built from ours'), tokenizer (a WordPiece of `--vocab-size` trained on the data at hand), packed
blocks, batch x sequence length, threads, optimizer settings (lr 1e-3, betas (0.9, 0.98), eps 1e-6, weight
decay 0.01, clipping 1.0, linear schedule), precision and data-loader settings (on a GPU: bf16, ours' workers).

One process: per block type and preset, a warm-up round each, then `--rounds` alternating rounds (ours,
stock, ours, stock, ...); a round is `--skip` + N steps, timed from the end of step `--skip` to the end of
the last (`harness.StepTimer`), so each round gives steady-state train tokens/s. Reported: the median round
of each side and their ratio (ours / stock), and each side's model FLOP/s and share of the device's peak
(`mlm.flops`: each side's own FLOPs per token: stock BERT and the stock ELECTRA generator score every
position, stock ModernBERT's sparse prediction and ours the masked ones, counted from the batches; the peak
from `device_peak_flops`, measured once before the rounds on a CPU). Rows go to
benchmarks/results/throughput-YYYYMMDD.jsonl (not with `--quick`, unless `--results-dir`); the table, ModernBERT
first, to stdout.

    .venv/bin/python benchmarks/throughput.py                    # tiny and mini, 3 block types, 2 threads
    .venv/bin/python benchmarks/throughput.py --quick            # smoke run: tiny, 1 round of 3 steps
    .venv/bin/python benchmarks/throughput.py --blocks bert --presets mini --rounds 5
    .venv/bin/python benchmarks/throughput.py --busy             # cpu_threads auto vs fixed (benchmarks/busy.py)
    python benchmarks/throughput.py --device cuda --presets tiny,mini,small
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from harness import (
    DEFAULT_CACHE,
    OPTIMIZER,
    Results,
    StepTimer,
    benchmark_data,
    log,
    machine_line,
    markdown_table,
    median,
    quiet_libraries,
    timed_pretraining,
)

BLOCKS = ("modernbert", "bert", "electra")  # the table's order
OURS = {  # PretrainConfig options of ours, by block type
    "modernbert": {"architecture": "modernbert", "objective": "mlm"},
    "bert": {"architecture": "bert", "objective": "mlm"},
    "electra": {"architecture": "bert", "objective": "electra"},
}
STOCK = {
    "modernbert": "ModernBertForMaskedLM, sparse_prediction=True",
    "bert": "BertForMaskedLM (full head)",
    "electra": "ElectraForMaskedLM + ElectraForPreTraining",
}
NAMES = {"modernbert": "ModernBERT", "bert": "BERT", "electra": "ELECTRA"}
STEPS = {"tiny": 12, "mini": 8, "small": 30}  # timed steps per round on a CPU (60 on a GPU)
ELECTRA_WEIGHT = 50.0  # the discriminator loss weight, ours' default (the paper's)


class StockElectra(torch.nn.Module):
    """ELECTRA from transformers' own classes in a minimal training step: the generator
    (`ElectraForMaskedLM`, its head over every position) fills the masked positions with tokens sampled from
    its logits; the discriminator (`ElectraForPreTraining`) tells replaced from original at every position.
    The generator reads the discriminator's embeddings (and ties its output layer to them).
    Loss: generator MLM loss + `weight` x discriminator loss."""

    def __init__(self, discriminator_config, generator_config, weight: float = ELECTRA_WEIGHT) -> None:
        from transformers import ElectraForMaskedLM, ElectraForPreTraining

        super().__init__()
        self.discriminator = ElectraForPreTraining(discriminator_config)
        self.generator = ElectraForMaskedLM(generator_config)
        embeddings = self.discriminator.electra.embeddings
        self.generator.electra.embeddings = embeddings
        self.generator.generator_lm_head.weight = embeddings.word_embeddings.weight
        self.weight = weight

    def forward(self, input_ids, attention_mask=None, labels=None):
        generated = self.generator(input_ids=input_ids, attention_mask=attention_mask, labels=labels)
        masked = labels != -100
        with torch.no_grad():
            probs = torch.softmax(generated.logits[masked].float(), dim=-1)
            corrupted = input_ids.clone()
            corrupted[masked] = torch.multinomial(probs, 1).squeeze(-1)
            replaced = (corrupted != torch.where(masked, labels, input_ids)).long()
        judged = self.discriminator(input_ids=corrupted, attention_mask=attention_mask, labels=replaced)
        return {"loss": generated.loss + self.weight * judged.loss}


class ScoredRows:
    """Data collator wrapper counting the masked (label-carrying) positions of the batches it makes.

    The counts live in shared memory: on a GPU the collator runs in DataLoader worker processes."""

    def __init__(self, inner) -> None:
        import multiprocessing

        self.inner = inner
        self._rows, self._positions = multiprocessing.Value("q", 0), multiprocessing.Value("q", 0)

    def __call__(self, items):
        out = self.inner(items)
        pos = out.get("masked_positions")
        rows = pos.numel() if pos is not None else int((out["labels"] != -100).sum())
        with self._rows.get_lock():  # one lock for the pair
            self._rows.value += rows
            self._positions.value += out["input_ids"].numel()
        return out

    def reset(self) -> None:
        self._rows.value = self._positions.value = 0

    def fraction(self) -> float:
        """The share of positions masked (scored by a masked-only head) since the last reset."""
        return self._rows.value / max(1, self._positions.value)


def stock_dataset(train, tokenizer):
    """The packed blocks as `run_mlm.py`'s `tokenize_function` + `group_texts` leave them: python lists with
    `attention_mask` and `special_tokens_mask` columns."""
    import numpy as np

    special = np.array(sorted(tokenizer.all_special_ids))

    def add_masks(batch):
        ids = np.asarray(batch["input_ids"])
        return {
            "attention_mask": (ids != tokenizer.pad_token_id).astype(np.int8).tolist(),
            "special_tokens_mask": np.isin(ids, special).astype(np.int8).tolist(),
        }

    return train.select_columns(["input_ids"]).map(add_masks, batched=True, desc="stock columns")


def stock_model(blocks: str, ours):
    """The stock model of `blocks` at the size of ours (`ours`: our model, whose config it copies)."""
    from transformers import BertForMaskedLM, ModernBertForMaskedLM

    if blocks == "electra":
        return StockElectra(copy.deepcopy(ours.config), copy.deepcopy(ours.generator.config))
    config = copy.deepcopy(ours.config)
    if blocks == "modernbert":
        config.sparse_prediction = True
        return ModernBertForMaskedLM(config)
    return BertForMaskedLM(config)


def build_stock(blocks: str, ours_run, train, output_dir: str, batch_size: int, device: str):
    """The stock Trainer with DataCollatorForLanguageModeling, the data-loader and precision settings ours
    resolved to; (trainer, counting collator)."""
    from transformers import DataCollatorForLanguageModeling, PrinterCallback, Trainer, TrainingArguments

    resolved = ours_run.trainer.args
    same = {
        k: getattr(resolved, k) for k in ("bf16", "tf32", "dataloader_num_workers", "dataloader_pin_memory")
    }
    args = TrainingArguments(
        output_dir=output_dir, per_device_train_batch_size=batch_size, max_steps=1, logging_steps=10_000,
        save_strategy="no", report_to="none", disable_tqdm=True, seed=0, use_cpu=device == "cpu",
        **OPTIMIZER, **same,
    )  # fmt: skip
    collator = ScoredRows(DataCollatorForLanguageModeling(ours_run.data.tokenizer, mlm_probability=0.15))
    torch.manual_seed(0)
    model = stock_model(blocks, ours_run.trainer.model)
    trainer = Trainer(model=model, args=args, train_dataset=train, data_collator=collator)
    trainer.remove_callback(PrinterCallback)  # the end-of-train metrics dict on stdout
    return trainer, collator


def build_ours(blocks: str, preset: str, packed: Path, output_dir: str, opts, device: str):
    """What `mlm pretrain` builds for `blocks` at `preset`; (run, counting collator, reuses freed memory)."""
    from mlm.cpu.memory import reuse_freed_memory

    options = {**OURS[blocks], "preset": preset, "per_device_train_batch_size": opts.batch_size,
               "cpu_threads": str(opts.threads), "use_cpu": device == "cpu"}  # fmt: skip
    options.update(json.loads(opts.ours_options) if opts.ours_options else {})
    run = timed_pretraining(packed, output_dir, **options)
    collator = ScoredRows(run.trainer.data_collator)
    run.trainer.data_collator = collator
    # switched on process-wide by the build: on for our rounds only (run_round), so the stock side runs as stock
    reuse = device == "cpu" and run.cfg.cpu_reuse_memory
    if reuse:
        reuse_freed_memory(False)
    return run, collator, reuse


def run_round(trainer, timer: StepTimer, steps: int, reuse_memory: bool = False) -> float:
    """Train `steps` more steps (a fresh `train()`, from step 0); steady-state seconds per step.

    `reuse_memory`: what `mlm pretrain` does on CPU (`mlm.cpu.memory.reuse_freed_memory`, process-wide),
    on for this round only and back to glibc's default afterwards."""
    from mlm.cpu.memory import reuse_freed_memory

    trainer.args.max_steps = steps
    if reuse_memory:
        reuse_freed_memory(True)
    try:
        trainer.train()
    finally:
        if reuse_memory:
            reuse_freed_memory(False)
    return timer.seconds_per_step()


def flops_per_token(blocks: str, model, seq_len: int, scored_fraction: float) -> float:
    """Training FLOPs per token (`mlm.flops`) of `model` (ours or stock) scoring `scored_fraction` of the
    positions in its MLM (or generator) head."""
    from mlm.flops import model_flops_per_token

    if blocks == "electra":
        discriminator = model.discriminator.config if isinstance(model, StockElectra) else model.config
        return model_flops_per_token(discriminator, seq_len, scored_fraction, model.generator.config)
    return model_flops_per_token(model.config, seq_len, scored_fraction)


def compare(blocks: str, preset: str, packed: Path, stock_train, opts, peak, device: str) -> dict[str, Any]:
    """Ours against stock for one block type and preset: alternating rounds; the row of the results."""
    from mlm.flops import utilisation

    steps = opts.steps or (60 if device == "cuda" else STEPS.get(preset, 10))
    tag = f"[{NAMES[blocks]} {preset}]"
    with tempfile.TemporaryDirectory(prefix="mlm-throughput-") as tmp:
        ours_run, ours_rows, reuse = build_ours(blocks, preset, packed, f"{tmp}/ours", opts, device)
        stock, stock_rows = build_stock(
            blocks, ours_run, stock_train, f"{tmp}/stock", opts.batch_size, device
        )
        seq = ours_run.data.seq_len
        tokens = opts.batch_size * seq
        sides = {"ours": (ours_run.trainer, ours_rows), "stock": (stock, stock_rows)}
        timers = {name: StepTimer(opts.skip) for name in sides}
        for name, (trainer, _) in sides.items():
            trainer.add_callback(timers[name])
        log(f"{tag} {device}, batch {opts.batch_size} x {seq}, vocabulary {ours_run.trainer.model.config.vocab_size}, "
            f"{torch.get_num_threads()} threads; stock: {STOCK[blocks]}; ours: {type(ours_run.trainer.model).__name__}")  # fmt: skip
        for name, (trainer, _) in sides.items():  # warm-up (allocator, kernels), not counted
            t = time.perf_counter()
            run_round(trainer, timers[name], opts.skip + 2, reuse and name == "ours")
            log(f"{tag} warm-up {name}: {time.perf_counter() - t:.1f}s")
        ours_rows.reset()
        stock_rows.reset()
        rates: dict[str, list[float]] = {"ours": [], "stock": []}
        for r in range(opts.rounds):
            for name, (trainer, _) in sides.items():  # ours, stock, ours, stock, ...
                s = run_round(trainer, timers[name], opts.skip + steps, reuse and name == "ours")
                rates[name].append(tokens / s)
                log(
                    f"{tag} round {r + 1}/{opts.rounds} {name:5s}: {s * 1000:8.1f} ms/step {tokens / s:10.0f} tokens/s"
                )
        fractions = {"ours": ours_rows.fraction(), "stock": stock_rows.fraction()}
        if blocks != "modernbert":  # stock BERT's head and stock ELECTRA's generator score every position
            fractions["stock"] = 1.0
        row: dict[str, Any] = {"blocks": blocks, "preset": preset, "stock": STOCK[blocks], "device": device,
                               "batch_size": opts.batch_size, "seq_len": seq, "steps_per_round": steps,
                               "vocab_size": ours_run.trainer.model.config.vocab_size,
                               "threads": torch.get_num_threads(), "ours_options": opts.ours_options or None}  # fmt: skip
        for name, model in (("stock", stock.model), ("ours", ours_run.trainer.model)):
            key = "stock_" if name == "stock" else ""
            mfu = utilisation(flops_per_token(blocks, model, seq, fractions[name]), median(rates[name]), peak)
            row.update({f"{key}tokens_per_s": round(median(rates[name]), 1),
                        f"{key}rounds_tokens_per_s": [round(x, 1) for x in rates[name]],
                        f"{key}scored_fraction": round(fractions[name], 4),
                        f"{key}model_flops_per_token": round(mfu["model_flops_per_token"]),
                        f"{key}model_flops_per_s": round(mfu["model_flops_per_second"]),
                        f"{key}share_of_peak": round(mfu["share_of_peak"], 4)})  # fmt: skip
        row.update(ratio=round(row["tokens_per_s"] / row["stock_tokens_per_s"], 3),
                   peak_flops=round(peak[0]), peak_source=peak[1])  # fmt: skip
        log(f"{tag} ours / stock: {row['ratio']:.2f}x (medians of {opts.rounds} round(s)); model FLOP/s "
            f"{flops_cell(row, 'stock_')} stock, {flops_cell(row, '')} ours")  # fmt: skip
        del sides, stock, ours_run
        gc.collect()
    return row


def flops_cell(row: dict, key: str) -> str:
    return f"{row[key + 'model_flops_per_s'] / 1e9:,.1f} GFLOP/s, {100 * row[key + 'share_of_peak']:.1f}%"


def table(rows: list[dict]) -> list[str]:
    """Markdown, ModernBERT rows first, then BERT, then ELECTRA."""
    rows = sorted(rows, key=lambda r: BLOCKS.index(r["blocks"]) if r["blocks"] in BLOCKS else len(BLOCKS))
    header = ["blocks", "preset", "stock set-up", "stock tokens/s", "ours tokens/s", "ours / stock",
              "stock: model FLOP/s, share of peak", "ours: model FLOP/s, share of peak"]  # fmt: skip
    return markdown_table(header, [
        [NAMES.get(r["blocks"], r["blocks"]), r["preset"], r["stock"], r["stock_tokens_per_s"], r["tokens_per_s"],
         f"**{r['ratio']:.2f}x**", flops_cell(r, "stock_"), flops_cell(r, "")]
        for r in rows
    ])  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blocks", default=",".join(BLOCKS), help="comma-separated, of " + ", ".join(BLOCKS))
    p.add_argument(
        "--presets", default=None, help="comma-separated (default: tiny,mini on CPU; +small on GPU)"
    )
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per side (after a warm-up each)")
    p.add_argument("--steps", type=int, default=0, help="timed steps per round (default: by preset)")
    p.add_argument("--skip", type=int, default=2, help="steps left out at the start of every round")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=2, help="torch threads, both sides")
    p.add_argument("--vocab-size", type=int, default=16384, help="the WordPiece trained on the data")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--corpus-bytes", type=int, default=0,
                   help="text for tokenizer and packing (default 12 MB; 2 MB with --quick)")  # fmt: skip
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE))
    p.add_argument("--ours-options", default="", help="JSON of PretrainConfig options for our side")
    p.add_argument("--results-dir", default=None, help="where the jsonl goes (default: benchmarks/results)")
    p.add_argument(
        "--quick", action="store_true", help="smoke run: tiny, 1 round of 3 steps, no results file"
    )
    opts = p.parse_args(argv)
    if opts.quick:
        opts.presets = opts.presets or "tiny"
        opts.rounds, opts.steps, opts.skip = 1, opts.steps or 3, 1
        opts.corpus_bytes = opts.corpus_bytes or 2_000_000
    opts.corpus_bytes = opts.corpus_bytes or 12_000_000
    unknown = set(opts.blocks.split(",")) - set(BLOCKS)
    if unknown:
        p.error(f"unknown --blocks {', '.join(sorted(unknown))}; valid: {', '.join(BLOCKS)}")
    return opts


def main(argv: list[str] | None = None) -> list[dict]:
    argv = sys.argv[1:] if argv is None else argv
    if "--busy" in argv:  # the thread study lives in busy.py; kept here under its old name
        import busy

        return busy.main([a for a in argv if a != "--busy"])
    opts = parse_args(argv)
    import datasets

    from mlm.flops import device_peak_flops

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    quiet_libraries()
    torch.set_num_threads(opts.threads)
    device = opts.device if opts.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    presets = (opts.presets or ("tiny,mini,small" if device == "cuda" else "tiny,mini")).split(",")
    results = Results("throughput", opts.results_dir) if (opts.results_dir or not opts.quick) else None
    log(f"machine: {machine_line()}")
    paths = benchmark_data(Path(opts.cache_dir), opts.corpus_bytes, opts.vocab_size, opts.seq_len)
    peak = device_peak_flops(device)
    log(f"peak: {peak[0] / 1e9:,.1f} GFLOP/s ({peak[1]})")
    train = datasets.load_from_disk(str(paths["packed"]))["train"]
    from transformers import AutoTokenizer

    stock_train = stock_dataset(train, AutoTokenizer.from_pretrained(str(paths["tokenizer"])))
    rows = []
    for blocks in [b for b in BLOCKS if b in opts.blocks.split(",")]:
        for preset in presets:
            rows.append(compare(blocks, preset, paths["packed"], stock_train, opts, peak, device))
            if results:
                results.write(rows[-1:])
    print("\n".join(table(rows)), flush=True)
    if results:
        log(f"rows in {results.path}")
    return rows


if __name__ == "__main__":
    main()

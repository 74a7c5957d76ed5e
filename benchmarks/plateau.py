"""The MLM plateau: which blocks and settings leave it within a CPU budget.

A freshly initialised MLM first learns word frequencies, then which words occur together (a bag of words),
and stays on that plateau (loss a little under the unigram entropy) until attention learns to use
positions. On 2 CPU cores a `tiny` BERT at lr 1e-3 had not left it after 50M tokens. This script trains a
few variants on the same packed blocks, same masking and the same batches (seeded), with a plain loop
(AdamW, warmup then linear decay to zero at the last step, clipping at 1), and prints the running train loss
and the loss on fixed masked validation blocks every 100 steps, beside the unigram entropy of the data.

    .venv/bin/python benchmarks/plateau.py --packed runs/objectives/screen/imdb/data/packed \\
        --tokenizer runs/objectives/screen/imdb/data/tokenizer \\
        --variants bert:1e-3,modernbert:1e-3,modernbert:3e-3,bert:3e-3 --steps 600

Variants are ARCHITECTURE:LEARNING_RATE (preset `tiny`, or --preset). Run alone: steps/s are printed but the
figure is the loss at a step; the wall clock of a step differs by block, so compare time with
`benchmarks/objectives.py`, which runs the real pipeline at equal wall clock.
"""

from __future__ import annotations

import argparse
import time

import torch
from harness import log  # noqa: F401  (puts this checkout on sys.path)
from transformers import AutoTokenizer

from mlm.data import BlockDataset, load_packed
from mlm.masking import MaskingCollator, MaskingConfig
from mlm.modeling import build_config, build_model


def unigram_entropy(blocks: BlockDataset, special_ids: list[int], rows: int = 100_000) -> float:
    """Entropy (nats) of the token frequencies of the first `rows` blocks, special tokens left out."""
    counts = torch.bincount(blocks.input_ids[:rows].flatten().long()).double()
    counts[[i for i in special_ids if i < len(counts)]] = 0
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def masking(tok) -> MaskingCollator:
    """BERT's masking (15%, 80/10/10), seeded: every variant sees the same masks."""
    return MaskingCollator(
        MaskingConfig(), len(tok), tok.mask_token_id, tok.pad_token_id, tok.all_special_ids, seed=0
    )


def optimizer(model: torch.nn.Module, lr: float, steps: int, warmup_steps: float):
    """AdamW (weight decay 0.01 on matrices other than embeddings), warmup then linear decay to 0; `warmup_steps`
    below 1 is a share of the steps, as the package's `warmup_steps`."""
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warm = max(1, int(warmup_steps * steps if warmup_steps < 1 else warmup_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm)))
    )
    return opt, schedule


def run_variant(arch: str, lr: float, args, tok, train: BlockDataset, valid: dict) -> list[dict]:
    """Train one variant; its (step, train loss, eval loss, seconds) every 100 steps."""
    torch.manual_seed(0)
    cfg = build_config(args.preset, len(tok), args.seq_length, tok.pad_token_id, architecture=arch,
                       cls_token_id=tok.cls_token_id, sep_token_id=tok.sep_token_id)  # fmt: skip
    model = build_model(cfg)
    collator = masking(tok)
    opt, schedule = optimizer(model, lr, args.steps, args.warmup_steps)
    g, start, running, points = torch.Generator().manual_seed(1), time.perf_counter(), 0.0, []
    for step in range(args.steps):
        idx = torch.randint(len(train), (args.batch_size,), generator=g).tolist()
        loss = model(**collator([train[i] for i in idx])).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(), schedule.step(), opt.zero_grad()
        running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
        if (step + 1) % 100 == 0:
            model.eval()
            with torch.no_grad():
                parts = [model(**{k: v[i : i + 64] for k, v in valid.items()}).loss.item()
                         for i in range(0, len(valid["input_ids"]), 64)]  # fmt: skip
            model.train()
            point = {"step": step + 1, "train": running, "eval": sum(parts) / len(parts),
                     "seconds": time.perf_counter() - start}  # fmt: skip
            print(f"{arch} lr={lr:g} bs={args.batch_size} step {point['step']} train {point['train']:.3f} "
                  f"eval {point['eval']:.3f} t {point['seconds']:.0f}s", flush=True)  # fmt: skip
            points.append(point)
    return points


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--packed", required=True, help="a packed folder (`mlm pack`)")
    p.add_argument("--tokenizer", required=True, help="its tokenizer folder")
    p.add_argument("--variants", default="bert:1e-3,modernbert:1e-3,modernbert:3e-3,bert:3e-3")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-length", type=int, default=128)
    p.add_argument(
        "--warmup-steps", type=float, default=0.06, help="warmup steps, or below 1 a share of them"
    )
    p.add_argument("--eval-blocks", type=int, default=256)
    args = p.parse_args()
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    data, _ = load_packed(args.packed)
    train, valid_blocks = BlockDataset(data["train"]), BlockDataset(data["validation"])
    valid = masking(tok)([{"input_ids": valid_blocks[i]["input_ids"]} for i in range(args.eval_blocks)])
    print(f"unigram entropy of the data: {unigram_entropy(train, tok.all_special_ids):.3f} nats", flush=True)
    for variant in args.variants.split(","):
        arch, lr = variant.split(":")
        run_variant(arch, float(lr), args, tok, train, valid)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

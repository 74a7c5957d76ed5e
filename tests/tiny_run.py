"""A tiny pretraining config shared by the tests that pretrain (a 1-layer, 32-wide BERT, a few steps)."""

from __future__ import annotations

from pathlib import Path

from mlm.pretrain import PretrainConfig

TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def tiny_pretrain_config(packed_dir: Path, out: Path, **overrides) -> PretrainConfig:
    """6 steps of batch 8, evaluating and saving every 3 steps, on the CPU, quietly; `overrides` win."""
    base = dict(
        data_dir=str(packed_dir),
        output_dir=str(out),
        preset="tiny",
        config_overrides=TINY,
        max_steps=6,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        eval_steps=3,
        save_steps=3,
        logging_steps=1,
        max_eval_samples=32,
        disable_tqdm=True,
        use_cpu=True,
    )
    base.update(overrides)
    return PretrainConfig(**base)

"""Masked-language-model pretraining with `transformers.Trainer`."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from data_prep.errors import UserError
from data_prep.io import atomic_output_dir, read_json, write_json
from mlm.distributed import destroy_process_group_at_exit
from mlm.streaming import EpochSampler, PackedStream, SeededMasking

# benchmarks/resume.py sets this to time the Trainer's default resume of a stream (replaying the batches)
_REPLAY_STREAM_ON_RESUME = False

PRETRAIN_STEP = "pretrain"


@dataclass
class PretrainConfig:
    """Everything `mlm pretrain` needs; the YAML section `pretrain:` uses the same keys."""

    data_dir: str = field(default="", metadata={"help": "packed dataset folder written by `mlm pack`"})
    output_dir: str = field(default="", metadata={"help": "where checkpoints, final/ and metrics.json go"})
    tokenizer_dir: str | None = field(
        default=None, metadata={"help": "tokenizer folder (default: the one the packed data was made with)"}
    )
    preset: str = field(default="tiny", metadata={"help": "model size: tiny, mini, small, medium, base"})
    model_overrides: dict = field(
        default_factory=dict, metadata={"help": 'BertConfig overrides, e.g. {"num_hidden_layers": 3}'}
    )
    masked_only_head: bool = field(
        default=True, metadata={"help": "score only the masked positions (fast); false = stock full head"}
    )
    attn_implementation: str = field(default="sdpa", metadata={"help": "attention kernel: sdpa or eager"})
    mlm_probability: float = field(default=0.15, metadata={"help": "share of tokens to mask, in (0, 1)"})
    mask_replace_prob: float = field(default=0.8, metadata={"help": "of masked tokens, share set to [MASK]"})
    random_replace_prob: float = field(
        default=0.1, metadata={"help": "of masked tokens, share set to a random token (rest kept)"}
    )
    whole_word_mask: bool = field(default=False, metadata={"help": "mask all pieces of a word together"})
    fixed_count_masking: bool = field(
        default=False, metadata={"help": "same number of masked tokens in every sequence (static shapes)"}
    )
    max_steps: int = field(
        default=1000, metadata={"help": "optimizer steps; <= 0 means use num_train_epochs"}
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "epochs when max_steps <= 0"})
    max_time_minutes: float | None = field(
        default=None,
        metadata={
            "help": "wall-clock training budget: the step count (and so the LR schedule) is fitted to it "
            "from the measured step time; overrides max_steps and num_train_epochs"
        },
    )
    per_device_train_batch_size: int = field(default=64, metadata={"help": "sequences per device per step"})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "sequences per device in eval"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak learning rate"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay"})
    adam_beta1: float = field(default=0.9, metadata={"help": "AdamW beta1"})
    adam_beta2: float = field(default=0.98, metadata={"help": "AdamW beta2"})
    adam_epsilon: float = field(default=1e-6, metadata={"help": "AdamW epsilon"})
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm (0 = off)"})
    lr_scheduler_type: str = field(default="linear", metadata={"help": "transformers scheduler name"})
    warmup_ratio: float = field(default=0.06, metadata={"help": "share of steps spent warming up"})
    logging_steps: int = field(default=25, metadata={"help": "log the training loss every N steps"})
    eval_steps: int = field(default=250, metadata={"help": "evaluate every N steps (0 = only at the end)"})
    save_steps: int = field(
        default=500, metadata={"help": "save a checkpoint every N steps (0 = only final)"}
    )
    save_total_limit: int = field(default=2, metadata={"help": "checkpoints kept"})
    keep_checkpoints: bool = field(
        default=False,
        metadata={"help": "keep every checkpoint (ignore save_total_limit), e.g. for `mlm evaluate` curves"},
    )
    max_eval_samples: int = field(default=2000, metadata={"help": "validation blocks used for evaluation"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    resume: str | None = field(
        default=None,
        metadata={
            "help": "resume: 'latest' (newest complete checkpoint in output_dir; `--resume` alone), a checkpoint "
            "path, or a Hub repo id pushed with hub_strategy: checkpoint",
            "const": "latest",
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "read the packed blocks as a stream (memory-mapped shards, split across processes); "
            "resume continues at the next unseen block. Needs max_steps"
        },
    )
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: on for CUDA GPUs)"})
    torch_compile: bool = field(default=False, metadata={"help": "compile the model with torch.compile"})
    dataloader_num_workers: int | None = field(
        default=None, metadata={"help": "dataloader worker processes (default: 0 on CPU, 4 on GPU)"}
    )
    dataloader_pin_memory: bool | None = field(
        default=None, metadata={"help": "pinned host memory for batches (default: on for GPUs)"}
    )
    optim: str | None = field(
        default=None, metadata={"help": "optimizer (default: adamw_torch_fused, the fused AdamW kernel)"}
    )
    pad_vocab_to_multiple_of: int = field(
        default=64, metadata={"help": "round the model's vocabulary up to a multiple of this (1 = off)"}
    )
    cpu_reuse_memory: bool = field(
        default=True,
        metadata={"help": "CPU: malloc keeps freed memory for reuse (no page faults every step)"},
    )
    use_cpu: bool = field(default=False, metadata={"help": "train on CPU even when a GPU is present"})
    disable_tqdm: bool = field(default=False, metadata={"help": "hide progress bars"})
    report_to: str = field(default="none", metadata={"help": "trackers: none, tensorboard, wandb, ..."})
    push_to_hub: bool = field(default=False, metadata={"help": "push the model to the Hugging Face Hub"})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub repo id, e.g. me/my-bert"})
    hub_strategy: str = field(
        default="end", metadata={"help": "end, every_save, checkpoint or all_checkpoints"}
    )
    hub_private_repo: bool = field(default=False, metadata={"help": "create the Hub repo as private"})
    license: str = field(default="apache-2.0", metadata={"help": "licence named in the model card"})
    language: str | None = field(default=None, metadata={"help": "language code(s) for the model card"})

    def validate(self) -> None:
        from mlm.modeling import PRESETS

        if not self.data_dir:
            raise UserError("pretrain: 'data_dir' (a folder written by `mlm pack`) is required")
        if not self.output_dir:
            raise UserError("pretrain: 'output_dir' is required")
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset '{self.preset}'; valid presets: {', '.join(PRESETS)}")
        if self.attn_implementation not in ("sdpa", "eager"):
            raise UserError(f"unknown attn_implementation '{self.attn_implementation}'; valid: sdpa, eager")
        from mlm.hub import HUB_STRATEGIES

        if self.hub_strategy not in HUB_STRATEGIES:
            raise UserError(f"unknown hub_strategy '{self.hub_strategy}'; valid: {', '.join(HUB_STRATEGIES)}")
        if self.push_to_hub and not self.hub_model_id:
            raise UserError("pretrain: push_to_hub needs hub_model_id (e.g. your-name/my-bert)")
        if self.max_time_minutes is not None and not self.max_time_minutes > 0:
            raise UserError(f"pretrain: max_time_minutes must be positive, got {self.max_time_minutes}")
        if self.max_steps <= 0 and self.num_train_epochs <= 0 and self.max_time_minutes is None:
            raise UserError("pretrain: set max_steps > 0 or num_train_epochs > 0")
        if self.streaming and self.max_steps <= 0 and self.max_time_minutes is None:
            raise UserError("pretrain: streaming needs max_steps > 0 (a stream has no epochs)")
        if self.per_device_train_batch_size < 1 or self.gradient_accumulation_steps < 1:
            raise UserError("pretrain: batch sizes and gradient_accumulation_steps must be >= 1")
        if not 0 <= self.warmup_ratio < 1:
            raise UserError(f"pretrain: warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        self.masking_config().validate()

    def masking_config(self):
        from mlm.masking import MaskingConfig

        return MaskingConfig(
            mlm_probability=self.mlm_probability,
            mask_replace_prob=self.mask_replace_prob,
            random_replace_prob=self.random_replace_prob,
            whole_word_mask=self.whole_word_mask,
            fixed_count_masking=self.fixed_count_masking,
        )


# ----------------------------------------------------------------------------------------------- data


def load_packed(data_dir: str | Path):
    """Open a packed dataset folder; returns (DatasetDict, pack metadata)."""
    import datasets

    path = Path(data_dir)
    if not path.is_dir():
        raise UserError(f"packed data not found: {path} (run `mlm pack` first)")
    try:
        dsd = datasets.load_from_disk(str(path))
    except FileNotFoundError:
        raise UserError(f"{path} is not a packed dataset folder (no dataset_dict.json)") from None
    if not isinstance(dsd, datasets.DatasetDict) or "train" not in dsd:
        raise UserError(f"{path} has no 'train' split; was it written by `mlm pack`?")
    if "input_ids" not in dsd["train"].column_names:
        cols = ", ".join(dsd["train"].column_names)
        raise UserError(f"{path} has no column 'input_ids'; columns found: {cols}")
    meta = read_json(path / "mlm_step.json") if (path / "mlm_step.json").is_file() else {}
    return dsd, meta


def _block_matrix(table, column: str, dtype) -> torch.Tensor:
    """A list column of equal-length rows as one (rows, length) tensor, without a Python object per row."""
    lists = table.column(column).combine_chunks()
    n = len(lists)
    if n == 0:
        return torch.from_numpy(np.zeros((0, 0), dtype))
    lengths = np.diff(np.asarray(lists.offsets))
    if (lengths != lengths[0]).any():
        raise UserError(
            f"packed blocks must all have the same length; column '{column}' has rows of {sorted(set(lengths.tolist()))[:5]} tokens"
        )
    flat = np.array(
        lists.flatten().to_numpy(zero_copy_only=False), dtype=dtype
    )  # a copy: writable, not mapped
    return torch.from_numpy(flat.reshape(n, int(lengths[0])))


class BlockDataset(torch.utils.data.Dataset):
    """Packed blocks held as one int tensor; indexing returns what the masking collator takes.

    An index past the end is a draw id of a later epoch (`epoch * N + i`, from `EpochSampler`): it reads
    block `i`, and the item's `sample_id` (the draw id) seeds its batch's masking."""

    def __init__(self, ds) -> None:
        # held compactly (ids int32, word starts int8: 5 bytes a token instead of 16), widened per item
        table = ds.with_format("arrow")[:]  # the selected rows, indices mapping applied
        self.input_ids = _block_matrix(table, "input_ids", np.int32)
        self.word_start = (
            _block_matrix(table, "word_start", np.int8) if "word_start" in ds.column_names else None
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        j = i % self.input_ids.shape[0]
        item = {"input_ids": self.input_ids[j].long(), "sample_id": torch.tensor(i, dtype=torch.int64)}
        if self.word_start is not None:
            item["word_start"] = self.word_start[j].long()
        return item


class FixedEvalSet(torch.utils.data.Dataset):
    """Validation blocks masked once with a fixed seed, so every evaluation scores the same positions."""

    def __init__(self, blocks: BlockDataset, collator, n: int, batch: int = 256) -> None:
        n = min(n, len(blocks))
        parts: dict[str, list[torch.Tensor]] = {}
        for start in range(0, n, batch):
            out = collator([blocks[i] for i in range(start, min(n, start + batch))])
            for k, v in out.items():
                parts.setdefault(k, []).append(v)
        self.tensors = {k: torch.cat(v) for k, v in parts.items()}

    def __len__(self) -> int:
        return self.tensors["input_ids"].shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {k: v[i] for k, v in self.tensors.items()}


def stack_collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# ------------------------------------------------------------------------------------------ metrics


def masked_argmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Predicted ids shaped like `labels` (-100 off the masked positions): eval never holds vocab-sized logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    if logits.dim() == 3:  # full head: (batch, seq, vocab)
        return logits.argmax(-1).masked_fill(labels == -100, -100)
    preds = torch.full_like(labels, -100)  # masked-only head: (n_masked, vocab), rows in label order
    preds[labels != -100] = logits.argmax(-1)
    return preds


def masked_accuracy(eval_pred) -> dict[str, float]:
    preds = np.asarray(eval_pred.predictions)
    labels = np.asarray(eval_pred.label_ids)
    masked = labels != -100
    return {"masked_accuracy": float((preds[masked] == labels[masked]).mean()) if masked.any() else 0.0}


# ---------------------------------------------------------------------------------------- training


def _device_defaults(cfg: PretrainConfig) -> dict[str, Any]:
    """Per-device speed settings; `training_args` goes into TrainingArguments as is.

    Both: the fused AdamW kernel. GPU: bf16 autocast, TF32 (Ampere+), pinned memory, 4 loader workers
    (persistent, prefetching) so the GPU never waits for masking. CPU: fp32, batches made in the training
    process (workers would take cores from the matmuls), and malloc made to reuse freed memory
    (`cpu_reuse_memory`, process-wide, applied here)."""
    cuda = torch.cuda.is_available() and not cfg.use_cpu
    bf16 = cfg.bf16 if cfg.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    pin = cfg.dataloader_pin_memory if cfg.dataloader_pin_memory is not None else cuda
    workers = cfg.dataloader_num_workers
    if workers is None:
        workers = min(4, max(0, (os.cpu_count() or 1) - 1)) if cuda else 0
    training_args: dict[str, Any] = {
        "bf16": bf16,
        "optim": cfg.optim or "adamw_torch_fused",
        "torch_compile": cfg.torch_compile,
        "dataloader_num_workers": workers,
        "dataloader_pin_memory": pin,
        "dataloader_persistent_workers": workers > 0,
        "dataloader_prefetch_factor": 4 if workers > 0 else None,
    }
    if cuda and torch.cuda.get_device_capability(0)[0] >= 8:
        training_args["tf32"] = True  # what is not under bf16 autocast (Ampere and newer only)
    if not cuda and cfg.cpu_reuse_memory:
        from mlm.modeling import reuse_freed_memory

        reuse_freed_memory(True)  # process-wide: the step's large tensors are reused, not re-faulted
    return {
        "bf16": bf16,
        "dataloader_pin_memory": pin,
        "training_args": training_args,
        "hardware": torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({os.cpu_count()} cores, {platform.machine()})",
    }


def resolve_resume(cfg: PretrainConfig) -> str | None:
    """Turn the `resume` option into a checkpoint folder, or None."""
    if not cfg.resume or str(cfg.resume).lower() in ("false", "no", "none"):
        return None
    if str(cfg.resume).lower() in ("latest", "true", "yes", "auto"):
        from mlm.streaming import latest_complete_checkpoint, remove_checkpoints

        out = Path(cfg.output_dir)
        last, incomplete = latest_complete_checkpoint(out) if out.is_dir() else (None, [])
        if incomplete and int(os.environ.get("RANK", "0")) == 0:
            names = ", ".join(p.name for p in incomplete)
            print(f"resume: removing incomplete checkpoint(s) {names} (interrupted while being written)")
            remove_checkpoints(incomplete)
        if last is None:
            if str(cfg.resume).lower() == "auto":
                return None
            raise UserError(f"resume: no checkpoint found in {out}")
        return str(last)
    path = Path(cfg.resume)
    if path.is_dir():
        return str(path)
    from mlm.hub import looks_like_repo_id
    from mlm.hub import resolve_resume as resolve_hub_resume

    if looks_like_repo_id(cfg.resume):
        return resolve_hub_resume(cfg.resume, str(Path(cfg.output_dir) / "hub_resume"))
    raise UserError(f"resume: checkpoint not found: {cfg.resume}")


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Pretrain an encoder on packed blocks; returns the final metrics (also in output_dir/metrics.json)."""
    import transformers
    from transformers import AutoTokenizer, TrainingArguments

    from mlm.modeling import build_config, build_model, check_tokenizer_matches, count_parameters

    cfg.validate()
    dsd, pack_meta = load_packed(cfg.data_dir)
    pack_cfg = pack_meta.get("config", {})
    tokenizer_dir = cfg.tokenizer_dir or pack_cfg.get("tokenizer_dir")
    if not tokenizer_dir:
        raise UserError(f"pretrain: {cfg.data_dir} does not record its tokenizer; set tokenizer_dir")
    if not Path(tokenizer_dir).is_dir():
        raise UserError(f"tokenizer folder not found: {tokenizer_dir}")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    packed_vocab = _read_stats(Path(cfg.data_dir)).get("vocab_size")
    if packed_vocab is not None and packed_vocab != len(tokenizer):
        raise UserError(
            f"tokenizer {tokenizer_dir} has {len(tokenizer)} tokens but the packed data {cfg.data_dir} was made "
            f"with a tokenizer of {packed_vocab} tokens; pass the tokenizer it was packed with"
        )
    seq_len = len(dsd["train"][0]["input_ids"])

    transformers.set_seed(cfg.seed)
    model_config = build_config(
        cfg.preset,
        vocab_size=len(tokenizer),
        max_seq_length=seq_len,
        pad_token_id=tokenizer.pad_token_id,
        overrides=cfg.model_overrides,
        attn_implementation=cfg.attn_implementation,
        pad_vocab_to_multiple_of=cfg.pad_vocab_to_multiple_of,
    )
    if seq_len > model_config.max_position_embeddings:
        raise UserError(
            f"max_seq_length {seq_len} of {cfg.data_dir} is larger than the model allows "
            f"({model_config.max_position_embeddings} positions)"
        )
    model = build_model(model_config, masked_only_head=cfg.masked_only_head)
    check_tokenizer_matches(model.config, tokenizer, where=f"{tokenizer_dir} vs model preset {cfg.preset}")

    from mlm.masking import MaskingCollator

    special_ids = sorted(set(tokenizer.all_special_ids))
    masking = cfg.masking_config()

    def make_collator(seed: int | None) -> MaskingCollator:
        return MaskingCollator(
            masking,
            vocab_size=len(tokenizer),
            mask_token_id=tokenizer.mask_token_id,
            pad_token_id=tokenizer.pad_token_id,
            special_token_ids=special_ids,
            seed=seed,
        )

    train_set = None if cfg.streaming else BlockDataset(dsd["train"])
    eval_set = None
    if "validation" in dsd and len(dsd["validation"]) > 0:
        n_eval = min(len(dsd["validation"]), cfg.max_eval_samples)
        eval_set = FixedEvalSet(
            BlockDataset(dsd["validation"].select(range(n_eval))), make_collator(cfg.seed + 1), n_eval
        )

    dev = _device_defaults(cfg)
    eval_every = cfg.eval_steps if eval_set is not None and cfg.eval_steps > 0 else 0
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=TimeBudget.max_steps_arg(cfg),
        num_train_epochs=cfg.num_train_epochs,
        per_device_train_batch_size=cfg.per_device_train_batch_size,
        per_device_eval_batch_size=cfg.per_device_eval_batch_size,
        gradient_accumulation_steps=cfg.gradient_accumulation_steps,
        learning_rate=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
        adam_beta1=cfg.adam_beta1,
        adam_beta2=cfg.adam_beta2,
        adam_epsilon=cfg.adam_epsilon,
        max_grad_norm=cfg.max_grad_norm,
        lr_scheduler_type=cfg.lr_scheduler_type,
        warmup_steps=cfg.warmup_ratio,
        logging_steps=cfg.logging_steps,
        logging_first_step=True,
        eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every or None,
        save_strategy="steps" if cfg.save_steps > 0 else "no",
        save_steps=cfg.save_steps if cfg.save_steps > 0 else 500,
        save_total_limit=None if cfg.keep_checkpoints else cfg.save_total_limit,
        seed=cfg.seed,
        **dev["training_args"],
        use_cpu=cfg.use_cpu,
        disable_tqdm=cfg.disable_tqdm,
        report_to=cfg.report_to,
        remove_unused_columns=False,
        prediction_loss_only=False,
        include_for_metrics=[],
        ddp_find_unused_parameters=False,
        **_resume_args(cfg),
    )
    global_batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * args.world_size
    keep = args.save_total_limit  # rotation counts complete checkpoints only: _ExactResumeCallback does it
    args.save_total_limit = None
    with args.main_process_first(local=False, desc="resolve resume"):
        resume_from = resolve_resume(cfg)
        if args.process_index == 0:
            shutil.rmtree(out / ".final-model", ignore_errors=True)  # left by a run killed while saving
    data_start = _stream_start(resume_from, global_batch) if cfg.streaming else 0
    if cfg.streaming:
        start = 0 if _REPLAY_STREAM_ON_RESUME else data_start
        train_set = PackedStream(cfg.data_dir, "train", start=start, seed=cfg.seed)
    destroy_process_group_at_exit()  # TrainingArguments may have started one (torchrun)
    trainer = _TimedTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=_TrainEvalCollator(SeededMasking(make_collator(None), cfg.seed)),
        processing_class=tokenizer,
        compute_metrics=masked_accuracy,
        preprocess_logits_for_metrics=masked_argmax,
    )
    facts = _RunFacts(cfg, model, tokenizer_dir, pack_meta, dev["hardware"], global_batch, seq_len)
    trainer.add_callback(_RunInfoCallback(facts))  # before the push callback: checkpoints carry run_info.json
    if cfg.max_time_minutes:
        trainer.add_callback(TimeBudget(cfg.max_time_minutes * 60, cfg.lr_scheduler_type, cfg.warmup_ratio))
    hub_callback = None
    if cfg.push_to_hub:
        from mlm.hub import HubPushCallback

        hub_callback = HubPushCallback(
            cfg.hub_model_id, strategy=cfg.hub_strategy, private=cfg.hub_private_repo
        )
        trainer.add_callback(hub_callback)
    # last: marks each checkpoint complete (with the data position) once all else is written, then rotates
    trainer.add_callback(
        _ExactResumeCallback(cfg.seed, keep, global_batch, cfg.streaming, resume_from, data_start)
    )

    started = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=resume_from)
    wall = time.perf_counter() - started

    final_eval = trainer.evaluate() if eval_set is not None else {}
    steps = trainer.state.global_step
    steps_this_run = steps - (_checkpoint_step(resume_from) if resume_from else 0)
    train_time = max(1e-9, train_out.metrics.get("train_runtime", wall) - trainer.eval_seconds)
    eval_loss = final_eval.get("eval_loss")
    metrics: dict[str, Any] = {
        "eval_loss": eval_loss,
        "perplexity": _perplexity(eval_loss),
        "masked_accuracy": final_eval.get("eval_masked_accuracy"),
        "train_loss": train_out.training_loss,
        "steps": steps,
        "tokens_seen": steps * global_batch * seq_len,
        "train_tokens_per_second": steps_this_run * global_batch * seq_len / train_time,
        "train_seconds": train_time,
        "wall_seconds": wall,
        "parameters": count_parameters(model),
        "resumed_from": resume_from,
    }
    # FSDP and DeepSpeed gather the full weights with every process taking part; only the main one writes
    gathered = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    staging = out / ".final-model"
    if gathered:
        trainer.save_model(str(staging))
    if trainer.is_world_process_zero():
        run_info = facts.run_info(steps, metrics, wall)
        with atomic_output_dir(out / "final") as tmp:
            if gathered:
                for f in staging.iterdir():
                    os.replace(f, tmp / f.name)
                staging.rmdir()
            else:
                trainer.save_model(str(tmp))
            tokenizer.save_pretrained(str(tmp))
            write_json(tmp / "run_info.json", run_info)
            _write_card(tmp, run_info)
            _write_step_metadata(tmp, cfg, tokenizer_dir)
        write_json(out / "log_history.json", trainer.state.log_history)
        _write_step_metadata(out, cfg, tokenizer_dir)
        failures = hub_callback.finish(str(out / "final")) if hub_callback is not None else []
        for f in failures:
            print(f"warning: {f}")
        metrics["hub_push_failures"] = failures
        write_json(out / "metrics.json", metrics)
    return metrics


class TimeBudget(TrainerCallback):
    """Fit the step count and the LR schedule to a wall-clock budget (`max_time_minutes`).

    Training starts with `max_steps` = MAX_STEPS (a bound never reached). After `calibrate` steps, and again
    every `refit` steps, the seconds per step so far (evaluations and saves included, the first `skip` steps
    left out) give the number of steps that fit before the deadline; `state.max_steps` is set to it and the
    scheduler's lambdas are rebuilt for that total (same schedule type and warmup ratio), continuing from the
    current step. When the next step would end after the deadline, the current step is made the last one, so
    Trainer's usual end-of-training evaluation and save run. The budget counts from the start of training.
    """

    MAX_STEPS = 10_000_000

    @classmethod
    def max_steps_arg(cls, cfg: PretrainConfig) -> int:
        """TrainingArguments.max_steps: a bound never reached under a time budget, else cfg's (-1 = epochs)."""
        if cfg.max_time_minutes:
            return cls.MAX_STEPS
        return cfg.max_steps if cfg.max_steps > 0 else -1

    CALIBRATE, REFIT, SKIP = 20, 25, 3

    def __init__(self, budget_s: float, scheduler_type: str, warmup_ratio: float) -> None:
        self.budget_s, self.scheduler_type, self.warmup_ratio = budget_s, scheduler_type, warmup_ratio
        self.calibrate, self.refit, self.skip = self.CALIBRATE, self.REFIT, self.SKIP
        self.started = self.t_skip = 0.0
        self.step_skip = 0
        self.total: int | None = None
        self.scheduler = None

    def _set_schedule(self, total: int) -> None:
        from transformers import get_scheduler

        sched = getattr(self.scheduler, "scheduler", self.scheduler)  # unwrap an accelerate wrapper
        if not isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
            return
        dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
        warmup = math.ceil(self.warmup_ratio * total)
        fresh = get_scheduler(self.scheduler_type, dummy, num_warmup_steps=warmup, num_training_steps=total)
        if isinstance(fresh, torch.optim.lr_scheduler.LambdaLR):
            sched.lr_lambdas = [fresh.lr_lambdas[0] for _ in sched.optimizer.param_groups]

    def on_train_begin(self, args, state, control, lr_scheduler=None, **kwargs):
        self.started = time.perf_counter()
        self.step_skip, self.scheduler = state.global_step, lr_scheduler
        # until the first measurement: a schedule as if the run took `calibrate` * 100 steps
        self._set_schedule(state.global_step + self.calibrate * 100)

    def on_step_end(self, args, state, control, **kwargs):
        now = time.perf_counter()
        done = state.global_step - self.step_skip
        if done == self.skip:
            self.t_skip = now
        if done <= self.skip:
            return
        per_step = (now - self.t_skip) / (done - self.skip)
        left = self.started + self.budget_s - now
        if left < per_step:  # the next step would end after the deadline: stop at the next step
            state.max_steps = min(state.max_steps, state.global_step + 1)
            if left <= 0:
                state.max_steps = state.global_step
                control.should_training_stop = True
                control.should_save = args.save_strategy == "steps"
            return
        if done >= self.calibrate and (self.total is None or done % self.refit == 0):
            self.total = max(state.global_step + 1, state.global_step + int(left / per_step))
            state.max_steps = self.total
            self._set_schedule(self.total)


class _TrainEvalCollator:
    """Masks training batches; passes the pre-masked evaluation batches through."""

    def __init__(self, masker) -> None:
        self.masker = masker

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if "labels" in items[0]:
            return stack_collate(items)
        return self.masker(items)


class _TimedTrainer(Trainer):
    """Trainer that keeps the time spent in evaluation apart, for honest training throughput.

    Data order for exact resume: map-style blocks come from `EpochSampler` (its epoch set here for every
    epoch, also in a resumed, distributed run, where accelerate's skip wrapper does not pass `set_epoch` on);
    a `PackedStream` gets a plain DataLoader: it splits itself across processes, and accelerate would
    otherwise make every process read all of it."""

    eval_seconds = 0.0
    _epoch_sampler: EpochSampler | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Both heads return the mean over their masked tokens and ignore `num_items_in_batch`. Told they take
        # it (the stock head's forward has **kwargs), the Trainer would skip its division by the accumulation
        # steps and multiply by the number of processes: logged and eval losses times GA x world size.
        self.model_accepts_loss_kwargs = False

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if isinstance(dataset, BlockDataset):
            seed = self.args.data_seed if self.args.data_seed is not None else self.args.seed
            self._epoch_sampler = EpochSampler(len(dataset), seed)
            return self._epoch_sampler
        return super()._get_train_sampler(train_dataset)

    def _run_epoch(self, *args, **kwargs):
        if self._epoch_sampler is not None and "epoch" in kwargs:
            self._epoch_sampler.set_epoch(kwargs["epoch"])
        return super()._run_epoch(*args, **kwargs)

    def get_train_dataloader(self):
        stream = self.train_dataset
        if not isinstance(stream, PackedStream):
            return super().get_train_dataloader()
        a = self.args
        stream.configure(self._train_batch_size, a.process_index, a.world_size)
        workers = a.dataloader_num_workers
        return torch.utils.data.DataLoader(
            stream,
            batch_size=self._train_batch_size,
            collate_fn=self.data_collator,
            num_workers=workers,
            pin_memory=a.dataloader_pin_memory,
            persistent_workers=bool(a.dataloader_persistent_workers and workers > 0),
            prefetch_factor=a.dataloader_prefetch_factor if workers > 0 else None,
        )

    def evaluate(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.eval_seconds += time.perf_counter() - t


def _resume_args(cfg: PretrainConfig) -> dict[str, Any]:
    """TrainingArguments for resuming: a stream starts at its saved position, so the Trainer must not also
    skip (replay) the batches already seen."""
    return {"ignore_data_skip": True} if cfg.streaming and not _REPLAY_STREAM_ON_RESUME else {}


def _stream_start(resume_from: str | None, global_batch: int) -> int:
    """Blocks of the stream consumed before `resume_from` (0 for a fresh run)."""
    if not resume_from:
        return 0
    from mlm.streaming import data_state

    data = data_state(resume_from)
    if data.get("streaming") and "blocks_consumed" in data:
        return int(data["blocks_consumed"])
    state = Path(resume_from) / "trainer_state.json"  # no position saved: every step took one global batch
    step = read_json(state).get("global_step", 0) if state.is_file() else _checkpoint_step(resume_from)
    return int(step) * global_batch


class _ExactResumeCallback(TrainerCallback):
    """Exact resume and complete checkpoints.

    - Every optimizer step seeds torch's RNG (dropout) from (seed, step, process), so a resumed run draws
      what the uninterrupted one drew, whatever ran before (masking has its own seeds: `SeededMasking`).
    - Each checkpoint gets `checkpoint_complete.json` once every process has written its files (barrier),
      holding the data position; only then are older checkpoints rotated out (`keep` = save_total_limit).
    """

    def __init__(self, seed, keep, global_batch, streaming, resume_from, data_start) -> None:
        self.seed, self.keep, self.global_batch, self.streaming = seed, keep, global_batch, streaming
        self.base_step = _checkpoint_step(resume_from) if resume_from else 0
        self.base_blocks = data_start if streaming else self.base_step * global_batch

    def on_step_begin(self, args, state, control, **kwargs):
        from mlm.streaming import step_seed

        torch.manual_seed(step_seed(self.seed, state.global_step, args.process_index))

    def on_save(self, args, state, control, **kwargs):
        from mlm.streaming import mark_complete, rotate_complete

        if args.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()  # every process has written its part (e.g. rng_state_N.pth)
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not state.is_world_process_zero or not folder.is_dir():
            return
        blocks = self.base_blocks + (state.global_step - self.base_step) * self.global_batch
        data = {"streaming": self.streaming, "blocks_consumed": blocks, "global_batch": self.global_batch}
        mark_complete(folder, state.global_step, data)
        rotate_complete(args.output_dir, self.keep)


def _perplexity(eval_loss: float | None) -> float | None:
    return math.exp(min(eval_loss, 50.0)) if eval_loss is not None else None


def _total(value: Any) -> Any:
    return sum(value.values()) if isinstance(value, dict) else value


def _checkpoint_step(path: str) -> int:
    try:
        return int(Path(path).name.rsplit("-", 1)[-1])
    except ValueError:
        return 0


class _RunFacts:
    """What a model card and report say about this run (never a token or other secret)."""

    def __init__(self, cfg, model, tokenizer_dir, pack_meta, hardware, global_batch, seq_len) -> None:
        self.cfg, self.model, self.tokenizer_dir, self.pack_meta = cfg, model, tokenizer_dir, pack_meta
        self.hardware, self.global_batch, self.seq_len = hardware, global_batch, seq_len

    def run_info(self, steps: int, metrics: dict[str, Any], wall_s: float) -> dict[str, Any]:
        from mlm.modeling import count_parameters

        cfg, mc = self.cfg, self.model.config
        tok_meta = _read_meta(Path(self.tokenizer_dir))
        pack_stats = _read_stats(Path(cfg.data_dir))
        prep_dir = self.pack_meta.get("config", {}).get("data_dir")
        prep_stats = _read_stats(Path(prep_dir)) if prep_dir else {}
        prep_meta = _read_meta(Path(prep_dir)) if prep_dir else {}
        return {
            "repo_id": cfg.hub_model_id,
            "license": cfg.license,
            "language": cfg.language,
            "corpus": {
                "spec": prep_meta.get("config", {}).get("corpus"),
                "documents": prep_stats.get("documents_out"),
                "tokens": _total(pack_stats.get("tokens")),
                "fingerprint": prep_meta.get("inputs", {}).get("fingerprint"),
            },
            "tokenizer": {"kind": tok_meta.get("config", {}).get("kind"), "vocab_size": mc.vocab_size},
            "model": {
                "preset": cfg.preset,
                "num_hidden_layers": mc.num_hidden_layers,
                "hidden_size": mc.hidden_size,
                "num_attention_heads": mc.num_attention_heads,
                "parameters": count_parameters(self.model),
                "max_seq_length": self.seq_len,
            },
            "training": {
                "steps": steps,
                "tokens_seen": steps * self.global_batch * self.seq_len,
                "batch_size": self.global_batch,
                "learning_rate": cfg.learning_rate,
                "lr_scheduler_type": cfg.lr_scheduler_type,
                "warmup": cfg.warmup_ratio,
                "masking": {
                    "strategy": "whole-word" if cfg.whole_word_mask else "token",
                    "rate": cfg.mlm_probability,
                    "mask_replace_prob": cfg.mask_replace_prob,
                    "random_replace_prob": cfg.random_replace_prob,
                    "fixed_count": cfg.fixed_count_masking,
                },
                "hardware": self.hardware,
                "wall_time_s": round(wall_s, 1),
            },
            "eval": {k: metrics.get(k) for k in ("eval_loss", "perplexity", "masked_accuracy")},
        }


class _RunInfoCallback(TrainerCallback):
    """Writes run_info.json (for the model card) into every checkpoint as it is saved."""

    def __init__(self, facts: _RunFacts) -> None:
        self.facts = facts
        self.started = time.perf_counter()

    def on_save(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if not folder.is_dir():
            return
        last_eval = next((h for h in reversed(state.log_history) if "eval_loss" in h), {})
        metrics = {
            "eval_loss": last_eval.get("eval_loss"),
            "perplexity": _perplexity(last_eval.get("eval_loss")),
            "masked_accuracy": last_eval.get("eval_masked_accuracy"),
        }
        write_json(
            folder / "run_info.json",
            self.facts.run_info(state.global_step, metrics, time.perf_counter() - self.started),
        )


def _read_meta(folder: Path) -> dict:
    f = folder / "mlm_step.json"
    return read_json(f) if f.is_file() else {}


def _read_stats(folder: Path) -> dict:
    f = folder / "stats.json"
    return read_json(f) if f.is_file() else {}


def _write_card(folder: Path, run_info: dict) -> None:
    try:
        from mlm.model_card import write_model_card
    except ImportError:  # model cards are optional until mlm.model_card exists
        return
    write_model_card(folder, run_info)


def _write_step_metadata(folder: Path, cfg: PretrainConfig, tokenizer_dir: str) -> None:
    from data_prep.steps import write_step_metadata

    write_step_metadata(
        folder,
        PRETRAIN_STEP,
        asdict(cfg),
        {"data_dir": str(Path(cfg.data_dir).resolve()), "tokenizer_dir": tokenizer_dir},
    )


def load_metrics(output_dir: str | Path) -> dict:
    return json.loads((Path(output_dir) / "metrics.json").read_text())

"""Masked-language-model pretraining with `transformers.Trainer`."""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import Trainer, TrainerCallback

from data_prep.errors import UserError
from data_prep.io import atomic_output_dir, read_json, write_json

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
    max_eval_samples: int = field(default=2000, metadata={"help": "validation blocks used for evaluation"})
    seed: int = field(default=42, metadata={"help": "random seed"})
    resume: str | None = field(
        default=None,
        metadata={"help": "resume: 'latest' (newest checkpoint in output_dir) or a checkpoint path"},
    )
    bf16: bool | None = field(default=None, metadata={"help": "bf16 autocast (default: on for CUDA GPUs)"})
    torch_compile: bool = field(default=False, metadata={"help": "compile the model with torch.compile"})
    dataloader_num_workers: int = field(default=0, metadata={"help": "dataloader worker processes"})
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
        if self.max_steps <= 0 and self.num_train_epochs <= 0:
            raise UserError("pretrain: set max_steps > 0 or num_train_epochs > 0")
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


class BlockDataset(torch.utils.data.Dataset):
    """Packed blocks held as one int tensor; indexing returns what the masking collator takes."""

    def __init__(self, ds) -> None:
        table = ds.with_format("numpy")
        self.input_ids = torch.from_numpy(np.asarray(np.stack(table["input_ids"]), dtype=np.int64))
        self.word_start = (
            torch.from_numpy(np.asarray(np.stack(table["word_start"]), dtype=np.int64))
            if "word_start" in ds.column_names
            else None
        )

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = {"input_ids": self.input_ids[i]}
        if self.word_start is not None:
            item["word_start"] = self.word_start[i]
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
    cuda = torch.cuda.is_available() and not cfg.use_cpu
    bf16 = cfg.bf16 if cfg.bf16 is not None else bool(cuda and torch.cuda.is_bf16_supported())
    return {
        "bf16": bf16,
        "dataloader_pin_memory": cuda,
        "hardware": torch.cuda.get_device_name(0)
        if cuda
        else f"CPU ({os.cpu_count()} cores, {platform.machine()})",
    }


def resolve_resume(cfg: PretrainConfig) -> str | None:
    """Turn the `resume` option into a checkpoint folder, or None."""
    if not cfg.resume or str(cfg.resume).lower() in ("false", "no", "none"):
        return None
    if str(cfg.resume).lower() in ("latest", "true", "yes", "auto"):
        from transformers.trainer_utils import get_last_checkpoint

        out = Path(cfg.output_dir)
        last = get_last_checkpoint(str(out)) if out.is_dir() else None
        if last is None:
            if str(cfg.resume).lower() == "auto":
                return None
            raise UserError(f"resume: no checkpoint found in {out}")
        return last
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

    train_set = BlockDataset(dsd["train"])
    eval_set = None
    if "validation" in dsd and len(dsd["validation"]) > 0:
        eval_set = FixedEvalSet(
            BlockDataset(dsd["validation"]), make_collator(cfg.seed + 1), cfg.max_eval_samples
        )

    dev = _device_defaults(cfg)
    eval_every = cfg.eval_steps if eval_set is not None and cfg.eval_steps > 0 else 0
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    args = TrainingArguments(
        output_dir=str(out),
        max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
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
        save_total_limit=cfg.save_total_limit,
        seed=cfg.seed,
        bf16=dev["bf16"],
        torch_compile=cfg.torch_compile,
        dataloader_num_workers=cfg.dataloader_num_workers,
        dataloader_pin_memory=dev["dataloader_pin_memory"],
        use_cpu=cfg.use_cpu,
        disable_tqdm=cfg.disable_tqdm,
        report_to=cfg.report_to,
        remove_unused_columns=False,
        prediction_loss_only=False,
        include_for_metrics=[],
        ddp_find_unused_parameters=False,
    )
    trainer = _TimedTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=_TrainEvalCollator(make_collator(None)),
        processing_class=tokenizer,
        compute_metrics=masked_accuracy,
        preprocess_logits_for_metrics=masked_argmax,
    )
    global_batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * args.world_size
    facts = _RunFacts(cfg, model, tokenizer_dir, pack_meta, dev["hardware"], global_batch, seq_len)
    trainer.add_callback(_RunInfoCallback(facts))  # before the push callback: checkpoints carry run_info.json
    hub_callback = None
    if cfg.push_to_hub:
        from mlm.hub import HubPushCallback

        hub_callback = HubPushCallback(
            cfg.hub_model_id, strategy=cfg.hub_strategy, private=cfg.hub_private_repo
        )
        trainer.add_callback(hub_callback)

    resume_from = resolve_resume(cfg)
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
    if trainer.is_world_process_zero():
        run_info = facts.run_info(steps, metrics, wall)
        with atomic_output_dir(out / "final") as tmp:
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


class _TrainEvalCollator:
    """Masks training batches; passes the pre-masked evaluation batches through."""

    def __init__(self, masker) -> None:
        self.masker = masker

    def __call__(self, items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if "labels" in items[0]:
            return stack_collate(items)
        return self.masker(items)


class _TimedTrainer(Trainer):
    """Trainer that keeps the time spent in evaluation apart, for honest training throughput."""

    eval_seconds = 0.0

    def evaluate(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            self.eval_seconds += time.perf_counter() - t


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

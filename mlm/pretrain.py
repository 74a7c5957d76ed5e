"""Pretraining with `transformers.Trainer`: load the packed data, build the objective's model and the
trainer, train, export `final/`. What depends on the pretext task lives in `mlm.objectives`."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from data_prep.errors import UserError
from data_prep.io import match_file_modes, read_json, write_json
from data_prep.outputs import as_os_error, check_output, output_folder
from data_prep.steps import config_values
from data_prep.tokenizer import loaded_tokenizer_fingerprint, portable_tokenizer_config
from mlm.batch_size import resolve_pretraining_batch
from mlm.checkpoints import (
    DATA_KEY,
    check_resume_config,
    checkpoint_step,
    find_resume,
    remove_unfinished,
    resolve_resume,
    resumed_step,
    start_over,
    stream_start,
)
from mlm.cpu.memory import ReleaseFreedMemory
from mlm.data import BlockDataset, FixedEvalSet, load_packed, packed_stats
from mlm.distributed import destroy_process_group_at_exit
from mlm.masking import MaskingConfig, check_masking
from mlm.modeling import ModelArguments, check_model_arguments
from mlm.objectives import Objective, get_objective
from mlm.options import (
    CardArguments,
    MlmTrainingArguments,
    check_training,
    cpu_thread_tuner,
    hardware,
    trainer_arguments,
)
from mlm.progress import device_peak, fmt_value, run_output, say
from mlm.progress import install as install_progress
from mlm.run_record import (
    CorpusFacts,
    ModelFacts,
    RunRecord,
    TokenizerFacts,
    TrainingFacts,
)
from mlm.streaming import PackedStream, SeededMasking
from mlm.trainer import (
    ExactResumeCallback,
    MaskRateSchedule,
    PretrainTrainer,
    RunRecordCallback,
    TimeBudget,
    TrainEvalCollator,
)

PRETRAIN_STEP = "pretrain"
FINAL_DIR = "final"


# Peak learning rates when none is given. From scratch: measured on 2 CPU cores at batch 32 (BENCHMARKS.md,
# "The MLM plateau": BERT blocks are best at 1e-3, ModernBERT's pre-LN blocks leave the plateau only
# at 3e-3). Continued pretraining: the domain-adaptive rate of the literature (DAPT's 5e-4 at batch 2048,
# scaled to batch 64), not measured here; a fully pretrained model loses what it knew at 1e-3.
LEARNING_RATES = {"bert": 1e-3, "modernbert": 3e-3}
INIT_FROM_LEARNING_RATE = 1e-4


@dataclass
class PretrainingArguments(MlmTrainingArguments):
    """`TrainingArguments` with pretraining's defaults."""

    FIXED: ClassVar[dict[str, str]] = {
        "remove_unused_columns": "pretraining feeds the packed columns to the collator itself",
        "prediction_loss_only": "the objective's metrics need the predictions",
        "ignore_data_skip": "set from `streaming` (a stream resumes at its own position)",
        "label_names": "the objective names its labels",
    }

    output_dir: str = field(
        default="", metadata={"help": "where checkpoints, final/ and metrics.json go", "required": True}
    )
    learning_rate: float | None = field(
        default=None,
        metadata={"help": "peak learning rate (default: 1e-3 from scratch with BERT blocks, 3e-3 with "
                          "ModernBERT's, 1e-4 from model_name_or_path)"},
    )  # fmt: skip
    num_train_epochs: float = 1.0
    max_steps: int = 1000
    per_device_train_batch_size: int | None = field(
        default=None,
        metadata={"help": "blocks per device and step (default: 64 on a CPU; on one GPU the largest power of two "
                          "that fits and still raises tokens/s by 10%, from 64 up to 4096, with the default "
                          "learning rate scaled by sqrt(batch/64), at most x4; a resumed run keeps its own)"},
    )  # fmt: skip
    per_device_eval_batch_size: int = 128
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-6
    warmup_steps: float = 0.06
    logging_steps: float | None = 25
    logging_first_step: bool = True
    eval_strategy: str = "steps"
    eval_steps: float | None = 250
    save_steps: float = 500
    save_total_limit: int | None = field(
        default=2,
        metadata={"help": "complete checkpoints kept (null: every one, e.g. for `mlm evaluate` curves)"},
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={
            "help": "resume: 'latest' (newest complete checkpoint in output_dir; the flag alone), a checkpoint "
            "path, or a Hub repo id pushed with hub_strategy: checkpoint",
            "const": "latest",
        },
    )
    remove_unused_columns: bool = False


@dataclass
class PretrainConfig(ModelArguments, MaskingConfig, CardArguments, PretrainingArguments):
    """Everything `mlm pretrain` needs; the YAML section `pretrain:` uses the same keys."""

    GROUP: ClassVar[str] = "pretraining"

    data_dir: str = field(
        default="", metadata={"help": "packed dataset folder written by `mlm pack`", "required": True}
    )
    tokenizer_dir: str | None = field(
        default=None, metadata={"help": "tokenizer folder (default: the one the packed data was made with)"}
    )
    objective: str = field(default="mlm", metadata={"help": "pretraining objective: mlm or electra"})
    objective_options: dict = field(
        default_factory=dict, metadata={"help": 'the objective\'s own options, e.g. {"generator_size": 0.25}'}
    )
    max_time_minutes: float | None = field(
        default=None,
        metadata={
            "help": "wall-clock training budget: the step count (and so the LR schedule) is fitted to it "
            "from the measured step time; overrides max_steps and num_train_epochs"
        },
    )
    max_eval_samples: int = field(default=2000, metadata={"help": "validation blocks used for evaluation"})
    streaming: bool = field(
        default=False,
        metadata={
            "help": "read the packed blocks as a stream (memory-mapped shards, split across processes); "
            "resume continues at the next unseen block. Needs max_steps"
        },
    )
    force: bool = field(
        default=False,
        metadata={"help": "start over: delete the checkpoints in output_dir instead of resuming from them"},
    )
    cpu_reuse_memory: bool = field(
        default=True,
        metadata={"help": "CPU: malloc keeps freed memory for reuse (no page faults every step)"},
    )

    def validate(self) -> None:
        """Every value, checked once (a UserError naming the first wrong one); changes nothing."""
        try:
            _validate(self)
        except UserError as e:
            raise UserError(f"pretrain: {str(e).removeprefix('pretrain: ')}") from None


def learning_rate_for(cfg: PretrainConfig) -> float:
    """`learning_rate`, or when none is given the default for these blocks and this start."""
    if cfg.learning_rate is not None:
        return cfg.learning_rate
    return INIT_FROM_LEARNING_RATE if cfg.model_name_or_path else LEARNING_RATES.get(cfg.architecture, 1e-3)


def _validate(cfg: PretrainConfig) -> None:
    for name in ("data_dir", "output_dir"):
        if not getattr(cfg, name):
            raise UserError(f"'{name}' is required")
    check_training(cfg)
    check_model_arguments(cfg)
    check_masking(cfg)
    get_objective(cfg.objective).parse_options(cfg.objective_options)
    if cfg.model_name_or_path and cfg.objective != "mlm":
        raise UserError(f"model_name_or_path works with objective: mlm, not {cfg.objective}")
    if cfg.max_time_minutes is not None and not cfg.max_time_minutes > 0:
        raise UserError(f"max_time_minutes must be positive, got {cfg.max_time_minutes}")
    if cfg.max_steps <= 0 and cfg.num_train_epochs <= 0 and cfg.max_time_minutes is None:
        raise UserError("set max_steps > 0 or num_train_epochs > 0")
    if cfg.streaming and cfg.max_steps <= 0 and cfg.max_time_minutes is None:
        raise UserError("streaming needs max_steps > 0 (a stream has no epochs)")
    for name in ("eval_steps", "save_steps", "save_total_limit"):
        if (getattr(cfg, name) or 0) < 0:
            raise UserError(f"{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.fixed_count_masking and cfg.architecture != "bert":
        raise UserError("fixed_count_masking works with architecture: bert only")
    if cfg.max_eval_samples < 1:
        raise UserError(f"max_eval_samples must be >= 1, got {cfg.max_eval_samples}")
    if cfg.force and str(cfg.resume_from_checkpoint or "auto").lower() not in ("auto", "false", "no", "none"):
        raise UserError(f"force starts over; it cannot be combined with resume_from_checkpoint "
                        f"({cfg.resume_from_checkpoint})")  # fmt: skip


@dataclass
class PretrainData:
    """The packed blocks, their tokenizer and what the packing step recorded."""

    splits: Any  # datasets.DatasetDict
    meta: dict
    tokenizer: Any
    tokenizer_dir: str
    seq_len: int


@dataclass
class PretrainRun:
    """A pretraining run set up and ready to train: what `build_trainer` returns."""

    cfg: PretrainConfig
    data: PretrainData
    objective: Objective
    trainer: PretrainTrainer
    resume_from: str | None
    global_batch: int
    hub_callback: Any = None
    flops_per_token: float | None = None  # model FLOPs per trained token (`mlm.flops`)
    peak: tuple[float, str] | None = None  # one device's peak FLOP/s and where it comes from


def pretrain(cfg: PretrainConfig) -> dict[str, Any]:
    """Pretrain an encoder on packed blocks; returns the final metrics (also in output_dir/metrics.json) and
    prints a summary of them, with where the model is and how to try and share it."""
    cfg.validate()
    with run_output():
        data = load_data(cfg)
        inputs = _inputs(cfg, data)
        check_output(Path(cfg.output_dir) / FINAL_DIR, PRETRAIN_STEP, inputs)
        check_resume(cfg, data)
        with output_folder(
            cfg.output_dir,
            PRETRAIN_STEP,
            inputs,
            in_place=True,
            own=_only_checkpoints,
            config=config_values(cfg),
        ):
            run = build_run(cfg, data)
            started = time.perf_counter()
            train_out = train(run)
            metrics = save_outputs(run, train_out, time.perf_counter() - started)
    if run.trainer.is_world_process_zero():
        print_summary(run, metrics)
    return metrics


def build_pretraining(cfg: PretrainConfig) -> PretrainRun:
    """Build, don't train: the checked config's data, model and trainer, ready for `train(run)` or for
    timing `run.trainer` (benchmarks, tests). It claims no output folder."""
    cfg.validate()
    return build_run(cfg, load_data(cfg))


def build_run(cfg: PretrainConfig, data: PretrainData) -> PretrainRun:
    """The objective, its model and the trainer for a checked config and its loaded data."""
    objective = get_objective(cfg.objective)(cfg, data.tokenizer)
    model = build_model(cfg, objective, data)
    cfg = resolve_pretraining_batch(cfg, objective, model, data, learning_rate_for(cfg))  # batch and rate set
    return build_trainer(cfg, objective, model, data)


def _inputs(cfg: PretrainConfig, data: PretrainData) -> dict[str, str]:
    return {"data_dir": cfg.data_dir, "tokenizer_dir": data.tokenizer_dir}


def check_resume(cfg: PretrainConfig, data: PretrainData) -> None:
    """The checkpoint this run would resume from was trained with the same settings: checked before the run
    claims its folder, so a refusal changes nothing (a Hub checkpoint is checked once downloaded)."""
    checkpoint = None if cfg.force else find_resume(cfg.resume_from_checkpoint, cfg.output_dir)
    if checkpoint is not None:
        check_resume_config(checkpoint, step_record(cfg, data.tokenizer_dir), cfg.output_dir)


def _only_checkpoints(folder: Path) -> bool:
    """A run folder of a version that wrote no record until the end, killed before it: checkpoints only."""
    visible = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return bool(visible) and all(checkpoint_step(p) is not None and p.is_dir() for p in visible)


def train(run: PretrainRun) -> Any:
    """`trainer.train`, resuming where the run says. On failure the checkpoints this run left unfinished are
    removed (the last complete one stays), and a disk-full or read-only error that torch or safetensors
    reported as another exception is raised as the OSError it is."""
    try:
        return run.trainer.train(resume_from_checkpoint=run.resume_from)
    except BaseException as e:
        if run.trainer.is_world_process_zero():
            remove_unfinished(run.cfg.output_dir, after=resumed_step(run.resume_from))
        err = as_os_error(e, run.cfg.output_dir)
        if err is None or err is e:
            raise
        raise err from e


def load_data(cfg: PretrainConfig) -> PretrainData:
    """The packed folder and its tokenizer, checked against each other."""
    from transformers import AutoTokenizer

    from data_prep.tokenizer import tokenizer_fingerprint

    splits, meta = load_packed(cfg.data_dir)
    tokenizer_dir = cfg.tokenizer_dir or meta.get("config", {}).get("tokenizer_dir")
    if not tokenizer_dir:
        raise UserError(f"pretrain: {cfg.data_dir} does not record its tokenizer; set tokenizer_dir")
    tokenizer_dir = str(tokenizer_dir)
    folder = Path(tokenizer_dir)
    if not folder.is_dir():
        raise UserError(f"tokenizer folder not found: {tokenizer_dir}")
    if not any((folder / name).is_file() for name in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"tokenizer folder {tokenizer_dir} holds no tokenizer (no tokenizer.json)")
    fingerprint = tokenizer_fingerprint(folder)  # a tokenizer.json that is not JSON is named here
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    except Exception as e:  # a broken folder: transformers and tokenizers raise many types
        raise UserError(
            f"tokenizer {tokenizer_dir} could not be loaded: {str(e).strip().splitlines()[0]}"
        ) from None
    check_tokenizer_matches_data(cfg, meta, tokenizer_dir, len(tokenizer), fingerprint)
    seq_len = len(splits["train"][0]["input_ids"])
    return PretrainData(splits, meta, tokenizer, str(tokenizer_dir), seq_len)


def check_tokenizer_matches_data(
    cfg: PretrainConfig, meta: dict, tokenizer_dir: str, size: int, found: str | None
) -> None:
    """The tokenizer (`size` tokens, fingerprint `found`) is the one the packed data was made with: the same
    size, and the same vocabulary, normaliser and pre-tokenizer (the fingerprint `pack` recorded, if any)."""
    packed_vocab = packed_stats(cfg.data_dir).get("vocab_size")
    if packed_vocab is not None and packed_vocab != size:
        raise UserError(
            f"tokenizer {tokenizer_dir} has {size} tokens but the packed data {cfg.data_dir} was made "
            f"with a tokenizer of {packed_vocab} tokens; pass the tokenizer it was packed with"
        )
    recorded = meta.get("inputs", {}).get("tokenizer_fingerprint")
    if recorded and found and recorded != found:
        packed_with = meta.get("config", {}).get("tokenizer_dir") or "another tokenizer"
        raise UserError(
            f"tokenizer {tokenizer_dir} is not the one the packed data {cfg.data_dir} was made with "
            f"({packed_with}): their vocabularies or normalisers differ; pass that tokenizer, or pack again"
        )


def build_model(cfg: PretrainConfig, objective: Objective, data: PretrainData) -> torch.nn.Module:
    """The objective's freshly initialised model at the configured size (seeded), or the
    `model_name_or_path` checkpoint, checked against the packed data's tokenizer."""
    import transformers

    from mlm.modeling import build_config, check_tokenizer_matches

    transformers.set_seed(cfg.seed)
    tok = data.tokenizer
    if cfg.model_name_or_path:
        _check_same_tokenizer(cfg.model_name_or_path, data)
        model = objective.from_pretrained(cfg.model_name_or_path)
    else:
        model_config = build_config(
            cfg.preset,
            vocab_size=len(tok),
            max_seq_length=data.seq_len,
            pad_token_id=tok.pad_token_id,
            overrides=cfg.config_overrides,
            attn_implementation=cfg.attn_implementation,
            pad_vocab_to_multiple_of=cfg.pad_vocab_to_multiple_of,
            architecture=cfg.architecture,
            cls_token_id=tok.cls_token_id,
            sep_token_id=tok.sep_token_id,
        )
        model = objective.build_model(model_config)
    where = cfg.model_name_or_path or f"model preset {cfg.preset}"
    check_tokenizer_matches(model.config, tok, where=f"{data.tokenizer_dir} vs {where}")
    if data.seq_len > model.config.max_position_embeddings:
        raise UserError(f"max_seq_length {data.seq_len} of {cfg.data_dir} is larger than the model allows "
                        f"({model.config.max_position_embeddings} positions of {where})")  # fmt: skip
    return model


def _check_same_tokenizer(checkpoint: str, data: PretrainData) -> None:
    """The packed data must be tokenized with the starting checkpoint's own tokenizer."""
    from transformers import AutoTokenizer

    try:
        own = AutoTokenizer.from_pretrained(checkpoint)
    except (OSError, ValueError) as e:
        raise UserError(
            f"model_name_or_path: no tokenizer in {checkpoint}: {str(e).splitlines()[0]}"
        ) from None
    theirs = loaded_tokenizer_fingerprint(own)
    same = theirs == loaded_tokenizer_fingerprint(data.tokenizer) if theirs else None
    if not (same if same is not None else own.get_vocab() == data.tokenizer.get_vocab()):
        raise UserError(
            f"model_name_or_path: the packed data was made with the tokenizer {data.tokenizer_dir}, not with the "
            f"tokenizer of {checkpoint}; pack the corpus with `--tokenizer_dir {checkpoint}`"
        )


def eval_set(cfg: PretrainConfig, objective: Objective, data: PretrainData) -> FixedEvalSet | None:
    """Validation blocks prepared once by the objective's collator under a fixed seed (None if no split)."""
    if "validation" not in data.splits or len(data.splits["validation"]) == 0:
        return None
    n = min(len(data.splits["validation"]), cfg.max_eval_samples)
    blocks = BlockDataset(data.splits["validation"].select(range(n)))
    return FixedEvalSet(blocks, objective.collator(cfg.seed + 1), n)


def build_trainer(cfg: PretrainConfig, objective: Objective, model, data: PretrainData) -> PretrainRun:
    """The trainer with its datasets, callbacks and resume point (a streaming run starts at its position)."""
    evaluation = eval_set(cfg, objective, data)
    args = _trainer_arguments(cfg, evaluate=evaluation is not None)
    global_batch = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * args.world_size
    with args.main_process_first(local=False, desc="resolve resume"):
        if cfg.force and args.process_index == 0:
            start_over(cfg.output_dir)
        resume = None if cfg.force else cfg.resume_from_checkpoint
        resume_from = resolve_resume(resume, cfg.output_dir, is_main=args.process_index == 0)
        if args.process_index == 0:
            shutil.rmtree(Path(cfg.output_dir) / ".final-model", ignore_errors=True)  # a kill while saving
    if resume_from:
        check_resume_config(resume_from, step_record(cfg, data.tokenizer_dir), cfg.output_dir)
    data_start = stream_start(resume_from, global_batch) if cfg.streaming else 0
    if cfg.streaming:
        train_set = PackedStream(cfg.data_dir, "train", start=data_start, seed=cfg.seed)
    else:
        train_set = BlockDataset(data.splits["train"])
    destroy_process_group_at_exit()  # TrainingArguments may have started one (torchrun)
    if cfg.cpu_reuse_memory and not (torch.cuda.is_available() and not cfg.use_cpu):
        from mlm.cpu.memory import reuse_freed_memory

        reuse_freed_memory(True)  # process-wide: the step's large tensors are reused, not re-faulted
    train_collator = objective.collator(None)
    trainer = PretrainTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=evaluation,
        data_collator=TrainEvalCollator(SeededMasking(train_collator, cfg.seed)),
        processing_class=data.tokenizer,
        compute_metrics=objective.compute_metrics,
        preprocess_logits_for_metrics=objective.preprocess_logits_for_metrics,
    )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and not trainer.is_fsdp_enabled:
        print("warning: the accelerate config asks for FSDP, which accelerate enables on GPUs only: this run "
              "trains with plain data parallelism (DDP)", file=sys.stderr)  # fmt: skip
    run = PretrainRun(cfg, data, objective, trainer, resume_from, global_batch)
    _add_callbacks(run, keep=cfg.save_total_limit, data_start=data_start)
    if cfg.mlm_probability_final is not None:
        if not hasattr(train_collator, "rate") or args.dataloader_num_workers > 0:
            raise UserError("pretrain: mlm_probability_final needs a masking objective and batches made in "
                            "the training process (dataloader_num_workers: 0)")  # fmt: skip
        trainer.add_callback(MaskRateSchedule(train_collator, cfg.mlm_probability, cfg.mlm_probability_final))
    return run


def _trainer_arguments(cfg: PretrainConfig, evaluate: bool) -> Any:
    """The Trainer's arguments: the config's, plus what pretraining works out (the learning rate for the
    blocks, the step count of a time budget, no evaluation without validation blocks). Checkpoints are
    rotated by `ExactResumeCallback`, which counts complete ones only."""
    return trainer_arguments(
        cfg,
        learning_rate=learning_rate_for(cfg),
        max_steps=TimeBudget.MAX_STEPS if cfg.max_time_minutes else cfg.max_steps,
        eval_strategy=cfg.eval_strategy if evaluate and cfg.eval_steps != 0 else "no",
        save_strategy=cfg.save_strategy if cfg.save_steps != 0 else "no",
        save_steps=cfg.save_steps or 500,
        save_total_limit=None,
        include_for_metrics=[],
        ddp_find_unused_parameters=bool(cfg.ddp_find_unused_parameters),
        # a stream starts at its saved position: the Trainer must not also skip (replay) the batches seen
        ignore_data_skip=cfg.streaming,
    )


def _add_callbacks(run: PretrainRun, keep: int | None, data_start: int) -> None:
    cfg, trainer = run.cfg, run.trainer
    # before the push callback: checkpoints carry run_info.json
    trainer.add_callback(
        RunRecordCallback(
            lambda step, ev, wall: run_record(run, step, ev, wall),
            write_config=lambda folder: _write_step_metadata(folder, cfg, run.data.tokenizer_dir),
        )
    )
    trainer.add_callback(ReleaseFreedMemory())
    tuner = cpu_thread_tuner(cfg, trainer.args.world_size)
    if tuner:
        trainer.add_callback(tuner)
    budget_s = cfg.max_time_minutes * 60 if cfg.max_time_minutes else None
    if budget_s:
        trainer.add_callback(TimeBudget(budget_s, cfg.lr_scheduler_type, cfg.warmup_steps))
    run.flops_per_token = pretraining_flops_per_token(cfg, trainer.model, run.data.seq_len)
    run.peak = device_peak(trainer.args.device)  # once, before training, with the run's thread count
    install_progress(
        trainer,
        budget_s,
        tokens_per_step=run.global_batch * run.data.seq_len,
        label="pretrain",
        flops_per_token=run.flops_per_token,
        peak_flops=run.peak[0] * trainer.args.world_size,
    )
    if cfg.push_to_hub:
        from mlm.hub import HubPushCallback

        run.hub_callback = HubPushCallback(
            cfg.hub_model_id, strategy=cfg.hub_strategy, private=cfg.hub_private_repo
        )
        trainer.add_callback(run.hub_callback)
    # last: marks each checkpoint complete (with the data position) once all else is written, then rotates
    trainer.add_callback(
        ExactResumeCallback(cfg.seed, keep, run.global_batch, cfg.streaming, run.resume_from, data_start)
    )


def pretraining_flops_per_token(cfg: PretrainConfig, model: torch.nn.Module, seq_len: int) -> float:
    """Model FLOPs per trained token (`mlm.flops.model_flops_per_token`): the MLM head scores the masked
    share of the positions (`mlm_probability`, the mean rate when it moves to `mlm_probability_final`) with
    the masked-only head or ModernBERT's sparse prediction, every position with the full head; ELECTRA's
    generator (`model.generator`) scores the masked positions only, its discriminator every one."""
    from mlm.flops import model_flops_per_token

    rate = cfg.mlm_probability
    if cfg.mlm_probability_final is not None:
        rate = (cfg.mlm_probability + cfg.mlm_probability_final) / 2
    generator = getattr(model, "generator", None)
    if generator is not None:
        return model_flops_per_token(model.config, seq_len, rate, generator_config=generator.config)
    return model_flops_per_token(model.config, seq_len, rate if cfg.masked_only_head else 1.0)


def utilisation(run: PretrainRun, tokens_per_second: float) -> dict[str, Any]:
    """The run's model FLOP utilisation at `tokens_per_second` (all processes together), against the peak
    measured before training (none measured: {})."""
    from mlm.flops import utilisation as mfu

    if run.peak is None or run.flops_per_token is None:
        return {}
    return mfu(run.flops_per_token, tokens_per_second, run.peak, devices=run.trainer.args.world_size)


# what the trackers (`report_to`) get at the end of a run, through the Trainer's log
TRACKED = ("train_tokens_per_second", "model_flops_per_token", "model_flops_per_second", "share_of_peak")


def save_outputs(run: PretrainRun, train_out: Any, wall: float) -> dict[str, Any]:
    """Final evaluation, `final/` (the objective's export, run record, card), metrics.json, Hub push. The
    throughput and MFU go to the Trainer's log (its trackers, log_history.json) too."""
    cfg, trainer = run.cfg, run.trainer
    final_eval = trainer.evaluate() if trainer.eval_dataset is not None else {}
    metrics = _final_metrics(run, train_out, final_eval, wall)
    trainer.log({k: metrics[k] for k in TRACKED if metrics.get(k) is not None})
    out = Path(cfg.output_dir)
    # FSDP and DeepSpeed gather the full weights with every process taking part; only the main one writes
    gathered = trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled
    staging = out / ".final-model"
    if gathered:
        trainer.save_model(str(staging))
    if trainer.is_world_process_zero():
        _write_final(run, final_eval, wall, metrics, staging if gathered else None)
    # no process exits (tearing its process group down, which can abort it) while the main one writes
    trainer.accelerator.wait_for_everyone()
    return metrics


def _write_final(
    run: PretrainRun, final_eval: dict, wall: float, metrics: dict, staging: Path | None
) -> None:
    """The main process: `final/`, the loss history and plot, the Hub push, metrics.json."""
    cfg, trainer = run.cfg, run.trainer
    out = Path(cfg.output_dir)
    record = run_record(run, trainer.state.global_step, final_eval, wall, speed=metrics)
    with output_folder(out / FINAL_DIR, PRETRAIN_STEP, _inputs(cfg, run.data), main=True) as tmp:
        if staging is not None:
            for f in staging.iterdir():
                os.replace(f, tmp / f.name)
            staging.rmdir()
            run.data.tokenizer.save_pretrained(str(tmp))
        else:
            run.objective.export(trainer, tmp)
        record.save(tmp)
        for folder in [tmp, *(d for d in tmp.iterdir() if (d / "tokenizer_config.json").is_file())]:
            portable_tokenizer_config(folder, model_max_length=run.data.seq_len)  # and generator/
        match_file_modes(tmp)  # the weights as readable as the other files
        _write_card(tmp, record)
        _write_step_metadata(tmp, cfg, run.data.tokenizer_dir)
    write_json(out / "log_history.json", trainer.state.log_history)
    _plot_losses(out, trainer.state.log_history)
    _write_step_metadata(out, cfg, run.data.tokenizer_dir)
    failures = run.hub_callback.finish(str(out / FINAL_DIR)) if run.hub_callback is not None else []
    for f in failures:
        print(f"warning: {f}")
    metrics["hub_push_failures"] = failures
    write_json(out / "metrics.json", metrics)


def _final_metrics(run: PretrainRun, train_out: Any, final_eval: dict, wall: float) -> dict[str, Any]:
    trainer, tokens_per_step = run.trainer, run.global_batch * run.data.seq_len
    from mlm.modeling import count_parameters

    steps = trainer.state.global_step
    train_time = max(1e-9, train_out.metrics.get("train_runtime", wall) - trainer.eval_seconds)
    tokens_per_second = (steps - resumed_step(run.resume_from)) * tokens_per_step / train_time
    return {
        **run.objective.summary(final_eval),
        "train_loss": train_out.training_loss,
        "steps": steps,
        "tokens_seen": steps * tokens_per_step,
        "train_tokens_per_second": tokens_per_second,
        "train_seconds": train_time,
        "wall_seconds": wall,
        "parameters": count_parameters(trainer.model),
        "resumed_from": run.resume_from,
        **utilisation(run, tokens_per_second),
    }


def print_summary(run: PretrainRun, metrics: dict[str, Any]) -> None:
    """What the run made, on stdout: the final validation metrics (the objective's `summary`), tokens seen,
    tokens/s and MFU, the model's folder, and the commands to try it and to share it."""
    from mlm.model_card.text import fmt_duration, fmt_utilisation

    final = Path(run.cfg.output_dir) / FINAL_DIR
    speed = f"{metrics['train_tokens_per_second']:,.0f} tokens/s"
    mfu = fmt_utilisation(metrics.get("share_of_peak"), metrics.get("peak_flops"), metrics.get("peak_source"),
                          metrics.get("devices"))  # fmt: skip
    lines = [
        f"pretrain: {metrics['steps']:,} steps, {metrics['tokens_seen']:,} tokens seen in "
        f"{fmt_duration(metrics['wall_seconds'])}: {speed}" + (f", MFU {mfu}" if mfu else "")
    ]
    scores = {k: metrics[k] for k in run.objective.summary({}) if metrics.get(k) is not None}
    if scores:
        values = ", ".join(
            f"{k.removeprefix('eval_').replace('_', ' ')} {fmt_value(v)}" for k, v in scores.items()
        )
        lines.append(f"  validation: {values}")
    lines.append(f"  model: {final}")
    fill = _fill_mask_folder(run, final)
    if fill is not None:
        lines.append(
            f"  try it: mlm fill-mask {shlex.quote(str(fill))} {shlex.quote(_fill_mask_example(run))}"
        )
    lines.append(f"  share it: mlm push {shlex.quote(str(final))} your-name/REPO")
    for line in lines:
        say(line)


def _fill_mask_folder(run: PretrainRun, final: Path) -> Path | None:
    """The folder `mlm fill-mask` takes: `final/` when it is a masked LM, else its `generator/` (ELECTRA)."""
    if run.objective.card_facts().pipeline_tag == "fill-mask":
        return final
    from mlm.objectives.electra import GENERATOR_DIR

    return final / GENERATOR_DIR if (final / GENERATOR_DIR).is_dir() else None


def _fill_mask_example(run: PretrainRun, words: int = 10) -> str:
    """A text to try `fill-mask` on: up to `words` words of the first validation (else training) block, the
    middle one replaced by the mask token; `... [MASK] ...` when the block has no 3 words in a row."""
    tok = run.data.tokenizer
    mask = tok.mask_token or "[MASK]"
    split = "validation" if len(run.data.splits.get("validation", [])) else "train"
    try:
        row = run.data.splits[split][0]
        ids, starts = list(row["input_ids"]), list(row.get("word_start") or [])
    except (KeyError, IndexError, TypeError):
        return f"... {mask} ..."
    stretch = max(_word_stretches(ids, starts, set(tok.all_special_ids)), key=len, default=[])[:words]
    if len(stretch) < 3:
        return f"... {mask} ..."
    middle = len(stretch) // 2
    before = tok.decode([ids[i] for word in stretch[:middle] for i in word]).strip()
    after = tok.decode([ids[i] for word in stretch[middle + 1 :] for i in word]).strip()
    return " ".join(part for part in (before, mask, after) if part)


def _word_stretches(ids: list[int], starts: list[int], special: set[int]) -> list[list[list[int]]]:
    """The runs of words between special tokens, each word the positions of its tokens (a word starts where
    `word_start` says, or every token when the block has no word starts)."""
    stretches: list[list[list[int]]] = []
    words: list[list[int]] = []
    for i, token in enumerate(ids):
        if token in special:
            if words:
                stretches.append(words)
            words = []
        elif not words or i >= len(starts) or starts[i]:
            words.append([i])
        else:
            words[-1].append(i)
    if words:
        stretches.append(words)
    return stretches


def run_record(
    run: PretrainRun, steps: int, eval_metrics: dict, wall_s: float, speed: dict | None = None
) -> RunRecord:
    """What the model card and reports say about this run at `steps` (never a secret or a local path).
    `speed`: the run's `train_tokens_per_second` and MFU (`utilisation`); without it (a checkpoint), the
    rate of the steps since this session started over `wall_s` less the time spent evaluating."""
    from mlm.modeling import count_parameters

    cfg, mc, seq_len = run.cfg, run.trainer.model.config, run.data.seq_len
    if speed is None:
        trained = (steps - resumed_step(run.resume_from)) * run.global_batch * seq_len
        seconds = wall_s - run.trainer.eval_seconds
        rate = trained / seconds if trained > 0 and seconds > 0 else None
        speed = {"train_tokens_per_second": rate, **(utilisation(run, rate) if rate else {})}
    return RunRecord(
        kind="pretrain",
        repo_id=cfg.hub_model_id,
        license=cfg.license,
        language=cfg.language,
        datasets=cfg.datasets,
        corpus=_corpus_facts(cfg, run.data.meta),
        tokenizer=TokenizerFacts(
            kind=_step_meta(Path(run.data.tokenizer_dir)).get("config", {}).get("kind"),
            vocab_size=mc.vocab_size,
            mask_token=run.data.tokenizer.mask_token,
        ),
        model=ModelFacts(
            architecture=mc.model_type,
            init_from=_public_name(cfg.model_name_or_path),
            preset=None if cfg.model_name_or_path else cfg.preset,
            num_hidden_layers=mc.num_hidden_layers,
            hidden_size=mc.hidden_size,
            num_attention_heads=mc.num_attention_heads,
            parameters=count_parameters(run.trainer.model),
            max_seq_length=seq_len,
        ),
        objective=run.objective.card_facts(),
        training=TrainingFacts(
            steps=steps,
            tokens_seen=steps * run.global_batch * seq_len,
            batch_size=run.global_batch,
            learning_rate=learning_rate_for(cfg),
            lr_scheduler_type=str(cfg.lr_scheduler_type),
            warmup=cfg.warmup_steps,
            hardware=hardware(cfg),
            wall_time_s=round(wall_s, 1),
            tokens_per_second=speed.get("train_tokens_per_second"),
            **{k: speed.get(k) for k in SPEED_FACTS},
        ),
        eval={k: v for k, v in run.objective.summary(eval_metrics).items() if v is not None},
    )


# the facts of `mlm.flops.utilisation` the run record keeps
SPEED_FACTS = ("model_flops_per_token", "model_flops_per_second", "share_of_peak", "peak_flops", "peak_source",
               "devices")  # fmt: skip


def _corpus_facts(cfg: PretrainConfig, pack_meta: dict) -> CorpusFacts:
    """The corpus as the card states it: Hub and built-in names as given, files by their name only."""
    prep_dir = pack_meta.get("config", {}).get("data_dir")
    prep_meta = _step_meta(Path(prep_dir)) if prep_dir else {}
    spec = prep_meta.get("config", {}).get("corpus")
    specs = [spec] if isinstance(spec, str) else list(spec or [])
    public = [s if s.startswith(("hf:", "builtin:")) else Path(s).name for s in map(str, specs)]
    tokens = packed_stats(cfg.data_dir).get("tokens")
    return CorpusFacts(
        spec=public or None,
        documents=packed_stats(prep_dir).get("documents_out") if prep_dir else None,
        tokens=sum(tokens.values()) if isinstance(tokens, dict) else tokens,
        fingerprint=prep_meta.get("inputs", {}).get("fingerprint"),
    )


def _public_name(ref: str | None) -> str | None:
    """A Hub id as given, a local folder by its name only (no local paths in records)."""
    if not ref:
        return None
    return ref if not Path(ref).exists() else Path(ref).resolve().name


def _step_meta(folder: Path) -> dict:
    f = folder / "mlm_step.json"
    return read_json(f) if f.is_file() else {}


def _plot_losses(out: Path, log_history: list[dict]) -> None:
    """loss_curves.png: training and evaluation loss against step."""
    from mlm.report import plot_loss_curves

    plot_loss_curves(log_history, out / "loss_curves.png", title=f"{out.resolve().name}: pretraining")


def _write_card(folder: Path, record: RunRecord) -> None:
    from mlm.model_card import write_model_card

    write_model_card(folder, record, name=FINAL_DIR)


def step_record(cfg: PretrainConfig, tokenizer_dir: str) -> dict[str, Any]:
    """The config and inputs `mlm_step.json` records (in final/, the output folder and each checkpoint)."""
    from data_prep.steps import folder_fingerprint

    data = folder_fingerprint(cfg.data_dir)
    inputs = {"data_dir": data["path"], "tokenizer_dir": tokenizer_dir, DATA_KEY: data.get("mlm_step_sha256")}
    return {"config": config_values(cfg), "inputs": inputs}


def _write_step_metadata(folder: Path, cfg: PretrainConfig, tokenizer_dir: str) -> None:
    from data_prep.steps import write_step_metadata

    record = step_record(cfg, tokenizer_dir)
    write_step_metadata(folder, PRETRAIN_STEP, record["config"], record["inputs"])


def load_metrics(output_dir: str | Path) -> dict:
    return json.loads((Path(output_dir) / "metrics.json").read_text())

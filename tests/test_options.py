"""Every `TrainingArguments` field by its own name, from YAML, the command line and Python; our defaults
in plain subclasses; checks once, without side effects; options the package sets itself refused."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import yaml
from tiny_run import tiny_pretrain_config
from transformers import TrainingArguments

from data_prep.errors import UserError
from mlm.cli import build_parser, main
from mlm.config import config_from_args, config_from_dict
from mlm.finetune import FinetuneConfig
from mlm.options import trainer_arguments
from mlm.pretrain import PretrainConfig, build_pretraining, learning_rate_for

REPO = Path(__file__).resolve().parents[1]
# TrainingArguments fields that no file of ours names: they must work through the subclass alone
UNNAMED = {"gradient_checkpointing": True, "label_smoothing_factor": 0.1, "eval_delay": 2.0}
# ... and with two that we name (our defaults, or the resume check's list), the ones the issue tried
OPTIONS = {**UNNAMED, "eval_strategy": "no", "run_name": "my-run"}
REQUIRED = {
    PretrainConfig: {"data_dir": "d", "output_dir": "o"},
    FinetuneConfig: {"model_name_or_path": "m", "output_dir": "o", "train_file": "t.csv"},
}
COMMAND = {PretrainConfig: "pretrain", FinetuneConfig: "finetune"}


def test_the_unnamed_options_are_named_in_no_module_of_ours():
    sources = [p.read_text() for folder in ("mlm", "data_prep") for p in (REPO / folder).rglob("*.py")]
    for name in UNNAMED:
        assert not any(name in text for text in sources), f"{name} is special-cased somewhere"


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig])
def test_every_training_argument_is_an_option(cls):
    ours = {f.name for f in dataclasses.fields(cls)}
    theirs = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    assert theirs <= ours
    parser = build_parser(COMMAND[cls])
    sub = parser._subparsers._group_actions[0].choices[COMMAND[cls]]
    flags = {o for a in sub._actions for o in a.option_strings}
    assert {f"--{name}" for name in theirs} <= flags


def _cli(cls, values: dict) -> object:
    argv = [COMMAND[cls]]
    for key, value in {**REQUIRED[cls], **values}.items():
        argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    args = build_parser(COMMAND[cls]).parse_args(argv)
    return config_from_args(cls, args)


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig])
def test_unnamed_options_work_from_yaml_cli_and_python(cls):
    from_python = cls(**REQUIRED[cls], **OPTIONS)
    from_yaml = config_from_dict(cls, yaml.safe_load(yaml.safe_dump({**REQUIRED[cls], **OPTIONS})), "t")
    from_cli = _cli(cls, OPTIONS)
    for cfg in (from_python, from_yaml, from_cli):
        assert {k: getattr(cfg, k) for k in OPTIONS} == OPTIONS
        args = trainer_arguments(cfg, learning_rate=1e-3)
        assert args.gradient_checkpointing and args.activation_checkpointing
        assert args.label_smoothing_factor == 0.1 and args.eval_delay == 2.0
        assert args.eval_strategy == "no" and args.run_name == "my-run"


def test_gradient_checkpointing_reaches_the_model(packed_dir, tmp_path):
    run = build_pretraining(tiny_pretrain_config(packed_dir, tmp_path / "r", gradient_checkpointing=True,
                                                 max_steps=1, save_steps=0, eval_steps=0))  # fmt: skip
    run.trainer.train()
    assert run.trainer.model.is_gradient_checkpointing


def test_misspelt_options_name_the_closest(capsys):
    code = main(["pretrain", "--data_dir", "d", "--output_dir", "o", "--gradient_checkpoint"])
    err = capsys.readouterr().err
    assert code == 2 and "did you mean --gradient_checkpointing" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(UserError, match=r"'warmup_ratio' \(did you mean warmup_steps\?\)"):
        config_from_dict(PretrainConfig, {**REQUIRED[PretrainConfig], "warmup_ratio": 0.1}, "pretrain")


def test_our_defaults_come_from_the_subclass_and_the_config_stays_as_written():
    cfg = PretrainConfig(**REQUIRED[PretrainConfig], architecture="modernbert")
    before = copy.deepcopy(cfg)
    cfg.validate()
    assert cfg == before, "validation changed the config"
    assert cfg.learning_rate is None and learning_rate_for(cfg) == 3e-3
    assert trainer_arguments(cfg, learning_rate=learning_rate_for(cfg)).learning_rate == 3e-3
    assert cfg.warmup_steps == 0.06 and FinetuneConfig(**REQUIRED[FinetuneConfig]).learning_rate == 1e-4


@pytest.mark.parametrize(
    "cls, change, reason",
    [
        (PretrainConfig, {"remove_unused_columns": True}, "pretraining feeds the packed columns"),
        (PretrainConfig, {"fp16": True}, "fp16 needs a CUDA GPU"),
        (FinetuneConfig, {"save_strategy": "epoch"}, "saved once, at the end"),
    ],
)
def test_options_the_package_sets_are_refused_with_the_reason(cls, change, reason):
    cfg = cls(**REQUIRED[cls], use_cpu=True, **change)
    with pytest.raises(UserError, match=reason):
        cfg.validate()


def test_a_misspelt_option_from_the_command_line_exits_2(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mlm", "finetune", "--learning_rat", "1e-3"],
                          capture_output=True, text=True, cwd=REPO)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == (
        "error: mlm finetune: unknown option(s) --learning_rat (did you mean --learning_rate?); "
        "`mlm finetune --help` lists every option"
    )

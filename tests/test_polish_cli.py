"""The command line: --version, an example and the required options in each --help, each flag once; progress
bars with a rate and an ETA on the data steps and on pretraining under a time budget, --quiet, and no library
noise unless --verbose."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_run import TINY, tiny_pretrain_config

from data_prep.progress import settings
from mlm.cli import COMMANDS, build_parser, main, version
from mlm.pretrain import pretrain

REPO = Path(__file__).resolve().parents[1]
BAR = re.compile(
    r"(\d+)%\|[^|\r\n]*\| [^\r\n]*\[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?(?:\w*/s|s/\w+)(, [^\]\r\n]*)?\]"
)  # count, elapsed<ETA, rate (2.5it/s, or 1.6s/it when slow), then what the bar shows besides (the loss)


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        build_parser(command).parse_args([command, "--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"mlm {version()}\n"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", version())


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_has_an_example_the_required_options_and_each_flag_once(command: str, capsys) -> None:
    text = help_text(command, capsys)
    assert re.search(rf"example:\n  mlm {command} \S", text), text[-400:]
    listed = re.findall(r"^  (-\w, )?(--[\w-]+)", text, flags=re.M)
    flags = [flag for _, flag in listed]
    assert len(flags) == len(set(flags)) and "--quiet" in flags, flags
    assert not [f for f in flags if "-" in f[2:]], "--max-seq-length spellings are accepted, not listed"
    required = {"prepare": ["--corpus", "--output_dir"], "pack": ["--data_dir", "--tokenizer_dir", "--output_dir"],
                "pretrain": ["--data_dir", "--output_dir"], "finetune": ["--model_name_or_path", "--train_file", "--output_dir"],
                "train-tokenizer": ["--output_dir"], "evaluate": ["--suite"]}.get(command)  # fmt: skip
    if required:
        section = text.split("required:\n")[1].split("\n\n")[0]
        assert re.findall(r"^  (--\w+)", section, flags=re.M) == required, section


def test_data_steps_show_bars_with_rate_and_eta_and_quiet_hides_them(
    tmp_path: Path, tiny_corpus_dir: Path, capsys
) -> None:
    corpus = tiny_corpus_dir / "corpus.jsonl"
    steps = [
        ["prepare", "--corpus", corpus, "--output_dir", tmp_path / "data", "--validation_size", "30"],
        ["train-tokenizer", "--data_dir", tmp_path / "data", "--output_dir", tmp_path / "tok", "--vocab_size", "256"],
        ["pack", "--data_dir", tmp_path / "data", "--tokenizer_dir", tmp_path / "tok", "--output_dir",
         tmp_path / "packed", "--max_seq_length", "32"],
    ]  # fmt: skip
    for args in steps:
        assert main([str(a) for a in args]) == 0
        err = capsys.readouterr().err
        bars = [m for m in BAR.finditer(err) if err[: m.start()].rsplit("\r", 1)[-1].startswith(args[0])]
        assert bars and bars[-1].group(1) == "100", (args[0], err[-500:])
    for args in steps:
        assert main([str(a).replace(str(tmp_path), str(tmp_path / "q")) for a in [*args, "--quiet"]]) == 0
        err = capsys.readouterr().err
        assert not BAR.search(err) and "%|" not in err, err[-500:]


def test_time_budget_bar_counts_seconds_of_the_budget_and_tokens_per_second(packed_dir: Path, tmp_path: Path,
                                                                           capsys) -> None:  # fmt: skip
    cfg = tiny_pretrain_config(packed_dir, tmp_path / "p", max_time_minutes=0.05, max_steps=-1, disable_tqdm=False,
                               eval_steps=0, save_steps=0)  # fmt: skip
    with settings(verbose=False):  # as the `mlm` command without --verbose
        pretrain(cfg)
    err = capsys.readouterr().err.replace("\r", "\n")
    lines = [line for line in err.splitlines() if "of the time budget" in line]
    assert lines, err[-1000:]
    last = lines[-1]
    assert re.search(r"\| \d+/3 s of the time budget \[", last) and re.search(r"tokens/s=[\d,]+", last), last
    assert "10000000" not in err and "1800" not in err
    assert "{'loss'" not in err  # the loss goes on the bar, not as a printed dict


def run_mlm(args: list, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
        **env,
    }
    return subprocess.run([sys.executable, "-m", "mlm", *map(str, args)], capture_output=True, text=True,
                          env=full_env, cwd=REPO, timeout=600)  # fmt: skip


def test_no_library_noise_unless_verbose(packed_dir: Path, tmp_path: Path) -> None:
    base = ["pretrain", "--data_dir", packed_dir, "--preset", "tiny", "--config_overrides", json.dumps(TINY),
            "--max_steps", "4", "--per_device_train_batch_size", "8", "--eval_steps", "2", "--save_steps", "0",
            "--logging_steps", "1", "--max_eval_samples", "16", "--use_cpu"]  # fmt: skip
    plain = run_mlm([*base, "--output_dir", tmp_path / "a"])
    assert plain.returncode == 0, plain.stderr[-2000:]
    out = plain.stdout + plain.stderr
    assert "{'loss'" not in out and "'eval_loss'" not in out and "LOAD REPORT" not in out
    assert BAR.search(plain.stderr) and "loss=" in plain.stderr  # the bar, with the newest loss on it
    verbose = run_mlm([*base, "--output_dir", tmp_path / "b", "--verbose"])
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert "'loss':" in verbose.stdout + verbose.stderr and "'eval_loss':" in verbose.stdout + verbose.stderr

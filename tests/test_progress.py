"""What a user sees: `mlm pretrain` and `mlm finetune` end by saying what they made (metrics, tokens/s, MFU, the
folder, the commands to try and share it), fine-tuning prints a line per validation, the bars are labelled
with what they train and show tokens/s and MFU, and the Trainer's log dicts are printed nowhere, from the
command line or from Python."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_finetune import checkpoint, config, task  # noqa: E402,F401  (fixtures of finetune_inputs)
from tiny_run import TINY, tiny_pretrain_config  # noqa: E402

from data_prep.progress import settings  # noqa: E402
from mlm.cli import main  # noqa: E402
from mlm.finetune import finetune  # noqa: E402
from mlm.model_card.text import fmt_share, fmt_utilisation  # noqa: E402
from mlm.pretrain import pretrain  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BAR = re.compile(
    r"(\d+)%\|[^|\r\n]*\| [^\r\n]*\[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?(?:\w*/s|s/\w+)(, [^\]\r\n]*)?\]"
)  # count, elapsed<ETA, rate (2.5it/s, or 1.6s/it when slow), then what the bar shows besides (the loss)


NOISE = ("{'loss'", "'eval_loss'", "LOAD REPORT", "Writing model shards")


@pytest.fixture(scope="module")
def finetune_inputs(request) -> tuple[Path, dict[str, Path]]:
    """test_finetune's tiny checkpoint and its sentiment task (train, validation, test files)."""
    return request.getfixturevalue("checkpoint"), request.getfixturevalue("task")


def bar_lines(err: str, label: str) -> list[str]:
    """The refreshes of the bar labelled `label` on stderr."""
    return [
        line for line in err.replace("\r", "\n").splitlines() if line.startswith(f"{label}:") and "%|" in line
    ]


def test_pretrain_command_ends_with_what_it_made(packed_dir: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    args = ["pretrain", "--data_dir", packed_dir, "--output_dir", out, "--preset", "tiny", "--config_overrides",
            json.dumps(TINY), "--max_steps", "4", "--per_device_train_batch_size", "8", "--eval_steps", "2",
            "--save_steps", "0", "--logging_steps", "1", "--max_eval_samples", "16", "--use_cpu"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    stdout, err = capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    lines = stdout.splitlines()
    assert lines[0].startswith("pretrain: 4 steps, 1,024 tokens seen in "), stdout
    mfu = fmt_utilisation(metrics["share_of_peak"], metrics["peak_flops"], metrics["peak_source"])
    assert f": {metrics['train_tokens_per_second']:,.0f} tokens/s, MFU {mfu}" in lines[0]
    validation = f"  validation: loss {metrics['eval_loss']:.3f}, perplexity {metrics['perplexity']:.4g}, masked accuracy "
    assert lines[1].startswith(validation), stdout
    final = out / "final"
    assert lines[2] == f"  model: {final}"
    try_it = shlex.split(lines[3].removeprefix("  try it: "))
    assert try_it[:3] == ["mlm", "fill-mask", str(final)] and try_it[3].count("[MASK]") == 1, lines[3]
    assert shlex.split(lines[4].removeprefix("  share it: ")) == ["mlm", "push", str(final), "your-name/REPO"]
    assert len(lines) == 5
    assert main(try_it[1:]) == 0  # the command works as printed
    bars = bar_lines(err, "pretrain")
    assert bars and re.search(r"tokens/s=[\d,]+, MFU=[\d.]+%", bars[-1]), err[-500:]
    assert not any(noise in stdout + err for noise in NOISE)


def test_pretraining_from_python_prints_the_same_summary_and_no_log_dicts(
    packed_dir, tmp_path, capsys
) -> None:
    out = tmp_path / "run"
    pretrain(tiny_pretrain_config(packed_dir, out, disable_tqdm=False))
    stdout, err = capsys.readouterr()
    assert (
        stdout.startswith("pretrain: 6 steps, 1,536 tokens seen in ")
        and f"  model: {out / 'final'}\n" in stdout
    )
    assert bar_lines(err, "pretrain")
    assert not any(noise in stdout + err for noise in NOISE), (stdout + err)[-2000:]


def test_finetune_command_prints_each_validation_and_what_it_made(finetune_inputs, tmp_path, capsys) -> None:
    model, data = finetune_inputs
    out = tmp_path / "cls"
    args = ["finetune", "--model_name_or_path", model, "--train_file", data["train"], "--validation_file",
            data["validation"], "--test_file", data["test"], "--output_dir", out, "--num_train_epochs", "3",
            "--learning_rate", "2e-3", "--per_device_train_batch_size", "16", "--max_seq_length", "32",
            "--metric_for_best_model", "accuracy", "--use_cpu"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    stdout, err = capsys.readouterr()
    metrics = json.loads((out / "metrics.json").read_text())
    lines = stdout.splitlines()
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1", "epoch 2", "epoch 3"], stdout
    assert all(re.fullmatch(r"epoch \d: validation accuracy [\d.]+, f1_macro [\d.]+, loss [\d.]+( \(best\))?", line)
               for line in epochs), epochs  # fmt: skip
    best = metrics["best"]
    kept = f"epoch {best['epoch']:.0f}"
    assert f"{kept}: validation accuracy {best['value']:.3f}" in stdout and epochs[0].endswith("(best)")
    summary = lines[len(epochs) :]
    assert summary[0].startswith("fine-tune (pretrained): 3 epochs, 39 steps in ")
    assert f": {metrics['train_tokens_per_second']:,.0f} tokens/s (non-padding), MFU " in summary[0]
    assert summary[1] == f"  kept: {kept} (best validation accuracy {best['value']:.3f})"
    test = metrics["test"]
    assert summary[2] == (f"  test: accuracy {test['accuracy']:.3f}, f1_macro {test['f1_macro']:.3f}, "
                          f"loss {test['loss']:.3f} (50 examples)")  # fmt: skip
    assert summary[3:] == [f"  model: {out}", f"  share it: mlm push {out} your-name/REPO"]
    assert bar_lines(err, "fine-tune (pretrained)")
    assert not any(noise in stdout + err for noise in NOISE)


def test_finetuning_from_python_labels_the_bar_and_prints_the_summary(
    finetune_inputs, tmp_path, capsys
) -> None:
    model, data = finetune_inputs
    out = tmp_path / "scratch"
    finetune(config(model, out, data, from_scratch=True, disable_tqdm=False, save_model=False))
    stdout, err = capsys.readouterr()
    lines = stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == ["epoch 1", "epoch 2", "epoch 3"]
    assert not any("(best)" in line for line in lines[:3])  # nothing is kept by a metric: no best
    assert lines[3].startswith("fine-tune (from scratch): 3 epochs")
    assert lines[4] == "  kept: the last epoch (metric_for_best_model keeps the best one)"
    assert lines[-1] == f"  metrics: {out / 'metrics.json'} (no model saved: save_model is false)"
    assert bar_lines(err, "fine-tune (from scratch)")
    assert not any(noise in stdout + err for noise in NOISE)


@pytest.mark.parametrize(
    "share, text", [(0.314, "31%"), (0.0321, "3.2%"), (0.00413, "0.41%"), (1e-5, "0.001%")]
)
def test_share_of_peak_reads_as_a_percentage(share: float, text: str) -> None:
    assert fmt_share(share) == text
    assert (
        fmt_utilisation(share, 989.4e12, "table: H100 SXM", devices=4)
        == f"{text} of 4 x 989 TFLOP/s (table: H100 SXM)"
    )
    assert fmt_utilisation(None, 1e12) is None


def test_the_peak_probe_leaves_the_random_state_as_it_was() -> None:
    import torch

    from mlm.progress import device_peak

    before = torch.get_rng_state()
    peak, source = device_peak("cpu")
    assert peak > 0 and source.startswith("measured: ")
    assert torch.equal(torch.get_rng_state(), before)


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

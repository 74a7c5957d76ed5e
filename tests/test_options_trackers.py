"""Trackers (`report_to`): TensorBoard logs when asked, a tracker that is not installed refused up front with
the command that installs it; and the loss plot `mlm pretrain` writes by itself."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tiny_run import tiny_pretrain_config

from mlm.cli import main
from mlm.pretrain import pretrain

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory, packed_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("tracked") / "pretrain"
    pretrain(tiny_pretrain_config(packed_dir, out, report_to="tensorboard" if HAS_TENSORBOARD else "none"))
    return out


def scalars(folder: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = sorted(folder.glob("runs/*/events.out.tfevents.*"))
    assert events, f"no TensorBoard event file under {folder}/runs"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.mark.skipif(
    not HAS_TENSORBOARD, reason='tensorboard is not installed (pip install "mlm[tensorboard]")'
)
def test_tensorboard_logs_of_pretraining_and_fine_tuning(pretrain_run: Path, tmp_path: Path) -> None:
    import json

    from mlm.finetune import FinetuneConfig, finetune

    logged = scalars(pretrain_run)
    history = json.loads((pretrain_run / "log_history.json").read_text())
    assert logged["train/loss"] == pytest.approx([h["loss"] for h in history if "loss" in h], rel=1e-5)
    assert logged["eval/loss"] == pytest.approx(
        [h["eval_loss"] for h in history if "eval_loss" in h], rel=1e-5
    )
    assert len(logged["eval/loss"]) >= 2  # steps 3 and 6 (and the final evaluation)
    train = tmp_path / "train.csv"
    train.write_text(
        "text,label\n" + "".join(f"{w} film {i},{w}\n" for i in range(8) for w in ("good", "bad"))
    )
    out = tmp_path / "cls"
    finetune(FinetuneConfig(model_name_or_path=str(pretrain_run / "final"), train_file=str(train), output_dir=str(out),
                            max_steps=2, logging_steps=1, use_cpu=True, disable_tqdm=True, max_seq_length=32,
                            report_to="tensorboard"))  # fmt: skip
    assert len(scalars(out)["train/loss"]) == 2 and not (out / "_trainer").exists()


def test_pretraining_writes_its_loss_plot(pretrain_run: Path) -> None:
    png = pretrain_run / "loss_curves.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


@pytest.mark.skipif(importlib.util.find_spec("trackio") is not None, reason="trackio is installed here")
def test_a_tracker_not_installed_is_one_line_with_the_install_command(
    packed_dir: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "p"
    code = main(
        ["pretrain", "--data_dir", str(packed_dir), "--output_dir", str(out), "--report_to", "trackio"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert (
        err
        == "error: pretrain: report_to trackio: trackio is not installed; install it with: pip install trackio"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []
    code = main(["finetune", "--model_name_or_path", "m", "--train_file", "t.csv", "--output_dir", str(out), "--report_to",
                 "tensorboard,trackio"])  # fmt: skip
    assert code == 2 and "pip install trackio" in capsys.readouterr().err
    code = main(
        ["pretrain", "--data_dir", str(packed_dir), "--output_dir", str(out), "--report_to", "tensorbord"]
    )
    assert (
        code == 2
        and "unknown report_to 'tensorbord'; valid: none, all, tensorboard, trackio"
        in capsys.readouterr().err
    )
    assert list(tmp_path.iterdir()) == []

"""Exact resume: SIGKILL a pretraining run after step k, resume it, and get the uninterrupted run's weights.

Each case runs the reference (uninterrupted) run and the resumed run in this process and only the run that is
killed in a subprocess (started with the same settings: one thread, deterministic ops, fp32 on CPU).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mlm.checkpoints import COMPLETE_FILE, latest_complete_checkpoint, read_complete, resolve_resume
from mlm.pretrain import PretrainConfig, pretrain
from mlm.streaming import PackedStream

REPO = Path(__file__).resolve().parents[1]
TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}

# the killed run: same config, one thread, a pause per step so the kill lands mid-run
_KILLED_RUN = r"""
import json, sys, time
import torch
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
from mlm.pretrain import PretrainConfig, pretrain
from mlm.trainer import PretrainTrainer
kw, pause = json.loads(sys.argv[1]), float(sys.argv[2])
step = PretrainTrainer.training_step
def slow_step(self, *a, **k):
    time.sleep(pause)
    return step(self, *a, **k)
PretrainTrainer.training_step = slow_step
pretrain(PretrainConfig(**kw))
"""


def _kw(packed_dir: Path, out: Path, **extra) -> dict:
    kw = dict(
        data_dir=str(packed_dir),
        output_dir=str(out),
        preset="tiny",
        config_overrides=TINY,
        logging_steps=1,
        eval_steps=0,
        max_eval_samples=16,
        per_device_eval_batch_size=16,
        disable_tqdm=True,
        use_cpu=True,
        report_to="none",
        dataloader_num_workers=0,
    )
    kw.update(extra)
    return kw


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _run_in_process(kw: dict) -> dict:
    return pretrain(PretrainConfig(**kw))


def _run_and_kill(kw: dict, step: int, pause: float = 0.25, timeout: float = 120) -> None:
    """Start the run in a subprocess; SIGKILL it as soon as checkpoint-`step` is complete."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    marker = Path(kw["output_dir"]) / f"checkpoint-{step}" / COMPLETE_FILE
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, json.dumps(kw), str(pause)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + timeout
    try:
        while not marker.exists():
            if proc.poll() is not None:
                raise AssertionError(f"the run ended before checkpoint-{step}:\n{proc.stderr.read()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"checkpoint-{step} did not appear in {timeout} s")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (Path(kw["output_dir"]) / "final").exists(), "the run finished before the kill"


def _fake_partial_checkpoint(out: Path, step: int) -> Path:
    """What a kill during a save leaves: a newer checkpoint folder with some of the files, no marker."""
    newest, _ = latest_complete_checkpoint(out)
    partial = out / f"checkpoint-{step}"
    partial.mkdir()
    shutil.copy(newest / "config.json", partial / "config.json")
    data = (newest / "model.safetensors").read_bytes()
    (partial / "model.safetensors").write_bytes(data[: len(data) // 2])
    return partial


def _max_weight_diff(a: Path, b: Path) -> float:
    wa, wb = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    assert wa.keys() == wb.keys()
    return max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa)


def _steps_per_epoch(packed_dir: Path, batch: int) -> int:
    import datasets

    n = len(datasets.load_from_disk(str(packed_dir))["train"])
    return -(-n // batch)


def test_map_style_resume_after_sigkill_is_exact(packed_dir, tmp_path, one_thread):
    # 64 blocks per step (2 micro-batches of 32): the kill lands in the second epoch; the checkpoint before
    # the newest is the end of the first epoch, so both a mid-epoch and an epoch-boundary resume are checked
    per_epoch = _steps_per_epoch(packed_dir, 64)
    n, k = per_epoch + 3, per_epoch + 1
    cfg = dict(
        max_steps=n,
        per_device_train_batch_size=32,
        gradient_accumulation_steps=2,
        save_steps=1,
        save_total_limit=2,
        eval_steps=2,
    )
    ref = tmp_path / "reference"
    _run_in_process(_kw(packed_dir, ref, **cfg))
    ref_losses = _losses(ref)

    out = tmp_path / "killed"
    _run_and_kill(_kw(packed_dir, out, **cfg), step=k)
    boundary = tmp_path / "boundary"
    shutil.copytree(out, boundary)
    partial = _fake_partial_checkpoint(out, n - 1)  # a save cut short: must be ignored

    for folder, resume in ((out, "latest"), (boundary, str(boundary / f"checkpoint-{per_epoch}"))):
        metrics = _run_in_process(_kw(packed_dir, folder, resume_from_checkpoint=resume, **cfg))
        resumed_at = int(Path(metrics["resumed_from"]).name.split("-")[1])
        assert resumed_at == (per_epoch if folder == boundary else k) or resumed_at > k  # a late kill
        assert Path(metrics["resumed_from"]).name != partial.name
        assert metrics["steps"] == n
        assert _max_weight_diff(ref, folder) <= 1e-6, resume
        losses = _losses(folder)
        for step in range(resumed_at + 1, n + 1):
            assert losses[step] == pytest.approx(ref_losses[step], rel=1e-5), (resume, step)


def _losses(out: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in json.loads((out / "log_history.json").read_text()) if "loss" in h}


def test_streaming_resume_is_exact_and_reads_no_seen_block(packed_dir, tmp_path, one_thread, monkeypatch):
    per_step = 64  # blocks per optimizer step; 10 steps go round the tiny corpus more than once
    cfg = dict(
        streaming=True, max_steps=10, per_device_train_batch_size=per_step, save_steps=2, save_total_limit=2
    )
    ref = tmp_path / "reference"
    _run_in_process(_kw(packed_dir, ref, **cfg))

    out = tmp_path / "killed"
    _run_and_kill(_kw(packed_dir, out, **cfg), step=4)
    _fake_partial_checkpoint(out, 9)
    newest, _ = latest_complete_checkpoint(out)
    record = read_complete(newest)  # read now: the resumed run rotates this checkpoint out

    reads: list[tuple[int, int]] = []
    read = PackedStream._read

    def counting_read(self, position, n):
        reads.append((position, n))
        return read(self, position, n)

    monkeypatch.setattr(PackedStream, "_read", counting_read)
    metrics = _run_in_process(_kw(packed_dir, out, resume_from_checkpoint="latest", **cfg))

    assert metrics["resumed_from"] == str(newest)
    resumed_at = record["global_step"]
    assert resumed_at >= 4
    assert record["data"]["blocks_consumed"] == resumed_at * per_step
    # the resumed run read exactly the blocks of the steps it trained, none of those seen before the kill
    assert min(p for p, _ in reads) == resumed_at * per_step
    assert sum(n for _, n in reads) == (10 - resumed_at) * per_step
    assert _max_weight_diff(ref, out) <= 1e-6


def test_incomplete_checkpoints_are_ignored_and_removed(packed_dir, tmp_path):
    out = tmp_path / "run"
    pretrain(PretrainConfig(**_kw(packed_dir, out, max_steps=4, save_steps=2, per_device_train_batch_size=8)))
    assert read_complete(out / "checkpoint-4") is not None
    partial = _fake_partial_checkpoint(out, 6)
    # a checkpoint whose marker lists a file that was cut short afterwards is not whole either
    truncated = out / "checkpoint-4" / "optimizer.pt"
    keep = truncated.read_bytes()
    truncated.write_bytes(keep[:10])
    cfg = PretrainConfig(**_kw(packed_dir, out, max_steps=6, resume_from_checkpoint="latest"))
    assert Path(resolve_resume(cfg.resume_from_checkpoint, cfg.output_dir)).name == "checkpoint-2"
    assert not partial.exists() and not (out / "checkpoint-4").exists()  # removed: they can never be used

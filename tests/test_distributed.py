"""Two processes with torchrun (gloo, CPU): one set of outputs, losses averaged like one process's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mlm.checkpoints import COMPLETE_FILE, read_complete
from mlm.pretrain import PretrainConfig, pretrain

REPO = Path(__file__).resolve().parents[1]
TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
STEPS = 6


def _args(packed_dir: Path, out: Path, per_device: int, **extra) -> dict:
    kw = dict(
        data_dir=str(packed_dir),
        output_dir=str(out),
        preset="tiny",
        config_overrides=TINY,
        max_steps=STEPS,
        per_device_train_batch_size=per_device,
        learning_rate=1e-3,
        logging_steps=1,
        eval_steps=3,
        save_steps=3,
        max_eval_samples=32,
        per_device_eval_batch_size=16,
        disable_tqdm=True,
        use_cpu=True,
        dataloader_num_workers=0,
    )
    kw.update(extra)
    return kw


def _cli(kw: dict) -> list[str]:
    argv = ["pretrain"]
    for key, value in kw.items():
        argv += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    return argv


def _torchrun(argv: list[str], nproc: int = 2, timeout: float = 180) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc)]
    cmd += ["-m", "mlm", *argv]
    # its own process group, so a timeout ends the worker processes too
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        raise AssertionError(f"torchrun timed out after {timeout} s:\n{stderr[-6000:]}") from None
    assert proc.returncode == 0, stdout[-3000:] + stderr[-6000:]
    return stdout + stderr


def _losses(out: Path) -> dict[int, float]:
    history = json.loads((out / "log_history.json").read_text())
    return {h["step"]: h["loss"] for h in history if "loss" in h}


@pytest.fixture(scope="module")
def two_process_run(packed_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    return out, _torchrun(_cli(_args(packed_dir, out, per_device=4)))


def test_one_set_of_outputs(two_process_run):
    out, _ = two_process_run
    entries = sorted(p.name for p in out.iterdir())
    assert entries.count("final") == 1 and entries.count("metrics.json") == 1
    assert not [e for e in entries if e.startswith(".")], entries  # no temporary folders left behind
    assert sorted(e for e in entries if e.startswith("checkpoint-")) == ["checkpoint-3", "checkpoint-6"]
    for name in ("checkpoint-3", "checkpoint-6"):
        ckpt = out / name
        record = read_complete(ckpt)
        assert record is not None and record["data"]["global_batch"] == 8
        # each process's RNG state is in the checkpoint before it is marked complete
        assert {"rng_state_0.pth", "rng_state_1.pth", "run_info.json"} <= set(record["files"])
        assert (ckpt / COMPLETE_FILE).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == STEPS and metrics["tokens_seen"] == STEPS * 8 * 32


def test_final_model_loads(two_process_run):
    from transformers import AutoModelForMaskedLM

    out, _ = two_process_run
    model, info = AutoModelForMaskedLM.from_pretrained(out / "final", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert (out / "final" / "run_info.json").is_file()


def test_no_ddp_warnings(two_process_run):
    _, output = two_process_run
    lowered = output.lower()
    assert "unused parameters" not in lowered and "find_unused_parameters" not in lowered


def test_loss_matches_one_process_with_the_same_global_batch(two_process_run, packed_dir, tmp_path):
    out, _ = two_process_run
    single = tmp_path / "single"
    pretrain(PretrainConfig(**_args(packed_dir, single, per_device=8)))
    two, one = _losses(out), _losses(single)
    assert sorted(two) == sorted(one) == list(range(1, STEPS + 1))
    for step in one:  # averaged over the processes, not summed: no doubling
        assert two[step] == pytest.approx(one[step], rel=0.05), (step, two[step], one[step])


def test_stock_head_streaming_and_accumulation_are_not_scaled(packed_dir, tmp_path):
    """The stock head's forward takes **kwargs: the Trainer must still not scale its loss by the number of
    processes or accumulation steps (logged or evaluated). Streaming, split across the two processes."""
    kw = dict(masked_only_head=False, streaming=True, save_steps=STEPS)
    out = tmp_path / "ddp"
    _torchrun(_cli(_args(packed_dir, out, per_device=2, gradient_accumulation_steps=2, **kw)))
    single = tmp_path / "single"
    pretrain(PretrainConfig(**_args(packed_dir, single, per_device=8, **kw)))
    two, one = _losses(out), _losses(single)
    for step in one:
        assert two[step] == pytest.approx(one[step], rel=0.05), (step, two[step], one[step])
    evals = [json.loads((d / "metrics.json").read_text())["eval_loss"] for d in (out, single)]
    assert evals[0] == pytest.approx(evals[1], rel=0.05)
    record = read_complete(out / f"checkpoint-{STEPS}")
    assert record["data"] == {"streaming": True, "blocks_consumed": STEPS * 8, "global_batch": 8}


def test_stream_is_split_between_processes_and_workers(packed_dir):
    from itertools import islice

    from mlm.streaming import PackedStream

    def draws(rank: int, world: int, batches: int, start: int = 0) -> list[int]:
        stream = PackedStream(packed_dir, "train", start=start)
        stream.configure(batch_size=3, rank=rank, world_size=world)
        return [int(item["sample_id"]) for item in islice(iter(stream), 3 * batches)]

    ranks = [draws(r, 2, 4, start=5) for r in (0, 1)]
    assert ranks[0][:3] == [5, 6, 7] and ranks[1][:3] == [8, 9, 10]
    assert not set(ranks[0]) & set(ranks[1])
    assert sorted(ranks[0] + ranks[1]) == list(range(5, 5 + 24))
    # DataLoader workers take the process's batches in turn: the order is that of one worker
    stream = PackedStream(packed_dir, "train", start=5)
    stream.configure(batch_size=3, rank=1, world_size=2)
    loader = torch.utils.data.DataLoader(stream, batch_size=3, num_workers=2)
    assert [b["sample_id"].tolist() for b in islice(iter(loader), 4)] == [
        ranks[1][i : i + 3] for i in (0, 3, 6, 9)
    ]

    stream = PackedStream(packed_dir, "train")
    n = stream.num_blocks
    stream.configure(batch_size=n + 2, rank=0, world_size=1)  # a batch that wraps round the corpus
    batch = list(islice(iter(stream), n + 2))
    assert [int(b["sample_id"]) for b in batch] == list(range(n + 2))
    assert batch[n]["input_ids"].equal(batch[0]["input_ids"]) and stream.blocks_read == n + 2
    # with a seed, every pass reads all blocks once, each pass in its own order
    shuffled = PackedStream(packed_dir, "train", seed=7)
    first, second = shuffled.blocks(0, n), shuffled.blocks(n, n)
    assert sorted(first) == sorted(second) == list(range(n))
    assert list(first) != list(range(n)) and list(first) != list(second)


def test_recipe_under_a_launcher_runs_only_pretraining(tmp_path, tiny_corpus_dir, monkeypatch):
    from data_prep.errors import UserError
    from mlm.recipe import RunConfig, run_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        f"output_dir: {tmp_path / 'run'}\nprepare:\n  corpus: [{tiny_corpus_dir}]\n"
        "tokenizer:\n  vocab_size: 512\npack:\n  max_seq_length: 32\npretrain:\n  max_steps: 1\n"
    )
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(UserError, match="run the data steps in one process first"):
        run_recipe(RunConfig(recipe=str(recipe)))
    assert not (tmp_path / "run").exists()  # nothing written by any process


def test_process_group_destroyed_at_exit(tmp_path):
    """A gloo group left alive at interpreter exit can abort the process (SIGABRT): it is destroyed first."""
    script = f"""
import atexit, torch.distributed as dist
from mlm.distributed import destroy_process_group_at_exit
dist.init_process_group("gloo", init_method="file://{tmp_path / "store"}", rank=0, world_size=1)
destroy_process_group_at_exit()
destroy_process_group_at_exit()  # idempotent
atexit._run_exitfuncs()
print("initialized after exit handlers:", dist.is_initialized())
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "initialized after exit handlers: False" in done.stdout

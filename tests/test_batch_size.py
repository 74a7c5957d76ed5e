"""`mlm.batch_size`: the per-device batch chosen when it is left unset (the search over a step timer, the
learning-rate rule, the CPU default, a resume keeping its batch) and the GPU step timer's out-of-memory path,
all on the CPU: the step times and the memory limits are faked. No timing asserts."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
from tiny_run import tiny_pretrain_config
from transformers import AutoTokenizer

from data_prep.errors import UserError
from data_prep.steps import config_values, write_step_metadata
from mlm import batch_size as bs
from mlm.checkpoints import changed_options, check_resume_config, mark_complete
from mlm.data import load_packed
from mlm.modeling import build_config
from mlm.objectives import get_objective
from mlm.options import trainer_arguments
from mlm.pretrain import PretrainConfig, learning_rate_for, pretrain

SEQ = 128


def timer(seconds: dict[int, float] | None = None, fits_up_to: int = 10**9, calls: list | None = None):
    """A fake `try_step`: seconds per step from `seconds` (default: 1 ms + 10 us a block), None above
    `fits_up_to` blocks (out of memory)."""

    def try_step(batch: int) -> float | None:
        if calls is not None:
            calls.append(batch)
        if batch > fits_up_to:
            return None
        return seconds[batch] if seconds else 1e-3 + 1e-5 * batch

    return try_step


def test_doubling_stops_when_tokens_per_second_rise_less_than_ten_percent():
    # tokens/s of 64..1024: 6.4, 11.6, 19.7, 25.6, 26.9 (x SEQ, k/s): 1024 gains 5%
    curve = {64: 0.010, 128: 0.011, 256: 0.013, 512: 0.020, 1024: 0.038}
    calls: list[int] = []
    choice = bs.search_batch_size(timer(curve, calls=calls), SEQ)
    assert choice.batch == 512 and choice.stop == "gain"
    assert calls == [64, 128, 256, 512, 1024]
    line = choice.describe()
    assert line.startswith("per_device_train_batch_size auto: 512 (64: ")
    assert "512: 3.28M tok/s" in line and line.endswith("1024: 3.45M tok/s, +5% -> stop)")


def test_doubling_stops_at_the_first_out_of_memory():
    calls: list[int] = []
    choice = bs.search_batch_size(timer(fits_up_to=300, calls=calls), SEQ)
    assert choice.batch == 256 and choice.stop == "oom" and calls == [64, 128, 256, 512]
    assert choice.describe().endswith("256: " + bs.format_rate(256 * SEQ / (1e-3 + 256e-5)) + " tok/s, "
                                      "512: out of memory -> stop)")  # fmt: skip


def test_doubling_stops_at_the_cap():
    calls: list[int] = []
    choice = bs.search_batch_size(
        timer({b: 0.01 for b in (64, 128, 256, 512, 1024, 2048, 4096)}, calls=calls), 8
    )
    assert choice.batch == bs.CAP == 4096 and choice.stop == "cap" and max(calls) == 4096
    assert choice.describe().endswith(", cap 4096)")


def test_a_start_that_does_not_fit_halves_until_one_does():
    calls: list[int] = []
    choice = bs.search_batch_size(timer(fits_up_to=20, calls=calls), SEQ)
    assert choice.batch == 16 and calls == [64, 32, 16]
    assert choice.describe().startswith("per_device_train_batch_size auto: 16 (64: out of memory, 32: out of")
    with pytest.raises(UserError, match="one block of 128 tokens does not fit in GPU memory"):
        bs.search_batch_size(timer(fits_up_to=0), SEQ)


@pytest.mark.parametrize("batch, factor", [(64, 1.0), (256, 2.0), (1024, 4.0), (4096, 4.0), (16, 0.5)])
def test_learning_rate_scales_with_the_square_root_of_the_batch_at_most_four_times(batch, factor):
    assert bs.scaled_learning_rate(3e-3, batch) == pytest.approx(3e-3 * factor)


def _cfg(tmp_path: Path, **kw) -> PretrainConfig:
    return PretrainConfig(data_dir="d", output_dir=str(tmp_path / "run"), use_cpu=True, **kw)


def test_cpu_keeps_64_and_the_default_rate(tmp_path, capsys):
    cfg = _cfg(tmp_path, architecture="modernbert")
    assert cfg.per_device_train_batch_size is None
    before = copy.deepcopy(cfg)
    resolved = bs.resolve_batch_size(cfg, learning_rate_for(cfg), SEQ, timer=lambda: pytest.fail("searched"))
    assert resolved.per_device_train_batch_size == 64 and resolved.learning_rate is None
    assert learning_rate_for(resolved) == 3e-3 and cfg == before, "the user's config is not changed"
    assert capsys.readouterr().out == ""
    # the Trainer's arguments of a config not resolved (built directly): the CPU default too
    args = trainer_arguments(cfg, output_dir=str(tmp_path / "args"), learning_rate=1e-3)
    assert args.per_device_train_batch_size == 64


def test_gpu_searches_scales_the_default_rate_and_says_so_once(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    resolved = bs.resolve_batch_size(cfg, 1e-3, SEQ, timer=lambda: timer(fits_up_to=300), gpu=True)
    assert resolved.per_device_train_batch_size == 256
    assert resolved.learning_rate == pytest.approx(2e-3)
    assert cfg.per_device_train_batch_size is None and cfg.learning_rate is None
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("per_device_train_batch_size auto: 256 (64: ")
    assert lines[0].endswith("; learning_rate 0.002 = 0.001 x sqrt(256/64) (at most x4)")


def test_given_values_are_kept(tmp_path):
    cfg = _cfg(tmp_path, per_device_train_batch_size=32, learning_rate=5e-4)
    assert bs.resolve_batch_size(cfg, 1e-3, SEQ, timer=lambda: pytest.fail("searched"), gpu=True) is cfg
    given_rate = bs.resolve_batch_size(_cfg(tmp_path, learning_rate=5e-4), 1e-3, SEQ,
                                       timer=lambda: timer(fits_up_to=300), gpu=True)  # fmt: skip
    assert given_rate.per_device_train_batch_size == 256 and given_rate.learning_rate == 5e-4


def test_a_distributed_launch_is_not_searched(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    resolved = bs.resolve_batch_size(
        _cfg(tmp_path), 1e-3, SEQ, timer=lambda: pytest.fail("searched"), gpu=True
    )
    assert resolved.per_device_train_batch_size == 64 and resolved.learning_rate is None
    assert "not searched under a distributed launch" in capsys.readouterr().out


def _checkpoint(out: Path, config: dict, step: int = 10) -> Path:
    folder = out / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    write_step_metadata(folder, "pretrain", config, {})
    mark_complete(folder, step)
    return folder


def test_a_resumed_run_takes_its_checkpoints_batch_and_rate(tmp_path, capsys):
    cfg = _cfg(tmp_path, resume_from_checkpoint="latest")
    chosen = bs.resolve_batch_size(cfg, 1e-3, SEQ, timer=lambda: timer(fits_up_to=600), gpu=True)
    assert chosen.per_device_train_batch_size == 512
    checkpoint = _checkpoint(tmp_path / "run", config_values(chosen))
    capsys.readouterr()
    for gpu in (True, False):  # the same on any device, and nothing is searched again
        again = bs.resolve_batch_size(cfg, 1e-3, SEQ, timer=lambda: pytest.fail("searched"), gpu=gpu)
        assert again.per_device_train_batch_size == 512 and again.learning_rate == chosen.learning_rate
        assert capsys.readouterr().out == f"per_device_train_batch_size: 512 (as {checkpoint} was trained)\n"
    # the resume check: the unset options take the checkpoint's values; a value set is compared
    check_resume_config(checkpoint, {"config": config_values(cfg)}, cfg.output_dir)
    check_resume_config(checkpoint, {"config": config_values(again)}, cfg.output_dir)
    other = copy.deepcopy(cfg)
    other.per_device_train_batch_size = 256
    with pytest.raises(UserError, match="per_device_train_batch_size 512 -> 256"):
        check_resume_config(checkpoint, {"config": config_values(other)}, cfg.output_dir)
    # a set batch with the rate unset still takes the checkpoint's rate
    other.per_device_train_batch_size = 512
    assert bs.resolve_batch_size(other, 1e-3, SEQ, gpu=True).learning_rate == chosen.learning_rate
    # force starts over: a new search
    forced = bs.resolve_batch_size(_cfg(tmp_path, force=True), 1e-3, SEQ, timer=lambda: timer(fits_up_to=100),
                                   gpu=True)  # fmt: skip
    assert forced.per_device_train_batch_size == 64


def test_a_checkpoint_of_an_older_version_keeps_64_and_the_rate_for_the_blocks(tmp_path):
    config = {**config_values(_cfg(tmp_path)), "per_device_train_batch_size": 64, "learning_rate": None}
    _checkpoint(tmp_path / "run", config)
    resolved = bs.resolve_batch_size(_cfg(tmp_path, resume_from_checkpoint="latest"), 3e-3, SEQ,
                                     timer=lambda: pytest.fail("searched"), gpu=True)  # fmt: skip
    assert resolved.per_device_train_batch_size == 64 and resolved.learning_rate is None
    assert learning_rate_for(resolved) == 1e-3  # BERT blocks' default, as the checkpoint was trained
    assert changed_options({"config": config}, {"config": config_values(resolved)}) == []


def test_pretraining_on_a_faked_gpu_search_then_resume(packed_dir, tmp_path, monkeypatch, capsys):
    """The whole run with the search's timer faked (the training itself on the CPU): the chosen batch and
    scaled rate train, the checkpoints record them, and resuming with the batch still unset trains on with
    them, searching nothing."""
    import mlm.pretrain

    def faked(fits_up_to):
        def resolve(cfg, objective, model, data, learning_rate):
            return bs.resolve_batch_size(cfg, learning_rate, data.seq_len,
                                         timer=lambda: timer(fits_up_to=fits_up_to), gpu=True)  # fmt: skip

        return resolve

    monkeypatch.setattr(mlm.pretrain, "resolve_pretraining_batch", faked(20))
    out = tmp_path / "run"
    kw = dict(
        per_device_train_batch_size=None, max_steps=2, save_steps=2, eval_steps=0, save_total_limit=None
    )
    metrics = pretrain(tiny_pretrain_config(packed_dir, out, **kw))
    assert "per_device_train_batch_size auto: 16 (64: out of memory" in capsys.readouterr().out
    assert metrics["tokens_seen"] == 2 * 16 * 32
    recorded = json.loads((out / "checkpoint-2" / "mlm_step.json").read_text())["config"]
    assert recorded["per_device_train_batch_size"] == 16
    assert recorded["learning_rate"] == pytest.approx(bs.scaled_learning_rate(1e-3, 16)) == 5e-4
    history = json.loads((out / "log_history.json").read_text())
    assert max(h.get("learning_rate", 0) for h in history) <= 5e-4

    monkeypatch.setattr(mlm.pretrain, "resolve_pretraining_batch", faked(10**9))  # would now pick 4096
    resumed = pretrain(tiny_pretrain_config(packed_dir, out, **{**kw, "max_steps": 4},
                                            resume_from_checkpoint="latest"))  # fmt: skip
    assert "per_device_train_batch_size: 16 (as" in capsys.readouterr().out
    assert resumed["steps"] == 4 and resumed["tokens_seen"] == 4 * 16 * 32
    assert json.loads((out / "mlm_step.json").read_text())["config"]["per_device_train_batch_size"] == 16


def test_pretraining_on_the_cpu_trains_at_64(packed_dir, tmp_path):
    metrics = pretrain(tiny_pretrain_config(packed_dir, tmp_path / "run", per_device_train_batch_size=None,
                                            max_steps=1, eval_steps=0, save_steps=0))  # fmt: skip
    assert metrics["tokens_seen"] == 64 * 32


# --- the GPU glue, run on the CPU -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model_and_batches(packed_dir):
    """A 1-layer BERT with the masked-only head, and `block_batches` of the packed fixture's blocks."""
    splits, meta = load_packed(packed_dir)
    tok = AutoTokenizer.from_pretrained(meta["config"]["tokenizer_dir"])
    cfg = tiny_pretrain_config(packed_dir, Path("unused"))
    objective = get_objective("mlm")(cfg, tok)
    overrides = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    model = objective.build_model(build_config("tiny", len(tok), 32, overrides=overrides))
    return model, bs.block_batches(objective, splits["train"])


def test_block_batches_are_training_batches_of_the_packed_length(tiny_model_and_batches):
    _, make = tiny_model_and_batches
    batch = make(600)  # more blocks than the split has: repeated
    assert batch["input_ids"].shape == (600, 32) and "labels" in batch


def test_step_timer_times_forward_and_backward_and_changes_no_weight(tiny_model_and_batches):
    model, make = tiny_model_and_batches
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.eval()
    seconds = bs.StepTimer(model, make, "cpu", steps=1)(4)
    assert seconds is not None and seconds > 0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters()) and not model.training


def test_step_timer_out_of_memory_returns_none_and_frees(tiny_model_and_batches, monkeypatch):
    model, make = tiny_model_and_batches
    forward = type(model).forward
    freed: list[int] = []

    def forward_or_oom(self, input_ids=None, **kw):
        out = forward(self, input_ids=input_ids, **kw)
        if input_ids.shape[0] > 8:  # after the activations exist, like a real out-of-memory in the head
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return out

    monkeypatch.setattr(type(model), "forward", forward_or_oom)
    step = bs.StepTimer(model, make, "cpu", steps=1)
    monkeypatch.setattr(step, "_free", lambda: freed.append(1))
    assert step(8) is not None and step(16) is None
    assert len(freed) == 2 and all(p.grad is None for p in model.parameters())
    fixed_time = lambda batch: None if step(batch) is None else 1.0  # noqa: E731 (every doubling pays)
    assert bs.search_batch_size(fixed_time, 32, start=4).batch == 8

    def fails(self, input_ids=None, **kw):
        raise RuntimeError("an error that is not about memory")

    monkeypatch.setattr(type(model), "forward", fails)
    with pytest.raises(RuntimeError, match="not about memory"):
        step(4)


def test_step_timer_refuses_a_step_near_the_memory_limit(tiny_model_and_batches, monkeypatch):
    model, make = tiny_model_and_batches
    step = bs.StepTimer(model, make, "cpu", steps=1)
    monkeypatch.setattr(step, "_peak_fraction", lambda: 0.95)
    assert step(4) is None
    monkeypatch.setattr(step, "_peak_fraction", lambda: 0.5)
    assert step(4) is not None


@pytest.mark.parametrize(
    "error, oom",
    [
        (torch.OutOfMemoryError("CUDA out of memory"), True),
        (RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate(handle)"), True),
        (RuntimeError("CUDA error: device-side assert triggered"), False),
        (ValueError("out of memory"), False),
    ],
)
def test_what_counts_as_out_of_memory(error, oom):
    assert bs.is_out_of_memory(error) is oom


def test_the_option_is_unset_by_default_and_checked_when_set(tmp_path):
    assert PretrainConfig.__dataclass_fields__["per_device_train_batch_size"].default is None
    with pytest.raises(UserError, match="per_device_train_batch_size must be >= 1, got 0"):
        _cfg(tmp_path, per_device_train_batch_size=0).validate()
    _cfg(tmp_path).validate()

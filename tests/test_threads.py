"""`cpu_threads: auto`: the tuner against a simulated machine whose speed depends on the thread count and on
whether another process holds a core; the option's validation; a real pretraining run logs its choice."""

from __future__ import annotations

import logging
import types

import pytest
import torch

from data_prep.errors import UserError
from mlm.cpu.threads import ThreadTuner, candidate_counts, configure_cpu_threads, parse_cpu_threads
from mlm.pretrain import PretrainConfig

# seconds per step on a 2-core machine: idle, 2 threads are faster; with one core busy, 1 thread is
STEP_S = {(2, False): 0.10, (1, False): 0.17, (2, True): 0.46, (1, True): 0.18}


class Machine:
    """A fake clock and thread setting; `run(n)` drives the tuner's callbacks through n training steps."""

    def __init__(self, most: int = 2, **tuner_kwargs) -> None:
        self.now, self.threads, self.busy, self.step = 0.0, most, False, 0
        self.spike = 0  # the next `spike` steps take 3x as long whatever the thread count (a passing hiccup)
        self.tuner = ThreadTuner(most, clock=lambda: self.now, set_threads=self._set, **tuner_kwargs)
        self.tuner.on_train_begin(None, None, None)
        self.log: list[int] = []  # the thread count of every step

    def _set(self, n: int) -> None:
        self.threads = n

    def run(self, steps: int) -> float:
        """Run `steps` steps; the seconds they took."""
        start = self.now
        for _ in range(steps):
            state = types.SimpleNamespace(global_step=self.step)
            self.tuner.on_step_begin(None, state, None)
            self.now += STEP_S[(self.threads, self.busy)] * (3 if self.spike > 0 else 1)
            self.spike = max(0, self.spike - 1)
            self.log.append(self.threads)
            self.step += 1
            state.global_step = self.step
            self.tuner.on_step_end(None, state, None)
        return self.now - start


def best_fixed(steps: int, busy: bool) -> float:
    return steps * min(STEP_S[(n, busy)] for n in (1, 2))


def test_candidates():
    assert candidate_counts(2) == [2, 1]
    assert candidate_counts(8) == [8, 4, 1]
    assert candidate_counts(1) == [1]


def test_idle_machine_keeps_all_threads():
    m = Machine()
    took = m.run(2000)
    assert m.tuner.history[0]["threads"] == 2
    assert m.log[-1] == 2
    assert took <= best_fixed(2000, busy=False) / 0.95  # the probes and rechecks cost under 5%


def test_busy_from_the_start_takes_one_thread():
    m = Machine()
    m.busy = True
    took = m.run(2000)
    assert m.tuner.history[0]["threads"] == 1
    assert m.log[-1] == 1
    assert took <= best_fixed(2000, busy=True) / 0.95


def test_load_appearing_and_leaving_is_followed():
    m = Machine()
    m.run(300)
    assert m.threads == 2
    m.busy = True
    m.run(300)
    assert m.threads == 1, "steps slowed down: the tuner measured again and dropped to one thread"
    assert any("slowed" in h["why"] for h in m.tuner.history)
    m.busy = False
    m.run(3000)  # the periodic recheck finds that two threads are faster again
    assert m.threads == 2
    choices = [h["threads"] for h in m.tuner.history]
    assert [n for i, n in enumerate(choices) if i == 0 or n != choices[i - 1]] == [2, 1, 2]


def test_a_passing_hiccup_does_not_change_the_choice():
    m = Machine()
    m.run(100)
    m.spike = 4  # long enough to trigger a probe; over before the current count is timed again
    m.run(100)
    assert "slowed" in m.tuner.history[-1]["why"]
    assert m.tuner.history[-1]["threads"] == 2 and m.threads == 2


def test_a_hopeless_count_is_dropped_after_one_step():
    m = Machine()
    m.busy = True
    m.run(30)
    assert m.tuner.history[0]["threads"] == 1
    m.tuner.recheck_s = 0  # force a recheck: from 1 thread, the 2-thread probe ends after one slow step
    before = len(m.log)
    m.run(5)
    assert m.log[before:].count(2) == 1


def test_rechecks_back_off_while_the_choice_holds():
    m = Machine(recheck_s=10, max_recheck_s=80)
    m.run(3000)
    assert m.tuner.recheck_s == 80
    assert len(m.tuner.history) < 12  # 10, 20, 40, 80, 80, ... seconds apart over 300 s


def test_option_validation():
    assert parse_cpu_threads("auto") is None
    assert parse_cpu_threads("3") == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(UserError, match="cpu_threads"):
            parse_cpu_threads(bad)
    with pytest.raises(UserError, match="cpu_threads"):
        PretrainConfig(data_dir="d", output_dir="o", cpu_threads="zero").validate()


def test_nothing_to_tune(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    try:
        assert configure_cpu_threads("auto", on_cpu=False, world_size=1) is None
        assert configure_cpu_threads("auto", on_cpu=True, world_size=2) is None
        torch.set_num_threads(1)
        assert configure_cpu_threads("auto", on_cpu=True, world_size=1) is None
        torch.set_num_threads(2)
        assert isinstance(configure_cpu_threads("auto", on_cpu=True, world_size=1), ThreadTuner)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        assert configure_cpu_threads("auto", on_cpu=True, world_size=1) is None
        assert configure_cpu_threads("1", on_cpu=True, world_size=1) is None
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)


def test_pretraining_shows_its_choice(packed_dir, tmp_path, monkeypatch, caplog, capsys):
    from mlm.pretrain import PretrainConfig, pretrain

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = PretrainConfig(
            data_dir=str(packed_dir), output_dir=str(tmp_path / "run"), preset="tiny", max_steps=12,
            per_device_train_batch_size=4, eval_steps=0, save_steps=0, use_cpu=True, disable_tqdm=True,
        )  # fmt: skip
        with caplog.at_level(logging.INFO, logger="mlm"):
            pretrain(cfg)
        assert torch.get_num_threads() == 2, "the tuner leaves the process as it found it"
    finally:
        torch.set_num_threads(threads)
    assert any("cpu_threads auto (start; step" in r.getMessage() for r in caplog.records)
    assert "cpu_threads auto (start; step" in capsys.readouterr().err  # shown to a CLI user too

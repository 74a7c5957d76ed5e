"""Two nodes x one process: `torchrun --nnodes 2 --node_rank 0|1` on 127.0.0.1 (gloo), two launchers started
side by side, as on two machines sharing a file system. Three things are proved on a 1-layer, 32-wide model,
blocks of 32 tokens, 8 steps (two epochs of the tiny corpus):

1. every block is trained on once per epoch across the ranks (test_every_block_once_per_epoch);
2. killing one node mid-run and restarting both gives the uninterrupted run's weights and loss history, and
   the resumed ranks train on the draws the uninterrupted ranks trained on (test_killed_node_resumes_exactly);
3. only global rank 0 writes `final/` and pushes; rank 1 writes its RNG state into each checkpoint and
   nothing else (test_only_rank_0_writes_final_and_pushes).

How the test knows what each rank did: the workers run `tests/rank_trace.py`, the `mlm` command with a
recorder installed from outside the package. It logs the `sample_id`s (draw ids, `epoch * N + block`) of every
micro-batch each rank's DataLoader handed the masking collator and `training_step` then trained on, and
every path each rank wrote under output_dir (Python audit events, `torch.save`, safetensors). Recomputing the
order from `EpochSampler`, the seed and the world size would prove the sampler's arithmetic only, not that
accelerate's sharding, the Trainer's skipping of trained batches on resume and `SamplerEpoch` brought those
draws to the model; a resumed distributed run that kept drawing epoch 0's order (why `SamplerEpoch` exists)
would pass such a test. A debug log in the package would be a test hook in the package.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_checkpoints import _losses, _max_weight_diff
from test_distributed import _args, _cli

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hub_server import HubServer, running_hub  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TRACER = REPO / "tests" / "rank_trace.py"
STEPS, PER_DEVICE, SAVE_STEPS = 8, 64, 3  # 503 blocks, global batch 128: 4 steps an epoch
KILL_AFTER = 6  # checkpoint-6 is complete: one node dies inside the second epoch
TOKEN = "hf_twoNodesT0ken_5ecret"
REPO_ID = "tester/two-nodes"


def _run_args(packed_dir: Path, out: Path, **extra) -> list[str]:
    kw = _args(packed_dir, out, per_device=PER_DEVICE, max_steps=STEPS, save_steps=SAVE_STEPS, eval_steps=4)
    kw.update(cpu_threads=1, report_to="none", **extra)  # one thread: the same float sums in every run
    return _cli(kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loopback() -> str:
    names = [name for _, name in socket.if_nameindex()]
    return "lo" if "lo" in names else "lo0"


def _env(out: Path, trace: Path, base: dict | None = None, pause: float = 0.0) -> dict:
    env = dict(
        base if base is not None else {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    )
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        GLOO_SOCKET_IFNAME=_loopback(),  # the two "nodes" talk over loopback only
        MLM_TRACE_DIR=str(trace),
        MLM_TRACE_ROOT=str(out),
        MLM_STEP_PAUSE=str(pause),
    )
    return env


class Nodes:
    """Two torchrun launchers, node ranks 0 and 1, one worker each, logging to `trace`/node<R>.log."""

    def __init__(self, argv: list[str], trace: Path, envs: list[dict]) -> None:
        trace.mkdir(parents=True, exist_ok=True)
        self.trace = trace
        port = _free_port()
        self.procs = []
        for rank, env in enumerate(envs):
            cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1"]
            cmd += ["--node_rank", str(rank), "--master_addr", "127.0.0.1", "--master_port", str(port)]
            with open(trace / f"node{rank}.log", "w") as log:
                self.procs.append(
                    subprocess.Popen(
                        [*cmd, str(TRACER), *argv],
                        cwd=REPO,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # a process group per node: killed whole
                    )
                )

    def log(self, rank: int) -> str:
        return (self.trace / f"node{rank}.log").read_text(errors="replace")[-4000:]

    def kill(self, rank: int) -> None:
        """SIGKILL node `rank`: its worker (torchrun starts it in a session of its own) and its launcher."""
        rank_file = self.trace / f"rank{rank}.jsonl"
        lines = rank_file.read_text().splitlines() if rank_file.is_file() else []
        if lines:
            try:
                os.kill(json.loads(lines[0])["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.procs[rank].pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.procs[rank].wait()

    def wait(self, timeout: float, ranks: tuple[int, ...] = (0, 1)) -> list[int]:
        """The launchers' exit codes; on timeout every node is killed and the test fails."""
        deadline = time.monotonic() + timeout
        try:
            return [self.procs[r].wait(timeout=max(1.0, deadline - time.monotonic())) for r in ranks]
        except subprocess.TimeoutExpired:
            self.kill(0)
            self.kill(1)
            raise AssertionError(
                f"two nodes still running after {timeout} s:\n{self.log(0)}\n--- node 1:\n{self.log(1)}"
            ) from None

    def run(self, timeout: float = 300) -> None:
        codes = self.wait(timeout)
        assert codes == [0, 0], f"exit codes {codes}:\n{self.log(0)}\n--- node 1:\n{self.log(1)}"


@dataclass
class Trace:
    steps: dict[int, dict[int, list[list[int]]]]  # rank -> step -> the draws of each micro-batch
    writes: dict[int, set[tuple[str, str]]]  # rank -> (path under output_dir, how)


def _read_trace(folder: Path) -> Trace:
    steps: dict[int, dict[int, list[list[int]]]] = {0: {}, 1: {}}
    writes: dict[int, set[tuple[str, str]]] = {0: set(), 1: set()}
    for rank in (0, 1):
        for line in (folder / f"rank{rank}.jsonl").read_text().splitlines():
            record = json.loads(line)
            if "step" in record:
                steps[rank].setdefault(record["step"], []).append(record["draws"])
            elif "write" in record:
                writes[rank].add((record["write"], record["op"]))
    return Trace(steps, writes)


def _num_blocks(packed_dir: Path) -> int:
    import datasets

    return len(datasets.load_from_disk(str(packed_dir))["train"])


def _steps_per_epoch(packed_dir: Path) -> int:
    batches = math.ceil(_num_blocks(packed_dir) / PER_DEVICE)
    return math.ceil(batches / 2)  # each process takes every other batch; the last ones are filled up


@dataclass
class Reference:
    out: Path
    trace: Trace
    hub_a: HubServer  # node 0's Hub
    hub_b: HubServer  # node 1's Hub: any push from rank 1 lands here


@pytest.fixture(scope="module")
def reference(packed_dir, tmp_path_factory):
    """The uninterrupted two-node run. Node 0's HF_ENDPOINT is one test Hub, node 1's another."""
    root = tmp_path_factory.mktemp("two_nodes")
    out, trace = root / "run", root / "trace"
    argv = _run_args(packed_dir, out, push_to_hub=True, hub_model_id=REPO_ID, hub_strategy="every_save")
    with running_hub(root / "hub_a") as hub_a, running_hub(root / "hub_b") as hub_b:
        envs = [
            _env(out, trace, hub.client_env(root / f"hf_home{rank}", token=TOKEN, base=_env(out, trace)))
            for rank, hub in enumerate((hub_a, hub_b))
        ]
        Nodes(argv, trace, envs).run()
        yield Reference(out, _read_trace(trace), hub_a, hub_b)


def test_every_block_once_per_epoch(reference, packed_dir):
    n, per_epoch = _num_blocks(packed_dir), _steps_per_epoch(packed_dir)
    assert STEPS == 2 * per_epoch  # the run is two whole epochs
    steps = reference.trace.steps
    for rank in (0, 1):
        assert sorted(steps[rank]) == list(range(1, STEPS + 1)), rank
        for step, batches in steps[rank].items():
            assert [len(b) for b in batches] == [PER_DEVICE], (rank, step)  # one micro-batch a step
            # draw ids are epoch * N + block: each step drew from its own epoch's order
            assert {d // n for d in batches[0]} == {(step - 1) // per_epoch}, (rank, step)
    orders = []
    for epoch in (0, 1):
        # the epoch's draws in the global order: step by step, rank 0's micro-batch, then rank 1's
        span = range(epoch * per_epoch + 1, (epoch + 1) * per_epoch + 1)
        draws = [d for step in span for rank in (0, 1) for d in steps[rank][step][0]]
        blocks = Counter(d % n for d in draws)
        assert set(blocks) == set(range(n)), f"epoch {epoch}: blocks never trained on"
        # once each, but for accelerate's even batches: when the global batch does not divide N, the last
        # micro-batch of the epoch is filled up with the epoch's first draws (as DistributedSampler pads)
        extra = len(draws) - n
        assert 0 <= extra < PER_DEVICE and draws[-extra:] == draws[:extra], epoch
        assert blocks - Counter(range(n)) == Counter(d % n for d in draws[:extra]), epoch
        orders.append([d % n for d in draws[:n]])
    assert orders[0] != orders[1]  # each epoch in its own order


def test_only_rank_0_writes_final_and_pushes(reference):
    out, writes = reference.out, reference.trace.writes
    saved = [*range(SAVE_STEPS, STEPS, SAVE_STEPS), STEPS]
    # rank 1: its RNG state in each checkpoint (made if it is first there), which resuming needs; nothing else
    rng = {(f"checkpoint-{s}/rng_state_1.pth", "torch.save") for s in saved}
    assert rng <= writes[1]
    assert writes[1] <= rng | {(f"checkpoint-{s}", "os.mkdir") for s in saved}, sorted(writes[1])
    # rank 0 writes the rest (the recorder sees these writes when they happen)
    assert {
        ("final", "os.rename"),
        ("metrics.json", "os.rename"),
        ("log_history.json", "os.rename"),
    } <= writes[0]
    assert (f"checkpoint-{STEPS}/model.safetensors", "save_file") in writes[0]
    assert (out / "final" / "model.safetensors").is_file()
    # rank 1 never spoke to its Hub; rank 0 pushed the checkpoints and final/ to its own
    assert reference.hub_b.requests == []
    messages = [c.message for c in reference.hub_a.commits(REPO_ID)]
    assert messages[0] == "initial commit" and f"Training in progress, step {STEPS}" in messages
    assert set(messages[1:]) <= {f"Training in progress, step {s}" for s in saved} | {"End of training"}
    pushed = reference.hub_a.files(REPO_ID)
    assert pushed["model.safetensors"] == (out / "final" / "model.safetensors").read_bytes()
    assert json.loads((out / "metrics.json").read_text())["hub_push_failures"] == []


def test_killed_node_resumes_exactly(reference, packed_dir, tmp_path):
    out = tmp_path / "run"
    argv = _run_args(packed_dir, out)
    killed = tmp_path / "trace_killed"
    nodes = Nodes(argv, killed, [_env(out, killed, pause=1.0)] * 2)  # a pause a step: the kill lands mid-run
    marker = out / f"checkpoint-{KILL_AFTER}" / "checkpoint_complete.json"
    deadline = time.monotonic() + 300
    while not marker.exists():
        if any(p.poll() is not None for p in nodes.procs) or time.monotonic() > deadline:
            nodes.kill(0)
            nodes.kill(1)
            raise AssertionError(f"no checkpoint-{KILL_AFTER}:\n{nodes.log(0)}\n--- node 1:\n{nodes.log(1)}")
        time.sleep(0.02)
    nodes.kill(1)
    # node 0 loses its peer in the next collective and fails by itself (no hang, no final/)
    assert nodes.wait(120, ranks=(0,)) != [0], nodes.log(0)
    assert not (out / "final").exists(), "the run finished before the kill"

    resumed = tmp_path / "trace_resumed"
    Nodes([*argv, "--resume_from_checkpoint"], resumed, [_env(out, resumed)] * 2).run()

    metrics = json.loads((out / "metrics.json").read_text())
    at = int(Path(metrics["resumed_from"]).name.split("-")[1])
    assert KILL_AFTER <= at < STEPS, f"resumed from {metrics['resumed_from']} (a late kill?)"
    assert metrics["steps"] == STEPS
    # what the ranks trained on: the killed run's steps up to the checkpoint, then the resumed run's, are the
    # uninterrupted run's, draw for draw (the resumed run trains no step twice and skips none)
    before, after = _read_trace(killed).steps, _read_trace(resumed).steps
    for rank in (0, 1):
        assert sorted(after[rank]) == list(range(at + 1, STEPS + 1)), rank
        combined = {s: b for s, b in before[rank].items() if s <= at} | after[rank]
        assert combined == reference.trace.steps[rank], rank
    assert _max_weight_diff(reference.out, out) <= 1e-6
    ref_losses, losses = _losses(reference.out), _losses(out)
    assert sorted(losses) == sorted(ref_losses) == list(range(1, STEPS + 1))
    for step, loss in ref_losses.items():
        assert losses[step] == pytest.approx(loss, rel=1e-5), step
    # the resumed rank 1 too wrote only its RNG state
    assert {re.sub(r"^checkpoint-\d+", "checkpoint-N", p) for p, _ in _read_trace(resumed).writes[1]} <= {
        "checkpoint-N",
        "checkpoint-N/rng_state_1.pth",
    }

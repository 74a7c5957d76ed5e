"""Outputs never replace inputs; one run per folder; what killed runs leave is cleaned up; OS errors are one line.

Every case runs the `mlm` command in a subprocess (`python -m mlm ...`, or with a fault injected: `faults.py`)
and checks its exit code, that stderr has exactly one `error:` line and no traceback, and that the inputs
are byte for byte what they were.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data_prep.outputs import hold_lock, lock_path
from mlm.checkpoints import read_complete

sys.path.insert(0, str(Path(__file__).resolve().parent))
import faults  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return {**env, **extra}


def mlm(*args, cwd: Path, fault: str | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `mlm ARGS` in `cwd` (with `fault` injected, see faults.py)."""
    argv = [str(a) for a in args]
    cmd = faults.command(*argv) if fault else [sys.executable, "-m", "mlm", *argv]
    env = _env(MLM_FAULT=fault) if fault else _env()
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start(*args, cwd: Path) -> subprocess.Popen:
    """Start `mlm ARGS` in the background."""
    cmd = [sys.executable, "-m", "mlm", *map(str, args)]
    return subprocess.Popen(
        cmd, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    """Poll until `condition()` holds; fail if `proc` ends first (or after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {what}:\n{proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} after {timeout} s")
        time.sleep(0.2)


def assert_refused(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """Exit code 2, one `error:` line holding every fragment, no traceback; returns the line."""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def snapshot(*roots: Path) -> dict[str, str]:
    """Every entry under `roots`, hidden ones too: a file's sha256, or 'dir'."""
    found = {}
    for root in roots:
        for p in sorted([root, *root.rglob("*")]):
            found[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return found


def hidden_beside(folder: Path) -> list[str]:
    """Entries `.NAME.*` beside `folder`: temporary folders, set-aside outputs, locks."""
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def write_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"text": f"document number {i} says something about topic {i % 7}"} for i in range(120)]
    (folder / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "notes.txt").write_text("the user's own notes, next to the corpus\n")
    return folder


def write_labels(path: Path, n: int = 64) -> Path:
    rows = [
        f"sentence {i} is about {'food' if i % 2 else 'rain'} today,{'food' if i % 2 else 'rain'}"
        for i in range(n)
    ]
    path.write_text("text,label\n" + "\n".join(rows) + "\n")
    return path


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    """The folder the commands run in (their current folder)."""
    folder = tmp_path / "work"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def model_run(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A pretraining run folder `run/` whose `final/` is a tiny BertForMaskedLM with the tiny tokenizer."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    run = tmp_path_factory.mktemp("model") / "run"
    tok = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    config = BertConfig(vocab_size=len(tok), max_position_embeddings=64, **TINY)
    BertForMaskedLM(config).save_pretrained(run / "final")
    tok.save_pretrained(run / "final")
    return run


def finetune_args(model: Path, train: Path, out: Path, epochs: float = 1) -> list:
    return ["finetune", "--model_name_or_path", model, "--train_file", train, "--output_dir", out,
            "--num_train_epochs", epochs, "--max_seq_length", 32, "--use_cpu", "--disable_tqdm", "true"]  # fmt: skip


def pretrain_args(packed: Path, out: Path, **extra) -> list:
    kw = dict(preset="tiny", config_overrides=json.dumps(TINY), max_steps=6, per_device_train_batch_size=8,
              eval_steps=0, save_steps=2, logging_steps=1, use_cpu="true", disable_tqdm="true") | extra  # fmt: skip
    return [
        "pretrain",
        "--data_dir",
        packed,
        "--output_dir",
        out,
        *[x for k, v in kw.items() for x in (f"--{k}", v)],
    ]


# --- an output folder never replaces an input ---------------------------------------------------------


@pytest.mark.parametrize("where", ["corpus_folder", "its_parent"])
def test_prepare_into_the_corpus_folder_or_its_parent_is_refused(tmp_path, work, where):
    corpus = write_corpus(tmp_path / "mine" / "corpus")
    out = corpus if where == "corpus_folder" else corpus.parent
    before = snapshot(tmp_path / "mine")
    proc = mlm("prepare", "--corpus", corpus, "--output_dir", out, cwd=work)
    assert_refused(proc, f"output_dir {out}", str(corpus))
    assert snapshot(tmp_path / "mine") == before
    assert hidden_beside(out) == []


def test_prepare_into_the_folder_of_a_globbed_corpus_is_refused(tmp_path, work):
    corpus = write_corpus(tmp_path / "corpus")
    before = snapshot(corpus)
    proc = mlm("prepare", "--corpus", f"{corpus}/*.jsonl", "--output_dir", corpus, cwd=work)
    assert_refused(proc, f"output_dir {corpus}", "corpus")
    assert snapshot(corpus) == before


@pytest.mark.parametrize("same_as", ["data_dir", "tokenizer_dir"])
def test_pack_into_its_data_dir_or_tokenizer_dir_is_refused(
    tmp_path, work, prepared_dir, tiny_tokenizer_dir, same_as
):
    data, tok = tmp_path / "data", tmp_path / "tok"
    shutil.copytree(prepared_dir, data)
    shutil.copytree(tiny_tokenizer_dir, tok)
    out = data if same_as == "data_dir" else tok
    before = snapshot(data, tok)
    proc = mlm("pack", "--data_dir", data, "--tokenizer_dir", tok, "--output_dir", out, "--max_seq_length", 32,
               cwd=work)  # fmt: skip
    assert_refused(proc, f"output_dir {out}", f"{same_as}: {out}")
    assert snapshot(data, tok) == before


def test_train_tokenizer_into_its_data_dir_is_refused(tmp_path, work, prepared_dir):
    data = tmp_path / "data"
    shutil.copytree(prepared_dir, data)
    before = snapshot(data)
    proc = mlm("train-tokenizer", "--data_dir", data, "--output_dir", data, "--vocab_size", 256, cwd=work)
    assert_refused(proc, f"output_dir {data}", "data_dir")
    assert snapshot(data) == before


@pytest.mark.parametrize("where", ["the_model", "the_run_holding_it"])
def test_finetune_into_its_model_is_refused(tmp_path, work, model_run, where):
    run = tmp_path / "run"
    shutil.copytree(model_run, run)
    train = write_labels(tmp_path / "train.csv")
    out = run / "final" if where == "the_model" else run
    before = snapshot(run, train)
    proc = mlm(*finetune_args(run / "final", train, out), cwd=work)
    assert_refused(proc, f"output_dir {out}", f"model_name_or_path: {run / 'final'}")
    assert snapshot(run, train) == before


def test_pretrain_into_its_data_or_a_foreign_folder_is_refused(tmp_path, work, packed_dir):
    packed = tmp_path / "packed"
    shutil.copytree(packed_dir, packed)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work\n")
    before = snapshot(packed, mine)
    assert_refused(mlm(*pretrain_args(packed, packed), cwd=work), f"output_dir {packed}", "data_dir")
    line = assert_refused(mlm(*pretrain_args(packed, mine), cwd=work), f"output_dir {mine}", "thesis.tex")
    assert "not written by 'pretrain'" in line
    assert snapshot(packed, mine) == before


def test_evaluate_into_its_model_is_refused(tmp_path, work, model_run):
    run = tmp_path / "run"
    shutil.copytree(model_run, run)
    suite = tmp_path / "suite.yaml"
    train = write_labels(tmp_path / "train.csv")
    suite.write_text(f"name: s\ntasks:\n  t:\n    train: {train}\n    test: {train}\n")
    before = snapshot(run, suite, train)
    proc = mlm("evaluate", run / "final", "--suite", suite, "--output_dir", run / "final", cwd=work)
    assert_refused(proc, f"output_dir {run / 'final'}", "model")
    assert snapshot(run, suite, train) == before


def test_recipe_folder_holding_the_corpus_is_refused(tmp_path, work):
    corpus = write_corpus(tmp_path / "proj" / "corpus")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'proj'}\nprepare:\n  corpus: [{corpus / 'c.jsonl'}]\n")
    before = snapshot(tmp_path / "proj", recipe)
    assert_refused(mlm("run", recipe, cwd=work), f"output_dir {tmp_path / 'proj'}", "c.jsonl")
    assert snapshot(tmp_path / "proj", recipe) == before


def test_an_existing_file_as_output_dir_is_refused_and_kept(tmp_path, work):
    corpus = write_corpus(tmp_path / "corpus")
    target = tmp_path / "results.csv"
    target.write_text("a,b\n1,2\n")
    before = snapshot(corpus, target)
    proc = mlm("prepare", "--corpus", corpus, "--output_dir", target, cwd=work)
    assert_refused(proc, f"output_dir {target}", "existing file")
    assert snapshot(corpus, target) == before
    assert hidden_beside(target) == []  # not renamed aside to .results.csv.old-PID


def test_the_current_folder_as_output_dir_is_refused(tmp_path, work):
    corpus = write_corpus(work / "corpus")
    before = snapshot(work)
    for output_dir in (".", str(work), ".."):
        assert_refused(mlm("prepare", "--corpus", corpus, "--output_dir", output_dir, cwd=work), output_dir)
    assert snapshot(work) == before


def test_only_the_same_steps_output_is_replaced(tmp_path, work, tiny_tokenizer_dir):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "data"
    first = mlm("prepare", "--corpus", corpus, "--output_dir", out, cwd=work)
    assert first.returncode == 0, first.stderr[-3000:]
    again = mlm("prepare", "--corpus", corpus, "--output_dir", out, "--seed", 7, cwd=work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads((out / "mlm_step.json").read_text())["config"]["seed"] == 7
    assert hidden_beside(out) == []
    tok = tmp_path / "tok"
    shutil.copytree(tiny_tokenizer_dir, tok)
    before = snapshot(tok)
    proc = mlm("prepare", "--corpus", corpus, "--output_dir", tok, cwd=work)
    assert_refused(proc, f"output_dir {tok}", "'tokenizer' step")
    assert snapshot(tok) == before


# --- one run per folder -------------------------------------------------------------------------------


def test_a_folder_in_use_is_refused_naming_its_owner(tmp_path, work):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "data"
    with hold_lock(out):
        proc = mlm("prepare", "--corpus", corpus, "--output_dir", out, cwd=work)
        assert lock_path(out).is_file()  # still ours
    pattern = f"is in use by PID {os.getpid()} on {socket.gethostname()} (started "
    assert_refused(proc, str(out), pattern)
    assert not out.exists() and hidden_beside(out) == []


def test_two_pretraining_runs_into_one_folder(tmp_path, work, packed_dir):
    out = tmp_path / "run"
    first = start(*pretrain_args(packed_dir, out, max_steps=100000, save_steps=1000), cwd=work)
    try:
        wait_for(lambda: lock_path(out).is_file(), first, "lock")
        second = mlm(*pretrain_args(packed_dir, out), cwd=work)
        assert_refused(second, str(out), f"is in use by PID {first.pid} on {socket.gethostname()}")
    finally:
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr and not lock_path(out).exists()


def test_a_stale_lock_is_taken_over(tmp_path, work):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "data"
    # a run killed while it held the lock
    killed = subprocess.run(
        [sys.executable, "-c", "import os, signal, sys; from data_prep.outputs import hold_lock; "
         "held = hold_lock(sys.argv[1]); held.__enter__(); print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)",
         str(out)],
        capture_output=True, text=True, env=_env(),
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL and lock_path(out).is_file(), killed.stderr[-3000:]
    proc = mlm("prepare", "--corpus", corpus, "--output_dir", out, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stdout.splitlines() if "taking over the lock" in line]
    assert len(notes) == 1 and f"PID {killed.stdout.strip()} on {socket.gethostname()}" in notes[0]
    assert (out / "mlm_step.json").is_file() and hidden_beside(out) == []


def test_an_unreadable_lock_is_taken_over(tmp_path, work):
    """A lock file that names no owner filelock can read (one an earlier version of mlm wrote, say)."""
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "data"
    lock_path(out).write_text('{"pid": 4242, "host": "elsewhere", "started": "2020-01-01 00:00:00"}\n')
    proc = mlm("prepare", "--corpus", corpus, "--output_dir", out, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [line for line in proc.stdout.splitlines() if "taking over the lock" in line]
    assert len(notes) == 1 and "an unreadable owner" in notes[0]
    assert (out / "mlm_step.json").is_file() and hidden_beside(out) == []


def test_sigterm_releases_the_lock_and_removes_the_temporary_folder(tmp_path, work, model_run):
    train = write_labels(tmp_path / "train.csv", n=512)
    out = tmp_path / "cls"
    proc = start(*finetune_args(model_run / "final", train, out, epochs=1000), cwd=work)
    try:
        wait_for(lambda: any(n.startswith(".cls.tmp-") for n in hidden_beside(out)), proc, "temporary folder")
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Traceback" not in stderr
    assert not out.exists() and hidden_beside(out) == []


# --- what killed runs leave ---------------------------------------------------------------------------


def test_leftovers_of_a_killed_finetune_are_removed_by_the_next_run(tmp_path, work, model_run):
    train = write_labels(tmp_path / "train.csv", n=512)
    out = tmp_path / "cls"
    proc = start(*finetune_args(model_run / "final", train, out, epochs=1000), cwd=work)
    try:
        wait_for(lambda: any(n.startswith(".cls.tmp-") for n in hidden_beside(out)), proc, "temporary folder")
    finally:
        proc.kill()
        proc.communicate(timeout=60)
    assert [n for n in hidden_beside(out) if n.startswith(".cls.tmp-")] and lock_path(out).is_file()
    rerun = mlm(*finetune_args(model_run / "final", write_labels(tmp_path / "small.csv"), out), cwd=work)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    cleaned = [line for line in rerun.stdout.splitlines() if "removed what an interrupted run left" in line]
    assert len(cleaned) == 1 and ".cls.tmp-" in cleaned[0]
    assert (out / "metrics.json").is_file() and hidden_beside(out) == []


def test_leftovers_beside_a_prepare_output_are_removed(tmp_path, work):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "data"
    for name in (".data.tmp-x1y2", ".data.old-4242", ".data.deleting-4243"):
        (tmp_path / name / "train").mkdir(parents=True)
        (tmp_path / name / "train" / "data-00000-of-00001.arrow").write_bytes(b"\0" * 1000)
    proc = mlm("prepare", "--corpus", corpus, "--output_dir", out, cwd=work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sum("removed what an interrupted run left" in line for line in proc.stdout.splitlines()) == 1
    assert hidden_beside(out) == [] and (out / "mlm_step.json").is_file()


# --- OS errors ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, message",
    [("EROFS", "cannot write {}: Read-only file system"), ("EACCES", "cannot access {}: Permission denied")],
)
def test_a_folder_that_cannot_be_written_is_one_error_line(tmp_path, work, code, message):
    corpus = write_corpus(tmp_path / "corpus")
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "keep.txt").write_text("kept\n")
    before = snapshot(corpus, locked)
    proc = mlm("prepare", "--corpus", corpus, "--output_dir", locked / "data", cwd=work,
               fault=f"readonly:{code}:{locked}")  # fmt: skip
    assert_refused(proc, message.format(locked))
    assert snapshot(corpus, locked) == before


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes into read-only folders; the fault-injected test covers it"
)
def test_a_read_only_folder_is_one_error_line(tmp_path, work):
    corpus = write_corpus(tmp_path / "corpus")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = mlm("prepare", "--corpus", corpus, "--output_dir", locked / "data", cwd=work)
    finally:
        locked.chmod(0o755)
    assert_refused(proc, f"cannot access {locked}: Permission denied")
    assert list(locked.iterdir()) == []


def test_a_full_disk_in_prepare_keeps_the_previous_output(tmp_path, work):
    corpus = write_corpus(tmp_path / "corpus")
    out = tmp_path / "data"
    assert mlm("prepare", "--corpus", corpus, "--output_dir", out, cwd=work).returncode == 0
    before = snapshot(corpus, out)
    proc = mlm(
        "prepare", "--corpus", corpus, "--output_dir", out, "--seed", 7, cwd=work, fault="arrow-enospc"
    )
    assert_refused(proc, f"cannot write {out}", "No space left on device")
    assert snapshot(corpus, out) == before
    assert hidden_beside(out) == []


def test_a_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, work, packed_dir):
    out = tmp_path / "run"
    args = pretrain_args(packed_dir, out, save_total_limit=1)
    proc = mlm(*args, cwd=work, fault="safetensors-enospc:2")  # checkpoint-2 saves, checkpoint-4 fails
    assert_refused(proc, f"cannot write {out}", "No space left on device")
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-2", "mlm_step.json"]
    assert read_complete(out / "checkpoint-2") is not None and hidden_beside(out) == []
    resumed = mlm(*args, "--resume_from_checkpoint", cwd=work)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from"].endswith("checkpoint-2") and metrics["steps"] == 6

"""What goes to the Hub: only the files a model repo needs, records without local paths, a run folder refused,
and a fine-tuned classifier pushed with its card (against the local test Hub, tests/hub_server.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_server  # noqa: E402
import test_finetune_problem_types  # noqa: E402
import test_hub  # noqa: E402
from hub_server import HubServer  # noqa: E402
from test_finetune import sentiment_rows, write_csv  # noqa: E402

from mlm.cli import main  # noqa: E402

hub = hub_server.hub  # fixtures of other test files
tiny_model = test_hub.tiny_model
checkpoint = test_finetune_problem_types.checkpoint
REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_polishPushT0ken_0123456789"


def run(args: list[str], env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mlm", *map(str, args)], env=env, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_push_sends_what_a_model_repo_needs_and_no_local_path(
    hub: HubServer, tiny_model: Path, tmp_path: Path
):
    import torch

    folder = shutil.copytree(tiny_model, tmp_path / "work" / "final")
    torch.save({"output_dir": "runs/x"}, folder / "training_args.bin")
    step = {"step": "pretrain", "config": {"data_dir": str(tmp_path / "packed"), "output_dir": "runs/demo/pretrain",
            "corpus": ["hf:imdb", str(tmp_path / "c.jsonl")], "base": "someone/bert", "preset": "tiny"},
            "inputs": {"tokenizer_dir": str(tmp_path / "tok")}}  # fmt: skip
    (folder / "mlm_step.json").write_text(json.dumps(step))
    for name in ("predictions.jsonl", "log_history.json", "metrics.json"):
        (folder / name).write_text("{}\n")
    (folder / "checkpoint-2").mkdir()
    (folder / "checkpoint-2" / "config.json").write_text("{}")
    (folder / "generator").mkdir()  # a model beside the model (ELECTRA's generator): pushed with it
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        shutil.copy(folder / name, folder / "generator" / name)
    (folder / "generator" / "notes.txt").write_text("x")
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "README.md"}
    env = {**hub.client_env(tmp_path / "home", token=TOKEN), "HF_HUB_DISABLE_PROGRESS_BARS": "0"}
    r = run(["push", folder, "tester/files"], env)
    assert r.returncode == 0, r.stderr
    # the weights' upload bar: bytes, elapsed<ETA, rate (huggingface_hub's); none with --quiet
    assert re.search(
        r"model\.safetensors: 100%\|[^\r\n]*\[\d\d:\d\d<\d\d:\d\d, +[\d.]+ ?\w*B/s\]", r.stderr
    ), r.stderr
    quiet = run(["push", folder, "tester/quiet", "--quiet"], env)
    assert quiet.returncode == 0 and "%|" not in quiet.stderr, quiet.stderr
    files = hub.files("tester/files")
    assert set(files) == {
        ".gitattributes",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "run_info.json",
        "mlm_step.json",
        "generator/config.json",
        "generator/model.safetensors",
        "generator/tokenizer.json",
    }
    assert (
        "not pushed (not part of a model repo): checkpoint-2/, generator/notes.txt, log_history.json, metrics.json, "
        "predictions.jsonl, training_args.bin" in r.stderr
    )
    pushed = json.loads(files["mlm_step.json"])
    assert pushed["config"] == {"data_dir": "packed", "output_dir": "pretrain", "corpus": ["hf:imdb", "c.jsonl"],
                                "base": "someone/bert", "preset": "tiny"}  # fmt: skip
    assert pushed["inputs"] == {"tokenizer_dir": "tok"}
    assert str(tmp_path).encode() not in b"".join(files.values())
    assert json.loads(files["run_info.json"])["corpus"]["spec"] == ["builtin:pydocs"]
    assert {
        p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "README.md"
    } == before


def test_push_refuses_a_run_folder_and_names_the_models_in_it(tiny_model: Path, tmp_path: Path, capsys):
    run_folder = tmp_path / "pretrain"
    shutil.copytree(tiny_model, run_folder / "final")
    shutil.copytree(tiny_model, run_folder / "checkpoint-500")
    (run_folder / "metrics.json").write_text("{}")
    assert main(["push", str(run_folder), "tester/x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: cannot push {run_folder}: it is not a model folder; push a model folder inside it: "
                   f"{run_folder / 'final'}, {run_folder / 'checkpoint-500'}")  # fmt: skip
    shutil.rmtree(run_folder / "final")
    assert main(["push", str(run_folder), "tester/x"]) == 2
    assert str(run_folder / "checkpoint-500") in capsys.readouterr().err


def test_finetune_pushes_the_classifier_with_its_card(hub: HubServer, checkpoint: Path, tmp_path: Path):
    from huggingface_hub import ModelCard

    rows = [{"text": r["text"], "label": 1 if r["label"] == "pos" else 0} for r in sentiment_rows(64, seed=1)]
    train, test = write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "test.csv", rows[:16])
    out = tmp_path / "cls"
    args = ["finetune", "--model_name_or_path", checkpoint, "--train_file", train, "--test_file", test, "--output_dir", out,
            "--num_train_epochs", "1", "--use_cpu", "--max_seq_length", "32", "--class_names", "negative", "positive",
            "--push_to_hub", "--hub_model_id", "tester/sentiment", "--hub_private_repo", "--license", "mit",
            "--language", "en", "--datasets", "someone/reviews"]  # fmt: skip
    r = run(args, hub.client_env(tmp_path / "home", token=TOKEN))
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"pushed cls to {hub.url}/tester/sentiment (commit" in r.stderr
    assert "LOAD REPORT" not in r.stdout + r.stderr and "{'loss'" not in r.stdout + r.stderr  # no --verbose
    assert hub.repos["tester/sentiment"].private
    files = hub.files("tester/sentiment")
    assert {"model.safetensors", "config.json", "tokenizer.json", "README.md", "run_info.json"} <= set(files)
    assert not {"predictions.jsonl", "log_history.json", "metrics.json"} & set(files)
    assert json.loads(files["config.json"])["id2label"] == {"0": "negative", "1": "positive"}
    card = ModelCard(files["README.md"].decode())
    assert (
        card.data.license == "mit"
        and card.data.language == "en"
        and card.data.datasets == ["someone/reviews"]
    )
    assert {(e.dataset_split, e.metric_type, str(e.metric_args)) for e in card.data.eval_results} == {
        ("test", "accuracy", "None"),
        ("test", "f1", "{'average': 'macro'}"),
    }
    assert "# sentiment" in card.text and 'model="tester/sentiment"' in card.text
    assert files["README.md"] == (out / "README.md").read_bytes()  # the local card names the repo too
    assert TOKEN not in r.stdout + r.stderr and str(tmp_path).encode() not in b"".join(files.values())


def test_saved_weights_are_as_readable_as_the_other_files(checkpoint: Path, tmp_path: Path):
    from mlm.finetune import FinetuneConfig, finetune

    rows = sentiment_rows(16, seed=1)
    train = write_csv(tmp_path / "train.csv", rows)
    out = tmp_path / "cls"
    finetune(FinetuneConfig(model_name_or_path=str(checkpoint), train_file=str(train), output_dir=str(out), max_steps=1,
                            use_cpu=True, disable_tqdm=True, max_seq_length=32))  # fmt: skip
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.iterdir() if p.is_file()}
    assert modes["model.safetensors"] == modes["config.json"] == 0o666 & ~umask, modes


@pytest.mark.parametrize("value, public", [("/home/me/data/train.csv", "train.csv"), ("runs/a/b", "b"),
                                           ("someone/bert", "someone/bert"), ("hf:glue:sst2@train", "hf:glue:sst2@train"),
                                           ("linear", "linear"), ("~/x/y.txt", "y.txt")])  # fmt: skip
def test_local_paths_are_cut_to_their_name(value: str, public: str):
    from mlm.hub.files import without_local_paths

    assert without_local_paths({"a": [value]}) == {"a": [public]}

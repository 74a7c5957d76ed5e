"""Hub publishing against a local Hub-compatible server (tests/hub_server.py).

The real `huggingface_hub` client reads HF_ENDPOINT / HF_HUB_DISABLE_XET when it is imported, so every client call
runs in a subprocess started with `hub.client_env(...)`; this process only drives the server and checks its state.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_server  # noqa: E402
from hub_server import HubServer  # noqa: E402

hub = hub_server.hub  # the server fixture: a fresh test Hub per test

REPO_ROOT = Path(__file__).resolve().parents[1]
# A distinctive fake token: it must never show up in a file, a Hub commit or any output.
TOKEN = "hf_mlmTestT0ken_d3adb33fc0ffee5eed"
RUN_INFO = {
    "kind": "pretrain",
    "objective": {"name": "mlm", "description": "masked language modelling", "pipeline_tag": "fill-mask"},
    "license": "mit",
    "language": "en",
    "corpus": {
        "spec": "builtin:pydocs",
        "documents": 321,
        "tokens": 45678,
        "fingerprint": "0123abcd4567ef89",
    },
    "tokenizer": {"kind": "wordpiece", "vocab_size": 64},
    "model": {"preset": "tiny", "num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 2},
    "training": {"steps": 4, "batch_size": 8, "learning_rate": 0.001, "lr_scheduler_type": "linear"},
    "eval": {"eval_loss": 3.98765, "perplexity": 53.9321, "masked_accuracy": 0.1234},
}


# ---- helpers -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny BertForMaskedLM (hidden 32, 2 layers) + WordPiece tokenizer, saved with safetensors."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, BertForMaskedLM, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("tiny") / "final"
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials + [f"w{i}" for i in range(59)])}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
        mask_token="[MASK]",
    )  # fmt: skip
    config = BertConfig(
        vocab_size=64, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=32,
    )  # fmt: skip
    model = BertForMaskedLM(config)
    model.save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    (folder / "run_info.json").write_text(json.dumps(RUN_INFO))
    return folder


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _run(args: list[str], env: dict, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): _sha256(p) for p in folder.rglob("*") if p.is_file()}


def _assert_token_nowhere(token: str, roots: list[Path], *outputs: str) -> None:
    needle = token.encode()
    checked = 0
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                checked += 1
                assert needle not in path.read_bytes(), f"the token was written into {path}"
    assert checked > 0
    for out in outputs:
        assert token not in out, "the token appears in captured output"


# ---- push a folder, download it back -------------------------------------------------------------------------
def test_push_then_download_roundtrip(hub: HubServer, tiny_model: Path, tmp_path: Path):
    folder = _copy(tiny_model, tmp_path / "final")
    env = hub.client_env(tmp_path / "hf_home", token=TOKEN)
    push = _run(
        ["-m", "mlm", "push", str(folder), "tester/tiny-bert", "--commit_message", "first model"], env
    )
    assert push.returncode == 0, push.stderr
    commit = hub.commits("tester/tiny-bert")[-1].oid
    assert (
        f"pushed final to {hub.url}/tester/tiny-bert (commit {hub.url}/tester/tiny-bert/commit/{commit})"
        in push.stderr
    )

    # model.safetensors went through LFS: batch, then PUT of exactly its sha256, and the commit references it
    weights_sha = _sha256(folder / "model.safetensors")
    assert hub.calls("POST", r"^/tester/tiny-bert\.git/info/lfs/objects/batch$")
    assert [c.path for c in hub.calls("PUT")] == [f"/lfs-upload/{weights_sha}"]
    entry = hub.entry("tester/tiny-bert", "model.safetensors")
    assert entry.lfs and entry.sha256 == weights_sha
    assert not hub.entry("tester/tiny-bert", "config.json").lfs
    commits = hub.commits("tester/tiny-bert")
    assert [c.message for c in commits] == ["initial commit", "first model"]
    assert not hub.repos["tester/tiny-bert"].private
    remote = hub.files("tester/tiny-bert")
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "run_info.json"} <= set(remote)
    assert remote["README.md"] == (folder / "README.md").read_bytes()  # the card was written locally too
    assert b"pipeline_tag: fill-mask" in remote["README.md"]

    # download through the same server, in a fresh cache: snapshot_download and from_pretrained(REPO_ID)
    script = textwrap.dedent(
        """
        import hashlib, json, sys
        from huggingface_hub import snapshot_download
        from transformers import AutoModelForMaskedLM
        local = snapshot_download("tester/tiny-bert", local_dir=sys.argv[1])
        model = AutoModelForMaskedLM.from_pretrained("tester/tiny-bert")
        sha = hashlib.sha256(open(local + "/model.safetensors", "rb").read()).hexdigest()
        print(json.dumps({"sha": sha, "params": model.num_parameters(), "cls": type(model).__name__}))
        """
    )
    down = _run(
        ["-c", script, str(tmp_path / "downloaded")], hub.client_env(tmp_path / "hf_home2", token=TOKEN)
    )
    assert down.returncode == 0, down.stderr
    result = json.loads(down.stdout.strip().splitlines()[-1])
    assert result["sha"] == weights_sha
    assert result["cls"] == "BertForMaskedLM"
    assert _sha256(tmp_path / "downloaded" / "model.safetensors") == weights_sha
    # from_pretrained resolved through the Hub (its own cache was empty): the weights came from the "CDN" host
    assert len(hub.calls("GET", f"/lfs-cdn/{weights_sha}", server="cdn")) == 2
    assert not [c for c in hub.calls(server="cdn") if c.auth], (
        "the token must not be sent to the storage host"
    )
    _assert_token_nowhere(
        TOKEN, [folder, tmp_path / "downloaded", hub.root], push.stdout, push.stderr, down.stdout, down.stderr
    )


def test_retries_on_500_then_pushes_to_a_new_branch(hub: HubServer, tiny_model: Path, tmp_path: Path):
    folder = _copy(tiny_model, tmp_path / "final")
    hub.fail_next(2, r"/commit/", 500)
    env = hub.client_env(tmp_path / "hf_home", token=TOKEN)
    r = _run(
        [
            "-m",
            "mlm",
            "push",
            str(folder),
            "tester/retry",
            "--revision",
            "dev",
            "--retry_backoff_s",
            "0.05",
            "--private",
        ],
        env,
    )
    assert r.returncode == 0, r.stderr
    assert "push to tester/retry failed (500), retrying in 0.1 s (attempt 2/5)" in r.stderr
    assert "push to tester/retry failed (500), retrying in 0.1 s (attempt 3/5)" in r.stderr
    assert [c.status for c in hub.calls("POST", "/commit/")] == [500, 500, 200]
    assert len(hub.calls("PUT", "/lfs-upload/")) == 1  # the retried commits reuse the uploaded LFS object
    assert [c.message for c in hub.commits("tester/retry", "main")] == ["initial commit"]
    assert len(hub.commits("tester/retry", "dev")) == 2
    assert "model.safetensors" in hub.files("tester/retry", "dev")
    assert hub.repos["tester/retry"].private  # --private


def test_auth_errors_exit_2_and_keep_everything(hub: HubServer, tiny_model: Path, tmp_path: Path):
    folder = _copy(tiny_model, tmp_path / "final")
    before = _snapshot(folder)
    hub.require_token({"hf_the_only_valid_write_token": "write", "hf_read_only_token_123": "read"})
    hub.create_repo("tester/locked")
    outputs = []

    # a wrong token: 401
    r = _run(
        ["-m", "mlm", "push", str(folder), "tester/locked"], hub.client_env(tmp_path / "home", token=TOKEN)
    )
    outputs += [r.stdout, r.stderr]
    assert r.returncode == 2, r.stderr
    assert (
        r.stderr.strip().splitlines()[-1]
        == "error: not logged in or no write access to tester/locked (HTTP 401)"
    )
    assert "Traceback" not in r.stderr

    # a read-only token: 403 on an existing repo
    ro = hub.client_env(tmp_path / "home", token="hf_read_only_token_123")
    r = _run(["-m", "mlm", "push", str(folder), "tester/locked"], ro)
    outputs += [r.stdout, r.stderr]
    assert r.returncode == 2
    assert (
        r.stderr.strip().splitlines()[-1]
        == "error: not logged in or no write access to tester/locked (HTTP 403)"
    )

    # no token at all: a clear message before any request
    n = len(hub.requests)
    r = _run(
        ["-m", "mlm", "push", str(folder), "tester/locked"], hub.client_env(tmp_path / "home", token=None)
    )
    outputs += [r.stdout, r.stderr]
    assert r.returncode == 2
    assert "not logged in: no Hugging Face token found" in r.stderr and "HF_TOKEN" in r.stderr
    assert len(hub.requests) == n

    # nothing local lost or changed (only the generated card was added), nothing committed
    after = _snapshot(folder)
    assert {k: v for k, v in after.items() if k != "README.md"} == before
    assert [c.message for c in hub.commits("tester/locked")] == ["initial commit"]
    _assert_token_nowhere(TOKEN, [folder, hub.root, tmp_path / "home"], *outputs)


def test_push_rejects_missing_folder_and_token_in_files(hub: HubServer, tiny_model: Path, tmp_path: Path):
    env = hub.client_env(tmp_path / "home", token=TOKEN)
    r = _run(["-m", "mlm", "push", str(tmp_path / "nope"), "tester/x"], env)
    assert r.returncode == 2 and "error: cannot push" in r.stderr and "no such folder" in r.stderr
    folder = _copy(tiny_model, tmp_path / "final")
    (folder / "leaky_config.json").write_text(json.dumps({"hub_token": TOKEN}))
    r = _run(["-m", "mlm", "push", str(folder), "tester/x"], env)
    assert r.returncode == 2
    assert "leaky_config.json contains your Hugging Face token" in r.stderr
    assert TOKEN not in r.stderr + r.stdout
    (folder / "leaky_config.json").unlink()
    offline = dict(env, HF_HUB_OFFLINE="1")
    r = _run(["-m", "mlm", "push", str(folder), "tester/x"], offline)
    assert r.returncode == 2 and "HF_HUB_OFFLINE=1 is set" in r.stderr
    assert not hub.requests


def _recipe_output(root: Path, model: Path) -> Path:
    """What `mlm run` leaves: a report at the root, the pretraining run, and fine-tuning's two classifiers."""
    for sub in ("pretrain/final", "pretrain/checkpoint-2", "pretrain/checkpoint-4", "finetune/pretrained",
                "finetune/scratch"):  # fmt: skip
        shutil.copytree(model, root / sub)
    (root / "README.md").write_text("# report\n")
    (root / "mlm_step.json").write_text("{}")
    (root / "finetune" / "report.md").write_text("x")
    return root


def test_push_takes_model_folders_only_and_creates_nothing_otherwise(
    hub: HubServer, tiny_model: Path, tmp_path: Path
):
    root = _recipe_output(tmp_path / "runs" / "demo", tiny_model)
    env = hub.client_env(tmp_path / "home", token=TOKEN)
    models = {
        root: [root / "finetune/pretrained", root / "finetune/scratch", root / "pretrain/final",
               root / "pretrain/checkpoint-4", root / "pretrain/checkpoint-2"],
        root / "finetune": [root / "finetune/pretrained", root / "finetune/scratch"],
        root / "pretrain": [root / "pretrain/final", root / "pretrain/checkpoint-4", root / "pretrain/checkpoint-2"],
    }  # fmt: skip
    for folder, inside in models.items():
        r = _run(["-m", "mlm", "push", str(folder), "tester/broken"], env)
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert r.stderr.strip().splitlines() == [
            f"error: cannot push {folder}: it is not a model folder; push a model folder inside it: "
            + ", ".join(map(str, inside))
        ]
    (tmp_path / "empty").mkdir()
    no_weights = _copy(tiny_model, tmp_path / "no_weights")
    (no_weights / "model.safetensors").unlink()
    pickled = _copy(tiny_model, tmp_path / "pickled")
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    cut = _copy(tiny_model, tmp_path / "cut")
    (cut / "model.safetensors").write_bytes((tiny_model / "model.safetensors").read_bytes()[:1000])
    for folder, why in [(tmp_path / "empty", "it holds no model"), (no_weights, "it holds no model"),
                        (pickled, "its weights are pickled"), (cut, "model.safetensors is damaged")]:  # fmt: skip
        r = _run(["-m", "mlm", "push", str(folder), "tester/broken"], env)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and why in r.stderr, r.stderr
    assert not hub.requests and "tester/broken" not in hub.repos  # nothing created, nothing asked


PUSH_BOTH_WAYS = textwrap.dedent(
    """
    import sys
    from mlm.hub import HubPushCallback, PushConfig, push
    push(PushConfig(folder=sys.argv[1], repo_id="tester/by-push"))
    assert HubPushCallback("tester/by-callback", strategy="end").finish(sys.argv[1]) == []
    """
)


def test_push_and_push_to_hub_send_the_same_files_and_no_pickle(
    hub: HubServer, tiny_model: Path, tmp_path: Path
):
    import torch

    folder = _copy(tiny_model, tmp_path / "final")
    torch.save({"output_dir": "x"}, folder / "training_args.bin")
    torch.save({"state": 1}, folder / "optimizer.pt")
    torch.save({"w": torch.zeros(1)}, folder / "pytorch_model.bin")
    (folder / "trainer_state.json").write_text("{}")
    r = _run(["-c", PUSH_BOTH_WAYS, str(folder)], hub.client_env(tmp_path / "home", token=TOKEN))
    assert r.returncode == 0, r.stderr[-3000:]
    by_push, by_callback = set(hub.files("tester/by-push")), set(hub.files("tester/by-callback"))
    assert by_push == by_callback
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "run_info.json"} <= by_push
    assert not [name for name in by_push if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert (
        "not pushed (not part of a model repo): optimizer.pt, pytorch_model.bin, trainer_state.json, training_args.bin"
        in r.stderr
    )


def test_no_two_hub_modules_import_each_other():
    """Not even lazily inside a function: the Hub package's modules form layers (client, files, push, ...)."""
    import ast

    hub_dir = REPO_ROOT / "mlm" / "hub"
    imports = {}
    for path in hub_dir.glob("*.py"):
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlm.hub."):
                found.add(node.module.split(".")[2])
            elif isinstance(node, ast.Import):
                found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("mlm.hub.")}
        imports[path.stem] = found
    assert imports["files"] and imports["push"]  # the scan sees imports
    pairs = {tuple(sorted((a, b))) for a, found in imports.items() for b in found if a in imports.get(b, ())}
    assert not pairs


# ---- background pushes during training ----------------------------------------------------------------------
TRAIN_SCRIPT = textwrap.dedent(
    '''
    import hashlib, json, sys
    from pathlib import Path

    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, Trainer, TrainerCallback, TrainingArguments

    from mlm.hub import HubPushCallback, resume_from_hub

    spec = json.loads(sys.argv[1])
    torch.set_num_threads(1)


    class Data(torch.utils.data.Dataset):
        def __len__(self):
            return 64

        def __getitem__(self, i):
            ids = torch.randint(5, 64, (16,), generator=torch.Generator().manual_seed(i))
            return {"input_ids": ids, "attention_mask": torch.ones(16, dtype=torch.long), "labels": ids.clone()}


    class WriteRunInfo(TrainerCallback):
        """What the pretraining code does: run_info.json in every checkpoint."""

        def on_save(self, args, state, control, **kwargs):
            info = dict(spec["run_info"], training={"steps": state.global_step, "batch_size": 8})
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}" / "run_info.json"
            path.write_text(json.dumps(info))


    class Sync(TrainerCallback):
        """Let each push finish before training goes on, so the test can count one commit per save."""

        def __init__(self, cb):
            self.cb = cb

        def on_save(self, args, state, control, **kwargs):
            self.cb.wait()


    class FirstStep(TrainerCallback):
        first = None

        def on_step_end(self, args, state, control, **kwargs):
            if self.first is None:
                self.first = state.global_step


    def train(out, max_steps, strategy=None, repo=None, resume=None):
        tok = AutoTokenizer.from_pretrained(spec["model"])
        model = AutoModelForMaskedLM.from_pretrained(spec["model"])
        args = TrainingArguments(
            output_dir=out, max_steps=max_steps, save_strategy="steps", save_steps=2, save_total_limit=1,
            per_device_train_batch_size=8, learning_rate=1e-3, logging_steps=1000, report_to="none",
            use_cpu=True, disable_tqdm=True, seed=0,
        )
        first = FirstStep()
        callbacks = [WriteRunInfo(), first]
        cb = None
        if strategy:
            cb = HubPushCallback(repo, strategy=strategy, max_retries=spec["max_retries"], retry_backoff_s=0.02)
            callbacks += [cb, Sync(cb)]
        trainer = Trainer(model=model, args=args, train_dataset=Data(), processing_class=tok, callbacks=callbacks)
        result = trainer.train(resume_from_checkpoint=resume)
        final = Path(out) / "final"
        trainer.save_model(str(final))
        (final / "run_info.json").write_text(json.dumps(spec["run_info"]))
        failures = cb.finish(final) if cb else []
        return {"global_step": result.global_step, "first_step": first.first, "failures": failures, "pushed": cb.pushed if cb else [],
                "skipped": cb.skipped if cb else []}


    def shas(folder):
        folder = Path(folder)
        return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in folder.rglob("*") if p.is_file()}


    results = {}
    for run in spec["runs"]:
        if run.get("resume_repo"):
            path = resume_from_hub(run["resume_repo"], run["download_to"])
            results[run["name"] + "_downloaded"] = {"path": path, "shas": shas(path)}
            run["resume_from_checkpoint"] = path
        results[run["name"]] = train(run["out"], run["max_steps"], run.get("strategy"), run.get("repo"),
                                     run.get("resume_from_checkpoint"))
        results[run["name"]]["local"] = {p.name: shas(p) for p in Path(run["out"]).glob("checkpoint-*")}
    print("RESULT " + json.dumps(results))
    '''
)


def _train(env: dict, tmp_path: Path, model: Path, runs: list[dict], max_retries: int = 3):
    script = tmp_path / "train_script.py"
    script.write_text(TRAIN_SCRIPT)
    spec = {"model": str(model), "run_info": RUN_INFO, "runs": runs, "max_retries": max_retries}
    r = _run([str(script), json.dumps(spec)], env, timeout=240)
    assert r.returncode == 0, r.stderr[-4000:]
    line = [x for x in r.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :]), r


def test_callback_pushes_every_save_and_checkpoint_then_resumes(
    hub: HubServer, tiny_model: Path, tmp_path: Path
):
    env = hub.client_env(tmp_path / "hf_home", token=TOKEN)
    runs = [
        {"name": "every", "out": str(tmp_path / "every"), "max_steps": 4, "strategy": "every_save",
         "repo": "tester/every"},
        {"name": "ckpt", "out": str(tmp_path / "ckpt"), "max_steps": 4, "strategy": "checkpoint",
         "repo": "tester/ckpt"},
        {"name": "resumed", "out": str(tmp_path / "resumed"), "max_steps": 6, "resume_repo": "tester/ckpt",
         "download_to": str(tmp_path / "from_hub")},
    ]  # fmt: skip
    results, proc = _train(env, tmp_path, tiny_model, runs)

    # every_save: one commit per save (steps 2 and 4), then the final model
    every = results["every"]
    assert every["failures"] == [] and every["skipped"] == [] and len(every["pushed"]) == 3
    messages = [c.message for c in hub.commits("tester/every")]
    assert messages == ["initial commit", "Training in progress, step 2", "Training in progress, step 4",
                        "End of training"]  # fmt: skip
    step2 = hub.commits("tester/every")[1]
    assert "model.safetensors" in step2.files and "tokenizer.json" in step2.files
    assert not any(
        p.startswith(("optimizer", "scheduler", "rng_state", "trainer_state")) for p in step2.files
    )
    card = hub.files("tester/every", step2.oid)["README.md"].decode()
    assert "| Perplexity | 53.93 |" in card and "- Steps: 2" in card  # from the checkpoint's run_info.json
    assert not any(
        p.startswith("last-checkpoint/") or "training_args.bin" in p for p in hub.files("tester/every")
    )
    # the pushed weights are the local checkpoint's (checkpoint-4 survives save_total_limit=1)
    local4 = every["local"]["checkpoint-4"]
    assert (
        hub.entry("tester/every", "model.safetensors", hub.commits("tester/every")[2].oid).sha256
        == (local4["model.safetensors"])
    )
    # the staging folders are gone, the local checkpoint is complete
    assert not list((tmp_path / "every").glob(".hub-push-*"))
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= set(local4)

    # checkpoint: the full checkpoint under last-checkpoint/, optimizer state through LFS
    files = hub.files("tester/ckpt")
    assert {"last-checkpoint/optimizer.pt", "last-checkpoint/scheduler.pt", "last-checkpoint/trainer_state.json",
            "last-checkpoint/model.safetensors", "model.safetensors", "README.md"} <= set(files)  # fmt: skip
    assert "last-checkpoint/training_args.bin" not in files
    assert hub.entry("tester/ckpt", "last-checkpoint/optimizer.pt").lfs
    assert json.loads(files["last-checkpoint/trainer_state.json"])["global_step"] == 4
    assert [c.message for c in hub.commits("tester/ckpt")][-1] == "End of training"

    # resume_from_hub downloads exactly the pushed checkpoint-4, and training resumes from step 4 to 6
    downloaded = results["resumed_downloaded"]
    assert downloaded["path"] == str(tmp_path / "from_hub" / "last-checkpoint")
    local_ckpt = results["ckpt"]["local"]["checkpoint-4"]
    for name, sha in downloaded["shas"].items():
        if not name.startswith(".cache/"):
            assert local_ckpt[name] == sha, name
    assert results["resumed"]["first_step"] == 5 and results["resumed"]["global_step"] == 6
    assert results["every"]["first_step"] == 1
    _assert_token_nowhere(TOKEN, [tmp_path, hub.root], proc.stdout, proc.stderr)


def test_server_down_training_completes_then_push_later(hub: HubServer, tiny_model: Path, tmp_path: Path):
    env = hub.client_env(tmp_path / "hf_home", token=TOKEN)
    hub.stop()
    runs = [{"name": "down", "out": str(tmp_path / "out"), "max_steps": 4, "strategy": "every_save",
             "repo": "tester/down"}]  # fmt: skip
    t0 = time.monotonic()
    results, proc = _train(env, tmp_path, tiny_model, runs, max_retries=2)
    down = results["down"]
    assert down["global_step"] == 4
    assert len(down["failures"]) == 3  # checkpoint-2, checkpoint-4, final
    assert down["failures"][0].startswith(
        "checkpoint-2: push to tester/down failed after 2 attempts (connection"
    )
    assert "mlm push" in down["failures"][-1]
    assert "warning: hub push failed: checkpoint-4" in proc.stderr
    assert "retrying in" in proc.stderr
    assert time.monotonic() - t0 < 120
    ckpt = tmp_path / "out" / "checkpoint-4"
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json", "config.json",
            "tokenizer.json"} <= {p.name for p in ckpt.iterdir()}  # fmt: skip
    assert not list((tmp_path / "out").glob(".hub-push-*"))

    hub.start()
    r = _run(["-m", "mlm", "push", str(ckpt), "tester/down", "--commit_message", "pushed later"], env)
    assert r.returncode == 0, r.stderr
    assert hub.entry("tester/down", "model.safetensors").sha256 == _sha256(ckpt / "model.safetensors")
    assert not {"optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin"} & set(
        hub.files("tester/down")
    )
    _assert_token_nowhere(TOKEN, [tmp_path, hub.root], proc.stdout, proc.stderr, r.stdout, r.stderr)


# ---- in-process: the push queue, without a Hub -----------------------------------------------------------------
def test_queue_keeps_only_newest_checkpoint_and_final(tmp_path: Path):
    from mlm.hub import PushJob, PushQueue

    order: list[str] = []

    def slow_push(job: PushJob) -> str:  # no network: exercises the queue
        order.append(job.label)
        time.sleep(0.3)
        if job.label == "checkpoint-8":
            raise RuntimeError("boom")
        return job.label

    queue = PushQueue(slow_push)
    for step in (2, 4, 6, 8):
        staging = tmp_path / f".hub-push-{step}"
        staging.mkdir()
        queue.submit(PushJob(f"checkpoint-{step}", staging, "m", staged=True))
        while step == 2 and not order:  # the worker picks checkpoint-2 up; 4 and 6 are superseded meanwhile
            time.sleep(0.01)
    queue.submit(PushJob(tmp_path.name, tmp_path, "End of training"), final=True)
    failures = queue.wait(timeout=10)
    assert order == ["checkpoint-2", "checkpoint-8", tmp_path.name]
    assert queue.skipped == ["checkpoint-4", "checkpoint-6"]
    assert len(failures) == 1 and failures[0].startswith("checkpoint-8: RuntimeError: boom")
    assert queue.pushed == ["checkpoint-2", tmp_path.name]  # a failed push does not stop the next one
    assert not list(tmp_path.glob(".hub-push-*"))  # staging folders of skipped and pushed jobs are removed
    assert tmp_path.is_dir()  # a final folder is never removed


def test_callback_never_raises_into_training(tmp_path: Path, capsys):
    from types import SimpleNamespace

    from mlm.hub import HubPushCallback

    cb = HubPushCallback("tester/x", strategy="checkpoint", token="hf_unused_in_this_test")
    args = SimpleNamespace(output_dir=str(tmp_path))
    state = SimpleNamespace(global_step=3, is_world_process_zero=True)
    cb.on_save(args, state, None)  # checkpoint-3 does not exist
    assert cb.wait(timeout=5) == [cb.failures[0]]
    assert cb.failures[0].startswith("checkpoint-3: could not prepare the push")
    assert "warning: hub push failed" in capsys.readouterr().err
    assert "hf_unused" not in repr(cb)
    with pytest.raises(Exception, match="unknown hub_strategy 'sometimes'"):
        HubPushCallback("tester/x", strategy="sometimes")

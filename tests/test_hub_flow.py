"""The whole Hub flow of a user, against the local Hub test server, each step in a fresh process that knows
nothing of this project's files: push a pretrained model, fine-tune it *from the Hub* with named labels,
push the classifier, then load it by repo id with plain `transformers`: its pipeline returns the label names
and its card's model-index (through `huggingface_hub.metadata_load`) holds its test scores."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_server  # noqa: E402
import test_finetune_problem_types  # noqa: E402
from hub_server import HubServer  # noqa: E402
from test_finetune import sentiment_rows, write_csv  # noqa: E402
from test_hub import RUN_INFO  # noqa: E402
from test_hub_files import run  # noqa: E402

hub = hub_server.hub  # fixtures of other test files
checkpoint = test_finetune_problem_types.checkpoint
TOKEN = "hf_flowT0ken_0123456789abcdef"

# what a user of the pushed classifier runs: plain transformers and huggingface_hub, by repo id
USE = r"""
import json, sys
from huggingface_hub import hf_hub_download, metadata_load
from transformers import pipeline
clf = pipeline("text-classification", model=sys.argv[1])
meta = metadata_load(hf_hub_download(sys.argv[1], "README.md"))
print(json.dumps({"label": clf("a good fine great day")[0]["label"], "index": meta["model-index"]}))
"""


def test_pretrained_to_hub_to_classifier_to_hub_to_pipeline(hub: HubServer, checkpoint: Path, tmp_path: Path):
    env = hub.client_env(tmp_path / "home", token=TOKEN)
    pushed = run(["push", checkpoint, "tester/tiny-base"], env)
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    rows = [{"text": r["text"], "label": 1 if r["label"] == "pos" else 0} for r in sentiment_rows(64, seed=2)]
    train, test = write_csv(tmp_path / "train.csv", rows), write_csv(tmp_path / "test.csv", rows[:16])
    fine = run(["finetune", "--model_name_or_path", "tester/tiny-base", "--train_file", train, "--test_file", test,
                "--output_dir", tmp_path / "cls", "--num_train_epochs", "1", "--use_cpu", "--max_seq_length", "32",
                "--class_names", "negative", "positive", "--push_to_hub", "--hub_model_id", "tester/tiny-cls",
                "--license", "mit"], env)  # fmt: skip
    assert fine.returncode == 0, fine.stderr[-3000:]
    use = subprocess.run([sys.executable, "-c", USE, "tester/tiny-cls"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert use.returncode == 0, use.stderr[-3000:]
    out = json.loads(use.stdout.strip().splitlines()[-1])
    assert out["label"] in ("negative", "positive")
    results = out["index"][0]["results"]
    scores = {(r["dataset"]["split"], m["type"]): m["value"] for r in results for m in r["metrics"]}
    metrics = json.loads((tmp_path / "cls" / "metrics.json").read_text())
    assert scores[("test", "accuracy")] == metrics["test"]["accuracy"]
    card = hub.files("tester/tiny-cls")["README.md"].decode()
    assert "tester/tiny-base" in card  # the base model, named by its Hub id


def test_a_classifier_from_a_hub_base_tells_its_pretraining_data_and_an_example(
    hub: HubServer, checkpoint: Path, tmp_path: Path
):
    from huggingface_hub import ModelCard

    env = hub.client_env(tmp_path / "home", token=TOKEN)
    base = shutil.copytree(checkpoint, tmp_path / "base")
    (base / "run_info.json").write_text(json.dumps(RUN_INFO))  # a pretraining run's record
    assert run(["push", base, "tester/tiny-base"], env).returncode == 0
    rows = [{"text": r["text"], "label": r["label"]} for r in sentiment_rows(80, seed=3)]
    files = {name: write_csv(tmp_path / f"{name}.csv", part)
             for name, part in (("train", rows[:48]), ("dev", rows[48:64]), ("test", rows[64:]))}  # fmt: skip
    fine = run(["finetune", "--model_name_or_path", "tester/tiny-base", "--train_file", files["train"], "--validation_file",
                files["dev"], "--test_file", files["test"], "--output_dir", tmp_path / "cls", "--num_train_epochs",
                "1", "--use_cpu", "--max_seq_length", "32", "--datasets", "someone/reviews", "--push_to_hub",
                "--hub_model_id", "tester/tiny-cls"], env)  # fmt: skip
    assert fine.returncode == 0, fine.stderr[-3000:]
    card = ModelCard(hub.files("tester/tiny-cls")["README.md"].decode())
    assert "- Spec: `builtin:pydocs`" in card.text and "- Documents: 321" in card.text  # the base's corpus
    assert "- Kind: wordpiece" in card.text and "with masked language modelling" in card.text
    assert card.data.widget == [{"text": rows[48]["text"]}]
    metrics = json.loads((tmp_path / "cls" / "metrics.json").read_text())
    got = {(r.dataset_type, r.dataset_name, r.dataset_split, r.metric_type, str(r.metric_args), r.metric_value)
           for r in card.data.eval_results}  # fmt: skip
    assert got == {
        ("someone/reviews", "someone/reviews", split, *metric, metrics[split][key])
        for split in ("validation", "test")
        for key, metric in (("accuracy", ("accuracy", "None")), ("f1_macro", ("f1", "{'average': 'macro'}")))
    }

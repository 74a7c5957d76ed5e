"""Pushing while pretraining, through `mlm run`, against the local test Hub (tests/hub_server.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_server  # noqa: E402
from hub_server import HubServer  # noqa: E402

from mlm.model_card import fmt  # noqa: E402

hub = hub_server.hub
REPO_ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hf_pretrainPushT0ken_5ecret"


def test_every_save_pushes_each_checkpoint_and_card_matches_report(hub: HubServer, tmp_path, tiny_corpus_dir):
    out = tmp_path / "runs"
    recipe = tmp_path / "push.yaml"
    recipe.write_text(f"""
name: push
output_dir: {out}
prepare: {{corpus: [{tiny_corpus_dir / "corpus.jsonl"}], validation_size: 30}}
tokenizer: {{vocab_size: 512}}
pack: {{max_seq_length: 32}}
pretrain:
  config_overrides: {{num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64}}
  max_steps: 4
  per_device_train_batch_size: 8
  eval_steps: 2
  save_steps: 2
  max_eval_samples: 32
  disable_tqdm: true
  push_to_hub: true
  hub_model_id: tester/pushed-bert
  hub_strategy: every_save
  license: mit
""")
    env = hub.client_env(tmp_path / "hf_home", token=TOKEN)
    proc = subprocess.run(
        [sys.executable, "-m", "mlm", "run", str(recipe)],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]

    messages = [c.message for c in hub.commits("tester/pushed-bert")]
    assert messages[1:3] == ["Training in progress, step 2", "Training in progress, step 4"]
    # final/ is pushed at the end, unless it holds exactly what step 4 pushed (the same weights, card and
    # record, down to the wall time rounded to 0.1 s): then there is nothing new to commit
    assert messages[3:] in (["End of training"], [])
    files = hub.files("tester/pushed-bert")
    assert "model.safetensors" in files and "tokenizer.json" in files
    report = json.loads((out / "report.json").read_text())["pretrain"]
    card = files["README.md"].decode()
    assert "license: mit" in card
    for key, label in (
        ("eval_loss", "MLM loss"),
        ("perplexity", "Perplexity"),
        ("masked_accuracy", "Masked-token"),
    ):
        line = next(line for line in card.splitlines() if line.startswith(f"| {label}"))
        assert fmt(report[key]) in line, (key, line, report[key])
    metrics = json.loads((out / "pretrain" / "metrics.json").read_text())
    assert metrics["hub_push_failures"] == []
    # the token is in no file the run wrote and in none of its output
    for path in [*out.rglob("*"), *Path(hub.root).rglob("*")]:
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr

"""`mlm run` end to end on a tiny recipe: every step, the report, and reuse of unchanged steps."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from mlm.recipe import RunConfig, check_plan, plan_recipe, run_recipe

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "recipes").glob("*.yaml"))


def _write_task(folder: Path) -> dict[str, Path]:
    """An easy two-class task: sentences about food vs sentences about weather."""
    rng = random.Random(0)
    topics = {
        "food": "bread cheese soup apple dinner lunch pasta salad cake rice".split(),
        "weather": "rain snow wind storm cloud sun fog frost thunder heat".split(),
    }
    filler = "the a is was very quite today again then also".split()
    paths = {}
    for split, n in (("train", 80), ("dev", 20), ("test", 20)):
        path = folder / f"{split}.csv"
        lines = ["text,label"]
        for i in range(n):
            label = "food" if i % 2 else "weather"
            words = rng.sample(topics[label], 3) + rng.sample(filler, 4)
            rng.shuffle(words)
            lines.append(f"{' '.join(words)},{label}")
        path.write_text("\n".join(lines) + "\n")
        paths[split] = path
    return paths


@pytest.fixture(scope="module")
def recipe(tmp_path_factory, tiny_corpus_dir) -> Path:
    folder = tmp_path_factory.mktemp("recipe")
    task = _write_task(folder)
    text = f"""
name: tiny
output_dir: {folder / "runs"}
prepare:
  corpus: [{tiny_corpus_dir / "corpus.jsonl"}]
  validation_size: 30
tokenizer:
  vocab_size: 512
pack:
  max_seq_length: 32
pretrain:
  preset: tiny
  config_overrides: {{num_hidden_layers: 1, hidden_size: 32, num_attention_heads: 2, intermediate_size: 64}}
  max_steps: 8
  per_device_train_batch_size: 8
  eval_steps: 4
  save_steps: 4
  logging_steps: 2
  max_eval_samples: 32
  disable_tqdm: true
finetune:
  train_file: {task["train"]}
  validation_file: {task["dev"]}
  test_file: {task["test"]}
  max_seq_length: 32
  num_train_epochs: 1
  disable_tqdm: true
"""
    path = folder / "tiny.yaml"
    path.write_text(text)
    return path


def test_run_writes_report_then_reuses_steps(recipe):
    logs: list[str] = []
    report = run_recipe(RunConfig(recipe=str(recipe)), log=logs.append)
    out = recipe.parent / "runs"
    for key in ("eval_loss", "perplexity", "masked_accuracy", "tokens_seen", "train_tokens_per_second"):
        assert report["pretrain"][key] is not None, key
    rows = {(r["method"], r["split"]): r for r in report["finetune"]["rows"]}
    for method in ("pretrained", "scratch", "tfidf"):  # the comparison of `mlm evaluate`'s engine
        assert 0.0 <= rows[(method, "test")]["metrics"]["accuracy"]["median"] <= 1.0
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["pretrain"]["tokens_seen"] == report["pretrain"]["tokens_seen"]
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert "masked_accuracy" in md and "TF-IDF" in md and "from scratch" in md
    assert (out / "pretrain" / "final" / "model.safetensors").is_file()
    results = json.loads((out / "finetune" / "results.json").read_text())  # as `mlm evaluate` writes it
    assert results["rows"] == [r for r in report["finetune"]["rows"]]
    saved = Path(rows[("pretrained", "test")]["folders"][0])
    assert (saved / "model.safetensors").is_file() and (saved / "README.md").is_file()  # to push
    assert not (Path(rows[("scratch", "test")]["folders"][0]) / "model.safetensors").exists()

    # unchanged: every step is reused
    logs.clear()
    run_recipe(RunConfig(recipe=str(recipe)), log=logs.append)
    reused = [line for line in logs if "unchanged" in line]
    assert len(reused) == 5, logs

    # a pretraining change reruns pretraining and what depends on it, not the data steps
    logs.clear()
    recipe.write_text(
        recipe.read_text().replace("learning_rate", "learning_rate").replace("max_steps: 8", "max_steps: 9")
    )
    run_recipe(RunConfig(recipe=str(recipe), force=False), log=logs.append)
    ran = {line.split("]")[0][1:] for line in logs if "running" in line}
    assert ran == {"pretrain", "finetune", "report"}, logs
    previous = list(out.glob("pretrain.previous-*"))
    assert len(previous) == 1 and (previous[0] / "final" / "model.safetensors").is_file()  # never deleted


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_recipes_pass_the_whole_recipe_check(path, monkeypatch):
    """Every recipe in recipes/ plans and passes the checks `mlm run` makes before any step (keys and values,
    such as an architecture name), so an edited recipe cannot ship with a mistake found minutes into a run."""
    if "../shared/data" in path.read_text() and not (ROOT.parent / "shared" / "data").is_dir():
        pytest.skip("its corpus is in ../shared/data, which this machine does not have")
    monkeypatch.chdir(ROOT)  # recipes name their data relative to the project root
    check_plan(plan_recipe(RunConfig(recipe=str(path))))


@pytest.mark.parametrize(
    "extra, message",
    [
        ("  seed: 7\n", "seed is set for each run by the recipe: use `report: seeds`"),
        ("  label_fraction: 0.1\n", "use `report: label_fractions`"),
        ("  from_scratch: true\n", "use `report: compare_from_scratch`"),
    ],
)
def test_finetune_options_the_report_sets_are_refused(recipe, tmp_path, extra, message):
    from data_prep.errors import UserError

    bad = tmp_path / "bad.yaml"
    bad.write_text(recipe.read_text().replace("  num_train_epochs: 1\n", "  num_train_epochs: 1\n" + extra))
    with pytest.raises(UserError, match=f"section 'finetune': .*{message}"):
        check_plan(plan_recipe(RunConfig(recipe=str(bad))))


def test_the_finetune_step_is_a_one_task_suite(recipe, tmp_path):
    """`mlm run`'s comparison is `mlm evaluate`'s: the suite it writes loads, with the section's settings."""
    import yaml

    from mlm.evaluate.suite import load_suite
    from mlm.recipe import ReportConfig, write_suite

    plan = plan_recipe(RunConfig(recipe=str(recipe)))
    path = write_suite(plan.configs["finetune"], ReportConfig(label_fractions=["0.5", "1"], seeds=2), "tiny",
                       tmp_path / "suite.yaml")  # fmt: skip
    suite = load_suite(path)
    assert (
        [t.name for t in suite.tasks] == ["tiny"] and suite.seeds == 2 and suite.label_fractions == [0.5, 1.0]
    )
    assert suite.finetune == {"max_seq_length": 32, "num_train_epochs": 1.0}
    assert set(suite.tasks[0].files) == {"train", "dev", "test"}
    assert "model_name_or_path" not in yaml.safe_load(path.read_text())["finetune"]

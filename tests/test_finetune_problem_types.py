"""Fine-tuning problem types (single-label with label names, multi-label, regression): the loss, the metrics,
the predictions, the saved model's pipeline and the card; and the Hub/card options a fine-tuning run takes."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_finetune import FILLER, build_tokenizer, write_csv, write_jsonl  # noqa: E402

from data_prep.errors import UserError  # noqa: E402
from mlm.finetune import FinetuneConfig, finetune  # noqa: E402
from mlm.labelled_data import load_labelled  # noqa: E402

TOPICS = ["cat", "dog", "river", "music"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny 'pretrained' BertForMaskedLM (random weights) with its tokenizer."""
    from transformers import BertConfig, BertForMaskedLM

    folder = tmp_path_factory.mktemp("ckpt") / "tiny-bert"
    config = BertConfig(vocab_size=128, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64, pad_token_id=0)  # fmt: skip
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder


def topic_rows(n: int, seed: int) -> list[dict]:
    """Multi-label: each text mentions 0-2 of TOPICS; its labels are the topics it mentions."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topics = sorted(rng.sample(TOPICS, rng.randint(0, 2)))
        words = rng.choices([w for w in FILLER if w not in TOPICS], k=6) + topics
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": topics})
    return rows


def score_rows(n: int, seed: int) -> list[dict]:
    """Regression: the score is the number of times 'good' occurs, minus 'bad'."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        good, bad = rng.randint(0, 3), rng.randint(0, 3)
        words = rng.choices(FILLER, k=5) + ["good"] * good + ["bad"] * bad
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "score": float(good - bad)})
    return rows


def config(checkpoint: Path, out: Path, files: dict[str, Path], **kw) -> FinetuneConfig:
    base = dict(model_name_or_path=str(checkpoint), output_dir=str(out), train_file=str(files["train"]),
                test_file=str(files["test"]), learning_rate=3e-3, num_train_epochs=4.0,
                per_device_train_batch_size=16, max_seq_length=32, use_cpu=True, disable_tqdm=True)  # fmt: skip
    return FinetuneConfig(**{**base, **kw})


def predictions(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]


def card_results(out: Path) -> set[tuple[str, str, str]]:
    """(split, Hub metric id with its averaging, name) of each score in the card's model-index."""
    from huggingface_hub import ModelCard

    return {
        (
            r.dataset_split,
            r.metric_type + (f"[{r.metric_args['average']}]" if r.metric_args else ""),
            r.metric_name,
        )
        for r in ModelCard.load(out / "README.md").data.eval_results
    }


def test_label_names_name_the_ids_in_the_model_and_its_pipeline(checkpoint: Path, tmp_path: Path) -> None:
    from transformers import AutoConfig, pipeline

    rng = random.Random(0)
    rows = [{"text": f"{rng.choice(FILLER)} {w} {rng.choice(FILLER)}", "label": y}
            for w, y in (("good", 1), ("bad", 0)) * 40]  # fmt: skip
    files = {
        "train": write_csv(tmp_path / "train.csv", rows),
        "test": write_csv(tmp_path / "test.csv", rows[:20]),
    }
    out = tmp_path / "named"
    result = finetune(config(checkpoint, out, files, class_names=["negative", "positive"]))
    assert (
        result["labels"] == ["negative", "positive"]
        and result["problem_type"] == "single_label_classification"
    )
    assert AutoConfig.from_pretrained(out).id2label == {0: "negative", 1: "positive"}
    classifier = pipeline("text-classification", model=str(out))
    assert classifier("a good day")[0]["label"] in {"negative", "positive"}
    row = predictions(out)[0]
    assert row["label"] == "positive" and set(row["probabilities"]) == {"negative", "positive"}
    assert "Labels: `negative`, `positive`." in (out / "README.md").read_text()
    with pytest.raises(UserError, match=r"class_names has 3 name\(s\) but .*train.csv has 2 labels \(0, 1\)"):
        finetune(config(checkpoint, tmp_path / "x", files, class_names=["a", "b", "c"]))
    assert not (tmp_path / "x").exists()


def test_multi_label_loss_metrics_predictions_and_card(checkpoint: Path, tmp_path: Path) -> None:
    from sklearn.metrics import f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    files = {"train": write_jsonl(tmp_path / "train.jsonl", topic_rows(240, 1)),
             "test": write_jsonl(tmp_path / "test.jsonl", topic_rows(60, 2))}  # fmt: skip
    out = tmp_path / "topics"
    result = finetune(config(checkpoint, out, files, problem_type="multi_label_classification",
                             label_column="labels", num_train_epochs=8.0))  # fmt: skip
    assert result["labels"] == sorted(TOPICS)
    assert set(result["test"]) >= {"f1_micro", "f1_macro", "loss"}
    # it learned: its test loss is below that of always predicting each label's training frequency
    freq = np.mean([[t in r["labels"] for t in sorted(TOPICS)] for r in topic_rows(240, 1)], axis=0)
    base_rate_loss = float(np.mean(-(freq * np.log(freq) + (1 - freq) * np.log(1 - freq))))
    assert result["test"]["loss"] < base_rate_loss - 0.05, (result["test"], base_rate_loss)
    # the metrics are those of the written predictions: a label applies when its sigmoid is >= 0.5
    rows = predictions(out)
    refs = [[t in r["label"] for t in sorted(TOPICS)] for r in rows]
    preds = [[t in r["prediction"] for t in sorted(TOPICS)] for r in rows]
    assert f1_score(refs, preds, average="micro") == pytest.approx(result["test"]["f1_micro"], abs=1e-6)
    assert f1_score(refs, preds, average="macro", zero_division=0) == pytest.approx(
        result["test"]["f1_macro"], abs=1e-6
    )
    assert all(set(r["prediction"]) == {t for t, p in r["probabilities"].items() if p >= 0.5} for r in rows)
    # the loss is binary cross-entropy on each label's logit
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.problem_type == "multi_label_classification"
    batch = AutoTokenizer.from_pretrained(out)(
        ["cat dog on the mat", "a long road"], return_tensors="pt", padding=True
    )
    labels = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    with torch.no_grad():
        output = model(**batch, labels=labels)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(output.logits, labels)
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)
    scores = pipeline("text-classification", model=str(out), top_k=None)(["cat and dog"])[0]
    assert {s["label"] for s in scores} == set(TOPICS) and sum(s["score"] for s in scores) != pytest.approx(
        1.0
    )
    assert card_results(out) == {("test", "f1[micro]", "F1 micro"), ("test", "f1[macro]", "F1 macro")}
    card = (out / "README.md").read_text()
    assert "top_k=None" in card and "- Problem type: multi_label_classification" in card


def test_regression_loss_metrics_predictions_and_card(checkpoint: Path, tmp_path: Path) -> None:
    from scipy import stats
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    files = {"train": write_csv(tmp_path / "train.csv", score_rows(240, 1)),
             "test": write_csv(tmp_path / "test.csv", score_rows(60, 2))}  # fmt: skip
    out = tmp_path / "scores"
    result = finetune(config(checkpoint, out, files, problem_type="regression", label_column="score",
                             num_train_epochs=8.0, metric_for_best_model="mse",
                             validation_file=str(files["test"])))  # fmt: skip
    assert result["labels"] == ["score"] and result["num_labels"] == 1
    assert set(result["test"]) >= {"mse", "pearsonr", "spearmanr", "loss"}
    assert result["test"]["pearsonr"] > 0.5, result["test"]
    assert result["best"]["metric"] == "mse"  # lower is better: kept the smallest
    rows = predictions(out)
    preds, refs = np.array([r["prediction"] for r in rows]), np.array([r["label"] for r in rows])
    assert np.mean((preds - refs) ** 2) == pytest.approx(result["test"]["mse"], rel=1e-4)
    assert stats.pearsonr(preds, refs)[0] == pytest.approx(result["test"]["pearsonr"], abs=1e-4)
    assert stats.spearmanr(preds, refs)[0] == pytest.approx(result["test"]["spearmanr"], abs=1e-4)
    assert result["test"]["loss"] == pytest.approx(result["test"]["mse"], rel=1e-3)  # the loss is the MSE
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.problem_type == "regression" and model.config.id2label == {0: "score"}
    batch = AutoTokenizer.from_pretrained(out)(["good good day"], return_tensors="pt")
    with torch.no_grad():
        output = model(**batch, labels=torch.tensor([2.0]))
    assert output.loss.item() == pytest.approx((output.logits.item() - 2.0) ** 2, rel=1e-5)
    top = pipeline("text-classification", model=str(out))("good good day")[0]
    assert top["label"] == "score" and top["score"] == pytest.approx(
        output.logits.item(), abs=1e-5
    )  # no sigmoid
    assert {(s, t) for s, t, _ in card_results(out)} == {
        (split, m) for split in ("validation", "test") for m in ("mse", "pearsonr", "spearmanr")}  # fmt: skip
    assert ("test", "mse", "MSE") in card_results(out) and "| Pearson r |" in (out / "README.md").read_text()


def test_multi_label_and_regression_cells(tmp_path: Path) -> None:
    csv = tmp_path / "multi.csv"
    csv.write_text('text,labels\na,"cat, dog"\nb,"[""river""]"\nc,[]\n')
    ds = load_labelled(str(csv), text_column="text", text_pair_column=None, label_column="labels",
                       problem_type="multi_label_classification")  # fmt: skip
    assert ds["labels"] == [["cat", "dog"], ["river"], []]
    scores = tmp_path / "scores.csv"
    scores.write_text("text,score\na,1.5\nb,-2\nc,high\n")
    with pytest.raises(UserError, match=r"scores.csv: label 'high' of row 3 is not a number"):
        load_labelled(str(scores), text_column="text", text_pair_column=None, label_column="score",
                      problem_type="regression")  # fmt: skip


def test_problem_type_and_hub_options_are_checked_up_front() -> None:
    good = dict(model_name_or_path="m", output_dir="o", train_file="t")
    FinetuneConfig(**good, problem_type="regression", metrics=["mse", "spearmanr"]).validate()
    bad = [
        ({"problem_type": "ranking"}, "unknown problem_type 'ranking'; valid: single_label_classification"),
        ({"problem_type": "regression", "metrics": ["accuracy"]}, "unknown metric 'accuracy' for regression"),
        ({"problem_type": "multi_label_classification", "metrics": ["f1"]}, "valid: f1_micro, f1_macro"),
        ({"push_to_hub": True}, "push_to_hub needs hub_model_id"),
        (
            {"push_to_hub": True, "hub_model_id": "me/x", "hub_strategy": "checkpoint"},
            "fine-tuning saves none",
        ),
        ({"push_to_hub": True, "hub_model_id": "me/x", "save_model": False}, "needs save_model"),
    ]
    for change, message in bad:
        with pytest.raises(UserError, match=message):
            FinetuneConfig(**{**good, **change}).validate()


def test_push_to_hub_fails_before_any_work_when_offline(
    checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    rows = [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}] * 4
    files = {"train": write_csv(tmp_path / "t.csv", rows), "test": write_csv(tmp_path / "e.csv", rows)}
    out = tmp_path / "out"
    with pytest.raises(UserError, match="cannot push to me/cls: HF_HUB_OFFLINE=1 is set"):
        finetune(config(checkpoint, out, files, push_to_hub=True, hub_model_id="me/cls"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.csv", "t.csv"]  # no output folder


def test_a_recipe_pushes_only_the_pretrained_classifier_not_its_scratch_baseline(
    tmp_path: Path, monkeypatch
) -> None:
    import mlm.finetune
    import mlm.hub
    from mlm.recipe import RunConfig, run_recipe

    ran: list[FinetuneConfig] = []
    pushed: list = []

    def fake_finetune(cfg: FinetuneConfig) -> dict:
        Path(cfg.output_dir).mkdir(parents=True)
        ran.append(cfg)
        return {"train_samples": 2, "label_fraction": 1.0, "seed": cfg.seed, "test": {"accuracy": 0.5}}

    monkeypatch.setattr(mlm.finetune, "finetune", fake_finetune)
    monkeypatch.setattr(mlm.hub, "push", pushed.append)
    from transformers import BertConfig, BertForMaskedLM

    model, data = tmp_path / "m", tmp_path / "t.csv"  # inputs that exist: the recipe is checked up front
    BertForMaskedLM(BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=1,
                               intermediate_size=16)).save_pretrained(model)  # fmt: skip
    data.write_text("text,label\nx,a\ny,b\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"""
output_dir: {tmp_path / "runs"}
finetune: {{model_name_or_path: {model}, train_file: {data}, test_file: {data}, push_to_hub: true,
            hub_model_id: me/cls, class_names: [a, b]}}
report: {{compare_from_scratch: true, tfidf_baseline: false}}
""")
    run_recipe(RunConfig(recipe=str(recipe), steps=["finetune"]), log=lambda message: None)
    # the runs never push; the recipe pushes the pretrained classifier it kept, once
    assert [(c.from_scratch, c.push_to_hub, c.save_model) for c in ran] == [
        (False, False, True),
        (True, False, False),
    ]
    assert [(p.folder, p.repo_id) for p in pushed] == [(ran[0].output_dir, "me/cls")]
    assert ran[1].class_names == ["a", "b"]

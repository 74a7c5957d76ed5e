"""Labelled-data loading and classification fine-tuning, on a tiny BERT built here (no downloads)."""

from __future__ import annotations

import csv
import gzip
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    PreTrainedTokenizerFast,
)

from data_prep import builtin
from data_prep.errors import UserError
from mlm import finetune as ft
from mlm.finetune import FinetuneConfig, finetune
from mlm.labelled_data import build_label_map, check_labels, load_labelled, stratified_subset

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FILLER = (
    "the a cat dog sat on mat film movie story plot actor scene was is it this that very quite rather "
    "long short day night house tree river road car city music song book page"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


# --- tiny data and checkpoint -------------------------------------------------------------------------


def sentence(rng: random.Random, marker: str) -> str:
    words = rng.choices(FILLER, k=rng.randint(4, 9))
    words.insert(rng.randint(0, len(words)), marker)
    return " ".join(words)


def sentiment_rows(n: int, seed: int) -> list[dict]:
    """An easy task: 'good' -> pos, 'bad' -> neg."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        rows.append({"text": sentence(rng, "good" if label == "pos" else "bad"), "label": label})
    return rows


def pair_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        a, b = rng.choice(["good", "bad"]), rng.choice(["good", "bad"])
        rows.append({"s1": sentence(rng, a), "s2": sentence(rng, b), "same": "yes" if a == b else "no"})
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_tsv(path: Path, rows: list[dict], header: bool = True) -> Path:
    lines = (["\t".join(rows[0])] if header else []) + ["\t".join(map(str, r.values())) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def build_tokenizer() -> PreTrainedTokenizerFast:
    rng = random.Random(0)
    corpus = [sentence(rng, rng.choice(["good", "bad"])) for _ in range(300)]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(corpus, trainers.WordPieceTrainer(vocab_size=120, special_tokens=SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=64,
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A 'pretrained' tiny BertForMaskedLM (random weights) saved with its tokenizer."""
    folder = tmp_path_factory.mktemp("ckpt") / "tiny-bert"
    tokenizer = build_tokenizer()
    assert tokenizer.convert_tokens_to_ids(SPECIALS) == [0, 1, 2, 3, 4]
    config = BertConfig(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=64,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> dict[str, Path]:
    """The easy sentiment task in three formats: train CSV, validation JSONL.gz, test TSV."""
    d = tmp_path_factory.mktemp("task")
    return {
        "train": write_csv(d / "train.csv", sentiment_rows(200, seed=1)),
        "validation": write_jsonl(d / "dev.jsonl.gz", sentiment_rows(40, seed=2)),
        "test": write_tsv(d / "test.tsv", sentiment_rows(50, seed=3)),
    }


def config(checkpoint: Path, out: Path, task: dict[str, Path], **kw) -> FinetuneConfig:
    base = dict(
        model_name_or_path=str(checkpoint),
        output_dir=str(out),
        train_file=str(task["train"]),
        validation_file=str(task["validation"]) if task.get("validation") else None,
        test_file=str(task["test"]) if task.get("test") else None,
        learning_rate=2e-3,
        num_train_epochs=3.0,
        per_device_train_batch_size=16,
        max_seq_length=32,
        use_cpu=True,
        disable_tqdm=True,
    )
    base.update(kw)
    return FinetuneConfig(**base)


def leftovers(out: Path) -> list[str]:
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# --- load_labelled -------------------------------------------------------------------------------------


def test_load_csv_tsv_jsonl_gz(tmp_path: Path) -> None:
    rows = [{"text": 'he said "hi, there', "label": "pos"}, {"text": "no", "label": "neg"}]
    csv_ds = load_labelled(
        str(write_csv(tmp_path / "a.csv", rows)),
        text_column="text",
        text_pair_column=None,
        label_column="label",
    )
    assert csv_ds.to_list() == rows
    # TSV: no quoting, a stray quote stays in the text
    tsv_ds = load_labelled(
        str(write_tsv(tmp_path / "a.tsv", rows)),
        text_column="text",
        text_pair_column=None,
        label_column="label",
    )
    assert tsv_ds.to_list() == rows
    gz = tmp_path / "a.tsv.gz"
    gz.write_bytes(gzip.compress((tmp_path / "a.tsv").read_bytes()))
    assert (
        load_labelled(str(gz), text_column="text", text_pair_column=None, label_column="label").to_list()
        == rows
    )
    jsonl_rows = [{"text": "x", "label": 1, "extra": 0}, {"text": "y", "label": 0, "extra": 1}]
    for name in ("a.jsonl", "a.jsonl.gz"):
        ds = load_labelled(
            str(write_jsonl(tmp_path / name, jsonl_rows)),
            text_column="text",
            text_pair_column=None,
            label_column="label",
        )
        assert ds.column_names == ["text", "label"]
        assert ds["label"] == ["1", "0"]
    (tmp_path / "a.json").write_text(json.dumps(jsonl_rows))
    assert load_labelled(
        str(tmp_path / "a.json"), text_column="text", text_pair_column=None, label_column="label"
    )["text"] == ["x", "y"]


def test_header_less_and_space_delimited(tmp_path: Path) -> None:
    cola = tmp_path / "cola.tsv"
    cola.write_text("gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\n")
    ds = load_labelled(
        str(cola),
        text_column="sentence",
        text_pair_column=None,
        label_column="label",
        column_names=["source", "label", "orig", "sentence"],
    )
    assert ds.to_list() == [
        {"sentence": "The cat sat.", "label": "1"},
        {"sentence": "Cat the sat.", "label": "0"},
    ]
    # SST-5 style "label sentence": the last column takes the rest of the line
    sst5 = tmp_path / "sentiment-train"
    sst5.write_text("4 a fine film\n0 a dull one\n")
    ds = load_labelled(
        str(sst5),
        text_column="text",
        text_pair_column=None,
        label_column="label",
        column_names=["label", "text"],
        delimiter=" ",
    )
    assert ds["text"] == ["a fine film", "a dull one"]
    with pytest.raises(UserError, match="give delimiter"):
        load_labelled(str(sst5), text_column="text", text_pair_column=None, label_column="label")


def test_load_errors(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "a.tsv", [{"sentence": "x", "label": "1", "idx": "0"}])
    with pytest.raises(UserError) as e:
        load_labelled(str(path), text_column="text", text_pair_column=None, label_column="label")
    assert str(e.value) == f"{path} has no column 'text'; columns found: sentence, label, idx"
    with pytest.raises(UserError, match="not found"):
        load_labelled(
            str(tmp_path / "missing.csv"), text_column="text", text_pair_column=None, label_column="label"
        )
    bad = tmp_path / "bad.tsv"
    bad.write_text("text\tlabel\nno label here\n")
    with pytest.raises(UserError, match="line 2"):
        load_labelled(str(bad), text_column="text", text_pair_column=None, label_column="label")
    latin = tmp_path / "latin.tsv"
    latin.write_bytes("text\tlabel\ncaf\xe9\t1\n".encode("latin-1"))
    with pytest.raises(UserError, match="latin-1"):
        load_labelled(str(latin), text_column="text", text_pair_column=None, label_column="label")
    assert load_labelled(
        str(latin), text_column="text", text_pair_column=None, label_column="label", encoding="latin-1"
    )["text"] == ["café"]


def test_label_map_and_unseen_label(tmp_path: Path) -> None:
    assert build_label_map(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert build_label_map(["pos", "neg", "neg"]) == ["neg", "pos"]
    dev = load_labelled(
        str(write_csv(tmp_path / "dev.csv", [{"text": "x", "label": "neutral"}])),
        text_column="text",
        text_pair_column=None,
        label_column="label",
    )
    with pytest.raises(UserError) as e:
        check_labels(dev, "label", ["neg", "pos"], "dev.csv")
    assert "dev.csv" in str(e.value) and "'neutral'" in str(e.value) and "neg, pos" in str(e.value)


def test_stratified_subset() -> None:
    import datasets

    labels = ["a"] * 80 + ["b"] * 18 + ["c"] * 2
    ds = datasets.Dataset.from_dict({"text": [str(i) for i in range(100)], "label": labels})
    sub = stratified_subset(ds, "label", fraction=0.1, seed=0)
    assert len(sub) == 10
    counts = {k: sub["label"].count(k) for k in "abc"}
    assert counts["c"] >= 1 and counts["a"] >= 7
    assert sub["text"] == stratified_subset(ds, "label", fraction=0.1, seed=0)["text"]  # seeded
    assert sub["text"] != stratified_subset(ds, "label", fraction=0.1, seed=1)["text"]
    assert len(stratified_subset(ds, "label", max_samples=30, seed=0)) == 30
    assert len(stratified_subset(ds, "label", fraction=1.0, seed=0)) == 100


def test_builtin_spec(monkeypatch) -> None:
    import datasets

    fake = datasets.DatasetDict(
        {
            s: datasets.Dataset.from_dict({"text": ["x", "y"], "label": ["os", "json"]})
            for s in ("train", "test")
        }
    )
    monkeypatch.setattr(builtin, "pydocs_task", lambda seed=0: fake)
    ds = load_labelled("builtin:pydocs@test", text_column="text", text_pair_column=None, label_column="label")
    assert ds["label"] == ["os", "json"]
    with pytest.raises(UserError, match="splits: train, test"):
        load_labelled("builtin:pydocs", text_column="text", text_pair_column=None, label_column="label")
    with pytest.raises(UserError, match="unknown built-in"):
        load_labelled("builtin:nope@train", text_column="text", text_pair_column=None, label_column="label")


@pytest.mark.skipif(
    not (SHARED_DATA / "glue").is_dir(), reason=f"shared GLUE data not found at {SHARED_DATA}"
)
def test_glue_formats() -> None:
    glue = SHARED_DATA / "glue"
    cola = load_labelled(
        str(glue / "CoLA" / "dev.tsv"),
        text_column="sentence",
        text_pair_column=None,
        label_column="label",
        column_names=["source", "label", "orig", "sentence"],
    )
    assert len(cola) == 1043 and build_label_map(cola["label"]) == ["0", "1"]
    sst2 = load_labelled(
        str(glue / "SST-2" / "dev.tsv"), text_column="sentence", text_pair_column=None, label_column="label"
    )
    assert len(sst2) == 872
    mrpc = load_labelled(
        str(glue / "MRPC" / "dev.tsv"),
        text_column="#1 String",
        text_pair_column="#2 String",
        label_column="Quality",
    )  # this file starts with a byte-order mark
    assert len(mrpc) == 408 and build_label_map(mrpc["Quality"]) == ["0", "1"]
    rte = load_labelled(
        str(glue / "RTE" / "dev.tsv"),
        text_column="sentence1",
        text_pair_column="sentence2",
        label_column="label",
    )
    assert len(rte) == 277 and build_label_map(rte["label"]) == ["entailment", "not_entailment"]


# --- finetune ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run(checkpoint: Path, task: dict[str, Path], tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("runs") / "sentiment"
    return out, finetune(config(checkpoint, out, task))


def test_finetune_end_to_end(run: tuple[Path, dict]) -> None:
    out, result = run
    written = json.loads((out / "metrics.json").read_text())
    assert written["labels"] == ["neg", "pos"] and written["num_labels"] == 2
    for split in ("validation", "test"):
        assert set(written[split]) >= {"accuracy", "f1_macro", "loss"}
    assert written["test"]["samples"] == 50 and written["train_samples"] == 200
    assert written["from_scratch"] is False
    assert written["train"]["runtime"] > 0 and written["train"]["steps"] == 39
    assert written["test"]["accuracy"] > 0.75, written  # chance is about 0.5
    assert result["test"] == written["test"]
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 50
    assert set(preds[0]) == {"index", "label", "prediction", "probabilities"}
    assert sum(preds[0]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert (out / "mlm_step.json").is_file() and (out / "log_history.json").is_file()
    assert not (out / "_trainer").exists() and not leftovers(out)


def test_saved_model_keeps_label_names(run: tuple[Path, dict]) -> None:
    out, _ = run
    cfg = AutoConfig.from_pretrained(out)
    assert cfg.id2label == {0: "neg", 1: "pos"} and cfg.label2id == {"neg": 0, "pos": 1}
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert model.config.num_labels == 2


def test_sentence_pairs(checkpoint: Path, tmp_path: Path) -> None:
    files = {
        "train": write_jsonl(tmp_path / "train.jsonl", pair_rows(64, seed=4)),
        "validation": write_jsonl(tmp_path / "dev.jsonl", pair_rows(20, seed=5)),
        "test": None,
    }
    cfg = config(
        checkpoint,
        tmp_path / "pairs",
        files,
        text_column="s1",
        text_pair_column="s2",
        label_column="same",
        num_train_epochs=2.0,
        metric_for_best_model="accuracy",
        metrics=["accuracy", "f1", "matthews_correlation"],
        save_model=True,
    )
    tokenizer = ft.load_tokenizer(str(checkpoint))
    encoded = ft.tokenize_split(ft.load_split(cfg, str(files["train"])), cfg, tokenizer, ["no", "yes"])
    assert set(encoded.column_names) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    assert 1 in encoded[0]["token_type_ids"] and encoded[0]["input_ids"].count(3) == 2
    result = finetune(cfg)
    assert result["predictions_of"] == "validation"
    assert set(result["validation"]) >= {"accuracy", "f1", "matthews_correlation"}
    assert result["best"]["metric"] == "accuracy" and result["best"]["value"] is not None
    saved = AutoTokenizer.from_pretrained(tmp_path / "pairs")  # inference encodes pairs as training did
    assert saved("good day", "bad night")["token_type_ids"].count(1) == 3
    lines = (tmp_path / "pairs" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 20


def test_from_scratch_reinitialises(checkpoint: Path, task: dict[str, Path], tmp_path: Path) -> None:
    original = BertForMaskedLM.from_pretrained(checkpoint).bert.embeddings.word_embeddings.weight
    for scratch in (False, True):
        cfg = config(checkpoint, tmp_path / "x", task, from_scratch=scratch)
        model = ft.build_classifier(cfg, ft.load_classifier_config(str(checkpoint), ["neg", "pos"]))
        same = torch.equal(model.bert.embeddings.word_embeddings.weight, original)
        assert same is not scratch
        assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64


def test_user_errors_leave_no_output(checkpoint: Path, task: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UserError, match="not a local folder and not reachable on the Hub"):
        finetune(config(tmp_path / "no-such-model", out, task))
    with pytest.raises(UserError, match="max_position_embeddings 64"):
        finetune(config(checkpoint, out, task, max_seq_length=512))
    dev = write_csv(tmp_path / "dev.csv", [{"text": "good", "label": "neutral"}])
    with pytest.raises(UserError, match="'neutral' not seen in the training data; known labels: neg, pos"):
        finetune(config(checkpoint, out, task, validation_file=str(dev)))
    with pytest.raises(UserError, match="has no column 'sentence'"):
        finetune(config(checkpoint, out, task, text_column="sentence"))
    small = tmp_path / "small-vocab"
    BertConfig(
        vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(small)
    with pytest.raises(UserError, match="has 1[0-9][0-9] tokens but model .* vocabulary of 50"):
        finetune(config(small, out, task, tokenizer_name=str(checkpoint)))
    assert not out.exists() and not leftovers(out)


def test_failure_during_run_leaves_no_output(
    checkpoint: Path, task: dict[str, Path], tmp_path: Path, monkeypatch
) -> None:
    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ft, "write_predictions", boom)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="disk full"):
        finetune(config(checkpoint, out, task, num_train_epochs=1.0, max_train_samples=32, test_file=None))
    assert not out.exists() and not leftovers(out)


def test_validate() -> None:
    good = dict(model_name_or_path="m", output_dir="o", train_file="t")
    FinetuneConfig(**good).validate()
    bad = [
        ({"label_fraction": 0.0}, "label_fraction"),
        ({"metrics": ["accuracy", "bleu"]}, "bleu"),
        ({"metric_for_best_model": "accuracy"}, "validation_file"),
        ({"metric_for_best_model": "mcc", "validation_file": "v"}, "accuracy, f1_macro, loss"),
        ({"fp16": True, "bf16": True}, "fp16"),
        ({"max_seq_length": 0}, "max_seq_length"),
        ({"model_name_or_path": ""}, "'model_name_or_path' is required"),
    ]
    for change, message in bad:
        with pytest.raises(UserError, match=message):
            FinetuneConfig(**{**good, **change}).validate()


def test_from_scratch_label_fraction_no_model(
    checkpoint: Path, task: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "scratch"
    cfg = config(
        checkpoint,
        out,
        {**task, "validation": None},
        from_scratch=True,
        label_fraction=0.5,
        num_train_epochs=1.0,
        save_model=False,
    )
    result = finetune(cfg)
    assert result["from_scratch"] is True and result["train_samples"] == 100
    assert result["train_samples_available"] == 200 and "validation" not in result
    assert result["predictions_of"] == "test"
    assert sorted(p.name for p in out.iterdir()) == [
        "log_history.json",
        "metrics.json",
        "mlm_step.json",
        "predictions.jsonl",
    ]


# --- the run record and model card of a fine-tuned model ------------------------------------------------


def test_run_record_and_card(run: tuple[Path, dict], checkpoint: Path) -> None:
    from huggingface_hub import ModelCard, metadata_load

    from mlm.run_record import RunRecord

    out, result = run
    record = RunRecord.load(out)
    assert record.kind == "finetune" and record.finetune is not None
    facts = record.finetune
    assert facts.base_model == "tiny-bert" and facts.from_scratch is False  # the folder's name, not its path
    assert facts.data == ["train.csv", "dev.jsonl.gz", "test.tsv"]
    assert facts.label_names == ["neg", "pos"] and facts.problem_type == "single_label_classification"
    assert facts.pipeline_tag == "text-classification" and facts.train_samples == 200
    assert set(facts.metrics) == {"validation", "test"}
    for split in ("validation", "test"):
        assert facts.metrics[split] == {k: result[split][k] for k in ("accuracy", "f1_macro", "loss")}
    assert record.training.steps == 39 and record.training.batch_size == 16 and record.training.epochs == 3.0
    assert record.training.learning_rate == 2e-3 and record.training.hardware.startswith("CPU")
    assert record.model.max_seq_length == 32 and record.model.num_hidden_layers == 2

    card = (out / "README.md").read_text()
    meta = metadata_load(out / "README.md")
    assert meta["pipeline_tag"] == "text-classification" and "base_model" not in meta  # not a Hub id
    results = ModelCard(card).data.eval_results
    assert {(r.dataset_name, r.dataset_split, r.metric_type) for r in results} == {
        (name, s, m) for name, s in (("dev", "validation"), ("test", "test")) for m in ("accuracy", "f1")
    }
    assert (
        "# sentiment\n" in card and 'model="sentiment"' in card
    )  # the output folder's name, not the temporary one
    assert "## Training" in card and "## Evaluation" in card and "on the test split:" in card
    for text in (card, (out / "run_info.json").read_text()):
        assert str(checkpoint.parent) not in text and ".tmp-" not in text and str(out.parent) not in text


def test_real_split_names_and_from_scratch_card(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets
    from huggingface_hub import ModelCard

    from mlm.run_record import RunRecord

    fake = datasets.DatasetDict(
        {s: datasets.Dataset.from_list(sentiment_rows(n, seed=i)) for i, (s, n) in enumerate((("train", 64),
         ("dev", 20), ("heldout", 20)))}
    )  # fmt: skip
    monkeypatch.setattr(builtin, "pydocs_task", lambda seed=0: fake)
    splits = {
        "train": "builtin:pydocs@train",
        "validation": "builtin:pydocs@dev",
        "test": "builtin:pydocs@heldout",
    }
    out = tmp_path / "scratch-cls"
    result = finetune(config(checkpoint, out, splits, from_scratch=True, num_train_epochs=1.0))
    record = RunRecord.load(out)
    assert set(record.finetune.metrics) == {"dev", "heldout"}
    assert record.finetune.metrics["heldout"]["accuracy"] == result["test"]["accuracy"]
    assert (
        record.finetune.from_scratch is True and record.objective.name is None and record.corpus.spec is None
    )
    card = ModelCard.load(out / "README.md")
    assert {r.dataset_split for r in card.data.eval_results} == {"dev", "heldout"}
    assert {r.dataset_type for r in card.data.eval_results} == {"pydocs"}
    assert "trained from random weights" in card.text and "on the heldout split:" in card.text


def test_min_train_steps_gives_a_small_training_set_more_epochs(
    checkpoint: Path, task: dict[str, Path], tmp_path: Path
) -> None:
    small = {"train": write_csv(tmp_path / "small.csv", sentiment_rows(40, seed=5)), "test": task["test"]}
    plain = finetune(config(checkpoint, tmp_path / "plain", small, save_model=False))
    assert plain["train"]["steps"] == 9  # 3 epochs of 3 batches of 16
    floored = finetune(config(checkpoint, tmp_path / "floor", small, save_model=False, min_train_steps=30))
    assert floored["train"]["steps"] == 30
    capped = finetune(
        config(checkpoint, tmp_path / "cap", small, save_model=False, min_train_steps=30, max_steps=5)
    )
    assert capped["train"]["steps"] == 5  # max_steps wins
    with pytest.raises(UserError, match="min_train_steps"):
        config(checkpoint, tmp_path / "x", small, min_train_steps=-1).validate()


def test_max_seq_length_defaults_to_what_the_tokenizer_was_saved_with(checkpoint, task, tmp_path):
    """Written once, in `pack`: fine-tuning reads the length from the model's tokenizer (model_max_length),
    and from its positions when the tokenizer says nothing; the config is left as written."""
    import shutil

    from transformers import AutoTokenizer

    model = tmp_path / "model"
    shutil.copytree(checkpoint, model)
    tok = AutoTokenizer.from_pretrained(model)
    tok.model_max_length = 24
    tok.save_pretrained(model)
    cfg = config(model, tmp_path / "out", task, max_seq_length=None, max_steps=1, save_model=False)
    assert finetune(cfg)["max_seq_length"] == 24 and cfg.max_seq_length is None
    tok.model_max_length = int(1e30)  # the tokenizer's "no limit": the model's 64 positions
    tok.save_pretrained(model)
    assert finetune(replace(cfg, output_dir=str(tmp_path / "out2")))["max_seq_length"] == 64


def test_metrics_report_tokens_per_second_and_model_flop_utilisation(run, checkpoint, task) -> None:
    """Fine-tuning counts the non-padding tokens it trains on (every epoch sees each text once), and reports
    the classifier's model FLOPs per token (at the token-weighted mean input length), tokens/s and MFU."""
    from mlm.flops import classifier_flops_per_token

    out, result = run
    written = json.loads((out / "metrics.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    texts = [row["text"] for row in csv.DictReader(task["train"].read_text(encoding="utf-8").splitlines())]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=32)["input_ids"]]
    assert written["train_tokens_counted"] == "non-padding"
    assert written["train_tokens"] == 3 * sum(lengths)  # 3 epochs
    seq_len = round(sum(n * n for n in lengths) / sum(lengths))
    expected = classifier_flops_per_token(AutoConfig.from_pretrained(out), seq_len, 2)
    assert written["model_flops_per_token"] == pytest.approx(expected)
    assert written["train_tokens_per_second"] == pytest.approx(
        written["train_tokens"] / written["train_seconds"]
    )
    assert written["model_flops_per_second"] == pytest.approx(written["train_tokens_per_second"] * expected)
    assert 0 < written["share_of_peak"] < 1 and written["peak_source"].startswith("measured: ")
    training = json.loads((out / "run_info.json").read_text())["training"]
    assert training["tokens_seen"] == written["train_tokens"] and training["tokens_counted"] == "non-padding"
    assert training["share_of_peak"] == written["share_of_peak"]
    assert "tokens/s (non-padding tokens)" in (out / "README.md").read_text()

"""Model cards generated from run facts: valid YAML metadata, the run's numbers, no blanks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.numpy import save_file

from mlm.model_card import (
    CARD_MARKER,
    count_parameters,
    fmt,
    fmt_duration,
    render_model_card,
    write_model_card,
)
from mlm.run_record import FinetuneFacts, ModelFacts, ObjectiveFacts, RunRecord, TrainingFacts

PRETRAIN_INFO = {
    "kind": "pretrain",
    "repo_id": "someone/tiny-bert-pydocs",
    "license": "mit",
    "language": "en",
    "corpus": {
        "spec": "hf:wikitext:wikitext-2-raw-v1@train",
        "documents": 12345,
        "tokens": 2345678,
        "fingerprint": "9f8e7d6c5b4a3210",
    },
    "tokenizer": {"kind": "wordpiece", "vocab_size": 8192},
    "model": {"preset": "mini", "num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4},
    "objective": {
        "name": "mlm",
        "description": "masked language modelling",
        "pipeline_tag": "fill-mask",
        "facts": {"Masking": "whole_word, rate 0.15"},
        "tags": ["masked-language-modeling"],
        "metric_labels": {
            "eval_loss": "MLM loss",
            "perplexity": "Perplexity",
            "masked_accuracy": "Masked-token accuracy",
        },
    },
    "training": {
        "steps": 1500,
        "tokens_seen": 24576000,
        "batch_size": 128,
        "learning_rate": 0.0005,
        "lr_scheduler_type": "linear",
        "warmup": 100,
        "hardware": "1 x NVIDIA H100 80GB HBM3",
        "wall_time_s": 3725.4,
    },
    "eval": {"eval_loss": 3.876543, "perplexity": 48.2871, "masked_accuracy": 0.35714},
}

SHAPES = {
    "bert.embeddings.word_embeddings.weight": (8192, 256),
    "bert.embeddings.position_embeddings.weight": (128, 256),
    "bert.encoder.layer.0.attention.self.query.weight": (256, 256),
    "cls.predictions.bias": (8192,),
}
N_PARAMS = 8192 * 256 + 128 * 256 + 256 * 256 + 8192


def _folder(tmp_path: Path, arch: str = "BertForMaskedLM", mask: str = "[MASK]", **config) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    cfg = {"architectures": [arch], "model_type": "bert", "num_hidden_layers": 4, "hidden_size": 256,
           "num_attention_heads": 4, "intermediate_size": 1024, "max_position_embeddings": 128,
           "vocab_size": 8192, **config}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "tokenizer_config.json").write_text(json.dumps({"mask_token": mask, "model_max_length": 128}))
    save_file(
        {k: np.zeros(s, dtype=np.float32) for k, s in SHAPES.items()}, str(folder / "model.safetensors")
    )
    return folder


def _split(card: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", card, re.S)
    assert match, "the card must start with YAML front matter"
    return yaml.safe_load(match.group(1)), match.group(2)


def _sections(body: str) -> dict[str, str]:
    parts = re.split(r"^## (.+)$", body, flags=re.M)
    return {parts[i].strip(): parts[i + 1].strip() for i in range(1, len(parts), 2)}


def _assert_no_blanks(card: str) -> None:
    for bad in ("TODO", "None", "nan", "[More Information Needed]", "{", "}"):
        assert bad not in card.split("---", 2)[2], f"{bad!r} in the card body"
    for heading, text in _sections(card.split("---", 2)[2]).items():
        assert text, f"section {heading!r} is empty"
    assert not re.search(
        r":\s*$", "\n".join(line for line in card.splitlines() if line.startswith("- ")), re.M
    )


def test_pretrained_card_has_metadata_and_the_runs_numbers(tmp_path: Path):
    folder = _folder(tmp_path, mask="<mask>")
    card = render_model_card(folder, PRETRAIN_INFO)
    meta, body = _split(card)
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "fill-mask"
    assert meta["license"] == "mit"
    assert meta["language"] == "en"
    assert meta["tags"] == ["mlm", "bert", "masked-language-modeling"]
    assert meta["datasets"] == ["wikitext"]
    assert "model-index" not in meta
    _assert_no_blanks(card)

    sections = _sections(body)
    assert list(sections) == ["Corpus", "Tokenizer", "Architecture", "Training", "Evaluation", "How to use",
                              "Limitations"]  # fmt: skip
    c, tr, ev = PRETRAIN_INFO["corpus"], PRETRAIN_INFO["training"], PRETRAIN_INFO["eval"]
    assert "`hf:wikitext:wikitext-2-raw-v1@train`" in sections["Corpus"]
    assert "- Documents: 12,345" in sections["Corpus"]
    assert f"- Tokens: {c['tokens']:,}" in sections["Corpus"]
    assert c["fingerprint"] in sections["Corpus"]
    assert (
        "- Kind: wordpiece" in sections["Tokenizer"] and "- Vocabulary size: 8,192" in sections["Tokenizer"]
    )
    assert "- Mask token: `<mask>`" in sections["Tokenizer"]
    arch = sections["Architecture"]
    assert "- Preset: `mini`" in arch and "- Layers: 4" in arch and "- Hidden size: 256" in arch
    assert "- Attention heads: 4" in arch
    assert f"- Parameters: {N_PARAMS:,}" in arch  # read from the safetensors header
    training = sections["Training"]
    assert "- Steps: 1,500" in training and "- Tokens seen: 24,576,000" in training
    assert "- Batch size: 128" in training
    assert "- Learning rate: peak 0.0005, linear schedule, warmup 100" in training
    assert "- Masking: whole_word, rate 0.15" in training
    assert f"- Hardware: {tr['hardware']}" in training
    assert "- Wall time: 3,725 s (1 h 02 min)" in training
    evaluation = sections["Evaluation"]
    assert f"| MLM loss | {ev['eval_loss']:.4g} |" in evaluation
    assert f"| Perplexity | {ev['perplexity']:.4g} |" in evaluation
    assert f"| Masked-token accuracy | {ev['masked_accuracy']:.4g} |" in evaluation
    usage = sections["How to use"]
    assert 'pipeline("fill-mask", model="someone/tiny-bert-pydocs")' in usage
    assert "<mask>" in usage and "[MASK]" not in usage
    assert "2,345,678 tokens" in sections["Limitations"] and "128 tokens" in sections["Limitations"]
    assert body.lstrip().startswith(CARD_MARKER)
    assert "# tiny-bert-pydocs" in body
    assert f"A small BERT encoder (`mini` preset, {N_PARAMS:,} parameters) pretrained" in body


def test_finetuned_card_has_model_index_and_scratch_baseline(tmp_path: Path):
    from huggingface_hub import ModelCard

    folder = _folder(tmp_path, arch="BertForSequenceClassification", id2label={"0": "json", "1": "os"})
    info = {
        "kind": "finetune",
        "repo_id": "someone/tiny-bert-pydocs-cls",
        "corpus": {"spec": "builtin:pydocs", "documents": 900},
        "finetune": {
            "task": "pydocs package classification",
            "data": "builtin:pydocs",
            "base_model": "someone/tiny-bert-pydocs",
            "metrics": {"test": {"accuracy": 0.8125, "f1": 0.79321, "loss": 0.61, "runtime": 1.2}},
            "scratch_metrics": {"test": {"accuracy": 0.5625, "f1": 0.5}},
        },
    }
    card = render_model_card(folder, info)
    meta, body = _split(card)
    assert meta["pipeline_tag"] == "text-classification"
    assert "license" not in meta  # only a licence the user gave
    assert "language" not in meta and "datasets" not in meta  # unknown: left out, not blank
    assert meta["tags"] == ["mlm", "bert", "text-classification"]
    assert meta["base_model"] == "someone/tiny-bert-pydocs"
    results = meta["model-index"][0]["results"][0]
    assert results["task"]["type"] == "text-classification"
    assert {m["type"]: m["value"] for m in results["metrics"]} == {"accuracy": 0.8125, "f1": 0.79321}
    # the Hub client's own parser accepts the metadata
    eval_results = ModelCard(card).data.eval_results
    assert {r.metric_type: r.metric_value for r in eval_results} == {"accuracy": 0.8125, "f1": 0.79321}
    _assert_no_blanks(card)
    sections = _sections(body)
    assert "| Accuracy | 0.8125 | 0.5625 |" in sections["Evaluation"]
    assert "| F1 | 0.7932 | 0.5 |" in sections["Evaluation"]
    assert "| Loss | 0.61 | - |" in sections["Evaluation"]
    assert "runtime" not in sections["Evaluation"].lower()
    assert 'pipeline("text-classification", model="someone/tiny-bert-pydocs-cls")' in sections["How to use"]
    assert "`json`, `os`" in sections["How to use"]
    assert "Training" not in sections  # no training facts recorded: no section


def test_card_without_run_info_uses_only_folder_facts(tmp_path: Path):
    folder = _folder(tmp_path)
    card = render_model_card(folder, {})
    meta, body = _split(card)
    assert meta == {
        "library_name": "transformers",
        "pipeline_tag": "fill-mask",
        "tags": ["mlm", "bert", "masked-language-modeling"],
    }
    sections = _sections(body)
    assert set(sections) == {"Tokenizer", "Architecture", "How to use", "Limitations"}
    assert f"- Parameters: {N_PARAMS:,}" in sections["Architecture"]
    assert 'model="model"' in sections["How to use"]  # the folder name stands in for the repo id
    _assert_no_blanks(card)


def test_write_model_card_respects_user_cards_and_reads_run_info(tmp_path: Path):
    folder = _folder(tmp_path)
    (folder / "run_info.json").write_text(json.dumps(PRETRAIN_INFO))
    assert RunRecord.load(folder) == RunRecord.from_dict(PRETRAIN_INFO)
    assert RunRecord.load(folder).corpus.documents == PRETRAIN_INFO["corpus"]["documents"]
    assert write_model_card(folder)  # no README yet: written from run_info.json
    text = (folder / "README.md").read_text()
    assert "someone/tiny-bert-pydocs" in text and CARD_MARKER in text
    # our own card is refreshed
    assert write_model_card(folder, {**PRETRAIN_INFO, "repo_id": "someone/renamed"})
    assert "someone/renamed" in (folder / "README.md").read_text()
    # a card the user wrote (no marker) is kept, unless forced
    (folder / "README.md").write_text("# My own card\n")
    assert not write_model_card(folder)
    assert (folder / "README.md").read_text() == "# My own card\n"
    assert write_model_card(folder, force=True)
    # unreadable run_info.json: a warning and an empty record, not a crash
    (folder / "run_info.json").write_text("{not json")
    assert RunRecord.load(folder) == RunRecord()
    assert RunRecord.load(tmp_path / "missing") == RunRecord()


def test_parameter_count_for_sharded_weights(tmp_path: Path):
    folder = tmp_path / "sharded"
    folder.mkdir()
    save_file({"a": np.zeros((3, 4), dtype=np.float32)}, str(folder / "model-00001-of-00002.safetensors"))
    save_file({"b": np.zeros((5,), dtype=np.float32)}, str(folder / "model-00002-of-00002.safetensors"))
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    assert count_parameters(folder) == 17
    assert count_parameters(tmp_path) is None


@pytest.mark.parametrize(
    ("value", "text"),
    [(12345, "12,345"), (0.123456, "0.1235"), (48.2871, "48.29"), (5e-05, "5e-05"), (2.0e6, "2,000,000"),
     (True, "yes"), ("wordpiece", "wordpiece")],
)  # fmt: skip
def test_number_formatting(value, text):
    assert fmt(value) == text


def test_duration_formatting():
    assert fmt_duration(3725.4) == "3,725 s (1 h 02 min)"
    assert fmt_duration(75) == "75 s (1 min 15 s)"
    assert fmt_duration(4.25) == "4.2 s"


# ---- the card's facts come from the record, never from a temporary folder, a default or a local path ----------
def test_title_and_usage_use_the_final_name_never_a_temporary_folder(tmp_path: Path):
    folder = _folder(tmp_path)
    temporary = folder.rename(
        tmp_path / ".final.tmp-k3x9q2"
    )  # how a step writes its folder before renaming it
    for card, expected in (
        (render_model_card(temporary, {}), "final"),  # no name given: the name the folder will have
        (render_model_card(temporary, {}, name="my-bert"), "my-bert"),
        (render_model_card(temporary, {"repo_id": "someone/hub-bert"}, name="my-bert"), "someone/hub-bert"),
    ):
        _, body = _split(card)
        assert ".tmp-" not in card and "k3x9q2" not in card
        assert f"# {expected.split('/')[-1]}\n" in body
        assert f'pipeline("fill-mask", model="{expected}")' in _sections(body)["How to use"]


def test_one_sequence_length_the_trained_one(tmp_path: Path):
    folder = _folder(tmp_path, max_position_embeddings=512)
    info = {**PRETRAIN_INFO, "model": {**PRETRAIN_INFO["model"], "max_seq_length": 128}}
    _, body = _split(render_model_card(folder, info))
    sections = _sections(body)
    assert "- Maximum sequence length: 128" in sections["Architecture"]
    assert "at most 128 tokens" in sections["Limitations"]
    assert "512" not in body


def test_no_local_paths_license_only_when_given_datasets_and_language_from_the_record(tmp_path: Path):
    folder = _folder(tmp_path)
    info = {
        "language": ["en", "fr"],
        "datasets": ["someone/my-corpus"],
        "corpus": {
            "spec": ["/home/someone/private/corpus.jsonl.gz", "hf:wikitext:wikitext-2-raw-v1", "data/more/"]
        },
        "finetune": {"data": ["/home/someone/private/labels/train.csv", "hf:glue:sst2@validation"]},
    }
    card = render_model_card(folder, info)
    meta, body = _split(card)
    assert "/home" not in card and "private" not in card and "data/more" not in card
    assert "`corpus.jsonl.gz, hf:wikitext:wikitext-2-raw-v1, more`" in body
    assert "license" not in meta
    assert meta["language"] == ["en", "fr"]
    assert meta["datasets"] == ["someone/my-corpus", "wikitext", "glue"]


def test_objective_facts_tags_and_metric_names_come_from_the_record(tmp_path: Path):
    folder = _folder(tmp_path, arch="ElectraForPreTraining", model_type="electra")
    record = RunRecord(
        repo_id="someone/tiny-electra",
        objective=ObjectiveFacts(
            name="electra",
            description="replaced token detection",
            facts={"Generator": "a quarter of the discriminator's size"},
            tags=["replaced-token-detection"],
            metric_labels={"eval_rtd_accuracy": "Replaced-token accuracy"},
        ),
        training=TrainingFacts(steps=10),
        eval={"eval_loss": 0.5, "eval_rtd_accuracy": 0.9},
    )
    meta, body = _split(render_model_card(folder, record))
    assert "pipeline_tag" not in meta  # the objective names none and ElectraForPreTraining has no pipeline
    assert meta["tags"] == ["mlm", "electra", "replaced-token-detection"]
    sections = _sections(body)
    assert "pretrained from scratch with replaced token detection" in body
    assert "- Generator: a quarter of the discriminator's size" in sections["Training"]
    assert "Replaced token detection, on the held-out validation split:" in sections["Evaluation"]
    assert "| Replaced-token accuracy | 0.9 |" in sections["Evaluation"]
    assert "| Loss | 0.5 |" in sections["Evaluation"]
    usage = sections["How to use"]
    assert 'AutoModel.from_pretrained("someone/tiny-electra")' in usage and "pipeline(" not in usage
    for word in ("mask", "MLM", "Mask", "perplexity", "Perplexity"):
        assert word not in body, word
    _assert_no_blanks(render_model_card(folder, record))


def test_finetuned_record_gives_a_valid_model_index_with_real_split_names(tmp_path: Path):
    from huggingface_hub import ModelCard, metadata_load

    folder = _folder(
        tmp_path, arch="BertForSequenceClassification", id2label={"0": "negative", "1": "positive"}
    )
    record = RunRecord(
        kind="finetune",
        repo_id="someone/sst2-bert",
        model=ModelFacts(max_seq_length=64),
        training=TrainingFacts(steps=39, epochs=3.0, batch_size=16, learning_rate=2e-3, hardware="CPU"),
        finetune=FinetuneFacts(
            data=["hf:glue:sst2@train", "hf:glue:sst2@validation", "hf:glue:sst2@test"],
            base_model="someone/tiny-bert",
            pipeline_tag="text-classification",
            problem_type="single_label_classification",
            label_names=["negative", "positive"],
            train_samples=200,
            metrics={
                "validation": {"accuracy": 0.85, "loss": 0.4},
                "test": {"accuracy": 0.8, "f1_macro": 0.79},
            },
        ),
    )
    write_model_card(folder, record)
    meta = metadata_load(folder / "README.md")
    assert meta["pipeline_tag"] == "text-classification" and meta["base_model"] == "someone/tiny-bert"
    results = ModelCard.load(folder / "README.md").data.eval_results
    assert {(r.dataset_split, r.metric_type, r.metric_value, str(r.metric_args)) for r in results} == {
        ("validation", "accuracy", 0.85, "None"),
        ("test", "accuracy", 0.8, "None"),
        ("test", "f1", 0.79, "{'average': 'macro'}"),
    }
    assert {(r.dataset_type, r.dataset_config, r.task_type) for r in results} == {
        ("glue", "sst2", "text-classification")
    }
    _, body = _split((folder / "README.md").read_text())
    sections = _sections(body)
    assert "- Training examples: 200" in sections["Training"] and "- Epochs: 3" in sections["Training"]
    assert "- Problem type: single_label_classification" in sections["Training"]
    assert (
        "on the validation split:" in sections["Evaluation"]
        and "on the test split:" in sections["Evaluation"]
    )
    assert "| F1 macro | 0.79 |" in sections["Evaluation"]
    assert "Masking" not in body and "at most 64 tokens" in sections["Limitations"]
    assert "`negative`, `positive`" in sections["How to use"]


def test_pretraining_card_names_the_final_folder_and_no_local_path(packed_dir: Path, tmp_path: Path):
    """Pretraining writes its card inside a temporary folder that is renamed afterwards."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from tiny_run import tiny_pretrain_config

    from mlm.pretrain import pretrain

    out = tmp_path / "run"
    pretrain(tiny_pretrain_config(packed_dir, out, max_steps=2, eval_steps=2, save_steps=2))
    card = (out / "final" / "README.md").read_text()
    meta, body = _split(card)
    assert "# final\n" in body and 'model="final"' in body
    assert ".tmp-" not in card and str(tmp_path) not in card and str(packed_dir.parents[1]) not in card
    assert meta["pipeline_tag"] == "fill-mask" and "- Maximum sequence length: 32" in body
    _assert_no_blanks(card)


def test_modernbert_card_names_the_first_transformers_that_loads_it(tmp_path: Path):
    """ModernBERT entered transformers in 4.48, after the 4.44 our BERT checkpoints load with: its card says so."""
    modern = _sections(
        _split(render_model_card(_folder(tmp_path, "ModernBertForMaskedLM", model_type="modernbert"), {}))[1]
    )
    assert "`transformers` 4.48 or newer" in modern["Limitations"]
    (tmp_path / "b").mkdir()
    bert = _sections(_split(render_model_card(_folder(tmp_path / "b"), {}))[1])
    assert "or newer" not in bert["Limitations"]


def _classifier(tmp_path: Path, **config) -> Path:
    return _folder(
        tmp_path, arch="BertForSequenceClassification", id2label={"0": "negative", "1": "positive"}, **config
    )


def _scores() -> dict[str, dict[str, float]]:
    return {
        "validation": {"accuracy": 0.9, "f1_macro": 0.89, "matthews_correlation": 0.8, "loss": 0.3},
        "test": {"accuracy": 0.85, "f1_macro": 0.84, "matthews_correlation": 0.7, "loss": 0.4},
    }


def test_model_index_names_the_data_and_split_of_each_score_with_hub_metric_ids(tmp_path: Path):
    from huggingface_hub import ModelCard

    record = RunRecord(
        kind="finetune",
        finetune=FinetuneFacts(
            data=["train.csv", "dev.csv", "test.csv.gz"],
            pipeline_tag="text-classification",
            metrics=_scores(),
        ),
    )
    write_model_card(_classifier(tmp_path), record)
    card = ModelCard.load(tmp_path / "model" / "README.md")
    got = {(r.dataset_name, r.dataset_type, r.dataset_split, r.metric_type, r.metric_value, str(r.metric_args))
           for r in card.data.eval_results}  # fmt: skip
    assert got == {
        ("dev", "dev", "validation", "accuracy", 0.9, "None"),
        ("dev", "dev", "validation", "f1", 0.89, "{'average': 'macro'}"),
        ("dev", "dev", "validation", "matthews_correlation", 0.8, "None"),
        ("test", "test", "test", "accuracy", 0.85, "None"),
        ("test", "test", "test", "f1", 0.84, "{'average': 'macro'}"),
        ("test", "test", "test", "matthews_correlation", 0.7, "None"),
    }
    assert {r.metric_name for r in card.data.eval_results} == {"Accuracy", "F1 macro", "Matthews correlation"}
    # the dataset the user named (`datasets`) is the data of every split; a Hub spec names itself
    record.finetune.datasets = ["someone/reviews"]
    record.finetune.data = ["train.csv", "dev.csv", "hf:someone/reviews-test:en@test"]
    write_model_card(tmp_path / "model", record)
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert {
        (r.dataset_type, r.dataset_name, r.dataset_config, r.dataset_split) for r in card.data.eval_results
    } == {
        ("someone/reviews", "someone/reviews", None, "validation"),
        ("someone/reviews-test", "someone/reviews-test", "en", "test"),
    }
    assert card.data.datasets == ["someone/reviews", "someone/reviews-test"]
    # a test split only: its file names the data
    record.finetune.datasets, record.finetune.data = None, ["train.csv", "held_out.tsv"]
    record.finetune.metrics = {"test": _scores()["test"]}
    write_model_card(tmp_path / "model", record)
    card = ModelCard.load(tmp_path / "model" / "README.md")
    assert {(r.dataset_name, r.dataset_split) for r in card.data.eval_results} == {("held_out", "test")}


def test_architecture_named_and_a_widget_example_from_the_validation_data(tmp_path: Path):
    from huggingface_hub import ModelCard

    record = RunRecord(
        kind="finetune",
        finetune=FinetuneFacts(
            data=["train.csv", "dev.csv"],
            pipeline_tag="text-classification",
            example='a "fine" film: it ends well',
            metrics={"validation": {"accuracy": 0.9}},
        ),
    )
    folder = _classifier(tmp_path, model_type="modernbert")
    write_model_card(folder, record)
    card = ModelCard.load(folder / "README.md")
    assert card.data.widget == [{"text": 'a "fine" film: it ends well'}]
    assert "A small ModernBERT encoder" in card.text and "BERT-style" not in card.text
    assert card.data.tags == ["mlm", "modernbert", "text-classification"]
    (tmp_path / "electra").mkdir()
    electra = render_model_card(
        _folder(tmp_path / "electra", "ElectraForPreTraining", model_type="electra"), {}
    )
    assert "A small ELECTRA encoder" in electra and "widget" not in electra  # a pretrained model: no example
    (tmp_path / "bert").mkdir()
    record.finetune.example = None
    bert = render_model_card(_classifier(tmp_path / "bert"), record)
    assert "A small BERT encoder" in bert and "widget" not in bert


def test_a_classifier_card_tells_its_bases_pretraining(tmp_path: Path):
    """From the base's own run_info.json (RunRecord.of_model: a folder here; a Hub repo in test_run_record.py)."""
    from huggingface_hub import ModelCard

    base = _folder(tmp_path)
    (base / "run_info.json").write_text(json.dumps(PRETRAIN_INFO))
    facts = RunRecord.of_model(base)
    record = RunRecord(
        kind="finetune",
        corpus=facts.corpus,
        tokenizer=facts.tokenizer,
        objective=facts.objective,
        finetune=FinetuneFacts(
            base_model=facts.repo_id, pipeline_tag="text-classification", metrics=_scores()
        ),
    )
    (tmp_path / "cls").mkdir()
    card = ModelCard(render_model_card(_classifier(tmp_path / "cls"), record))
    sections = _sections(card.text)
    assert "pretrained from scratch with masked language modelling on `hf:wikitext:wikitext-2-raw-v1@train`, " \
           "then fine-tuned from `someone/tiny-bert-pydocs`" in card.text  # fmt: skip
    assert "- Documents: 12,345" in sections["Corpus"] and "- Kind: wordpiece" in sections["Tokenizer"]
    assert card.data.base_model == "someone/tiny-bert-pydocs" and card.data.datasets == ["wikitext"]
    # a base trained elsewhere (no record): no pretraining claimed
    record = RunRecord(kind="finetune", finetune=FinetuneFacts(base_model="google-bert/bert-base-uncased",
                                                               pipeline_tag="text-classification"))  # fmt: skip
    text = render_model_card(tmp_path / "cls" / "model", record)
    assert (
        "A small BERT encoder (" in text
        and "parameters) fine-tuned from `google-bert/bert-base-uncased`" in text
    )
    assert "pretrained" not in text.split("##")[0]

"""The typed run record (run_info.json): round trip, tolerant reading, no local paths."""

from __future__ import annotations

import json
from pathlib import Path

from mlm.run_record import (
    CorpusFacts,
    FinetuneFacts,
    ObjectiveFacts,
    RunRecord,
    TrainingFacts,
    hub_dataset_names,
    legacy_objective,
    public_spec,
    spec_parts,
)


def test_save_and_load_round_trip(tmp_path: Path):
    record = RunRecord(
        kind="finetune",
        language=["en"],
        corpus=CorpusFacts(spec=["hf:wikitext:wikitext-2-raw-v1@train"], tokens=123),
        objective=ObjectiveFacts(name="mlm", pipeline_tag="fill-mask", facts={"Masking": "15%"}, tags=["x"]),
        training=TrainingFacts(steps=3, learning_rate=1e-3),
        finetune=FinetuneFacts(
            from_scratch=False, metrics={"test": {"accuracy": 0.5}}, label_names=["a", "b"]
        ),
    )
    path = record.save(tmp_path)
    assert path == tmp_path / "run_info.json"
    assert RunRecord.load(tmp_path) == record


def test_unknown_keys_are_ignored_and_missing_ones_stay_none():
    record = RunRecord.from_dict(
        {"kind": "finetune", "corpus": {"spec": ["x.txt"], "key_from_the_future": 1}}
    )
    assert record.kind == "finetune" and record.corpus == CorpusFacts(spec=["x.txt"])
    assert record.objective == ObjectiveFacts() and record.finetune is None
    assert RunRecord.from_dict({}) == RunRecord()  # no record at all: nothing is implied


def test_values_of_the_wrong_kind_are_dropped():
    record = RunRecord.from_dict(
        {"objective": {"name": "mlm"}, "corpus": {"documents": "many", "tokens": True}, "training": [1, 2]}
    )
    assert record.corpus.documents is None and record.corpus.tokens is None
    assert record.training == TrainingFacts()


def test_specs_keep_hub_names_and_file_names_only(tmp_path: Path):
    assert public_spec("/home/someone/private/corpus.jsonl.gz") == "corpus.jsonl.gz"
    assert public_spec("data/folder/") == "folder"
    assert public_spec("hf:glue:sst2@validation") == "hf:glue:sst2@validation"
    assert public_spec("builtin:pydocs@train") == "builtin:pydocs@train"
    record = RunRecord(
        corpus=CorpusFacts(spec=[str(tmp_path / "a.txt")]),
        finetune=FinetuneFacts(data=[str(tmp_path / "t.csv")]),
    )
    record.save(tmp_path)
    text = (tmp_path / "run_info.json").read_text()
    assert str(tmp_path) not in text
    assert json.loads(text)["corpus"]["spec"] == ["a.txt"] and RunRecord.load(tmp_path).finetune.data == [
        "t.csv"
    ]
    assert spec_parts("hf:glue:sst2@validation") == ("hf:glue:sst2", "validation")
    assert spec_parts("dev@2.csv") == ("dev@2.csv", None)
    assert hub_dataset_names(["hf:glue:sst2@train", "hf:glue:mrpc", "x.csv", "hf:imdb"]) == ["glue", "imdb"]


def test_legacy_objective_from_the_architecture():
    assert legacy_objective("BertForMaskedLM").pipeline_tag == "fill-mask"
    assert legacy_objective("BertForSequenceClassification") == ObjectiveFacts()
    assert legacy_objective(None) == ObjectiveFacts()

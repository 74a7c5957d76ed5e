"""The typed run record (run_info.json): round trip, tolerant reading, no local paths."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import hub_server  # noqa: E402
import test_hub  # noqa: E402

from mlm.run_record import (  # noqa: E402
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

hub = hub_server.hub  # fixtures of other test files
tiny_model = test_hub.tiny_model


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


OF_MODEL = """
import json, sys
from mlm.run_record import RunRecord
print(json.dumps({name: RunRecord.of_model(name).to_dict() for name in sys.argv[1:]}))
"""


def test_the_record_of_a_base_model_on_the_hub(hub, tiny_model: Path, tmp_path: Path):
    """What fine-tuning carries from its base: the Hub repo's run_info.json, as a local folder's."""
    import subprocess

    env = hub.client_env(tmp_path / "home", token="hf_recordTestT0ken_0123456789")
    pushed = subprocess.run([sys.executable, "-m", "mlm", "push", str(tiny_model), "tester/base"], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    hub.create_repo("tester/plain")  # a model trained elsewhere: no run_info.json

    def of_model(*names: str) -> tuple[dict, str]:
        r = subprocess.run([sys.executable, "-c", OF_MODEL, *names], env=env, capture_output=True, text=True,
                           timeout=300)  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        return json.loads(r.stdout.strip().splitlines()[-1]), r.stderr

    records, err = of_model("tester/base", "tester/plain", str(tiny_model))
    assert records["tester/base"] == records[str(tiny_model)] == RunRecord.load(tiny_model).to_dict()
    assert records["tester/base"]["corpus"]["documents"] == 321
    assert records["tester/plain"] == RunRecord().to_dict() and err == ""
    hub.stop()
    records, err = of_model("tester/elsewhere")
    assert records["tester/elsewhere"] == RunRecord().to_dict()
    warning = err.strip().splitlines()[-1]  # (after huggingface_hub's own log line)
    assert warning.startswith("warning: could not read run_info.json of tester/elsewhere (")
    assert warning.endswith("its pretraining facts are left out of the card")

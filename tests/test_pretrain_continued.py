"""model_name_or_path: continued (domain-adaptive) pretraining from a masked-LM checkpoint and its tokenizer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from data_prep.errors import UserError
from mlm.pretrain import pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_run import tiny_pretrain_config  # noqa: E402


@pytest.fixture(scope="module")
def source(packed_dir, tmp_path_factory):
    """A small BERT masked-LM checkpoint saved by a test (its tokenizer beside it): the starting point."""
    out = tmp_path_factory.mktemp("source") / "run"
    pretrain(tiny_pretrain_config(packed_dir, out, max_steps=3, save_steps=0, eval_steps=0))
    return out / "final"


def test_starts_from_the_checkpoint(source, packed_dir, tmp_path):
    out = tmp_path / "continued"
    # a learning rate too small to move the weights: what comes out is what went in
    metrics = pretrain(tiny_pretrain_config(packed_dir, out, model_name_or_path=str(source), preset="mini",
                                            config_overrides={}, learning_rate=1e-12, max_steps=2))  # fmt: skip
    assert metrics["steps"] == 2
    a, b = load_file(str(source / "model.safetensors")), load_file(str(out / "final" / "model.safetensors"))
    assert a.keys() == b.keys()  # the checkpoint's size, not the `mini` preset's
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-6


def test_refuses_a_checkpoint_without_masked_lm_head(source, packed_dir, tmp_path):
    classifier = tmp_path / "classifier"
    config = BertConfig.from_pretrained(source)
    BertForSequenceClassification(config).save_pretrained(classifier)
    AutoTokenizer.from_pretrained(source).save_pretrained(classifier)
    with pytest.raises(UserError, match="has no masked-LM head"):
        pretrain(tiny_pretrain_config(packed_dir, tmp_path / "r", model_name_or_path=str(classifier)))


def test_refuses_another_tokenizer(source, packed_dir, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    for f in source.iterdir():
        if f.is_file():
            (other / f.name).write_bytes(f.read_bytes())
    vocab = (other / "tokenizer.json").read_text().replace('"the":', '"thee":', 1)
    (other / "tokenizer.json").write_text(vocab)
    with pytest.raises(UserError, match="pack the corpus with `--tokenizer_dir"):
        pretrain(tiny_pretrain_config(packed_dir, tmp_path / "r", model_name_or_path=str(other)))


def test_only_with_masked_lm(packed_dir, tmp_path, source):
    with pytest.raises(UserError, match="model_name_or_path works with objective: mlm"):
        tiny_pretrain_config(
            packed_dir, tmp_path, model_name_or_path=str(source), objective="electra"
        ).validate()


def test_card_and_record_name_the_start(source, packed_dir, tmp_path):
    from mlm.run_record import RunRecord

    out = tmp_path / "continued"
    pretrain(tiny_pretrain_config(packed_dir, out, model_name_or_path=str(source), max_steps=1, save_steps=0))
    record = RunRecord.load(out / "final")
    assert record.model.init_from == "final" and record.model.preset is None
    assert "pretrained further from `final`" in (out / "final" / "README.md").read_text()
    assert str(source) not in (out / "final" / "run_info.json").read_text()  # no local path


def test_recipe_packs_with_the_checkpoint_tokenizer(tmp_path):
    import yaml

    from mlm.recipe import RunConfig, plan_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"prepare": {"corpus": ["x.txt"]}, "pack": {},
                                      "pretrain": {"model_name_or_path": "someone/bert-base"}}))  # fmt: skip
    plan = plan_recipe(RunConfig(recipe=str(recipe)))
    assert plan.configs["pack"].tokenizer_dir == "someone/bert-base"

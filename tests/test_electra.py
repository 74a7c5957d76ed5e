"""The ELECTRA objective: the generator fills the masked positions, the discriminator tags every position;
`final/` is a native ElectraForPreTraining that fine-tunes as a classifier, with the generator beside it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    ElectraForPreTraining,
    ElectraForSequenceClassification,
    pipeline,
)

from data_prep.errors import UserError
from mlm.modeling import build_config
from mlm.objectives.electra import ElectraWithGenerator, electra_configs
from mlm.pretrain import pretrain
from mlm.run_record import RunRecord

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tiny_run import TINY, tiny_pretrain_config  # noqa: E402


@pytest.fixture(scope="module")
def electra_run(packed_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("electra") / "run"
    metrics = pretrain(tiny_pretrain_config(packed_dir, out, objective="electra"))
    return out, metrics


def test_generator_is_a_fraction_and_shares_embeddings():
    disc, gen = electra_configs(build_config("mini", 512, 32), 0.25)
    assert (disc.hidden_size, gen.hidden_size, gen.num_attention_heads, gen.intermediate_size) == (
        256,
        64,
        1,
        256,
    )
    model = ElectraWithGenerator(disc, gen)
    assert model.generator.electra.embeddings is model.electra.embeddings
    assert model.generator.generator_lm_head.weight is model.electra.embeddings.word_embeddings.weight


def test_loss_covers_every_position_and_trains(packed_dir):
    disc, gen = electra_configs(build_config("tiny", 512, 32, overrides=TINY), 0.5)
    model = ElectraWithGenerator(disc, gen, weight=50.0)
    ids = torch.randint(5, 512, (4, 32))
    labels = torch.full_like(ids, -100)
    labels[:, ::5] = ids[:, ::5]
    masked = ids.clone()
    masked[:, ::5] = 4
    out = model(input_ids=masked, attention_mask=torch.ones_like(ids), labels=labels)
    assert out.loss.ndim == 0 and out.loss > 0
    out.loss.backward()
    assert model.electra.embeddings.word_embeddings.weight.grad is not None
    assert model.generator.electra.encoder.layer[0].attention.self.query.weight.grad is not None
    model.eval()
    stats = model(input_ids=masked, attention_mask=torch.ones_like(ids), labels=labels).logits
    assert stats.shape == (1, 6) and stats[0, 3] == 4 * 32  # every position is scored


def test_pretrain_exports_native_discriminator_and_generator(electra_run):
    out, metrics = electra_run
    assert metrics["steps"] == 6 and metrics["eval_loss"] is not None
    for key in ("generator_accuracy", "discriminator_accuracy", "replaced_recall"):
        assert 0.0 <= metrics[key] <= 1.0, key
    final = out / "final"
    assert json.loads((final / "config.json").read_text())["architectures"] == ["ElectraForPreTraining"]
    model, info = AutoModelForPreTraining.from_pretrained(final, output_loading_info=True)
    assert type(model) is ElectraForPreTraining and not info["missing_keys"] and not info["unexpected_keys"]
    classifier = AutoModelForSequenceClassification.from_pretrained(final, num_labels=3)
    assert type(classifier) is ElectraForSequenceClassification
    fill = pipeline("fill-mask", model=str(final / "generator"), top_k=2)
    assert len(fill("the [MASK] of the world.")) == 2
    record = RunRecord.load(final)
    assert record.objective.name == "electra" and "Generator" in record.objective.facts
    assert "ELECTRA" in (final / "README.md").read_text()


def test_checkpoints_keep_the_generator_for_resume(electra_run, packed_dir, tmp_path):
    out, _ = electra_run
    from safetensors.torch import load_file

    keys = load_file(str(out / "checkpoint-6" / "model.safetensors"))
    assert any(k.startswith("generator.") for k in keys)
    classifier = AutoModelForSequenceClassification.from_pretrained(out / "checkpoint-6", num_labels=2)
    assert type(classifier) is ElectraForSequenceClassification  # intermediate checkpoints fine-tune too


def test_electra_options_are_checked(packed_dir, tmp_path):
    cfg = tiny_pretrain_config(packed_dir, tmp_path / "r", objective="electra",
                               objective_options={"generator_size": 2})  # fmt: skip
    with pytest.raises(UserError, match=r"generator_size must be in \(0, 1\], got 2"):
        cfg.validate()


def test_resume_matches_an_uninterrupted_run(electra_run, packed_dir, tmp_path):
    import shutil

    from safetensors.torch import load_file

    out, _ = electra_run  # 6 steps, a checkpoint every 3
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copytree(out / "checkpoint-3", resumed / "checkpoint-3")
    pretrain(tiny_pretrain_config(packed_dir, resumed, objective="electra", resume_from_checkpoint="latest"))
    a = load_file(str(out / "final" / "model.safetensors"))
    b = load_file(str(resumed / "final" / "model.safetensors"))
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5

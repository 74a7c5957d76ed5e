"""`long_text`: head_tail and chunks see the end of a text that truncation cuts off."""

from __future__ import annotations

import json
import random
from pathlib import Path

import datasets
import numpy as np
import pytest
from test_finetune import FILLER, build_tokenizer, checkpoint, config, write_csv  # noqa: F401 (fixture)

from data_prep.errors import UserError
from mlm import long_text
from mlm.finetune import FinetuneConfig, finetune, tokenize_split


def tail_rows(n: int, seed: int) -> list[dict]:
    """The label is told by the last word only, after 30 filler words."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=30) + ["good" if label == "pos" else "bad"]
        rows.append({"text": " ".join(words), "label": label})
    return rows


@pytest.fixture(scope="module")
def tail_task(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tail")
    return {
        "train": write_csv(d / "train.csv", tail_rows(240, 1)),
        "test": write_csv(d / "test.csv", tail_rows(60, 2)),
    }


def test_head_and_tail_keeps_both_ends():
    tok = build_tokenizer()
    words = [f"w{i}" for i in range(40)]
    text = " ".join(words)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # a budget of 16: 4 from the head, 12 from the tail
    (cut,) = long_text.heads_and_tails(tok, [text], max_length=18)
    cut_ids = tok(cut, add_special_tokens=False)["input_ids"]
    assert cut_ids == ids[:4] + ids[-12:]
    assert long_text.heads_and_tails(tok, ["w1 w2"], max_length=18) == ["w1 w2"]


def test_chunks_cover_the_text_and_know_their_document():
    tok = build_tokenizer()
    texts = [" ".join(["cat"] * n) for n in (3, 40, 10, 70)]
    ds = datasets.Dataset.from_dict({"text": texts, "label": ["pos"] * 4})
    cfg = FinetuneConfig(
        model_name_or_path="m", output_dir="o", train_file="t", max_seq_length=16, long_text="chunks"
    )
    enc = tokenize_split(ds, cfg, tok, ["neg", "pos"]).to_dict()
    doc = enc[long_text.DOC]
    assert doc == sorted(doc) and set(doc) == {0, 1, 2, 3}
    for d, n in enumerate((3, 40, 10, 70)):
        windows = [ids for ids, k in zip(enc["input_ids"], doc) if k == d]
        assert all(len(w) <= 16 for w in windows)
        body = 14 - cfg.stride  # new tokens per window after the first
        assert len(windows) == max(1, 1 + -(-(n - 14) // body))
    assert enc["labels"] == [1] * len(doc)


def test_document_logits_average_windows():
    logits = np.array([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0], [2.0, 2.0]])
    labels = np.array([0, 0, 1, 1])
    mean, doc_labels = long_text.document_logits(logits, labels, [0, 0, 1, 1])
    assert mean.tolist() == [[2.0, 1.0], [1.0, 3.5]] and doc_labels.tolist() == [0, 1]


def test_validation():
    base = dict(model_name_or_path="m", output_dir="o", train_file="t")
    with pytest.raises(UserError, match="unknown long_text 'middle'"):
        FinetuneConfig(**base, long_text="middle").validate()
    with pytest.raises(UserError, match="text pairs"):
        FinetuneConfig(**base, long_text="chunks", text_pair_column="s2").validate()
    with pytest.raises(UserError, match="doc_stride"):
        FinetuneConfig(**base, long_text="chunks", max_seq_length=32, doc_stride=16).validate()


@pytest.mark.parametrize("mode", ["truncate", "head_tail", "chunks"])
def test_the_end_of_a_long_text_is_seen(mode, checkpoint, tail_task, tmp_path):  # noqa: F811
    out = tmp_path / mode
    result = finetune(
        config(checkpoint, out, tail_task, max_seq_length=16, long_text=mode, num_train_epochs=4)
    )
    accuracy = result["test"]["accuracy"]
    assert result["test"]["samples"] == 60  # documents, also with chunks
    preds = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 60
    if mode == "truncate":
        assert accuracy < 0.75, "the label word is cut off: near chance"
    else:
        assert accuracy >= 0.9, result["test"]

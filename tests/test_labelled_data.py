"""Labelled data helpers (mlm.labelled_data) not covered by the fine-tuning tests."""

from __future__ import annotations

import datasets

from mlm.labelled_data import example_text


def test_the_card_example_is_the_first_visible_text_on_one_line_cut_at_a_space():
    ds = datasets.Dataset.from_dict({"text": ["", " \u200b ", "a fine\n\tday", "later"], "label": ["a"] * 4})
    assert example_text(ds, "text") == "a fine day"
    long = datasets.Dataset.from_dict({"text": ["word " * 200]})
    cut = example_text(long, "text", limit=23)
    assert cut == "word word word word" and len(cut) <= 23
    assert example_text(datasets.Dataset.from_dict({"text": ["", "  "]}), "text") is None

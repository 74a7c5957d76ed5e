"""Tokenizer training: all three kinds load with AutoTokenizer and behave like BERT's; vocab padding; errors."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from data_prep.errors import UserError
from data_prep.io import read_json
from data_prep.tokenizer import SPECIAL_TOKENS, TokenizerConfig, train_tokenizer


def _check_bert_like(tok) -> None:
    assert len(tok) % 64 == 0
    assert [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    assert tok.model_max_length == 512
    single = tok("The old house was open.")
    assert single["input_ids"][0] == 2 and single["input_ids"][-1] == 3
    assert set(single["token_type_ids"]) == {0}
    pair = tok("first part here", "second part", return_offsets_mapping=True)
    ids, types = pair["input_ids"], pair["token_type_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and ids.count(3) == 2
    first_sep = ids.index(3)
    assert types[: first_sep + 1] == [0] * (first_sep + 1) and types[first_sep + 1 :] == [1] * (
        len(ids) - first_sep - 1
    )
    offsets = pair["offset_mapping"]
    assert offsets[0] == (0, 0) and offsets[-1] == (0, 0)
    text = "first part here"
    pieces = [text[a:b] for a, b in offsets[1:first_sep]]
    assert "".join(pieces).replace(" ", "") == text.replace(
        " ", ""
    )  # lowercase input: offsets cover the text
    words = pair.word_ids()
    assert words[0] is None and words[-1] is None and words[1] == 0
    assert max(w for w in words[1:first_sep]) == 2  # three words in the first segment
    masked = tok("the [MASK] was open")["input_ids"]
    assert 4 in masked and 1 not in masked


def test_wordpiece_fixture_loads(tiny_tokenizer_dir):
    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    _check_bert_like(tok)
    assert len(tok) == 512
    assert tok.tokenize("The HOUSE")[0] == "the"  # lowercased
    stats = read_json(tiny_tokenizer_dir / "stats.json")
    assert stats["vocab_size"] == 512 and stats["train_documents"] == 258
    meta = read_json(tiny_tokenizer_dir / "mlm_step.json")
    assert meta["step"] == "tokenizer" and meta["inputs"]["data_dir"]["path"].endswith("data")


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_other_kinds_load(tmp_path, prepared_dir, kind):
    out = tmp_path / kind
    train_tokenizer(
        TokenizerConfig(output_dir=str(out), data_dir=str(prepared_dir), kind=kind, vocab_size=300)
    )
    tok = AutoTokenizer.from_pretrained(str(out))
    _check_bert_like(tok)
    stats = read_json(out / "stats.json")
    assert (stats["vocab_size_requested"], stats["vocab_size_rounded"]) == (300, 320)


def test_small_corpus_padded_with_unused_tokens(tmp_path, tiny_corpus_dir):
    out = tmp_path / "big"
    tok = train_tokenizer(
        TokenizerConfig(output_dir=str(out), corpus=[str(tiny_corpus_dir)], vocab_size=5000)
    )
    stats = read_json(out / "stats.json")
    assert stats["vocab_size_rounded"] == 5056
    assert stats["vocab_size_trained"] < 5000 and stats["unused_tokens"] > 0
    assert len(tok) % 64 == 0 and len(tok) == stats["vocab_size"]
    loaded = AutoTokenizer.from_pretrained(str(out))
    assert len(loaded) == len(tok)
    assert loaded.convert_tokens_to_ids("[unused0]") == stats["vocab_size_trained"]
    assert "[unused0]" not in loaded.decode(loaded("the house")["input_ids"])


def test_max_train_bytes_caps_the_sample(tmp_path, prepared_dir):
    out = tmp_path / "capped"
    train_tokenizer(
        TokenizerConfig(output_dir=str(out), data_dir=str(prepared_dir), vocab_size=128, max_train_bytes=2000)
    )
    stats = read_json(out / "stats.json")
    assert 2000 <= stats["train_bytes"] < 2600 and stats["train_documents"] < 15


def test_config_errors(tmp_path, prepared_dir):
    def check(match, **kw):
        cfg = TokenizerConfig(**({"output_dir": str(tmp_path / "t"), "data_dir": str(prepared_dir)} | kw))
        with pytest.raises(UserError, match=match):
            train_tokenizer(cfg)

    check("kind 'sentencepiece' is not valid; choose one of: wordpiece, bpe, unigram", kind="sentencepiece")
    check("give exactly one of 'data_dir'.* or 'corpus'", corpus=["x.txt"])
    check("give exactly one of", data_dir=None)
    check(r"data_dir .*nowhere not found", data_dir=str(tmp_path / "nowhere"))
    check("vocab_size must be >= 128", vocab_size=10)
    assert not (tmp_path / "t").exists()
    TokenizerConfig(output_dir="t", data_dir="not/made/yet").validate()  # checked when the step runs

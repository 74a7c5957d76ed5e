"""Packing: block shape, no token lost, tails carried across batches, word starts, stats, errors."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from transformers import AutoTokenizer

from data_prep.errors import UserError
from data_prep.io import read_json
from data_prep.packing import PackConfig, Packer, SpecialIds, pack

CLS, SEP, PAD = 2, 3, 0
SEQ = 32  # the packed_dir fixture's max_seq_length


def _expected_stream(tok, texts: list[str]) -> tuple[list[int], list[int], list[int]]:
    """Token ids of all documents (each followed by SEP), word starts from word_ids, per-doc token counts."""
    ids, starts, counts = [], [], []
    for text in texts:
        enc = tok(text, add_special_tokens=False)
        words = enc.word_ids()
        ids += enc["input_ids"] + [SEP]
        starts += [int(i == 0 or words[i] != words[i - 1]) for i in range(len(words))] + [1]
        counts.append(len(words))
    return ids, starts, counts


def _blocks(packed_dir, split):
    ds = datasets.load_from_disk(str(packed_dir))[split]
    return np.array(ds["input_ids"]), np.array(ds["word_start"])


@pytest.fixture(scope="module")
def tok(tiny_tokenizer_dir):
    return AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))


@pytest.mark.parametrize("split", ["train", "validation"])
def test_blocks_shape_and_no_token_lost(packed_dir, prepared_dir, tok, split):
    ids, starts = _blocks(packed_dir, split)
    assert ids.dtype == np.int64 or ids.dtype == np.int32
    assert ids.shape[1] == SEQ and starts.shape == ids.shape
    assert (ids[:, 0] == CLS).all()
    for row, ws in zip(ids, starts):
        used = int((row != PAD).sum())
        assert (row[used:] == PAD).all() and row[used - 1] == SEP  # [CLS] ... [SEP] then only padding
        assert (ws[used:] == 0).all() and ws[0] == 1 and ws[used - 1] == 1
    assert (ids[:-1] == PAD).mean() < 0.1  # padding before the last block only keeps words whole
    texts = list(datasets.load_from_disk(str(prepared_dir))[split]["text"])
    want_ids, _, counts = _expected_stream(tok, texts)
    got = [int(t) for row in ids for t in row if t not in (CLS, SEP, PAD)]
    assert got == [t for t in want_ids if t != SEP]  # same tokens, same order: nothing dropped
    assert len(got) == sum(counts)


def _check_word_starts(packed_dir, prepared_dir, tok, split: str = "train") -> None:
    """The blocks hold the token stream in order, and their word starts are the encoder's word ids'."""
    ids, starts = _blocks(packed_dir, split)
    texts = list(datasets.load_from_disk(str(prepared_dir))[split]["text"])
    want_ids, want_starts, _ = _expected_stream(tok, texts)
    pos = 0  # walk the expected stream alongside the blocks' contents
    split_words = 0
    for row, ws in zip(ids, starts):
        used = int((row != PAD).sum())
        content, content_ws = row[1 : used - 1], ws[1 : used - 1]
        if pos < len(want_ids) and want_ids[pos] == SEP and (len(content) == 0 or content[0] != SEP):
            pos += 1  # the separator that fell on a block boundary is not repeated
        for k, (t, w) in enumerate(zip(content, content_ws)):
            assert t == want_ids[pos]
            if k == 0:
                assert w == 1
                split_words += want_starts[pos] == 0
            else:
                assert w == want_starts[pos]
            pos += 1
    assert pos >= len(want_ids) - 1
    stats = read_json(packed_dir / "stats.json")
    assert stats["words_split_across_blocks"][split] == split_words


def test_word_start_matches_word_ids(packed_dir, prepared_dir, tok):
    _check_word_starts(packed_dir, prepared_dir, tok)


def test_stats_and_metadata(packed_dir, prepared_dir, tiny_tokenizer_dir, tok):
    stats = read_json(packed_dir / "stats.json")
    assert stats["max_seq_length"] == SEQ and stats["vocab_size"] == len(tok) == 512
    for split in ("train", "validation"):
        ids, _ = _blocks(packed_dir, split)
        texts = list(datasets.load_from_disk(str(prepared_dir))[split]["text"])
        assert stats["blocks"][split] == len(ids)
        assert stats["documents"][split] == len(texts)
        assert stats["padding_tokens"][split] == int((ids == PAD).sum())
        assert stats["tokens"][split] == sum(_expected_stream(tok, texts)[2])
    meta = read_json(packed_dir / "mlm_step.json")
    assert meta["step"] == "pack"
    assert meta["config"]["tokenizer_dir"] == str(tiny_tokenizer_dir.resolve())
    assert meta["config"]["max_seq_length"] == SEQ and meta["inputs"]["tokenizer"]["sha256"]


def test_tails_carried_across_batches_and_num_proc(tmp_path, prepared_dir, tiny_tokenizer_dir, packed_dir):
    ref, _ = _blocks(packed_dir, "train")  # built with batch_size=50 < 258 documents

    def run(name, **kw):
        cfg = PackConfig(
            str(prepared_dir), str(tiny_tokenizer_dir), str(tmp_path / name), max_seq_length=SEQ, **kw
        )
        stats = pack(cfg)
        return stats, _blocks(tmp_path / name, "train")[0]

    stats, one_batch = run("one", batch_size=10_000)
    assert np.array_equal(one_batch, ref)  # batch boundaries change nothing
    stats2, two = run("two", batch_size=7, num_proc=2)
    content = lambda a: [int(t) for t in a.ravel() if t not in (CLS, SEP, PAD)]  # noqa: E731
    assert content(two) == content(ref)
    assert stats2["tokens"] == stats["tokens"]


def test_packer_keeps_words_whole():
    packer = Packer(10, SpecialIds(cls=CLS, sep=SEP, pad=PAD))  # 8 content tokens per block, keep >= 4
    ids = np.arange(100, 120, dtype=np.int32)
    starts = np.array([1, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], np.int8)
    ids[-1], starts[-1] = SEP, 1
    blocks, ws = packer.add(ids, starts)
    # the first block would end inside the word 106-107-108: it ends before 106 instead (6 >= 4 tokens)
    assert blocks[0].tolist() == [CLS, 100, 101, 102, 103, 104, 105, SEP, PAD, PAD]
    assert ws[0].tolist() == [1, 1, 0, 1, 1, 1, 1, 1, 0, 0]
    assert blocks[1].tolist()[:4] == [CLS, 106, 107, 108]
    assert ws[1].tolist()[:5] == [1, 1, 0, 0, 1]
    last, _ = packer.finish()
    got = [t for b in (*blocks, *last) for t in b.tolist() if t not in (CLS, SEP, PAD)]
    assert got == list(range(100, 119)) and packer.split_words == 0
    long_word = Packer(10, SpecialIds(cls=CLS, sep=SEP, pad=PAD))
    b, w = long_word.add(np.arange(100, 112, dtype=np.int32), np.array([1] + [0] * 11, np.int8))
    assert long_word.split_words == 1 and b[0].tolist() == [CLS, *range(100, 108), SEP] and w[0][1] == 1


def test_errors(tmp_path, prepared_dir, tiny_tokenizer_dir):
    def check(match, **kw):
        base = {
            "data_dir": str(prepared_dir),
            "tokenizer_dir": str(tiny_tokenizer_dir),
            "output_dir": str(tmp_path / "o"),
        }
        with pytest.raises(UserError, match=match):
            pack(PackConfig(**(base | kw)))

    check("data_dir not found: .*nope", data_dir=str(tmp_path / "nope"))
    check("tokenizer_dir not found: .*nope", tokenizer_dir=str(tmp_path / "nope"))
    check("tokenizer_dir .* has no tokenizer.json", tokenizer_dir=str(prepared_dir))
    check("data_dir .* is not a prepared folder", data_dir=str(tiny_tokenizer_dir))
    check("max_seq_length 600 is longer than the tokenizer's model_max_length 512", max_seq_length=600)
    check("max_seq_length must be >= 8", max_seq_length=4)
    assert not (tmp_path / "o").exists()
    PackConfig("not/made/yet", "nor/this", "out").validate()  # recipes validate before earlier steps ran


TRICKY = [
    "##abc starts with the prefix, ## alone, a#b, [MASK] inside, [UNK]",
    "naïve café Ünïcödé — dashes… and emoji 🙂 qwertyuiopasdfgh",
    "x",
    "",
    "many    spaces\tand\nnew lines, punctuation!?;: (brackets) 'quotes' \"double\"",
]


def test_word_starts_from_vocabulary_equal_word_ids(tiny_tokenizer_dir, prepared_dir):
    """WordPiece + BERT pre-tokenizer: word starts read off the ids (no word ids, the fast encoder) are the
    word starts the encoder's word ids give, on the prepared corpus and on text made to trip it."""
    from tokenizers import Tokenizer

    from data_prep.packing import continuation_table, encode_documents

    backend = Tokenizer.from_file(str(tiny_tokenizer_dir / "tokenizer.json"))
    table = continuation_table(backend)
    assert table is not None and table.sum() > 0
    texts = datasets.load_from_disk(str(prepared_dir))["train"]["text"][:300] + TRICKY
    fast = encode_documents(backend, texts, SEP, table)
    slow = encode_documents(backend, texts, SEP, None)
    assert fast[2:] == slow[2:]
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])


def test_other_tokenizers_use_word_ids(tmp_path, prepared_dir):
    from tokenizers import Tokenizer

    from data_prep.packing import continuation_table
    from data_prep.tokenizer import TokenizerConfig, train_tokenizer

    out = tmp_path / "bpe"
    train_tokenizer(
        TokenizerConfig(output_dir=str(out), data_dir=str(prepared_dir), vocab_size=400, kind="bpe")
    )
    assert continuation_table(Tokenizer.from_file(str(out / "tokenizer.json"))) is None
    packed = tmp_path / "packed"
    pack(
        PackConfig(
            data_dir=str(prepared_dir), tokenizer_dir=str(out), output_dir=str(packed), max_seq_length=SEQ
        )
    )
    _check_word_starts(packed, prepared_dir, AutoTokenizer.from_pretrained(str(out)))

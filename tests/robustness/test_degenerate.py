"""Degenerate data is an error naming the input (or a warning with the count), and pathological documents
are cut to a bounded size: prepare, train-tokenizer, pack and fine-tuning."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import datasets
import pytest

from data_prep.arrow_files import iter_text_batches
from data_prep.errors import UserError
from data_prep.packing import PackConfig, pack
from data_prep.prepare import PrepareConfig, prepare
from data_prep.text import DEFAULT_MAX_DOCUMENT_CHARS, has_visible_text, split_document
from data_prep.tokenizer import TokenizerConfig, train_tokenizer
from mlm.cpu.memory import ReleaseFreedMemory, release_freed_memory, resident_bytes
from mlm.finetune import FinetuneConfig, finetune
from mlm.labelled_data import load_labelled

INVISIBLE = [
    "\u200b",
    "\u200c\u200d",
    "\u2060\ufeff",
    "\u3164",
    "\u2800",
    "\xad",
    "\u200e\u202a",
    "\U000e0041",
]
WORDS = "the cat sat on a mat while dogs ran past old trees near quiet rivers and bright houses".split()
REPLACEMENT = "\ufffd"  # visible (a decoding error's mark), but every BERT normaliser removes it


def make_tiny_texts(n: int, seed: int = 0) -> list[str]:
    """`n` distinct word-like documents of 8-20 words."""
    rng = random.Random(seed)
    return [" ".join(rng.choices(WORDS, k=rng.randint(8, 20))).capitalize() + "." for _ in range(n)]


def _lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _leftovers(out: Path) -> list[str]:
    return [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


def _texts(folder: Path) -> list[str]:
    dd = datasets.load_from_disk(str(folder))
    return [t for split in dd.values() for t in split["text"]]


# --- prepare, train-tokenizer and pack: no empty output --------------------------------------------------


def test_has_visible_text():
    assert not has_visible_text("") and not has_visible_text(" \t\n\r\x00\x1f")
    assert not any(has_visible_text(c * 40) for c in INVISIBLE)
    assert not has_visible_text("".join(INVISIBLE) + " \u3000 ")
    assert all(has_visible_text(t) for t in ["a", "\u200bx\u200b", "\ufffd", "٣", "😀", "\u200d😀", "."])


def test_invisible_documents_are_dropped_and_counted(tmp_path):
    docs = make_tiny_texts(40)
    invisible = [c * (25 + i) for i, c in enumerate(INVISIBLE)]
    src = _lines(tmp_path / "corpus.txt", docs[:20] + invisible + docs[20:])
    stats = prepare(PrepareConfig(corpus=[str(src)], output_dir=str(tmp_path / "out")))
    assert stats["empty_dropped"] == len(invisible) and stats["documents_in"] == 48
    assert not any(t in invisible for t in _texts(tmp_path / "out"))


def test_a_corpus_of_invisible_characters_is_an_error(tmp_path):
    src = _lines(tmp_path / "corpus.txt", [c * (30 + i) for i in range(5) for c in INVISIBLE])
    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        prepare(PrepareConfig(corpus=[str(src)], output_dir=str(out)))
    assert str(src) in str(e.value) and "40 empty or with no visible character" in str(e.value)
    assert not out.exists() and not _leftovers(out)


@pytest.mark.parametrize("step", ["prepare", "finetune"])
def test_degenerate_data_ends_in_one_error_line_exit_2(tmp_path, step):
    if step == "prepare":
        src = _lines(tmp_path / "corpus.txt", [c * 30 for c in INVISIBLE])
        args = ["prepare", "--corpus", str(src), "--output_dir", str(tmp_path / "out")]
    else:
        src = tmp_path / "train.csv"
        src.write_text("text,label\n" + "".join(f",{'ab'[i % 2]}\n" for i in range(10)), encoding="utf-8")
        args = ["finetune", "--model_name_or_path", str(tmp_path / "no-model"), "--train_file", str(src)]
        args += ["--output_dir", str(tmp_path / "out")]
    proc = subprocess.run(
        [sys.executable, "-m", "mlm", *args, "--quiet"],  # no progress bars: stderr is the error alone
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(src) in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def unreadable_prepared(tmp_path_factory) -> Path:
    """A prepared corpus whose documents show (U+FFFD) but hold nothing a BERT tokenizer keeps."""
    d = tmp_path_factory.mktemp("unreadable")
    src = _lines(d / "corpus.txt", [REPLACEMENT * (20 + i) for i in range(40)])
    prepare(PrepareConfig(corpus=[str(src)], output_dir=str(d / "data")))
    return d / "data"


def test_a_tokenizer_that_learns_nothing_is_an_error(tmp_path, unreadable_prepared):
    out = tmp_path / "tok"
    with pytest.raises(UserError, match="gave no tokens to learn: its 38 document"):
        train_tokenizer(
            TokenizerConfig(data_dir=str(unreadable_prepared), output_dir=str(out), vocab_size=256)
        )
    assert not out.exists() and not _leftovers(out)


def test_pack_with_no_train_block_is_an_error(tmp_path, unreadable_prepared, tiny_tokenizer_dir):
    out = tmp_path / "packed"
    cfg = PackConfig(
        data_dir=str(unreadable_prepared), tokenizer_dir=str(tiny_tokenizer_dir), output_dir=str(out)
    )
    with pytest.raises(UserError) as e:
        pack(cfg)
    assert f"split 'train' of {unreadable_prepared} gives 0 blocks: its 38 document(s)" in str(e.value)
    assert str(tiny_tokenizer_dir) in str(e.value)
    assert not out.exists() and not _leftovers(out)


def test_pack_with_no_validation_block_is_an_error(tmp_path, tiny_tokenizer_dir):
    """prepare always holds out validation; a validation split that packs into nothing would silently
    leave pretraining without evaluation, so it is an error too."""
    data = tmp_path / "data"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"text": make_tiny_texts(50)}),
            "validation": datasets.Dataset.from_dict({"text": [REPLACEMENT * 30, REPLACEMENT * 40]}),
        }
    ).save_to_disk(str(data))
    out = tmp_path / "packed"
    with pytest.raises(UserError) as e:
        pack(PackConfig(data_dir=str(data), tokenizer_dir=str(tiny_tokenizer_dir), output_dir=str(out)))
    assert "split 'validation'" in str(e.value) and "2 document(s)" in str(e.value)
    assert "pretraining could not evaluate" in str(e.value)
    assert not out.exists() and not _leftovers(out)


# --- long documents --------------------------------------------------------------------------------------


def _long_line(n_chars: int) -> str:
    words = " ".join(make_tiny_texts(2000, seed=3))
    return (words * (n_chars // len(words) + 1))[:n_chars].strip()


def test_split_document_cuts_at_whitespace_within_the_bound():
    text = _long_line(5_000_000)
    pieces = split_document(text, DEFAULT_MAX_DOCUMENT_CHARS)
    assert 5 <= len(pieces) <= 10
    assert all(DEFAULT_MAX_DOCUMENT_CHARS // 4 <= len(p) <= DEFAULT_MAX_DOCUMENT_CHARS for p in pieces)
    assert " ".join(pieces).split() == text.split()  # no word lost, none cut in two
    paragraphs = "\n\n".join(["one two three " * 10] * 10).strip()
    pieces = split_document(paragraphs, 320)
    assert len(pieces) > 1 and all(len(p) <= 320 for p in pieces)
    assert all(par.split() == "one two three".split() * 10 for p in pieces for par in p.split("\n\n"))
    short = "  a short document  "
    assert split_document(short, 100) == [short]


def test_split_document_without_whitespace_cuts_between_characters():
    text = "漢字かな交じり文" * 40_000 + "e\u0301" * 1000  # no space; combining accents at the end
    pieces = split_document(text, 100_000)
    assert "".join(pieces) == text and all(len(p) <= 100_000 for p in pieces)
    assert not any(p[0] == "\u0301" for p in pieces)  # an accent stays with its letter


def test_prepare_splits_a_5mb_line(tmp_path, capsys):
    line = _long_line(5_000_000)
    docs = make_tiny_texts(60)[:48]
    src = _lines(tmp_path / "corpus.txt", docs[:24] + [line] + docs[24:])
    stats = prepare(PrepareConfig(corpus=[str(src)], output_dir=str(tmp_path / "out"), dedup=False))
    texts = _texts(tmp_path / "out")
    # a .txt line is read in pieces (never held whole), with one warning naming the line
    assert (
        f"{src}: 1 line(s) longer than 1,000,000 characters, the first at line 25" in capsys.readouterr().err
    )
    assert stats["documents_in"] > 49
    assert max(map(len, texts)) <= DEFAULT_MAX_DOCUMENT_CHARS
    assert stats["documents_out"] == len(texts) > 49
    assert Counter(w for t in texts for w in t.split()) == Counter((" ".join(docs) + " " + line).split())


def test_a_long_jsonl_document_is_split_after_cleaning(tmp_path):
    docs = make_tiny_texts(20)
    src = tmp_path / "corpus.jsonl"
    src.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in docs + [_long_line(3000)]), encoding="utf-8"
    )
    stats = prepare(PrepareConfig(corpus=[str(src)], output_dir=str(tmp_path / "out"), dedup=False,
                                  max_document_chars=1000))  # fmt: skip
    assert stats["long_documents_split"] == 1 and stats["documents_in"] == 21
    assert max(map(len, _texts(tmp_path / "out"))) <= 1000


@pytest.mark.parametrize("limit", [100, 1000])
def test_bounded_lines_cut_long_lines_and_keep_every_word(limit, capsys):
    import io

    from data_prep.read import bounded_lines

    words = " ".join(f"w{i}" for i in range(2000))
    text = "short line\n" + words + "\n" + "x" * 2500 + "\nlast"
    pieces = list(bounded_lines(io.StringIO(text), limit, "f.txt"))
    assert pieces[0] == "short line\n" and pieces[-1] == "last"
    assert all(len(p) <= limit for p in pieces)
    assert "".join("".join(pieces).split()) == "".join(text.split())  # nothing lost but whitespace
    assert [
        w for p in pieces if p.lstrip().startswith("w") for w in p.split()
    ] == words.split()  # cuts at spaces
    assert min(len(p) for p in pieces[1:-1]) >= limit // 4  # no scraps
    assert "f.txt: 2 line(s) longer than" in capsys.readouterr().err


def test_prepare_refuses_a_long_document_when_asked(tmp_path):
    src = _lines(tmp_path / "corpus.txt", make_tiny_texts(10) + [_long_line(5000)])
    out = tmp_path / "out"
    cfg = PrepareConfig(
        corpus=[str(src)], output_dir=str(out), max_document_chars=1000, long_documents="refuse"
    )
    with pytest.raises(UserError) as e:
        prepare(cfg)
    assert str(src) in str(e.value) and "max_document_chars=1,000" in str(e.value)
    assert "long_documents: split" in str(e.value)
    assert not out.exists() and not _leftovers(out)


@pytest.mark.parametrize(
    "change, message",
    [({"long_documents": "truncate"}, "long_documents 'truncate'"), ({"max_document_chars": 10}, ">= 100")],
)
def test_long_document_options_are_checked(change, message):
    with pytest.raises(UserError, match=message):
        PrepareConfig(corpus=["c.txt"], output_dir="o", **change).validate()


def test_text_batches_bounded_in_bytes(tmp_path):
    rows = ["x" * n for n in [10, 3000, 50, 50, 9000, 1, 1, 1, 2500, 700]] * 5
    datasets.Dataset.from_dict({"text": rows}).save_to_disk(str(tmp_path / "split"), max_shard_size="20KB")
    batches = list(iter_text_batches(tmp_path / "split", 3, 47, 4, max_bytes=3000))
    assert [t for b in batches for t in b] == rows[3:47]
    assert all(len(b) <= 4 and (len(b) == 1 or sum(map(len, b)) <= 3000) for b in batches)


def test_release_freed_memory_gives_fragmented_memory_back():
    """Freed memory scattered through the heap stays resident until given back; the pretraining callback
    gives it back once the process has grown `margin` past its working set, and not before."""
    callback = ReleaseFreedMemory(margin=64 * 2**20)
    if resident_bytes() is None or not release_freed_memory():
        pytest.skip("needs Linux with glibc")
    callback.on_train_begin(None, None, None)
    callback.on_step_end(None, None, None)  # the working set
    callback.on_step_end(None, None, None)
    assert callback.trims == 0
    blocks = [bytearray(4096) for _ in range(60_000)]  # about 250 MB
    kept = blocks[::16]  # a block in every 16 stays: the freed ones cannot go back from the heap's top
    del blocks
    grown = resident_bytes()
    callback.on_step_end(None, None, None)
    assert callback.trims == 1 and resident_bytes() < grown - 100 * 2**20
    assert len(kept) == 3750


def test_pretraining_gives_freed_memory_back(packed_dir, tmp_path):
    from mlm.pretrain import PretrainConfig, build_pretraining

    cfg = PretrainConfig(
        data_dir=str(packed_dir), output_dir=str(tmp_path / "run"), preset="tiny", use_cpu=True
    )
    run = build_pretraining(cfg)
    assert any(isinstance(c, ReleaseFreedMemory) for c in run.trainer.callback_handler.callbacks)


# --- fine-tuning data --------------------------------------------------------------------------------------


def _csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def _load(path: Path, **kw):
    return load_labelled(str(path), text_column="text", text_pair_column=None, label_column="label", **kw)


def test_all_empty_texts_are_an_error(tmp_path):
    rows = [("", "a"), ("   ", "b"), ("\u200b", "a"), ("\u3164\u3164", "b")]
    path = _csv(tmp_path / "train.csv", rows)
    with pytest.raises(UserError, match=r"train\.csv: all 4 texts in column 'text' are empty"):
        _load(path)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="all 4 texts"):  # before any model is loaded
        finetune(
            FinetuneConfig(
                model_name_or_path=str(tmp_path / "no-model"), train_file=str(path), output_dir=str(out)
            )
        )
    assert not out.exists()


def test_pair_column_all_empty_is_an_error(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"a": f"text {i}", "b": "", "label": "x"}) + "\n" for i in range(5)))
    with pytest.raises(UserError, match="all 5 texts in column 'b' are empty"):
        load_labelled(str(path), text_column="a", text_pair_column="b", label_column="label")


def test_mostly_empty_texts_warn_with_the_count(tmp_path, capsys):
    texts = make_tiny_texts(10)
    mostly = _csv(tmp_path / "mostly.csv", [(t if i < 4 else "", "ab"[i % 2]) for i, t in enumerate(texts)])
    assert len(_load(mostly)) == 10
    assert "warning: " + str(mostly) + ": 6 of 10 texts in column 'text' are empty" in capsys.readouterr().err
    half = _csv(tmp_path / "half.csv", [(t if i < 5 else "", "ab"[i % 2]) for i, t in enumerate(texts)])
    _load(half)
    assert "warning" not in capsys.readouterr().err


def test_a_dev_label_training_never_saw_is_an_error(tmp_path):
    train = _csv(tmp_path / "train.csv", [(t, "ab"[i % 2]) for i, t in enumerate(make_tiny_texts(20))])
    dev = _csv(tmp_path / "dev.csv", [(t, "abc"[i % 3]) for i, t in enumerate(make_tiny_texts(9, seed=2))])
    cfg = FinetuneConfig(
        model_name_or_path=str(tmp_path / "no-model"),
        train_file=str(train),
        validation_file=str(dev),
        output_dir="o",
    )
    with pytest.raises(
        UserError, match=r"dev\.csv: label 'c' not seen in the training data; known labels: a, b"
    ):
        finetune(cfg)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory, tiny_tokenizer_dir) -> Path:
    """A 'pretrained' one-layer BERT (random weights) with the session's tiny tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(str(tiny_tokenizer_dir))
    config = BertConfig(
        vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-model") / "model"
    torch.manual_seed(0)
    BertForMaskedLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("max_train_samples, missing", [(2, ["c"]), (6, [])])
def test_a_class_the_training_subset_lacks_is_warned_about(
    tmp_path, capsys, tiny_model, max_train_samples, missing
):
    """A subset too small to hold every class is a warning (a fair few-shot point of a label-efficiency
    curve), and metrics.json names the classes it lacked."""
    rows = [(t, "abc"[i % 3]) for i, t in enumerate(make_tiny_texts(30))]
    train = _csv(tmp_path / "train.csv", rows)
    test = _csv(tmp_path / "test.csv", rows[:9])
    cfg = FinetuneConfig(
        model_name_or_path=str(tiny_model), train_file=str(train), test_file=str(test), output_dir=str(tmp_path / "out"),
        max_train_samples=max_train_samples, num_train_epochs=1.0, max_seq_length=32, use_cpu=True,
        disable_tqdm=True, save_model=False,
    )  # fmt: skip
    result = finetune(cfg)
    err = capsys.readouterr().err
    assert result["train_labels_missing"] == missing
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["train_labels_missing"] == missing
    if missing:
        assert f"warning: {train}: the 2 training example(s) kept" in err
        assert "no example of 1 of the 3 classes ('c'); keep at least 3" in err
    else:
        assert "training example(s) kept" not in err

"""The one reading layer (data_prep.read): bad CSV/TSV lines, repeated headers, JSON shapes, and the same
errors whether a file is read as a corpus or as labelled data."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from data_prep.errors import UserError
from data_prep.prepare import PrepareConfig, prepare
from data_prep.read import ReadOptions, iter_columns, parse_spec, read_columns
from data_prep.sources import iter_corpus
from mlm.labelled_data import load_labelled


def corpus(spec, **kw) -> list[str]:
    return [t for batch in iter_corpus(str(spec), **kw) for t in batch]


def labelled(spec, **kw):
    return load_labelled(str(spec), text_column="text", text_pair_column=None, label_column="label", **kw)


def open_quote_csv(path: Path, n: int = 151, bad: int = 40) -> list[str]:
    """`n` rows `label,text`, some texts quoted, row `bad` opening a quote it never closes (at file line
    bad + 2); returns the texts of the good rows."""
    lines, texts = ["label,text"], []
    for i in range(n):
        text = f"document {i}, quoted" if i % 3 == 0 else f"document {i}"
        if i == bad:
            lines.append(f'{i % 2},"document {i} opens a quote and never closes it')
            continue
        texts.append(text)
        lines.append(f'{i % 2},"{text}"' if i % 3 == 0 else f"{i % 2},{text}")
    path.write_text("\n".join(lines) + "\n")
    return texts


# --- bad lines ----------------------------------------------------------------------------------------------


def test_open_quote_is_refused_not_merged(tmp_path):
    path = tmp_path / "reviews.csv"
    open_quote_csv(path)
    with pytest.raises(UserError) as e:
        corpus(path)
    message = str(e.value)
    assert message.startswith(f"{path} line 42: a quoted field opened here runs on to line ")
    assert "closing quote" in message and "on_bad_lines: skip" in message
    with pytest.raises(UserError, match=r"reviews\.csv line 42: "):
        labelled(path)


def test_open_quote_skipped_with_a_warning(tmp_path, capsys):
    path = tmp_path / "reviews.csv"
    texts = open_quote_csv(path)
    assert len(texts) == 150
    assert corpus(path, on_bad_lines="skip") == texts  # only the bad line is lost, not the rows it swallowed
    err = capsys.readouterr().err
    assert f"warning: {path}: skipped 1 bad line(s), the first at line 42" in err
    ds = labelled(path, on_bad_lines="skip")
    assert ds["text"] == texts and len(ds) == 150


def test_open_quote_to_the_end_of_the_file(tmp_path, capsys):
    path = tmp_path / "tail.csv"
    path.write_text('label,text\n1,fine\n0,"never closed\n1,after\n0,more\n')
    with pytest.raises(UserError, match=r"tail\.csv line 3: a quoted field opened here runs on to line 5"):
        corpus(path)
    assert corpus(path, on_bad_lines="skip") == ["fine", "after", "more"]
    assert "skipped 1 bad line(s), the first at line 3" in capsys.readouterr().err


def test_wrong_field_counts(tmp_path, capsys):
    c = tmp_path / "a.csv"
    c.write_text("label,text\n1,one\n0,two,extra\n1\n0,three\n")
    with pytest.raises(UserError) as e:
        corpus(c)
    assert str(e.value).startswith(f"{c} line 3: 3 field(s), expected 2 (label, text)")
    assert corpus(c, on_bad_lines="skip") == ["one", "three"]
    assert f"{c}: skipped 2 bad line(s), the first at line 3" in capsys.readouterr().err
    # no quoting: too few fields is a bad line; the last column takes the rest of the line
    t = tmp_path / "a.tsv"
    t.write_text("label\ttext\n1\tone\ttab\n0\n")
    with pytest.raises(UserError, match=r"a\.tsv line 3: 1 field\(s\), expected 2"):
        corpus(t)
    assert corpus(t, on_bad_lines="skip") == ["one\ttab"]
    with pytest.raises(UserError, match=r"a\.tsv line 3: 1 field\(s\), expected 2"):
        labelled(t)
    assert labelled(t, on_bad_lines="skip").to_list() == [{"text": "one\ttab", "label": "1"}]


def test_on_bad_lines_is_checked(tmp_path):
    with pytest.raises(UserError, match="on_bad_lines 'ignore' is not valid; choose one of: error, skip"):
        ReadOptions(on_bad_lines="ignore")
    cfg = PrepareConfig(corpus=["x.csv"], output_dir=str(tmp_path / "o"), on_bad_lines="ignore")
    with pytest.raises(UserError, match="prepare: on_bad_lines 'ignore' is not valid"):
        cfg.validate()


def test_prepare_passes_on_bad_lines(tmp_path):
    path = tmp_path / "reviews.csv"
    texts = open_quote_csv(path)
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"reviews\.csv line 42"):
        prepare(PrepareConfig(corpus=[str(path)], output_dir=str(out), text_field="text", min_chars=1))
    assert not out.exists()
    stats = prepare(
        PrepareConfig(
            corpus=[str(path)], output_dir=str(out), text_field="text", min_chars=1, on_bad_lines="skip"
        )
    )
    assert stats["documents_in"] == len(texts) == 150


# --- headers ------------------------------------------------------------------------------------------------


def test_repeated_header_column(tmp_path):
    c = tmp_path / "dup.csv"
    c.write_text("text,label,text\nfirst,1,second\n")
    with pytest.raises(UserError) as e:
        corpus(c)
    assert str(e.value).startswith(f"{c}: the header names column 'text' 2 times")
    with pytest.raises(UserError, match=r"dup\.csv: the header names column 'text' 2 times"):
        labelled(c)
    t = tmp_path / "dup.tsv"
    t.write_text("id\tid\ttext\tlabel\n1\t2\tfine\t0\n")  # a repeated column nobody reads is no problem
    assert labelled(t).to_list() == [{"text": "fine", "label": "0"}]
    bare = tmp_path / "bare.tsv"
    bare.write_text("1\ta\t1\n")
    with pytest.raises(UserError, match=r"bare\.tsv: the header names column 'label' 2 times"):
        labelled(bare, column_names=["label", "text", "label"])


def test_header_names_and_fields_are_stripped(tmp_path):
    c = tmp_path / "spaced.csv"
    c.write_text("label , text\n 1 , padded \n")
    assert corpus(c) == ["padded"]
    assert labelled(c).to_list() == [{"text": "padded", "label": "1"}]


# --- the same errors for corpora and labelled data ----------------------------------------------------------


@pytest.mark.parametrize("read", [corpus, labelled], ids=["corpus", "labelled"])
def test_same_errors_either_way(tmp_path, read):
    binary = tmp_path / "data.csv"
    binary.write_bytes(b"text,label\nok,1\n\x00\x01")
    with pytest.raises(UserError, match=r"data\.csv is not a text file \(binary data at byte 16\)"):
        read(binary)
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9,1\n".encode("latin-1"))
    with pytest.raises(UserError) as e:
        read(latin)
    assert str(e.value).startswith(f"{latin} is not valid UTF-8 at byte offset 14 (")
    assert "encoding: latin-1" in str(e.value) and "encoding_errors: replace" in str(e.value)
    fake = tmp_path / "fake.csv.gz"
    fake.write_text("text,label\n")
    with pytest.raises(UserError, match=r"fake\.csv\.gz is not a valid gzip file"):
        read(fake)
    other = tmp_path / "other.jsonl"
    other.write_text('{"text": "a", "label": 1}\n{"body": "b", "label": 0}\n')
    with pytest.raises(UserError) as e:
        read(other)
    assert str(e.value) == f"{other} (line 2) has no column 'text'; columns found: body, label"


def test_encoding_option_for_corpora(tmp_path):
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    assert corpus(latin, encoding="latin-1") == ["caf\u00e9 au lait"]
    with pytest.raises(UserError, match="encoding 'klingon' is not known"):
        corpus(latin, encoding="klingon")


# --- JSON shapes and other formats --------------------------------------------------------------------------


def test_json_shapes(tmp_path):
    rows = [{"text": "a", "label": 1}, {"text": "b", "label": 0}]
    shapes = {
        "list.json": json.dumps(rows, indent=2),
        "lines.json": "\n".join(json.dumps(r) for r in rows) + "\n",
        "columns.json": json.dumps({"text": ["a", "b"], "label": [1, 0]}),
        "columns_pretty.json": json.dumps({"text": ["a", "b"], "label": [1, 0]}, indent=2),
        "data.json": json.dumps({"data": rows}),
        "list.jsonl": json.dumps(rows),
    }
    for name, content in shapes.items():
        (tmp_path / name).write_text(content)
        assert corpus(tmp_path / name) == ["a", "b"], name
        assert labelled(tmp_path / name)["label"] == ["1", "0"], name
    (tmp_path / "one.json").write_text(json.dumps({"text": "only", "label": 1}, indent=2))
    assert corpus(tmp_path / "one.json") == ["only"]
    (tmp_path / "ragged.json").write_text(json.dumps({"text": ["a", "b"], "label": [1]}))
    with pytest.raises(UserError, match=r"ragged\.json: the column lists have different lengths"):
        corpus(tmp_path / "ragged.json")
    (tmp_path / "nums.jsonl").write_text('{"text": "a"}\n{"text": 7}\n')
    with pytest.raises(UserError, match=r"nums\.jsonl: column 'text' holds int \(row 2\), not text"):
        corpus(tmp_path / "nums.jsonl")


def test_labelled_parquet_and_gz(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["x", "y"], "label": [1, 0], "n": [5, 6]}), p)
    assert labelled(p).to_list() == [{"text": "x", "label": "1"}, {"text": "y", "label": "0"}]
    gz = tmp_path / "b.parquet.gz"
    gz.write_bytes(gzip.compress(p.read_bytes()))
    assert labelled(gz)["text"] == ["x", "y"]
    batches = list(iter_columns(str(p), ["label", "text"]))
    assert batches == [{"label": [1, 0], "text": ["x", "y"]}]


def test_iter_columns_batches_and_values(tmp_path):
    c = tmp_path / "big.csv"
    with open(c, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows([f"text {i}, with comma", i % 3] for i in range(25_000))
    batches = list(iter_columns(str(c), ["label", "text"]))
    assert [len(b["text"]) for b in batches] == [10_000, 10_000, 5_000]
    assert (
        batches[0]["label"][:4] == ["0", "1", "2", "0"] and batches[2]["text"][-1] == "text 24999, with comma"
    )


def test_hub_class_labels_become_names(monkeypatch):
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    ds = datasets.Dataset.from_dict({"text": ["bad", "good"], "label": [0, 1]}, features=features)
    seen = {}

    def fake_load(name, config=None, split=None):
        seen.update(name=name, config=config, split=split)
        return ds

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    columns, where = read_columns("hf:someone/reviews:plain@test", ["text", "label"])
    assert (
        columns == {"text": ["bad", "good"], "label": ["neg", "pos"]}
        and where == "hf:someone/reviews:plain@test"
    )
    assert seen == {"name": "someone/reviews", "config": "plain", "split": "test"}
    with pytest.raises(UserError, match="hf:someone/reviews: name a split"):
        read_columns("hf:someone/reviews", ["text"])
    assert corpus("hf:someone/reviews@train") == ["bad", "good"]


def test_specs():
    hub = parse_spec("hf:a/b:c@d")
    assert (hub.kind, hub.name, hub.config, hub.split) == ("hf", "a/b", "c", "d")
    hub = parse_spec("hf:a/b", hub_config="c", hub_split="d")
    assert (hub.name, hub.config, hub.split) == ("a/b", "c", "d")
    assert parse_spec("builtin:pydocs@test").split == "test"
    with pytest.raises(UserError, match="the built-in corpus has no splits"):
        corpus("builtin:pydocs@test")
    with pytest.raises(UserError, match="data file not found: .*nope.csv"):
        read_columns("nope.csv", ["text"])


# --- corpus folders: nothing skipped in silence ------------------------------------------------------------


def test_plain_text_is_read_and_what_is_not_read_is_named(tmp_path, capsys):
    d = tmp_path / "notes"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("from the txt\n")
    (d / "b.md").write_text("# from the markdown\n")
    (d / "sub" / "c.rst").write_text("from the rst\n")
    (d / "d.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (d / "sub" / "e.pdf").write_bytes(b"%PDF-1.4\x00")
    assert corpus(d) == ["from the txt", "# from the markdown", "from the rst"]
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"warning: corpus folder {d}: 2 files not read (no corpus format): d.png, sub/e.pdf"
    ]
    assert corpus(d / "*") == ["from the txt", "# from the markdown", "from the rst"]
    assert capsys.readouterr().err.splitlines() == [
        f"warning: corpus pattern {d / '*'}: 2 files not read (no corpus format): {d / 'd.png'}, {d / 'sub/e.pdf'}"
    ]
    markdown = tmp_path / "md"
    markdown.mkdir()
    for i in range(3):
        (markdown / f"{i}.md").write_text(f"page {i}\n")
    assert corpus(markdown) == ["page 0", "page 1", "page 2"]
    assert capsys.readouterr().err == ""


def test_a_folder_with_nothing_to_read_is_an_error_naming_what_it_holds(tmp_path):
    d = tmp_path / "pictures"
    d.mkdir()
    for i in range(6):
        (d / f"{i}.png").write_bytes(b"\x89PNG\x00")
    (d / "LICENSE").write_text("x")
    with pytest.raises(UserError) as e:
        corpus(d)
    assert str(e.value).startswith(f"corpus folder {d} has no .txt/.text/.md/")
    assert str(e.value).endswith("7 files not read (no corpus format): 6 .png, 1 (no extension)")

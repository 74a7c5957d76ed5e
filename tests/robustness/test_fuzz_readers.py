"""Property tests of the readers (`data_prep.read`): the corpus reader (`iter_corpus`) and the labelled-data
reader (`read_columns`), on generated CSV/TSV/JSONL/JSON/TXT content (any Unicode, quotes, delimiters,
empty fields, byte-order marks, CRLF, gzip).

Well-formed files come back as the rows written (fields stripped, blank rows and texts skipped, as the
readers document); damaged ones end in one `UserError` or in rows that were written: never another exception,
never two rows merged into one."""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from data_prep.errors import UserError
from data_prep.read import ReadOptions, read_columns
from data_prep.sources import iter_corpus

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# characters that matter to the readers, mixed into any Unicode (no NUL: a NUL marks a binary file, and no
# U+FEFF: at the start of a file it is a byte-order mark, tested on its own)
SPECIAL = [",", '"', "\t", "\r", "\n", " ", "\u00a0", "\u2028", "\x85", "\x0c", "'", "{", "[", "\\"]
CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00\ufeff")
TEXT = st.text(st.one_of(CHARS, st.sampled_from(SPECIAL)), max_size=24)
LINE_TEXT = st.text(  # text that holds no line break a text file splits on
    st.one_of(st.characters(exclude_categories=("Cs",), exclude_characters="\x00\ufeff\r\n"), st.sampled_from([",", '"', "\t", " ", "\u2028", "\x85"])),
    max_size=24,
)  # fmt: skip
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16"])


def _write(folder: Path, name: str, text: str, encoding: str, gz: bool) -> Path:
    data = text.encode(encoding)
    path = folder / (name + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _read_encoding(encoding: str) -> str:
    return "utf-16" if encoding == "utf-16" else "utf-8"


def _csv_text(rows: list[list[str]], header: list[str], terminator: str, quoting: int) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator=terminator, quoting=quoting)
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _kept(rows: list[list[str]]) -> list[list[str]]:
    """The rows a delimited reader returns: blank rows skipped, fields stripped."""
    return [[v.strip() for v in r] for r in rows if "".join(r).strip()]


def _read_or_error(read: Callable[[], object]) -> object:
    """What `read` returns, or the UserError it raised; any other exception fails the test."""
    try:
        return read()
    except UserError as e:
        assert str(e) and "\n" not in str(e).strip(), "a UserError is one line"
        return e


# --- well-formed files come back as written -------------------------------------------------------------


@FUZZ
@given(
    rows=st.lists(st.tuples(TEXT, TEXT), max_size=12),
    # "\n" with minimal quoting is not well-formed: Python's writer then leaves a bare "\r" unquoted
    dialect=st.sampled_from([("\r\n", csv.QUOTE_MINIMAL), ("\r\n", csv.QUOTE_ALL), ("\n", csv.QUOTE_ALL)]),
    encoding=ENCODINGS,
    gz=st.booleans(),
)
def test_csv_round_trip(rows, dialect, encoding, gz):
    rows = [list(r) for r in rows]
    terminator, quoting = dialect
    with tempfile.TemporaryDirectory() as d:
        text = _csv_text(rows, ["text", "label"], terminator, quoting)
        path = _write(Path(d), "data.csv", text, encoding, gz)
        opts = ReadOptions(encoding=_read_encoding(encoding))
        data, where = read_columns(str(path), ["text", "label"], opts)
    assert where == str(path)
    assert [list(r) for r in zip(data["text"], data["label"])] == _kept(rows)


@FUZZ
@given(
    rows=st.lists(st.tuples(LINE_TEXT.filter(lambda s: "\t" not in s), LINE_TEXT), max_size=12),
    terminator=st.sampled_from(["\n", "\r\n"]),
    encoding=ENCODINGS,
    gz=st.booleans(),
)
def test_tsv_round_trip_last_column_takes_the_tabs(rows, terminator, encoding, gz):
    rows = [list(r) for r in rows]
    with tempfile.TemporaryDirectory() as d:
        text = "".join("\t".join(r) + terminator for r in [["label", "text"], *rows])
        path = _write(Path(d), "data.tsv", text, encoding, gz)
        data, _ = read_columns(str(path), ["label", "text"], ReadOptions(encoding=_read_encoding(encoding)))
    assert [list(r) for r in zip(data["label"], data["text"])] == _kept(rows)


@FUZZ
@given(
    records=st.lists(st.fixed_dictionaries({"text": TEXT, "label": st.one_of(TEXT, st.integers())}), max_size=12),
    ascii_only=st.booleans(),
    layout=st.sampled_from(["jsonl", "list", "columns"]),
    encoding=ENCODINGS,
    gz=st.booleans(),
)  # fmt: skip
def test_json_round_trip(records, ascii_only, layout, encoding, gz):
    if layout == "jsonl":
        name, text = "data.jsonl", "".join(json.dumps(r, ensure_ascii=ascii_only) + "\n" for r in records)
    elif layout == "list":
        name, text = "data.json", json.dumps(records, ensure_ascii=ascii_only, indent=1)
    else:
        assume(records)  # {"text": [], "label": []} is an object of empty lists, not a list of rows
        columns = {k: [r[k] for r in records] for k in ("text", "label")}
        name, text = "data.json", json.dumps(columns, ensure_ascii=ascii_only)
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), name, text, encoding, gz)
        data, _ = read_columns(str(path), ["text", "label"], ReadOptions(encoding=_read_encoding(encoding)))
    assert data == {"text": [r["text"] for r in records], "label": [r["label"] for r in records]}


@FUZZ
@given(
    docs=st.lists(LINE_TEXT, max_size=15),
    terminator=st.sampled_from(["\n", "\r\n", "\r"]),
    encoding=ENCODINGS,
    gz=st.booleans(),
)
def test_txt_lines_round_trip(docs, terminator, encoding, gz):
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), "corpus.txt", terminator.join(docs), encoding, gz)
        got = [t for batch in iter_corpus([str(path)], encoding=_read_encoding(encoding)) for t in batch]
    assert got == [t.strip() for t in docs if t.strip()]


@FUZZ
@given(
    paragraphs=st.lists(st.lists(LINE_TEXT.filter(str.strip), min_size=1, max_size=4), max_size=8),
    terminator=st.sampled_from(["\n", "\r\n"]),
    gz=st.booleans(),
)
def test_txt_paragraphs_round_trip(paragraphs, terminator, gz):
    text = (terminator * 2).join(terminator.join(lines) for lines in paragraphs)
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), "corpus.txt", text, "utf-8", gz)
        got = [t for batch in iter_corpus([str(path)], txt_mode="paragraph") for t in batch]
    assert got == ["\n".join(line.rstrip() for line in lines).strip() for lines in paragraphs]


@FUZZ
@given(
    texts=st.lists(TEXT, max_size=12),
    fmt=st.sampled_from(["csv", "jsonl"]),
    bom=st.booleans(),
    gz=st.booleans(),
)
def test_corpus_columns_round_trip(texts, fmt, bom, gz):
    """A corpus read from a column: the non-blank texts, in order (CSV fields stripped)."""
    if fmt == "csv":
        content = _csv_text(
            [[t, str(i)] for i, t in enumerate(texts)], ["text", "id"], "\r\n", csv.QUOTE_MINIMAL
        )
        expected = [t.strip() for t in texts if t.strip()]
    else:
        content = "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts))
        expected = [t for t in texts if t.strip()]
    with tempfile.TemporaryDirectory() as d:
        path = _write(Path(d), f"corpus.{fmt}", content, "utf-8-sig" if bom else "utf-8", gz)
        got = [t for batch in iter_corpus([str(path)]) for t in batch]
    assert got == expected


# --- damaged files: one UserError, or rows that were written ------------------------------------------


def _well_formed(fmt: str, rows: list[list[str]]) -> str:
    if fmt == "csv":
        return _csv_text(rows, ["text", "label"], "\n", csv.QUOTE_MINIMAL)
    if fmt == "tsv":
        return "".join("\t".join(r) + "\n" for r in [["text", "label"], *rows])
    if fmt == "jsonl":
        return "".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows)
    if fmt == "json":
        return json.dumps([{"text": t, "label": lab} for t, lab in rows], indent=1)
    return "\n".join(t for t, _ in rows)


NOISE = st.sampled_from([b'"', b",", b"\t", b"\n", b"\r", b"\x00", b"\xff", b"\xc3", b"{", b"}", b"[", b"]", b":", b"\xef\xbb\xbf"])  # fmt: skip


@FUZZ
@given(
    rows=st.lists(st.tuples(LINE_TEXT, LINE_TEXT), min_size=1, max_size=8),
    fmt=st.sampled_from(["csv", "tsv", "jsonl", "json", "txt"]),
    edits=st.lists(st.tuples(st.floats(0, 1), NOISE), max_size=4),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    gz=st.booleans(),
    damage_gzip=st.booleans(),
    on_bad_lines=st.sampled_from(["error", "skip"]),
)
def test_damaged_files_end_in_one_user_error(rows, fmt, edits, cut, gz, damage_gzip, on_bad_lines):
    """Noise bytes inserted, the file cut short (inside a UTF-8 sequence or the gzip stream too): reading
    returns or raises UserError, for both readers."""
    data = _well_formed(fmt, [list(r) for r in rows]).encode("utf-8")
    for where, noise in edits:
        at = int(where * len(data))
        data = data[:at] + noise + data[at:]
    if gz:
        data = gzip.compress(data)
    if cut is not None and (damage_gzip or not gz):
        data = data[: int(cut * len(data))]
    opts = ReadOptions(on_bad_lines=on_bad_lines)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / (f"data.{fmt}" + (".gz" if gz else ""))
        path.write_bytes(data)
        corpus = _read_or_error(lambda: list(iter_corpus([str(path)], on_bad_lines=on_bad_lines)))
        if fmt != "txt":
            labelled = _read_or_error(lambda: read_columns(str(path), ["text", "label"], opts))
            assert isinstance(labelled, (UserError, tuple))
    assert isinstance(corpus, (UserError, list))


@FUZZ
@given(
    rows=st.lists(st.tuples(TEXT, TEXT), min_size=2, max_size=10),
    row=st.integers(0, 9),
    column=st.integers(0, 1),
    on_bad_lines=st.sampled_from(["error", "skip"]),
)
def test_csv_open_quote_never_merges_rows(rows, row, column, on_bad_lines):
    """A quote that opens a field and is never closed (a truncated or hand-edited row): refused, or that
    row skipped; every row returned is a row that was written (none swallowed into another)."""
    rows = [list(r) for r in rows]
    row = row % len(rows)
    lines = _csv_text(rows, ["text", "label"], "\n", csv.QUOTE_MINIMAL).split("\n")
    assume(all("\n" not in v and "\r" not in v for r in rows for v in r))  # one line per row
    fields = next(csv.reader([lines[row + 1]]))
    assume(not fields[column].startswith('"') and '"' not in lines[row + 1])
    fields[column] = '"' + fields[column]
    lines[row + 1] = ",".join(fields[:column] + [fields[column]] + fields[column + 1 :])
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "data.csv"
        path.write_text("\n".join(lines), encoding="utf-8")
        got = _read_or_error(
            lambda: read_columns(str(path), ["text", "label"], ReadOptions(on_bad_lines=on_bad_lines))
        )
    if on_bad_lines == "error":
        assert isinstance(got, UserError) and "line" in str(got)
        return
    assert not isinstance(got, UserError)
    written = _kept(rows)
    returned = [list(r) for r in zip(got[0]["text"], got[0]["label"])]
    assert all(r in written for r in returned)
    assert len(returned) >= len(written) - 1


@pytest.mark.parametrize("where", ["start", "late"])
def test_nul_bytes_are_a_user_error(tmp_path, where):
    """A NUL is binary data: refused at the start of a file, and a UserError (not a csv.Error) later on."""
    head = "text,label\n" + ("a,b\n" * (3000 if where == "late" else 0))
    for name in ("data.csv", "data.tsv", "data.jsonl", "corpus.txt"):
        path = tmp_path / name
        path.write_text(head + "x\x00y,z\n", encoding="utf-8")
        got = _read_or_error(lambda p=path: list(iter_corpus([str(p)])))
        if where == "start":
            assert isinstance(got, UserError) and "binary" in str(got)

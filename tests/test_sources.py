"""Corpus specs -> Dataset(text): every format, folders, globs, lists, errors; the built-in corpus and task."""

from __future__ import annotations

import csv
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from data_prep import builtin
from data_prep.errors import UserError
from data_prep.sources import iter_corpus, load_corpus, resolve_specs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture
def load(tmp_path):
    """load_corpus with a per-test cache folder, returning the list of texts."""

    def _load(specs, **kw):
        return list(load_corpus(specs, cache_dir=tmp_path / "cache", **kw)["text"])

    return _load


def _gz(path: Path, data: bytes) -> Path:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(data))
    return gz


def test_txt_line_and_paragraph_modes(tmp_path, load):
    p = tmp_path / "a.txt"
    p.write_text("\ufefffirst line\r\nsecond line\n\n  \nthird\nfourth\n", encoding="utf-8")
    assert load(str(p)) == ["first line", "second line", "third", "fourth"]
    assert load(str(p), txt_mode="paragraph") == ["first line\nsecond line", "third\nfourth"]
    plain = tmp_path / "sentiment-train"  # a file named explicitly with no known suffix is read as text
    plain.write_text("a sentence\t1\n")
    assert load(str(plain)) == ["a sentence\t1"]


def test_jsonl_json_list_and_gz(tmp_path, load):
    rows = [
        {"text": "one", "id": 1},
        {"text": "two", "id": 2},
        {"text": None, "id": 3},
        {"text": "", "id": 4},
    ]
    jl = tmp_path / "a.jsonl"
    jl.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load(str(jl)) == ["one", "two"]
    js = tmp_path / "b.json"
    js.write_text(json.dumps([{"body": "x y"}, {"body": "z"}], indent=2))
    assert load(str(js), text_field="body") == ["x y", "z"]
    js_lines = tmp_path / "c.json"
    js_lines.write_text('{"text": "as lines"}\n{"text": "too"}\n')
    assert load(str(js_lines)) == ["as lines", "too"]
    assert load(str(_gz(jl, jl.read_bytes()))) == ["one", "two"]


def test_csv_tsv_and_gz(tmp_path, load):
    c = tmp_path / "a.csv"
    with open(c, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["label", "text"])
        w.writerow(["1", 'hello, "world"'])
        w.writerow(["0", "two\nlines"])
    assert load(str(c)) == ['hello, "world"', "two\nlines"]
    t = tmp_path / "a.tsv"
    t.write_text('sentence\tlabel\nit \'s "quoted" as is\t1\nsecond\t0\n')
    assert load(str(t), text_field="sentence") == ['it \'s "quoted" as is', "second"]
    assert load(str(_gz(t, t.read_bytes())), text_field="sentence") == ['it \'s "quoted" as is', "second"]


def test_parquet_and_gz(tmp_path, load):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    p = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": ["p one", None, "p two"], "n": [1, 2, 3]}), p)
    assert load(str(p)) == ["p one", "p two"]
    assert load(str(_gz(p, p.read_bytes()))) == ["p one", "p two"]
    with pytest.raises(UserError, match=r"a\.parquet has no column 'body'; columns found: text, n"):
        load(str(p), text_field="body")


def test_dirs_globs_and_lists(tmp_path, load):
    d = tmp_path / "corpus"
    (d / "sub").mkdir(parents=True)
    (d / "b.txt").write_text("b1\nb2\n")
    (d / "a.jsonl").write_text('{"text": "a1"}\n')
    (d / "sub" / "c.txt").write_text("c1\n")
    (d / "notes.md").write_text("n1\n")  # plain text
    (d / ".hidden.txt").write_text("ignored\n")
    (d / "prepared" / "train").mkdir(parents=True)  # an output folder inside the corpus folder
    (d / "prepared" / "mlm_step.json").write_text("{}")
    (d / "prepared" / "train" / "state.json").write_text("{}")
    assert load(str(d)) == ["a1", "b1", "b2", "n1", "c1"]  # recursive, sorted by path
    assert load(str(d / "*.txt")) == ["b1", "b2"]
    assert load(str(d / "**" / "*.txt")) == ["b1", "b2", "c1"]
    assert load([str(d / "sub"), str(d / "b.txt")]) == ["c1", "b1", "b2"]  # list order kept
    assert [s.kind for s in resolve_specs(["builtin:pydocs", "hf:imdb:plain@test"])] == ["builtin", "hf"]
    hf = resolve_specs("hf:imdb:plain@test")[0]
    assert (hf.name, hf.config, hf.split) == ("imdb", "plain", "test")
    assert list(iter_corpus(str(d / "b.txt"))) == [["b1", "b2"]]


def test_cache_sees_changed_file(tmp_path, load):
    p = tmp_path / "a.txt"
    p.write_text("old\n")
    assert load(str(p)) == ["old"]
    p.write_text("new text\n")
    assert load(str(p)) == ["new text"]


def test_missing_paths(tmp_path, load):
    with pytest.raises(UserError, match="corpus path not found: .*nope.txt"):
        load(str(tmp_path / "nope.txt"))
    with pytest.raises(UserError, match=r"corpus path not found: .*\*\.zzz"):
        load(str(tmp_path / "*.zzz"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="corpus folder .*empty has no"):
        load(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="no corpus given"):
        load([])
    with pytest.raises(UserError, match="unknown built-in corpus 'builtin:nope'; valid: builtin:pydocs"):
        load("builtin:nope")


def test_binary_and_bad_utf8(tmp_path, load):
    b = tmp_path / "data.txt"
    b.write_bytes(b"hello\x00\x01\x02")
    with pytest.raises(UserError, match=r"data\.txt is not a text file \(binary data at byte 5\)"):
        load(str(b))
    bad = tmp_path / "latin.txt"
    bad.write_bytes("caf\u00e9 ok\n".encode() + b"na\xefve\n")
    with pytest.raises(
        UserError, match=r"latin\.txt is not valid UTF-8 at byte offset 11 .*encoding_errors: replace"
    ):
        load(str(bad))
    assert load(str(bad), encoding_errors="replace") == ["caf\u00e9 ok", "na\ufffdve"]
    gz = _gz(bad, bad.read_bytes())
    with pytest.raises(UserError, match=r"latin\.txt\.gz is not valid UTF-8 at byte offset 11"):
        load(str(gz))
    fake = tmp_path / "fake.jsonl.gz"
    fake.write_text('{"text": "not gzipped"}\n')
    with pytest.raises(UserError, match=r"fake\.jsonl\.gz is not a valid gzip file"):
        load(str(fake))


def test_missing_columns_and_bad_json(tmp_path, load):
    jl = tmp_path / "a.jsonl"
    jl.write_text('{"body": "x", "id": 1}\n')
    with pytest.raises(UserError, match=r"a\.jsonl has no column 'text'; columns found: body, id"):
        load(str(jl))
    c = tmp_path / "a.csv"
    c.write_text("a,b\n1,2\n")
    with pytest.raises(UserError, match=r"a\.csv has no column 'text'; columns found: a, b"):
        load(str(c))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": \n')
    with pytest.raises(UserError, match=r"broken\.jsonl line 2 is not valid JSON"):
        load(str(broken))
    with pytest.raises(UserError, match="txt_mode 'words' is not valid; choose one of: line, paragraph"):
        load(str(jl), txt_mode="words")


def test_hub_failure_names_the_dataset(monkeypatch, load):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub (offline mode is enabled)")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(UserError, match="could not load Hub dataset 'someone/corpus'.*offline"):
        load("hf:someone/corpus@train")


def test_builtin_corpus_size_and_load(load):
    docs = builtin.pydocs_corpus()
    size = sum(len(d.encode("utf-8")) for d in docs)
    assert 1_500_000 <= size <= 3_000_000, size
    assert len(docs) == len(set(docs)) > 3000
    assert builtin.pydocs_corpus() == docs  # deterministic (and cached)
    assert load("builtin:pydocs") == docs


def test_builtin_task():
    task = builtin.pydocs_task()
    assert set(task) == {"train", "validation", "test"}
    labels = Counter(task["train"]["label"])
    assert len(labels) == 12
    assert all(len(task[s]) > 0 for s in task)
    assert min(len(t) for t in task["train"]["text"]) >= builtin.TASK_MIN_CHARS
    assert {"email", "asyncio"} <= set(labels)
    sizes = {s: len(task[s]) for s in task}
    assert sizes["train"] > 6 * sizes["test"] and sizes["validation"] > 0
    again = builtin.pydocs_task()
    assert again["test"]["text"] == task["test"]["text"] and again["test"]["label"] == task["test"]["label"]
    assert set(task["train"]["text"]).isdisjoint(task["test"]["text"])


def test_shared_glue_tsv(load):
    if not (SHARED / "glue").is_dir():
        pytest.skip(f"shared data not present at {SHARED}")
    texts = load(str(SHARED / "glue" / "SST-2" / "dev.tsv"), text_field="sentence")
    assert len(texts) == 872

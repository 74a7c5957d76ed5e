"""Cleaning, filtering, dedup, the validation split, the folder prepare writes, and its errors."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from data_prep import prepare as prepare_module
from data_prep.errors import UserError
from data_prep.io import read_json
from data_prep.prepare import PrepareConfig, clean_text, prepare

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def test_clean_text():
    assert clean_text("Cafe\u0301 au lait") == "Caf\u00e9 au lait"  # NFC
    assert clean_text("a\x00b\x07c\u200b d\x7f") == "abc\u200b d"  # control characters out, others kept
    assert clean_text("one\r\ntwo\rthree\x0cfour") == "one\ntwo\nthree\nfour"
    assert clean_text("  many   spaces\t\tand tabs  \n  next line  ") == "many spaces and tabs\nnext line"
    assert clean_text("a\n\n\n\n\nb") == "a\n\nb"
    html = "Great <b>film</b>!<br /><br />Loved it &amp; more &lt;3 <a href='x'>link</a><!-- c -->"
    assert clean_text(html) == html  # untouched unless asked
    assert clean_text(html, strip_html=True) == "Great film!\n\nLoved it & more <3 link"


def test_prepare_counts_and_outputs(tmp_path, tiny_texts, prepared_dir):
    stats = read_json(prepared_dir / "stats.json")
    assert stats["documents_in"] == len(tiny_texts) == 300
    assert stats["duplicates_dropped"] == 8
    assert stats["too_short_dropped"] == 4
    assert stats["documents_out"] == 288
    assert (stats["train_documents"], stats["validation_documents"]) == (258, 30)
    dd = datasets.load_from_disk(str(prepared_dir))
    assert set(dd) == {"train", "validation"} and dd["train"].column_names == ["text"]
    texts = list(dd["train"]["text"]) + list(dd["validation"]["text"])
    assert len(set(texts)) == 288 and stats["characters"] == sum(len(t) for t in texts)
    assert (
        list(dd["train"]["text"])[:3] == [t for t in tiny_texts if t in set(list(dd["train"]["text"]))][:3]
    )  # order kept
    meta = read_json(prepared_dir / "mlm_step.json")
    assert meta["step"] == "prepare" and meta["config"]["validation_size"] == 30
    assert {"python", "datasets", "tokenizers"} <= set(meta["versions"])
    assert meta["inputs"]["files"][0]["path"].endswith("corpus.jsonl")
    assert not list(prepared_dir.glob(".*"))  # no scratch folder left


def test_split_fraction_seed_and_filters(tmp_path):
    texts = [f"document number {i} with enough text" for i in range(100)] + ["duplicate text here ok"] * 3
    src = _jsonl(tmp_path / "c.jsonl", texts + ["x" * 10])

    def run(name, **kw):
        stats = prepare(PrepareConfig(corpus=str(src), output_dir=str(tmp_path / name), **kw))
        return stats, datasets.load_from_disk(str(tmp_path / name))

    stats, dd = run("a", validation_split_percentage=10, seed=1)
    assert (stats["train_documents"], stats["validation_documents"]) == (91, 10)
    assert stats["duplicates_dropped"] == 2 and stats["too_short_dropped"] == 1
    _, same = run("b", validation_split_percentage=10, seed=1)
    assert list(same["validation"]["text"]) == list(dd["validation"]["text"])
    _, other = run("c", validation_split_percentage=10, seed=2)
    assert list(other["validation"]["text"]) != list(dd["validation"]["text"])
    stats, _ = run("d", dedup=False, min_chars=5)
    assert stats["documents_out"] == 104 and stats["duplicates_dropped"] == 0


def test_html_stripping_in_prepare(tmp_path):
    src = _jsonl(
        tmp_path / "r.jsonl",
        ["A <i>fine</i> movie.<br /><br />Would watch again &amp; again."] * 2 + ["b" * 30],
    )
    prepare(
        PrepareConfig(
            corpus=[str(src)], output_dir=str(tmp_path / "o"), strip_html=True, validation_size=1, seed=0
        )
    )
    dd = datasets.load_from_disk(str(tmp_path / "o"))
    assert "A fine movie.\n\nWould watch again & again." in list(dd["train"]["text"]) + list(
        dd["validation"]["text"]
    )


def test_empty_result_and_no_leftovers(tmp_path):
    src = _jsonl(tmp_path / "short.jsonl", ["tiny", "small", "   "])
    out = tmp_path / "out"
    with pytest.raises(
        UserError, match=r"corpus .*short\.jsonl has no usable text after cleaning \(2 documents read"
    ):
        prepare(PrepareConfig(corpus=[str(src)], output_dir=str(out)))
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.jsonl"]


def test_failed_write_keeps_old_output(tmp_path, monkeypatch):
    src = _jsonl(tmp_path / "c.jsonl", [f"document number {i} is long enough" for i in range(10)])
    out = tmp_path / "out"
    prepare(PrepareConfig(corpus=[str(src)], output_dir=str(out)))
    before = (out / "stats.json").read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(prepare_module, "write_step_metadata", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        prepare(PrepareConfig(corpus=[str(src)], output_dir=str(out), seed=7))
    assert (out / "stats.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "out"]


def test_config_validation(tmp_path):
    def check(match, **kw):
        cfg = PrepareConfig(**({"corpus": ["x.txt"], "output_dir": str(tmp_path / "o")} | kw))
        with pytest.raises(UserError, match=match):
            cfg.validate()

    check("txt_mode 'words' is not valid; choose one of: line, paragraph", txt_mode="words")
    check("encoding_errors 'ignore' is not valid; choose one of: strict, replace", encoding_errors="ignore")
    check("validation_split_percentage must be between 0 and 100", validation_split_percentage=150)
    check("validation_size must be >= 1", validation_size=0)
    check("'corpus' is empty", corpus=[])
    cfg = PrepareConfig(corpus="builtin:pydocs", output_dir="o")
    cfg.validate()
    assert cfg.corpus == ["builtin:pydocs"]
    with pytest.raises(UserError, match="corpus path not found: .*missing.txt"):
        prepare(PrepareConfig(corpus=[str(tmp_path / "missing.txt")], output_dir=str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_shared_wikitext(tmp_path):
    if not (SHARED / "wikitext2" / "valid.txt").is_file():
        pytest.skip(f"shared data not present at {SHARED}")
    stats = prepare(
        PrepareConfig(
            corpus=[str(SHARED / "wikitext2" / "valid.txt")],
            output_dir=str(tmp_path / "w"),
            txt_mode="paragraph",
        )
    )
    assert stats["documents_out"] > 500 and stats["validation_documents"] > 0


def _clean_text_reference(text: str, strip_html: bool = False) -> str:
    """Every substitution of clean_text, always run (clean_text skips the ones that cannot change a text)."""
    import html
    import unicodedata

    from data_prep import prepare as p

    text = unicodedata.normalize("NFC", text)
    if strip_html:
        text = html.unescape(p._TAG.sub("", p._BR.sub("\n", text)))
    text = p._SPACES.sub(" ", p._CONTROL.sub("", p._LINE_BREAKS.sub("\n", text)))
    text = "\n".join(line.strip() for line in text.split("\n"))
    return p._BLANK_LINES.sub("\n\n", text).strip()


def test_clean_text_fast_paths_change_nothing():
    import random

    pieces = [
        "a", "word", " ", "  ", "\n", "\n\n\n", "\t", "\r\n", "\r", "\x0b", "\x0c", "\x00", "\x07", "\x1c",
        "\x1f", "\x7f", "\x85", "\x9f", "\xa0", "\u1680", "\u2003", "\u2028", "\u2029", "\u202f", "\u3000",
        "<br />", "<p>", "<b>x</b>", "<!-- c -->", "&amp;", "&#9;", "&nbsp;", "&lt;b&gt;", "e\u0301", "é", "🙂",
    ]  # fmt: skip
    rng = random.Random(0)
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        for strip_html in (False, True):
            assert clean_text(text, strip_html) == _clean_text_reference(text, strip_html), repr(text)


def test_num_proc_gives_the_same_output(tmp_path):
    texts = [f"  document\t{i}  with <b>some</b> text &amp; more  " for i in range(25_000)] + [
        "a duplicated document, long enough"
    ] * 5
    src = _jsonl(tmp_path / "c.jsonl", texts)

    def run(name, num_proc):
        cfg = PrepareConfig(
            corpus=[str(src)], output_dir=str(tmp_path / name), strip_html=True, num_proc=num_proc
        )
        stats = prepare(cfg)
        dd = datasets.load_from_disk(str(tmp_path / name))
        return {k: v for k, v in stats.items() if k != "seconds"}, {s: list(dd[s]["text"]) for s in dd}

    one, two = run("one", None), run("two", 2)
    assert one == two
    assert one[0]["duplicates_dropped"] == 4 and one[1]["train"][0] == "document 0 with some text & more"

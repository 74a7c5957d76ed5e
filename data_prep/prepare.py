"""Step 1, `prepare`: read a corpus, clean it, split (or refuse) over-long documents, drop empty, short and
duplicate ones, split off validation."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import html
import multiprocessing
import re
import shutil
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from data_prep.arrow_files import iter_record_batches, shard_name, write_dataset_dict, write_split_metadata
from data_prep.errors import UserError
from data_prep.io import write_json
from data_prep.outputs import output_folder
from data_prep.progress import bar
from data_prep.read import Source, corpus_fingerprint, iter_texts, resolve_specs
from data_prep.sources import corpus_options
from data_prep.steps import file_fingerprint, write_step_metadata
from data_prep.text import DEFAULT_MAX_DOCUMENT_CHARS, LONG_DOCUMENTS, has_visible_text, split_document

STEP = "prepare"
_MAX_FILES_RECORDED = 1000  # mlm_step.json lists at most this many input files
_MIN_DOCUMENT_BOUND = 100  # the smallest max_document_chars: below it, pieces would be a few words


@dataclass
class PrepareConfig:
    """Where the corpus comes from, how to clean it, and how much to keep for validation."""

    # corpus specs: files (.txt/.jsonl/.json/.csv/.tsv/.parquet, optionally .gz), folders, globs, hf:NAME, builtin:pydocs
    corpus: list[str] = field(
        metadata={"help": "corpus specs: files, folders, globs, hf:NAME[:CONFIG][@SPLIT], builtin:pydocs"}
    )
    # folder to write (a DatasetDict with train/validation, stats.json, mlm_step.json)
    output_dir: str = field(metadata={"help": "output folder (DatasetDict train/validation + stats.json)"})
    # column holding the text in JSON/CSV/TSV/Parquet/Hub data
    text_field: str = field(
        default="text", metadata={"help": "column holding the text in jsonl/csv/tsv/parquet/Hub data"}
    )
    # how .txt files split into documents: one per line, or blank-line-separated paragraphs
    txt_mode: str = field(
        default="line", metadata={"help": "txt files: 'line' (one document per line) or 'paragraph'"}
    )
    # what to do with bytes that are not UTF-8: fail, or replace them with U+FFFD
    encoding_errors: str = field(
        default="strict", metadata={"help": "bad UTF-8: 'strict' (fail) or 'replace'"}
    )
    # the encoding of the corpus files
    encoding: str = field(default="utf-8", metadata={"help": "encoding of the corpus files (e.g. latin-1)"})
    # CSV/TSV rows with a wrong field count or a quote left open: refuse the file, or skip them with a warning
    on_bad_lines: str = field(
        default="error",
        metadata={"help": "malformed CSV/TSV rows: 'error' (fail) or 'skip' (with a warning)"},
    )
    # config name of a Hub dataset (when the spec does not give one)
    hub_config: str | None = field(default=None, metadata={"help": "config of hf: datasets without :CONFIG"})
    # split of a Hub dataset (when the spec does not give one)
    hub_split: str = field(default="train", metadata={"help": "split of hf: datasets without @SPLIT"})
    # remove HTML tags (<br /> becomes a newline) and unescape entities
    strip_html: bool = field(
        default=False, metadata={"help": "remove HTML tags (<br /> -> newline), unescape entities"}
    )
    # drop documents shorter than this many characters after cleaning
    min_chars: int = field(
        default=20, metadata={"help": "drop documents shorter than this (characters, after cleaning)"}
    )
    # documents longer than this many characters (after cleaning) are split or refused (long_documents)
    max_document_chars: int = field(
        default=DEFAULT_MAX_DOCUMENT_CHARS,
        metadata={"help": "longest document kept whole, in characters (after cleaning); see long_documents"},
    )
    # a longer document: cut at whitespace into pieces of at most max_document_chars, or refuse the corpus
    long_documents: str = field(
        default="split",
        metadata={"help": "documents over max_document_chars: 'split' (at whitespace) or 'refuse' (error)"},
    )
    # drop exact duplicate documents (after cleaning), keeping the first
    dedup: bool = field(
        default=True, metadata={"help": "drop exact duplicates after cleaning, keeping the first"}
    )
    # percent of documents held out for validation (run_mlm.py's name); ignored when validation_size is set
    validation_split_percentage: float = field(
        default=5, metadata={"help": "percent of documents for validation (0 < p < 100)"}
    )
    # number of documents held out for validation (overrides validation_split_percentage)
    validation_size: int | None = field(
        default=None, metadata={"help": "number of validation documents (overrides fraction)"}
    )
    # seed of the train/validation split
    seed: int = field(default=42, metadata={"help": "seed of the train/validation split"})
    # processes for cleaning (None: one)
    num_proc: int | None = field(default=None, metadata={"help": "processes for cleaning (default: 1)"})

    def validate(self) -> None:
        """Check and normalise the values; raise UserError naming the bad one."""
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        self.corpus = [str(c).strip() for c in (self.corpus or []) if str(c).strip()]
        if not self.corpus:
            raise UserError(
                "prepare: 'corpus' is empty; give files, folders, globs, hf:NAME or builtin:pydocs"
            )
        if not self.output_dir:
            raise UserError("prepare: 'output_dir' is empty")
        if not self.text_field:
            raise UserError("prepare: 'text_field' is empty")
        try:
            self.reading_kwargs()
        except UserError as e:
            raise UserError(f"prepare: {e}") from None
        if self.min_chars < 0:
            raise UserError(f"prepare: min_chars must be >= 0, got {self.min_chars}")
        if not 0 < self.validation_split_percentage < 100:
            raise UserError(
                f"prepare: validation_split_percentage must be between 0 and 100, got {self.validation_split_percentage}"
            )
        if self.max_document_chars < _MIN_DOCUMENT_BOUND:
            raise UserError(
                f"prepare: max_document_chars must be >= {_MIN_DOCUMENT_BOUND}, got {self.max_document_chars}"
            )
        if self.long_documents not in LONG_DOCUMENTS:
            raise UserError(
                f"prepare: long_documents '{self.long_documents}' is not valid; choose one of: "
                f"{', '.join(LONG_DOCUMENTS)}"
            )
        if self.validation_size is not None and self.validation_size < 1:
            raise UserError(f"prepare: validation_size must be >= 1, got {self.validation_size}")
        if self.num_proc is not None and self.num_proc < 1:
            raise UserError(f"prepare: num_proc must be >= 1, got {self.num_proc}")

    def reading_kwargs(self) -> dict:
        """The options that say how the corpus is read (checked), as keyword arguments of `iter_corpus`."""
        opts = {
            "text_field": self.text_field,
            "txt_mode": self.txt_mode,
            "encoding_errors": self.encoding_errors,
            "encoding": self.encoding,
            "on_bad_lines": self.on_bad_lines,
        }
        corpus_options(**opts)
        return opts


# --- cleaning -----------------------------------------------------------------------------------------------

_LINE_BREAKS = re.compile(r"\r\n?|[\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")  # all become \n
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # other control characters (keeps \t, \n)
_SPACES = re.compile(r"[^\S\n]+")  # runs of whitespace within a line (tabs included) -> one space
_BLANK_LINES = re.compile(r"\n{3,}")  # at most one blank line in a row
_BR = re.compile(r"<br\s*/?>|</?p\s*>", re.IGNORECASE)
_TAG = re.compile(r"<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL)


# any character the substitutions below act on other than " " and "\n": control characters, tabs, line
# breaks other than \n, and Unicode whitespace (what `\s` matches); most text has none, and one search for
# them is several times cheaper than running the substitutions
_UNUSUAL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]")


def clean_text(text: str, strip_html: bool = False) -> str:
    """NFC, HTML tags out (optional), control characters out, whitespace collapsed within lines, trimmed;
    a text that shows nothing (only zero-width, format or blank filler characters) becomes empty."""
    text = unicodedata.normalize("NFC", text)
    if strip_html:
        if "<" in text:
            text = _TAG.sub("", _BR.sub("\n", text))
        if "&" in text:
            text = html.unescape(text)
    if _UNUSUAL.search(text):
        text = _CONTROL.sub("", _LINE_BREAKS.sub("\n", text))
        text = _SPACES.sub(" ", text)
    elif "  " in text:
        text = _SPACES.sub(" ", text)
    if " \n" in text or "\n " in text:
        text = "\n".join(line.strip() for line in text.split("\n"))
    if "\n\n\n" in text:
        text = _BLANK_LINES.sub("\n\n", text)
    text = text.strip()
    return text if has_visible_text(text) else ""  # only zero-width or format characters: nothing to learn


def _text_key(text: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True
    )


class CleanBatch(NamedTuple):
    """A batch of documents cleaned: the rows (a long document split gives several), each row's length in
    characters and 64-bit content key (for deduplication), and how many documents were read and split."""

    texts: list[str]
    chars: np.ndarray
    keys: np.ndarray
    read: int
    split: int


def clean_batch(
    texts: list[str],
    strip_html: bool,
    max_document_chars: int = DEFAULT_MAX_DOCUMENT_CHARS,
    long_documents: str = "split",
    where: str = "corpus",
) -> CleanBatch:
    """`texts` cleaned; a document over `max_document_chars` is split at whitespace, or refused (a UserError
    naming `where`) when `long_documents` is "refuse"."""
    cleaned = [clean_text(t, strip_html) for t in texts]
    cleaned, n_split = _bound_lengths(cleaned, max_document_chars, long_documents, where)
    chars = np.fromiter(map(len, cleaned), np.int64, len(cleaned))
    keys = np.fromiter(map(_text_key, cleaned), np.int64, len(cleaned))
    return CleanBatch(cleaned, chars, keys, len(texts), n_split)


def _bound_lengths(
    texts: list[str], max_chars: int, long_documents: str, where: str
) -> tuple[list[str], int]:
    """`texts` with each one over `max_chars` split (or the first refused); and how many were split."""
    long = [t for t in texts if len(t) > max_chars]
    if not long:
        return texts, 0
    if long_documents == "refuse":
        raise UserError(
            f"{where}: a document of {len(long[0]):,} characters (after cleaning), beginning {long[0][:40]!r}, "
            f"is longer than max_document_chars={max_chars:,}; raise max_document_chars, or set "
            "long_documents: split to cut it at whitespace"
        )
    out: list[str] = []
    for t in texts:
        out += split_document(t, max_chars) if len(t) > max_chars else [t]
    return out, len(long)


def _clean_job(job: tuple[list[str], PrepareConfig, str]) -> CleanBatch:
    texts, cfg, where = job
    return clean_batch(texts, cfg.strip_html, cfg.max_document_chars, cfg.long_documents, where)


# --- the step -----------------------------------------------------------------------------------------------


def _keep_indices(
    chars: np.ndarray, keys: np.ndarray, min_chars: int, dedup: bool
) -> tuple[np.ndarray, int, int]:
    """Rows to keep (in order), number dropped as too short, number dropped as duplicates."""
    long_enough = np.flatnonzero(chars >= max(min_chars, 1))
    too_short = len(chars) - len(long_enough)
    if not dedup:
        return long_enough, too_short, 0
    _, first = np.unique(keys[long_enough], return_index=True)  # 8 bytes per document
    keep = long_enough[np.sort(first)]
    return keep, too_short, len(long_enough) - len(keep)


def _local_bytes(sources: list) -> int | None:
    """Bytes of the corpus when it is all plain local files (what the progress bar counts to), else None."""
    if not sources or any(s.kind != "file" or s.name.endswith(".gz") for s in sources):
        return None
    return sum(Path(s.name).stat().st_size for s in sources)


class _Cleaned(NamedTuple):
    """What reading and cleaning the corpus gave: documents read, long ones split, and per row (a document
    or a piece of a split one) its length and content key."""

    read: int
    split: int
    chars: np.ndarray
    keys: np.ndarray


def _jobs(cfg: PrepareConfig, sources: list[Source]) -> Iterator[tuple[list[str], PrepareConfig, str]]:
    """The cleaning jobs: each batch of texts read, with the config and the name of the source it is from."""
    opts = corpus_options(**cfg.reading_kwargs())
    if (
        cfg.long_documents == "split"
    ):  # a line of a .txt file longer than a document may be is never held whole
        opts = dataclasses.replace(opts, max_line_chars=cfg.max_document_chars)
    for source in sources:
        where = source.name if source.kind == "file" else source.spec
        for texts in iter_texts(source, cfg.text_field, opts):
            yield texts, cfg, where


def _read_and_clean(cfg: PrepareConfig, sources: list[Source], path: Path, total: int | None) -> _Cleaned:
    """Stream the corpus through `clean_batch` (in `num_proc` processes when asked) into the Arrow file
    `path`, with a progress bar (of the text read, to `total` bytes when known); return the counts, and each
    row's length and content key."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    jobs = _jobs(cfg, sources)
    chars: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    read = split = 0
    features = datasets.Features({"text": datasets.Value("string")})
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(ArrowWriter(path=str(path), features=features))
        progress = stack.enter_context(bar(total=total, desc="prepare", unit="B", unit_scale=True))
        if cfg.num_proc and cfg.num_proc > 1:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = stack.enter_context(multiprocessing.get_context(method).Pool(cfg.num_proc))
            results = pool.imap(_clean_job, jobs)  # in order, a few batches ahead
        else:
            results = map(_clean_job, jobs)
        for batch in results:
            writer.write_batch({"text": batch.texts})
            progress.update(min(int(batch.chars.sum()) + len(batch.texts), (total or 1 << 62) - progress.n))
            chars.append(batch.chars)
            keys.append(batch.keys)
            read, split = read + batch.read, split + batch.split
        progress.update(max(0, (total or 0) - progress.n))  # all read (the bar counted characters)
        writer.finalize()
    if not chars:
        return _Cleaned(0, 0, np.zeros(0, np.int64), np.zeros(0, np.int64))
    return _Cleaned(read, split, np.concatenate(chars), np.concatenate(keys))


def _write_splits(cleaned: Path, n_rows: int, rows: dict[str, np.ndarray], out: Path) -> None:
    """Copy the given rows of the Arrow file `cleaned` into one split folder each under `out`, streaming."""
    import datasets
    import pyarrow as pa
    from datasets.arrow_writer import ArrowWriter

    features = datasets.Features({"text": datasets.Value("string")})
    owner = np.full(n_rows, -1, np.int8)  # which split each row goes to (-1: dropped)
    names = list(rows)
    for k, name in enumerate(names):
        owner[rows[name]] = k
    with contextlib.ExitStack() as stack:
        writers = []
        for name in names:
            (out / name).mkdir()
            path = out / name / shard_name(0, 1)
            writers.append(stack.enter_context(ArrowWriter(path=str(path), features=features)))
        row = 0
        for record_batch in iter_record_batches([cleaned]):
            mine = owner[row : row + record_batch.num_rows]
            row += record_batch.num_rows
            for k, writer in enumerate(writers):
                mask = mine == k
                if mask.any():
                    writer.write_table(pa.Table.from_batches([record_batch.filter(pa.array(mask))]))
        for writer in writers:
            writer.finalize()
    for name in names:
        write_split_metadata(out / name, 1, features)
    write_dataset_dict(out, names)


def _kept_rows(cfg: PrepareConfig, got: _Cleaned) -> tuple[np.ndarray, dict]:
    """The rows to keep, in order, and the counts of those dropped; a UserError when fewer than 2 remain."""
    corpus_name = ", ".join(cfg.corpus)
    if got.read == 0:
        raise UserError(f"corpus {corpus_name} has no usable text after cleaning (0 documents read)")
    keep, too_short, duplicates = _keep_indices(got.chars, got.keys, cfg.min_chars, cfg.dedup)
    empty = int((got.chars == 0).sum())
    if len(keep) == 0:
        raise UserError(
            f"corpus {corpus_name} has no usable text after cleaning ({got.read} documents read, all dropped: "
            f"{empty} empty or with no visible character, {too_short - empty} shorter than "
            f"min_chars={cfg.min_chars}, {duplicates} duplicates)"
        )
    if len(keep) < 2:
        raise UserError(
            f"corpus {corpus_name} has only 1 usable document after cleaning; need 2 to split off validation"
        )
    dropped = {"duplicates_dropped": duplicates, "too_short_dropped": too_short, "empty_dropped": empty}
    return keep, dropped


def _split_rows(cfg: PrepareConfig, keep: np.ndarray) -> dict[str, np.ndarray]:
    """The kept rows of each split, in order: a seeded sample of them for validation, the rest for train."""
    n_out = len(keep)
    n_val = (
        cfg.validation_size
        if cfg.validation_size is not None
        else round(n_out * cfg.validation_split_percentage / 100)
    )
    n_val = min(max(n_val, 1), n_out - 1)
    order = np.random.default_rng(cfg.seed).permutation(n_out)
    return {"train": np.sort(keep[order[n_val:]]), "validation": np.sort(keep[order[:n_val]])}


def _stats(got: _Cleaned, keep: np.ndarray, dropped: dict, rows: dict[str, np.ndarray]) -> dict:
    return {
        "documents_in": got.read,
        "documents_out": len(keep),
        "characters": int(got.chars[keep].sum()),
        **dropped,
        "long_documents_split": got.split,
        "train_documents": len(rows["train"]),
        "validation_documents": len(rows["validation"]),
        "train_characters": int(got.chars[rows["train"]].sum()),
        "validation_characters": int(got.chars[rows["validation"]].sum()),
    }


def prepare(cfg: PrepareConfig) -> dict:
    """Read, clean, filter, dedup and split the corpus; write `cfg.output_dir`; return the stats."""
    cfg.validate()
    start = time.time()
    sources = resolve_specs(cfg.corpus, cfg.hub_config, cfg.hub_split)
    local = [s.name for s in sources if s.kind == "file"]
    with output_folder(cfg.output_dir, STEP, {"corpus": [*cfg.corpus, *local]}) as tmp:
        scratch = tmp / ".scratch"  # the cleaned corpus before filtering; removed before the rename
        scratch.mkdir()
        cleaned = scratch / "clean.arrow"
        got = _read_and_clean(cfg, sources, cleaned, _local_bytes(sources))
        keep, dropped = _kept_rows(cfg, got)
        rows = _split_rows(cfg, keep)
        _write_splits(cleaned, len(got.chars), rows, tmp)
        stats = _stats(got, keep, dropped, rows) | {"seconds": round(time.time() - start, 2)}
        write_json(tmp / "stats.json", stats)
        files = [file_fingerprint(s.name) for s in sources if s.kind == "file"]
        inputs = {
            "corpus": cfg.corpus,
            "fingerprint": corpus_fingerprint(sources, **cfg.reading_kwargs()),
            "files": files[:_MAX_FILES_RECORDED],
            "files_total": len(files),
        }
        write_step_metadata(tmp, STEP, cfg, inputs)
        shutil.rmtree(scratch, ignore_errors=True)
    split = f" ({got.split} over max_document_chars split)" if got.split else ""
    print(
        f"prepare: {got.read:,} documents read{split} -> {len(keep):,} kept ({dropped['too_short_dropped']:,} "
        f"too short, {dropped['duplicates_dropped']:,} duplicates); train {stats['train_documents']:,}, "
        f"validation {stats['validation_documents']:,}; {stats['characters'] / 1e6:.1f}M characters -> "
        f"{cfg.output_dir}"
    )
    return stats

"""Step 1, `prepare`: read a corpus, clean it, drop short and duplicate documents, split off validation."""

from __future__ import annotations

import contextlib
import hashlib
import html
import multiprocessing
import re
import shutil
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.arrow_files import iter_record_batches, shard_name, write_dataset_dict, write_split_metadata
from data_prep.errors import UserError
from data_prep.io import write_json
from data_prep.outputs import output_folder
from data_prep.read import corpus_fingerprint, resolve_specs
from data_prep.sources import corpus_options, iter_corpus
from data_prep.steps import file_fingerprint, write_step_metadata

STEP = "prepare"
_MAX_FILES_RECORDED = 1000  # mlm_step.json lists at most this many input files


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
    # drop exact duplicate documents (after cleaning), keeping the first
    dedup: bool = field(
        default=True, metadata={"help": "drop exact duplicates after cleaning, keeping the first"}
    )
    # share of documents held out for validation (0 < f < 1); ignored when validation_size is set
    validation_fraction: float = field(
        default=0.05, metadata={"help": "share of documents for validation (0 < f < 1)"}
    )
    # number of documents held out for validation (overrides validation_fraction)
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
        if not 0 < self.validation_fraction < 1:
            raise UserError(
                f"prepare: validation_fraction must be between 0 and 1, got {self.validation_fraction}"
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
    """NFC, HTML tags out (optional), control characters out, whitespace collapsed within lines, trimmed."""
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
    return text.strip()


def _text_key(text: str) -> int:
    return int.from_bytes(
        hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little", signed=True
    )


def clean_batch(texts: list[str], strip_html: bool) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Cleaned texts, their lengths in characters, and their 64-bit content keys (for deduplication)."""
    cleaned = [clean_text(t, strip_html) for t in texts]
    chars = np.fromiter(map(len, cleaned), np.int64, len(cleaned))
    keys = np.fromiter(map(_text_key, cleaned), np.int64, len(cleaned))
    return cleaned, chars, keys


def _clean_job(job: tuple[list[str], bool]) -> tuple[list[str], np.ndarray, np.ndarray]:
    return clean_batch(*job)


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


def _read_and_clean(cfg: PrepareConfig, path: Path) -> tuple[int, np.ndarray, np.ndarray]:
    """Stream the corpus through `clean_batch` (in `num_proc` processes when asked) into the Arrow file
    `path`; return the number of documents read, and each one's length and content key."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    batches = iter_corpus(
        cfg.corpus, hub_config=cfg.hub_config, hub_split=cfg.hub_split, **cfg.reading_kwargs()
    )
    jobs = ((texts, cfg.strip_html) for texts in batches)
    chars: list[np.ndarray] = []
    keys: list[np.ndarray] = []
    features = datasets.Features({"text": datasets.Value("string")})
    with contextlib.ExitStack() as stack:
        writer = stack.enter_context(ArrowWriter(path=str(path), features=features))
        if cfg.num_proc and cfg.num_proc > 1:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            pool = stack.enter_context(multiprocessing.get_context(method).Pool(cfg.num_proc))
            results = pool.imap(_clean_job, jobs)  # in order, a few batches ahead
        else:
            results = map(_clean_job, jobs)
        for texts, n_chars, n_keys in results:
            writer.write_batch({"text": texts})
            chars.append(n_chars)
            keys.append(n_keys)
        writer.finalize()
    if not chars:
        return 0, np.zeros(0, np.int64), np.zeros(0, np.int64)
    return int(sum(map(len, chars))), np.concatenate(chars), np.concatenate(keys)


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


def prepare(cfg: PrepareConfig) -> dict:
    """Read, clean, filter, dedup and split the corpus; write `cfg.output_dir`; return the stats."""
    cfg.validate()
    start = time.time()
    sources = resolve_specs(cfg.corpus, cfg.hub_config, cfg.hub_split)
    corpus_name = ", ".join(cfg.corpus)
    local = [s.name for s in sources if s.kind == "file"]
    with output_folder(cfg.output_dir, STEP, {"corpus": [*cfg.corpus, *local]}) as tmp:
        scratch = tmp / ".scratch"  # the cleaned corpus before filtering; removed before the rename
        scratch.mkdir()
        cleaned = scratch / "clean.arrow"
        n_in, chars, keys = _read_and_clean(cfg, cleaned)
        if n_in == 0:
            raise UserError(f"corpus {corpus_name} has no usable text after cleaning (0 documents read)")
        keep, too_short, duplicates = _keep_indices(chars, keys, cfg.min_chars, cfg.dedup)
        del keys
        n_out = len(keep)
        if n_out == 0:
            raise UserError(
                f"corpus {corpus_name} has no usable text after cleaning ({n_in} documents read, all dropped: "
                f"{too_short} shorter than min_chars={cfg.min_chars}, {duplicates} duplicates)"
            )
        if n_out < 2:
            raise UserError(
                f"corpus {corpus_name} has only 1 usable document after cleaning; need 2 to split off validation"
            )
        n_val = (
            cfg.validation_size if cfg.validation_size is not None else round(n_out * cfg.validation_fraction)
        )
        n_val = min(max(n_val, 1), n_out - 1)
        order = np.random.default_rng(cfg.seed).permutation(n_out)
        val_rows, train_rows = np.sort(keep[order[:n_val]]), np.sort(keep[order[n_val:]])
        _write_splits(cleaned, n_in, {"train": train_rows, "validation": val_rows}, tmp)
        stats = {
            "documents_in": n_in,
            "documents_out": n_out,
            "characters": int(chars[keep].sum()),
            "duplicates_dropped": duplicates,
            "too_short_dropped": too_short,
            "train_documents": len(train_rows),
            "validation_documents": len(val_rows),
            "train_characters": int(chars[train_rows].sum()),
            "validation_characters": int(chars[val_rows].sum()),
            "seconds": round(time.time() - start, 2),
        }
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
    print(
        f"prepare: {n_in} documents read -> {n_out} kept ({too_short} too short, {duplicates} duplicates); "
        f"train {stats['train_documents']}, validation {stats['validation_documents']}; "
        f"{stats['characters'] / 1e6:.1f}M characters -> {cfg.output_dir}"
    )
    return stats

"""Read every input format, for corpora and labelled data alike, with one set of errors.

Specs: local files (`.txt` and other plain text such as `.md` and `.rst`, `.jsonl`/`.json`, `.csv`/`.tsv`,
`.parquet`, any of them `.gz`); folders and globs of them (corpora: the files they hold in no such format are
named in one warning, never skipped in silence); a folder written by `datasets.save_to_disk` (`PATH@SPLIT`,
labelled data); Hub datasets `hf:NAME[:CONFIG][@SPLIT]`; and `builtin:pydocs[@SPLIT]`. Local files stream in
batches (bounded memory), except a JSON file holding one list or object, which is read whole.

Formats:
- `.txt` and the plain-text suffixes (`TEXT_SUFFIXES`: `.md`, `.rst`, ...): a document per non-empty line
  (`txt_mode: line`) or per blank-line-separated paragraph.
- `.jsonl` / `.json`: JSON lines, one JSON list of objects, or one object of columns (`{"text": [...]}`).
- `.csv`: standard CSV quoting, read strictly: a quote left open (which would swallow the rows after it)
  makes a bad line.
- `.tsv` and any other `delimiter`: no quoting (GLUE TSVs hold stray quotes); a row is split into at most as
  many fields as there are columns, the last column taking the rest of the line.
- Delimited files have a header, or `column_names`; names and fields are stripped of surrounding spaces; a
  row with the wrong number of fields is a bad line. Bad lines are refused (`on_bad_lines: error`) or
  skipped with one warning that counts them (`on_bad_lines: skip`).
- `.parquet`: a batch of rows at a time (a `.parquet.gz` is decompressed into memory first).

Every mistake in an input is one `UserError` line naming it: a missing path, a binary file, text that is not
in the file's encoding, a damaged gzip, invalid JSON, a missing or repeated column, a bad line.

Hub datasets go through `datasets.load_dataset`; local files do not: its builders read one format per call
(not a folder of mixed files), copy every row into their cache unless streaming, cannot let the last column
of a TSV row take the rest of the line (GLUE), and end a bad row with `DatasetGenerationError: An error
occurred while generating the dataset`, the file and row only in a logged line.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import glob
import gzip
import hashlib
import io
import itertools
import json
import operator
import os
import re
import sys
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from data_prep.cache import file_digest
from data_prep.errors import UserError
from data_prep.text import BATCH_CHARS, split_document

SUFFIXES = (".txt", ".jsonl", ".json", ".csv", ".tsv", ".parquet")
# Plain text to a user: read as .txt (a document per line, or per paragraph).
TEXT_SUFFIXES = (".txt", ".text", ".md", ".markdown", ".rst", ".adoc", ".asciidoc", ".org", ".tex")
_NAMED_SKIPS = 5  # a warning names up to this many unread files; more are counted by extension
TXT_MODES = ("line", "paragraph")
ENCODING_ERRORS = ("strict", "replace")
BAD_LINES = ("error", "skip")
BUILTINS = ("pydocs",)
BATCH = 10_000  # rows per batch
_SNIFF = 8192  # bytes checked for NUL (binary data)
_OUTPUT_MARKERS = frozenset({"mlm_step.json", "dataset_dict.json", "dataset_info.json"})
_CACHE_VERSION = "2"  # bump when the reading rules change, so corpora read by older rules are not reused
_DELIMITER_ALIASES = {"\\t": "\t", "tab": "\t", "\\s": " ", "space": " ", "comma": ","}
_GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)


def _choice(name: str, value: str, valid: Sequence[str]) -> None:
    if value not in valid:
        raise UserError(f"{name} '{value}' is not valid; choose one of: {', '.join(valid)}")


@dataclass(frozen=True)
class ReadOptions:
    """How to read local files; corpora and labelled data take the same options. Checked when made."""

    txt_mode: str = "line"  # .txt: a document per line, or per blank-line-separated paragraph
    encoding: str = "utf-8"  # the encoding of text files
    encoding_errors: str = "strict"  # bytes the encoding cannot decode: fail, or replace with U+FFFD
    on_bad_lines: str = "error"  # a delimited row with a wrong field count or an open quote: refuse, or skip
    delimiter: str | None = (
        None  # split fields on this ("tab", "space" and "comma" work too); None: the suffix
    )
    column_names: tuple[str, ...] | None = None  # the columns of a delimited file without a header
    max_line_chars: int | None = None  # .txt: a longer line is read in pieces of at most this, cut at spaces

    def __post_init__(self) -> None:
        _choice("txt_mode", self.txt_mode, TXT_MODES)
        _choice("encoding_errors", self.encoding_errors, ENCODING_ERRORS)
        _choice("on_bad_lines", self.on_bad_lines, BAD_LINES)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise UserError(f"encoding '{self.encoding}' is not known; e.g. utf-8, latin-1, cp1252") from None
        if self.delimiter is not None:
            if not self.delimiter:
                raise UserError("delimiter must not be empty")
            delimiter = _DELIMITER_ALIASES.get(self.delimiter.lower(), self.delimiter)
            object.__setattr__(self, "delimiter", delimiter)
        if self.column_names is not None:
            names = tuple(str(c).strip() for c in self.column_names)
            object.__setattr__(self, "column_names", names or None)


# --- specs --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One resolved input: a local file, a saved dataset folder, a Hub dataset or a built-in one."""

    kind: str  # "file", "saved" (a `save_to_disk` folder), "hf" or "builtin"
    name: str  # path, Hub name or built-in name
    spec: str  # the spec the user wrote
    config: str | None = None  # Hub config
    split: str | None = None  # split of a Hub dataset, a saved DatasetDict or the built-in task

    @property
    def suffix(self) -> str:
        """The format suffix of a file, ignoring `.gz` (".txt" for unknown suffixes)."""
        return _format_suffix(self.name) or ".txt"


def _format_suffix(path: str) -> str | None:
    """The format of a file by its name, ignoring `.gz`: one of `SUFFIXES` (plain text is ".txt"), or None."""
    name = path.lower().removesuffix(".gz")
    if name.endswith(TEXT_SUFFIXES):
        return ".txt"
    return next((s for s in SUFFIXES if name.endswith(s)), None)


def parse_spec(spec: str, hub_config: str | None = None, hub_split: str | None = None) -> Source:
    """`builtin:NAME[@SPLIT]` or `hf:NAME[:CONFIG][@SPLIT]` as a Source; anything else is a local file."""
    if spec.startswith("builtin:"):
        name, _, split = spec[len("builtin:") :].partition("@")
        if name not in BUILTINS:
            valid = ", ".join("builtin:" + b for b in BUILTINS)
            raise UserError(f"unknown built-in corpus 'builtin:{name}'; valid: {valid}")
        return Source("builtin", name, spec, split=split or None)
    if spec.startswith("hf:"):
        rest, _, split = spec[len("hf:") :].partition("@")
        name, _, config = rest.partition(":")
        if not name:
            raise UserError(f"spec '{spec}' names no dataset; use hf:NAME[:CONFIG][@SPLIT]")
        return Source("hf", name, spec, config or hub_config, split or hub_split)
    return Source("file", os.path.expanduser(spec), spec)


def resolve_specs(
    specs: str | Iterable[str], hub_config: str | None = None, hub_split: str = "train"
) -> list[Source]:
    """Expand corpus specs into sources: folders to their supported files, globs to their matches, in order."""
    if isinstance(specs, (str, os.PathLike)):
        specs = [specs]
    specs = [str(s).strip() for s in specs]
    if not any(specs):
        raise UserError("no corpus given: pass file paths, folders, globs, hf:NAME or builtin:pydocs")
    sources: list[Source] = []
    for spec in filter(None, specs):
        source = parse_spec(spec, hub_config, hub_split)
        if source.kind == "file":
            sources += [Source("file", f, spec) for f in _corpus_files(spec)]
        else:
            sources.append(source)
    return sources


def _corpus_files(spec: str) -> list[str]:
    """The readable files a local corpus spec (a file, a folder or a glob) names, in a fixed order; what a
    folder or glob holds that is not read is named in one warning."""
    path = Path(os.path.expanduser(spec))
    if path.is_file():
        return [str(path)]
    if path.is_dir():
        files, skipped = _dir_files(path)
        if not files:
            held = f"; {_describe(skipped)}" if skipped else ""
            raise UserError(f"corpus folder {spec} has no {_FORMATS} files (optionally .gz){held}")
        _warn_skipped(f"corpus folder {spec}", skipped)
        return files
    if not glob.has_magic(spec):
        raise UserError(f"corpus path not found: {spec}")
    files, skipped = [], []
    for match in sorted(glob.glob(os.path.expanduser(spec), recursive=True)):
        if os.path.isdir(match) and _OUTPUT_MARKERS.intersection(os.listdir(match)):
            skipped.append(os.path.join(match, ""))  # a step's output folder the pattern matches
        elif os.path.isdir(match):
            found, left = _dir_files(Path(match))
            files += found
            skipped += [os.path.join(match, name) for name in left]
        elif _format_suffix(match):
            files.append(match)
        else:
            skipped.append(match)
    if not files:
        raise UserError(f"corpus path not found: {spec} (the pattern matches no {_FORMATS} files)")
    _warn_skipped(f"corpus pattern {spec}", skipped)
    return files


def _dir_files(folder: Path) -> tuple[list[str], list[str]]:
    """(readable files under `folder`, recursively, sorted; what is not read, relative to `folder`): files in
    no corpus format, and subfolders this package or `datasets` wrote (an output folder inside a corpus folder
    is not corpus; named with a slash). Hidden files and folders are neither."""
    found, skipped = [], []
    for root, dirs, files in os.walk(folder):
        if root != str(folder) and _OUTPUT_MARKERS.intersection(files):
            dirs[:] = []
            skipped.append(os.path.relpath(root, folder) + os.sep)
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(f for f in files if not f.startswith(".")):
            path = os.path.join(root, name)
            (found if _format_suffix(name) else skipped).append(path)
    skipped = [s if s.endswith(os.sep) else os.path.relpath(s, folder) for s in skipped]
    return sorted(found), sorted(skipped)


_FORMATS = "/".join(dict.fromkeys(TEXT_SUFFIXES + SUFFIXES))
_WARNED: set[str] = set()  # warnings already given: a spec resolved twice in one run is named once


def _describe(skipped: list[str]) -> str:
    """`2 files not read (no corpus format): b.png, c.pdf`, for many files their count by extension, and the
    output folders not read."""
    folders = [s for s in skipped if s.endswith(("/", os.sep))]
    files = [s for s in skipped if s not in folders]
    parts = []
    if files:
        names = files
        if len(files) > _NAMED_SKIPS:
            exts = Counter(
                os.path.splitext(f.removesuffix(".gz"))[1].lower() or "(no extension)" for f in files
            )
            names = [f"{n} {ext}" for ext, n in exts.most_common()]
        parts.append(f"{_count(files, 'file')} not read (no corpus format): {', '.join(names)}")
    if folders:
        parts.append(f"{_count(folders, 'output folder')} of a step not read: {', '.join(folders)}")
    return "; ".join(parts)


def _count(items: list[str], noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) > 1 else ''}"


def _warn_skipped(where: str, skipped: list[str]) -> None:
    """One warning line naming what `where` holds that is not read (once per process)."""
    line = f"warning: {where}: {_describe(skipped)}" if skipped else ""
    if line and line not in _WARNED:
        _WARNED.add(line)
        print(line, file=sys.stderr, flush=True)


def corpus_fingerprint(sources: list[Source], **options: Any) -> str:
    """A short hash of the sources (files by content: `cache.file_digest`), the reading rules and options."""
    h = hashlib.sha256(_CACHE_VERSION.encode())
    for s in sources:
        h.update(repr((s.kind, s.name, s.config, s.split)).encode())
        if s.kind == "file":
            h.update(json.dumps(file_digest(s.name), sort_keys=True).encode())
        elif s.kind == "builtin":
            h.update(sys.version.encode())
    h.update(json.dumps(options, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


# --- text files: opening, encoding, gzip ----------------------------------------------------------------


def _open_binary(path: str) -> IO[bytes]:
    return gzip.open(path, "rb") if path.lower().endswith(".gz") else open(path, "rb")  # noqa: SIM115


def _is_utf8(encoding: str) -> bool:
    return codecs.lookup(encoding).name == "utf-8"


def _check_text_start(path: str, encoding: str) -> None:
    """Refuse files that are not gzip when named .gz, and binary files (NUL in the first 8 KB)."""
    try:
        with _open_binary(path) as f:
            head = f.read(_SNIFF)
    except _GZIP_ERRORS as e:
        raise UserError(f"{path} is not a valid gzip file ({e})") from None
    except PermissionError:
        raise UserError(f"{path} cannot be read (permission denied)") from None
    nul = head.find(b"\x00")
    if nul >= 0 and not codecs.lookup(encoding).name.startswith(("utf-16", "utf-32")):
        raise UserError(f"{path} is not a text file (binary data at byte {nul})")


def _bad_byte_offset(path: str, encoding: str) -> tuple[int, str]:
    """Byte offset (in the decompressed stream) of the first sequence `encoding` cannot decode, and why."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset = 0
    with _open_binary(path) as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            pending = len(decoder.getstate()[0])
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as e:
                return offset - pending + e.start, e.reason
            offset += len(chunk)
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            return offset - len(decoder.getstate()[0]) + e.start, e.reason
    return offset, "unknown"  # pragma: no cover - decoding failed on the fast path but not here


class _Text:
    """Open a local file as text; report undecodable bytes with their offset, and gzip damage, as UserError."""

    def __init__(self, path: str, opts: ReadOptions) -> None:
        self.path = path
        self.opts = opts

    def __enter__(self) -> IO[str]:
        encoding = self.opts.encoding
        _check_text_start(self.path, encoding)
        # utf-8-sig drops a leading byte-order mark (GLUE's MRPC dev.tsv has one); newline="" keeps quoted
        # line breaks in CSV fields as they are, and still splits lines on \n, \r\n and \r
        encoding = "utf-8-sig" if _is_utf8(encoding) else encoding
        raw = _open_binary(self.path)
        self.text = io.TextIOWrapper(raw, encoding=encoding, errors=self.opts.encoding_errors, newline="")
        return self.text

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.text.close()
        if exc_type is UnicodeDecodeError:
            offset, reason = _bad_byte_offset(self.path, self.opts.encoding)
            name = "UTF-8" if _is_utf8(self.opts.encoding) else self.opts.encoding
            raise UserError(
                f"{self.path} is not valid {name} at byte offset {offset} ({reason}); give its encoding "
                "(e.g. encoding: latin-1), or use encoding_errors: replace to replace bad bytes"
            ) from None
        if exc_type is not None and issubclass(exc_type, _GZIP_ERRORS):
            raise UserError(f"{self.path} is a damaged gzip file ({exc})") from None
        return False


def _batched(items: Iterable[Any]) -> Iterator[list[Any]]:
    it = iter(items)
    while batch := list(itertools.islice(it, BATCH)):
        yield batch


def _text_batches(texts: Iterable[str]) -> Iterator[list[str]]:
    """Batches of at most BATCH texts and about BATCH_CHARS characters (a batch always has one text)."""
    batch: list[str] = []
    chars = 0
    for text in texts:
        batch.append(text)
        chars += len(text)
        if len(batch) >= BATCH or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _getter(keys: Sequence[Any]) -> Callable[[Any], Any]:
    """Picks `keys` out of a row: one value for one key, else a tuple (as `operator.itemgetter`)."""
    return operator.itemgetter(*keys)


def bounded_lines(f: IO[str], limit: int | None, where: str = "") -> Iterator[str]:
    """The lines of `f`; with `limit`, a longer line comes in pieces of at most `limit` characters cut at
    whitespace (`split_document`: the last two of a line of about equal size, so no scrap is left), and one
    warning names the first such line of `where`. At most 1.5 x `limit` characters are held at once."""
    if limit is None:
        yield from f
        return
    held, line, long_lines, step = "", 1, [], max(1, limit // 2)
    while chunk := f.readline(step):
        ends = chunk.endswith("\n") or len(chunk) < step
        if not held and ends:
            yield chunk
            line += 1
            continue
        text = held + chunk  # at most 1.5 x limit
        if len(text) > limit and (not long_lines or long_lines[-1] != line):
            long_lines.append(line)
        if ends:  # the end of the line
            yield from split_document(text, limit)
            held, line = "", line + 1
        elif len(text) <= limit:
            held = text
        else:  # give out a head, so that at most `limit` stay held
            low = len(text) - limit
            cut = max(text.rfind(" ", low, limit), text.rfind("\n", low, limit)) + 1 or limit
            yield text[:cut]
            held = text[cut:]
    if held:
        yield from split_document(held, limit)
    if long_lines:
        print(f"warning: {where or 'text'}: {len(long_lines)} line(s) longer than {limit:,} characters, the first "
              f"at line {long_lines[0]}, read in pieces cut at spaces (max_document_chars)", file=sys.stderr)  # fmt: skip


def _txt_documents(
    f: IO[str], txt_mode: str, max_line_chars: int | None = None, where: str = ""
) -> Iterator[str]:
    """The non-empty lines, or the blank-line-separated paragraphs, of a text file, stripped (a line over
    `max_line_chars` in pieces)."""
    lines = bounded_lines(f, max_line_chars, where)
    if txt_mode == "line":
        for line in lines:
            line = line.strip()
            if line:
                yield line
        return
    para: list[str] = []
    for line in lines:
        line = line.rstrip()
        if line.strip():
            para.append(line)
        elif para:
            yield "\n".join(para).strip()
            para = []
    if para:
        yield "\n".join(para).strip()


# --- columns ------------------------------------------------------------------------------------------------


def _column_index(where: str, names: Sequence[str], columns: Sequence[str]) -> list[int]:
    """Where each of `columns` is among `names`; a missing or repeated one is a UserError naming `where`."""
    for c in columns:
        count = list(names).count(c)
        if count == 0:
            found = ", ".join(str(n) for n in names) or "(none)"
            raise UserError(f"{where} has no column '{c}'; columns found: {found}")
        if count > 1:
            raise UserError(
                f"{where}: the header names column '{c}' {count} times, so which one to read is unclear; "
                "rename the others"
            )
    return [list(names).index(c) for c in columns]


# --- JSON ---------------------------------------------------------------------------------------------------


def _json_records(f: IO[str], path: str, suffix: str) -> Iterator[tuple[str, int, Any]]:
    """("line" or "item", number, value) of each record: JSON lines streamed, or one JSON document read whole.

    A document is a file whose first non-blank line opens a list, or a `.json` file whose first line is not
    a JSON value by itself (pretty-printed) or is its only line."""
    head: list[str] = []  # the raw lines read so far
    content: list[str] = []  # the non-blank ones
    for line in f:
        head.append(line)
        if line.strip():
            content.append(line)
            if suffix == ".jsonl" or content[0].lstrip().startswith("[") or len(content) == 2:
                break
    if not content:
        return
    first = content[0]
    if first.lstrip().startswith("[") or (suffix == ".json" and (len(content) == 1 or not _parses(first))):
        yield from _json_document("".join(head) + f.read(), path)
        return
    for n, line in enumerate(itertools.chain(head, f), 1):
        if line.strip():
            try:
                yield "line", n, json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(
                    f"{path} line {n} is not valid JSON ({e.msg}); expected JSON lines or a JSON list"
                ) from None


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _json_document(text: str, path: str) -> Iterator[tuple[str, int, Any]]:
    """The items of one JSON document: a list, an object of equal-length column lists, or one object."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from None
    if isinstance(data, dict) and data and all(isinstance(v, list) for v in data.values()):
        lists = list(data.values())
        if len(lists) == 1 and lists[0] and isinstance(lists[0][0], dict):  # {"data": [{...}, ...]}
            data = lists[0]
        elif len({len(v) for v in lists}) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in data.items())
            raise UserError(f"{path}: the column lists have different lengths ({sizes})")
        else:  # columns: {"text": [...], "label": [...]}
            data = [dict(zip(data, values)) for values in zip(*lists)]
    elif not isinstance(data, list):
        data = [data]
    for n, item in enumerate(data, 1):
        yield "item", n, item


def _json_rows(f: IO[str], path: str, suffix: str, columns: Sequence[str]) -> Iterator[Any]:
    """The values of `columns` in each JSON record (see `_getter`); every record must be an object holding
    all of them."""
    get = _getter(columns)
    for unit, n, record in _json_records(f, path, suffix):
        if not isinstance(record, dict):
            raise UserError(
                f"{path} {unit} {n} is not a JSON object (got {type(record).__name__}); "
                "expected JSON lines or a list of objects"
            )
        try:
            yield get(record)
        except KeyError:
            _column_index(f"{path} ({unit} {n})" if n > 1 else path, list(record), columns)
            raise  # pragma: no cover - _column_index raised


# --- delimited files (CSV, TSV, ...) ------------------------------------------------------------------------


class _LineFeed:
    """The lines of a text file for `csv.reader`, numbered; a bad record's lines after its first can be read
    again, so that a quote left open costs one line, not the rows it swallowed."""

    def __init__(self, f: IO[str]) -> None:
        self._lines = iter(f)
        self._again: list[str] = []  # lines to read again, the next one last
        self.lines: list[str] = []  # the lines of the record being read
        self.first, self.last = 1, 0  # its first line's number, and the last line's given out

    def __iter__(self) -> _LineFeed:
        return self

    def __next__(self) -> str:
        line = self._again.pop() if self._again else next(self._lines)
        self.last += 1
        self.lines.append(line)
        return line

    def start_record(self) -> None:
        self.lines = []
        self.first = self.last + 1

    def read_again(self) -> None:
        """Give out the current record's lines after its first again."""
        self._again.extend(reversed(self.lines[1:]))
        self.last = self.first


# one RFC 4180 record: fields quoted (quotes inside doubled) or holding no quote, comma or line break
_CSV_FIELD = r'(?:"(?:[^"]|"")*"|[^"\r\n,]*)'
_CSV_RECORD = re.compile(rf"{_CSV_FIELD}(?:,{_CSV_FIELD})*(?:\r\n|\n|\r)?")


def _csv_records(
    lines: Iterable[str], feed: _LineFeed | None
) -> Iterator[tuple[int, int, list[str] | None, str]]:
    """(first line, last line, fields or None, problem) of each record of a quoted CSV, read strictly.

    `feed`: the `_LineFeed` that `lines` is, when bad records are to be read again (else lines are counted
    by the reader, which reads the file at C speed). A record over several lines must be valid CSV as a
    whole: a quote left open that a later row's quote happens to close would otherwise merge those rows
    into one, leaving a stray quote in an unquoted field."""
    csv.field_size_limit(2**31 - 1)
    reading, raw = (lines, None) if feed is not None else itertools.tee(lines)
    reader = csv.reader(reading, strict=True)
    last = 0
    while True:
        if feed is not None:
            feed.start_record()
        try:
            fields, problem = next(reader), ""
        except StopIteration:
            return
        except csv.Error as e:
            fields, problem = None, f"not valid CSV: {e}"
        first, last = (feed.first, feed.last) if feed is not None else (last + 1, reader.line_num)
        if last == first:
            if raw is not None:
                next(raw)  # keep `raw` in step with the reader
        elif not _valid_record(feed.lines if feed is not None else itertools.islice(raw, last - first + 1)):
            fields, problem = None, problem or "not valid CSV: a quote inside an unquoted field"
        yield first, last, fields, problem


def _valid_record(lines: Iterable[str]) -> bool:
    """Whether the lines of a record spanning several are one valid CSV record together."""
    return _CSV_RECORD.fullmatch("".join(lines)) is not None


def _split_records(f: IO[str], delimiter: str) -> Iterator[tuple[int, int, list[str] | None, str]]:
    """(line, line, fields, "") of each line split on `delimiter`, with no quoting."""
    for n, line in enumerate(f, 1):
        yield n, n, line.rstrip("\r\n").split(delimiter), ""


class _BadLines:
    """Bad lines of one file: the first refused (`on_bad_lines: error`), or all counted and skipped."""

    def __init__(self, path: str, mode: str) -> None:
        self.path, self.mode = path, mode
        self.count, self.first = 0, 0

    def add(self, first: int, last: int, problem: str) -> None:
        if last > first:
            problem = (
                f"a quoted field opened here runs on to line {last} ({problem}); is a closing quote missing?"
            )
        if self.mode == "error":
            raise UserError(f"{self.path} line {first}: {problem} (on_bad_lines: skip drops bad lines)")
        self.count += 1
        self.first = self.first or first

    def warn(self) -> None:
        if self.count:
            print(
                f"warning: {self.path}: skipped {self.count} bad line(s), the first at line {self.first} "
                "(on_bad_lines: skip)",
                file=sys.stderr,
            )


def _delimited_rows(
    f: IO[str], path: str, delimiter: str, columns: Sequence[str], opts: ReadOptions
) -> Iterator[Any]:
    """The values of `columns` (see `_getter`, not yet stripped) in each row of a delimited file, with CSV
    quoting when `delimiter` is a comma."""
    feed = _LineFeed(f) if delimiter == "," and opts.on_bad_lines == "skip" else None
    records = _csv_records(feed or f, feed) if delimiter == "," else _split_records(f, delimiter)
    header = list(opts.column_names) if opts.column_names else None
    get = _getter(_column_index(path, header, columns)) if header else None
    bad = _BadLines(path, opts.on_bad_lines)
    for first, last, fields, problem in records:
        if fields is not None and _blank(fields):
            continue
        if header is None:
            if fields is None:
                raise UserError(f"{path} line {first}: {problem}")
            header = [c.strip() for c in fields]
            get = _getter(_column_index(path, header, columns))
            continue
        if fields is not None and len(fields) != len(header):
            fields, problem = _fit(fields, header, delimiter)
        if problem:
            bad.add(first, last, problem)
            if feed is not None:
                feed.read_again()
            continue
        yield get(fields)
    bad.warn()


def _blank(fields: list[str]) -> bool:
    text = "".join(fields)
    return not text or text.isspace()


def _fit(fields: list[str], header: list[str], delimiter: str) -> tuple[list[str], str]:
    """Fields that do not match the header: the last column takes the rest when there is no quoting;
    otherwise, or when too few, the problem."""
    n = len(header)
    if delimiter != "," and len(fields) > n:
        return fields[: n - 1] + [delimiter.join(fields[n - 1 :])], ""
    problem = f"{len(fields)} field(s), expected {n} ({', '.join(header)}); check delimiter / column_names"
    return fields, problem


# --- Parquet ------------------------------------------------------------------------------------------------


def _parquet_batches(path: str, columns: Sequence[str]) -> Iterator[dict[str, list]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        if path.lower().endswith(".gz"):
            with gzip.open(path, "rb") as g:
                pf = pq.ParquetFile(pa.BufferReader(g.read()))  # parquet needs random access
        else:
            pf = pq.ParquetFile(path)
    except (pa.ArrowException, OSError, *_GZIP_ERRORS) as e:
        raise UserError(f"{path} is not a valid Parquet file ({e})") from None
    _column_index(path, pf.schema_arrow.names, columns)
    for batch in pf.iter_batches(batch_size=BATCH, columns=list(dict.fromkeys(columns))):
        yield {c: batch.column(c).to_pylist() for c in columns}


# --- one local file -----------------------------------------------------------------------------------------


def iter_columns(
    path: str, columns: Sequence[str], opts: ReadOptions | None = None
) -> Iterator[dict[str, list]]:
    """Batches `{column: values}` of a local CSV/TSV/delimited, JSON or Parquet file (optionally .gz), in order.

    Values are as stored: strings from delimited files (stripped), any JSON value, Parquet's Python values."""
    opts = opts or ReadOptions()
    suffix = _format_suffix(path)
    delimiter = opts.delimiter or {".csv": ",", ".tsv": "\t"}.get(suffix or "")
    if delimiter is None and suffix == ".parquet":
        yield from _parquet_batches(path, columns)
        return
    if delimiter is None and suffix not in (".json", ".jsonl"):
        extension = os.path.splitext(path.lower().removesuffix(".gz"))[1] or "(none)"
        raise UserError(
            f"{path}: cannot tell the format from the extension '{extension}'; use .csv, .tsv, .jsonl, "
            ".json or .parquet, or give delimiter (and column_names if there is no header)"
        )
    with _Text(path, opts) as f:
        if delimiter:
            rows = _delimited_rows(f, path, delimiter, columns, opts)
        else:
            rows = _json_rows(f, path, suffix, columns)
        for batch in _batched(rows):
            values = [batch] if len(columns) == 1 else [list(v) for v in zip(*batch)]
            if delimiter:
                values = [[v.strip() for v in column] for column in values]
            yield dict(zip(columns, values))


# --- Hub, saved and built-in datasets -----------------------------------------------------------------------


def load_hub(source: Source):  # -> datasets.Dataset
    """The split of a Hub dataset that `source` names; any failure is a UserError naming it."""
    import datasets

    if source.split is None:
        raise UserError(f"{source.spec}: name a split, e.g. {source.spec}@train")
    try:
        ds = datasets.load_dataset(source.name, source.config, split=source.split)
    except Exception as e:  # offline, unknown name, bad config/split: all end here
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"could not load Hub dataset '{source.name}' ({source.spec}): {reason}") from None
    if not isinstance(ds, datasets.Dataset):
        raise UserError(f"{source.spec}: expected a regular (not streaming) dataset split")
    return ds


def _pick_split(dd, split: str | None, where: str):  # DatasetDict -> Dataset
    if split is None or split not in dd:
        what = "name a split" if split is None else f"no split '{split}'"
        raise UserError(f"{where}: {what}; splits: {', '.join(dd)} (write {where}@SPLIT)")
    return dd[split]


def _load_saved(source: Source):  # -> datasets.Dataset
    import datasets

    try:
        ds = datasets.load_from_disk(source.name)
    except (FileNotFoundError, ValueError) as e:
        raise UserError(f"{source.name} is a folder but not a saved dataset ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        return _pick_split(ds, source.split, source.name)
    return ds


def _load_dataset(source: Source):  # -> datasets.Dataset
    """The dataset a "builtin", "hf" or "saved" source names."""
    if source.kind == "builtin":
        from data_prep import builtin

        return _pick_split(builtin.pydocs_task(), source.split, f"builtin:{source.name}")
    if source.kind == "hf":
        return load_hub(source)
    return _load_saved(source)


def _dataset_columns(ds, columns: Sequence[str], where: str) -> dict[str, list]:
    """The values of `columns` of a `datasets.Dataset`; class-label ids become their names."""
    import datasets

    _column_index(where, ds.column_names, columns)
    out = {}
    for c in columns:
        values = list(ds[c])
        feature = ds.features[c]
        if isinstance(feature, datasets.ClassLabel):
            values = [feature.names[int(v)] if v is not None and int(v) >= 0 else None for v in values]
        out[c] = values
    return out


# --- what callers read --------------------------------------------------------------------------------------


def _texts(values: list, where: str, field: str, row: int) -> list[str]:
    """The non-blank strings of a column batch; a value that is neither text nor null is an error."""
    texts = []
    for i, v in enumerate(values):
        if isinstance(v, str):
            if v and not v.isspace():
                texts.append(v)
        elif v is not None:
            raise UserError(
                f"{where}: column '{field}' holds {type(v).__name__} (row {row + i + 1}), not text"
            )
    return texts


def _column_batches(source: Source, field: str, opts: ReadOptions) -> Iterator[list]:
    """Batches of the values of column `field` of a Hub dataset or a local (non-.txt) file."""
    if source.kind == "hf":
        ds = load_hub(source)
        _column_index(source.spec, ds.column_names, [field])
        for batch in ds.select_columns([field]).iter(batch_size=BATCH):
            yield batch[field]
    else:
        for batch in iter_columns(source.name, [field], opts):
            yield batch[field]


def iter_texts(source: Source, field: str = "text", opts: ReadOptions | None = None) -> Iterator[list[str]]:
    """Batches of the non-blank texts of one corpus source: a .txt file's documents, else column `field`."""
    opts = opts or ReadOptions()
    if source.kind == "builtin":
        if source.split:
            raise UserError(f"{source.spec}: the built-in corpus has no splits; write builtin:{source.name}")
        from data_prep import builtin

        yield from _batched(builtin.pydocs_corpus())
        return
    if source.kind == "file" and source.suffix == ".txt" and opts.delimiter is None:
        with _Text(source.name, opts) as f:
            yield from _text_batches(_txt_documents(f, opts.txt_mode, opts.max_line_chars, source.name))
        return
    where = source.spec if source.kind == "hf" else source.name
    row = 0
    for values in _column_batches(source, field, opts):
        texts = _texts(values, where, field, row)
        row += len(values)
        if texts:
            yield texts


def _table_source(spec: str, split: str | None) -> Source:
    """A labelled-data spec as a Source; `split` applies when the spec names none."""
    if spec.startswith(("builtin:", "hf:")):
        source = parse_spec(spec, hub_split=split)
        return dataclasses.replace(source, split=source.split or split)
    path = Path(os.path.expanduser(spec))
    if path.exists():
        return Source("saved" if path.is_dir() else "file", str(path), spec, split=split)
    name, at, spec_split = spec.rpartition("@")
    if at and Path(os.path.expanduser(name)).is_dir():
        return Source("saved", str(Path(os.path.expanduser(name))), spec, split=spec_split or split)
    raise UserError(f"data file not found: {spec}")


def read_columns(
    spec: str, columns: Sequence[str], opts: ReadOptions | None = None, split: str | None = None
) -> tuple[dict[str, list], str]:
    """Every row's values of `columns` from one table spec, and the name to report it by.

    Specs: a local file, a `save_to_disk` folder (`PATH@SPLIT`), `hf:NAME[:CONFIG]@SPLIT` or
    `builtin:pydocs@SPLIT`; `split` is used when the spec names none. Class-label ids come back as names."""
    opts = opts or ReadOptions()
    columns = list(dict.fromkeys(columns))
    source = _table_source(spec, split)
    if source.kind != "file":
        where = source.name if source.kind == "saved" else spec
        return _dataset_columns(_load_dataset(source), columns, where), where
    data: dict[str, list] = {c: [] for c in columns}
    for batch in iter_columns(source.name, columns, opts):
        for c in columns:
            data[c] += batch[c]
    return data, source.name

"""A corpus as text: stream its specs (files, folders, globs, `hf:NAME`, `builtin:pydocs`) as batches of
texts, or read them into a `datasets.Dataset` with one `text` column.

Reading each source (formats, specs, errors) is `data_prep.read`. `load_corpus` writes the batches straight
to one Arrow file with `ArrowWriter.write_batch` (bounded memory, ~20x faster than
`Dataset.from_generator`'s example-by-example writer); the result is memory-mapped from disk, so a corpus
larger than memory works. The Arrow file is named by a fingerprint of the inputs (paths, sizes, mtimes,
options), so loading the same corpus twice reuses it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

from data_prep.errors import UserError
from data_prep.read import (
    ENCODING_ERRORS,
    TXT_MODES,
    ReadOptions,
    corpus_fingerprint,
    iter_texts,
    resolve_specs,
)

__all__ = [
    "ENCODING_ERRORS",
    "TXT_MODES",
    "corpus_fingerprint",
    "iter_corpus",
    "load_corpus",
    "resolve_specs",
]


def corpus_options(
    text_field: str, txt_mode: str, encoding_errors: str, encoding: str = "utf-8", on_bad_lines: str = "error"
) -> ReadOptions:
    """The reading options of a corpus, checked (a bad value is a UserError naming it)."""
    if not text_field:
        raise UserError("text_field must not be empty")
    return ReadOptions(
        txt_mode=txt_mode, encoding=encoding, encoding_errors=encoding_errors, on_bad_lines=on_bad_lines
    )


def iter_corpus(
    specs: str | list[str],
    text_field: str = "text",
    txt_mode: str = "line",
    encoding_errors: str = "strict",
    hub_config: str | None = None,
    hub_split: str = "train",
    *,
    encoding: str = "utf-8",
    on_bad_lines: str = "error",
) -> Iterator[list[str]]:
    """Stream the corpus as batches of texts (no Arrow file written)."""
    opts = corpus_options(text_field, txt_mode, encoding_errors, encoding, on_bad_lines)
    for source in resolve_specs(specs, hub_config, hub_split):
        yield from iter_texts(source, text_field, opts)


def load_corpus(
    specs: str | list[str],
    text_field: str = "text",
    txt_mode: str = "line",
    encoding_errors: str = "strict",
    hub_config: str | None = None,
    hub_split: str = "train",
    cache_dir: str | os.PathLike | None = None,
    *,
    encoding: str = "utf-8",
    on_bad_lines: str = "error",
):  # -> datasets.Dataset
    """Read every spec in order into one `datasets.Dataset` with a single string column `text`.

    `txt_mode`: "line" (each non-empty line of a .txt is a document) or "paragraph" (blank lines separate
    documents). `text_field` is the column read from JSON/CSV/TSV/Parquet/Hub data. Empty texts are skipped.
    `cache_dir` holds the Arrow file (default: the `datasets` cache).
    """
    import datasets
    from datasets.arrow_writer import ArrowWriter

    opts = corpus_options(text_field, txt_mode, encoding_errors, encoding, on_bad_lines)
    sources = resolve_specs(specs, hub_config, hub_split)
    fp = corpus_fingerprint(sources, text_field=text_field, **dataclasses.asdict(opts))
    root = (
        Path(cache_dir) if cache_dir is not None else Path(datasets.config.HF_DATASETS_CACHE) / "mlm_corpus"
    )
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"corpus-{fp}.arrow"
    if not final.exists():
        tmp = root / f".corpus-{fp}.{os.getpid()}.tmp"
        features = datasets.Features({"text": datasets.Value("string")})
        try:
            with ArrowWriter(path=str(tmp), features=features) as writer:
                for source in sources:
                    for batch in iter_texts(source, text_field, opts):
                        writer.write_batch({"text": batch})
                writer.finalize()
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                tmp.unlink()
    return datasets.Dataset.from_file(str(final))

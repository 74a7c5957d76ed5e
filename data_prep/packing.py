"""Step 3, `pack`: tokenize prepared documents and pack them into fixed-length blocks for MLM pretraining.

Each block is `[CLS] tokens... [SEP]` of exactly `max_seq_length` ids. Documents are concatenated with a
`[SEP]` after each one; what does not fit in a block carries over to the next (across tokenizer batches too),
so no token is dropped. A block that would end inside a word ends before that word instead (when it stays
at least half full; the rest of the block is then `[PAD]`), so whole-word masking sees whole words. Only the
last block of a split (of each shard, with `num_proc`) is otherwise padded.

Columns: `input_ids` (int32) and `word_start` (int8: 1 on the first token of each word, on every special
token, and on the first content token of a block; 0 on continuation pieces and padding).
Tokenization calls the Rust backend's batch encoder directly, in a thread that encodes the next batch while
this one is packed (numpy on whole batches); the prepared text is read as an Arrow stream, and the blocks are
written once, straight into the folder layout `datasets.load_from_disk` reads.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data_prep.arrow_files import (
    iter_text_batches,
    load_saved,
    shard_name,
    write_dataset_dict,
    write_split_metadata,
)
from data_prep.errors import UserError
from data_prep.io import write_json
from data_prep.outputs import output_folder
from data_prep.progress import bar
from data_prep.steps import file_fingerprint, folder_fingerprint, write_step_metadata
from data_prep.text import BATCH_CHARS
from data_prep.tokenizer import tokenizer_fingerprint

STEP = "pack"
MIN_SEQ_LENGTH = 8


@dataclass
class PackConfig:
    """Which prepared data and tokenizer to pack with, and how long the blocks are."""

    # folder written by `prepare` (a DatasetDict with a `text` column)
    data_dir: str = field(metadata={"help": "prepared folder (DatasetDict with a text column)"})
    # folder written by `train-tokenizer` (or any fast tokenizer folder with [CLS]/[SEP]/[PAD])
    tokenizer_dir: str = field(metadata={"help": "tokenizer folder (AutoTokenizer loads it)"})
    # folder to write (DatasetDict of blocks, stats.json, mlm_step.json)
    output_dir: str = field(metadata={"help": "output folder (DatasetDict of packed blocks)"})
    # tokens per block, [CLS] and [SEP] included
    max_seq_length: int = field(default=128, metadata={"help": "tokens per block, [CLS] and [SEP] included"})
    # documents per tokenizer call
    batch_size: int = field(default=1000, metadata={"help": "documents per tokenizer call"})
    # processes, each packing a contiguous shard of every split (None: one process)
    num_proc: int | None = field(
        default=None, metadata={"help": "processes, each packing a shard (default: 1)"}
    )

    def validate(self) -> None:
        """Check the values (not the folders: a recipe is validated before its earlier steps ran)."""
        for name in ("data_dir", "tokenizer_dir", "output_dir"):
            if not getattr(self, name):
                raise UserError(f"pack: '{name}' is empty")
        if self.max_seq_length < MIN_SEQ_LENGTH:
            raise UserError(f"pack: max_seq_length must be >= {MIN_SEQ_LENGTH}, got {self.max_seq_length}")
        if self.batch_size < 1:
            raise UserError(f"pack: batch_size must be >= 1, got {self.batch_size}")
        if self.num_proc is not None and self.num_proc < 1:
            raise UserError(f"pack: num_proc must be >= 1, got {self.num_proc}")


def check_inputs(cfg: PackConfig) -> None:
    """The input folders exist and look like what `prepare` and `train-tokenizer` write."""
    data = Path(cfg.data_dir)
    if not data.exists():
        raise UserError(f"pack: data_dir not found: {cfg.data_dir}")
    if not (data / "dataset_dict.json").is_file():
        raise UserError(
            f"pack: data_dir {cfg.data_dir} is not a prepared folder (no dataset_dict.json); run `mlm prepare` first"
        )
    tok = Path(cfg.tokenizer_dir)
    if not tok.exists():
        raise UserError(f"pack: tokenizer_dir not found: {cfg.tokenizer_dir}")
    if not (tok / "tokenizer.json").is_file():
        raise UserError(
            f"pack: tokenizer_dir {cfg.tokenizer_dir} has no tokenizer.json; run `mlm train-tokenizer` first"
        )


@dataclass
class SpecialIds:
    """The ids the packer writes."""

    cls: int
    sep: int
    pad: int


def load_tokenizer(tokenizer_dir: str, max_seq_length: int | None = None):  # -> PreTrainedTokenizerFast
    """Load a fast tokenizer that has [CLS]/[SEP]/[PAD]; check `max_seq_length` against its limit."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    except Exception as e:  # a broken folder: transformers raises many types
        raise UserError(
            f"pack: could not load the tokenizer in {tokenizer_dir}: {str(e).splitlines()[0]}"
        ) from None
    if not getattr(tok, "is_fast", False):
        raise UserError(f"pack: the tokenizer in {tokenizer_dir} is not a fast (Rust) tokenizer")
    for name in ("cls_token_id", "sep_token_id", "pad_token_id"):
        if getattr(tok, name) is None:
            raise UserError(f"pack: the tokenizer in {tokenizer_dir} has no {name.replace('_id', '')}")
    if max_seq_length is not None and max_seq_length > tok.model_max_length:
        raise UserError(
            f"pack: max_seq_length {max_seq_length} is longer than the tokenizer's model_max_length "
            f"{tok.model_max_length} ({tokenizer_dir})"
        )
    return tok


class Packer:
    """Cut a stream of token batches into blocks; keeps the carried-over tail between batches."""

    def __init__(self, max_seq_length: int, special: SpecialIds) -> None:
        self.seq = max_seq_length
        self.room = max_seq_length - 2  # content tokens per block
        self.half = (self.room + 1) // 2  # a block shortened to keep a word whole keeps at least this many
        self.sp = special
        self.ids = np.zeros(0, np.int32)
        self.starts = np.zeros(0, np.int8)
        self.blocks = self.padding = self.split_words = 0

    def add(self, ids: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append tokens (documents each followed by [SEP]); return the full blocks they complete."""
        ids = np.concatenate([self.ids, ids]) if len(self.ids) else ids
        starts = np.concatenate([self.starts, starts]) if len(self.starts) else starts
        cuts = []
        pos, n, room, sep = 0, len(ids), self.room, self.sp.sep
        word_starts = np.flatnonzero(starts)
        while n - pos > room:  # the token after a full block exists, so we know whether a word goes on
            if ids[pos] == sep:  # a block never starts with the separator: [CLS] already marks it
                pos += 1
                continue
            end = pos + room
            if not starts[end]:  # the block would end inside a word: end before the word instead
                k = np.searchsorted(word_starts, end) - 1  # the last word start before `end`
                if k >= 0 and word_starts[k] - pos >= self.half:
                    end = int(word_starts[k])
                else:
                    self.split_words += 1
            cuts.append((pos, end))
            pos = end
        self.ids, self.starts = ids[pos:], starts[pos:]
        return self._blocks(ids, starts, cuts)

    def finish(self) -> tuple[np.ndarray, np.ndarray]:
        """The last, padded block (none when nothing is left)."""
        ids, starts = self.ids, self.starts
        a, b = 0, len(ids)
        while a < b and ids[a] == self.sp.sep:
            a += 1
        while b > a and ids[b - 1] == self.sp.sep:
            b -= 1
        self.ids, self.starts = np.zeros(0, np.int32), np.zeros(0, np.int8)
        return self._blocks(ids, starts, [(a, b)] if b > a else [])

    def _blocks(
        self, ids: np.ndarray, starts: np.ndarray, cuts: list[tuple[int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        out_ids = np.full((len(cuts), self.seq), self.sp.pad, np.int32)
        out_starts = np.zeros((len(cuts), self.seq), np.int8)
        out_ids[:, 0] = self.sp.cls
        out_starts[:, 0] = 1
        for row, (a, b) in enumerate(cuts):
            k = b - a
            out_ids[row, 1 : k + 1] = ids[a:b]
            out_starts[row, 1 : k + 1] = starts[a:b]
            out_starts[row, 1] = 1  # a piece cut off from the previous block is a word of its own here
            out_ids[row, k + 1] = self.sp.sep
            out_starts[row, k + 1] = 1
            self.padding += self.room - k
        self.blocks += len(cuts)
        return out_ids, out_starts


def continuation_table(backend) -> np.ndarray | None:
    """Per token id, 1 where the token always continues a word, for tokenizers whose ids alone tell word
    boundaries: WordPiece behind BERT's pre-tokenizer (its `##` pieces never start a word, every other piece
    does, and punctuation is split off, so no word can begin with `##`). None for other tokenizers (BPE,
    Unigram, other pre-tokenizers): their word starts come from the encoder's word ids instead."""
    spec = json.loads(backend.to_str())
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if model.get("type") != "WordPiece" or pre.get("type") != "BertPreTokenizer":
        return None
    prefix = model.get("continuing_subword_prefix") or "##"
    vocab = backend.get_vocab(with_added_tokens=True)
    added = set(backend.get_added_tokens_decoder())
    table = np.zeros(max(vocab.values()) + 1, np.int8)
    for token, i in vocab.items():
        if i not in added and token.startswith(prefix) and len(token) > len(prefix):
            table[i] = 1
    return table


def encode_batch(backend, texts: list[str], table: np.ndarray | None) -> list:
    """The Rust encoder's output for `texts`, no special tokens (runs without the GIL: a thread can do it)."""
    if table is not None and hasattr(backend, "encode_batch_fast"):
        return backend.encode_batch_fast(texts, add_special_tokens=False)  # no offsets, no word ids needed
    return backend.encode_batch(texts, add_special_tokens=False)


def documents_to_arrays(
    encodings: list, sep: int, table: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Token ids and word starts of encoded documents, each followed by [SEP]; also #documents, #tokens."""
    ids: list[int] = []
    words: list[int | None] = []
    docs = 0
    for enc in encodings:
        doc_ids = enc.ids
        if doc_ids:
            ids += doc_ids
            ids.append(sep)
            if table is None:
                words += enc.word_ids
                words.append(None)
            docs += 1
    if not ids:
        return np.zeros(0, np.int32), np.zeros(0, np.int8), 0, 0
    out = np.array(ids, dtype=np.int32)
    if table is not None:
        # [SEP] and the first piece of a document are never continuation pieces, so they start words
        starts = np.subtract(1, table[out], dtype=np.int8)
    else:
        # word ids restart in every document and are None on [SEP]/special tokens: NaN never equals anything,
        # so [SEP], special tokens and the first token after a [SEP] all start a word
        w = np.array(words, dtype=np.float64)
        starts = np.empty(len(w), np.int8)
        starts[0] = 1
        np.not_equal(w[1:], w[:-1], out=starts[1:], casting="unsafe")
    return out, starts, docs, len(ids) - docs


def encode_documents(
    backend, texts: list[str], sep: int, table: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Token ids and word starts of `texts`, each document followed by [SEP]; also #documents, #tokens."""
    return documents_to_arrays(encode_batch(backend, texts, table), sep, table)


def _features():
    import datasets

    return datasets.Features(
        {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "word_start": datasets.Sequence(datasets.Value("int8")),
        }
    )


def _table(ids: np.ndarray, starts: np.ndarray, schema):
    import pyarrow as pa

    n, seq = ids.shape
    offsets = pa.array(np.arange(0, (n + 1) * seq, seq, dtype=np.int32))
    return pa.Table.from_arrays(
        [
            pa.ListArray.from_arrays(offsets, pa.array(ids.ravel())),
            pa.ListArray.from_arrays(offsets, pa.array(starts.ravel())),
        ],
        schema=schema,
    )


def pack_shard(job: dict, progress: Callable[[int], Any] | None = None) -> dict:
    """Pack documents [start, stop) of one split into an Arrow file; return its counts.

    `job`: data_dir, split, start, stop, tokenizer_dir, max_seq_length, batch_size, path, parallel.
    `progress(n)` is called as each batch of n documents is packed.
    The Rust encoder works on the next batch (in a thread, without the GIL) while this one is packed.
    """
    from concurrent.futures import ThreadPoolExecutor

    from datasets.arrow_writer import ArrowWriter
    from tokenizers import Tokenizer

    if not job.get("parallel", True):
        os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker process
    backend = Tokenizer.from_file(str(Path(job["tokenizer_dir"]) / "tokenizer.json"))
    backend.no_truncation()
    backend.no_padding()
    table = continuation_table(backend)
    special = SpecialIds(**job["special"])
    packer = Packer(job["max_seq_length"], special)
    features = _features()
    schema = features.arrow_schema
    counts = {"documents": 0, "tokens": 0}

    with ArrowWriter(path=job["path"], features=features) as writer, ThreadPoolExecutor(1) as encoder:

        def write(encodings: list) -> None:
            ids, starts, n_docs, n_tokens = documents_to_arrays(encodings, special.sep, table)
            if progress is not None:
                progress(len(encodings))
            counts["documents"] += n_docs
            counts["tokens"] += n_tokens
            if len(ids):
                block_ids, block_starts = packer.add(ids, starts)
                if len(block_ids):
                    writer.write_table(_table(block_ids, block_starts, schema))

        pending = None
        split_dir = Path(job["data_dir"]) / job["split"]
        batches = iter_text_batches(
            split_dir, job["start"], job["stop"], job["batch_size"], max_bytes=BATCH_CHARS
        )
        for texts in batches:
            following = encoder.submit(encode_batch, backend, texts, table)
            if pending is not None:
                write(pending.result())
            pending = following
        if pending is not None:
            write(pending.result())
        block_ids, block_starts = packer.finish()
        if len(block_ids):
            writer.write_table(_table(block_ids, block_starts, schema))
        writer.finalize()
    counts.update(
        blocks=packer.blocks, padding_tokens=packer.padding, words_split_across_blocks=packer.split_words
    )
    return counts


def _pack_indexed(item: tuple[int, dict]) -> tuple[int, dict]:
    return item[0], pack_shard(item[1])


def _run_jobs(jobs: list[dict], procs: int, documents: int) -> list[dict]:
    """Each job's counts, in job order: in this process, or in `procs` worker processes (the bar then moves
    as each shard ends)."""
    with bar(total=documents, desc="pack", unit="doc", unit_scale=True) as progress:
        if procs <= 1:
            return [pack_shard(job, progress.update) for job in jobs]
        results: list[dict] = [{} for _ in jobs]
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        with multiprocessing.get_context(method).Pool(procs) as pool:
            for i, counts in pool.imap_unordered(_pack_indexed, enumerate(jobs)):
                results[i] = counts
                progress.update(jobs[i]["stop"] - jobs[i]["start"])
        return results


def _check_blocks(cfg: PackConfig, rows: dict[str, int], per_split: dict[str, dict]) -> None:
    """A UserError when the train split, or another split that has documents, gives no block: an empty
    training set, or a validation set that pretraining would silently not evaluate on."""
    for split, n in rows.items():
        if per_split[split]["blocks"] == 0 and (n or split == "train"):
            use = "; pretraining could not evaluate on it" if split != "train" else ""
            raise UserError(
                f"pack: split '{split}' of {cfg.data_dir} gives 0 blocks: its {n} document(s) have no tokens "
                f"with the tokenizer in {cfg.tokenizer_dir} (empty once normalised: only control, zero-width "
                f"or format characters?){use}"
            )


def pack(cfg: PackConfig) -> dict:
    """Tokenize and pack every split of `cfg.data_dir`; write `cfg.output_dir`; return the stats."""
    import datasets

    cfg.validate()
    check_inputs(cfg)
    start = time.time()
    tok = load_tokenizer(cfg.tokenizer_dir, cfg.max_seq_length)
    special = {"cls": tok.cls_token_id, "sep": tok.sep_token_id, "pad": tok.pad_token_id}
    data = load_saved(cfg.data_dir)
    if not isinstance(data, datasets.DatasetDict):
        data = datasets.DatasetDict({"train": data})
    for split, ds in data.items():
        if "text" not in ds.column_names:
            raise UserError(
                f"pack: data_dir {cfg.data_dir} split '{split}' has no column 'text'; columns found: {', '.join(ds.column_names)}"
            )
    procs = cfg.num_proc or 1
    data_dir, tokenizer_dir = str(Path(cfg.data_dir).resolve()), str(Path(cfg.tokenizer_dir).resolve())
    stats: dict = {"max_seq_length": cfg.max_seq_length, "vocab_size": len(tok)}
    per_split: dict[str, dict] = {}
    paths = {"data_dir": cfg.data_dir, "tokenizer_dir": cfg.tokenizer_dir}
    with output_folder(cfg.output_dir, STEP, paths) as tmp:
        jobs = []
        for split, ds in data.items():
            n = len(ds)
            shards = max(1, min(procs, n))
            bounds = np.linspace(0, n, shards + 1).astype(int)
            (tmp / split).mkdir()
            for i in range(shards):
                jobs.append(
                    {
                        "data_dir": data_dir,
                        "split": split,
                        "start": int(bounds[i]),
                        "stop": int(bounds[i + 1]),
                        "tokenizer_dir": tokenizer_dir,
                        "special": special,
                        "max_seq_length": cfg.max_seq_length,
                        "batch_size": cfg.batch_size,
                        "path": str(tmp / split / shard_name(i, shards)),
                    }
                )
        in_workers = procs > 1 and len(jobs) > 1
        for job in jobs:
            job["parallel"] = not in_workers  # workers tokenize on one thread each
        results = _run_jobs(jobs, procs if in_workers else 1, sum(len(ds) for ds in data.values()))
        for split in data:
            mine = [(j, r) for j, r in zip(jobs, results) if j["split"] == split]
            per_split[split] = {k: sum(r[k] for _, r in mine) for k in mine[0][1]}
            write_split_metadata(tmp / split, len(mine), _features())
        _check_blocks(cfg, {split: len(ds) for split, ds in data.items()}, per_split)
        write_dataset_dict(tmp, list(data))
        for key in ("blocks", "documents", "tokens", "padding_tokens", "words_split_across_blocks"):
            stats[key] = {split: s[key] for split, s in per_split.items()}
        seconds = time.time() - start
        total_tokens = sum(stats["tokens"].values())
        stats["seconds"] = round(seconds, 2)
        stats["tokens_per_second"] = round(total_tokens / max(seconds, 1e-9))
        write_json(tmp / "stats.json", stats)
        config = asdict(cfg) | {"data_dir": data_dir, "tokenizer_dir": tokenizer_dir}
        inputs = {
            "data_dir": folder_fingerprint(data_dir),
            "tokenizer_dir": tokenizer_dir,
            "tokenizer": file_fingerprint(Path(tokenizer_dir) / "tokenizer.json", hash_content=True),
            "max_seq_length": cfg.max_seq_length,
            "vocab_size": len(tok),
            "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer_dir),
        }
        write_step_metadata(tmp, STEP, config, inputs)
    summary = ", ".join(f"{s} {v['blocks']:,} blocks" for s, v in per_split.items())
    print(
        f"pack: {sum(stats['documents'].values()):,} documents, {total_tokens:,} tokens -> {summary} "
        f"of {cfg.max_seq_length} tokens ({seconds:.1f}s) -> {cfg.output_dir}"
    )
    return stats

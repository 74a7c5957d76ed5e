"""Step 2, `train-tokenizer`: train a WordPiece, BPE or Unigram tokenizer with BERT special tokens.

The folder it writes loads with `transformers.AutoTokenizer.from_pretrained`, in transformers 4 as in 5
(`save_tokenizer`: `BertTokenizerFast` for WordPiece, `PreTrainedTokenizerFast` for BPE and Unigram):
`[CLS] a [SEP]`, `[CLS] a [SEP] b [SEP]` with token_type_ids, offsets and word ids. Special tokens have fixed ids
`[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4`; the vocabulary size is a multiple of 64 (padded with `[unusedN]`).
Kinds: "wordpiece" (BERT: BertNormalizer + BertPreTokenizer), "bpe" (byte-level, like RoBERTa/GPT-2: never
produces [UNK]; offsets trimmed of the leading space), "unigram" (SentencePiece-style with Metaspace).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from data_prep.arrow_files import iter_text_batches, load_saved
from data_prep.errors import CorruptFileError, UserError
from data_prep.io import read_json, write_json
from data_prep.outputs import output_folder
from data_prep.progress import bar
from data_prep.sources import corpus_options, iter_corpus
from data_prep.steps import folder_fingerprint, write_step_metadata
from data_prep.text import BATCH_CHARS, DEFAULT_MAX_DOCUMENT_CHARS, char_bounded, split_document

STEP = "tokenizer"
KINDS = ("wordpiece", "bpe", "unigram")
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, in this order
VOCAB_MULTIPLE = 64
_BATCH = 1000  # texts per batch fed to the trainer


@dataclass
class TokenizerConfig:
    """What to train the tokenizer on, and which tokenizer to train."""

    # folder to write (loads with AutoTokenizer.from_pretrained)
    output_dir: str = field(metadata={"help": "output folder (loads with AutoTokenizer.from_pretrained)"})
    # a folder written by `prepare` (its train split is used); give this or `corpus`
    data_dir: str | None = field(
        default=None, metadata={"help": "prepared folder (its train split); or give corpus"}
    )
    # corpus specs read directly (files, folders, globs, hf:NAME, builtin:pydocs); give this or `data_dir`
    corpus: list[str] = field(default_factory=list, metadata={"help": "corpus specs, instead of data_dir"})
    # column holding the text when reading `corpus`
    text_field: str = field(default="text", metadata={"help": "column holding the text when reading corpus"})
    # how .txt files split into documents when reading `corpus`
    txt_mode: str = field(default="line", metadata={"help": "txt files in corpus: 'line' or 'paragraph'"})
    # bad UTF-8 in `corpus` files: 'strict' (fail) or 'replace'
    encoding_errors: str = field(
        default="strict", metadata={"help": "bad UTF-8 in corpus: 'strict' or 'replace'"}
    )
    # the encoding of `corpus` files
    encoding: str = field(default="utf-8", metadata={"help": "encoding of corpus files (e.g. latin-1)"})
    # malformed CSV/TSV rows in `corpus`: refuse the file, or skip them with a warning
    on_bad_lines: str = field(
        default="error", metadata={"help": "malformed CSV/TSV rows in corpus: 'error' or 'skip'"}
    )
    # tokenizer model: wordpiece (BERT), bpe (byte-level) or unigram (SentencePiece-like)
    kind: str = field(default="wordpiece", metadata={"help": "tokenizer model: wordpiece, bpe or unigram"})
    # target vocabulary size, rounded up to a multiple of 64 (a small corpus may give fewer tokens)
    vocab_size: int = field(
        default=30522, metadata={"help": "vocabulary size, rounded up to a multiple of 64"}
    )
    # lowercase the text before tokenizing
    lowercase: bool = field(default=True, metadata={"help": "lowercase the text"})
    # strip accents (None: strip when lowercasing, as BERT uncased does)
    strip_accents: bool | None = field(
        default=None, metadata={"help": "strip accents (default: same as lowercase)"}
    )
    # a piece must occur this often to enter the vocabulary (wordpiece and bpe)
    min_frequency: int = field(
        default=2, metadata={"help": "minimum count of a merged piece (wordpiece, bpe)"}
    )
    # stop feeding the trainer after this many UTF-8 bytes of text (documents read in order)
    max_train_bytes: int = field(
        default=1_000_000_000, metadata={"help": "cap on UTF-8 bytes of text to train on"}
    )
    # longest input the tokenizer accepts (model_max_length)
    model_max_length: int = field(default=512, metadata={"help": "model_max_length saved with the tokenizer"})

    def validate(self) -> None:
        """Check and normalise the values (not the folders: a recipe is validated before earlier steps ran)."""
        if isinstance(self.corpus, str):
            self.corpus = [self.corpus]
        self.corpus = [str(c).strip() for c in (self.corpus or []) if str(c).strip()]
        if not self.output_dir:
            raise UserError("tokenizer: 'output_dir' is empty")
        if bool(self.data_dir) == bool(self.corpus):
            raise UserError(
                "tokenizer: give exactly one of 'data_dir' (a prepared folder) or 'corpus' (specs)"
            )
        if self.kind not in KINDS:
            raise UserError(f"tokenizer: kind '{self.kind}' is not valid; choose one of: {', '.join(KINDS)}")
        try:
            corpus_options(
                self.text_field, self.txt_mode, self.encoding_errors, self.encoding, self.on_bad_lines
            )
        except UserError as e:
            raise UserError(f"tokenizer: {e}") from None
        if self.vocab_size < 2 * VOCAB_MULTIPLE:
            raise UserError(f"tokenizer: vocab_size must be >= {2 * VOCAB_MULTIPLE}, got {self.vocab_size}")
        if self.min_frequency < 1:
            raise UserError(f"tokenizer: min_frequency must be >= 1, got {self.min_frequency}")
        if self.max_train_bytes < 1:
            raise UserError(f"tokenizer: max_train_bytes must be >= 1, got {self.max_train_bytes}")
        if self.model_max_length < 8:
            raise UserError(f"tokenizer: model_max_length must be >= 8, got {self.model_max_length}")

    @property
    def rounded_vocab_size(self) -> int:
        """`vocab_size` rounded up to a multiple of 64."""
        return math.ceil(self.vocab_size / VOCAB_MULTIPLE) * VOCAB_MULTIPLE


def tokenizer_fingerprint(folder: str | os.PathLike) -> str | None:
    """The identity of the tokenizer saved in `folder`: a hash of what decides how text becomes ids (the
    vocabulary model, normaliser, pre-tokenizer and added tokens of its tokenizer.json), not of settings such
    as padding or truncation. Equal for a copy re-saved by `save_pretrained`; None without tokenizer.json."""
    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        return None
    spec = read_json(path)
    if not isinstance(spec, dict):
        raise CorruptFileError(f"{path} is damaged: not a tokenizer (expected a JSON object)")
    return spec_fingerprint(spec)


def loaded_tokenizer_fingerprint(tokenizer) -> str | None:
    """`tokenizer_fingerprint` of a loaded fast tokenizer (from a folder or the Hub); None for a slow one."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    return spec_fingerprint(json.loads(backend.to_str())) if backend is not None else None


def spec_fingerprint(spec: dict) -> str:
    """The hash of a tokenizer.json's parts that decide how text becomes ids."""
    parts = {key: spec.get(key) for key in ("model", "normalizer", "pre_tokenizer", "added_tokens")}
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def build_untrained(cfg: TokenizerConfig):  # -> (tokenizers.Tokenizer, trainer)
    """The empty `tokenizers.Tokenizer` pipeline for `cfg.kind`, and its trainer."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    strip_accents = cfg.lowercase if cfg.strip_accents is None else cfg.strip_accents
    vocab = cfg.rounded_vocab_size
    # with byte-level/metaspace pre-tokenizers a space precedes [MASK]: lstrip lets [MASK] absorb it
    specials = [
        AddedToken(t, special=True, normalized=False, lstrip=(t == "[MASK]" and cfg.kind != "wordpiece"))
        for t in SPECIAL_TOKENS
    ]
    if cfg.kind == "wordpiece":
        tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
        tok.normalizer = normalizers.BertNormalizer(
            clean_text=True, handle_chinese_chars=True, strip_accents=strip_accents, lowercase=cfg.lowercase
        )
        tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        tok.decoder = decoders.WordPiece(prefix="##")
        trainer = trainers.WordPieceTrainer(
            vocab_size=vocab, min_frequency=cfg.min_frequency, special_tokens=specials, show_progress=False
        )
        return tok, trainer
    steps = [normalizers.NFKC()]
    if cfg.lowercase:
        steps.append(normalizers.Lowercase())
    if strip_accents:
        steps += [normalizers.NFD(), normalizers.StripAccents(), normalizers.NFC()]
    if cfg.kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.normalizer = normalizers.Sequence(steps)
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab,
            min_frequency=cfg.min_frequency,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        return tok, trainer
    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab, special_tokens=specials, unk_token="[UNK]", show_progress=False
    )
    return tok, trainer


def finish_tokenizer(tok, cfg: TokenizerConfig):  # -> transformers.PreTrainedTokenizerFast
    """Post-processor ([CLS] a [SEP] b [SEP]), [unusedN] padding to a multiple of 64, transformers wrapper."""
    from tokenizers import AddedToken, processors
    from transformers import PreTrainedTokenizerFast

    for i, t in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(t) != i:
            raise RuntimeError(f"trainer put special token {t} at id {tok.token_to_id(t)}, expected {i}")
    template = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    if cfg.kind == "bpe":  # trim the leading space (Ġ) out of the offsets, then add the template
        tok.post_processor = processors.Sequence([processors.ByteLevel(trim_offsets=True), template])
    else:
        tok.post_processor = template
    size = tok.get_vocab_size(with_added_tokens=True)
    padded = math.ceil(size / VOCAB_MULTIPLE) * VOCAB_MULTIPLE
    if padded > size:
        tok.add_special_tokens(
            [AddedToken(f"[unused{i}]", special=True, normalized=False) for i in range(padded - size)]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=cfg.model_max_length,
        padding_side="right",
        model_input_names=["input_ids", "token_type_ids", "attention_mask"],
    )


# Written by `save_pretrained` of a tokenizer loaded from disk, about the machine that loaded it.
_MACHINE_FLAGS = ("is_local", "local_files_only", "backend")


def save_tokenizer(tokenizer, folder: str | os.PathLike, model_max_length: int | None = None) -> None:
    """`tokenizer.save_pretrained(folder)`, then `portable_tokenizer_config`."""
    tokenizer.save_pretrained(str(folder))
    portable_tokenizer_config(folder, model_max_length)


def portable_tokenizer_config(folder: str | os.PathLike, model_max_length: int | None = None) -> None:
    """Make `folder/tokenizer_config.json` load alike in every transformers version (4.x and 5.x): the fast
    class of the tokenizer's kind, `BertTokenizerFast` for WordPiece with BERT's normalizer (with
    `do_lower_case`, `strip_accents`, `tokenize_chinese_chars` as that normalizer has them, which transformers
    4 would otherwise impose on it) and `PreTrainedTokenizerFast` for any other `tokenizer.json`; no flags of
    the machine that saved it (`is_local`, `local_files_only`); `model_max_length` when given."""
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in _MACHINE_FLAGS:
        config.pop(key, None)
    if model_max_length is not None:
        config["model_max_length"] = int(model_max_length)
    backend = Path(folder) / "tokenizer.json"
    if backend.is_file():
        config.update(_fast_class(json.loads(backend.read_text(encoding="utf-8"))))
    write_json(path, dict(sorted(config.items())))


def _fast_class(backend: dict) -> dict:
    """The `tokenizer_class` (and its options) that loads this `tokenizer.json` as it is."""
    normalizer = backend.get("normalizer") or {}
    if (backend.get("model") or {}).get("type") == "WordPiece" and normalizer.get("type") == "BertNormalizer":
        return {
            "tokenizer_class": "BertTokenizerFast",
            "do_lower_case": bool(normalizer.get("lowercase", True)),
            "strip_accents": normalizer.get("strip_accents"),
            "tokenize_chinese_chars": bool(normalizer.get("handle_chinese_chars", True)),
        }
    return {"tokenizer_class": "PreTrainedTokenizerFast"}


def _source_batches(cfg: TokenizerConfig) -> Iterator[list[str]]:
    """Batches of texts: the train split of `data_dir`, or the documents of `corpus`."""
    if not cfg.data_dir:
        yield from iter_corpus(
            cfg.corpus,
            cfg.text_field,
            cfg.txt_mode,
            cfg.encoding_errors,
            encoding=cfg.encoding,
            on_bad_lines=cfg.on_bad_lines,
        )
        return
    dd = load_saved(cfg.data_dir)
    if "train" not in dd:
        raise UserError(f"tokenizer: data_dir {cfg.data_dir} has no 'train' split; splits: {', '.join(dd)}")
    if "text" not in dd["train"].column_names:
        raise UserError(
            f"tokenizer: data_dir {cfg.data_dir} has no column 'text'; columns found: {', '.join(dd['train'].column_names)}"
        )
    train = Path(cfg.data_dir) / "train"
    yield from iter_text_batches(train, 0, len(dd["train"]), _BATCH, max_bytes=BATCH_CHARS)


def _training_texts(cfg: TokenizerConfig, seen: dict) -> Iterator[list[str]]:
    """Batches of training texts, in order, until `max_train_bytes` UTF-8 bytes were given.

    A document longer than `DEFAULT_MAX_DOCUMENT_CHARS` is given in pieces cut at whitespace (prepared
    documents never are: `prepare` splits them), and a batch never holds much more than `BATCH_CHARS`
    characters, so the trainer never holds one huge text at once."""
    for batch in char_bounded(_source_batches(cfg), BATCH_CHARS):
        for start in range(0, len(batch), _BATCH):
            out = []
            for text in batch[start : start + _BATCH]:
                if seen["bytes"] >= cfg.max_train_bytes:
                    break
                seen["bytes"] += len(text.encode("utf-8"))
                seen["documents"] += 1
                out += split_document(text, DEFAULT_MAX_DOCUMENT_CHARS)
            if out:
                yield out
            if seen["bytes"] >= cfg.max_train_bytes:
                return


def _expected_bytes(cfg: TokenizerConfig) -> int | None:
    """About how many bytes of text the tokenizer reads (for the progress bar), when that can be known."""
    if cfg.data_dir:
        stats = Path(cfg.data_dir) / "stats.json"
        size = json.loads(stats.read_text()).get("train_characters") if stats.is_file() else None
    else:
        files = [Path(c) for c in cfg.corpus]
        plain = all(f.is_file() and not f.name.endswith(".gz") for f in files)
        size = sum(f.stat().st_size for f in files) if plain else None
    return min(size, cfg.max_train_bytes) if size else None


def _counted(batches: Iterator[list[str]], seen: dict, progress) -> Iterator[list[str]]:
    """`batches`, moving `progress` to `seen["bytes"]` as each is read."""
    for batch in batches:
        progress.update(max(0, min(seen["bytes"], progress.total or seen["bytes"]) - progress.n))
        yield batch


def _train(cfg: TokenizerConfig, seen: dict):  # -> tokenizers.Tokenizer
    """The trained backend tokenizer, with a progress bar of the text read (`seen` counts it)."""
    tok, trainer = build_untrained(cfg)
    with bar(total=_expected_bytes(cfg), desc="train-tokenizer", unit="B", unit_scale=True) as progress:
        tok.train_from_iterator(_counted(_training_texts(cfg, seen), seen, progress), trainer=trainer)
        progress.update(max(0, (progress.total or 0) - progress.n))  # all read
    return tok


def train_tokenizer(cfg: TokenizerConfig):  # -> transformers.PreTrainedTokenizerFast
    """Train the tokenizer on the data, write `cfg.output_dir`, and return it wrapped for transformers."""
    cfg.validate()
    if cfg.data_dir and not (Path(cfg.data_dir) / "dataset_dict.json").is_file():
        what = (
            "not found"
            if not Path(cfg.data_dir).exists()
            else "is not a prepared folder (no dataset_dict.json)"
        )
        raise UserError(f"tokenizer: data_dir {cfg.data_dir} {what}; run `mlm prepare` first")
    with output_folder(cfg.output_dir, STEP, {"data_dir": cfg.data_dir, "corpus": cfg.corpus}) as tmp:
        start = time.time()
        seen = {"bytes": 0, "documents": 0}
        tok = _train(cfg, seen)
        source = cfg.data_dir or ", ".join(cfg.corpus)
        if seen["documents"] == 0:
            raise UserError(f"tokenizer: {source} has no text to train on")
        trained_size = tok.get_vocab_size(with_added_tokens=True)
        if trained_size <= len(SPECIAL_TOKENS):
            raise UserError(
                f"tokenizer: {source} gave no tokens to learn: its {seen['documents']} document(s) are empty "
                "once normalised (only control, zero-width or format characters?)"
            )
        hf_tok = finish_tokenizer(tok, cfg)
        stats = {
            "kind": cfg.kind,
            "vocab_size_requested": cfg.vocab_size,
            "vocab_size_rounded": cfg.rounded_vocab_size,
            "vocab_size_trained": trained_size,
            "vocab_size": len(hf_tok),
            "unused_tokens": len(hf_tok) - trained_size,
            "train_documents": seen["documents"],
            "train_bytes": seen["bytes"],
            "seconds": round(time.time() - start, 2),
        }
        save_tokenizer(hf_tok, tmp)
        write_json(tmp / "stats.json", stats)
        inputs = {"data_dir": folder_fingerprint(cfg.data_dir)} if cfg.data_dir else {"corpus": cfg.corpus}
        inputs.update(train_documents=seen["documents"], train_bytes=seen["bytes"])
        write_step_metadata(tmp, STEP, cfg, inputs, tokenizer_fingerprint=tokenizer_fingerprint(tmp))
    size = f"{seen['bytes'] / 1e6:.1f} MB" if seen["bytes"] >= 1e6 else f"{seen['bytes'] / 1e3:.0f} kB"
    print(
        f"tokenizer: {cfg.kind}, {len(hf_tok):,} tokens ({stats['unused_tokens']:,} unused) from "
        f"{seen['documents']:,} documents ({size}) -> {cfg.output_dir}"
    )
    return hf_tok

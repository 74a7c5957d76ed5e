"""Shared, session-scoped fixtures: a tiny synthetic corpus and what each data step makes of it.

Everything is built once per test session from text made here (no download, no shared data), in about
two seconds in all:

- `tiny_texts`: list of 300 short word-like English documents (2-4 sentences, ~40 words each,
  deterministic; 8 of them are exact duplicates of others and 4 are shorter than 20 characters).
- `tiny_corpus_dir`: a folder holding those documents as `corpus.jsonl` (one `{"text": ...}` per line).
- `prepared_dir`: `data_prep.prepare` output of `tiny_corpus_dir` (DatasetDict train/validation, column
  `text`; validation_size=30, seed 42, so 258 train / 30 validation documents).
- `tiny_tokenizer_dir`: a WordPiece tokenizer (vocab 512, lowercase) trained on `prepared_dir`; loads with
  `AutoTokenizer.from_pretrained`; `[PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4`.
- `packed_dir`: `data_prep.packing` output of `prepared_dir` with `tiny_tokenizer_dir`, max_seq_length 32
  (columns `input_ids` int32, `word_start` int8; a few hundred blocks).

Treat these folders as read-only: they are shared by every test of the session.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

_WORDS = (
    "the a an of to in and or but with from by for on at as is was are were be been has have had will would "
    "can could may might should must not no yes all some many few more most other such new old good great "
    "small large long short high low early late young open close first last next same different important "
    "public private human social local national general real whole able bad best better free full hard "
    "time year people way day man woman child world life hand part place case week company system program "
    "question work government number night point home water room mother area money story fact month lot "
    "right study book eye job word business issue side kind head house service friend father power hour "
    "game line end member law car city community name president team minute idea kid body information "
    "back parent face others level office door health person art war history party result change morning "
    "reason research girl guy moment air teacher force education foot boy age policy process music market "
    "sense nation plan college interest death experience effect class control care field development role "
    "effort rate heart drug show leader light voice wife police mind price report decision son view "
    "relationship town road arm difference value building action model season society tax director position "
    "player record paper space ground form event official matter center couple site project activity star "
    "table need court oil situation cost industry figure street image phone data picture practice piece "
    "land product doctor wall patient worker news test movie north love support technology step baby "
    "computer type attention film tree source organization hair window evidence population site thinking "
    "say make go know take see come think look want give use find tell ask seem feel try leave call keep "
    "let begin help talk turn start show hear play run move like live believe hold bring happen write "
    "provide sit stand lose pay meet include continue set learn lead understand watch follow stop create "
    "speak read allow add spend grow offer remember consider appear buy wait serve die send expect build "
    "stay fall cut reach kill remain suggest raise pass sell require decide return explain hope develop "
    "carry break receive agree support hit produce eat cover catch draw choose cause"
).split()


def make_tiny_texts(n: int = 300, seed: int = 0) -> list[str]:
    """`n` deterministic word-like English documents; a few exact duplicates and a few very short ones."""
    rng = random.Random(seed)
    docs = []
    for _ in range(n - 12):
        sentences = []
        for _ in range(rng.randint(2, 4)):
            words = [rng.choice(_WORDS) for _ in range(rng.randint(6, 14))]
            sentences.append(" ".join(words).capitalize() + rng.choice(".!?."))
        docs.append(" ".join(sentences))
    docs += [docs[i] for i in range(0, 80, 10)]  # 8 exact duplicates
    docs += ["Too short.", "Tiny doc!", "Hi there", "No way."]  # 4 under 20 characters
    return docs


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    """300 short synthetic English-like documents (8 duplicates, 4 under 20 characters)."""
    return make_tiny_texts()


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory, tiny_texts) -> Path:
    """Folder with `corpus.jsonl`: the `tiny_texts` documents, one JSON object {"text": ...} per line."""
    folder = tmp_path_factory.mktemp("tiny_corpus")
    with open(folder / "corpus.jsonl", "w", encoding="utf-8") as f:
        for text in tiny_texts:
            f.write(json.dumps({"text": text}) + "\n")
    return folder


@pytest.fixture(scope="session")
def prepared_dir(tmp_path_factory, tiny_corpus_dir) -> Path:
    """`prepare` output of `tiny_corpus_dir`: DatasetDict train (258 docs) / validation (30 docs)."""
    from data_prep.prepare import PrepareConfig, prepare

    out = tmp_path_factory.mktemp("prepared") / "data"
    prepare(PrepareConfig(corpus=[str(tiny_corpus_dir)], output_dir=str(out), validation_size=30))
    return out


@pytest.fixture(scope="session")
def tiny_tokenizer_dir(tmp_path_factory, prepared_dir) -> Path:
    """WordPiece tokenizer, vocab 512, trained on `prepared_dir`'s train split."""
    from data_prep.tokenizer import TokenizerConfig, train_tokenizer

    out = tmp_path_factory.mktemp("tokenizer") / "tok"
    train_tokenizer(TokenizerConfig(output_dir=str(out), data_dir=str(prepared_dir), vocab_size=512))
    return out


@pytest.fixture(scope="session")
def packed_dir(tmp_path_factory, prepared_dir, tiny_tokenizer_dir) -> Path:
    """`pack` output: blocks of 32 tokens (`input_ids`, `word_start`) for train and validation."""
    from data_prep.packing import PackConfig, pack

    out = tmp_path_factory.mktemp("packed") / "packed"
    pack(
        PackConfig(
            data_dir=str(prepared_dir),
            tokenizer_dir=str(tiny_tokenizer_dir),
            output_dir=str(out),
            max_seq_length=32,
            batch_size=50,
        )
    )
    return out

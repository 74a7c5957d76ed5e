"""Rules about a text itself, shared by the steps: whether it shows anything, and cutting an over-long
document at whitespace into pieces of bounded size (so tokenizer training and packing never hold one
document's tokens all at once)."""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Iterator

# a document longer than this (characters) is split or refused by `prepare`; far above any ordinary
# document (a long novel is about a million characters), so it only touches pathological ones: a whole
# corpus on one line, a dump without line breaks
DEFAULT_MAX_DOCUMENT_CHARS = 1_000_000
LONG_DOCUMENTS = ("split", "refuse")
# text in one batch handed to a tokenizer, in characters (UTF-8 bytes where read from Arrow): a batch of
# many long documents ends before this, so a batch's tokens stay a few hundred MB at most
BATCH_CHARS = 4_000_000

# characters that show nothing: control and format characters (zero-width spaces and joiners, direction
# marks, the byte-order mark, soft hyphen, tag characters), variation selectors, and the blank fillers
# (Hangul fillers, braille blank) often used to fake empty text; together with whitespace
_INVISIBLE = (
    "\x00-\x1f\x7f-\x9f\xad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
    "\u2060-\u206f\u2800\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff"
)
_NOTHING_VISIBLE = re.compile(rf"[\s{_INVISIBLE}]*")
_BREAKS = ("\n\n", "\n", " ")  # preferred cut points, best first


def has_visible_text(text: str) -> bool:
    """Whether `text` has a character that shows (not only whitespace, control or zero-width characters)."""
    return _NOTHING_VISIBLE.fullmatch(text) is None


def split_document(text: str, max_chars: int) -> list[str]:
    """`text` cut into stripped pieces of at most `max_chars` characters, of about equal size (so that no
    piece is a scrap that `min_chars` would drop).

    Each cut is at a paragraph break, else a line break, else a space, between half the even share and
    the share (else just after it); only where there is no whitespace there is a piece cut mid-word (never
    before a combining mark). A text that fits comes back whole, as it is."""
    if len(text) <= max_chars:
        return [text]
    pieces = []
    start = 0
    while len(text) - start > max_chars:
        share = (len(text) - start) // math.ceil((len(text) - start) / max_chars)
        cut, skip = _cut(text, start, share, max_chars)
        pieces.append(text[start:cut].strip())
        start = cut + skip
    pieces.append(text[start:].strip())
    return [p for p in pieces if p]


def _cut(text: str, start: int, share: int, max_chars: int) -> tuple[int, int]:
    """Where the piece beginning at `start` ends, and how many characters (the break) to skip after it."""
    low, target, end = start + share // 2, start + share, start + max_chars
    for brk in _BREAKS:
        at = text.rfind(brk, low, target + len(brk))
        if at >= 0:
            return at, len(brk)
    at = text.find(" ", target, end)
    if at >= 0:
        return at, 1
    cut = target
    while cut > max(low, start + 1) and unicodedata.combining(text[cut]):
        cut -= 1
    return cut, 0


def char_bounded(batches: Iterable[list[str]], max_chars: int = BATCH_CHARS) -> Iterator[list[str]]:
    """The same texts in the same order, each batch cut where it would pass `max_chars` characters in all
    (a batch always keeps at least one text)."""
    for batch in batches:
        if sum(map(len, batch)) <= max_chars:
            yield batch
            continue
        out: list[str] = []
        size = 0
        for text in batch:
            if out and size + len(text) > max_chars:
                yield out
                out, size = [], 0
            out.append(text)
            size += len(text)
        if out:
            yield out

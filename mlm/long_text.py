"""Texts longer than `max_seq_length` in fine-tuning and evaluation (`long_text`).

- `truncate`: the first `max_seq_length` tokens (what `run_classification.py` does);
- `head_tail`: the first quarter of the budget from the head and the rest from the tail, the best single
  window for long reviews in Sun et al. 2019 ("How to Fine-Tune BERT for Text Classification?"); same cost;
- `chunks`: overlapping windows (`doc_stride` tokens shared by neighbours) that together cover the text;
  each window trains with its document's label, and a document's prediction is the mean of its windows'
  logits. Costs about (tokens / window) times more.

A text that fits is encoded the same way by all three.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LONG_TEXT = ("truncate", "head_tail", "chunks")
DOC = "doc"  # chunks: the column that holds each window's document index


def encode(tokenizer: Any, texts: list[str], pairs: list[str] | None, max_length: int, mode: str,
           stride: int) -> dict[str, list]:  # fmt: skip
    """input_ids, attention_mask (+ token_type_ids) of `texts` (and `pairs`) by `mode`; `chunks` adds `doc`."""
    if mode == "head_tail":
        texts = heads_and_tails(tokenizer, texts, max_length)
    if mode != "chunks":
        return dict(tokenizer(texts, pairs, truncation=True, max_length=max_length,
                              return_token_type_ids=True if pairs is not None else None))  # fmt: skip
    enc = tokenizer(
        texts, truncation=True, max_length=max_length, stride=stride, return_overflowing_tokens=True
    )
    out = {k: v for k, v in enc.items() if k != "overflow_to_sample_mapping"}
    out[DOC] = list(enc["overflow_to_sample_mapping"])
    return out


def heads_and_tails(tokenizer: Any, texts: list[str], max_length: int) -> list[str]:
    """Each text that is over the budget cut to its first quarter and last three quarters of the tokens
    (joined by a space); the others as they are."""
    budget = max_length - tokenizer.num_special_tokens_to_add(False)
    head = budget // 4
    tail = budget - head
    out = []
    enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    for text, offsets in zip(texts, enc["offset_mapping"]):
        if len(offsets) <= budget or head < 1:
            out.append(text)
        else:
            out.append(text[: offsets[head - 1][1]] + " " + text[offsets[len(offsets) - tail][0] :])
    return out


def document_logits(logits: np.ndarray, labels: np.ndarray, doc: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean logits and the label of each document, from its windows' logits (`doc`: window -> document)."""
    doc_ids = np.asarray(doc)
    n = int(doc_ids.max()) + 1 if len(doc_ids) else 0
    flat = logits.reshape(len(doc_ids), -1)
    sums = np.zeros((n, flat.shape[1]), dtype=np.float64)
    np.add.at(sums, doc_ids, flat)
    counts = np.bincount(doc_ids, minlength=n).reshape(-1, 1)
    first = np.zeros(n, dtype=np.int64)
    first[doc_ids[::-1]] = np.arange(len(doc_ids))[::-1]  # the first window of each document
    mean = (sums / counts).astype(np.float32).reshape((n, *logits.shape[1:]))
    return mean, labels[first]


def document_loss(logits: np.ndarray, labels: np.ndarray, problem_type: str) -> float:
    """The loss the model trains with, on document-level logits: cross-entropy, BCE or MSE."""
    import torch
    import torch.nn.functional as F

    x, y = torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(labels)
    from mlm.metrics import MULTI_LABEL, REGRESSION

    if problem_type == REGRESSION:
        return float(F.mse_loss(x.view(-1), y.float().view(-1)))
    if problem_type == MULTI_LABEL:
        return float(F.binary_cross_entropy_with_logits(x, y.float()))
    return float(F.cross_entropy(x, y.long()))

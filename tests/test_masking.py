"""Statistical tests of the masking collator on seeded synthetic batches of plain integer ids."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_prep.errors import UserError
from mlm.masking import MaskingCollator, MaskingConfig

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIALS = [PAD, UNK, CLS, SEP, MASK]
VOCAB = 1000


def make_examples(n: int = 256, length: int = 128, seed: int = 0) -> list[dict]:
    """Packed-like rows: [CLS] words [SEP] words [SEP] ... with some rows padded, plus word_start."""
    rng = np.random.default_rng(seed)
    examples = []
    for i in range(n):
        ids = rng.integers(5, VOCAB, length)
        word_start = (rng.random(length) < 0.6).astype(np.int8)
        ids[0] = CLS
        ids[rng.integers(10, length - 10)] = SEP
        used = length if i % 4 else int(rng.integers(20, length))  # every 4th row padded
        ids[used - 1] = SEP
        ids[used:] = PAD
        ids[rng.integers(1, used - 1)] = UNK
        word_start[np.isin(ids, SPECIALS)] = 1
        word_start[used:] = 0
        nxt = np.roll(np.isin(ids, SPECIALS), 1)  # a token after a special token starts a word
        word_start[nxt & (ids != PAD)] = 1
        examples.append({"input_ids": ids.tolist(), "word_start": word_start.tolist()})
    return examples


def collate(examples: list[dict], seed: int = 0, **cfg) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Run a seeded collator; return the batch, the original ids and the eligible-position mask."""
    batch = MaskingCollator(MaskingConfig(**cfg), VOCAB, MASK, PAD, SPECIALS, seed=seed)(examples)
    width = max(len(e["input_ids"]) for e in examples)
    original = torch.tensor([list(e["input_ids"]) + [PAD] * (width - len(e["input_ids"])) for e in examples])
    eligible = ~torch.isin(original, torch.tensor(SPECIALS))
    return batch, original, eligible


@pytest.fixture(scope="module")
def examples() -> list[dict]:
    return make_examples()


@pytest.mark.parametrize("p", [0.15, 0.3, 0.5])
@pytest.mark.parametrize("mode", ["token", "whole_word", "fixed_count"])
def test_masking_rate(examples, p, mode):
    cfg = {"whole_word": {"whole_word_mask": True}, "fixed_count": {"fixed_count_masking": True}}.get(
        mode, {}
    )
    if mode == "fixed_count":  # k follows the shortest row, so measure the rate on unpadded rows
        examples = [e for i, e in enumerate(examples) if i % 4]
    batch, _, eligible = collate(examples, mlm_probability=p, **cfg)
    masked = batch["labels"] != -100
    rate = masked.sum().item() / eligible.sum().item()
    assert abs(rate - p) < (0.03 if mode == "whole_word" else 0.015), rate


def test_batch_format(examples):
    batch, original, _ = collate(examples)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert all(t.dtype == torch.int64 and t.shape == original.shape for t in batch.values())
    assert torch.equal(batch["attention_mask"], (original != PAD).long())
    masked = batch["labels"] != -100
    assert torch.equal(batch["labels"][masked], original[masked])


@pytest.mark.parametrize("split", [(0.8, 0.1), (0.5, 0.5), (0.0, 0.0), (1.0, 0.0)])
def test_replacement_split(examples, split):
    mask_p, random_p = split
    batch, original, _ = collate(
        examples, mlm_probability=0.5, mask_replace_prob=mask_p, random_replace_prob=random_p
    )
    masked = batch["labels"] != -100
    new, old = batch["input_ids"][masked], original[masked]
    n = masked.sum().item()
    to_mask = (new == MASK).float().mean().item()
    kept = (new == old).float().mean().item()
    randomised = ((new != MASK) & (new != old)).float().mean().item()
    assert abs(to_mask - mask_p) < 0.015 and abs(randomised - random_p) < 0.015, (to_mask, randomised, n)
    assert abs(kept - (1 - mask_p - random_p)) < 0.015
    assert not torch.isin(new[(new != MASK) & (new != old)], torch.tensor(SPECIALS)).any()
    assert torch.equal(batch["input_ids"][~masked], original[~masked])  # nothing else changes


@pytest.mark.parametrize("cfg", [{}, {"whole_word_mask": True}, {"fixed_count_masking": True}])
def test_specials_and_padding_untouched(examples, cfg):
    batch, original, eligible = collate(examples, mlm_probability=0.5, **cfg)
    assert (batch["labels"][~eligible] == -100).all()
    assert torch.equal(batch["input_ids"][~eligible], original[~eligible])
    assert (batch["attention_mask"][original == PAD] == 0).all()


def test_fixed_count_same_per_row(examples):
    batch, _, eligible = collate(examples, mlm_probability=0.15, fixed_count_masking=True)
    counts = (batch["labels"] != -100).sum(1)
    expected = max(1, round(0.15 * eligible.sum(1).min().item()))
    assert (counts == expected).all(), counts.unique()


def test_whole_word_masks_whole_words(examples):
    batch, original, eligible = collate(examples, mlm_probability=0.3, whole_word_mask=True)
    masked = (batch["labels"] != -100).numpy()
    word_start = np.array([e["word_start"] for e in examples])
    word_id = np.cumsum(word_start, axis=1)
    for row in range(len(examples)):
        elig = eligible[row].numpy()
        for w in np.unique(word_id[row][elig]):
            pieces = masked[row][(word_id[row] == w) & elig]
            assert pieces.all() or not pieces.any()
    assert (word_start.sum(1) < eligible.sum(1).numpy()).all()  # words really have several pieces


def _runs(row: np.ndarray) -> list[int]:
    """Lengths of the runs of True in a row."""
    edges = np.diff(np.concatenate([[0], row.astype(int), [0]]))
    return (np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)).tolist()


@pytest.mark.parametrize("whole_word", [False, True])
def test_span_masking_rate_and_lengths(examples, whole_word):
    batch, _, eligible = collate(
        examples, mlm_probability=0.15, mask_span_mean=3.0, whole_word_mask=whole_word
    )
    masked = batch["labels"] != -100
    assert abs(masked.sum().item() / eligible.sum().item() - 0.15) < 0.03
    single = collate(examples, mlm_probability=0.15, whole_word_mask=whole_word)[0]["labels"] != -100
    spans = [n for row in masked.numpy() for n in _runs(row)]
    singles = [n for row in single.numpy() for n in _runs(row)]
    assert np.mean(spans) > 1.5 * np.mean(singles)  # masked positions come in longer runs
    if whole_word:  # spans of whole words: a word is masked whole or not at all
        word_id = np.cumsum(np.array([e["word_start"] for e in examples]), axis=1)
        for row in range(0, len(examples), 16):
            elig = eligible[row].numpy()
            for w in np.unique(word_id[row][elig]):
                pieces = masked[row].numpy()[(word_id[row] == w) & elig]
                assert pieces.all() or not pieces.any()


def test_whole_word_needs_word_start(examples):
    no_words = [{"input_ids": e["input_ids"]} for e in examples[:4]]
    with pytest.raises(UserError, match="no word boundaries"):
        collate(no_words, whole_word_mask=True)


@pytest.mark.parametrize(
    "cfg",
    [
        {"mlm_probability": 0},
        {"mlm_probability": 1},
        {"mlm_probability": 1.2},
        {"mask_replace_prob": 0.8, "random_replace_prob": 0.3},
        {"random_replace_prob": -0.1},
        {"whole_word_mask": True, "fixed_count_masking": True},
        {"mask_span_mean": 0.5},
        {"mask_span_mean": 11},
        {"mask_span_mean": 3, "fixed_count_masking": True},
    ],
)
def test_invalid_config(cfg):
    with pytest.raises(UserError):
        MaskingConfig(**cfg).validate()


def test_token_outside_vocab():
    with pytest.raises(UserError, match="outside the vocabulary"):
        collate([{"input_ids": [CLS, VOCAB + 5, SEP]}])


def test_dynamic_and_reproducible(examples):
    collator = MaskingCollator(MaskingConfig(), VOCAB, MASK, PAD, SPECIALS, seed=1)
    first, second = collator(examples), collator(examples)
    assert not torch.equal(first["labels"], second["labels"])
    again = MaskingCollator(MaskingConfig(), VOCAB, MASK, PAD, SPECIALS, seed=1)(examples)
    assert torch.equal(first["input_ids"], again["input_ids"]) and torch.equal(
        first["labels"], again["labels"]
    )


def test_unseeded_uses_global_rng(examples):
    collator = MaskingCollator(MaskingConfig(), VOCAB, MASK, PAD, SPECIALS)
    torch.manual_seed(3)
    first = collator(examples)
    torch.manual_seed(3)
    assert torch.equal(first["labels"], collator(examples)["labels"])


def test_ragged_and_array_inputs():
    rows = [np.array([CLS, 7, 8, 9, SEP], dtype=np.int32), np.array([CLS, 7, SEP], dtype=np.int32)]
    examples = [{"input_ids": r, "attention_mask": np.ones(len(r), dtype=np.int8)} for r in rows]
    batch, _, _ = collate(examples)
    assert batch["input_ids"].shape == (2, 5)
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["input_ids"][1, 3:].tolist() == [PAD, PAD] and (batch["labels"][1, 3:] == -100).all()
    tensors = [{"input_ids": torch.tensor(r)} for r in rows]
    assert collate(tensors)[0]["input_ids"].shape == (2, 5)


def test_seeded_workers_and_epochs_differ(examples):
    """With a seed and DataLoader workers, masks differ per worker and per epoch, yet repeat under one torch seed."""
    collator = MaskingCollator(MaskingConfig(mlm_probability=0.5), VOCAB, MASK, PAD, SPECIALS, seed=0)
    data = [examples[0]] * 4

    def epoch() -> list[torch.Tensor]:
        loader = torch.utils.data.DataLoader(data, batch_size=1, num_workers=2, collate_fn=collator)
        return [b["labels"] for b in loader]

    torch.manual_seed(0)
    first, second = epoch(), epoch()
    assert not torch.equal(first[0], first[1])  # two workers
    assert not torch.equal(first[0], second[0])  # two epochs
    torch.manual_seed(0)
    assert all(torch.equal(a, b) for a, b in zip(first, epoch()))

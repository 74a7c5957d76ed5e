"""Tokenizer folders that load in every transformers version: the fast class of their kind, the special tokens,
BERT's normalizer options, the trained sequence length, and nothing about the machine that saved them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_run import tiny_pretrain_config

from data_prep.tokenizer import TokenizerConfig, train_tokenizer
from mlm.pretrain import pretrain

SPECIALS = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
            "mask_token": "[MASK]"}  # fmt: skip


def tokenizer_config(folder: Path) -> dict:
    return json.loads((folder / "tokenizer_config.json").read_text())


def test_wordpiece_is_saved_as_bert_tokenizer_fast(tiny_tokenizer_dir: Path) -> None:
    config = tokenizer_config(tiny_tokenizer_dir)
    assert config["tokenizer_class"] == "BertTokenizerFast"
    assert config["do_lower_case"] is True and config["strip_accents"] is True
    assert config["tokenize_chinese_chars"] is True
    assert SPECIALS.items() <= config.items()
    assert not {"is_local", "local_files_only", "backend"} & set(config)


@pytest.mark.parametrize("kind", ["bpe", "unigram"])
def test_bpe_and_unigram_are_saved_as_pretrained_tokenizer_fast(
    tmp_path: Path, prepared_dir: Path, kind: str
) -> None:
    from transformers import AutoTokenizer

    out = tmp_path / kind
    trained = train_tokenizer(TokenizerConfig(output_dir=str(out), data_dir=str(prepared_dir), kind=kind,
                                              vocab_size=256, lowercase=False))  # fmt: skip
    config = tokenizer_config(out)
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast" and SPECIALS.items() <= config.items()
    assert not {"is_local", "local_files_only", "do_lower_case"} & set(config)
    loaded = AutoTokenizer.from_pretrained(out)
    text = "The Cat sat on [MASK] mat."
    assert loaded(text, "and more")["input_ids"] == trained(text, "and more")["input_ids"]
    assert loaded.mask_token_id == 4 and loaded(text)["input_ids"].count(4) == 1


def test_uncased_options_follow_the_normalizer(tmp_path: Path, prepared_dir: Path) -> None:
    out = tmp_path / "cased"
    train_tokenizer(TokenizerConfig(output_dir=str(out), data_dir=str(prepared_dir), vocab_size=256,
                                    lowercase=False))  # fmt: skip
    config = tokenizer_config(out)
    assert config["do_lower_case"] is False and config["strip_accents"] is False


def test_final_and_checkpoints_carry_the_packed_length(packed_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    out = tmp_path / "pretrain"
    pretrain(tiny_pretrain_config(packed_dir, out))
    for folder in (out / "final", out / "checkpoint-6"):
        config = tokenizer_config(folder)
        assert config["model_max_length"] == 32, folder  # the packed blocks, not the tokenizer's 512
        assert config["tokenizer_class"] == "BertTokenizerFast" and "is_local" not in config
        assert AutoTokenizer.from_pretrained(folder).model_max_length == 32

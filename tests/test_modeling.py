"""Presets, and the masked-only head: same weights, same loss, same checkpoint as BertForMaskedLM."""

from __future__ import annotations

import inspect
import json
import random

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoModelForMaskedLM, BertForMaskedLM, PreTrainedTokenizerFast, pipeline

from data_prep.errors import UserError
from mlm.heads import BertForMaskedOnlyLM
from mlm.modeling import (
    PRESETS,
    build_config,
    build_model,
    check_tokenizer_matches,
    count_parameters,
)

VOCAB = 200


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """A WordPiece tokenizer trained on a few hundred generated sentences; [PAD]=0 ... [MASK]=4."""
    rng = random.Random(0)
    words = "the cat dog sat on mat ran fast slow red blue house tree big small happy bird sings a of".split()
    sentences = [" ".join(rng.choice(words) for _ in range(rng.randint(4, 12))) for _ in range(300)]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(sentences, trainers.WordPieceTrainer(vocab_size=120, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.decoder = decoders.WordPiece()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_config(**overrides):
    return build_config("tiny", VOCAB, 64, overrides=overrides)


def batch(seed: int = 0, size: tuple[int, int] = (4, 32)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(5, VOCAB, size, generator=g)
    attention_mask = torch.ones(size, dtype=torch.long)
    input_ids[1, -5:], attention_mask[1, -5:] = 0, 0  # one padded row
    labels = torch.where(torch.rand(size, generator=g) < 0.2, input_ids, -100)
    labels[1, -5:] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def twin_models(**overrides) -> tuple[BertForMaskedLM, BertForMaskedOnlyLM]:
    torch.manual_seed(0)
    full = build_model(tiny_config(**overrides), masked_only_head=False)
    fast = build_model(tiny_config(**overrides))
    fast.load_state_dict(full.state_dict())
    return full, fast


def test_presets():
    assert set(PRESETS) == {"tiny", "mini", "small", "medium", "base"}
    for name, shape in PRESETS.items():
        cfg = build_config(name, 30522, 128)
        assert {k: getattr(cfg, k) for k in shape} == shape
        assert cfg.vocab_size == 30528 and cfg.max_position_embeddings == 512 and cfg.pad_token_id == 0
        assert cfg.hidden_dropout_prob == 0.1 and cfg._attn_implementation == "sdpa"
    assert PRESETS["base"] == dict(
        num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072
    )
    model = build_model(build_config("tiny", 1000, 128))
    assert type(model) is BertForMaskedOnlyLM and len(model.bert.encoder.layer) == 2
    assert model.bert.embeddings.word_embeddings.weight.shape == (1024, 128)
    assert model.bert.pooler is None
    assert type(build_model(model.config, masked_only_head=False)) is BertForMaskedLM


def test_config_options():
    assert build_config("tiny", 1000, 1024).max_position_embeddings == 1024
    assert build_config("tiny", 1000, 128, pad_vocab_to_multiple_of=1).vocab_size == 1000
    cfg = build_config("tiny", 1000, 128, overrides={"hidden_dropout_prob": 0.0, "num_hidden_layers": 3})
    assert cfg.hidden_dropout_prob == 0.0 and cfg.num_hidden_layers == 3
    assert build_config("tiny", 1000, 128, attn_implementation="eager")._attn_implementation == "eager"


@pytest.mark.parametrize(
    "args, message",
    [
        (("huge", 1000, 128), "tiny, mini, small, medium, base"),
        (("tiny", 1000, 128, 0, {"hidden_layers": 3}), "valid keys: num_hidden_layers"),
        (
            ("tiny", 1000, 128, 0, {"hidden_size": 100, "num_attention_heads": 3}),
            "multiple of num_attention_heads",
        ),
        (("tiny", 1000, 1024, 0, {"max_position_embeddings": 512}), "below max_seq_length"),
        (("tiny", 1000, 128, 0, None, "fast"), "attn_implementation"),
    ],
)
def test_config_errors(args, message):
    with pytest.raises(UserError, match=message):
        build_config(*args)


def test_same_state_dict_as_bert_for_masked_lm():
    full, fast = twin_models()
    assert {k: v.shape for k, v in full.state_dict().items()} == {
        k: v.shape for k, v in fast.state_dict().items()
    }
    assert fast.cls.predictions.decoder.weight is fast.bert.embeddings.word_embeddings.weight
    assert count_parameters(fast) == count_parameters(full) == sum(p.numel() for p in full.parameters())
    assert count_parameters(fast, exclude_embeddings=True) < count_parameters(fast)
    assert not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(fast.forward).parameters.values())


def test_loss_and_logits_match_full_head():
    full, fast = twin_models()
    full.eval(), fast.eval()
    inputs = batch()
    with torch.no_grad():
        ref, out = full(**inputs), fast(**inputs)
        assert abs(ref.loss.item() - out.loss.item()) < 1e-5
        keep = inputs["labels"] != -100
        assert out.logits.shape == (keep.sum().item(), fast.config.vocab_size)
        torch.testing.assert_close(out.logits, ref.logits[keep], atol=1e-5, rtol=1e-5)
        no_labels = {k: v for k, v in inputs.items() if k != "labels"}
        torch.testing.assert_close(fast(**no_labels).logits, full(**no_labels).logits)
        assert fast(**no_labels).loss is None


def test_gradients_match_full_head():
    full, fast = twin_models(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    inputs = batch(1)
    full(**inputs).loss.backward()
    fast(**inputs).loss.backward()
    grads = dict(full.named_parameters())
    for name, p in fast.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-6, rtol=1e-4, msg=name)


def test_checkpoint_loads_as_plain_bert(tmp_path):
    _, fast = twin_models()
    fast.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]
    loaded, info = AutoModelForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert type(loaded) is BertForMaskedLM
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert loaded.config.architectures == ["BertForMaskedLM"]
    for name, value in fast.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name]), name
    again = BertForMaskedOnlyLM.from_pretrained(tmp_path)
    assert torch.equal(
        again.cls.predictions.transform.dense.weight, fast.cls.predictions.transform.dense.weight
    )


def test_fill_mask_pipeline(tmp_path, tokenizer):
    model = build_model(build_config("tiny", len(tokenizer), 64))
    check_tokenizer_matches(model, tokenizer, "test")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    predictions = pipeline("fill-mask", model=str(tmp_path), top_k=3)("the [MASK] sat on the mat")
    assert len(predictions) == 3 and all({"score", "token", "token_str"} <= set(p) for p in predictions)


def test_check_tokenizer_matches(tokenizer):
    with pytest.raises(UserError, match="has .* tokens but model"):
        check_tokenizer_matches(
            build_config("tiny", 32, 64, pad_vocab_to_multiple_of=1), tokenizer, "ckpt vs tok"
        )
    with pytest.raises(UserError, match="pad id"):
        check_tokenizer_matches(
            build_config("tiny", len(tokenizer), 64, pad_token_id=1), tokenizer, "ckpt vs tok"
        )

"""The speed options of pretraining: per-device defaults, the fused optimizer, vocabulary padding, and
fixed-count masking giving static shapes (for torch.compile / CUDA graphs), and torch_compile: true on the CPU
path. No timing asserts here."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_run import tiny_pretrain_config
from transformers import AutoTokenizer, Trainer

from mlm.data import BlockDataset, load_packed
from mlm.masking import MaskingCollator, MaskingConfig
from mlm.modeling import build_config, build_model
from mlm.options import device_values, hardware, trainer_arguments
from mlm.pretrain import PretrainConfig, pretrain

TINY = {"num_hidden_layers": 1, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}


def _cfg(**kw) -> PretrainConfig:
    return PretrainConfig(**{"data_dir": "d", "output_dir": "o", **kw})


def test_cpu_defaults_are_applied(tmp_path):
    cfg = _cfg(use_cpu=True)
    ta = device_values(cfg)
    assert cfg.optim == "adamw_torch_fused" and ta["bf16"] is False
    assert ta["dataloader_num_workers"] == 0 and ta["dataloader_pin_memory"] is False
    assert "tf32" not in ta and cfg.torch_compile is False
    args = trainer_arguments(cfg, output_dir=str(tmp_path), eval_strategy="no", learning_rate=1e-3)
    model = build_model(build_config("tiny", 128, 16, overrides=TINY))
    trainer = Trainer(model=model, args=args)
    trainer.create_optimizer()
    opt = trainer.optimizer
    opt = getattr(opt, "optimizer", opt)
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["fused"] is True


def test_explicit_options_win(monkeypatch):
    cfg = _cfg(
        use_cpu=True, optim="adamw_torch", dataloader_num_workers=2, dataloader_pin_memory=True, bf16=True
    )
    ta = device_values(cfg)
    assert cfg.optim == "adamw_torch" and ta["dataloader_num_workers"] == 2
    assert ta["dataloader_pin_memory"] is True and ta["bf16"] is True
    assert ta["dataloader_persistent_workers"] is True and ta["dataloader_prefetch_factor"] == 4


def test_gpu_defaults(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Fake GPU")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (9, 0))
    monkeypatch.setattr("os.cpu_count", lambda: 16)
    ta = device_values(_cfg())
    assert hardware(_cfg()) == "Fake GPU"
    assert ta["bf16"] is True and ta["dataloader_pin_memory"] is True and ta["tf32"] is True
    assert ta["dataloader_num_workers"] == 4 and ta["dataloader_persistent_workers"] is True
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: (7, 0))
    assert "tf32" not in device_values(_cfg())  # pre-Ampere: TrainingArguments refuses it
    ta = device_values(_cfg(use_cpu=True))  # use_cpu beats the GPU
    assert ta["bf16"] is False and ta["dataloader_num_workers"] == 0


def test_vocab_padding_option(packed_dir, tmp_path):
    tok = AutoTokenizer.from_pretrained(
        json.loads((packed_dir / "mlm_step.json").read_text())["config"]["tokenizer_dir"]
    )
    assert build_config("tiny", len(tok) + 1, 32).vocab_size % 64 == 0
    cfg = PretrainConfig(
        data_dir=str(packed_dir),
        output_dir=str(tmp_path / "run"),
        preset="tiny",
        config_overrides=TINY,
        max_steps=2,
        per_device_train_batch_size=4,
        eval_steps=0,
        save_steps=0,
        max_eval_samples=8,
        disable_tqdm=True,
        use_cpu=True,
        pad_vocab_to_multiple_of=384,
        fixed_count_masking=True,  # and the static-shape training path runs inside Trainer
    )
    metrics = pretrain(cfg)
    saved = json.loads((tmp_path / "run" / "final" / "config.json").read_text())
    assert saved["vocab_size"] % 384 == 0 and saved["vocab_size"] >= len(tok)
    assert metrics["eval_loss"] is not None and metrics["steps"] == 2


def _collator(tok, **cfg) -> MaskingCollator:
    return MaskingCollator(
        MaskingConfig(**cfg),
        vocab_size=len(tok),
        mask_token_id=tok.mask_token_id,
        pad_token_id=tok.pad_token_id,
        special_token_ids=tok.all_special_ids,
        seed=0,
    )


@pytest.fixture(scope="module")
def blocks_and_tokenizer(packed_dir):
    dsd, meta = load_packed(packed_dir)
    return BlockDataset(dsd["train"]), AutoTokenizer.from_pretrained(meta["config"]["tokenizer_dir"])


def _batches(blocks, collator, size: int = 8, n: int = 6):
    # a batch of the padded last block too, so the number masked per row differs between batches
    starts = [0, *range(size, size * (n - 1), size), len(blocks) - size]
    return [collator([blocks[i] for i in range(s, s + size)]) for s in starts]


def test_fixed_count_static_shapes(blocks_and_tokenizer):
    blocks, tok = blocks_and_tokenizer
    batches = _batches(blocks, _collator(tok, fixed_count_masking=True))
    seq = blocks[0]["input_ids"].shape[0]
    shapes = {tuple(b["masked_positions"].shape) for b in batches}
    assert shapes == {(8, round(0.15 * seq))}
    per_row_counts = set()
    for b in batches:
        labels, pos = b["labels"], b["masked_positions"]
        used = pos < seq
        counts = (labels != -100).sum(1)
        assert torch.equal(used.sum(1), counts) and len(counts.unique()) == 1  # same count in every row
        per_row_counts.add(int(counts[0]))
        for row in range(len(pos)):
            p = pos[row][used[row]]
            assert torch.equal(p, torch.nonzero(labels[row] != -100).squeeze(1))  # in order
    assert len(per_row_counts) > 1  # the count varies between batches, the shape does not
    assert "masked_positions" not in _collator(tok)([blocks[0], blocks[1]])


def test_static_path_same_loss_and_gradients(blocks_and_tokenizer):
    blocks, tok = blocks_and_tokenizer
    batch = _batches(blocks, _collator(tok, fixed_count_masking=True))[-1]
    overrides = dict(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = build_model(build_config("tiny", len(tok), 32, overrides=overrides)).train()
    static = model(**batch)
    static.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    plain = model(**{k: v for k, v in batch.items() if k != "masked_positions"})
    plain.loss.backward()
    torch.testing.assert_close(static.loss, plain.loss)
    with torch.no_grad():  # no gradient: the plain head, with logits for every slot
        assert model(**batch).logits.shape[0] == batch["masked_positions"].numel()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], atol=1e-6, rtol=1e-4, msg=n)
    model.eval()  # evaluation keeps the boolean path: logits rows = masked positions, in label order
    with torch.no_grad():
        out = model(**batch)
    assert out.logits.shape[0] == int((batch["labels"] != -100).sum())


def test_fixed_count_compiles_to_one_graph(blocks_and_tokenizer):
    """fullgraph: no graph break; error_on_recompile: one graph for batches with different mask counts."""
    import torch._dynamo

    blocks, tok = blocks_and_tokenizer
    batches = _batches(blocks, _collator(tok, fixed_count_masking=True), n=3)
    model = build_model(build_config("tiny", len(tok), 32, overrides=TINY)).train()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)
    try:
        with torch._dynamo.config.patch(error_on_recompile=True):
            for b in batches:
                compiled(**b).loss.backward()
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("threads", [1, 2])  # the weight gradient's matmul layout depends on it
@pytest.mark.parametrize("scale", [1.0, 300.0])  # 300: some target probabilities underflow to 0
def test_fused_cpu_loss_matches_cross_entropy(scale, threads, monkeypatch):
    from mlm.heads import LinearCrossEntropy

    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(40, 16, generator=g) * scale
    w0, b0 = torch.randn(300, 16, generator=g), torch.randn(300, generator=g)
    targets = torch.randint(0, 300, (40,), generator=g)
    targets[::7] = -100
    results = []
    for fused in (False, True):
        x, w, b = (t.clone().requires_grad_() for t in (x0, w0, b0))
        if fused:
            loss = LinearCrossEntropy.apply(x, w, b, targets)
        else:
            loss = torch.nn.functional.cross_entropy(torch.nn.functional.linear(x, w, b), targets)
        (2.5 * loss).backward()
        results.append((loss.detach(), x.grad, w.grad, b.grad))
    for ref, got in zip(*results):
        torch.testing.assert_close(got, ref, atol=1e-6 * scale, rtol=1e-5)
    assert torch.isfinite(results[1][0])


def test_reuse_freed_memory_switches_back():
    from mlm.cpu.memory import reuse_freed_memory

    on = reuse_freed_memory(True)
    try:
        torch.randn(1000, 10_000).exp()  # a 40 MB tensor from the heap
    finally:
        assert reuse_freed_memory(False) == on


def test_cpu_dropout_distribution_and_gradient():
    from mlm.cpu.kernels import cpu_dropout

    x = torch.ones(1_000_000, requires_grad=True)
    y = cpu_dropout(x, 0.1)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.9) < 0.002
    torch.testing.assert_close(y[kept], torch.full_like(y[kept], 1 / 0.9))
    y.sum().backward()
    torch.testing.assert_close(x.grad, y.detach())  # d/dx (x * mask) = mask


@pytest.mark.parametrize("padded", [False, True])
def test_cpu_training_attention_matches_stock(padded):
    """The CPU training kernels (attention, dropout) compute what BertForMaskedLM's do, dropout off."""
    from transformers import BertForMaskedLM

    from mlm.cpu.kernels import CpuDropout, CpuTrainingSelfAttention

    overrides = dict(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    stock = BertForMaskedLM(build_config("tiny", 128, 16, overrides=overrides))
    ours = build_model(stock.config)
    ours.load_state_dict(stock.state_dict())
    assert any(type(m) is CpuTrainingSelfAttention for m in ours.modules())
    assert any(type(m) is CpuDropout for m in ours.modules())
    ids = torch.randint(5, 128, (3, 16), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, -6:] = 0
    hidden = [m.train().bert(input_ids=ids, attention_mask=mask).last_hidden_state for m in (stock, ours)]
    torch.testing.assert_close(hidden[1], hidden[0], atol=1e-5, rtol=1e-5)
    probe = torch.randn(hidden[0].shape, generator=torch.Generator().manual_seed(2))
    (hidden[0] * probe).sum().backward()
    (hidden[1] * probe).sum().backward()
    grads = dict(stock.named_parameters())
    for name, p in ours.named_parameters():
        if p.grad is not None:
            torch.testing.assert_close(p.grad, grads[name].grad, atol=1e-5, rtol=1e-4, msg=name)


# --- torch_compile: true on the CPU path ----------------------------------------------------------------------


@pytest.mark.parametrize("architecture", ["bert", "modernbert"])
def test_torch_compile_trains_on_the_cpu(packed_dir, tmp_path, architecture):
    """The Trainer compiles the model, and both block types train and save compiled on the CPU. Our CPU kernels
    (dropout, fused QKV attention, fused decoder + loss) step aside while dynamo traces (is_compiling), so the
    graph holds stock ops; the masked-only head's data-dependent row count (`nonzero`) splits it (encoder,
    head; `fixed_count_masking` makes BERT's one graph). Backend aot_eager: dynamo's tracing and AOT
    autograd's forward and backward graphs, without inductor's C++ build (minutes on 2 busy cores: the slow
    test below)."""
    from safetensors import safe_open

    from mlm.pretrain import build_pretraining, train

    cfg = tiny_pretrain_config(packed_dir, tmp_path / "run", max_steps=2, eval_steps=0, save_steps=0,
                               torch_compile=True, torch_compile_backend="aot_eager",
                               architecture=architecture)  # fmt: skip
    torch._dynamo.reset()
    try:
        run = build_pretraining(cfg)
        out = train(run)
        assert isinstance(run.trainer.model_wrapped, torch._dynamo.eval_frame.OptimizedModule)
        assert out.global_step == 2 and math.isfinite(out.training_loss)
        run.trainer.save_model(str(tmp_path / "saved"))
    finally:
        torch._dynamo.reset()
    with safe_open(str(tmp_path / "saved" / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("_orig_mod") for k in f.keys()), "the compiled wrapper's names were saved"


@pytest.mark.slow
def test_torch_compile_with_inductor_pretrains_on_the_cpu(packed_dir, tmp_path):
    """`torch_compile: true` as a user sets it (inductor, C++ kernels built for the CPU): the whole run, final
    evaluation and export included."""
    torch._dynamo.reset()
    try:
        metrics = pretrain(tiny_pretrain_config(packed_dir, tmp_path / "run", max_steps=2, eval_steps=0,
                                                save_steps=0, torch_compile=True))  # fmt: skip
    finally:
        torch._dynamo.reset()
    assert metrics["steps"] == 2 and math.isfinite(metrics["eval_loss"])
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()

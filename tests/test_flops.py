"""mlm.flops: the FLOPs per token against hand counts and against torch's own FLOP counter on real models
built by the package's builders, the device peak (table, unknown GPU, CPU probe) and the MFU arithmetic."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from mlm import flops
from mlm.flops import (
    attended_keys,
    classifier_flops_per_token,
    device_peak_flops,
    model_flops_per_token,
    utilisation,
)
from mlm.modeling import build_config
from mlm.objectives import get_objective
from mlm.objectives.electra import electra_configs

VOCAB = 1000  # the builders pad it to 1024
V = 1024


def tiny(architecture: str = "bert", seq: int = 64, **overrides):
    """The `tiny` preset (2 layers, hidden 128, 2 heads, feed-forward 512; ModernBERT's GeGLU 320 wide)."""
    return build_config("tiny", VOCAB, seq, overrides=overrides, attn_implementation="eager",
                        architecture=architecture, cls_token_id=2, sep_token_id=3)  # fmt: skip


# ---- hand counts: multiply-adds x 2, training = 3 x forward ----


def test_bert_masked_only_head_hand_count():
    H, F, L = 128, 512, 64
    qkv, attention_out = 2 * H * 3 * H, 2 * H * H
    feed_forward = 2 * H * F + 2 * F * H  # in and out
    scores = 2 * L * H + 2 * L * H  # QK^T and AV over all 64 keys
    per_layer = qkv + attention_out + feed_forward + scores
    assert per_layer == 425_984
    head = 2 * H * H + 2 * H * V  # transform dense, decoder; on 15% of the rows
    forward = 2 * per_layer + 0.15 * head
    assert model_flops_per_token(tiny(), L, 0.15) == pytest.approx(3 * forward)


def test_bert_full_head_hand_count():
    H, F, L = 128, 512, 64
    per_layer = 8 * H * H + 4 * H * F + 4 * L * H
    head = 2 * H * H + 2 * H * V  # every position
    assert model_flops_per_token(tiny(), L, 1.0) == pytest.approx(3 * (2 * per_layer + head))
    assert model_flops_per_token(tiny(), L, 1.0) > model_flops_per_token(tiny(), L, 0.15)


def test_modernbert_hand_count_below_the_window():
    """GeGLU: Wi is H x 2F, Wo F x H (F: the feed-forward width); layer 0 global, layer 1 local (window 128,
    half 64): at 64 tokens every query of the local layer reaches every key too."""
    config = tiny("modernbert")
    H, F, L = 128, 320, 64
    assert config.intermediate_size == F and config.layer_types == ["full_attention", "sliding_attention"]
    per_layer = 2 * H * 3 * H + 2 * H * H + 2 * H * 2 * F + 2 * F * H + 4 * L * H
    head = 2 * H * H + 2 * H * V  # sparse prediction: head dense + decoder on the masked rows
    assert model_flops_per_token(config, L, 0.15) == pytest.approx(3 * (2 * per_layer + 0.15 * head))


def test_modernbert_hand_count_above_the_window():
    """At 256 tokens the local layer's queries reach the keys within 64 positions on either side: 129 inside,
    65..128 at the ends, 112.75 on average; the global layer all 256."""
    config = tiny("modernbert", seq=256)
    H, F, L = 128, 320, 256
    local_keys = (L * 129 - 2 * sum(range(1, 65))) / L
    assert local_keys == 112.75
    weights = 2 * H * 3 * H + 2 * H * H + 2 * H * 2 * F + 2 * F * H
    forward = (weights + 4 * L * H) + (weights + 4 * local_keys * H) + 0.15 * (2 * H * H + 2 * H * V)
    assert model_flops_per_token(config, L, 0.15) == pytest.approx(3 * forward)


def test_modernbert_more_local_layers_cost_less_past_the_window():
    """4 layers, a global one every 3 (ModernBERT's default), a 16-token window: layers 1 and 2 are local."""
    config = tiny("modernbert", seq=128, num_hidden_layers=4, local_attention=16)
    assert config.layer_types == [
        "full_attention",
        "sliding_attention",
        "sliding_attention",
        "full_attention",
    ]
    H, L = 128, 128
    dense = model_flops_per_token(
        tiny("modernbert", seq=128, num_hidden_layers=4, local_attention=512), L, 0.15
    )
    local_keys = (L * 17 - 8 * 9) / L
    saved = 3 * 2 * 4 * (L - local_keys) * H  # two local layers, QK^T and AV
    assert model_flops_per_token(config, L, 0.15) == pytest.approx(dense - saved)


def test_sliding_window_keys_are_the_models_own():
    """The keys counted for a local layer are those ModernBERT's attention mask lets each query see."""
    from transformers import ModernBertModel

    config = tiny("modernbert", seq=96, local_attention=32)
    model = ModernBertModel(config).eval()
    with torch.no_grad():
        out = model(torch.randint(5, VOCAB, (1, 96)), output_attentions=True)
    seen = [(a[0, 0] > 0).sum(-1).float().mean().item() for a in out.attentions]
    assert seen[0] == 96  # global
    assert seen[1] == pytest.approx(attended_keys(96, 16))
    assert attended_keys(96, 16) == pytest.approx((96 * 33 - 16 * 17) / 96)
    assert attended_keys(10, 9) == attended_keys(10, 50) == 10


def test_electra_hand_count():
    """Generator at 1/4 width (1 head, hidden 32, feed-forward 128) reading the 128-wide shared embeddings
    through a projection, its head on the masked rows; the discriminator (BERT tiny) with its binary head
    on every position."""
    disc, gen = electra_configs(tiny(), 0.25)
    H, F, Hg, Fg, E, L = 128, 512, 32, 128, 128, 64
    assert (gen.hidden_size, gen.intermediate_size, gen.embedding_size) == (Hg, Fg, E)
    generator = 2 * E * Hg + 2 * (8 * Hg * Hg + 4 * Hg * Fg + 4 * L * Hg)
    generator_head = 2 * Hg * E + 2 * E * V
    discriminator = 2 * (8 * H * H + 4 * H * F + 4 * L * H)
    discriminator_head = 2 * H * H + 2 * H * 1
    forward = generator + 0.15 * generator_head + discriminator + discriminator_head
    assert model_flops_per_token(disc, L, 0.15, generator_config=gen) == pytest.approx(3 * forward)


def test_classifier_hand_count():
    H, F, L = 128, 512, 64
    encoder = 2 * (8 * H * H + 4 * H * F + 4 * L * H)
    head = (2 * H * H + 2 * H * 3) / L  # pooler dense and classifier, once per sequence
    assert classifier_flops_per_token(tiny(), L, num_labels=3) == pytest.approx(3 * (encoder + head))


@pytest.mark.parametrize("architecture", ["bert", "electra"])
def test_count_grows_linearly_in_layers(architecture):
    def count(layers: int) -> float:
        config = tiny(num_hidden_layers=layers)
        if architecture == "electra":
            disc, gen = electra_configs(config, 0.25)
            return model_flops_per_token(disc, 64, 0.15, generator_config=gen)
        return model_flops_per_token(config, 64, 0.15)

    c1, c2, c3, c6 = count(1), count(2), count(3), count(6)
    per_layer = c2 - c1
    assert c3 - c2 == pytest.approx(per_layer)
    assert c6 - c3 == pytest.approx(3 * per_layer)
    assert c1 > per_layer  # the head (and ELECTRA's generator) counted once, not per layer


# ---- the strongest check: torch's own FLOP counter on forward + backward of the real models ----


def _batch(seq: int, masked_per_row: int, rows: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, VOCAB, (rows, seq), generator=generator)
    labels = torch.full_like(input_ids, -100)
    positions = torch.arange(1, 1 + 3 * masked_per_row, 3)
    labels[:, positions] = input_ids[:, positions]
    input_ids[:, positions] = 4  # [MASK]
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels}


def test_flops_module_imports_no_training_code():
    """mlm.flops stands alone (torch only): pretraining, the trainer and the progress bar import it."""
    import subprocess
    import sys

    code = "import sys, mlm.flops; print(sorted(m for m in sys.modules if m.startswith(('mlm.', 'transf'))))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['mlm.flops']"


def _counted(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> int:
    """Matmul FLOPs of one training step's forward and backward, as torch counts them."""
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    return counter.get_total_flops()


def _build(objective: str, config, masked_only_head: bool = True, **opts) -> torch.nn.Module:
    """The objective's own model for `config` (what pretraining trains)."""
    cfg = SimpleNamespace(objective_options=opts or None, masked_only_head=masked_only_head)
    torch.manual_seed(0)
    return get_objective(objective)(cfg, None).build_model(config)


@pytest.mark.parametrize(
    "architecture, masked_only_head",
    [("bert", True), ("bert", False), ("modernbert", True), ("modernbert", False)],
)
def test_count_matches_torch_flop_counter(architecture, masked_only_head):
    """Within 1%: 0.02% apart here, the fused CPU head's decoder carrying its bias as a matmul column."""
    seq, masked = 64, 10
    config = tiny(architecture, seq=seq)
    model = _build("mlm", config, masked_only_head=masked_only_head)
    batch = _batch(seq, masked)
    tokens = batch["input_ids"].numel()
    fraction = masked * 2 / tokens if masked_only_head else 1.0
    expected = model_flops_per_token(config, seq, fraction) * tokens
    assert _counted(model, batch) == pytest.approx(expected, rel=0.01)


def test_electra_count_matches_torch_flop_counter():
    seq, masked = 64, 10
    config = tiny(seq=seq)
    model = _build("electra", config, generator_size=0.25)
    batch = _batch(seq, masked)
    tokens = batch["input_ids"].numel()
    expected = (
        model_flops_per_token(model.config, seq, masked * 2 / tokens, generator_config=model.generator.config)
        * tokens
    )
    assert _counted(model, batch) == pytest.approx(expected, rel=0.01)


# ---- the device's peak and the MFU ----


def test_cpu_probe_is_a_positive_finite_rate():
    peak, source = device_peak_flops("cpu")
    assert math.isfinite(peak) and peak > 0
    assert source == f"measured: {torch.get_num_threads()} threads"


@pytest.mark.parametrize(
    "name, label, peak",
    [
        ("NVIDIA H100 80GB HBM3", "H100 SXM", 989.4e12),
        ("NVIDIA H100 PCIe", "H100 PCIe", 756e12),
        ("NVIDIA H100 NVL", "H100 NVL", 835e12),
        ("NVIDIA H200", "H200", 989.4e12),
        ("NVIDIA A100-SXM4-80GB", "A100", 312e12),
        ("NVIDIA A100 80GB PCIe", "A100", 312e12),
        ("NVIDIA A10G", "A10G", 125e12),
        ("NVIDIA A10", "A10", 125e12),
        ("NVIDIA L4", "L4", 121e12),
        ("NVIDIA L40S", "L40S", 362e12),
        ("NVIDIA L40", "L40", 181e12),
        ("NVIDIA GeForce RTX 4090", "RTX 4090", 165.2e12),
    ],
)
def test_known_gpu_peak_from_the_table(monkeypatch, name, label, peak):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    monkeypatch.setattr(flops, "measure_matmul_flops", lambda *a, **k: pytest.fail("measured a known GPU"))
    assert device_peak_flops("cuda") == (peak, f"table: {label}")


def test_unknown_gpu_is_measured(monkeypatch):
    calls = []

    def fake_measure(device, dtype=torch.float32, size=1024, seconds=0.2):
        calls.append((torch.device(device).type, dtype))
        return 42e12

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Imaginary X9")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(flops, "measure_matmul_flops", fake_measure)
    assert device_peak_flops(torch.device("cuda", 0)) == (42e12, "measured: bf16 matmul")
    assert calls == [("cuda", torch.bfloat16)]


def test_utilisation_arithmetic():
    got = utilisation(6e8, 10_000.0, (1e14, "table: X"))
    assert got == {
        "model_flops_per_token": 6e8,
        "model_flops_per_second": 6e12,
        "share_of_peak": pytest.approx(0.06),
        "peak_flops": 1e14,
        "peak_source": "table: X",
        "devices": 1,
    }
    four = utilisation(6e8, 40_000.0, 1e14, devices=4)  # tokens/s of all four together
    assert four["share_of_peak"] == pytest.approx(0.06) and four["peak_source"] is None

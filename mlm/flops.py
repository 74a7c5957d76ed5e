"""Model FLOPs per token, the device's peak, and the model FLOP utilisation (MFU) of a run.

The count is the standard model-FLOPs convention (PaLM, Chowdhery et al. 2022, appendix B): the matmuls the
model needs, training = 3 x forward (the backward pass is two matmuls for each of the forward's: the gradients
of the input and of the weight), whatever the implementation actually runs (no recomputation, no padding of
the kernels, no masked-out attention scores). A multiply-add is 2 FLOPs; embedding lookups, norms,
activations, softmax and biases are not matmuls and count 0. Counted per token, for each layer:
- the Q, K, V and output projections (4 x H^2 multiply-adds) and the feed-forward (BERT: H x I twice;
  ModernBERT's GeGLU: Wi projects to 2 x I, Wo back from I);
- the attention scores QK^T and their product with V (2 x keys x H multiply-adds), over the keys the token
  attends to: every position, or on ModernBERT's local layers those within the sliding window;
- the prediction head on the rows it scores (`scored_fraction` of the positions: the masked-only heads score
  the masked ones, a full head every one) and, for ELECTRA, the generator's encoder and head beside the
  discriminator's encoder and its binary head on every position.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import torch

# training FLOPs per forward FLOP: forward + backward (gradients of the inputs and of the weights)
TRAINING_MULTIPLIER = 3

# Dense bf16 tensor-core peaks (no 2:4 sparsity) from NVIDIA's datasheets, matched against
# torch.cuda.get_device_name() lowercased, in order (the first match wins). GeForce cards: bf16 with fp32
# accumulation (torch's), half their fp16-accumulate figure.
GPU_PEAK_BF16: list[tuple[str, str, float]] = [
    ("H100 NVL", r"h100.*nvl", 835e12),
    ("H100 PCIe", r"h100.*pcie", 756e12),
    ("H100 SXM", r"h100", 989.4e12),  # "NVIDIA H100 80GB HBM3"
    ("H200 NVL", r"h200.*nvl", 835e12),
    ("H200", r"h200", 989.4e12),  # also GH200
    ("B200", r"\bb200\b", 2.25e15),
    ("A100", r"a100", 312e12),
    ("A10G", r"a10g", 125e12),  # NVIDIA publishes none for this AWS part: the A10's datasheet figure
    ("A10", r"\ba10\b", 125e12),
    ("L40S", r"l40s", 362e12),
    ("L40", r"\bl40\b", 181e12),
    ("L4", r"\bl4\b", 121e12),
    ("RTX 4090", r"4090", 165.2e12),
    ("RTX 3090", r"3090(?! ti)", 71e12),
    ("RTX A6000", r"\ba6000\b", 154.8e12),
]


def attended_keys(seq_len: int, half_window: int | None = None) -> float:
    """The mean number of keys a query attends to: all `seq_len`, or with a bidirectional sliding window
    (transformers' `|query - key| <= half_window`, ModernBERT's `local_attention // 2`) those within it, fewer
    near the ends of the sequence."""
    if half_window is None or half_window >= seq_len - 1:
        return float(seq_len)
    return (seq_len * (2 * half_window + 1) - half_window * (half_window + 1)) / seq_len


def _layer_keys(config: Any, seq_len: int) -> list[float]:
    """The attended keys of each layer (ModernBERT's local layers: within the sliding window)."""
    if config.model_type != "modernbert":
        return [float(seq_len)] * config.num_hidden_layers
    types = config.layer_types or ["full_attention"] * config.num_hidden_layers
    half = config.local_attention // 2
    return [attended_keys(seq_len, half if t == "sliding_attention" else None) for t in types]


def encoder_flops_per_token(config: Any, seq_len: int) -> float:
    """Forward FLOPs per token of the encoder (no head) described by a BertConfig, ModernBertConfig or
    ElectraConfig (whose embeddings are projected when `embedding_size` differs from `hidden_size`)."""
    hidden, inner = config.hidden_size, config.intermediate_size
    ffn_in = 2 * inner if config.model_type == "modernbert" else inner  # GeGLU: Wi gives gate and value
    weights = 4 * hidden * hidden + hidden * ffn_in + inner * hidden  # multiply-adds per token per layer
    flops = sum(2 * weights + 4 * keys * hidden for keys in _layer_keys(config, seq_len))
    embedding = getattr(config, "embedding_size", hidden)
    if config.model_type == "electra" and embedding != hidden:
        flops += 2 * embedding * hidden  # embeddings_project
    return float(flops)


def mlm_head_flops(config: Any) -> float:
    """Forward FLOPs of the masked-LM head on one scored row: BERT's and ModernBERT's dense H x H then the
    decoder H x vocab; an ELECTRA generator's dense H x embedding_size then the decoder embedding x vocab."""
    hidden, vocab = config.hidden_size, config.vocab_size
    if config.model_type == "electra":
        embedding = config.embedding_size
        return float(2 * hidden * embedding + 2 * embedding * vocab)
    return float(2 * hidden * hidden + 2 * hidden * vocab)


def model_flops_per_token(
    config: Any, seq_len: int, scored_fraction: float = 1.0, generator_config: Any = None
) -> float:
    """Training FLOPs (3 x forward) per input token of masked-LM pretraining, or of ELECTRA's when
    `generator_config` is given (`config` is then the discriminator's).

    `scored_fraction`: the share of positions the MLM head scores (the masking rate with a masked-only head
    or ModernBERT's sparse prediction, 1.0 with a full head); with ELECTRA, that of the generator's head (on
    the masked rows), while the discriminator's head scores every position."""
    if generator_config is None:
        forward = encoder_flops_per_token(config, seq_len) + scored_fraction * mlm_head_flops(config)
    else:
        hidden = config.hidden_size
        generator = encoder_flops_per_token(generator_config, seq_len)
        generator += scored_fraction * mlm_head_flops(generator_config)
        discriminator = encoder_flops_per_token(config, seq_len) + 2 * hidden * hidden + 2 * hidden
        forward = generator + discriminator
    return TRAINING_MULTIPLIER * forward


def classifier_flops_per_token(config: Any, seq_len: int, num_labels: int) -> float:
    """Training FLOPs (3 x forward) per input token of fine-tuning a sequence classifier: the encoder, and
    once per sequence of `seq_len` tokens the pooler's (or head's) H x H and the classifier H x num_labels."""
    hidden = config.hidden_size
    head = (2 * hidden * hidden + 2 * hidden * num_labels) / seq_len
    return TRAINING_MULTIPLIER * (encoder_flops_per_token(config, seq_len) + head)


def _synchronize(device: torch.device) -> None:
    module = getattr(torch, device.type, None)
    if device.type != "cpu" and module is not None and hasattr(module, "synchronize"):
        module.synchronize()


def measure_matmul_flops(
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    size: int = 1024,
    seconds: float = 0.2,
) -> float:
    """The best FLOP/s of `size` x `size` matmuls on `device` in `dtype`, repeated for about `seconds` (at
    least twice, after one warm-up). A lower bound of the device's peak."""
    device = torch.device(device)
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.mm(a, b)
    _synchronize(device)
    best, spent, runs = math.inf, 0.0, 0
    while runs < 2 or (spent < seconds and runs < 50):
        start = time.perf_counter()
        torch.mm(a, b)
        _synchronize(device)
        took = time.perf_counter() - start
        best, spent, runs = min(best, took), spent + took, runs + 1
    return 2 * size**3 / max(best, 1e-9)


def gpu_table_peak(name: str) -> tuple[float, str] | None:
    """(dense bf16 peak FLOP/s, "table: NAME") for a CUDA device name in GPU_PEAK_BF16, else None."""
    lowered = name.lower()
    for label, pattern, peak in GPU_PEAK_BF16:
        if re.search(pattern, lowered):
            return peak, f"table: {label}"
    return None


def device_peak_flops(device: torch.device | str) -> tuple[float, str]:
    """(peak FLOP/s, where it comes from) of one device. CUDA: the dense bf16 peak of GPU_PEAK_BF16
    ("table: NAME"), or for a GPU not in it a short bf16 matmul probe ("measured: bf16 matmul"); CPU (and
    other devices): a short fp32 matmul probe with torch's current thread count ("measured: N threads").
    Measured peaks are what a large matmul reaches, below the datasheet's, so the MFU against them is
    higher than against a datasheet figure. Call once per run: a probe takes up to about 0.2 s."""
    device = torch.device(device)
    if device.type == "cuda":
        found = gpu_table_peak(torch.cuda.get_device_name(device))
        if found is not None:
            return found
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        label = "bf16" if dtype is torch.bfloat16 else "fp16"
        return measure_matmul_flops(device, dtype, size=4096), f"measured: {label} matmul"
    if device.type == "cpu":  # the best of two sizes: one alone read 30-40% low on a cold core (measured)
        best = max(measure_matmul_flops(device, size=n, seconds=0.25) for n in (512, 1024))
        return best, f"measured: {torch.get_num_threads()} threads"
    return measure_matmul_flops(device), f"measured: fp32 matmul on {device.type}"


def utilisation(
    flops_per_token: float, tokens_per_second: float, peak: tuple[float, str] | float, devices: int = 1
) -> dict[str, Any]:
    """The run's MFU: model FLOP/s (`flops_per_token` x `tokens_per_second`, all `devices` together) and
    their share of `devices` x the peak of one; `peak`: `device_peak_flops`'s (FLOP/s, source), or FLOP/s."""
    peak_flops, source = peak if isinstance(peak, tuple) else (float(peak), None)
    per_second = flops_per_token * tokens_per_second
    return {
        "model_flops_per_token": flops_per_token,
        "model_flops_per_second": per_second,
        "share_of_peak": per_second / (peak_flops * devices) if peak_flops > 0 else None,
        "peak_flops": peak_flops,
        "peak_source": source,
        "devices": devices,
    }

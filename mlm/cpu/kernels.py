"""CPU training kernels: dropout masks from integer draws, and BERT self-attention with one fused QKV matmul.

Each applies only in fp32 training on a CPU, outside torch.compile; everywhere else the stock module runs.
`use_cpu_training_kernels` swaps them into a model in place (same parameters, same state dict)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.bert.modeling_bert import BertSelfAttention


def _cpu_fp32_training(module: torch.nn.Module, x: torch.Tensor) -> bool:
    return (
        module.training
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.compiler.is_compiling()
    )


def cpu_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout, each element kept with probability 1 - p (to within 2**-31) and scaled by 1 / (1 - p),
    like F.dropout; the mask comes from 31-bit random integers, which torch's CPU generator draws several
    times faster than `bernoulli_`'s floats (dropout masks were 15% of a CPU training step)."""
    keep = torch.empty(x.shape, dtype=torch.int32).random_() < round((1.0 - p) * 2**31)
    return x * torch.where(keep, 1.0 / (1.0 - p), 0.0)


class CpuDropout(torch.nn.Dropout):
    """nn.Dropout that draws its mask with `cpu_dropout` in fp32 CPU training; nn.Dropout everywhere else."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p > 0 and _cpu_fp32_training(self, x):
            return cpu_dropout(x, self.p)
        return super().forward(x)


class CpuTrainingSelfAttention(BertSelfAttention):
    """BertSelfAttention with a CPU training path: one matmul for query, key and value (their weights
    concatenated, the 1/sqrt(d) scale folded into the query's), softmax, `cpu_dropout` on the attention
    probabilities, matmul. The same function as the SDPA/eager kernels (which on CPU run this math path when
    dropout is on, drawing the mask with `bernoulli_`). Everything else (GPU, inference, fp16/bf16, decoders,
    caches, torch.compile) goes to BertSelfAttention."""

    def forward(self, hidden_states, attention_mask=None, cache=None, **kwargs):
        if (
            cache is not None
            or self.is_causal
            or self.is_decoder
            or kwargs.get("output_attentions")
            or not _cpu_fp32_training(self, hidden_states)
        ):
            return super().forward(hidden_states, attention_mask=attention_mask, cache=cache, **kwargs)
        batch, length, _ = hidden_states.shape
        heads, size = self.num_attention_heads, self.attention_head_size
        weight = torch.cat([self.query.weight * self.scaling, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias * self.scaling, self.key.bias, self.value.bias])
        qkv = F.linear(hidden_states, weight, bias).view(batch, length, 3, heads, size)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, length, size)
        scores = torch.matmul(query, key.transpose(-1, -2))
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:  # True = attend (the SDPA mask)
                scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
            else:  # additive (the eager mask)
                scores = scores + attention_mask
        probs = torch.softmax(scores, dim=-1)
        if self.dropout.p > 0:
            probs = cpu_dropout(probs, self.dropout.p)
        out = torch.matmul(probs, value).transpose(1, 2).reshape(batch, length, heads * size)
        return out, None


def use_cpu_training_kernels(model: torch.nn.Module) -> None:
    """Swap in the CPU training paths of this module (same parameters, same state dict, same outputs off CPU)."""
    for module in model.modules():
        if type(module) is torch.nn.Dropout:
            module.__class__ = CpuDropout
        elif type(module) is BertSelfAttention:
            module.__class__ = CpuTrainingSelfAttention

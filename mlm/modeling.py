"""BERT size presets and the masked-only prediction head used for fast pretraining."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput
from transformers.models.bert.modeling_bert import BertSelfAttention

from data_prep.errors import UserError

PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512),
    "mini": dict(num_hidden_layers=4, hidden_size=256, num_attention_heads=4, intermediate_size=1024),
    "small": dict(num_hidden_layers=4, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "medium": dict(num_hidden_layers=8, hidden_size=512, num_attention_heads=8, intermediate_size=2048),
    "base": dict(num_hidden_layers=12, hidden_size=768, num_attention_heads=12, intermediate_size=3072),
}

# BertConfig fields a recipe may override (besides the preset's own four).
OVERRIDE_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "hidden_dropout_prob",
    "attention_probs_dropout_prob",
    "max_position_embeddings",
    "type_vocab_size",
    "initializer_range",
    "layer_norm_eps",
    "classifier_dropout",
)

# ModernBertConfig fields a recipe may override with architecture: modernbert (besides the preset's four)
MODERNBERT_OVERRIDE_KEYS = (
    "num_hidden_layers",
    "hidden_size",
    "num_attention_heads",
    "intermediate_size",
    "hidden_activation",
    "max_position_embeddings",
    "initializer_range",
    "norm_eps",
    "attention_dropout",
    "embedding_dropout",
    "mlp_dropout",
    "local_attention",
    "classifier_dropout",
    "classifier_pooling",
)
ARCHITECTURES = {
    "bert": (BertConfig, OVERRIDE_KEYS),
    "modernbert": (ModernBertConfig, MODERNBERT_OVERRIDE_KEYS),
}

ATTN_IMPLEMENTATIONS = ("sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention")


@dataclass
class ModelArguments:
    """The encoder to build: a size preset and overrides, or a checkpoint; attention kernel and head."""

    GROUP: ClassVar[str] = "model"

    architecture: str = field(
        default="bert",
        metadata={
            "help": "encoder blocks: bert, or modernbert (pre-LN, GeGLU, rotary, no biases, local/global attention)"
        },
    )
    preset: str = field(default="tiny", metadata={"help": "model size: " + ", ".join(PRESETS)})
    config_overrides: dict = field(
        default_factory=dict,
        metadata={"help": 'overrides of the preset\'s config, e.g. {"num_hidden_layers": 3}'},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "continue pretraining this masked-LM checkpoint (folder or Hub id) instead of random "
            "weights; pack the corpus with its tokenizer (`pack: tokenizer_dir` = the same)"
        },
    )
    masked_only_head: bool = field(
        default=True, metadata={"help": "score only the masked positions (fast); false = stock full head"}
    )
    attn_implementation: str = field(
        default="sdpa", metadata={"help": "attention kernel: " + ", ".join(ATTN_IMPLEMENTATIONS)}
    )
    pad_vocab_to_multiple_of: int = field(
        default=64, metadata={"help": "round the model's vocabulary up to a multiple of this (1 = off)"}
    )


def check_model_arguments(cfg: ModelArguments) -> None:
    """The model options' values (a UserError naming the first wrong one)."""
    check_model_options(cfg.preset, cfg.config_overrides, cfg.attn_implementation, cfg.architecture)
    if cfg.pad_vocab_to_multiple_of < 1:
        raise UserError(f"pad_vocab_to_multiple_of must be >= 1, got {cfg.pad_vocab_to_multiple_of}")


def check_model_options(
    preset: str, overrides: dict[str, Any], attn_implementation: str, architecture: str = "bert"
) -> None:
    """UserError for an unknown preset, architecture, override key or attention kernel, or an override of the
    wrong type."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; valid presets: {', '.join(PRESETS)}")
    if architecture not in ARCHITECTURES:
        raise UserError(f"unknown architecture {architecture!r}; valid: {', '.join(ARCHITECTURES)}")
    config_class, keys = ARCHITECTURES[architecture]
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise UserError(f"unknown model override(s) {', '.join(unknown)}; valid keys: {', '.join(keys)}")
    defaults = config_class().to_dict()
    for key, value in overrides.items():
        _check_override(key, value, defaults.get(key))
    shape = {**PRESETS[preset], **overrides}
    if shape["hidden_size"] % shape["num_attention_heads"]:
        raise UserError(
            f"hidden_size {shape['hidden_size']} is not a multiple of num_attention_heads "
            f"{shape['num_attention_heads']}"
        )
    if attn_implementation not in ATTN_IMPLEMENTATIONS:
        raise UserError(
            f"unknown attn_implementation {attn_implementation!r}; choose one of: {', '.join(ATTN_IMPLEMENTATIONS)}"
        )


_POSITIVE_INTS = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                  "max_position_embeddings", "type_vocab_size", "local_attention")  # fmt: skip
_PROBABILITIES = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout",
                  "attention_dropout", "embedding_dropout", "mlp_dropout")  # fmt: skip
_POSITIVE_NUMBERS = ("initializer_range", "layer_norm_eps", "norm_eps")
_CHOICES = {"classifier_pooling": ("cls", "mean")}


def _check_override(key: str, value: Any, default: Any) -> None:
    """One model override: the type and range the config needs (a UserError naming it otherwise)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in ("hidden_act", "hidden_activation"):
        from transformers.activations import ACT2FN

        ok, want = isinstance(value, str) and value in ACT2FN, f"one of {', '.join(sorted(ACT2FN))}"
    elif key in _POSITIVE_INTS:
        ok, want = number and isinstance(value, int) and value >= 1, "a positive integer"
    elif key in _PROBABILITIES:
        ok = (value is None and key == "classifier_dropout") or (number and 0 <= value < 1)
        want = "a number in [0, 1)"
    elif key in _POSITIVE_NUMBERS:
        ok, want = number and 0 < value < float("inf"), "a positive number"
    elif key in _CHOICES:
        ok, want = value in _CHOICES[key], f"one of {', '.join(_CHOICES[key])}"
    else:  # of the default's type
        kind = type(default if default is not None else value)
        ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)
        want = "a number" if kind in (int, float) else f"a {kind.__name__}"
    if not ok:
        raise UserError(f"config_overrides: {key} should be {want}, got {value!r}")


def geglu_width(intermediate_size: int) -> int:
    """A GeGLU feed-forward width with the parameters of a plain one `intermediate_size` wide (2/3 of it,
    in multiples of 64): ModernBERT at a BERT preset keeps the preset's size."""
    return max(64, 64 * round(intermediate_size * 2 / 3 / 64))


def build_config(
    preset: str,
    vocab_size: int,
    max_seq_length: int,
    pad_token_id: int = 0,
    overrides: dict[str, Any] | None = None,
    attn_implementation: str = "sdpa",
    pad_vocab_to_multiple_of: int = 64,
    architecture: str = "bert",
    cls_token_id: int | None = None,
    sep_token_id: int | None = None,
) -> BertConfig | ModernBertConfig:
    """The model config of `architecture` at `preset`, with the vocabulary rounded up to a multiple of
    `pad_vocab_to_multiple_of`. ModernBERT also names its [CLS] (= bos) and [SEP] (= eos) ids: give them, or
    its defaults (ids of ModernBERT's own 50k vocabulary) are kept."""
    overrides = dict(overrides or {})
    check_model_options(preset, overrides, attn_implementation, architecture)
    if vocab_size < 1 or max_seq_length < 1:
        raise UserError(
            f"vocab_size and max_seq_length must be positive, got {vocab_size} and {max_seq_length}"
        )
    if pad_vocab_to_multiple_of > 1:
        vocab_size = -(-vocab_size // pad_vocab_to_multiple_of) * pad_vocab_to_multiple_of
    preset_values = dict(PRESETS[preset])
    if architecture == "modernbert":
        preset_values["intermediate_size"] = geglu_width(preset_values["intermediate_size"])
    kwargs: dict[str, Any] = {
        **preset_values,
        "max_position_embeddings": max(512, max_seq_length),
        **overrides,
    }
    if kwargs["max_position_embeddings"] < max_seq_length:
        raise UserError(
            f"max_position_embeddings {kwargs['max_position_embeddings']} is below max_seq_length {max_seq_length}"
        )
    if architecture == "modernbert":
        # a classifier on the mean of the token states, not [CLS]: MLM never trains [CLS] (no next-sentence
        # task), and on IMDB the mean scored 1-6 points higher after pretraining (BENCHMARKS.md, "The MLM plateau")
        kwargs.setdefault("classifier_pooling", "mean")
        named = {"cls_token_id": cls_token_id, "bos_token_id": cls_token_id,
                 "sep_token_id": sep_token_id, "eos_token_id": sep_token_id}  # fmt: skip
        kwargs.update({k: v for k, v in named.items() if v is not None})
    config_class = ARCHITECTURES[architecture][0]
    return config_class(
        vocab_size=vocab_size, pad_token_id=pad_token_id, attn_implementation=attn_implementation, **kwargs
    )


def _fused_loss_applies(rows: torch.Tensor) -> bool:
    """The fused decoder + loss is for fp32 CPU training (where memory traffic, not FLOPs, is the waste);
    `rows` is its input (or the decoder weight: the same checks)."""
    return (
        rows.device.type == "cpu"
        and rows.dtype == torch.float32
        and torch.is_grad_enabled()
        and rows.requires_grad
        and not torch.is_autocast_enabled("cpu")
        and not torch.compiler.is_compiling()
    )


class LinearCrossEntropy(torch.autograd.Function):
    """mean(cross_entropy(x @ weight.T + bias, targets)) over targets != -100: the value and gradients of
    `F.cross_entropy(F.linear(x, weight, bias), targets)` with fewer passes over the (rows, vocab) tensor,
    which is what the masked-only head's CPU time goes to besides its three matmuls:
    - the bias rides in the matmul (a column of ones on x, the bias as a column of the weight) instead of
      being copied into the output before it (addmm) and summed out of the gradient after;
    - softmax once, kept for backward (no log-softmax output, zero-filled NLL gradient or softmax
      recomputation); its memory becomes the logits' gradient in place (softmax - one-hot);
    - the per-row loss weights go onto the small (rows, hidden) operands, and the weight gradient takes the
      matmul layout that is faster for MKL with the current thread count. Backward runs once."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, targets: torch.Tensor):
        x1 = torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)
        logits = x1 @ torch.cat([weight, bias[:, None]], dim=1).t()
        probs = torch.softmax(logits, dim=1)
        valid = targets != -100
        safe = targets.masked_fill(~valid, 0)
        count = valid.sum()
        p = probs.gather(1, safe[:, None]).squeeze(1)
        nll = -torch.log(p)
        tiny = p < 1e-30  # underflow: the exact log-sum-exp form for these rows
        if bool(tiny.any()):
            rows = logits[tiny]
            nll[tiny] = torch.logsumexp(rows, 1) - rows.gather(1, safe[tiny][:, None]).squeeze(1)
        del logits
        loss = (nll * valid).sum() / count
        ctx.save_for_backward(x1, weight, probs, safe, valid, count)
        return loss

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x1, weight, g, safe, valid, count = ctx.saved_tensors
        weights = valid.to(g.dtype)
        g.scatter_add_(1, safe[:, None], -weights[:, None])  # softmax - one-hot, in place
        weights = weights * (grad / count)  # d loss / d logits = weights[:, None] * g
        grad_x = (g @ weight).mul_(weights[:, None]) if ctx.needs_input_grad[0] else None
        if torch.get_num_threads() == 1:  # MKL on one thread: (x^T g)^T and a transposing copy is faster
            grad_wb = (x1 * weights[:, None]).t() @ g  # (hidden + 1, vocab)
            grad_w, grad_b = grad_wb[:-1].t().contiguous(), grad_wb[-1]
        else:  # several threads: g^T x directly
            grad_w, grad_b = g.t() @ (x1[:, :-1] * weights[:, None]), weights @ g
        return (
            grad_x,
            grad_w if ctx.needs_input_grad[1] else None,
            grad_b if ctx.needs_input_grad[2] else None,
            None,
        )


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
    """Swap in the CPU training paths above (same parameters, same state dict, same outputs off CPU)."""
    for module in model.modules():
        if type(module) is torch.nn.Dropout:
            module.__class__ = CpuDropout
        elif type(module) is BertSelfAttention:
            module.__class__ = CpuTrainingSelfAttention


class SavesAsNative:
    """Mixin for a training-time subclass of a `transformers` model: `save_pretrained` writes the native class
    (`native_architecture`) into config.json, so `Auto*` classes load the folder without custom code."""

    native_architecture: ClassVar[str] = ""

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        push_to_hub: bool = False,
        **kwargs,
    ) -> None:
        hub_keys = ("repo_id", "commit_message", "create_pr", "private", "token")
        hub = {k: kwargs.pop(k) for k in hub_keys if k in kwargs}
        super().save_pretrained(save_directory, is_main_process=is_main_process, **kwargs)
        self.config.architectures = [self.native_architecture]
        if is_main_process:
            self.config.save_pretrained(save_directory)
            if push_to_hub:
                self.push_to_hub(
                    hub.pop("repo_id", os.path.basename(os.path.normpath(save_directory))), **hub
                )


class BertForMaskedOnlyLM(SavesAsNative, BertForMaskedLM):
    """BertForMaskedLM that, given labels, runs the prediction head on the masked positions only.

    Same modules and parameter names as BertForMaskedLM, and it saves as one: config.json says
    `BertForMaskedLM`, so `AutoModelForMaskedLM.from_pretrained` loads the folder without custom code.
    With labels, `logits` has shape (n_masked, vocab_size), rows in the order of `labels[labels != -100]`;
    without labels it scores every position like BertForMaskedLM (fill-mask, inference). In training mode
    with `masked_positions` (from fixed-count masking) it scores those (batch, slots) positions instead:
    static shapes, same loss; `logits` then has batch * slots rows.
    """

    native_architecture = "BertForMaskedLM"

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        use_cpu_training_kernels(self)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        masked_positions: torch.Tensor | None = None,
    ) -> MaskedLMOutput:
        hidden = self.bert(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
        ).last_hidden_state
        if labels is None:
            return MaskedLMOutput(logits=self.cls.predictions(hidden))
        if masked_positions is not None and self.training:
            return self._static_masked_loss(hidden, labels, masked_positions)
        labels = labels.reshape(-1)
        keep = labels != -100
        return self._head_loss(hidden.reshape(-1, hidden.size(-1))[keep], labels[keep])

    def _head_loss(self, rows: torch.Tensor, targets: torch.Tensor) -> MaskedLMOutput:
        """Transform + decoder (+ bias) on the gathered rows, mean cross-entropy over targets != -100."""
        if _fused_loss_applies(rows):
            decoder = self.cls.predictions.decoder
            loss = LinearCrossEntropy.apply(
                self.cls.predictions.transform(rows), decoder.weight, decoder.bias, targets
            )
            return MaskedLMOutput(loss=loss)  # training: the logits were turned into the gradient
        logits = self.cls.predictions(rows)
        loss = F.cross_entropy(logits.float(), targets, ignore_index=-100)
        return MaskedLMOutput(loss=loss, logits=logits)

    def _static_masked_loss(
        self, hidden: torch.Tensor, labels: torch.Tensor, positions: torch.Tensor
    ) -> MaskedLMOutput:
        """Training with `masked_positions` (fixed-count masking): gather a static number of rows, no
        data-dependent shapes. Slots holding L (the sequence length) are unused: their rows are scored but
        carry label -100, so the loss is the same mean over the masked positions as the boolean path."""
        seq = hidden.size(1)
        used = positions < seq
        positions = positions.clamp(max=seq - 1)
        rows = hidden.gather(1, positions.unsqueeze(-1).expand(-1, -1, hidden.size(-1)))
        targets = labels.gather(1, positions).masked_fill(~used, -100)
        return self._head_loss(rows.reshape(-1, hidden.size(-1)), targets.reshape(-1))


class ModernBertForMaskedOnlyLM(SavesAsNative, ModernBertForMaskedLM):
    """ModernBertForMaskedLM whose sparse prediction (the head on masked positions only) runs the decoder and
    the loss as one `LinearCrossEntropy` in fp32 CPU training, as BertForMaskedOnlyLM does: the (masked,
    vocab) logits are never kept, which is most of the head's CPU time with a large vocabulary. The output
    then has the loss and no logits. Everything else (GPU, evaluation, no labels) is ModernBertForMaskedLM's
    own forward; config.json says `ModernBertForMaskedLM`."""

    native_architecture = "ModernBertForMaskedLM"

    def __init__(self, config: ModernBertConfig) -> None:
        super().__init__(config)
        # transformers picks the loss from the class name, which names none here (it would be causal LM's)
        self.loss_type = "ForMaskedLM"

    def forward(self, input_ids=None, attention_mask=None, labels=None, **kwargs) -> MaskedLMOutput:
        decoder = self.decoder
        fused = (
            labels is not None
            and self.training
            and self.sparse_prediction
            and self.sparse_pred_ignore_index == -100
            and decoder.bias is not None
            and _fused_loss_applies(decoder.weight)
        )
        if not fused:
            return super().forward(
                input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs
            )
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs)[0]
        labels = labels.reshape(-1)
        keep = labels != self.sparse_pred_ignore_index
        rows = self.head(hidden.reshape(labels.shape[0], -1)[keep])
        return MaskedLMOutput(loss=LinearCrossEntropy.apply(rows, decoder.weight, decoder.bias, labels[keep]))


# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -3, -4
_GLIBC_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # where glibc's dynamic threshold tops out (64-bit)


def _glibc():
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


def reuse_freed_memory(enable: bool = True) -> bool:
    """CPU training: let glibc's malloc keep and reuse freed memory instead of returning it to the system.

    Every training step allocates and frees the same large tensors (the head's n_masked x vocab logits, their
    softmax and gradients: 75 MB each for 600 masked tokens and a 30k vocabulary). glibc serves each block
    over 32 MB with a fresh mmap and unmaps it on free, so every step page-faults, and the kernel zeroes,
    hundreds of MB. With mmap and trimming off, the blocks are reused. Process-wide; the memory stays with
    the process (its peak is kept). `enable=False` returns to glibc's usual steady state (32 MB mmap
    threshold) and gives the freed memory back. Returns False, changing nothing, where glibc is not the C
    library (macOS, Windows, musl)."""
    libc = _glibc()
    if libc is None:
        return False
    if enable:
        ok = libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    else:
        ok = (
            libc.mallopt(_M_MMAP_MAX, 65536)
            and libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_MMAP_THRESHOLD_MAX)
            and libc.mallopt(_M_TRIM_THRESHOLD, 2 * _GLIBC_MMAP_THRESHOLD_MAX)
        )
        libc.malloc_trim(0)
    return bool(ok)


def release_freed_memory() -> bool:
    """Give the pages of freed memory back to the system (glibc's `malloc_trim`), wherever they lie in the
    heap; the memory stays reserved for reuse. False, doing nothing, where glibc is not the C library."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


def build_model(config: BertConfig | ModernBertConfig, masked_only_head: bool = True) -> PreTrainedModel:
    """A freshly initialised MLM model. BERT: the masked-only head (fast) or the plain BertForMaskedLM.
    ModernBERT: its own sparse prediction (the head on masked positions only), fused with the loss on CPU
    (`ModernBertForMaskedOnlyLM`), or the plain `ModernBertForMaskedLM`."""
    if config.model_type == "modernbert":
        config.sparse_prediction = masked_only_head
        return (ModernBertForMaskedOnlyLM if masked_only_head else ModernBertForMaskedLM)(config)
    return (BertForMaskedOnlyLM if masked_only_head else BertForMaskedLM)(config)


def load_masked_lm(name: str, masked_only_head: bool = True) -> PreTrainedModel:
    """A masked-LM checkpoint (folder or Hub id: BERT, RoBERTa, ELECTRA generator, ModernBERT, ...) to continue
    pretraining; a BERT one gets the masked-only head. UserError when it cannot be loaded or has no
    masked-LM head."""
    from transformers import AutoConfig, AutoModelForMaskedLM

    try:
        config = AutoConfig.from_pretrained(name)
        if config.model_type == "bert" and masked_only_head:
            model, info = BertForMaskedOnlyLM.from_pretrained(name, output_loading_info=True)
        else:
            load = AutoModelForMaskedLM.from_pretrained
            if config.model_type == "modernbert":
                config.sparse_prediction = masked_only_head
                load = ModernBertForMaskedOnlyLM.from_pretrained if masked_only_head else load
            model, info = load(name, config=config, output_loading_info=True)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(
            f"model_name_or_path: cannot load a masked-LM model from {name}: {str(e).splitlines()[0]}"
        ) from None
    if info["missing_keys"]:
        missing = ", ".join(sorted(info["missing_keys"])[:3])
        raise UserError(f"model_name_or_path: {name} has no masked-LM head (missing weights: {missing}, ...)")
    return model


def check_tokenizer_matches(
    config_or_model: BertConfig | PreTrainedModel, tokenizer: Any, where: str
) -> None:
    """Raise UserError when `tokenizer` does not fit the model's vocabulary or pad id; `where` names the folders."""
    config = getattr(config_or_model, "config", config_or_model)
    tok_name = getattr(tokenizer, "name_or_path", "") or "(tokenizer)"
    model_name = getattr(config, "_name_or_path", "") or "(model)"
    if len(tokenizer) > config.vocab_size:
        raise UserError(
            f"{where}: tokenizer {tok_name} has {len(tokenizer)} tokens but model {model_name} only "
            f"{config.vocab_size}; use the tokenizer the model was trained with"
        )
    if tokenizer.pad_token_id != config.pad_token_id:
        raise UserError(
            f"{where}: tokenizer {tok_name} has pad id {tokenizer.pad_token_id} but model {model_name} "
            f"expects {config.pad_token_id}; use the tokenizer the model was trained with"
        )


def count_parameters(model: torch.nn.Module, exclude_embeddings: bool = False) -> int:
    """Number of unique parameters (tied weights once); optionally without the embedding tables."""
    skip = set()
    if exclude_embeddings:
        skip = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    return sum(p.numel() for p in model.parameters() if id(p) not in skip)

"""The masked-only prediction heads and the fused decoder + cross-entropy they train with.

`BertForMaskedOnlyLM` and `ModernBertForMaskedOnlyLM` score only the masked positions and save as the native
`*ForMaskedLM` classes (`SavesAsNative`); `LinearCrossEntropy` is their decoder and loss in one autograd
function for fp32 CPU training."""

from __future__ import annotations

import os
from typing import ClassVar

import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM
from transformers.modeling_outputs import MaskedLMOutput

from mlm.cpu.kernels import use_cpu_training_kernels


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
    _no_split_modules = ["BertLayer"]  # FSDP's unit (accelerate wraps these; transformers' BERT names none)

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

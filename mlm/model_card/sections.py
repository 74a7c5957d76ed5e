"""The card's body, one function per section: each returns its Markdown lines, [] when it has nothing known.

Nothing here knows an objective: what it is, its facts and its metric names come from `ctx.objective`."""

from __future__ import annotations

from collections.abc import Callable

from mlm.model_card.context import CardContext
from mlm.model_card.text import (
    bullets,
    code,
    fmt,
    fmt_duration,
    fmt_utilisation,
    humanize,
    known,
    metric_items,
    metric_name,
    number,
    table,
)

RECORDED = "Trained with the `mlm` package; every number below was recorded by the run."


def summary(ctx: CardContext) -> str:
    """One paragraph: what the model is, how it was trained, on what."""
    record, finetune = ctx.record, ctx.finetune
    details = [
        f"`{record.model.preset}` preset" if known(record.model.preset) else "",
        f"{fmt(ctx.parameters)} parameters" if known(ctx.parameters) else "",
    ]
    details = [d for d in details if d]
    text = f"A small {ctx.architecture_name} encoder" + (f" ({', '.join(details)})" if details else "")
    task = (ctx.pipeline_tag or "a task").replace("-", " ")
    task += f" ({finetune.task})" if known(finetune.task) else ""
    if ctx.finetuned and finetune.from_scratch:
        return f"{text} trained from random weights for {task}. {RECORDED}"
    # a base model trained elsewhere (no run record of its own) has no pretraining to tell of
    pretrained = not ctx.finetuned or known(ctx.objective.description) or known(record.corpus.spec)
    if pretrained:
        start = record.model.init_from
        text += f" pretrained further from `{start}`" if known(start) else " pretrained from scratch"
        text += f" with {ctx.objective.description}" if known(ctx.objective.description) else ""
        text += f" on `{fmt(record.corpus.spec)}`" if known(record.corpus.spec) else ""
    if ctx.finetuned:
        text += ", then fine-tuned" if pretrained else " fine-tuned"
        text += f" from `{finetune.base_model}`" if known(finetune.base_model) else ""
        text += f" for {task}"
    return f"{text}. {RECORDED}"


def corpus(ctx: CardContext) -> list[str]:
    c = ctx.record.corpus
    return bullets(
        [("Spec", code(c.spec)), ("Documents", number(c.documents)), ("Tokens", number(c.tokens)),
         ("Fingerprint", code(c.fingerprint))]
    )  # fmt: skip


def tokenizer(ctx: CardContext) -> list[str]:
    tok = ctx.record.tokenizer
    vocab = tok.vocab_size or ctx.folder.config.get("vocab_size")
    mask = f"`{ctx.mask_token}`" if ctx.pipeline_tag == "fill-mask" else None
    return bullets([("Kind", tok.kind), ("Vocabulary size", number(vocab)), ("Mask token", mask)])


def architecture(ctx: CardContext) -> list[str]:
    model, config = ctx.record.model, ctx.folder.config
    return bullets(
        [
            ("Preset", code(model.preset)),
            ("Started from", code(model.init_from)),
            ("Class", code(ctx.folder.architecture)),
            ("Layers", number(model.num_hidden_layers or config.get("num_hidden_layers"))),
            ("Hidden size", number(model.hidden_size or config.get("hidden_size"))),
            ("Attention heads", number(model.num_attention_heads or config.get("num_attention_heads"))),
            ("Intermediate size", number(config.get("intermediate_size"))),
            ("Maximum sequence length", number(ctx.max_seq_length)),
            ("Parameters", number(ctx.parameters)),
        ]
    )


def training(ctx: CardContext) -> list[str]:
    """How this run trained: the objective's facts (pretraining), the fine-tuning data, steps, schedule."""
    t, finetune = ctx.record.training, ctx.finetune
    objective_facts = [] if ctx.finetuned else [(k, fmt(v)) for k, v in ctx.objective.facts.items()]
    return bullets(
        [
            ("Training examples", number(finetune.train_samples)),
            ("Problem type", finetune.problem_type),
            ("Steps", number(t.steps)),
            ("Epochs", number(t.epochs)),
            ("Tokens seen", number(t.tokens_seen)),
            ("Batch size", number(t.batch_size)),
            ("Learning rate", _schedule(ctx)),
            *objective_facts,
            ("Hardware", t.hardware),
            ("Wall time", fmt_duration(t.wall_time_s) if known(t.wall_time_s) else None),
            ("Throughput", _throughput(t)),
            (
                "Model FLOPs per token",
                number(round(t.model_flops_per_token)) if known(t.model_flops_per_token) else None,
            ),
            (
                "Model FLOP utilisation (MFU)",
                fmt_utilisation(t.share_of_peak, t.peak_flops, t.peak_source, t.devices),
            ),
        ]
    )


def _throughput(t) -> str | None:
    """`1,234 tokens/s`, or `1,234 tokens/s (non-padding tokens)` when fine-tuning counted those."""
    if not known(t.tokens_per_second):
        return None
    counted = f" ({t.tokens_counted} tokens)" if known(t.tokens_counted) else ""
    return f"{t.tokens_per_second:,.0f} tokens/s{counted}"


def _schedule(ctx: CardContext) -> str | None:
    t = ctx.record.training
    parts = [
        f"peak {fmt(t.learning_rate)}" if known(t.learning_rate) else "",
        f"{t.lr_scheduler_type} schedule" if known(t.lr_scheduler_type) else "",
        f"warmup {fmt(t.warmup)}" if known(t.warmup) else "",
    ]
    return ", ".join(p for p in parts if p) or None


def evaluation(ctx: CardContext) -> list[str]:
    """The pretraining metrics (named by the objective), then one table per fine-tuning split."""
    lines: list[str] = []
    rows = metric_items(ctx.record.eval)
    if rows:
        what = humanize(ctx.objective.description or "pretraining")
        labels = ctx.objective.metric_labels
        lines += [f"{what}, on the held-out validation split:", ""]
        lines += table(
            ["Metric", "Value"],
            [[labels.get(k) or humanize(metric_name(k)), fmt(v)] for k, v in rows.items()],
        )
    for split, metrics in ctx.finetune.metrics.items():
        split_lines = _split_table(ctx, split, metric_items(metrics))
        lines += [""] + split_lines if lines and split_lines else split_lines
    return lines


def _split_table(ctx: CardContext, split: str, metrics: dict[str, float]) -> list[str]:
    if not metrics:
        return []
    task = f" ({ctx.finetune.task})" if known(ctx.finetune.task) else ""
    lead = [f"Fine-tuning{task}, on the {split} split:", ""]
    scratch = metric_items(ctx.finetune.scratch_metrics.get(split))
    if not scratch:
        return lead + table(
            ["Metric", "Value"], [[humanize(metric_name(k)), fmt(v)] for k, v in metrics.items()]
        )
    rows = [
        [humanize(metric_name(k)), fmt(v), fmt(scratch[k]) if k in scratch else "-"]
        for k, v in metrics.items()
    ]
    return lead + table(["Metric", "This model", "Same architecture trained from scratch"], rows)


def usage(ctx: CardContext) -> list[str]:
    """A snippet for the checkpoint's pipeline tag; a plain `AutoModel` one for any other."""
    return _USAGE.get(ctx.pipeline_tag or "", _features_usage)(ctx)


def _fill_mask_usage(ctx: CardContext) -> list[str]:
    return _python(
        "from transformers import pipeline",
        "",
        f'fill_mask = pipeline("fill-mask", model="{ctx.model_id}")',
        f'print(fill_mask("The quick brown fox jumps over the {ctx.mask_token} dog."))',
    )


def _classification_usage(ctx: CardContext) -> list[str]:
    """The pipeline for the problem type: one label (softmax), every label's sigmoid, or the score."""
    problem = ctx.finetune.problem_type or ctx.folder.config.get("problem_type")
    options, comment = "", ""
    if problem == "multi_label_classification":
        options, comment = ", top_k=None", "  # every label's probability; those >= 0.5 apply"
    elif problem == "regression":
        comment = "  # the predicted score"
    lines = _python(
        "from transformers import pipeline",
        "",
        f'classifier = pipeline("text-classification", model="{ctx.model_id}"{options})',
        f'print(classifier("Put the text to classify here.")){comment}',
    )
    labels = ctx.folder.labels or ctx.finetune.label_names or []
    if problem == "regression" or not labels:
        return lines
    return lines + ["", "Labels: " + ", ".join(f"`{v}`" for v in labels) + "."]


def _features_usage(ctx: CardContext) -> list[str]:
    return _python(
        "from transformers import AutoModel, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{ctx.model_id}")',
        f'model = AutoModel.from_pretrained("{ctx.model_id}")',
        'inputs = tokenizer("Put your text here.", return_tensors="pt")',
        "features = model(**inputs).last_hidden_state  # one vector per token",
    )


def _python(*lines: str) -> list[str]:
    return ["```python", *lines, "```"]


_USAGE: dict[str, Callable[[CardContext], list[str]]] = {
    "fill-mask": _fill_mask_usage,
    "text-classification": _classification_usage,
}


# model types newer than the transformers release our other checkpoints load with (4.44)
MIN_TRANSFORMERS = {"modernbert": "4.48"}


def limitations(ctx: CardContext) -> list[str]:
    record = ctx.record
    if ctx.finetuned and ctx.finetune.from_scratch:
        lines = [
            "- Trained from random weights on its labelled data only: it knows only what those examples hold."
        ]
    else:
        size = f"{fmt(record.corpus.tokens)} tokens" if known(record.corpus.tokens) else "a small corpus"
        lines = [
            f"- A small model pretrained from scratch on {size}: it knows only what that corpus contains, "
            "and is far weaker than large pretrained encoders on general text."
        ]
    if known(ctx.max_seq_length):
        lines.append(
            f"- It reads at most {fmt(ctx.max_seq_length)} tokens; longer inputs must be truncated or split."
        )
    if known(record.language):
        lines.append(f"- Trained on `{fmt(record.language)}` text only.")
    if ctx.model_type in MIN_TRANSFORMERS:
        lines.append(f"- Loads with `transformers` {MIN_TRANSFORMERS[ctx.model_type]} or newer, the first release "
                     f"with its architecture.")  # fmt: skip
    if ctx.finetuned:
        lines.append("- Fine-tuned and evaluated on one task; expect lower scores on other data.")
    else:
        lines.append(
            "- Evaluation figures depend on the tokenizer and the validation split: compare them only with models "
            "that share both."
        )
    lines.append("- Not evaluated for bias or harmful outputs; do not use it for decisions about people.")
    return lines


SECTIONS: list[tuple[str, Callable[[CardContext], list[str]]]] = [
    ("Corpus", corpus),
    ("Tokenizer", tokenizer),
    ("Architecture", architecture),
    ("Training", training),
    ("Evaluation", evaluation),
    ("How to use", usage),
    ("Limitations", limitations),
]

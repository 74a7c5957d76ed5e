"""The card's YAML metadata, through `huggingface_hub.ModelCardData` (and `EvalResult` for the model-index).

The model-index names, for each split's scores, the data they were measured on (its Hub id, else the name the
user gave, else the file's stem) and that split, with metric ids the Hub knows (https://hf.co/metrics)."""

from __future__ import annotations

from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from mlm.model_card.context import CardContext
from mlm.model_card.text import humanize, metric_items, metric_name
from mlm.run_record import FinetuneFacts, hub_dataset_names, spec_parts

# Our metric names that the Hub knows by another id: the id and its arguments.
HUB_METRICS: dict[str, tuple[str, dict[str, Any]]] = {
    "f1": ("f1", {"average": "binary"}),
    "f1_macro": ("f1", {"average": "macro"}),
    "f1_micro": ("f1", {"average": "micro"}),
    "f1_weighted": ("f1", {"average": "weighted"}),
}


def card_data(ctx: CardContext) -> ModelCardData:
    """library, pipeline tag, licence (only one the user gave), language, tags, datasets, base model, a
    model-index of the fine-tuning metrics (one result per split), and a widget example of the task."""
    record, finetune = ctx.record, ctx.finetune
    language = record.language or None
    results = eval_results(ctx)
    return ModelCardData(
        library_name="transformers",
        pipeline_tag=ctx.pipeline_tag,
        license=record.license or None,
        language=language[0] if language and len(language) == 1 else language,
        tags=tags(ctx),
        datasets=datasets(ctx) or None,
        base_model=finetune.base_model if _hub_base_model(ctx) else None,
        model_name=ctx.title if results else None,
        eval_results=results or None,
        widget=widget(ctx),
    )


def widget(ctx: CardContext) -> list[dict[str, str]] | None:
    """The Hub's inference widget, filled with a text of the classifier's evaluation data."""
    if ctx.pipeline_tag != "text-classification" or not ctx.finetune.example:
        return None
    return [{"text": ctx.finetune.example}]


def tags(ctx: CardContext) -> list[str]:
    """`mlm`, the model type, then the objective's tags (pretrained) or the pipeline tag (fine-tuned)."""
    own = [ctx.pipeline_tag] if ctx.finetuned or not ctx.objective.tags else ctx.objective.tags
    return list(dict.fromkeys(t for t in ["mlm", ctx.model_type, *own] if t))


def datasets(ctx: CardContext) -> list[str]:
    """The record's Hub datasets, and those named in its corpus and labelled-data specs."""
    record = ctx.record
    names = [
        *(record.datasets or []),
        *hub_dataset_names(record.corpus.spec),
        *(ctx.finetune.datasets or []),
        *hub_dataset_names(ctx.finetune.data),
    ]
    return list(dict.fromkeys(names))


def eval_results(ctx: CardContext) -> list[EvalResult]:
    """One `EvalResult` per fine-tuning metric (losses left out) and split: the data and split it was
    measured on, the Hub's metric id and its averaging."""
    if not ctx.finetuned or not ctx.pipeline_tag:
        return []
    out = []
    for split, metrics in ctx.finetune.metrics.items():
        dataset_type, dataset_name, config = split_dataset(ctx.finetune, split)
        for key, value in metric_items(metrics).items():
            if "loss" in key:
                continue
            metric_type, args = HUB_METRICS.get(metric_name(key), (metric_name(key), None))
            out.append(
                EvalResult(
                    task_type=ctx.pipeline_tag,
                    task_name=ctx.pipeline_tag.replace("-", " ").title(),
                    dataset_type=dataset_type,
                    dataset_name=dataset_name,
                    dataset_config=config,
                    dataset_split=split,
                    metric_type=metric_type,
                    metric_value=value,
                    metric_name=humanize(metric_name(key)),
                    metric_args=args,
                )
            )
    return out


def split_dataset(finetune: FinetuneFacts, split: str) -> tuple[str, str, str | None]:
    """(type, name, config) of the data a split's scores were measured on: a Hub dataset's id and config,
    else the Hub dataset the user named, else the file's (or folder's) stem. `type` is the Hub's required
    dataset id: for a local file, the stem again."""
    spec = split_spec(finetune, split)
    source = spec_parts(spec)[0] if spec else ""
    if source.startswith("hf:"):
        name, _, config = source[3:].partition(":")
        return name, name, config or None
    if finetune.datasets:
        return finetune.datasets[0], finetune.datasets[0], None
    stem = source.removeprefix("builtin:").split("@")[0].removesuffix(".gz").rsplit(".", 1)[0]
    stem = stem or finetune.task or "labelled data"
    return stem, stem, None


def split_spec(finetune: FinetuneFacts, split: str) -> str | None:
    """The spec of the data a split was scored on: `data` is train, then validation and test as given, and
    `metrics` holds one split per evaluated spec, in that order; older records: the spec naming the split,
    else the first."""
    specs, splits = finetune.data or [], list(finetune.metrics)
    if len(specs) == len(splits) + 1 and split in splits:
        return specs[1 + splits.index(split)]
    named = [s for s in specs if spec_parts(s)[1] == split]
    return (named or specs or [None])[0]


def _hub_base_model(ctx: CardContext) -> bool:
    base = ctx.finetune.base_model
    return bool(ctx.finetuned and base and "/" in base and not ctx.finetune.from_scratch)

"""The card's YAML metadata, through `huggingface_hub.ModelCardData` (and `EvalResult` for the model-index)."""

from __future__ import annotations

from huggingface_hub import EvalResult, ModelCardData

from mlm.model_card.context import CardContext
from mlm.model_card.text import humanize, metric_items, metric_name
from mlm.run_record import hub_dataset_names, spec_parts


def card_data(ctx: CardContext) -> ModelCardData:
    """library, pipeline tag, licence (only one the user gave), language, tags, datasets, base model, and a
    model-index of the fine-tuning metrics, one result per split."""
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
    )


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
        *hub_dataset_names(ctx.finetune.data),
    ]
    return list(dict.fromkeys(names))


def eval_results(ctx: CardContext) -> list[EvalResult]:
    """One `EvalResult` per fine-tuning metric (losses left out) and split, under the split's real name."""
    if not ctx.finetuned or not ctx.pipeline_tag:
        return []
    dataset_type, dataset_name, config = dataset_of(ctx)
    return [
        EvalResult(
            task_type=ctx.pipeline_tag,
            task_name=ctx.pipeline_tag.replace("-", " ").title(),
            dataset_type=dataset_type,
            dataset_name=dataset_name,
            dataset_config=config,
            dataset_split=split,
            metric_type=metric_name(key),
            metric_value=value,
            metric_name=humanize(metric_name(key)),
        )
        for split, metrics in ctx.finetune.metrics.items()
        for key, value in metric_items(metrics).items()
        if "loss" not in key
    ]


def dataset_of(ctx: CardContext) -> tuple[str, str, str | None]:
    """(type, name, config) of the labelled data: a Hub dataset's id and config, else the data's spec."""
    finetune = ctx.finetune
    source = spec_parts(finetune.data[0])[0] if finetune.data else None
    config = None
    if source and source.startswith("hf:"):
        source, _, config = source[3:].partition(":")
    dataset_type = source or finetune.task or "labelled data"
    return dataset_type, finetune.task or dataset_type, config or None


def _hub_base_model(ctx: CardContext) -> bool:
    base = ctx.finetune.base_model
    return bool(ctx.finetuned and base and "/" in base and not ctx.finetune.from_scratch)

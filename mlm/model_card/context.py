"""Everything a card section needs, resolved once: the run record, the folder's facts, the name to show, the
objective and the pipeline tag."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from mlm.model_card.folder import FolderFacts, read_folder
from mlm.run_record import FinetuneFacts, ObjectiveFacts, RunRecord, legacy_objective

# For checkpoints whose record names no pipeline tag: what their class does.
_ARCHITECTURE_TAGS = (("ForMaskedLM", "fill-mask"), ("ForSequenceClassification", "text-classification"))
# How the card names a model type's architecture (others by their model type).
ARCHITECTURE_NAMES = {
    "bert": "BERT",
    "modernbert": "ModernBERT",
    "electra": "ELECTRA",
    "roberta": "RoBERTa",
    "distilbert": "DistilBERT",
    "deberta-v2": "DeBERTa-v2",
}
# The temporary folder a step writes into before renaming it (`.final.tmp-abc123` -> `final`).
_TEMPORARY = re.compile(r"\.(.+)\.tmp-[^/\\]*")


@dataclass
class CardContext:
    record: RunRecord
    folder: FolderFacts
    model_id: str  # the Hub repo id, else the folder's final name: the title and the usage snippet use it
    objective: ObjectiveFacts  # how the encoder was pretrained
    pipeline_tag: str | None  # what this checkpoint does

    @property
    def title(self) -> str:
        return self.model_id.split("/")[-1]

    @property
    def finetuned(self) -> bool:
        return self.record.kind == "finetune" or self.record.finetune is not None

    @property
    def finetune(self) -> FinetuneFacts:
        return self.record.finetune or FinetuneFacts()

    @property
    def max_seq_length(self) -> int | None:
        """The sequence length it was trained on (older records: the position embeddings' length)."""
        return self.record.model.max_seq_length or self.folder.config.get("max_position_embeddings")

    @property
    def parameters(self) -> int | None:
        return self.folder.parameters or self.record.model.parameters

    @property
    def mask_token(self) -> str:
        return self.folder.mask_token or self.record.tokenizer.mask_token or "[MASK]"

    @property
    def model_type(self) -> str | None:
        return self.folder.config.get("model_type") or self.record.model.architecture

    @property
    def architecture_name(self) -> str:
        """`BERT`, `ModernBERT`, ...: the architecture as people name it (`Transformer` when unknown)."""
        model_type = self.model_type
        return ARCHITECTURE_NAMES.get(model_type or "", model_type or "Transformer")


def card_context(folder: str | os.PathLike, record: RunRecord, name: str | None = None) -> CardContext:
    """The context of a card for the model in `folder`; `name` is the folder's final name when `folder` is a
    temporary one (default: `folder`'s name, less any temporary-folder decoration)."""
    facts = read_folder(folder)
    finetuned = record.kind == "finetune" or record.finetune is not None
    objective = record.objective
    if not (objective.name or objective.pipeline_tag) and not finetuned:
        objective = legacy_objective(facts.architecture)
    own_tag = (record.finetune or FinetuneFacts()).pipeline_tag if finetuned else objective.pipeline_tag
    return CardContext(
        record=record,
        folder=facts,
        model_id=record.repo_id or name or final_name(folder),
        objective=objective,
        pipeline_tag=own_tag or _architecture_tag(facts.architecture),
    )


def final_name(folder: str | os.PathLike) -> str:
    """The name `folder` will have once its step renames it: `.final.tmp-x1y2` -> `final`."""
    name = Path(folder).resolve().name
    match = _TEMPORARY.fullmatch(name)
    return match.group(1) if match else name


def _architecture_tag(architecture: str | None) -> str | None:
    for suffix, tag in _ARCHITECTURE_TAGS:
        if architecture and architecture.endswith(suffix):
            return tag
    return None

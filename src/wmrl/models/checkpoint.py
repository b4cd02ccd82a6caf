"""Our models back from their weights-only checkpoints (model.pt, last.pt, best.pt)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wmrl.files import load_checkpoint
from wmrl.models.config import DecisionConfig, ModelConfig
from wmrl.models.decision_transformer import DecisionTransformer
from wmrl.models.world_model import ModelShape, WorldActionModel


def load_model(path: str | Path) -> tuple[WorldActionModel, dict[str, Any]]:
    """A world-action model, or the Decision Transformer a checkpoint's "decision" settings
    describe, from a weights-only checkpoint (model.pt, last.pt, best.pt)."""
    checkpoint = load_checkpoint(path)
    shape, spec = ModelShape(**checkpoint["shape"]), ModelConfig(**checkpoint["model"])
    decision = checkpoint.get("decision")
    model = WorldActionModel(shape, spec) if decision is None else DecisionTransformer(shape, spec,
                                                                                      DecisionConfig(**decision))
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval(), checkpoint

"""Kind ``decision``: our model fine-tuned return-conditioned, as a Decision Transformer (Chen et
al. 2021; the math is in wmrl.rl.rcsl) — from scratch, or from the pretrained model (LaMo's
initialization), in full or through LoRA adapters (LaMo, PASTA), with MO-DT's auxiliary
predictions or a Fourier action head (Gillman et al. 2024) — and evaluated asked for a target
return (`evaluate.target_return`), greedy or sampled (`evaluate.decision_actions`).

    finetune.methods.dt_pretrained_lora: {kind: decision, init: pretrained, decision: {lora: {rank: 4}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import DictConfig

from wmrl.methods.world_action import WorldActionKind, WorldActionMethod
from wmrl.models.config import ACTION_HEADS, DecisionConfig
from wmrl.typed import ConfigError, to_plain


@dataclass
class DecisionMethod(WorldActionMethod):
    """A return-conditioned method's settings: its model and loss besides what every world-action method sets."""

    kind: str = "decision"
    decision: DecisionConfig = field(default_factory=DecisionConfig)  # its action head, auxiliary losses, LoRA


class DecisionKind(WorldActionKind):
    name: ClassVar[str] = "decision"
    settings: ClassVar[type] = DecisionMethod

    def check(self, cfg: DictConfig, name: str, method: DictConfig, run: bool) -> None:
        super().check(cfg, name, method, run)
        key, decision = f"finetune.methods.{name}.decision", method.decision
        if decision.action_head not in ACTION_HEADS:
            raise ConfigError(f"config error: '{key}.action_head' must be one of {', '.join(ACTION_HEADS)}, "
                              f"got {decision.action_head!r}")
        if decision.frequencies < 1:
            raise ConfigError(f"config error: '{key}.frequencies' must be at least 1, got {decision.frequencies}")
        if decision.lora is not None and decision.lora.rank < 1:
            raise ConfigError(f"config error: '{key}.lora.rank' must be at least 1, got {decision.lora.rank}")

    def decision(self, method: DictConfig) -> dict[str, Any] | None:
        return to_plain(method.decision)

    def agent(self, method: DictConfig) -> str:
        return "wmrl.evaluate.rollout:DecisionAgent"

    def return_conditioned(self, method: DictConfig) -> bool:
        return True

    def recipe(self, cfg: DictConfig, method: DictConfig) -> str:
        d = method.decision
        head = f"fourier head (N={d.frequencies})" if d.action_head == "fourier" else "linear head"
        recipe = [method.init, "dt", head] + [f"{key} {d[key]:g}" for key in ("next_obs", "reward") if d[key]]
        if d.lora is not None:
            recipe.append(f"LoRA r{d.lora.rank} on {', '.join(d.lora.target_modules)}")
        return " · ".join(recipe)


DECISION = DecisionKind()

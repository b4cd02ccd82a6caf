"""Kind ``joint``: our world-action model fine-tuned with its joint loss — next observation,
reward, termination, TD and CQL (JOWA; the math is in wmrl.rl.objectives) — from the pretrained
weights or from scratch, and evaluated greedily and, where it trains a world model (next_obs and
reward weights above 0), with beam-search planning through it (wmrl.rl.planning).

    finetune.methods.pretrained: {kind: joint, init: pretrained, loss: {cql_alpha: 10.0}}
    finetune.methods.bc: {kind: joint, init: scratch, loss: {next_obs: 0, reward: 0, termination: 0, td: 0}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from wmrl.methods.world_action import WorldActionKind, WorldActionMethod
from wmrl.rl.config import LossConfig
from wmrl.typed import merge, to_plain


@dataclass
class JointMethod(WorldActionMethod):
    """A joint method's settings: its loss weights besides what every world-action method sets."""

    kind: str = "joint"
    loss: dict[str, Any] = field(default_factory=dict)  # overrides of `pretrain.loss` (LossConfig's keys)


class JointKind(WorldActionKind):
    name: ClassVar[str] = "joint"
    settings: ClassVar[type] = JointMethod

    def check(self, cfg: DictConfig, name: str, method: DictConfig, run: bool) -> None:
        super().check(cfg, name, method, run)
        key = f"finetune.methods.{name}.loss"
        merge(OmegaConf.structured(LossConfig), method.loss, key, prefix=key)

    def agent(self, method: DictConfig) -> str:
        return "wmrl.evaluate.rollout:ModelAgent"

    def loss(self, cfg: DictConfig, method: DictConfig) -> dict[str, Any]:
        return {**to_plain(cfg.pretrain.loss), **to_plain(method.loss)}

    def plans(self, cfg: DictConfig, method: DictConfig) -> bool:
        return trains_world_model(self.loss(cfg, method))

    def recipe(self, cfg: DictConfig, method: DictConfig) -> str:
        loss = self.loss(cfg, method)
        parts = [f"{key} {loss[key]:g}" for key in ("next_obs", "reward", "termination", "td", "cql_alpha")]
        value_loss = method.model.get("value_loss", cfg.pretrain.model.value_loss)
        return f"{method.init} · joint: " + ", ".join(parts) + f" · {value_loss} heads"


JOINT = JointKind()


def trains_world_model(loss: dict[str, Any]) -> bool:
    """Whether joint-loss weights `loss` train the world model that beam-search planning needs."""
    return loss["next_obs"] > 0 and loss["reward"] > 0

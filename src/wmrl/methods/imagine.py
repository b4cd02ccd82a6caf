"""Kind ``imagine``: an agent that learns inside the world model (wmrl.train.imagine; the math in
wmrl.rl.imagination). It plays the held-out task's real environment for as many environment steps
as the run's data size says, trains our world-action model on what it saw (the world-model part
of the joint objective, from the pretrained weights or from scratch) and its actor and critic on
rollouts the model imagines; evaluated by its actor's most likely action.

Its three learning rates (the world model's `learning_rate`, `imagine.actor_lr`, `imagine.critic_lr`)
fall linearly to 0 at the run's last environment step (DreamerV3 keeps them constant). With
constant rates the CartPole control's weights, saved every 250 steps after it had solved the task,
swung between 45 and 500 greedy return (README: the frozen policy of a run whose training
episodes all scored 500); the decay makes the weights the run ends with the settled ones.

    finetune.methods.imagine_pretrained: {kind: imagine, init: pretrained}
    finetune.methods.imagine_scratch: {kind: imagine, init: scratch, imagine: {horizon: 10}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import DictConfig, OmegaConf

from wmrl.jobs import ImagineSpec
from wmrl.methods.kind import MethodKind, RunContext
from wmrl.methods.world_action import INITS
from wmrl.rl.config import ImagineConfig, LossConfig
from wmrl.typed import ConfigError, merge, to_plain

# the world-model part of the joint objective: the actor-critic, not TD, learns what to do
WORLD_MODEL_LOSS = {"td": 0.0, "cql_alpha": 0.0}


@dataclass
class ImagineMethod:
    """An imagination agent's settings (`finetune.methods.<name>`)."""

    kind: str = "imagine"
    init: str = "scratch"  # the world model starts pretrained | scratch
    learning_rate: float = 1.0e-3  # the world model's (AdamW), at the first update; all three rates decay to 0
    learning_starts: int = 1_000  # environment steps of uniform random actions before any update
    train_every: int = 4  # environment steps per update (one world-model and one actor-critic step)
    batch_size: int = 16  # replayed windows of pretrain.window steps per world-model update
    world_model_updates: int = 1  # world-model updates per update (before its one actor-critic update)
    checkpoint_every: int = 5_000  # environment steps between resumable states (at an episode's end)
    loss: dict[str, Any] = field(default_factory=dict)  # overrides of pretrain.loss (TD and CQL are off)
    imagine: dict[str, Any] = field(default_factory=dict)  # overrides of rl.config.ImagineConfig


class ImagineKind(MethodKind):
    name: ClassVar[str] = "imagine"
    settings: ClassVar[type] = ImagineMethod
    rule: ClassVar[str] = "train_imagine"
    files: ClassVar[dict[str, str]] = {"last": "last.pt", "curve": "curve.parquet",
                                       "imagination": "imagination.parquet", "mlflow": "model.mlflow.json"}
    code: ClassVar[tuple[str, ...]] = ("models", "rl", "train/imagine", "train/loop", "train/finetune", "data/windows",
                                       "envs", "evaluate/world_model", "tracking", "files")
    spec: ClassVar[type] = ImagineSpec
    report_kind: ClassVar[str] = "ours"
    online: ClassVar[bool] = True
    no_best: ClassVar[str] = "online training has no offline validation"

    def train(self, spec: dict[str, Any], out: dict[str, str], threads: int) -> None:
        from wmrl.train.imagine import train_imagine  # on one torch thread

        train_imagine(spec, out)

    def check(self, cfg: DictConfig, name: str, method: DictConfig, run: bool) -> None:
        """A known start, the loss and imagination settings of their schemas, and, when it runs, a
        horizon the model's positions hold (2H + 1 tokens of at most 2K + 1, K = pretrain.window)."""
        key = f"finetune.methods.{name}"
        if method.init not in INITS:
            raise ConfigError(f"config error: '{key}.init' must be one of {', '.join(INITS)}, got {method.init!r}")
        merge(OmegaConf.structured(LossConfig), method.loss, f"{key}.loss", prefix=f"{key}.loss")
        imagine = merge(OmegaConf.structured(ImagineConfig), method.imagine, f"{key}.imagine", prefix=f"{key}.imagine")
        if imagine.contexts < 1:
            raise ConfigError(f"config error: '{key}.imagine.contexts' must be at least 1, got {imagine.contexts}")
        if imagine.horizon is not None and run and not 1 <= imagine.horizon <= cfg.pretrain.window:
            raise ConfigError(f"config error: '{key}.imagine.horizon' must be within 1..pretrain.window "
                              f"({cfg.pretrain.window}: the model's positions), got {imagine.horizon}")
        for setting in ("train_every", "batch_size", "world_model_updates", "checkpoint_every"):
            if method[setting] < 1:
                raise ConfigError(f"config error: '{key}.{setting}' must be at least 1, got {method[setting]}")

    def inputs(self, method: DictConfig) -> tuple[str, ...]:
        return ("pretrained",) if method.init == "pretrained" else ()

    def job_spec(self, run: RunContext, method: DictConfig) -> ImagineSpec:
        cfg = run.cfg
        imagine = {**to_plain(OmegaConf.merge(OmegaConf.structured(ImagineConfig), method.imagine)),
                   "horizon": horizon(cfg, method)}
        settings = {k: method[k] for k in ("learning_rate", "learning_starts", "train_every", "batch_size",
                                           "world_model_updates", "checkpoint_every")}
        return {"seed": run.seed, "task": run.task, "method": run.method, "init": method.init, "suite": run.suite(),
                "channel_layout": cfg.pretrain.channel_layout, "positions": cfg.pretrain.window,
                "model": run.model_spec(), "loss": self.loss(cfg, method), **run.env(),
                "settings": {**settings, "steps": run.transitions, "imagine": imagine}, "inputs": run.inputs,
                **run.job}

    def agent(self, method: DictConfig) -> str:
        return "wmrl.train.imagine:ImagineAgent"

    def loss(self, cfg: DictConfig, method: DictConfig) -> dict[str, Any]:
        return {**to_plain(cfg.pretrain.loss), **WORLD_MODEL_LOSS, **to_plain(method.loss)}

    def recipe(self, cfg: DictConfig, method: DictConfig) -> str:
        contexts = OmegaConf.merge(OmegaConf.structured(ImagineConfig), method.imagine).contexts
        return (f"{method.init} world model · actor-critic in imagination ({contexts} x {horizon(cfg, method)} steps), "
                f"one update every {method.train_every} env steps")


IMAGINE = ImagineKind()


def horizon(cfg: DictConfig, method: DictConfig) -> int:
    """The method's imagination horizon H: its own, or pretrain.window - 1 (15 at laptop, DreamerV3's)."""
    return method.imagine.get("horizon") or cfg.pretrain.window - 1

"""Kind ``online``: a stable-baselines3 agent, DQN or PPO, trained in the real environment of the
held-out task for as many environment steps as the few-shot data has transitions (`finetune.online`
holds DQN's settings, `finetune.ppo` PPO's; wmrl.train.online trains it), and evaluated greedily
like every other method.

    finetune.methods.dqn_online: {kind: online}
    finetune.methods.ppo_online: {kind: online, algorithm: ppo}
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, ClassVar

from omegaconf import DictConfig

from wmrl.jobs import OnlineSpec
from wmrl.methods.kind import MethodKind, RunContext
from wmrl.typed import ConfigError, to_plain

ALGORITHMS = {"dqn": "online", "ppo": "ppo"}  # algorithm -> the `finetune` section of its settings


@dataclass
class OnlineMethod:
    """An online method's settings: its kind and algorithm (DQN's settings are `finetune.online`, PPO's
    `finetune.ppo`)."""

    kind: str = "online"
    algorithm: str = "dqn"  # dqn | ppo


class OnlineKind(MethodKind):
    name: ClassVar[str] = "online"
    settings: ClassVar[type] = OnlineMethod
    rule: ClassVar[str] = "train_online"
    files: ClassVar[dict[str, str]] = {"last": "last.pt", "curve": "curve.parquet", "mlflow": "model.mlflow.json"}
    code: ClassVar[tuple[str, ...]] = ("data/behaviour", "envs", "train/online", "tracking", "files")
    spec: ClassVar[type] = OnlineSpec
    report_kind: ClassVar[str] = "online"
    model: ClassVar[str | None] = "sb3"  # stable-baselines3's network (MinAtar's, Nature DQN's or an MLP)
    online: ClassVar[bool] = True
    no_best: ClassVar[str] = "online training has no offline validation"

    def check(self, cfg: DictConfig, name: str, method: DictConfig, run: bool) -> None:
        """A known algorithm."""
        if method.algorithm not in ALGORITHMS:
            raise ConfigError(f"config error: 'finetune.methods.{name}.algorithm' must be one of "
                              f"{', '.join(ALGORITHMS)}, got {method.algorithm!r}")

    def train(self, spec: dict[str, Any], out: dict[str, str], threads: int) -> None:
        from wmrl.train.online import train_online  # on one torch thread (wmrl.data.behaviour.online_agent)

        train_online(spec, out)

    def job_spec(self, run: RunContext, method: DictConfig) -> OnlineSpec:
        settings = {**to_plain(run.cfg.finetune[ALGORITHMS[method.algorithm]]), "algorithm": method.algorithm,
                    "steps": run.transitions}
        return {"seed": run.seed, "task": run.task, "method": run.method, **run.env(), "settings": settings,
                **run.job}

    def agent(self, method: DictConfig) -> str:
        return "wmrl.evaluate.rollout:OnlineAgent"

    def label(self, name: str, method: DictConfig) -> str:
        return f"{name} (online: stable-baselines3 {version('stable-baselines3')} {method.algorithm.upper()})"

    def recipe(self, cfg: DictConfig, method: DictConfig) -> str:
        return f"online {method.algorithm.upper()} in the real environment"


ONLINE = OnlineKind()

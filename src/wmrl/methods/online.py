"""Kind ``online``: stable-baselines3 DQN trained in the real environment of the held-out task
for as many environment steps as the few-shot data has transitions (`finetune.online` holds its
settings; wmrl.train.online trains it), and evaluated greedily like every other method.

    finetune.methods.dqn_online: {kind: online}
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, ClassVar

from omegaconf import DictConfig

from wmrl.jobs import OnlineSpec
from wmrl.methods.kind import MethodKind, RunContext
from wmrl.typed import to_plain


@dataclass
class OnlineMethod:
    """An online method's settings: its kind alone (DQN's settings are `finetune.online`)."""

    kind: str = "online"


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

    def train(self, spec: dict[str, Any], out: dict[str, str], threads: int) -> None:
        from wmrl.train.online import train_online  # on one torch thread (wmrl.data.behaviour.dqn_agent)

        train_online(spec, out)

    def job_spec(self, run: RunContext, method: DictConfig) -> OnlineSpec:
        settings = {**to_plain(run.cfg.finetune.online), "steps": run.transitions}
        return {"seed": run.seed, "task": run.task, "method": run.method, **run.env(), "settings": settings,
                **run.job}

    def agent(self, method: DictConfig) -> str:
        return "wmrl.evaluate.rollout:OnlineAgent"

    def label(self, name: str, method: DictConfig) -> str:
        return f"{name} (online: stable-baselines3 {version('stable-baselines3')} DQN)"

    def recipe(self, cfg: DictConfig, method: DictConfig) -> str:
        return "online DQN in the real environment"


ONLINE = OnlineKind()

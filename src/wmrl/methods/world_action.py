"""What the kinds that fine-tune our world-action model share (joint, decision): the `finetune`
rule and its files, the start (`init`: the pretrained weights or a random init), the spec of the
job (wmrl.train.finetune) and the checks of the architecture a scratch model may override."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional

from omegaconf import DictConfig, OmegaConf

from wmrl.jobs import FinetuneSpec
from wmrl.methods.kind import MethodKind, RunContext
from wmrl.models.config import ModelConfig, check_model
from wmrl.typed import ConfigError, merge, to_plain

INITS = ("pretrained", "scratch")
# The source a fine-tuning job runs (the whole train package: wmrl.train.finetune and what it shares).
FINETUNE_CODE = ("models", "rl", "train", "data/windows", "data/dataset", "envs", "tracking")


@dataclass
class WorldActionMethod:
    """What a method that fine-tunes our model sets, whatever its objective (`finetune.methods.<name>`)."""

    kind: str = "???"
    init: str = "scratch"  # pretrained | scratch
    learning_rate: Optional[float] = None  # overrides `finetune.learning_rate`
    model: dict[str, Any] = field(default_factory=dict)  # init scratch: overrides of `pretrain.model`


class WorldActionKind(MethodKind):
    """A kind that fine-tunes our model; subclasses name their objective and evaluation agent."""

    rule: ClassVar[str] = "finetune"
    files: ClassVar[dict[str, str]] = {"last": "last.pt", "best": "best.pt", "curve": "curve.parquet",
                                       "mlflow": "model.mlflow.json"}
    code: ClassVar[tuple[str, ...]] = FINETUNE_CODE
    spec: ClassVar[type] = FinetuneSpec
    report_kind: ClassVar[str] = "ours"

    def train(self, spec: dict[str, Any], out: dict[str, str], threads: int) -> None:
        from wmrl.train.finetune import finetune

        finetune(spec, out, threads=threads)

    def check(self, cfg: DictConfig, name: str, method: DictConfig, run: bool) -> None:
        key = f"finetune.methods.{name}"
        if method.init not in INITS:
            raise ConfigError(f"config error: '{key}.init' must be one of {', '.join(INITS)}, got {method.init!r}")
        if method.model and method.init != "scratch":
            raise ConfigError(f"config error: '{key}.model' applies to init scratch only (a pretrained model keeps "
                              f"the architecture it was pretrained with), not to init {method.init}")
        model = OmegaConf.merge(OmegaConf.structured(ModelConfig), cfg.pretrain.model)  # a root: keys name themselves
        check_model(merge(model, method.model, f"{key}.model", prefix=f"{key}.model"), f"{key}.model")

    def inputs(self, method: DictConfig) -> tuple[str, ...]:
        return ("dataset", "pretrained") if method.init == "pretrained" else ("dataset",)

    def decision(self, method: DictConfig) -> dict[str, Any] | None:
        """The return-conditioned settings of the job (None: the joint objective)."""
        return None

    def job_spec(self, run: RunContext, method: DictConfig) -> FinetuneSpec:
        cfg = run.cfg
        f = to_plain(cfg.finetune)
        settings = {k: v for k, v in f.items()
                    if k not in ("data", "seeds", "methods_run", "methods", "curve_methods", "control", "online")}
        if method.learning_rate is not None:
            settings["learning_rate"] = method.learning_rate
        return {
            "seed": run.seed, "task": run.task, "method": run.method, "init": method.init,
            "heldout_tasks": list(cfg.heldout_tasks), "suite": run.suite(), "data": run.data(),
            "channel_layout": cfg.pretrain.channel_layout, "positions": cfg.pretrain.window,
            "model": {**run.model_spec(), **to_plain(method.model)},
            "loss": self.loss(cfg, method), "decision": self.decision(method),
            "finetune": settings, "inputs": run.inputs, **run.job,
        }

"""Kind ``peer``: a d3rlpy algorithm (wmrl.peers.algorithms: DiscreteCQL, DiscreteBC, the discrete
Decision Transformer) trained on exactly the few-shot training episodes our methods see, for the
same `finetune.steps` gradient steps (wmrl.train.peer), with `settings` over its d3rlpy config;
evaluated at its last step, a return-conditioned one asked for the same target return as ours.

    finetune.methods.d3rlpy_cql: {kind: peer, algorithm: discrete_cql, settings: {alpha: 1.0}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import version
from typing import Any, ClassVar, Optional

from omegaconf import DictConfig

from wmrl.jobs import PeerSpec
from wmrl.methods.kind import MethodKind, RunContext
from wmrl.peers.algorithms import PEER_ALGORITHMS
from wmrl.typed import ConfigError, to_plain


@dataclass
class PeerMethod:
    """A peer's settings (`finetune.methods.<name>`)."""

    kind: str = "peer"
    algorithm: Optional[str] = None  # discrete_cql | discrete_bc | discrete_dt (wmrl.peers.algorithms)
    settings: dict[str, Any] = field(default_factory=dict)  # overrides of its d3rlpy config


class PeerKind(MethodKind):
    name: ClassVar[str] = "peer"
    settings: ClassVar[type] = PeerMethod
    rule: ClassVar[str] = "train_peer"
    files: ClassVar[dict[str, str]] = {"last": "last.pt", "curve": "curve.parquet", "mlflow": "model.mlflow.json"}
    code: ClassVar[tuple[str, ...]] = ("peers", "train/peer", "data/windows", "data/dataset", "tracking", "files")
    spec: ClassVar[type] = PeerSpec
    report_kind: ClassVar[str] = "peer"
    model: ClassVar[str | None] = "d3rlpy"
    no_best: ClassVar[str] = "a peer trains on the training episodes alone and is read at its last step"

    def train(self, spec: dict[str, Any], out: dict[str, str], threads: int) -> None:
        from wmrl.train.peer import train_peer  # on one torch thread

        train_peer(spec, out)

    def check(self, cfg: DictConfig, name: str, method: DictConfig, run: bool) -> None:
        """A known algorithm and only settings of its d3rlpy config, of their types. A peer that runs
        trains exactly `finetune.steps` steps in epochs of `validate_every` steps (its curve's points),
        so those must divide them."""
        key = f"finetune.methods.{name}"
        if method.algorithm not in PEER_ALGORITHMS:
            raise ConfigError(f"config error: '{key}.algorithm' must be one of {', '.join(PEER_ALGORITHMS)}, "
                              f"got {method.algorithm!r}")
        allowed = PEER_ALGORITHMS[method.algorithm].settings
        for setting, value in method.settings.items():
            if setting not in allowed:
                raise ConfigError(f"config error: unknown key '{key}.settings.{setting}'; allowed keys for "
                                  f"{method.algorithm}: {', '.join(allowed)}")
            kind = allowed[setting]
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
                raise ConfigError(f"config error: '{key}.settings.{setting}' must be {kind.__name__}, got {value!r} "
                                  f"({type(value).__name__})")
        finetune = cfg.finetune
        epoch = min(finetune.validate_every, finetune.steps)
        if run and (epoch < 1 or finetune.steps % epoch):
            raise ConfigError(f"config error: peer {name} trains 'finetune.steps' ({finetune.steps}) in epochs of "
                              f"'finetune.validate_every' ({finetune.validate_every}) steps, which must divide them")

    def inputs(self, method: DictConfig) -> tuple[str, ...]:
        return ("dataset",)

    def job_spec(self, run: RunContext, method: DictConfig) -> PeerSpec:
        f = to_plain(run.cfg.finetune)
        reads = ("steps", "validate_every", "holdout_fraction") + ("window",) * self.return_conditioned(method)
        return {"seed": run.seed, "task": run.task, "method": run.method, "heldout_tasks": list(run.cfg.heldout_tasks),
                "peer": method.algorithm, "settings": to_plain(method.settings), "data": run.data(),
                "finetune": {key: f[key] for key in reads},  # a Decision Transformer reads our windows' steps
                "inputs": run.inputs, **run.job}

    def agent(self, method: DictConfig) -> str:
        agent = "PeerDecisionAgent" if self.return_conditioned(method) else "PeerAgent"
        return f"wmrl.evaluate.rollout:{agent}"

    def return_conditioned(self, method: DictConfig) -> bool:
        return PEER_ALGORITHMS[method.algorithm].return_conditioned

    def label(self, name: str, method: DictConfig) -> str:
        return f"{name} (peer: d3rlpy {version('d3rlpy')} {PEER_ALGORITHMS[method.algorithm].d3rlpy_class})"

    def recipe(self, cfg: DictConfig, method: DictConfig) -> str:
        return f"d3rlpy {method.algorithm}"


PEER = PeerKind()

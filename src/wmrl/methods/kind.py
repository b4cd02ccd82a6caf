"""What the pipeline asks of a kind of fine-tuning method (the contract of every wmrl.methods module).

A kind is one instance of a `MethodKind` subclass: class attributes say how its runs are trained,
stored and shown; the methods say what differs per method config. The DAG (wmrl.dag) asks these
and nothing else, so nothing outside a kind's module branches on its name.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from omegaconf import DictConfig

from wmrl.typed import to_plain


class RunContext(Protocol):
    """One fine-tuning run as the DAG hands it to its kind (wmrl.dag.specs builds it)."""

    cfg: DictConfig
    task: str
    transitions: int  # the size of its fine-tuning data (finetune.data.sizes)
    method: str  # the method's name
    model: str  # the run's `model` wildcard: "<size>-<backbone>" or the kind's own label
    seed: int
    job: dict[str, Any]  # what every training job carries: work dir, MLflow names and tags, registered model
    inputs: dict[str, str]  # its input files by name (see MethodKind.inputs)

    def data(self) -> dict[str, Any]:
        """Its few-shot slice: dataset policy and seed, transitions, the largest slice it is a prefix
        of and where that begins, and whether it is the transfer control's (a source task's held-back data)."""

    def env(self) -> dict[str, Any]:
        """How to build the task's environment (wmrl.envs.make_task_env)."""

    def suite(self) -> dict[str, dict[str, Any]]:
        """Every task's environment the experiment runs, in task-embedding order."""

    def model_spec(self) -> dict[str, Any]:
        """The architecture of the run's model "<size>-<backbone>"."""


class MethodKind:
    """One kind of fine-tuning method; subclasses set the attributes and override what differs."""

    name: ClassVar[str]  # the `kind` a method config names
    settings: ClassVar[type]  # the dataclass a method's config section is checked against
    rule: ClassVar[str]  # the Snakemake rule that trains it (rules/finetune.smk)
    files: ClassVar[dict[str, str]]  # that rule's outputs: name -> file in the run's directory
    code: ClassVar[tuple[str, ...]]  # wmrl modules whose source triggers the rule's reruns
    spec: ClassVar[type]  # the TypedDict of its training job's spec (wmrl.jobs), which the job checks
    report_kind: ClassVar[str]  # how the report groups it: ours | peer | online
    model: ClassVar[str | None] = None  # its runs' `model` label; None: each pretrained size-backbone
    online: ClassVar[bool] = False  # learns in the real environment: its curve is episode returns by env step
    no_best: ClassVar[str] = ""  # why it has no "best" checkpoint (when its files have none)

    def check(self, cfg: DictConfig, name: str, method: DictConfig, run: bool) -> None:
        """Raise ConfigError for what the schema cannot see (`run`: the method is in methods_run)."""

    def inputs(self, method: DictConfig) -> tuple[str, ...]:
        """What its training job reads: "dataset" (the few-shot data) and/or "pretrained" (the model)."""
        return ()

    def train(self, spec: dict[str, Any], out: dict[str, str], threads: int) -> None:
        """Run one training job (the rule's script calls this; the trainer is imported here, in the job)."""
        raise NotImplementedError

    def job_spec(self, run: RunContext, method: DictConfig) -> dict[str, Any]:
        """Everything one training job of the method needs (its Snakemake params)."""
        raise NotImplementedError

    def agent(self, method: DictConfig) -> str:
        """The "module:Class" that plays its checkpoints at evaluation (see wmrl.evaluate.rollout)."""
        raise NotImplementedError

    def loss(self, cfg: DictConfig, method: DictConfig) -> dict[str, Any]:
        """Its joint-loss weights (gamma is the planner's discount): pretrain.loss unless it sets its own."""
        return to_plain(cfg.pretrain.loss)

    def plans(self, cfg: DictConfig, method: DictConfig) -> bool:
        """Whether its evaluation also plans through a trained world model."""
        return False

    def return_conditioned(self, method: DictConfig) -> bool:
        """Whether it acts on a target return (evaluate.target_return, evaluate.decision_actions)."""
        return False

    def label(self, name: str, method: DictConfig) -> str:
        """How the report names it, e.g. "d3rlpy_cql (peer: d3rlpy 2.8.1 DiscreteCQL)"."""
        return name

    def recipe(self, cfg: DictConfig, method: DictConfig) -> str:
        """One line of what it does, e.g. "pretrained · dt · linear head"."""
        raise NotImplementedError

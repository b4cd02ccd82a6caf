"""Fine-tuning methods by kind: one module per kind, registered in KINDS.

A method (`finetune.methods.<name>` in config) names its `kind`; the kind's module declares in one
place its settings (a dataclass), their checks, the rule and job that train it, the agent that
evaluates it and what the report shows of it (see `wmrl.methods.kind.MethodKind`):

- ``joint``: our world-action model fine-tuned with its joint TD + world-model loss (JOWA),
  from the pretrained weights or from scratch (`wmrl.methods.joint`);
- ``decision``: our model fine-tuned return-conditioned, a Decision Transformer (DT, LaMo, PASTA,
  MO-DT, Fourier head; `wmrl.methods.decision`);
- ``online``: stable-baselines3 DQN or PPO trained in the real environment (`wmrl.methods.online`);
- ``peer``: a d3rlpy algorithm trained on the same few-shot episodes (`wmrl.methods.peer`);
- ``imagine``: an agent that plays the real environment and learns in imagination, its world model
  pretrained or fresh (`wmrl.methods.imagine`).

Torch-free: the Snakefile reads it to build the DAG. A new kind is one module here and one entry
in KINDS; docs/architecture.md, "How to add a method", lists what else a method may touch.
"""

from __future__ import annotations

from typing import Any

from wmrl.methods.decision import DECISION
from wmrl.methods.imagine import IMAGINE
from wmrl.methods.joint import JOINT
from wmrl.methods.kind import MethodKind
from wmrl.methods.online import ONLINE
from wmrl.methods.peer import PEER
from wmrl.typed import ConfigError

KINDS: dict[str, MethodKind] = {kind.name: kind for kind in (JOINT, DECISION, ONLINE, PEER, IMAGINE)}
RULES: dict[str, MethodKind] = {kind.rule: kind for kind in KINDS.values()}  # a rule's files, code and job


def kind_of(method: Any) -> MethodKind:
    """The kind of a method's config (a composed `finetune.methods.<name>` node or a plain dict)."""
    return KINDS[method["kind"]]


def method_settings(name: str, method: dict[str, Any]) -> type:
    """The settings dataclass a method's raw config is checked against: its kind's."""
    kind = method.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"config error: 'finetune.methods.{name}.kind' must be one of {', '.join(KINDS)}, "
                          f"got {kind!r}")
    return KINDS[kind].settings

"""In-context RL methods: what pretraining, evaluation and the report ask of each.

A method is one `IcrlMethod` registered in `ICRL_METHODS` (config: ``icrl.methods``):

- ``data``: the kind of histories it learns from (`wmrl.icrl.histories`), from its torch-free
  entry in `wmrl.config.icrl.ICRL_METHODS` (which also names the task families it plays, the
  baseline it distils and its pretraining job's settings beyond the model's);
- ``config``: its model's dataclass, filled from ``icrl.pretrain.model`` (and the method's own keys);
- `shape` / `build`: the model for a dataset's card; `arrays`: the rows as arrays
  (`wmrl.icrl.arrays`); `batch` / `validation`: training and validation batches; `metrics`: the
  loss and accuracies the training job logs;
- `curve_histories` / `curve`: its in-context learning curve on held-out tasks (`wmrl.icrl.curve`);
- `play_darkroom`: its return in each in-context episode on held-out goals (no weight updates);
  `source_returns`: the learner it distils, played on the same goals (AD's entry names one).

DPT (`wmrl.models.dpt`) also plays bandits (`wmrl.icrl.evaluate`); AD (`wmrl.models.ad`) plays
Dark Room only. A new method is a model module, one class here and its entry in
`wmrl.config.icrl.ICRL_METHODS`.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, ClassVar

import numpy as np
import polars as pl
import torch
from torch import nn

from wmrl.config.icrl import ICRL_METHODS as ICRL_METHODS_CONFIG
from wmrl.icrl.arrays import ContextArrays, LearningArrays
from wmrl.icrl.curve import dpt_curve, per_task, position_scores
from wmrl.icrl.histories import bandit_histories, darkroom_histories
from wmrl.icrl.learning import noise_distillation_histories
from wmrl.models import ad, dpt

CURVE_HISTORIES = 20  # Dark Room: histories per held-out goal and evaluation seed for the context curve
VALIDATION_WINDOWS = 512  # AD: fixed windows of the held-out training tasks' histories


def grid(card: dict[str, Any]) -> int:
    """A Dark Room dataset's side (its states are cells, observed as coordinates); 0 for bandits."""
    return int(card["settings"]["size"]) if card["family"] == "darkroom" else 0


class IcrlMethod:
    """One in-context RL method (module doc); subclasses set the attributes and the methods."""

    name: ClassVar[str]
    config: ClassVar[type]
    arrays_type: ClassVar[type]
    inputs: ClassVar[tuple[str, ...]]  # the model's forward arguments, batch keys of the same names

    @property
    def data(self) -> str:
        return ICRL_METHODS_CONFIG[self.name].data

    def model_config(self, settings: dict[str, Any]) -> Any:
        """The model's dataclass from a job's settings (the keys it has)."""
        return self.config(**{f.name: settings[f.name] for f in fields(self.config) if f.name in settings})

    def arrays(self, frame: pl.DataFrame, card: dict[str, Any]):
        if card["kind"] != self.data:
            raise ValueError(f"{self.name} trains on the {self.data} kind of histories, not {card['kind']!r}")
        return self.arrays_type.from_frame(frame, card)

    def curve_step(self, icrl: dict[str, Any]) -> int:
        """The context lengths of its curve are 0, s, 2s, ...: s = 1 (every transition)."""
        return 1

    def play_darkroom(self, model: nn.Module, goals: list, episodes: int, episode_steps: int, size: int,
                      seed: int) -> np.ndarray:
        """Its return in each of `episodes` in-context episodes on each goal, no weight updates
        (its model module's `deploy_darkroom`), sampling with a generator seeded with `seed`."""
        return self.deploy_darkroom(model, [tuple(goal) for goal in goals], episodes, episode_steps, size,
                                    torch.Generator().manual_seed(seed))

    def source_returns(self, icrl: dict[str, Any], goals: list, seed: int) -> np.ndarray:
        """The return per episode (goals, evaluate.episodes) of the learner it distils (its entry's
        `source`), played on held-out goals; only a method with a source has one."""
        raise NotImplementedError(f"{self.name} distils no source learner")


class DPT(IcrlMethod):
    """Decision-Pretrained Transformer: the optimal action at a query state from a context."""

    name, config, arrays_type = "dpt", dpt.DPTConfig, ContextArrays
    inputs = ("query_state", "states", "actions", "rewards", "next_states")  # its forward's, in order
    deploy_darkroom = staticmethod(dpt.deploy_darkroom)

    def shape(self, card: dict[str, Any]) -> dict[str, int]:
        return {"states": int(card["states"]), "actions": int(card["actions"]), "horizon": int(card["horizon"]),
                "grid": grid(card)}

    def build(self, shape: dict[str, int], config: dpt.DPTConfig) -> nn.Module:
        return dpt.DecisionPretrainedTransformer(**shape, config=config)

    def tokens(self, shape: dict[str, int], config: dpt.DPTConfig) -> int:
        """Tokens per training sample: the query and the context."""
        return shape["horizon"] + 1

    def batch(self, arrays: ContextArrays, size: int, rng: np.random.Generator, config) -> dict[str, np.ndarray]:
        return arrays.sample(size, rng)

    def validation(self, arrays: ContextArrays, size: int, config) -> list[dict[str, np.ndarray]]:
        return [arrays.rows(np.arange(start, min(start + size, len(arrays)))) for start in range(0, len(arrays), size)]

    def metrics(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = model(batch["query_state"], batch["states"], batch["actions"], batch["rewards"], batch["next_states"])
        correct = (logits.argmax(-1) == batch["optimal_action"].unsqueeze(1)).float()
        return {"loss": dpt.dpt_loss(logits, batch["optimal_action"]), "accuracy_first": correct[:, 0].mean(),
                "accuracy_last": correct[:, -1].mean()}

    def curve_histories(self, icrl: dict[str, Any], tasks: list, seed: int) -> ContextArrays:
        """Held-out tasks' contexts (`wmrl.icrl.curve`), drawn with `seed`."""
        if icrl["family"] == "bandit":
            histories = bandit_histories(np.asarray(tasks), icrl["horizon"], seed, 1, icrl["noise_std"])
        else:
            histories = darkroom_histories([tuple(goal) for goal in tasks], icrl["horizon"], seed,
                                           per_task=CURVE_HISTORIES, size=icrl["size"])
        card = {"horizon": histories.horizon, "states": histories.states, "actions": histories.actions}
        return ContextArrays.from_frame(histories.frame, card)

    def curve(self, model: nn.Module, histories: ContextArrays, tasks: int) -> dict[str, np.ndarray]:
        return dpt_curve(model, vars(histories), tasks)



class AD(IcrlMethod):
    """Algorithm Distillation: the learner's next action from its learning history."""

    name, config, arrays_type = "ad", ad.ADConfig, LearningArrays
    inputs = ("states", "prev_actions", "prev_rewards")  # its forward's, in order
    deploy_darkroom = staticmethod(ad.deploy_darkroom)

    def shape(self, card: dict[str, Any]) -> dict[str, int]:
        return {"states": int(card["states"]), "actions": int(card["actions"]), "grid": grid(card)}

    def build(self, shape: dict[str, int], config: ad.ADConfig) -> nn.Module:
        return ad.AlgorithmDistillation(**shape, config=config)

    def tokens(self, shape: dict[str, int], config: ad.ADConfig) -> int:
        """Tokens per training sample: the window's steps."""
        return config.context_steps

    def batch(self, arrays: LearningArrays, size: int, rng: np.random.Generator, config) -> dict[str, np.ndarray]:
        return arrays.windows(size, rng, config.context_steps)

    def validation(self, arrays: LearningArrays, size: int, config) -> list[dict[str, np.ndarray]]:
        rng = np.random.default_rng(2**31 - 1)
        windows = arrays.windows(VALIDATION_WINDOWS, rng, config.context_steps)
        return [{name: value[start:start + size] for name, value in windows.items()}
                for start in range(0, VALIDATION_WINDOWS, size)]

    def metrics(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        logits = model(batch["states"], batch["prev_actions"], batch["prev_rewards"])
        chosen = logits.argmax(-1)
        return {"loss": ad.ad_loss(logits, batch["actions"]),
                "accuracy_learner": (chosen == batch["actions"]).float().mean(),
                "accuracy_last": (chosen[:, -1] == batch["optimal_actions"][:, -1]).float().mean()}

    def curve_step(self, icrl: dict[str, Any]) -> int:
        """Its curve is read per episode: context lengths 0, T, 2T, ... steps (T = episode_steps)."""
        return icrl["episode_steps"]

    def curve_histories(self, icrl: dict[str, Any], tasks: list, seed: int) -> LearningArrays:
        """Held-out goals' learning histories (the source learner's, drawn with `seed`)."""
        settings = icrl["ad"]
        histories = noise_distillation_histories([tuple(goal) for goal in tasks], settings["episodes"],
                                                 icrl["episode_steps"], seed, per_task=CURVE_HISTORIES,
                                                 size=icrl["size"], decay=settings["decay"])
        card = {"kind": "learning", "horizon": histories.horizon, "states": histories.states,
                "actions": histories.actions, "episode_steps": histories.episode_steps}
        return LearningArrays.from_frame(histories.frame, card)

    def curve(self, model: nn.Module, histories: LearningArrays, tasks: int) -> dict[str, np.ndarray]:
        """Over the last window of every held-out learning history (its last episodes, where the
        learner is the oracle): the accuracy and cross-entropy of the oracle's action in each
        episode k of the window, context length = the k x episode_steps steps before it. Only an
        episode's steps up to its first reward count: after it, the previous step's reward in the
        token says where the goal is, and the model would need no context to know it."""
        steps, length = histories.episode_steps, model.config.context_steps
        episodes = length // steps
        windows = histories.windows_at(np.arange(len(histories)),
                                       np.full(len(histories), histories.length - episodes * steps), episodes * steps)
        tensors = {name: torch.as_tensor(value) for name, value in windows.items()}
        with torch.no_grad():
            logits = model(tensors["states"], tensors["prev_actions"], tensors["prev_rewards"])
        scores = position_scores(logits, tensors["optimal_actions"])
        rewarded = windows["prev_rewards"].reshape(len(histories), episodes, steps).copy()
        rewarded[:, :, 0] = 0  # an episode's first token carries the previous episode's last reward
        counted = (np.cumsum(rewarded, axis=2) == 0).astype(float)  # up to and including the first reward's step
        by_episode = {name: (value.reshape(len(histories), episodes, steps) * counted).sum(2) / counted.sum(2)
                      for name, value in scores.items()}
        return per_task(by_episode, histories.task, tasks)

    def source_returns(self, icrl: dict[str, Any], goals: list, seed: int) -> np.ndarray:
        """The noise-distillation learner AD imitates (`wmrl.icrl.learning`: the oracle with
        exploration decaying over `icrl.ad.episodes` episodes), played on the goals with `seed`."""
        episodes, steps = icrl["ad"]["episodes"], icrl["episode_steps"]
        histories = noise_distillation_histories([tuple(goal) for goal in goals], episodes, steps, seed,
                                                 size=icrl["size"], decay=icrl["ad"]["decay"])
        rewards = np.stack(histories.frame["rewards"].to_list()).reshape(len(goals), episodes, steps)
        return rewards.sum(-1)[:, :icrl["evaluate"]["episodes"]]


ICRL_METHODS: dict[str, IcrlMethod] = {method.name: method for method in (DPT(), AD())}

"""Evaluation of in-context RL on held-out tasks: every model (`wmrl.icrl.methods`: DPT, AD) and
every baseline played by the same code on the same tasks and seeds, as one long table.

Rows (`ROWS` schema): ``setting`` | ``method`` (a model's label, e.g. dpt_transformer, or a
baseline) | ``model_seed`` (the model's pretraining seed; null for a baseline) | ``task`` (index
among the held-out tasks) | ``seed`` (evaluation seed) | ``step`` | ``value`` | ``checkpoint``,
where by setting

* ``online`` (bandits): the expected regret max_a mu_a - mu_{a_t} of pull ``step`` (1..H) of a
  method that learns from its own pulls: DPT samples its predicted distribution over the optimal
  arm with its own transitions as context; UCB (c = `ucb_c`), Thompson sampling (Gaussian prior
  N(0.5, 1/12), the moments of U(0, 1), and the known noise standard deviation), the empirical
  mean, a uniform policy and the oracle. The cumulative regret after T pulls is the sum of steps 1..T.
* ``offline`` (bandits): the suboptimality max_a mu_a - mu_{a_hat} of the arm chosen from the
  first ``step`` (1..H) pulls of a fixed history (DPT's Dirichlet-mixed behaviour, drawn per
  held-out task and seed): DPT greedy on its logits at that position, LCB (c = `ucb_c`) and the
  empirical mean.
* ``darkroom``: the return of in-context episode ``step`` (1..E) on a held-out goal, no weight
  updates: DPT samples its predicted action with its previous episodes' last H transitions as
  context (empty in episode 1); AD samples the learner's next action with the last steps of its
  own history as context (`wmrl.models.ad`); the oracle (reference), a uniform policy and the
  learner a method distils, where its entry names one (`wmrl.config.icrl.ICRL_METHODS`: AD's
  `ad_source`, the noise-distillation learner it imitates), played on the same held-out goals.
* ``context_accuracy`` / ``context_cross_entropy`` (each model, at each training snapshot
  ``checkpoint``): the in-context learning curve (`wmrl.icrl.curve`, the histories its method
  draws for the held-out tasks) at context length ``step``. ``checkpoint`` is null in other rows.

Seeds: evaluation seed s draws the offline and curve histories with seed OFFLINE_SEED + s, and
every baseline's randomness for task i from ``default_rng([s, i])`` (the same stream start for
every method); a model's sampling for seed s from a torch generator seeded with s, and DPT's
bandit rewards from one seeded with 2 OFFLINE_SEED + s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from wmrl.files import publish
from wmrl.icrl.baselines import (UCB, EmpiricalMean, Oracle, Thompson, Uniform, empirical_choice, lcb_choice,
                                 play_bandit, play_darkroom)
from wmrl.icrl.histories import bandit_histories
from wmrl.icrl.methods import ICRL_METHODS
from wmrl.icrl.tasks import MOVES, bandit_tasks, darkroom_goals, optimal_darkroom_action, split_goals
from wmrl.jobs import IcrlEvaluateSpec, check_spec
from wmrl.models.dpt import DecisionPretrainedTransformer, choose, deploy_online

log = logging.getLogger("wmrl")
OFFLINE_SEED = 500_000
ROWS = {"setting": pl.String(), "method": pl.String(), "model_seed": pl.Int64(), "task": pl.Int64(),
        "seed": pl.Int64(), "step": pl.Int64(), "value": pl.Float64(), "checkpoint": pl.Int64()}
ONLINE_BASELINES = ("ucb", "thompson", "empirical_mean", "uniform", "oracle")
OFFLINE_BASELINES = ("lcb", "empirical_mean")
DARKROOM_BASELINES = ("oracle", "uniform")


def heldout_tasks(icrl: dict[str, Any]) -> list:
    """The held-out tasks evaluated: bandit arm means drawn with `heldout_seed` (never the training
    seed), or the first `evaluate.tasks` of Dark Room's held-out goals."""
    count = icrl["evaluate"]["tasks"]
    if icrl["family"] == "bandit":
        return bandit_tasks(count, icrl["arms"], icrl["heldout_seed"]).tolist()
    _, heldout = split_goals(darkroom_goals(icrl["size"]), icrl["heldout_goals"], icrl["task_seed"])
    return [list(goal) for goal in heldout[:count]]


def _frame(setting: str, method: str, model_seed: int | None, values: np.ndarray, seed: int, first_step: int = 1,
           checkpoint: int | None = None, step_size: int = 1) -> pl.DataFrame:
    """Rows of `values` (tasks, steps) for one method and evaluation seed; steps count from
    `first_step` by `step_size`."""
    tasks, steps = values.shape
    n = tasks * steps
    return pl.DataFrame({"setting": [setting] * n, "method": [method] * n, "model_seed": [model_seed] * n,
                         "task": np.repeat(np.arange(tasks), steps), "seed": [seed] * n,
                         "step": np.tile(first_step + step_size * np.arange(steps), tasks),
                         "value": values.reshape(-1).astype(float), "checkpoint": [checkpoint] * n}, schema=ROWS)


# --------------------------------------------------------------------------- bandits


def online_baseline(name: str, arms: int, noise_std: float, c: float, means: list[float]):
    return {"ucb": lambda: UCB(arms, c), "thompson": lambda: Thompson(arms, noise_std=noise_std),
            "empirical_mean": lambda: EmpiricalMean(arms), "uniform": lambda: Uniform(arms),
            "oracle": lambda: Oracle(means)}[name]()


def bandit_baselines_online(means: np.ndarray, horizon: int, seed: int, noise_std: float, c: float
                            ) -> dict[str, np.ndarray]:
    """Per-step regret (tasks, horizon) of each online baseline."""
    regrets = {}
    for name in ONLINE_BASELINES:
        rows = []
        for task, task_means in enumerate(means):
            policy = online_baseline(name, means.shape[1], noise_std, c, task_means)
            rows.append(play_bandit(policy, task_means, horizon, np.random.default_rng([seed, task]),
                                    noise_std)[1])
        regrets[name] = np.stack(rows)
    return regrets


@torch.no_grad()
def dpt_bandit_online(model: DecisionPretrainedTransformer, means: np.ndarray, horizon: int, seed: int,
                      noise_std: float) -> np.ndarray:
    """Per-step regret (tasks, horizon) of DPT sampling its predicted arm, its pulls as context."""
    mu = torch.as_tensor(means, dtype=torch.float32)
    noise = torch.Generator().manual_seed(OFFLINE_SEED * 2 + seed)
    zeros = torch.zeros(len(mu), dtype=torch.long)

    def pull(actions: torch.Tensor):
        reward = mu.gather(1, actions[:, None]).squeeze(1) + noise_std * torch.randn(
            len(mu), generator=noise)
        return zeros, reward, zeros

    actions = deploy_online(model, zeros, pull, horizon, generator=torch.Generator().manual_seed(seed))["actions"]
    return (mu.max(1, keepdim=True).values - mu.gather(1, actions)).double().numpy()


def offline_histories(means: np.ndarray, horizon: int, seed: int, noise_std: float):
    """One fixed history per held-out task for evaluation seed `seed` (DPT's behaviour mix)."""
    return bandit_histories(means, horizon, OFFLINE_SEED + seed, 1, noise_std).frame


def bandit_baselines_offline(means: np.ndarray, frame: pl.DataFrame, c: float) -> dict[str, np.ndarray]:
    """Suboptimality (tasks, H) of LCB and the empirical mean after each prefix of the history."""
    arms = means.shape[1]
    out = {name: np.zeros((len(means), frame["actions"].list.len()[0])) for name in OFFLINE_BASELINES}
    for task, row in enumerate(frame.iter_rows(named=True)):
        best = means[task].max()
        for t in range(1, len(row["actions"]) + 1):
            actions, rewards = row["actions"][:t], row["rewards"][:t]
            out["lcb"][task, t - 1] = best - means[task][lcb_choice(actions, rewards, arms, c)]
            out["empirical_mean"][task, t - 1] = best - means[task][empirical_choice(actions, rewards, arms)]
    return out


@torch.no_grad()
def dpt_bandit_offline(model: DecisionPretrainedTransformer, means: np.ndarray, frame: pl.DataFrame) -> np.ndarray:
    """Suboptimality (tasks, H) of DPT's greedy arm at each context length 1..H of the history."""
    batch = {name: torch.from_numpy(np.stack(frame[name].to_list())) for name in
             ("states", "actions", "rewards", "next_states")}
    logits = model(torch.tensor(frame["query_state"].to_list()), batch["states"].long(),
                   batch["actions"].long(), batch["rewards"].float(), batch["next_states"].long())
    chosen = choose(logits[:, 1:].reshape(-1, logits.shape[-1]), greedy=True).reshape(len(means), -1).numpy()
    return means.max(1, keepdims=True) - np.take_along_axis(means, chosen, 1)


# --------------------------------------------------------------------------- Dark Room


def darkroom_baselines(goals: list, episodes: int, horizon: int, seed: int, size: int) -> dict[str, np.ndarray]:
    """Return per episode (goals, episodes) of the oracle and a uniform policy (episodes of `horizon` steps)."""
    out = {name: np.zeros((len(goals), episodes)) for name in DARKROOM_BASELINES}
    for task, goal in enumerate(goals):
        goal = tuple(goal)
        out["oracle"][task] = play_darkroom(lambda s, h, g=goal: optimal_darkroom_action(s, g, size), goal, episodes,
                                            seed, size, horizon)
        rng = np.random.default_rng([seed, task])
        out["uniform"][task] = play_darkroom(lambda s, h, r=rng: int(r.integers(len(MOVES))), goal, episodes, seed,
                                             size, horizon)
    return out


# --------------------------------------------------------------------------- the job


def curve_rows(method, snapshots: dict, label: str, model_seed: int, icrl: dict[str, Any], tasks: list, seed: int
               ) -> list[pl.DataFrame]:
    """The context-curve rows of every training snapshot ({step: model}) of a model of `method`,
    on the held-out tasks' histories the method draws for evaluation seed `seed`."""
    histories = method.curve_histories(icrl, tasks, OFFLINE_SEED + seed)
    return [_frame(name, label, model_seed, values, seed, first_step=0, checkpoint=step,
                   step_size=method.curve_step(icrl))
            for step, model in snapshots.items() for name, values in method.curve(model, histories, len(tasks)).items()]


def baseline_rows(icrl: dict[str, Any], tasks: list, seed: int) -> list[pl.DataFrame]:
    """Every baseline's rows for evaluation seed `seed`."""
    horizon = icrl["horizon"]
    if icrl["family"] == "darkroom":
        returns = darkroom_baselines(tasks, icrl["evaluate"]["episodes"], icrl["episode_steps"], seed, icrl["size"])
        for method, source in icrl["sources"].items():
            returns[source] = ICRL_METHODS[method].source_returns(icrl, tasks, OFFLINE_SEED + seed)
        return [_frame("darkroom", name, None, values, seed) for name, values in returns.items()]
    means, c = np.asarray(tasks), icrl["evaluate"]["ucb_c"]
    online = bandit_baselines_online(means, horizon, seed, icrl["noise_std"], c)
    offline = bandit_baselines_offline(means, offline_histories(means, horizon, seed, icrl["noise_std"]), c)
    return ([_frame("online", name, None, values, seed) for name, values in online.items()]
            + [_frame("offline", name, None, values, seed) for name, values in offline.items()])


def model_rows(icrl: dict[str, Any], tasks: list, seed: int, method, model, label: str, model_seed: int
               ) -> list[pl.DataFrame]:
    """A model's rows for evaluation seed `seed` (its context curve apart): Dark Room returns per
    in-context episode, or DPT's online regret and offline suboptimality on bandits."""
    if icrl["family"] == "darkroom":
        returns = method.play_darkroom(model, tasks, icrl["evaluate"]["episodes"], icrl["episode_steps"], icrl["size"],
                                       seed)
        return [_frame("darkroom", label, model_seed, returns, seed)]
    means, horizon = np.asarray(tasks), icrl["horizon"]
    history = offline_histories(means, horizon, seed, icrl["noise_std"])
    return [_frame("online", label, model_seed, dpt_bandit_online(model, means, horizon, seed, icrl["noise_std"]),
                   seed),
            _frame("offline", label, model_seed, dpt_bandit_offline(model, means, history), seed)]


def evaluate_icrl(spec: IcrlEvaluateSpec, out: str, threads: int = 1) -> pl.DataFrame:
    """Play spec["model"] (a model file, `wmrl.train.icrl.save_model`) or, without one, the
    baselines on the held-out tasks for every evaluation seed, with the model's context curve at
    each of its snapshots; write the rows (`ROWS`) to `out`."""
    check_spec(spec, IcrlEvaluateSpec)
    from wmrl.train.icrl import load_model

    torch.set_num_threads(threads)
    icrl = spec["icrl"]
    tasks, seeds = heldout_tasks(icrl), icrl["evaluate"]["seeds"]
    label, model_seed = spec["method"], spec.get("model_seed")
    method, model, snapshots = load_model(spec["model"]) if spec.get("model") else (None, None, {})
    frames = []
    for seed in seeds:
        if model is None:
            frames += baseline_rows(icrl, tasks, seed)
        else:
            frames += model_rows(icrl, tasks, seed, method, model, label, model_seed)
            frames += curve_rows(method, snapshots, label, model_seed, icrl, tasks, seed)
        log.info("evaluated %s on %d held-out tasks, seed %d", label, len(tasks), seed)
    rows = pl.concat(frames)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    publish(out, rows.write_parquet)
    return rows

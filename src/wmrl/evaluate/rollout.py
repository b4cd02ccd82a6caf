"""Stage 4: real-environment episodes of a trained model, one Parquet row per episode.

A run's N episodes are played side by side (one environment each, seeded env_seed + i, all reset
at once and stepped in lockstep; the policy acts for all running episodes in one batch), greedily
(no epsilon; a return-conditioned agent greedy or sampled, as `evaluate.decision_actions` says,
asked for its target return), with every checkpoint the run has ("last" and "best", or "final" for a pretrained
model; "last" alone for online DQN and the d3rlpy peers) and, for models with a trained world
model, with and without beam-search planning.
Rows (docs/architecture.md, "Evaluation rows and lineage"): experiment, scale, task, transitions
(the fine-tuning data's size; 0 for a pretrained model), method, model, seed, checkpoint, planning, planning_width, planning_horizon, episode, env_seed, return,
length, normalized — with normalized = (return - random) / (reference - random) and the
random/reference scores and their source in every row. The evaluation is an MLflow run too; its lineage file names that run and
carries the evaluated model's record (training run, git SHA, config hash, datasets).
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from wmrl import tracking
from wmrl.data import read_card
from wmrl.data.windows import ObsLayout
from wmrl.envs import env_settings, make_task_env
from wmrl.files import load_checkpoint, publish
from wmrl.jobs import EvaluateSpec, check_spec
from wmrl.models.checkpoint import load_model
from wmrl.models.world_model import WorldActionModel
from wmrl.rl.planning import beam_search

log = logging.getLogger("wmrl")
NO_PLANNING = {"width": 0, "horizon": 0}


def target_return(target: dict[str, Any], best_return: float) -> float:
    """The return a return-conditioned agent is asked for (config.TargetReturnConfig)."""
    return target["value"] * best_return if target["mode"] == "best" else target["value"]


def task_view(model: WorldActionModel, checkpoint: dict[str, Any], task: str) -> tuple[ObsLayout, torch.Tensor]:
    """The model's shared input layout, and the mask (*obs_shape) of the features `task` has."""
    shape = model.shape
    layout = ObsLayout(shape.obs_kind, tuple(shape.obs_shape), checkpoint["layout"])
    own = np.ones((*shape.obs_shape[:-1], len(checkpoint["layout"][task])), dtype=np.float32)
    return layout, torch.from_numpy(layout.place(task, own))


class ModelAgent:
    """Acts with a world-action model: greedy in Q, or by beam search, given the steps before.

    A model trained on windows of K = `context` steps learnt Q at the observations o_0 .. o_{K-1}
    of a window (o_K is only the last step's outcome), so the current observation keeps at most
    K - 1 steps before it, and K - h when a plan of horizon h reads Q h - 1 imagined steps further."""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], path: str, planning: dict[str, int] | None, env: dict[str, Any]):
        """The agent an evaluation spec asks for (see make_agent)."""
        return cls(path, spec["task"], spec["context"], planning, spec["gamma"])

    def __init__(self, path: str | Path, task: str, context: int, planning: dict[str, int] | None, gamma: float):
        self.model, self.checkpoint = load_model(path)
        self.layout, self.obs_mask = task_view(self.model, self.checkpoint, task)
        self.task, self.task_index = task, self.checkpoint["tasks"].index(task)
        self.planning, self.gamma = planning, gamma
        self.context = context - (planning["horizon"] if planning else 1)  # steps kept before the current one

    @torch.no_grad()
    def reset(self, obs: np.ndarray) -> None:
        """Start every episode; each observation is encoded once, when it arrives."""
        self.current = torch.from_numpy(self.layout.place(self.task, obs))  # (episodes, *obs_shape)
        self.obs_tokens = [self.encode(self.current)]  # per step: (episodes, dim)
        self.actions: list[np.ndarray] = []  # per step: (episodes,)

    def encode(self, placed: torch.Tensor) -> torch.Tensor:
        """Observation tokens of observations in the model's layout."""
        return self.model.obs_tokens(placed, torch.full((len(placed),), self.task_index))

    def recent(self, index: np.ndarray) -> tuple[int, torch.Tensor, torch.Tensor]:
        """For episodes `index`: the n steps kept before the current one, the n + 1 observation
        tokens (n, dim) up to the current one and the embeddings of the n actions between them."""
        n = min(len(self.actions), self.context)
        obs_tokens = torch.stack(self.obs_tokens[len(self.obs_tokens) - n - 1:], 1)[index]
        actions = torch.from_numpy(np.stack(self.actions[len(self.actions) - n:], 1)[index] if n else
                                   np.zeros((len(index), 0), dtype=np.int64))
        return n, obs_tokens, self.model.action_embedding(actions)

    @torch.no_grad()
    def act(self, index: np.ndarray) -> np.ndarray:
        _, obs_tokens, action_tokens = self.recent(index)
        context = self.model.interleave(obs_tokens, action_tokens)
        task = torch.full((len(index),), self.task_index)
        if self.planning:
            chosen = beam_search(self.model, context, self.current[index], task, self.planning["width"],
                                 self.planning["horizon"], self.gamma, self.obs_mask)
        else:
            chosen = self.model.last_q(context, task).argmax(-1)
        return chosen.numpy()

    @torch.no_grad()
    def observe(self, index: np.ndarray, actions: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        self.current[index] = torch.from_numpy(self.layout.place(self.task, obs))
        encoded = torch.zeros_like(self.obs_tokens[-1])
        encoded[index] = self.encode(self.current[index])
        taken = np.zeros(len(encoded), dtype=np.int64)
        taken[index] = actions
        self.obs_tokens = (self.obs_tokens + [encoded])[-self.context - 1:]
        self.actions = (self.actions + [taken])[-self.context:]


class DecisionAgent(ModelAgent):
    """Acts with a Decision Transformer asked for return R_0 = `target`: each episode's return-to-go
    falls by every reward it receives (R_{t+1} = R_t - r_t), and the policy at the current
    observation, given the K - 1 steps before it, picks the action: its argmax, or a sample."""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], path: str, planning: dict[str, int] | None, env: dict[str, Any]):
        return cls(path, spec["task"], spec["context"], spec["target_return"], spec["actions"] == "sampled")

    def __init__(self, path: str | Path, task: str, context: int, target: dict[str, Any], sampled: bool):
        super().__init__(path, task, context, None, 0.0)
        self.target = target_return(target, self.checkpoint["best_return"])
        self.sampled = sampled

    def reset(self, obs: np.ndarray) -> None:
        super().reset(obs)
        self.returns = [np.full(len(obs), self.target, dtype=np.float32)]  # per step: R_t of every episode

    @torch.no_grad()
    def act(self, index: np.ndarray) -> np.ndarray:
        n, obs_tokens, action_tokens = self.recent(index)
        task = torch.full((len(index),), self.task_index)
        returns = torch.from_numpy(np.stack(self.returns[len(self.returns) - n - 1:], 1)[index])
        tokens = self.model.interleave3(self.model.return_tokens(returns, task), obs_tokens, action_tokens)
        logits = self.model.last_policy(tokens, task)
        chosen = torch.multinomial(logits.softmax(-1), 1).squeeze(-1) if self.sampled else logits.argmax(-1)
        return chosen.numpy()

    def observe(self, index: np.ndarray, actions: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        super().observe(index, actions, obs, rewards)
        remaining = self.returns[-1].copy()
        remaining[index] -= rewards
        self.returns = (self.returns + [remaining])[-self.context - 1:]


class MarkovAgent:
    """An agent that acts on the current observation alone: it keeps each episode's latest one."""

    def reset(self, obs: np.ndarray) -> None:
        self.current = obs

    def observe(self, index: np.ndarray, actions: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        self.current = self.current.copy()
        self.current[index] = obs


class OnlineAgent(MarkovAgent):
    """Acts greedily with an online agent (a `wmrl.train.online` checkpoint): DQN's argmax of its
    Q-network, PPO's most likely action of its policy."""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], path: str, planning: dict[str, int] | None, env: dict[str, Any]):
        return cls(path, env)

    def __init__(self, path: str | Path, env_settings: dict[str, Any]):
        from wmrl.data.behaviour import online_agent

        checkpoint = load_checkpoint(path)
        env = make_task_env(env_settings)
        self.agent = online_agent(env, checkpoint["settings"], seed=0)
        self.agent.policy.load_state_dict(checkpoint["policy"])
        self.agent.policy.set_training_mode(False)
        self.grid = len(env.observation_space.shape) == 3

    @torch.no_grad()
    def act(self, index: np.ndarray) -> np.ndarray:
        obs = torch.as_tensor(self.current[index], dtype=torch.float32)
        if self.grid:
            obs = obs.permute(0, 3, 1, 2)  # the agent's ChannelsFirst view
        return self.agent.policy._predict(obs, deterministic=True).numpy()  # DQN: q_net's argmax; PPO: the mode


class PeerAgent(MarkovAgent):
    """Acts greedily (d3rlpy's `predict`) with a d3rlpy peer rebuilt from its weights-only
    ``last.pt`` (a `wmrl.train.peer` checkpoint); d3rlpy is imported only here."""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], path: str, planning: dict[str, int] | None, env: dict[str, Any]):
        return cls(path)

    def __init__(self, path: str | Path):
        from wmrl.peers import d3rlpy as peer

        self.peer = peer
        self.checkpoint = load_checkpoint(path)
        self.algo = peer.load_algo(self.checkpoint)

    def act(self, index: np.ndarray) -> np.ndarray:
        return self.algo.predict(self.peer.peer_observations(self.current[index], self.checkpoint["obs_kind"]))


class PeerDecisionAgent(PeerAgent):
    """Acts with a d3rlpy Decision Transformer: one stateful wrapper per episode (d3rlpy's own
    bookkeeping of the return-to-go, target minus the rewards received), greedy or sampled by
    d3rlpy's softmax sampler (numpy's global generator, seeded here)."""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], path: str, planning: dict[str, int] | None, env: dict[str, Any]):
        return cls(path, spec["target_return"], spec["actions"] == "sampled", spec["seed"])

    def __init__(self, path: str | Path, target: dict[str, Any], sampled: bool, seed: int):
        super().__init__(path)
        self.target = target_return(target, self.checkpoint["best_return"])
        self.sampled, self.seed = sampled, seed

    def reset(self, obs: np.ndarray) -> None:
        from d3rlpy.algos import GreedyTransformerActionSampler, SoftmaxTransformerActionSampler

        super().reset(obs)
        np.random.seed(self.seed)
        sampler = SoftmaxTransformerActionSampler if self.sampled else GreedyTransformerActionSampler
        self.wrappers = [self.algo.as_stateful_wrapper(self.target, sampler()) for _ in range(len(obs))]
        self.rewards = np.zeros(len(obs))  # the reward each episode received last (0 before its first step)

    def act(self, index: np.ndarray) -> np.ndarray:
        obs = self.peer.peer_observations(self.current[index], self.checkpoint["obs_kind"])
        return np.array([self.wrappers[i].predict(o, float(self.rewards[i])) for i, o in zip(index, obs, strict=True)])

    def observe(self, index: np.ndarray, actions: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        super().observe(index, actions, obs, rewards)
        self.rewards[index] = rewards


def make_agent(spec: dict[str, Any], path: str, planning: dict[str, int] | None, env_settings: dict[str, Any]):
    """The agent class spec["agent"] names ("module:Class", the method kind's choice: wmrl.methods)
    playing checkpoint `path`."""
    module, name = spec["agent"].split(":")
    return getattr(importlib.import_module(module), name).from_spec(spec, path, planning, env_settings)


def play(agent, env_settings: dict[str, Any], episodes: int, env_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths of `episodes` episodes played side by side."""
    envs = [make_task_env(env_settings)
            for _ in range(episodes)]
    agent.reset(np.stack([env.reset(seed=env_seed + i)[0] for i, env in enumerate(envs)]))
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    running = np.ones(episodes, dtype=bool)
    while running.any():
        index = np.flatnonzero(running)
        actions = agent.act(index)
        next_obs, rewards = [], np.zeros(len(index), dtype=np.float32)
        for j, (i, action) in enumerate(zip(index, actions, strict=True)):
            obs, rewards[j], terminated, truncated, _ = envs[i].step(int(action))
            returns[i] += rewards[j]
            lengths[i] += 1
            running[i] = not (terminated or truncated)
            next_obs.append(obs)
        agent.observe(index, actions, np.stack(next_obs), rewards)
    for env in envs:
        env.close()
    return returns, lengths


def reference_scores(spec: dict[str, Any], datasets: dict[str, str]) -> dict[str, Any]:
    """The random and reference scores of the task: config values, else the datasets' cards."""
    score, task = dict(spec["score"]), spec["task"]
    if score["random"] is None:
        returns = read_card(datasets["random"])["returns"]
        if "mean" not in returns:
            raise ValueError(f"task {task}: the random data {datasets['random']} has no complete episode to score; "
                             f"set tasks.{task}.score.random in config")
        score["random"] = returns["mean"]
    if score["reference"] is None:
        score["reference"] = read_card(datasets["dqn"])["policy"]["reference_score"]["mean"]
    if score["reference"] <= score["random"]:
        raise ValueError(f"task {task}: the reference score {score['reference']} is not above the random score "
                         f"{score['random']}, so normalized scores would mislead; set tasks.{task}.score in config")
    return score


def evaluate(spec: EvaluateSpec, out: dict[str, str], threads: int = 1) -> pl.DataFrame:
    """Play spec["episodes"] episodes with every checkpoint (spec["inputs"]["checkpoints"]: name ->
    file), with and without planning where the model has a world model; write the rows to
    out["rows"], track the evaluation as an MLflow run and write its lineage to out["lineage"]."""
    check_spec(spec, EvaluateSpec)
    torch.set_num_threads(threads)
    score = reference_scores(spec, spec["inputs"]["datasets"])
    env = env_settings(spec)
    plans = [None] + ([spec["planning"]] if spec["planning"] else [])
    frames = []
    for name, path in spec["inputs"]["checkpoints"].items():
        for planning in plans:
            started = time.monotonic()
            torch.manual_seed(spec["seed"])
            agent = make_agent(spec, path, planning, env)
            returns, lengths = play(agent, env, spec["episodes"], spec["env_seed"])
            settings = planning or NO_PLANNING
            label = f"beam w{settings['width']} h{settings['horizon']}" if planning else "none"
            log.info("%s %s, planning %s: return %.2f ± %.2f over %d episodes (%d steps, %.1f s)", spec["method"],
                     name, label, returns.mean(), returns.std(), len(returns), lengths.sum(),
                     time.monotonic() - started)
            frames.append(pl.DataFrame({
                "experiment": spec["experiment"], "scale": spec["scale"], "task": spec["task"],
                "transitions": spec["transitions"], "method": spec["method"], "model": spec["model"],
                "seed": spec["seed"], "checkpoint": name,
                "planning": label, "planning_width": settings["width"], "planning_horizon": settings["horizon"],
                "episode": np.arange(len(returns)), "env_seed": spec["env_seed"] + np.arange(len(returns)),
                "return": returns, "length": lengths,
                "normalized": (returns - score["random"]) / (score["reference"] - score["random"]),
                "random_score": score["random"], "reference_score": score["reference"],
                "score_source": score["source"],
            }))
    rows = pl.concat(frames)
    track(spec, rows, out["lineage"])
    publish(out["rows"], rows.write_parquet)
    return rows


def track(spec: dict[str, Any], rows: pl.DataFrame, lineage: str) -> None:
    """Log the evaluation as an MLflow run (mean return and normalized score per checkpoint and
    planning setting) and write its lineage: this run, and the trained model's own record."""
    trained = json.loads(Path(spec["inputs"]["record"]).read_text())
    tags = tracking.run_tags(spec)
    run_id = tracking.new_run(spec["mlflow_experiment"], spec["run_name"], {**tags, "trained_by": trained["run_id"]})
    means = rows.group_by("checkpoint", "planning", maintain_order=True).agg(pl.col("return", "normalized").mean())
    metrics = [(f"eval/{row['checkpoint']}/{row['planning'].replace(' ', '_')}/{column}", row[column], 0)
               for row in means.iter_rows(named=True) for column in ("return", "normalized")]
    tracking.log_run(run_id, {"episodes": spec["episodes"], "env_seed": spec["env_seed"]}, metrics)
    record = {"run_id": run_id, "run_url": tracking.run_url(run_id), **tags}
    Path(lineage).write_text(json.dumps({"evaluation": record, "model": trained}, indent=1) + "\n")

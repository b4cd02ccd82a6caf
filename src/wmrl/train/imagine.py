"""Stage 3's imagination agent: it plays the held-out task's real environment, stores what it sees,
trains the world-action model on it (the world-model part of the joint objective, from the
pretrained weights or from scratch) and trains an actor and a critic on rollouts the model
imagines (wmrl.rl.imagination, the math).

The loop, for `steps` environment steps: act (uniformly at random for the first `learning_starts`
steps, then by sampling the actor), store the step; every `train_every` steps one world-model
update on a batch of replayed windows and one actor-critic update on `imagine.starts` rollouts
from replayed observations, every learning rate its setting times the share of the run's steps
still to come (linear decay to 0). The actor reads the model's features of the real episode so
far, the context restarted every H steps (the positions imagination trains it at).

Resume: at the end of the first episode after every `checkpoint_every` steps the whole state is
saved (`<work_dir>/state.pt`: the model, the actor-critic, the optimizers, the replay buffer, the
curve, every generator's state); a killed job restarts from it with a fresh episode whose
environment seed is a function of (seed, episode), so a resumed run writes the same weights and
curve (but for its seconds) as one never killed.

Outputs: ``last.pt`` (the world model as `model.pt` holds it plus "task", "agent" and "imagine"),
``curve.parquet`` (the return of every training episode by environment step, and the seconds of
acting and learning until then),
``imagination.parquet`` (the model's open-loop error against "nothing changes" by horizon on the
agent's own last episodes) and ``model.mlflow.json`` (`training`: gradient steps, environment steps
and the seconds of acting and learning).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from wmrl import tracking
from wmrl.data.windows import ObsLayout, TaskSteps, WindowSampler, steps_of
from wmrl.envs import make_task_env
from wmrl.evaluate.world_model import open_loop_errors
from wmrl.files import claim_work_dir, load_checkpoint, save_checkpoint
from wmrl.jobs import ImagineSpec, check_spec
from wmrl.models.checkpoint import load_model
from wmrl.models.config import ModelConfig
from wmrl.models.world_model import WorldActionModel
from wmrl.progress import Progress
from wmrl.rl.config import ImagineConfig, LossConfig
from wmrl.rl.imagination import ActorCritic, actor_critic_step, make_optimizers
from wmrl.rl.objectives import joint_loss
from wmrl.train.finetune import pretrained_checkpoint
from wmrl.train.loop import suite_shape

log = logging.getLogger("wmrl")
STATE = "state.pt"


class Replay:
    """Every real step, one row per observation as a dataset stores them: an episode's rows are its
    observations, the last (or the current one, not yet acted in) with action -1."""

    def __init__(self, obs_shape: tuple[int, ...], capacity: int):
        self.obs = np.zeros((capacity, *obs_shape), dtype=np.float32)
        self.action = np.full(capacity, -1, dtype=np.int64)
        self.reward = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=bool)
        self.rows = 0

    def begin(self, obs: np.ndarray) -> None:
        """A new episode's first observation."""
        self.obs[self.rows] = obs
        self.rows += 1

    def add(self, action: int, reward: float, terminated: bool, next_obs: np.ndarray) -> None:
        """The step from the latest row: its action and outcome, and the observation it led to."""
        last = self.rows - 1
        self.action[last], self.reward[last], self.terminated[last] = action, reward, terminated
        self.begin(next_obs)

    def steps(self, task: str, index: int) -> TaskSteps:
        """The rows so far as a task's steps (wmrl.data.windows), windows sampled as from a dataset."""
        n = self.rows
        return steps_of(task, index, self.obs[:n], self.action[:n], self.reward[:n], self.terminated[:n])

    def state_dict(self) -> dict[str, torch.Tensor]:
        n = self.rows
        return {name: torch.from_numpy(getattr(self, name)[:n].copy())
                for name in ("obs", "action", "reward", "terminated")}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        n = len(state["action"])
        for name, values in state.items():
            getattr(self, name)[:n] = values.numpy()
        self.rows = n


class ImagineAgent:
    """Acts with the actor on the world model's features of each episode so far (the context
    restarted every `horizon` steps, as in imagination): sampled while training, its most
    likely action at evaluation (`greedy`). Also the evaluation's agent (wmrl.evaluate.rollout)."""

    @classmethod
    def from_spec(cls, spec: dict[str, Any], path: str, planning: dict[str, int] | None, env: dict[str, Any]):
        model, checkpoint = load_model(path)
        config = ImagineConfig(**checkpoint["imagine"])
        agent = ActorCritic(model.spec.dim, model.shape.actions, config)
        agent.load_state_dict(checkpoint["agent"])
        layout = ObsLayout(model.shape.obs_kind, tuple(model.shape.obs_shape), checkpoint["layout"])
        return cls(model, agent.eval(), layout, spec["task"], checkpoint["tasks"].index(spec["task"]), greedy=True)

    def __init__(self, model: WorldActionModel, agent: ActorCritic, layout: ObsLayout, task: str, task_index: int,
                 greedy: bool, generator: torch.Generator | None = None):
        self.model, self.agent, self.layout, self.task = model, agent, layout, task
        self.task_index, self.greedy, self.generator = task_index, greedy, generator

    @torch.no_grad()
    def reset(self, obs: np.ndarray) -> None:
        self.current = torch.from_numpy(self.layout.place(self.task, obs))
        self.tasks = torch.full((len(obs),), self.task_index)
        self.restart()

    def restart(self) -> None:
        """A fresh context holding the current observations alone."""
        state = self.model.backbone.init_state(len(self.current))
        self.features, self.state = self.model.advance(self.model.obs_tokens(self.current, self.tasks), state)
        self.length = 0

    @torch.no_grad()
    def act(self, index: np.ndarray) -> np.ndarray:
        valid = self.model.valid_actions[self.tasks[index]]
        return self.agent.act(self.features[index], valid, self.greedy, self.generator).numpy()

    @torch.no_grad()
    def observe(self, index: np.ndarray, actions: np.ndarray, obs: np.ndarray, rewards: np.ndarray) -> None:
        self.current[index] = torch.from_numpy(self.layout.place(self.task, obs))
        if self.length + 1 >= self.agent.config.horizon:
            self.restart()
            return
        taken = torch.zeros(len(self.current), dtype=torch.long)
        taken[index] = torch.from_numpy(np.asarray(actions, dtype=np.int64))
        _, self.state = self.model.advance(self.model.action_embedding(taken), self.state)
        self.features, self.state = self.model.advance(self.model.obs_tokens(self.current, self.tasks), self.state)
        self.length += 1


class Learner:
    """Everything a run holds and a resume restores: model, actor-critic, optimizers, replay,
    curve, counters and generators."""

    def __init__(self, spec: ImagineSpec):
        settings = spec["settings"]
        self.spec, self.settings, self.task = spec, settings, spec["task"]
        self.layout, shape = suite_shape(spec["suite"], spec["channel_layout"], spec["positions"])
        self.task_index = list(spec["suite"]).index(self.task)
        self.shape = shape
        torch.manual_seed(spec["seed"])
        self.model = WorldActionModel(shape, ModelConfig(**spec["model"]))
        if spec["init"] == "pretrained":
            self.start_from(spec["inputs"]["pretrained"])
        self.loss = LossConfig(**spec["loss"])
        self.config = ImagineConfig(**settings["imagine"])
        self.agent = ActorCritic(self.model.spec.dim, shape.actions, self.config)
        self.world_optimizer = torch.optim.AdamW(self.model.parameters(), lr=settings["learning_rate"],
                                                 weight_decay=0.0)
        self.optimizers = make_optimizers(self.agent)
        own = self.layout.features[self.task]
        self.obs_mask = torch.from_numpy(self.layout.place(self.task, np.ones((*shape.obs_shape[:-1], len(own)),
                                                                                 dtype=np.float32)))
        env_shape = make_task_env(spec).observation_space.shape
        self.replay = Replay(env_shape, 2 * settings["steps"] + 2)
        self.generator = torch.Generator().manual_seed(spec["seed"])
        self.rng = np.random.default_rng(spec["seed"])
        self.curve: list[dict[str, Any]] = []
        self.env_steps = self.episodes = self.updates = 0
        self.busy = 0.0  # seconds of acting and learning, summed over resumes

    def start_from(self, path: str) -> None:
        self.model.load_state_dict(pretrained_checkpoint(path, self.shape)["state_dict"])

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "agent": self.agent.state_dict(),
                "world_optimizer": self.world_optimizer.state_dict(),
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
                "replay": self.replay.state_dict(), "curve": self.curve, "env_steps": self.env_steps,
                "episodes": self.episodes, "updates": self.updates, "busy": self.busy,
                "generator": self.generator.get_state(), "torch": torch.get_rng_state(),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.agent.load_state_dict(state["agent"])
        self.world_optimizer.load_state_dict(state["world_optimizer"])
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.replay.load_state_dict(state["replay"])
        self.curve, self.env_steps, self.episodes = state["curve"], state["env_steps"], state["episodes"]
        self.updates, self.busy = state["updates"], state["busy"]
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch"])
        self.rng.bit_generator.state = state["rng"]

    def sampler(self) -> WindowSampler:
        return WindowSampler([self.replay.steps(self.task, self.task_index)], self.layout, self.spec["positions"])

    def update(self) -> dict[str, float]:
        """`world_model_updates` world-model updates on replayed windows, then one actor-critic
        update in imagination."""
        sampler = self.sampler()
        left = 1.0 - self.env_steps / self.settings["steps"]
        for optimizer, base in ((self.world_optimizer, self.settings["learning_rate"]),
                                (self.optimizers["actor"], self.config.actor_lr),
                                (self.optimizers["critic"], self.config.critic_lr)):
            for group in optimizer.param_groups:
                group["lr"] = base * left
        self.model.train()
        for _ in range(self.settings["world_model_updates"]):
            batch = {k: torch.from_numpy(v) for k, v in sampler.sample(self.settings["batch_size"], self.rng).items()}
            loss, _ = joint_loss(self.model, self.model, batch, self.loss)
            self.world_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1000.0)
            self.world_optimizer.step()
        self.model.eval()
        steps = sampler.tasks[0]
        rows = steps.starts[self.rng.integers(len(steps.starts), size=self.config.starts)]
        start = torch.from_numpy(self.layout.place(self.task, steps.obs[rows]))
        task = torch.full((len(rows),), self.task_index)
        logged = actor_critic_step(self.agent, self.optimizers, self.model, start, task, self.obs_mask, self.generator)
        self.updates += 1
        return {"world_model": float(loss.detach()), **logged}

    def episode_seed(self) -> int:
        return self.spec["seed"] * 1_000_003 + self.episodes

    def run(self, work_dir: Path, progress: Progress) -> None:
        """Act and learn until `steps` environment steps; save the state at the first episode end
        after every `checkpoint_every` steps."""
        settings = self.settings
        env = make_task_env(self.spec)
        actor = ImagineAgent(self.model, self.agent, self.layout, self.task, self.task_index, greedy=False,
                             generator=self.generator)
        obs, _ = env.reset(seed=self.episode_seed())
        self.replay.begin(obs)
        actor.reset(obs[None])
        total, saved_at, started, logged = 0.0, self.env_steps, time.perf_counter(), {}
        while self.env_steps < settings["steps"]:
            acting = self.env_steps >= settings["learning_starts"]
            if self.env_steps == settings["learning_starts"]:
                actor.reset(obs[None])  # the actor's context starts with its first action
            if acting:
                action = int(actor.act(np.zeros(1, dtype=np.int64))[0])
            else:
                action = int(self.rng.integers(env.action_space.n))
            obs, reward, terminated, truncated, _ = env.step(action)
            self.replay.add(action, float(reward), bool(terminated), obs)
            self.env_steps += 1
            total += float(reward)
            if self.env_steps >= settings["learning_starts"] and self.env_steps % settings["train_every"] == 0:
                logged = self.update()  # before a save at this step, so a resumed run does not skip it
            if terminated or truncated:
                self.curve.append({"step": self.env_steps, "episode_return": total,
                                   "seconds": self.busy + time.perf_counter() - started})
                self.episodes += 1
                total = 0.0
                if self.env_steps - saved_at >= settings["checkpoint_every"] and self.env_steps < settings["steps"]:
                    self.busy += time.perf_counter() - started
                    save_checkpoint(self.state_dict(), work_dir / STATE)
                    saved_at, started = self.env_steps, time.perf_counter()
                obs, _ = env.reset(seed=self.episode_seed())
                self.replay.begin(obs)
                actor.reset(obs[None])
            elif acting:
                actor.observe(np.zeros(1, dtype=np.int64), np.array([action]), obs[None], np.array([reward]))
            if self.env_steps % 1000 == 0:
                progress.update(self.env_steps)
                if logged:
                    recent = [row["episode_return"] for row in self.curve[-10:]]
                    log.info("step %d: last 10 episodes' mean return %.1f; %s", self.env_steps,
                             float(np.mean(recent)) if recent else float("nan"),
                             {k: round(v, 4) for k, v in logged.items()})
        self.busy += time.perf_counter() - started
        env.close()

    def open_loop(self, episodes: int = 10) -> pl.DataFrame:
        """The model's open-loop error by horizon on the agent's last `episodes` episodes (from
        each one's every window start, real actions fed), beside "nothing changes"."""
        steps = self.replay.steps(self.task, self.task_index)
        first = max(0, len(self.curve) - episodes)  # the first episode kept
        finals = np.flatnonzero(steps.episode_end[:-1] != steps.episode_end[1:])  # each ended episode's final row
        first_row = int(finals[first - 1] + 1) if first > 0 else 0
        sampler = WindowSampler([steps], self.layout, self.config.horizon)
        batch = {k: torch.from_numpy(v) for k, v in sampler.windows(0, steps.starts[steps.starts >= first_row]).items()}
        model_error, still_error, counts = open_loop_errors(self.model, batch, self.obs_mask)
        return pl.DataFrame({"horizon": np.arange(1, len(counts) + 1),
                             "model_error": model_error / np.maximum(counts, 1),
                             "nothing_changes": still_error / np.maximum(counts, 1), "transitions": counts})

    def checkpoint(self) -> dict[str, Any]:
        """``last.pt``: the world model as model.pt holds it, the actor-critic and its settings."""
        return {"state_dict": self.model.state_dict(), "shape": asdict(self.shape), "model": dict(self.spec["model"]),
                "tasks": list(self.spec["suite"]), "layout": self.layout.features, "task": self.task,
                "step": self.env_steps, "decision": None, "agent": self.agent.state_dict(),
                "imagine": asdict(self.config)}


def train_imagine(spec: ImagineSpec, out: dict[str, str]) -> None:
    """Run the imagination agent as `spec` describes; write the files named in `out` (last,
    curve, imagination, mlflow)."""
    check_spec(spec, ImagineSpec)
    torch.set_num_threads(1)  # small networks: one thread is fastest here
    work_dir = Path(spec["work_dir"])
    resume = claim_work_dir(work_dir, spec)
    learner = Learner(spec)
    if resume and (work_dir / STATE).exists():
        learner.load_state_dict(load_checkpoint(work_dir / STATE))
        log.info("resuming at environment step %d (episode %d) from %s", learner.env_steps, learner.episodes,
                 work_dir / STATE)
    progress = Progress(spec["settings"]["steps"], spec["run_name"], unit="env steps")
    learner.run(work_dir, progress)
    progress.close()
    errors = learner.open_loop()
    tags = tracking.run_tags(spec)
    run_id = tracking.start_or_resume_run(work_dir, spec["mlflow_experiment"], spec["run_name"], tags)
    tracking.log_run(run_id, {"init": spec["init"], **{f"imagine/{k}": v for k, v in spec["settings"].items()
                                                       if k != "imagine"}},
                     [("train/episode_return", row["episode_return"], row["step"]) for row in learner.curve])
    save_checkpoint(learner.checkpoint(), out["last"])
    pl.DataFrame(learner.curve, schema={"step": pl.Int64, "episode_return": pl.Float64, "seconds": pl.Float64}
                 ).write_parquet(out["curve"])
    errors.write_parquet(out["imagination"])
    training = {"steps": learner.updates, "seconds": learner.busy, "env_steps": learner.env_steps}
    tracking.write_record(out["mlflow"], run_id, spec, None, {}, learner.model.parameter_count(), training=training)
    log.info("imagination agent on %s: %d episodes in %d steps, %d updates in %.0f s; last 10 returns %s",
             spec["task"], len(learner.curve), learner.env_steps, learner.updates, learner.busy,
             [row["episode_return"] for row in learner.curve[-10:]])

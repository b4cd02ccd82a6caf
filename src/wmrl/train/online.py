"""Stage 3's online peers: stable-baselines3 DQN or PPO trained in the real held-out environment for
as many environment steps as the offline methods' few-shot data has transitions (the baselines a
user would reach for; PPO learns from as many whole rollouts as those steps hold). Outputs:
``last.pt`` ({"policy": state dict, "settings"}, weights-only loadable) ``curve.parquet`` (the
return of every training episode by environment step) and ``model.mlflow.json`` (its lineage, and
`training`: its gradient steps and the wall seconds of stable-baselines3's learn, environment steps
included); the run is tracked in MLflow like every other training job.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import gymnasium as gym
import polars as pl

from wmrl import tracking
from wmrl.data.behaviour import online_agent
from wmrl.envs import make_task_env
from wmrl.files import claim_work_dir, save_checkpoint
from wmrl.jobs import OnlineSpec, check_spec
from wmrl.progress import Progress

log = logging.getLogger("wmrl")


class EpisodeReturns(gym.Wrapper):
    """Records each finished episode's return and the environment step it ended at."""

    def __init__(self, env: gym.Env, progress: Progress):
        super().__init__(env)
        self.progress, self.steps, self.total, self.rows = progress, 0, 0.0, []

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        self.total += float(reward)
        if terminated or truncated:
            self.rows.append({"step": self.steps, "episode_return": self.total})
            self.total = 0.0
        self.progress.update(self.steps)
        return obs, reward, terminated, truncated, info


def train_online(spec: OnlineSpec, out: dict[str, str]) -> None:
    """Train DQN or PPO online as `spec` describes; write the files named in `out` (last, curve, mlflow)."""
    check_spec(spec, OnlineSpec)
    settings = spec["settings"]
    claim_work_dir(Path(spec["work_dir"]), spec)
    env = make_task_env(spec)
    ppo = settings["algorithm"] == "ppo"
    steps = settings["steps"]
    if ppo:  # SB3 collects whole rollouts: learn from as many as the steps hold, never more steps
        steps -= steps % min(settings["n_steps"], steps)
    progress = Progress(steps, spec["run_name"], unit="env steps")
    recorded = EpisodeReturns(env, progress)
    agent = online_agent(recorded, settings, spec["seed"])
    started = time.perf_counter()
    agent.learn(total_timesteps=steps)
    # SB3's DQN counts its gradient steps, its PPO epochs: one gradient step per minibatch (no target_kl, no early stop)
    updates = agent._n_updates * math.ceil(agent.n_steps / agent.batch_size) if ppo else agent._n_updates
    training = {"steps": int(updates), "seconds": time.perf_counter() - started, "env_steps": steps}
    progress.close()
    tags = tracking.run_tags(spec)
    run_id = tracking.start_or_resume_run(Path(spec["work_dir"]), spec["mlflow_experiment"], spec["run_name"], tags)
    tracking.log_run(run_id, {f"online/{key}": value for key, value in settings.items()},
                     [("train/episode_return", row["episode_return"], row["step"]) for row in recorded.rows])
    save_checkpoint({"policy": agent.policy.state_dict(), "settings": settings}, out["last"])
    pl.DataFrame(recorded.rows, schema={"step": pl.Int64, "episode_return": pl.Float64}).write_parquet(out["curve"])
    acting = agent.policy if ppo else agent.policy.q_net  # not DQN's target copy
    parameters = sum(p.numel() for p in acting.parameters())
    tracking.write_record(out["mlflow"], run_id, spec, None, {}, parameters, training=training)
    log.info("online %s on %s: %d episodes in %d steps, last 10 returns %s", settings["algorithm"].upper(),
             spec["task"], len(recorded.rows), recorded.steps, [row["episode_return"] for row in recorded.rows[-10:]])

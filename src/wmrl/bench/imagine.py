"""What the imagination agent (kind ``imagine``, wmrl.train.imagine) costs per environment step and
per update, against stable-baselines3's DQN (the ``dqn_online`` method) measured in the same run
on the same environment and threads (1 by default, as both jobs run).

Both agents are built from the job specs the pipeline gives them (`wmrl.dag.specs.finetune_spec`
on the experiment's held-out task at its largest data size; default `imagination_control`'s
CartPole at the laptop scale): the catalogue's ``imagine_scratch`` (init scratch only: a bench has
no pretrained model file) through `Learner(spec)`, DQN through `dqn_agent` with ``dqn_online``'s
settings (`finetune.online`). With N = `steps` (100):
- imagination: `Learner.run` fills the replay with the spec's `learning_starts` uniform random
  steps (untimed); `Learner.run` with no updates for 10 N steps (acting alone: the environment's
  step, the replay's row and the actor's forward through `ImagineAgent.act`/`observe`); N calls
  each, interleaved so that all see the same machine and timed one by one, of `Learner.update` (one
  world-model step on replayed windows, replay sampling included, and one actor-critic step in
  imagination), of `update` with its actor-critic step skipped (the world-model step) and of
  `actor_critic_step` alone from replayed observations as `update` calls it (the imagination step);
  `Learner.run` for train_every x N steps at the spec's `train_every` (the whole loop). No
  resumable state is saved (the job saves one every `checkpoint_every` steps).
- DQN: `learn` for its `learning_starts` random steps, then for 50 N steps (the whole loop at its
  `train_freq`, its gradient steps counted by `_n_updates`), then 10 N gradient steps alone
  (`train(gradient_steps=1)`, as `learn` calls it), timed one by one.
Step times are medians, loop rates environment steps over wall seconds. Ratios: the imagination
update's time over DQN's gradient step's, and the whole loops' environment steps/s.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import numpy as np
import torch

from wmrl.bench.pretrain import ROOT
from wmrl.config import compose
from wmrl.dag.specs import finetune_spec
from wmrl.dag.targets import method_models
from wmrl.data.behaviour import dqn_agent
from wmrl.envs import make_task_env
from wmrl.files import publish
from wmrl.methods import kind_of
from wmrl.progress import Progress
from wmrl.rl.imagination import actor_critic_step
from wmrl.train.imagine import Learner

IMAGINE, DQN = "imagine_scratch", "dqn_online"  # the catalogue's methods (config/methods.yaml)
NO_UPDATES = 2**62  # a train_every no run reaches: acting alone


def main(experiment: str, scale: str, steps: int, threads: int, out: str) -> dict:
    torch.set_num_threads(threads)
    cfg = compose({"scale": scale, "experiment": experiment}, ROOT)
    for method in (IMAGINE, DQN):  # checked as if run: the experiment need not run them
        kind_of(cfg.finetune.methods[method]).check(cfg, method, cfg.finetune.methods[method], True)
    task, transitions = cfg.heldout_tasks[0], max(cfg.finetune.data.sizes)  # the online methods' run
    imagine_spec, dqn_spec = (finetune_spec(cfg, task, transitions, method, method_models(cfg, method)[0], 0)
                              for method in (IMAGINE, DQN))
    imagine, dqn = imagination(imagine_spec, steps), reference(dqn_spec, steps, threads)
    ratios = {"update_over_gradient_step": imagine["update_s"] / dqn["gradient_step_s"],
              "loop_env_steps_per_s": imagine["loop_env_steps_per_s"] / dqn["loop_env_steps_per_s"]}
    every = imagine_spec["settings"]["train_every"], dqn_spec["settings"]["train_freq"]
    print(f"{experiment} ({scale}) {task}: {IMAGINE} vs {DQN} (stable-baselines3), {threads} torch thread(s), "
          f"N = {steps}")
    print(f"{'':38} {'imagine':>10} {'DQN':>10}")
    for label, keys, factor in (("acting alone env steps/s", ("act_env_steps_per_s", None), 1),
                                ("update / gradient step ms", ("update_s", "gradient_step_s"), 1000),
                                ("  world-model step ms", ("world_model_s", None), 1000),
                                ("  imagination step ms", ("imagination_s", None), 1000),
                                (f"whole loop env steps/s (every {every[0]} / {every[1]})",
                                 ("loop_env_steps_per_s",) * 2, 1),
                                ("updates per env step in the loop", ("updates_per_env_step",) * 2, 1)):
        shown = [f"{factor * row[key]:10.2f}" if key else f"{'':>10}" for row, key in zip((imagine, dqn), keys)]
        print(f"{label:38} {' '.join(shown)}")
    print(f"imagination update / DQN gradient step: {ratios['update_over_gradient_step']:.1f}x the time; "
          f"whole loop: {ratios['loop_env_steps_per_s']:.2f}x DQN's env steps/s")
    figures = {"benchmark": "imagine_cost", "reference": f"{DQN} (stable-baselines3 DQN) in the same run",
               "experiment": experiment, "scale": scale, "task": task, "steps": steps, "threads": threads,
               "torch_threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
               "platform": platform.platform(), "imagine": imagine, "dqn": dqn, "ratios": ratios,
               "settings": {IMAGINE: imagine_spec["settings"], DQN: dqn_spec["settings"],
                            "model": imagine_spec["model"]}}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    publish(out, lambda path: Path(path).write_text(json.dumps(figures, indent=1) + "\n"))
    return figures


def imagination(spec: dict[str, Any], steps: int) -> dict[str, float]:
    """The imagination agent's figures (module docstring), N = `steps`."""
    settings = spec["settings"]
    acting, loop = 10 * steps, settings["train_every"] * steps
    total = settings["learning_starts"] + acting + loop  # the replay holds them all; no state is saved
    learner = Learner({**spec, "settings": {**settings, "steps": total, "checkpoint_every": total}})
    with tempfile.TemporaryDirectory() as work_dir:
        timed_run(learner, work_dir, settings["learning_starts"])  # uniform random actions
        figures = {"act_env_steps_per_s": acting / timed_run(learner, work_dir, acting, train_every=NO_UPDATES)}
        figures.update(update_parts(learner, steps))
        updates = learner.updates
        seconds = timed_run(learner, work_dir, loop, train_every=settings["train_every"])
    return {**figures, "loop_env_steps_per_s": loop / seconds,
            "updates_per_env_step": (learner.updates - updates) / loop, "parameters": learner.model.parameter_count()}


def timed_run(learner: Learner, work_dir: str, steps: int, **settings) -> float:
    """Seconds of `Learner.run` for `steps` more environment steps, `settings` overriding the spec's."""
    learner.settings.update(steps=learner.env_steps + steps, **settings)
    progress = Progress(learner.settings["steps"], "bench imagine", unit="env steps")
    return timed(lambda: learner.run(Path(work_dir), progress))


def update_parts(learner: Learner, steps: int) -> dict[str, float]:
    """Median seconds of `Learner.update`, of its world-model step and of its imagination step, `steps` each."""

    def world_model_step() -> None:
        with patch("wmrl.train.imagine.actor_critic_step", return_value={}):  # update() less its actor-critic step
            learner.update()

    parts = {"update_s": learner.update, "world_model_s": world_model_step,
             "imagination_s": lambda: imagination_step(learner)}
    seconds: dict[str, list[float]] = {key: [] for key in parts}
    for _ in range(steps):
        for key, step in parts.items():
            seconds[key].append(timed(step))
    return {key: float(np.median(times)) for key, times in seconds.items()}


def imagination_step(learner: Learner) -> None:
    """One actor-critic step in imagination from replayed observations, as `Learner.update` takes it."""
    steps = learner.replay.steps(learner.task, learner.task_index)
    rows = steps.starts[learner.rng.integers(len(steps.starts), size=learner.config.starts)]
    start = torch.from_numpy(learner.layout.place(learner.task, steps.obs[rows]))
    task = torch.full((len(rows),), learner.task_index)
    actor_critic_step(learner.agent, learner.optimizers, learner.model, start, task, learner.obs_mask,
                      learner.generator)


def reference(spec: dict[str, Any], steps: int, threads: int) -> dict[str, float]:
    """DQN's figures (module docstring), N = `steps`."""
    settings = spec["settings"]
    agent = dqn_agent(make_task_env(spec), settings, spec["seed"])
    torch.set_num_threads(threads)  # dqn_agent sets 1, as the jobs run
    agent.learn(total_timesteps=settings["learning_starts"])
    loop, updates = 50 * steps, agent._n_updates
    seconds = timed(lambda: agent.learn(total_timesteps=loop, reset_num_timesteps=False))
    figures = {"loop_env_steps_per_s": loop / seconds, "updates_per_env_step": (agent._n_updates - updates) / loop}
    step = median_seconds(lambda: agent.train(gradient_steps=1, batch_size=agent.batch_size), 10 * steps)
    return {**figures, "gradient_step_s": step, "parameters": sum(p.numel() for p in agent.policy.q_net.parameters())}


def median_seconds(step: Callable[[], Any], times: int) -> float:
    """The median wall seconds of `times` calls of `step`."""
    return float(np.median([timed(step) for _ in range(times)]))


def timed(step: Callable[[], Any]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started

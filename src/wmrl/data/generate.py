"""Stage 1: generate one offline dataset (one task, one behaviour policy, one seed).

The job's whole input is a `spec` (a plain dict, built by `wmrl.dag.specs.dataset_spec`), so a
dataset is regenerated exactly when its own settings or the data/env code change. The dataset
is written into ``<out>.partial`` and renamed to ``<out>`` only once its card is written: a killed
job never leaves a directory that looks complete, and rerunning starts clean.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from wmrl.data.behaviour import LEARNERS, evaluate_policy, run_learner, run_random
from wmrl.data.card import dataset_card, write_card
from wmrl.data.writer import DatasetWriter
from wmrl.envs import action_spec, make_task_env, obs_spec
from wmrl.files import publish_dir
from wmrl.progress import Progress

log = logging.getLogger("wmrl")


def generate_dataset(spec: dict[str, Any], out: Path | str) -> dict[str, Any]:
    """Generate the dataset described by `spec` into directory `out`; return its card."""
    with publish_dir(out) as partial:
        def env():
            return make_task_env(spec)

        train_env = env()
        obs, action = obs_spec(train_env).to_dict(), action_spec(train_env).to_dict()
        settings = spec["settings"]
        writer = DatasetWriter(partial, obs, action, spec["shard_rows"])
        progress = Progress(settings["steps"], f"{spec['task']}/{spec['policy']}/seed{spec['seed']}")
        log.info("generating %s/%s with the %s policy, seed %d, %s steps -> %s",
                 spec["suite"], spec["task"], spec["policy"], spec["seed"], f"{settings['steps']:,}", out)
        if spec["policy"] == "random":
            run_random(train_env, writer, settings["steps"], spec["seed"], progress)
        elif spec["policy"] in LEARNERS:
            model = run_learner(spec["policy"], train_env, writer, settings, spec["seed"], progress)
        else:
            raise ValueError(f"unknown behaviour policy {spec['policy']!r}")
        progress.update(writer.transitions)
        seconds = progress.close()
        log.info("recorded %s transitions in %.1fs (%.0f steps/s)", f"{writer.transitions:,}", seconds,
                 writer.transitions / max(seconds, 1e-9))
        reference = None
        if spec["policy"] in LEARNERS:
            reference = evaluate_policy(model, env(), settings["eval_episodes"], spec["seed"],
                                        epsilon=settings.get("eval_epsilon", 0.0),  # dqn
                                        sampled=settings.get("eval_sampled", False))  # ppo, recurrent_ppo
            log.info("final %s policy: return %.2f +- %.2f over %d episodes (%s)", spec["policy"], reference["mean"],
                     reference["std"], reference["episodes"],
                     "sampled" if reference.get("sampled") else f"epsilon {reference['epsilon']:g}")

        policy = {"name": spec["policy"], "settings": spec["settings"], "reference_score": reference}
        card = dataset_card(spec, obs, action, writer, policy)
        write_card(partial, card)
    return card


"""Dataset generation speed against the bare environment's speed, per MinAtar game.

Reference: the tightest loop over MinAtar itself (``act`` + ``state`` with pre-drawn random
actions, sticky actions on). Measured: the generation stage with the same policy, end to end
(env construction, recording, bit-packing, Parquet writing, hashing, card). Goal: ratio >= 0.8.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from wmrl.config import compose
from wmrl.dag.specs import dataset_spec
from wmrl.data.generate import generate_dataset
from wmrl.envs.minatar import GAMES

GOAL = 0.8
ROOT = Path(__file__).resolve().parents[3]  # the repository: its config/ defines the games


def raw_steps_per_second(game: str, steps: int, seed: int = 0) -> float:
    from minatar import Environment

    env = Environment(game, sticky_action_prob=0.1)
    env.seed(seed)
    env.reset()
    actions = np.random.default_rng(seed).integers(0, env.num_actions(), size=steps).tolist()
    start = time.perf_counter()
    for action in actions:
        _, terminated = env.act(action)
        env.state()
        if terminated:
            env.reset()
    return steps / (time.perf_counter() - start)


def generation_steps_per_second(game: str, steps: int, seed: int = 0) -> float:
    """The default experiment's random-policy dataset job for `game`, with `steps` steps."""
    spec = dataset_spec(compose({"scale": "laptop"}, ROOT), game, "random", seed)
    spec["settings"]["steps"] = steps
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_dataset(spec, Path(tmp) / game)
        return steps / (time.perf_counter() - start)


def main(steps: int, out: str) -> dict:
    rows = []
    print(f"{'game':16} {'raw env':>12} {'generation':>12} {'ratio':>6}  (steps/s, {steps:,} steps, goal >= {GOAL})")
    for game in GAMES:
        raw = raw_steps_per_second(game, steps)
        gen = generation_steps_per_second(game, steps)
        rows.append({"game": game, "raw_steps_per_s": raw, "generation_steps_per_s": gen, "ratio": gen / raw})
        print(f"{game:16} {raw:12,.0f} {gen:12,.0f} {gen / raw:6.2f}")
    ratios = [row["ratio"] for row in rows]
    print(f"min ratio {min(ratios):.2f}, geometric mean {float(np.exp(np.mean(np.log(ratios)))):.2f}")
    figures = {"benchmark": "dataset_generation", "reference": "bare MinAtar act()+state() loop",
               "goal_ratio": GOAL, "steps": steps, "machine": platform.processor() or platform.machine(),
               "games": rows}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(figures, indent=1) + "\n")
    return figures

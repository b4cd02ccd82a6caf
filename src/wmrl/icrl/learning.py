"""Learning histories for Algorithm Distillation (`wmrl.models.ad`), made by noise distillation.

AD (Laskin et al. 2022) imitates a learning algorithm from its learning histories: the steps of a
learner on one task over many consecutive episodes, its return rising as it learns. AD-ε (Zisman
et al. 2023, "Emergence of In-Context Reinforcement Learning from Noise Distillation") makes such
histories without running an RL algorithm: one learner plays the oracle's action with noise that
decays across episodes. Episode k = 0..K-1 of a history is played ε_k-greedily,

    ε_k = max(0, 1 - k / (decay · K)),

i.e. with probability ε_k a uniformly drawn action, else the oracle's (`optimal_darkroom_action`):
the first episode is uniform, and from episode decay · K on the learner is the oracle.

Dark Room (`wmrl.icrl.tasks`): every episode starts at state 0, (0, 0), lasts `episode_steps`
steps, 5 actions, reward 1 on each step that ends on the goal, no termination. A history is its K
episodes one after the other, L = K · episode_steps steps, written as the contract's learning kind
(`wmrl.icrl.histories`) with the oracle's action at every step's state (``optimal_actions``: the
label of an in-context accuracy curve).

AD reads a history as one token per step t: the state s_t, the previous action a_{t-1} and reward
r_{t-1}, across episode boundaries too (the first step of episode k + 1 carries the last action and
reward of episode k); the history's step 0 has none, so it carries the "none" action index A and
reward 0. `wmrl.icrl.arrays.LearningArrays.windows` cuts training windows of consecutive steps from
random histories at random starts; the target at each step is the learner's action a_t.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from wmrl.icrl.histories import Histories, check_heldout, kind_frame
from wmrl.icrl.tasks import MOVES, darkroom_step, optimal_darkroom_action


def exploration_schedule(episodes: int, decay: float) -> np.ndarray:
    """ε_k = max(0, 1 - k / (decay · episodes)) for k = 0..episodes-1 (module doc)."""
    if decay <= 0:
        raise ValueError(f"decay must be positive, not {decay}")
    return np.maximum(0.0, 1.0 - np.arange(episodes) / (decay * episodes))


def noise_distillation_histories(goals: Sequence[tuple[int, int]], episodes: int, episode_steps: int, seed: int = 0,
                                 heldout: Sequence[tuple[int, int]] = (), per_task: int = 1, size: int = 5,
                                 decay: float = 0.7) -> Histories:
    """`per_task` learning histories of `episodes` episodes of `episode_steps` steps for each goal of
    `goals` in a `size` x `size` Dark Room (module doc), refusing any goal of `heldout`."""
    check_heldout(goals, heldout)
    if episodes < 1 or episode_steps < 1:
        raise ValueError(f"a learning history needs episodes and steps, not {episodes} x {episode_steps}")
    goal_xy = np.asarray(goals, dtype=int).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(len(goal_xy)), per_task)
    rows, shape = len(task), (len(task), episodes, episode_steps)
    explores = rng.random(shape) < exploration_schedule(episodes, decay)[None, :, None]
    uniform_actions = rng.integers(len(MOVES), size=shape)
    goal_x, goal_y = goal_xy[task, 0, None], goal_xy[task, 1, None]  # (rows, 1): broadcast over episodes
    goal_state = goal_x * size + goal_y
    columns = {name: np.zeros(shape, dtype=np.float32 if name == "rewards" else np.int64)
               for name in ("states", "actions", "rewards", "next_states", "optimal_actions")}
    state = np.zeros((rows, episodes), dtype=np.int64)  # every episode starts at (0, 0)
    for t in range(episode_steps):  # the episodes of a history are independent given ε_k: all at once
        optimal = optimal_darkroom_action(state, (goal_x, goal_y), size)
        action = np.where(explores[..., t], uniform_actions[..., t], optimal)
        next_state = darkroom_step(state, action, size)
        for name, value in (("states", state), ("actions", action), ("rewards", next_state == goal_state),
                            ("next_states", next_state), ("optimal_actions", optimal)):
            columns[name][..., t] = value
        state = next_state
    length = episodes * episode_steps
    frame = kind_frame("learning", {"task": task, **{name: value.reshape(rows, length)
                                                     for name, value in columns.items()}})
    settings = {"size": size, "per_task": per_task, "heldout_goals": [list(map(int, g)) for g in heldout],
                "decay": decay, "behaviour": "the oracle, epsilon-greedy with epsilon_k = max(0, 1 - k / (decay K)) "
                                             "in episode k of K (AD-epsilon noise distillation)"}
    return Histories("darkroom", size * size, len(MOVES), length, goal_xy.tolist(), settings, seed, frame,
                     kind="learning", episodes=episodes, episode_steps=episode_steps)

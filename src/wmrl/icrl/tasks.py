"""The two task families of DPT as Gymnasium environments, the task lists, and their oracles.

Bandit (one state, ``arms`` actions): pulling arm a gives a reward r ~ N(mu_a, sigma^2), the arm
means mu ~ U(0, 1)^arms drawn once per task, sigma = `noise_std` (0.3, as in DPT's code, whose
``--var 0.3`` is passed to ``np.random.normal`` as the scale); the episode is truncated
after `horizon` pulls. The oracle always pulls a* = argmax_a mu_a and expects horizon * mu_{a*}.

Dark Room (``size`` x ``size`` grid, 5 actions): the agent starts at (0, 0); action a moves it by
MOVES[a] (clipped to the grid); the reward is 1 on every step that ends on the goal cell; the
episode is truncated after `horizon` steps. The observation is the state index x * size + y. The
oracle closes the x gap first, then the y gap, then stays; from (0, 0) it first reaches the goal
after d = gx + gy steps and then stays on it, so its return is horizon - max(d - 1, 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import numpy as np

BANDIT_ARMS = 5
BANDIT_HORIZON = 500
NOISE_STD = 0.3  # DPT's bandit_env.py: np.random.normal(0, var) with var = 0.3, a standard deviation

DARKROOM_SIZE = 10
DARKROOM_HORIZON = 100
# (dx, dy) of actions 0..4: x + 1, x - 1, y + 1, y - 1, stay (DPT's numbering).
MOVES = np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [0, 0]])
STAY = 4


# --------------------------------------------------------------------------- bandits


def bandit_tasks(count: int, arms: int = BANDIT_ARMS, seed: int = 0) -> np.ndarray:
    """Arm means of `count` bandit tasks, shape (count, arms), each mean ~ U(0, 1)."""
    return np.random.default_rng(seed).uniform(0.0, 1.0, size=(count, arms))


def optimal_arm(means: Sequence[float]) -> int:
    """The oracle's arm: the one with the highest mean (the lowest index among ties)."""
    return int(np.argmax(means))


def optimal_bandit_return(means: Sequence[float], horizon: int = BANDIT_HORIZON) -> float:
    """The oracle's expected return over `horizon` pulls: horizon * max_a mu_a."""
    return float(horizon * np.max(means))


class BanditEnv(gym.Env):
    """A Gaussian multi-armed bandit: observation always 0, action = arm, reward ~ N(mu_arm, sigma^2)."""

    def __init__(self, means: Sequence[float], horizon: int = BANDIT_HORIZON,
                 noise_std: float = NOISE_STD):
        self.means = np.asarray(means, dtype=float)
        self.horizon = horizon
        self.noise_std = float(noise_std)
        self.observation_space = gym.spaces.Discrete(1)
        self.action_space = gym.spaces.Discrete(len(self.means))
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)  # seeds self.np_random, the reward noise
        self.steps = 0
        return 0, {}

    def step(self, action):
        reward = float(self.means[action] + self.noise_std * self.np_random.standard_normal())
        self.steps += 1
        return 0, reward, False, self.steps >= self.horizon, {}


# --------------------------------------------------------------------------- Dark Room


def darkroom_goals(size: int = DARKROOM_SIZE) -> list[tuple[int, int]]:
    """Every cell of the grid as a goal (x, y), in state-index order."""
    return [(x, y) for x in range(size) for y in range(size)]


def split_goals(goals: Sequence[tuple[int, int]], heldout: int = 20,
                seed: int = 0) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """(train, held-out) goals: a seeded permutation of `goals`, the last `heldout` held out."""
    order = np.random.default_rng(seed).permutation(len(goals))
    shuffled = [(int(goals[i][0]), int(goals[i][1])) for i in order]
    cut = len(shuffled) - heldout
    return shuffled[:cut], shuffled[cut:]


def darkroom_step(state, action, size: int = DARKROOM_SIZE):
    """The next state index of `state` after `action` (works elementwise on arrays too)."""
    x, y = np.divmod(state, size)
    move = MOVES[action]
    x = np.clip(x + move[..., 0], 0, size - 1)
    y = np.clip(y + move[..., 1], 0, size - 1)
    return x * size + y


def optimal_darkroom_action(state, goal: tuple[int, int], size: int = DARKROOM_SIZE):
    """The oracle's action at state index `state`: close the x gap, then the y gap, then stay
    (works elementwise on arrays of states and of goal coordinates too)."""
    x, y = np.divmod(state, size)
    goal_x, goal_y = goal
    action = np.select([x < goal_x, x > goal_x, y < goal_y, y > goal_y], [0, 1, 2, 3], default=STAY)
    return int(action) if action.ndim == 0 else action


def optimal_darkroom_return(goal: tuple[int, int], horizon: int = DARKROOM_HORIZON) -> int:
    """The oracle's return from (0, 0): rewarded on every step from its first arrival, after
    d = gx + gy moves (on step 1 when the goal is the start cell)."""
    distance = goal[0] + goal[1]
    return horizon - max(distance - 1, 0)


class DarkRoomEnv(gym.Env):
    """Dark Room: start at (0, 0), 5 actions, reward 1 on each step that ends on `goal`."""

    def __init__(self, goal: tuple[int, int], size: int = DARKROOM_SIZE, horizon: int = DARKROOM_HORIZON):
        if not all(0 <= g < size for g in goal):
            raise ValueError(f"goal {goal} is outside the {size}x{size} grid")
        self.goal = (int(goal[0]), int(goal[1]))
        self.goal_state = self.goal[0] * size + self.goal[1]
        self.size = size
        self.horizon = horizon
        self.observation_space = gym.spaces.Discrete(size * size)
        self.action_space = gym.spaces.Discrete(len(MOVES))
        self.state = 0
        self.steps = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.state, self.steps = 0, 0
        return self.state, {}

    def step(self, action):
        self.state = int(darkroom_step(self.state, int(action), self.size))
        self.steps += 1
        reward = float(self.state == self.goal_state)
        return self.state, reward, False, self.steps >= self.horizon, {}

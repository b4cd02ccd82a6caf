"""MinAtar games (Young & Tian 2019) as Gymnasium environments.

Observations are the game's own boolean (10, 10, C) grids; every game uses the full set of six
actions so that all games share one action space; sticky actions (probability 0.1 by default, as
in the MinAtar paper) are applied by MinAtar itself. The time limit is counted here rather than by
Gymnasium's ``TimeLimit`` wrapper: recording datasets steps these envs at up to 400k steps/s,
where each wrapper layer costs a noticeable share.
"""

from __future__ import annotations

import gymnasium as gym
from minatar import Environment

GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")


class MinAtarEnv(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, game: str, sticky_action_prob: float = 0.1, difficulty_ramping: bool = True,
                 max_episode_steps: int | None = None):
        if game not in GAMES:
            raise ValueError(f"unknown MinAtar game {game!r}; games: {', '.join(GAMES)}")
        self.game = Environment(game, sticky_action_prob=sticky_action_prob,
                                difficulty_ramping=difficulty_ramping)
        shape = self.game.state_shape()
        self.observation_space = gym.spaces.Box(0, 1, shape=tuple(shape), dtype=bool)
        self.action_space = gym.spaces.Discrete(self.game.num_actions())
        # Channel names in the game's own order, e.g. breakout: paddle, ball, trail, brick.
        channels = self.game.env.channels
        self.channel_names = tuple(sorted(channels, key=channels.get))
        self.max_episode_steps = max_episode_steps
        self._limit = float("inf") if max_episode_steps is None else max_episode_steps
        self._act, self._state = self.game.act, self.game.state  # bound once: step() is hot
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self.game.seed(seed)  # reseeds both the sticky-action and the game generators
        self.game.reset()
        self._t = 0
        return self.game.state(), {}

    def step(self, action):
        reward, terminated = self._act(action)
        self._t += 1
        return self._state(), reward, terminated, self._t >= self._limit and not terminated, {}

"""Atari 2600 games through ale-py (ROMs ship with the package) as JOWA and DQN-Replay see them:
84x84 grayscale frames (the max over the last two emulator frames, area-resized), one agent step
= 4 emulator frames, sticky actions (the previous action repeats with probability 0.25, the
v5 / Machado et al. 2018 protocol DQN-Replay was recorded with), no no-op starts, the episode
ends at game over (not at a lost life). One observation is one frame (84, 84, 1) uint8; history
is the model's context, not a frame stack.
"""

from __future__ import annotations

import gymnasium as gym


def make_atari(game: str, repeat_action_probability: float = 0.25, full_action_space: bool = False,
               max_episode_steps: int | None = None) -> gym.Env:
    """`game` as ALE names it ("Pong", "MsPacman", ...). `full_action_space`: all 18 joystick
    actions in every game, so that an action index means the same move in every game."""
    import ale_py
    from gymnasium.wrappers import AtariPreprocessing, TimeLimit

    gym.register_envs(ale_py)
    try:
        env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=repeat_action_probability,
                       full_action_space=full_action_space, max_episode_steps=None)
    except gym.error.Error as exc:
        raise ValueError(f"unknown Atari game {game!r} ({exc})") from None
    env = AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, grayscale_obs=True,
                             grayscale_newaxis=True, terminal_on_life_loss=False)
    return TimeLimit(env, max_episode_steps) if max_episode_steps else env

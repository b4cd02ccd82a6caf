"""The algorithms DPT is compared with, and the loops that play them.

Online bandit policies keep per-arm counts n_a and reward sums S_a (mean m_a = S_a / n_a) and
expose ``act(rng) -> arm`` and ``update(arm, reward)``:

- `EmpiricalMean`: each arm once, then greedy: argmax_a m_a.
- `UCB`: each arm once, then argmax_a m_a + c * sqrt(1 / n_a) (DPT's bonus, c = 1).
- `Thompson`: a Gaussian prior N(mu_0, s_0^2) per arm and known noise variance sigma^2 give the
  posterior N(mu_a, s_a^2), 1 / s_a^2 = 1 / s_0^2 + n_a / sigma^2,
  mu_a = s_a^2 (mu_0 / s_0^2 + S_a / sigma^2); act samples one value per arm, takes the argmax.
- `Uniform`: an arm uniformly at random. `Oracle`: the best arm.

Offline choosers read a whole history at once: `empirical_choice` (argmax m_a) and `lcb_choice`
(argmax m_a - c * sqrt(1 / n_a)); an arm the history never pulled is never chosen.

Regret is the expected (pseudo-)regret: the step-t regret is max_a mu_a - mu_{a_t}, whatever the
noisy reward; the cumulative regret after T steps is the sum of the first T.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from wmrl.icrl.tasks import DARKROOM_HORIZON, DARKROOM_SIZE, NOISE_STD, BanditEnv, DarkRoomEnv, optimal_arm

# --------------------------------------------------------------------------- online bandit policies


class ArmStatistics:
    """Pull counts n_a and reward sums S_a of each arm."""

    def __init__(self, arms: int):
        self.counts = np.zeros(arms)
        self.sums = np.zeros(arms)

    def update(self, arm: int, reward: float) -> None:
        self.counts[arm] += 1
        self.sums[arm] += reward

    def untried(self) -> int | None:
        """The first arm not pulled yet, or None once every arm has been."""
        unpulled = np.flatnonzero(self.counts == 0)
        return int(unpulled[0]) if len(unpulled) else None

    def means(self) -> np.ndarray:
        return self.sums / np.maximum(self.counts, 1)


class EmpiricalMean(ArmStatistics):
    """Each arm once, then the arm with the highest sample mean."""

    def act(self, rng: np.random.Generator) -> int:
        first = self.untried()
        return first if first is not None else int(np.argmax(self.means()))


class UCB(ArmStatistics):
    """Each arm once, then the arm with the highest m_a + c * sqrt(1 / n_a)."""

    def __init__(self, arms: int, c: float = 1.0):
        super().__init__(arms)
        self.c = c

    def act(self, rng: np.random.Generator) -> int:
        first = self.untried()
        if first is not None:
            return first
        return int(np.argmax(self.means() + self.c * np.sqrt(1.0 / self.counts)))


class Thompson(ArmStatistics):
    """Thompson sampling with a Gaussian prior and known Gaussian noise (conjugate posterior)."""

    def __init__(self, arms: int, prior_mean: float = 0.5, prior_variance: float = 1 / 12,
                 noise_std: float = NOISE_STD):
        super().__init__(arms)
        self.prior_mean, self.prior_variance, self.noise_variance = prior_mean, prior_variance, noise_std ** 2

    def posterior(self) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of each arm's mean."""
        variance = 1.0 / (1.0 / self.prior_variance + self.counts / self.noise_variance)
        mean = variance * (self.prior_mean / self.prior_variance + self.sums / self.noise_variance)
        return mean, variance

    def act(self, rng: np.random.Generator) -> int:
        mean, variance = self.posterior()
        return int(np.argmax(rng.normal(mean, np.sqrt(variance))))


class Uniform:
    """An arm uniformly at random, learning nothing."""

    def __init__(self, arms: int):
        self.arms = arms

    def act(self, rng: np.random.Generator) -> int:
        return int(rng.integers(self.arms))

    def update(self, arm: int, reward: float) -> None:
        pass


class Oracle:
    """The best arm of `means`, always."""

    def __init__(self, means: Sequence[float]):
        self.arm = optimal_arm(means)

    def act(self, rng: np.random.Generator) -> int:
        return self.arm

    def update(self, arm: int, reward: float) -> None:
        pass


def play_bandit(policy, means: Sequence[float], horizon: int, rng: np.random.Generator,
                noise_std: float = NOISE_STD) -> tuple[np.ndarray, np.ndarray]:
    """Play `policy` on the bandit `means` for `horizon` pulls; return the reward and the
    (expected) regret max_a mu_a - mu_{a_t} of each step."""
    env = BanditEnv(means, horizon, noise_std)
    env.reset(seed=int(rng.integers(2**31)))
    best = float(np.max(env.means))
    rewards, regret = np.zeros(horizon), np.zeros(horizon)
    for t in range(horizon):
        arm = policy.act(rng)
        _, reward, _, _, _ = env.step(arm)
        policy.update(arm, reward)
        rewards[t], regret[t] = reward, best - env.means[arm]
    return rewards, regret


# --------------------------------------------------------------------------- offline bandit choosers


def arm_estimates(actions: Sequence[int], rewards: Sequence[float], arms: int) -> tuple[np.ndarray, np.ndarray]:
    """Pull counts n_a and sample means m_a of a history (m_a = -inf for an arm never pulled)."""
    actions = np.asarray(actions, dtype=int)
    counts = np.bincount(actions, minlength=arms).astype(float)
    sums = np.bincount(actions, weights=np.asarray(rewards, dtype=float), minlength=arms)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / counts, -np.inf)
    return counts, means


def empirical_choice(actions: Sequence[int], rewards: Sequence[float], arms: int) -> int:
    """The pulled arm with the highest sample mean m_a."""
    _, means = arm_estimates(actions, rewards, arms)
    return int(np.argmax(means))


def lcb_choice(actions: Sequence[int], rewards: Sequence[float], arms: int, c: float = 1.0) -> int:
    """The pulled arm with the highest lower confidence bound m_a - c * sqrt(1 / n_a)."""
    counts, means = arm_estimates(actions, rewards, arms)
    with np.errstate(divide="ignore"):
        return int(np.argmax(means - c * np.sqrt(1.0 / counts)))


# --------------------------------------------------------------------------- Dark Room

DarkRoomPolicy = Callable[[int, list[tuple[int, int, float, int]]], int]


def play_darkroom(policy: DarkRoomPolicy, goal: tuple[int, int], episodes: int, seed: int = 0,
                  size: int = DARKROOM_SIZE, horizon: int = DARKROOM_HORIZON) -> np.ndarray:
    """The return of each of `episodes` episodes of `policy` in the Dark Room with `goal`.

    `policy(state, history)` sees the transitions (state, action, reward, next_state) of every
    episode played so far in this room, the current one included: the in-context history."""
    env = DarkRoomEnv(goal, size, horizon)
    history: list[tuple[int, int, float, int]] = []
    returns = np.zeros(episodes)
    for episode in range(episodes):
        state, _ = env.reset(seed=seed + episode)
        truncated = False
        while not truncated:
            action = policy(state, history)
            next_state, reward, _, truncated, _ = env.step(action)
            history.append((state, action, reward, next_state))
            returns[episode] += reward
            state = next_state
    return returns

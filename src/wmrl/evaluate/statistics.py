"""Aggregate statistics over runs and tasks, as defined by rliable (Agarwal et al. 2021, "Deep RL at
the Edge of the Statistical Precipice").

Scores are arrays of shape (runs, tasks): one normalized score per run (seed) and task.

* IQM — the interquartile mean: the mean of the middle 50% of all run x task scores (25% trimmed
  from each end), robust to outlier runs yet using half the data, unlike the median.
* Stratified bootstrap CI — resample runs with replacement independently within each task, recompute
  the statistic, repeat; the percentile interval of the replicates.
* Probability of improvement P(X > Y) — for each task, the probability that a run of X scores higher
  than a run of Y (the Mann-Whitney U statistic over all run pairs, ties counting one half), averaged
  over tasks.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Fewer runs (seeds x tasks) than this and a bootstrap CI says nothing: resampling two runs gives
# three distinct samples, so the interval of a difference is often a single point (P = 1.00 [1.00, 1.00]).
MIN_RUNS = 3


def iqm(scores: np.ndarray) -> float:
    """Interquartile mean of all entries: drop the lowest and highest 25% and average the rest.
    With n entries, floor(n/4) are cut from each end (scipy.stats.trim_mean's convention)."""
    values = np.sort(np.asarray(scores, dtype=float).ravel())
    cut = int(0.25 * len(values))
    return float(values[cut:len(values) - cut].mean())


def mean(scores: np.ndarray) -> float:
    return float(np.mean(scores))


def iqm_difference(x: np.ndarray, y: np.ndarray) -> float:
    """IQM(x) - IQM(y): how much higher one arm scores than another (the transfer control's measure)."""
    return iqm(x) - iqm(y)


def stratified_bootstrap_ci(scores: np.ndarray | tuple[np.ndarray, ...],
                            statistic: Callable[..., float] = iqm, repetitions: int = 2000,
                            confidence: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(point estimate, lower, upper): the percentile interval of `statistic` over bootstrap
    replicates that resample runs within each task (column) independently. `scores` is one
    (runs, tasks) array, or a tuple of them that are resampled separately and passed to
    `statistic` together (the two sides of a probability of improvement)."""
    arrays = tuple(np.asarray(a, dtype=float) for a in (scores if isinstance(scores, tuple) else (scores,)))
    for array in arrays:
        if array.ndim != 2 or array.shape[0] < 1:
            raise ValueError(f"scores must be (runs, tasks), got shape {array.shape}")
    rng = np.random.default_rng(seed)
    replicates = np.empty(repetitions)
    for r in range(repetitions):
        resampled = [np.take_along_axis(a, rng.integers(0, a.shape[0], size=a.shape), axis=0) for a in arrays]
        replicates[r] = statistic(*resampled)
    alpha = (1 - confidence) / 2
    lower, upper = np.quantile(replicates, [alpha, 1 - alpha])
    return statistic(*arrays), float(lower), float(upper)


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y) for score arrays x (runs_x, tasks) and y (runs_y, tasks) over the same tasks."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (runs, tasks) over the same tasks, got {x.shape} and {y.shape}")
    per_task = [np.mean((x[:, t, None] > y[None, :, t]) + 0.5 * (x[:, t, None] == y[None, :, t]))
                for t in range(x.shape[1])]
    return float(np.mean(per_task))


def bootstrap_over_tasks(matrix: np.ndarray, repetitions: int, confidence: float, seed: int = 0
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over tasks (rows) of each column, and its percentile bootstrap CI resampling tasks."""
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(matrix), size=(repetitions, len(matrix)))
    replicates = matrix[index].mean(1)
    alpha = (1 - confidence) / 2
    lower, upper = np.quantile(replicates, [alpha, 1 - alpha], axis=0)
    return matrix.mean(0), lower, upper

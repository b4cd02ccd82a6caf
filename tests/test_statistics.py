"""Aggregate statistics against hand-computed values (rliable's definitions)."""

import numpy as np
import pytest

from wmrl.evaluate.statistics import iqm, mean, probability_of_improvement, stratified_bootstrap_ci


def test_iqm_by_hand():
    # sorted: -50 1 2 3 4 5 6 100; drop two from each end and average the middle four: (2+3+4+5)/4
    assert iqm(np.array([[1, 2, 3, 4], [5, 6, 100, -50]])) == pytest.approx(3.5)
    # 5 values: floor(5/4) = 1 cut from each end
    assert iqm(np.array([[0.0], [1.0], [2.0], [3.0], [10.0]])) == pytest.approx(2.0)
    scipy = pytest.importorskip("scipy.stats")
    sample = np.random.default_rng(0).normal(size=(7, 3))
    assert iqm(sample) == pytest.approx(scipy.trim_mean(sample, 0.25, axis=None))


def test_probability_of_improvement_by_hand():
    x = np.array([[3.0, 1.0], [5.0, 1.0]])
    y = np.array([[4.0, 1.0], [2.0, 0.0]])
    # task 0: pairs (3>4 no, 3>2 yes, 5>4 yes, 5>2 yes) = 3/4; task 1: (1=1 half, 1>0, 1=1 half, 1>0) = 3/4
    assert probability_of_improvement(x, y) == pytest.approx(0.75)
    assert probability_of_improvement(y, x) == pytest.approx(0.25)
    assert probability_of_improvement(x, x) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(x, y[:, :1])


def test_stratified_bootstrap_is_deterministic_and_covers_the_estimate():
    scores = np.random.default_rng(1).normal(1.0, 0.3, size=(5, 4))
    point, low, high = stratified_bootstrap_ci(scores, iqm, repetitions=500, seed=3)
    assert low <= point <= high and high - low > 0
    assert stratified_bootstrap_ci(scores, iqm, repetitions=500, seed=3) == (point, low, high)
    # resampling stays within each task: a task-constant matrix has a zero-width interval for the mean
    constant = np.tile(np.array([1.0, 2.0, 3.0]), (4, 1))
    assert stratified_bootstrap_ci(constant, mean, repetitions=200) == (2.0, 2.0, 2.0)


def test_bootstrap_interval_shrinks_with_more_runs():
    rng = np.random.default_rng(0)
    few = stratified_bootstrap_ci(rng.normal(size=(3, 5)), mean, repetitions=1000)
    many = stratified_bootstrap_ci(rng.normal(size=(48, 5)), mean, repetitions=1000)
    assert many[2] - many[1] < few[2] - few[1]

"""Aggregates from evaluation rows: runs are episode means, IQM/CIs over (seeds, tasks), probability
of improvement only between methods evaluated the same way on the same tasks."""

import numpy as np
import polars as pl
import pytest

from wmrl.evaluate.statistics import iqm, probability_of_improvement
from wmrl.evaluate.summary import score_matrix, summarize


def rows(method: str, scores: dict[tuple[str, int], list[float]], checkpoint: str = "last",
         planning: str = "none", transitions: int = 5000) -> pl.DataFrame:
    """Episode rows whose normalized score equals the return (random 0, reference 1)."""
    records = [{"method": method, "model": "m", "transitions": transitions, "checkpoint": checkpoint,
                "planning": planning, "task": task,
                "seed": seed, "episode": i, "return": value, "normalized": value, "random_score": 0.0,
                "reference_score": 1.0, "score_source": "test"}
               for (task, seed), values in scores.items() for i, value in enumerate(values)]
    return pl.DataFrame(records)


def test_aggregates_are_computed_over_run_means():
    a = {("t1", 0): [1.0, 3.0], ("t1", 1): [0.0, 0.0], ("t2", 0): [4.0, 4.0], ("t2", 1): [1.0, 1.0]}
    b = {("t1", 0): [0.0, 0.0], ("t1", 1): [1.0, 1.0], ("t2", 0): [0.0, 2.0], ("t2", 1): [0.0, 0.0]}
    tables = summarize(pl.concat([rows("a", a), rows("b", b)]), repetitions=200, confidence=0.95)
    aggregate = tables["aggregate"].filter(pl.col("method") == "a").row(0, named=True)
    run_means = np.array([[2.0, 4.0], [0.0, 1.0]])  # (seeds, tasks)
    assert aggregate["iqm"] == pytest.approx(iqm(run_means)) and aggregate["mean"] == pytest.approx(1.75)
    assert aggregate["iqm_low"] <= aggregate["iqm"] <= aggregate["iqm_high"]
    assert (aggregate["tasks"], aggregate["seeds"]) == (2, 2)
    improvement = tables["improvement"].filter((pl.col("method") == "a") & (pl.col("than") == "b"))
    expected = probability_of_improvement(run_means, np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert improvement["probability"][0] == pytest.approx(expected)
    assert improvement["difference"][0] == pytest.approx(iqm(run_means) - iqm(np.array([[0.0, 1.0], [1.0, 0.0]])))
    assert improvement["difference_low"][0] <= improvement["difference"][0] <= improvement["difference_high"][0]
    per_task = tables["per_task"].filter((pl.col("method") == "a") & (pl.col("task") == "t2")).row(0, named=True)
    assert per_task["return"] == pytest.approx(2.5) and per_task["reference_score"] == 1.0


def test_improvement_compares_only_like_with_like():
    a = rows("a", {("t1", 0): [1.0]}, checkpoint="best")
    b = rows("b", {("t1", 0): [0.0]}, checkpoint="last")
    c = rows("c", {("t2", 0): [0.0]}, checkpoint="best")
    d = rows("d", {("t1", 0): [0.0]}, checkpoint="best", transitions=250)  # another data size
    assert summarize(pl.concat([a, b, c, d]), repetitions=10, confidence=0.95)["improvement"].is_empty()


def test_missing_runs_are_an_error_not_a_silent_average():
    runs = pl.DataFrame({"task": ["t1", "t1", "t2"], "seed": [0, 1, 0], "normalized": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="not every task has every seed"):
        score_matrix(runs)

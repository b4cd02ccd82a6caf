"""Aggregates over runs, computed from the evaluation rows (docs/architecture.md, "Evaluation rows").

A run is one trained model (method, model, fine-tuning data size, seed); its score on a task is
the mean over its evaluation episodes. For every arm (method, model, transitions, checkpoint,
planning) the runs' normalized scores form a (seeds, tasks) matrix: IQM and mean with stratified
bootstrap CIs over it; between arms of two methods evaluated alike (same data size, checkpoint and
planning) on the same tasks, the probability of improvement and the IQM difference, each with
its CI; and per task the mean return and normalized score with bootstrap CIs over seeds.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import polars as pl

from wmrl.evaluate.statistics import iqm, iqm_difference, mean, probability_of_improvement, stratified_bootstrap_ci

SETTING = ["transitions", "checkpoint", "planning"]
ARM = ["method", "model", *SETTING]


def run_scores(episodes: pl.DataFrame) -> pl.DataFrame:
    """One row per run, task and evaluation setting: mean return and normalized score."""
    return (episodes.group_by([*ARM, "task", "seed"], maintain_order=True)
            .agg(pl.col("return").mean(), pl.col("normalized").mean(), pl.len().alias("episodes"),
                 pl.col("random_score").first(), pl.col("reference_score").first(), pl.col("score_source").first())
            .sort([*ARM, "task", "seed"]))


def score_matrix(runs: pl.DataFrame, column: str = "normalized") -> np.ndarray:
    """(seeds, tasks) matrix of one arm's runs; every task must have the same seeds."""
    wide = runs.pivot(on="task", index="seed", values=column).sort("seed")
    matrix = wide.drop("seed").to_numpy()
    if np.isnan(matrix.astype(float)).any():
        raise ValueError(f"runs are missing: not every task has every seed\n{wide}")
    return matrix


def summarize(episodes: pl.DataFrame, repetitions: int, confidence: float) -> dict[str, pl.DataFrame]:
    """The aggregate, per-task and improvement tables of a set of evaluation rows."""
    runs = run_scores(episodes)
    interval = {"repetitions": repetitions, "confidence": confidence}
    aggregate, per_task, improvement = [], [], []
    arms = runs.partition_by(ARM, as_dict=True, maintain_order=True)
    for key, arm in arms.items():
        scores = score_matrix(arm)
        row: dict[str, Any] = dict(zip(ARM, key, strict=True))
        row |= {"tasks": scores.shape[1], "seeds": scores.shape[0], "runs": scores.size}
        for name, statistic in (("iqm", iqm), ("mean", mean)):
            row[name], row[f"{name}_low"], row[f"{name}_high"] = stratified_bootstrap_ci(scores, statistic, **interval)
        aggregate.append(row)
        for (task,), one in arm.partition_by("task", as_dict=True, maintain_order=True).items():
            entry = {**dict(zip(ARM, key, strict=True)), "task": task, "seeds": len(one), "runs": len(one),
                     "random_score": one["random_score"][0], "reference_score": one["reference_score"][0],
                     "score_source": one["score_source"][0]}
            for column in ("return", "normalized"):
                matrix = one.select(column).to_numpy()
                entry[column], entry[f"{column}_low"], entry[f"{column}_high"] = stratified_bootstrap_ci(
                    matrix, mean, **interval)
            per_task.append(entry)
    for (key_x, x), (key_y, y) in itertools.permutations(arms.items(), 2):
        same_setting = key_x[2:] == key_y[2:] and set(x["task"]) == set(y["task"]) and key_x[0] != key_y[0]
        if same_setting:
            pair = (score_matrix(x), score_matrix(y))
            point, low, high = stratified_bootstrap_ci(pair, probability_of_improvement, **interval)
            difference, difference_low, difference_high = stratified_bootstrap_ci(pair, iqm_difference, **interval)
            improvement.append({"method": key_x[0], "model": key_x[1], "than": key_y[0], "than_model": key_y[1],
                                **dict(zip(SETTING, key_x[2:], strict=True)), "runs": min(len(x), len(y)),
                                "probability": point, "probability_low": low, "probability_high": high,
                                "difference": difference, "difference_low": difference_low,
                                "difference_high": difference_high})
    return {"aggregate": pl.DataFrame(aggregate), "per_task": pl.DataFrame(per_task),
            "improvement": pl.DataFrame(improvement)}

"""The report's Imagination section, for experiments that run an agent that learns inside its world
model (kind imagine, wmrl.train.imagine):

* `imagination_error`: where imagination is trustworthy — the world model's open-loop error by
  horizon on the agent's own last episodes, beside "nothing changes", mean over seeds;
* `imagination_cost`: environment and gradient steps per second, and the wall time each agent
  took to reach the online DQN's final score (the mean return of its evaluation episodes; reached
  when the mean of 10 consecutive training episodes first gets there), against DQN's whole
  training time, both on one thread;
* `imagination_control` (with `report.target`): the positive control, every seed of the target
  method's mean evaluation return against the return it must reach, and the environment steps at
  which its training episodes first averaged that return over 10 episodes.
"""

from __future__ import annotations

from typing import Any

import polars as pl
from matplotlib.figure import Figure

from wmrl.report import plots

ROLLING = 10  # training episodes averaged when asking whether an agent reached a score
DQN = "dqn_online"


def first_reach(curve: pl.DataFrame, score: float, column: str) -> float | None:
    """The `column` value (step or seconds) of the first training episode at which the mean of the
    last ROLLING episodes reaches `score`; None if it never does."""
    rolling = curve.sort("step").with_columns(mean=pl.col("episode_return").rolling_mean(ROLLING))
    reached = rolling.filter(pl.col("mean") >= score)
    return None if reached.is_empty() else float(reached[column][0])


def error_table(runs: list[dict[str, Any]]) -> pl.DataFrame:
    frames = [pl.read_parquet(run["file"]).with_columns(method=pl.lit(run["method"]), model=pl.lit(run["model"]),
                                                        seed=pl.lit(run["seed"]))
              for run in runs]
    errors = pl.concat(frames)
    return (errors.group_by("method", "model", "horizon", maintain_order=True)
            .agg(pl.col("model_error", "nothing_changes").mean(), pl.len().alias("seeds"))
            .with_columns(ratio=pl.col("model_error") / pl.col("nothing_changes")).sort("method", "model", "horizon"))


def cost_table(curves: list[dict[str, Any]], episodes: pl.DataFrame, lineage: pl.DataFrame) -> pl.DataFrame:
    """Per imagination method: steps per second, and wall time to the online DQN's final score
    against DQN's training time (see the module's docstring)."""
    imagine = [run for run in curves if run["kind"] == "imagine"]
    dqn = episodes.filter(method=DQN, checkpoint="last")
    target = float(dqn["return"].mean()) if not dqn.is_empty() else None
    dqn_seconds = lineage.filter(method=DQN)["training_seconds"].mean() if not dqn.is_empty() else None
    rows = []
    for method in dict.fromkeys(run["method"] for run in imagine):
        runs = [run for run in imagine if run["method"] == method]
        timed = lineage.filter(method=method)
        reached = [first_reach(pl.read_parquet(run["file"]), target, "seconds") for run in runs] if target else []
        times = sorted(float("inf") if t is None else t for t in reached)  # a seed that never reached it: +inf
        median = times[len(times) // 2] if times and times[len(times) // 2] < float("inf") else None
        rows.append({"method": method, "runs": len(runs),
                     "env_steps_per_s": timed["training_env_steps"].sum() / timed["training_seconds"].sum(),
                     "updates_per_s": timed["training_steps"].sum() / timed["training_seconds"].sum(),
                     "training_s": timed["training_seconds"].mean(), "dqn_score": target,
                     "reached": sum(t < float("inf") for t in times), "seconds_to_dqn_score": median,
                     "dqn_training_s": dqn_seconds,
                     "ratio": median / dqn_seconds if median is not None and dqn_seconds else None})
    schema = {"method": pl.String, "runs": pl.Int64, "env_steps_per_s": pl.Float64, "updates_per_s": pl.Float64,
              "training_s": pl.Float64, "dqn_score": pl.Float64, "reached": pl.Int64,
              "seconds_to_dqn_score": pl.Float64, "dqn_training_s": pl.Float64, "ratio": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def control_table(curves: list[dict[str, Any]], episodes: pl.DataFrame, target: dict[str, Any]) -> pl.DataFrame:
    """The positive control per seed: its mean evaluation return, whether it reached the target
    return, and the environment step its training episodes first averaged it."""
    method, goal = target["method"], target["mean_return"]
    scores = (episodes.filter(method=method, checkpoint="last").group_by("seed").agg(pl.col("return").mean())
              .sort("seed"))
    files = {run["seed"]: run["file"] for run in curves if run["method"] == method}
    steps = {seed: first_reach(pl.read_parquet(file), goal, "step") for seed, file in files.items()}
    return scores.with_columns(
        method=pl.lit(method), target=pl.lit(goal), passed=pl.col("return") >= goal,
        steps_to_target=pl.col("seed").replace_strict(steps, default=None, return_dtype=pl.Float64))


def error_plot(errors: pl.DataFrame) -> Figure:
    """Open-loop error against the horizon, one line per imagination method (mean over seeds),
    "nothing changes" dashed in the method's colour."""
    figure, axes = plots.panels(1, 4.8, 3.2)
    axis = axes[0]
    for i, ((method, model), line) in enumerate(errors.group_by("method", "model", maintain_order=True)):
        axis.plot(line["horizon"], line["model_error"], marker="o", ms=3, color=f"C{i}", label=f"{method} [{model}]")
        axis.plot(line["horizon"], line["nothing_changes"], ls="--", color=f"C{i}", alpha=0.6,
                  label=f"{method}: nothing changes")
    axis.set_xlabel("horizon k (imagined steps, real actions)")
    axis.set_ylabel("prediction error (wrong cells / MSE)")
    axis.legend(frameon=False, fontsize=7)
    figure.tight_layout()
    return figure


def section(imagination: list[dict[str, Any]], curves: list[dict[str, Any]], episodes: pl.DataFrame,
            lineage: pl.DataFrame, target: dict[str, Any] | None) -> tuple[dict[str, pl.DataFrame], dict[str, Figure]]:
    """The section's tables and figure (see the module's docstring)."""
    errors = error_table(imagination)
    tables = {"imagination_error": errors, "imagination_cost": cost_table(curves, episodes, lineage)}
    if target:
        tables["imagination_control"] = control_table(curves, episodes, target)
    return tables, {"imagination_error": error_plot(errors)}

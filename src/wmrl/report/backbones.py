"""The backbone face-off (S4WM, Drama, GTrXL): for an experiment that pretrains several backbones
at matched parameter counts, their open-loop prediction error against the horizon, the memory
probe's recall against the delay, their training and acting cost against the context, and the
claims of the papers, each judged from bootstrap CIs over seeds (tasks stratified):

* "<backbone> predicts at least as well as the transformer at the longest horizon" (S4WM: the SSM
  matches or beats transformers on long-term prediction) — on the difference of mean errors;
* "<backbone> remembers at least as well as the transformer at the longest delay" (S4WM: GRUs
  forget) — on the difference of mean probe accuracies;

each at the longest horizon or delay that every run reaches.

Verdicts: "better" or "worse" when the difference's interval excludes 0, "no measurable
difference" when it holds 0, "too few runs to decide" below MIN_RUNS runs (seeds x tasks) a side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from matplotlib.figure import Figure

from wmrl.evaluate.statistics import MIN_RUNS, mean, stratified_bootstrap_ci
from wmrl.report.plots import panels

REFERENCE = "transformer"


def runs_by_task(frame: pl.DataFrame, value: str) -> np.ndarray:
    """(seeds, tasks) of `value` for one model at one horizon or delay."""
    wide = frame.pivot(on="task", index="seed", values=value).sort("seed")
    return wide.drop("seed").to_numpy()


def curves(frame: pl.DataFrame, x: str, value: str, interval: dict[str, Any]) -> pl.DataFrame:
    """Per (size, backbone, x): the mean over seeds and tasks of `value` with its stratified
    bootstrap CI."""
    rows = []
    for (size, backbone, at), group in frame.group_by("size", "backbone", x, maintain_order=True):
        point, low, high = stratified_bootstrap_ci(runs_by_task(group, value), mean, **interval)
        rows.append({"size": size, "backbone": backbone, x: at, "mean": point, "low": low, "high": high,
                     "runs": group.height})
    return pl.DataFrame(rows).sort("size", "backbone", x)


def claims(errors: pl.DataFrame, probe: pl.DataFrame, interval: dict[str, Any]) -> pl.DataFrame:
    """One row per (size, backbone other than the transformer, claim), with the difference
    (backbone - transformer) of the means and its CI, oriented so that "better" is lower error
    and higher recall."""
    model_errors = errors.filter(predictor="model")
    checks = [("predicts at least as well as the transformer", model_errors, "horizon", "error", -1.0)]
    if not probe.is_empty():
        checks.append(("remembers at least as well as the transformer", probe.drop_nans("accuracy"), "delay",
                       "accuracy", 1.0))
    rows = []
    for statement, frame, x, value, better_sign in checks:
        # the longest horizon (delay) that every run reaches: held-out windows start anywhere in an
        # episode, so few of them reach a short episode's last steps
        per_x = frame.group_by(x).len()
        at = per_x.filter(pl.col("len") == per_x["len"].max())[x].max()
        last = frame.filter(pl.col(x) == at)
        for (size,), by_size in last.group_by("size", maintain_order=True):
            reference = by_size.filter(backbone=REFERENCE)
            for backbone in by_size["backbone"].unique(maintain_order=True).to_list():
                if backbone == REFERENCE or reference.is_empty():
                    continue
                ours = by_size.filter(backbone=backbone)
                x_runs, y_runs = runs_by_task(ours, value), runs_by_task(reference, value)
                difference, low, high = stratified_bootstrap_ci((x_runs, y_runs), lambda a, b: mean(a) - mean(b),
                                                                **interval)
                if min(x_runs.size, y_runs.size) < MIN_RUNS:
                    verdict = "too few runs to decide"
                elif low * better_sign > 0 and high * better_sign > 0:
                    verdict = "better"
                elif low * better_sign < 0 and high * better_sign < 0:
                    verdict = "worse"
                else:
                    verdict = "no measurable difference"
                rows.append({"claim": f"{backbone} {statement} ({x} {at})", "size": size, "backbone": backbone,
                             "measure": value, "at": int(at), "backbone_mean": mean(x_runs),
                             "transformer_mean": mean(y_runs), "difference": difference, "low": low, "high": high,
                             "runs": int(min(x_runs.size, y_runs.size)), "verdict": verdict})
    schema = {"claim": pl.String, "size": pl.String, "backbone": pl.String, "measure": pl.String, "at": pl.Int64,
              "backbone_mean": pl.Float64, "transformer_mean": pl.Float64, "difference": pl.Float64,
              "low": pl.Float64, "high": pl.Float64, "runs": pl.Int64, "verdict": pl.String}
    return pl.DataFrame(rows, schema=schema)


def curve_plot(table: pl.DataFrame, x: str, ylabel: str, floor: pl.DataFrame | None = None,
               chance: float | None = None) -> Figure:
    """One panel per model size: a line per backbone with its CI band; the "nothing changes"
    predictor (`floor`, per x) dashed, or the chance level dotted."""
    sizes = table["size"].unique(maintain_order=True).to_list()
    figure, axes = panels(len(sizes), 3.4, 2.8)
    for axis, size in zip(axes, sizes, strict=True):
        for i, backbone in enumerate(table.filter(size=size)["backbone"].unique(maintain_order=True).to_list()):
            line = table.filter(size=size, backbone=backbone).sort(x)
            axis.plot(line[x], line["mean"], marker="o", ms=3, color=f"C{i}", label=backbone)
            axis.fill_between(line[x], line["low"], line["high"], color=f"C{i}", alpha=0.2, lw=0)
        if floor is not None:
            axis.plot(floor[x], floor["mean"], ls="--", color="grey", label="nothing changes")
        if chance is not None:
            axis.axhline(chance, ls=":", color="grey", label="chance")
        axis.set_title(f"size {size}")
        axis.set_xscale("log", base=2)
        axis.set_xlabel(x)
    axes[0].set_ylabel(ylabel)
    axes[0].legend(frameon=False, fontsize=8)
    figure.tight_layout()
    return figure


def cost_plot(costs: pl.DataFrame) -> Figure:
    """Training-step and acting-step time against the context K, one line per backbone (log-log)."""
    figure, axes = panels(2, 3.4, 2.8)
    for axis, column, title in ((axes[0], "train_step_s", "training step (batch 8)"),
                                (axes[1], "act_step_s", "acting step (8 envs)")):
        for i, backbone in enumerate(costs["backbone"].unique(maintain_order=True).to_list()):
            line = costs.filter(backbone=backbone).sort("window")
            axis.plot(line["window"], line[column] * 1000, marker="o", ms=3, color=f"C{i}", label=backbone)
        axis.set_xscale("log", base=2)
        axis.set_yscale("log")
        axis.set_xlabel("context K (steps)")
        axis.set_title(title)
    axes[0].set_ylabel("ms per step")
    axes[0].legend(frameon=False, fontsize=8)
    figure.tight_layout()
    return figure


def section(errors: pl.DataFrame, probe: pl.DataFrame, costs: pl.DataFrame, interval: dict[str, Any]
            ) -> tuple[dict[str, pl.DataFrame], dict[str, Figure]]:
    """The tables and figures of the report's Backbones section."""
    model_errors = curves(errors.filter(predictor="model"), "horizon", "error", interval)
    floor = errors.filter(predictor="nothing changes").group_by("horizon").agg(mean=pl.col("error").mean()).sort(
        "horizon")
    tables = {"backbone_errors": model_errors, "backbone_claims": claims(errors, probe, interval),
              "context_costs": costs}
    figures = {"backbone_errors": curve_plot(model_errors, "horizon", "open-loop error", floor=floor),
               "context_costs": cost_plot(costs)}
    if not probe.is_empty():
        tables["memory_probe"] = curves(probe.drop_nans("accuracy"), "delay", "accuracy", interval)
        figures["memory_probe"] = curve_plot(tables["memory_probe"], "delay", "recall of the first observation",
                                             chance=float(probe["chance"].max()))
    return tables, figures

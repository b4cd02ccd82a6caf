"""The report's figures (matplotlib, SVG with fixed ids and no date, so the same tables give the
same bytes). Each function takes the tables it draws and returns a Figure; `save` writes it.

Normalized scores are drawn against two lines: 0 = the random policy, 1 = the reference score.
Methods that are not ours are marked by their kind ("· peer", "· online") and drawn in its colour.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (the backend is chosen first)
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from wmrl.dag.paths import MULTIGAME, SINGLEGAME  # noqa: E402
from wmrl.evaluate.statistics import mean, stratified_bootstrap_ci  # noqa: E402

plt.rcParams.update({"svg.hashsalt": "wmrl", "svg.fonttype": "none", "font.size": 9, "axes.spines.top": False,
                     "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3})
NORMALIZED = "normalized score (0 = random, 1 = reference)"
FINE_TUNED, SOURCE = "held-out tasks, fine-tuned", "source tasks, not fine-tuned"
KIND_COLOURS = {"ours": "C0", "peer": "C1", "online": "C2"}


def save(figure: Figure, path: str) -> None:
    figure.savefig(path, format="svg", metadata={"Date": None}, bbox_inches="tight")
    plt.close(figure)


def arm_label(row: dict) -> str:
    planning = "" if row["planning"] == "none" else f", {row['planning']}"
    kind = "" if row["kind"] == "ours" else f" · {row['kind']}"
    return f"{row['method']} [{row['model']}] {row['checkpoint']}{planning}{kind}"


def _reference_lines(axis, vertical: bool = True) -> None:
    draw = axis.axvline if vertical else axis.axhline
    draw(0, color="grey", lw=0.8, ls="--")
    draw(1, color="grey", lw=0.8, ls=":")


def panels(count: int, width: float, height: float):
    figure, axes = plt.subplots(1, count, figsize=(width * count, height), squeeze=False)
    return figure, list(axes[0])


def iqm_plot(aggregate: pl.DataFrame) -> Figure:
    """IQM of normalized scores with its bootstrap CI, one line per method and setting; fine-tuned
    methods (held-out tasks) and the pretrained models on their source tasks in separate panels."""
    pretrained = pl.col("method").is_in([MULTIGAME, SINGLEGAME])
    groups = [(title, frame.sort("iqm")) for title, frame in ((FINE_TUNED, aggregate.filter(~pretrained)),
                                                              (SOURCE, aggregate.filter(pretrained)))
              if not frame.is_empty()]
    sizes = [len(frame) for _, frame in groups]
    figure, axes = plt.subplots(len(groups), 1, figsize=(7.5, 0.7 * len(groups) + 0.26 * sum(sizes)), squeeze=False,
                                height_ratios=sizes, sharex=True, layout="constrained")
    for axis, (title, frame) in zip(axes[:, 0], groups, strict=True):
        rows = list(frame.iter_rows(named=True))
        y = np.arange(len(rows))
        for kind, colour in KIND_COLOURS.items():
            of_kind = (frame["kind"] == kind).to_numpy()
            if of_kind.any():
                one = frame.filter(of_kind)
                axis.errorbar(one["iqm"], y[of_kind], xerr=[one["iqm"] - one["iqm_low"], one["iqm_high"] - one["iqm"]],
                              fmt="o", color=colour, capsize=3)
        axis.set_yticks(y, [arm_label(row) for row in rows])
        axis.set_ylim(-0.6, len(rows) - 0.4)
        _reference_lines(axis)
        axis.set_title(f"{title} ({rows[0]['seeds']} seeds x {rows[0]['tasks']} tasks)", loc="left")
    axes[-1, 0].set_xlabel(f"IQM {NORMALIZED}")
    return figure


def data_curve_plot(aggregate: pl.DataFrame, setting: dict[str, str], control_aggregate: pl.DataFrame | None = None,
                    control_task: str | None = None) -> Figure:
    """Score against fine-tuning data: IQM normalized score [CI] of every fine-tuned method (the
    best model of each) at each data size (transitions, log scale) in `setting` (checkpoint,
    planning), peers included; beside it the transfer control's two methods on their held-back
    source-task episodes, when the experiment has one."""
    figure, axes = panels(1 if control_aggregate is None else 2, 4.6, 3.3)
    shown = [("held-out tasks", aggregate)]
    if control_aggregate is not None:
        shown.append((f"control: {control_task} (held-back episodes)", control_aggregate))
    names = sorted({name for _, frame in shown for name in frame["method"].to_list()})
    colours = {name: f"C{i % 10}" for i, name in enumerate(names)}  # one colour per method in both panels
    for axis, (title, frame) in zip(axes, shown, strict=True):
        arms = (frame.filter(pl.col("transitions") > 0, **setting)
                .sort("iqm", descending=True).unique(["method", "transitions"], keep="first", maintain_order=True))
        for (method,), line in arms.group_by("method", maintain_order=True):
            line = line.sort("transitions")
            kind = line["kind"][0]
            style = {"ls": "-" if kind == "ours" else "--", "marker": "o" if len(line) > 1 else "s"}
            axis.errorbar(line["transitions"], line["iqm"], yerr=[line["iqm"] - line["iqm_low"],
                                                                  line["iqm_high"] - line["iqm"]],
                          capsize=3, color=colours[method], label=method if kind == "ours" else f"{method} · {kind}",
                          **style)
        axis.set_xscale("log")
        sizes = sorted(set(arms["transitions"].to_list()))
        axis.set_xticks(sizes, [f"{size:,}" for size in sizes])
        axis.minorticks_off()
        _reference_lines(axis, vertical=False)
        axis.set_title(title, loc="left")
        axis.set_xlabel("fine-tuning data (transitions, log scale)")
        axis.legend(frameon=False, fontsize=7)
    axes[0].set_ylabel(f"IQM {NORMALIZED}")
    figure.tight_layout()
    return figure


def per_seed_plot(runs: pl.DataFrame) -> Figure:
    """Every run's normalized score (mean over its episodes), one panel per task with the methods
    evaluated on it: a single outlying seed shows."""
    arm = ["method", "kind", "model", "checkpoint", "planning"]
    tasks = runs["task"].unique(maintain_order=True).to_list()
    arms = {task: runs.filter(task=task).select(arm).unique(maintain_order=True) for task in tasks}
    sizes = [len(arms[task]) for task in tasks]
    figure, axes = plt.subplots(len(tasks), 1, figsize=(7.5, 0.9 * len(tasks) + 0.24 * sum(sizes)), squeeze=False,
                                height_ratios=sizes, sharex=True, layout="constrained")
    for axis, task in zip(axes[:, 0], tasks, strict=True):
        one = runs.filter(task=task).join(arms[task].with_row_index("arm"), on=arm)
        for seed, points in one.group_by("seed", maintain_order=True):
            jitter = (seed[0] % 5 - 2) * 0.08
            axis.scatter(points["normalized"], points["arm"].to_numpy() + jitter, s=16, color=f"C{seed[0] % 10}",
                         label=f"seed {seed[0]}")
        axis.set_yticks(np.arange(len(arms[task])), [arm_label(row) for row in arms[task].iter_rows(named=True)])
        axis.set_ylim(-0.6, len(arms[task]) - 0.4)
        _reference_lines(axis)
        axis.set_title(task, loc="left")
    axes[0, 0].legend(frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    axes[-1, 0].set_xlabel(NORMALIZED)
    return figure


def _mean_band(frame: pl.DataFrame, x: str, value: str, repetitions: int, confidence: float):
    """Per x: mean over seeds and its bootstrap CI (a point when one seed)."""
    xs, means, lows, highs = [], [], [], []
    for (step,), at in frame.group_by(x, maintain_order=True):
        values = at[value].to_numpy()[:, None]
        point, low, high = stratified_bootstrap_ci(values, mean, repetitions=repetitions, confidence=confidence)
        xs.append(step), means.append(point), lows.append(low), highs.append(high)
    order = np.argsort(xs)
    return (np.asarray(v)[order] for v in (xs, means, lows, highs))


def curves_plot(curves: pl.DataFrame, online: pl.DataFrame, repetitions: int, confidence: float) -> Figure:
    """Fine-tuning curves, mean over seeds with a bootstrap CI band: each validation metric (one
    panel each; held-out episodes of the few-shot slice) against gradient steps, and the online
    methods' training-episode returns (DQN, PPO, imagination) against environment steps. A colour
    per method. The peers' curves are d3rlpy's mean training losses per epoch (metrics
    "train/..."), drawn in panels of their own."""
    metrics = [m for m in curves["metric"].unique(maintain_order=True).to_list()] if not curves.is_empty() else []
    panels = len(metrics) + (not online.is_empty())
    columns = min(panels, 4)
    rows = -(-panels // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.6 * rows), squeeze=False)
    axes = list(axes.flat)
    online_methods = set() if online.is_empty() else set(online["method"].to_list())
    colours = {m: f"C{i}" for i, m in enumerate(sorted(set(curves["method"].to_list()) | online_methods))}
    for axis, metric in zip(axes, metrics, strict=False):
        for (method, model), frame in curves.filter(metric=metric).group_by("method", "model", maintain_order=True):
            x, y, low, high = _mean_band(frame, "step", "value", repetitions, confidence)
            axis.plot(x, y, color=colours[method], label=f"{method} [{model}]")
            axis.fill_between(x, low, high, color=colours[method], alpha=0.2, lw=0)
        axis.set_title(metric.removeprefix("val/"))
        axis.set_xlabel("gradient step")
        axis.set_ylabel("validation loss" if metric.startswith("val/") else "training loss")
    if not online.is_empty():
        axis = axes[len(metrics)]
        for (method,), frame in online.group_by("method", maintain_order=True):
            x, y, low, high = _mean_band(frame, "step", "episode_return", repetitions, confidence)
            axis.plot(x, y, color=colours[method], label=method)
            axis.fill_between(x, low, high, color=colours[method], alpha=0.2, lw=0)
        axis.set_title("online training episodes")
        axis.set_xlabel("environment step (bin end)")
        axis.set_ylabel("episode return")
    for axis in axes[panels:]:
        axis.set_visible(False)
    handles = {label: handle for axis in axes[:panels] for handle, label in zip(*axis.get_legend_handles_labels(),
                                                                                strict=True)}
    figure.legend(handles.values(), handles.keys(), loc="lower center", ncol=min(len(handles), 4),
                  bbox_to_anchor=(0.5, 1.0), frameon=False)
    figure.tight_layout()
    return figure


def world_model_plot(errors: pl.DataFrame) -> Figure:
    """Open-loop k-step prediction error against k, one panel per source task, one line per
    model (size-backbone, mean over seeds) and the "nothing changes" predictor dashed."""
    tasks = errors["task"].unique(maintain_order=True).to_list()
    figure, axes = panels(len(tasks), 3.0, 2.6)
    mean_error = (errors.with_columns(model=pl.col("size") + "-" + pl.col("backbone"))
                  .group_by("task", "model", "predictor", "horizon", maintain_order=True).agg(pl.col("error").mean()))
    models = mean_error.filter(predictor="model")["model"].unique(maintain_order=True).to_list()
    for axis, task in zip(axes, tasks, strict=True):
        for i, model in enumerate(models):
            line = mean_error.filter(task=task, model=model, predictor="model").sort("horizon")
            axis.plot(line["horizon"], line["error"], marker="o", ms=3, color=f"C{i}", label=model)
        baseline = mean_error.filter(task=task, predictor="nothing changes").group_by("horizon").agg(
            pl.col("error").mean()).sort("horizon")
        axis.plot(baseline["horizon"], baseline["error"], ls="--", color="grey", label="nothing changes")
        axis.set_title(task)
        axis.set_xlabel("horizon k (steps, open loop)")
    axes[0].set_ylabel("prediction error (wrong cells / MSE)")
    axes[0].legend(frameon=False)
    figure.tight_layout()
    return figure


def scaling_plot(aggregate: pl.DataFrame, parameters: dict[str, int]) -> Figure:
    """IQM normalized score against model size (parameters, log scale), one line per method and
    backbone, last (or final) checkpoint without planning."""
    figure, axes = panels(1, 4.8, 3.2)
    axis = axes[0]
    frame = aggregate.filter(pl.col("model").is_in(list(parameters)), pl.col("checkpoint").is_in(["last", "final"]),
                             planning="none")
    frame = frame.with_columns(parameters=pl.col("model").replace_strict(parameters, return_dtype=pl.Int64),
                               backbone=pl.col("model").str.split("-").list.last())
    for i, ((method, backbone), line) in enumerate(frame.group_by("method", "backbone", maintain_order=True)):
        line = line.sort("parameters")
        axis.errorbar(line["parameters"], line["iqm"], yerr=[line["iqm"] - line["iqm_low"],
                                                             line["iqm_high"] - line["iqm"]],
                      marker="o", capsize=3, color=f"C{i}", label=f"{method} [{backbone}]")
    axis.set_xscale("log")
    _reference_lines(axis, vertical=False)
    axis.set_xlabel("model parameters")
    axis.set_ylabel(f"IQM {NORMALIZED}")
    axis.legend(frameon=False)
    figure.tight_layout()
    return figure

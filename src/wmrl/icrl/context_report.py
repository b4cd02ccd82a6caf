"""The ICRL report's instrument checks: the in-context learning curve (does each model read its
context?) and the bandit positive control (does DPT reach Thompson sampling?), each as a table
with its verdict, and the curve as a figure.

Has a model learnt in context? Its accuracy gain from the shortest context to the longest at its
final snapshot, per held-out task (mean over its pretraining and evaluation seeds), with a
bootstrap CI over tasks: "learnt in context" when the gain is at least `MIN_CONTEXT_GAIN` and its
CI is above 0, else "has not learnt in context"; below `MIN_TASKS` held-out tasks, "too few
held-out tasks to decide". The report judges none of the claims of a model not shown to have learnt
in context (`gate`). (DPT's shortest context is empty; AD's, its episode before any other in the
window, carries the previous episode's last action and reward: `wmrl.icrl.methods.AD.curve`.)

The bandit control (`icrl.control`), fixed before the runs were read: DPT's online cumulative
regret at H is within Thompson sampling's CI or below it, its CI is below uniform's, and offline
its final suboptimality is within LCB's CI or below it, and it has learnt in context. The first
criterion compares DPT's mean with Thompson's interval, unpaired, as the issue that set it words
it; the claims table's paired per-task difference is the stricter reading, and the page shows both.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from wmrl.evaluate.statistics import bootstrap_over_tasks  # noqa: E402

MIN_CONTEXT_GAIN = 0.05  # accuracy points from the shortest context to the longest one
MIN_TASKS = 10  # held-out tasks a verdict needs: its CI resamples tasks, and a handful gives far too narrow a one
NOT_LEARNT = "has not learnt in context"
LEARNT = "learnt in context"
TOO_FEW_TASKS = "too few held-out tasks to decide"


def task_matrix(rows: pl.DataFrame, method: str, setting: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(steps, per-task means (tasks, steps), runs per task) of one method's rows."""
    chosen = rows.filter((pl.col("method") == method) & (pl.col("setting") == setting))
    means = chosen.group_by("task", "step").agg(pl.col("value").mean()).sort("task", "step")
    steps = np.sort(means["step"].unique().to_numpy())
    matrix = means["value"].to_numpy().reshape(-1, len(steps))
    runs = chosen.filter(pl.col("step") == steps[0]).group_by("task").len()["len"].min()
    return steps, matrix, int(runs)


def curve_matrix(rows: pl.DataFrame, method: str, setting: str, checkpoint: int) -> tuple[np.ndarray, np.ndarray]:
    """(context lengths, per-task means (tasks, lengths)) of one model's curve at one snapshot."""
    return task_matrix(rows.filter(pl.col("checkpoint") == checkpoint), method, setting)[:2]


def checkpoints(rows: pl.DataFrame, method: str) -> list[int]:
    chosen = rows.filter((pl.col("method") == method) & (pl.col("setting") == "context_accuracy"))
    return sorted(chosen["checkpoint"].unique().to_list())


def context_gain(rows: pl.DataFrame, methods: list[str], repetitions: int, confidence: float) -> pl.DataFrame:
    """Each model's curve at its final snapshot: accuracy and cross-entropy at the shortest and
    longest context, the accuracy gain [CI] and the verdict (module doc)."""
    records = []
    for method in methods:
        final = checkpoints(rows, method)[-1]
        lengths, accuracy = curve_matrix(rows, method, "context_accuracy", final)
        _, cross_entropy = curve_matrix(rows, method, "context_cross_entropy", final)
        gain, lower, upper = (float(x[0]) for x in bootstrap_over_tasks((accuracy[:, -1] - accuracy[:, 0])[:, None],
                                                                       repetitions, confidence))
        learnt = LEARNT if gain >= MIN_CONTEXT_GAIN and lower > 0 else NOT_LEARNT
        records.append({"method": method, "checkpoint": final, "context": int(lengths[-1]),
                        "accuracy_empty": float(accuracy[:, 0].mean()), "accuracy_full": float(accuracy[:, -1].mean()),
                        "gain [CI]": f"{gain:+.3f} [{lower:+.3f}, {upper:+.3f}]", "gain_lower": lower,
                        "cross_entropy_empty": float(cross_entropy[:, 0].mean()),
                        "cross_entropy_full": float(cross_entropy[:, -1].mean()), "tasks": len(accuracy),
                        "verdict": TOO_FEW_TASKS if len(accuracy) < MIN_TASKS else learnt})
    return pl.DataFrame(records)


def gate(claims: pl.DataFrame, gains: pl.DataFrame) -> pl.DataFrame:
    """Claims about a model not shown to have learnt in context are not judged: their verdict says
    why (it has not, or too few held-out tasks to tell)."""
    unshown = gains.filter(pl.col("verdict") != LEARNT).select("method", pl.col("verdict").alias("context"))
    return (claims.join(unshown, on="method", how="left")
            .with_columns(pl.when(pl.col("context").is_not_null())
                          .then(pl.lit("not judged: ") + pl.col("context"))
                          .otherwise(pl.col("verdict")).alias("verdict"))
            .drop("context"))


def context_figure(rows: pl.DataFrame, methods: list[str], reference: dict[str, np.ndarray] | None, title: str):
    """Accuracy (top) and cross-entropy (bottom) against context length, one column per model, one
    line per snapshot (later: darker); `reference` (optional): {label: (lengths, accuracy)}."""
    figure, axes = plt.subplots(2, len(methods), figsize=(3.6 * len(methods), 5.6), squeeze=False, sharex="col",
                                sharey="row")
    for column, method in enumerate(methods):
        steps = checkpoints(rows, method)
        colours = plt.cm.viridis(np.linspace(0.85, 0.0, len(steps)))
        for row, setting in enumerate(("context_accuracy", "context_cross_entropy")):
            axis = axes[row, column]
            for colour, step in zip(colours, steps):
                lengths, matrix = curve_matrix(rows, method, setting, step)
                axis.plot(lengths, matrix.mean(0), color=colour, lw=1.3, label=f"step {step}")
            if row == 0 and reference:
                for label, (lengths, accuracy) in reference.items():
                    axis.plot(lengths, accuracy, "--", color="grey", lw=1.1, label=label)
            if column == 0:
                axis.set_ylabel("accuracy (optimal action)" if row == 0 else "cross-entropy")
            axis.grid(alpha=0.3)
        axes[0, column].set_title(method, fontsize=9)
        axes[1, column].set_xlabel("context length")
    axes[0, 0].legend(fontsize=7, ncol=2)
    figure.suptitle(title, fontsize=10)
    return figure


def control_table(online: pl.DataFrame, offline: pl.DataFrame, gains: pl.DataFrame, method: str) -> pl.DataFrame:
    """The bandit control's criteria (module doc) from the final-step tables (online: cumulative
    regret; offline: suboptimality) and the context gains, one row each, and the overall pass."""
    def row(frame: pl.DataFrame, name: str) -> dict:
        return frame.filter(pl.col("method") == name).row(0, named=True)

    dpt, thompson, uniform = row(online, method), row(online, "thompson"), row(online, "uniform")
    dpt_off, lcb = row(offline, method), row(offline, "lcb")
    learnt = row(gains, method)["verdict"] == LEARNT
    records = [
        {"criterion": "online regret within Thompson's CI or below", "measured": dpt["mean [CI]"],
         "reference": f"thompson {thompson['mean [CI]']}", "pass": dpt["mean"] <= thompson["upper"]},
        {"criterion": "online regret far below uniform (CIs apart)", "measured": dpt["mean [CI]"],
         "reference": f"uniform {uniform['mean [CI]']}", "pass": dpt["upper"] < uniform["lower"]},
        {"criterion": "offline suboptimality within LCB's CI or below", "measured": dpt_off["mean [CI]"],
         "reference": f"lcb {lcb['mean [CI]']}", "pass": dpt_off["mean"] <= lcb["upper"]},
        {"criterion": "has learnt in context", "measured": row(gains, method)["gain [CI]"],
         "reference": f"gain ≥ {MIN_CONTEXT_GAIN} with its CI above 0", "pass": learnt},
    ]
    records.append({"criterion": "positive control", "measured": "", "reference": "all of the above",
                    "pass": all(r["pass"] for r in records)})
    return pl.DataFrame(records)

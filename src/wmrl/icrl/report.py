"""The in-context RL report: figures (SVG), tables (CSV) and one small HTML page, from the long
table of `wmrl.icrl.evaluate` (every run's rows).

Statistics. A task's score is the mean over its runs (evaluation seeds x the model's pretraining
seeds); a method's score is the mean over held-out tasks, with a percentile bootstrap CI that
resamples tasks (`bootstrap_over_tasks`). P(DPT beats Thompson) is the probability of improvement
of `wmrl.evaluate.statistics` on the final cumulative regret (lower is better: scores are negated),
with its stratified bootstrap CI over runs within tasks.

The instrument first (`wmrl.icrl.context_report`): each model's in-context learning curve, and a
claim about a model not shown to have learnt in context is not judged; a bandit experiment with a
positive control leads with its pass or fail.

Claims, each with a verdict from its CI ("too few runs to decide" below `statistics.MIN_RUNS` runs,
"too few held-out tasks to decide" below `context_report.MIN_TASKS` tasks):

* bandits, "DPT ≈ Thompson sampling online on held-out tasks": the CI of the per-task difference
  in final cumulative regret (DPT - Thompson). Containing 0: "consistent (no difference detected)";
  above 0: "refuted: DPT's regret is higher"; below 0: "refuted: DPT's regret is lower".
* Dark Room, for each model: "improves over its in-context episodes on held-out goals" (last
  episode's return - first's) and "beats a uniform policy on held-out goals" (last episode):
  "supported" when the CI is above 0, "refuted" below, "not shown" when it contains 0; a later
  method's model against the first method's of the same backbone (AD against DPT), and a model
  against the learner it distils (AD's source), at the last episode.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from wmrl.config.icrl import ICRL_METHODS  # noqa: E402
from wmrl.evaluate.statistics import (MIN_RUNS, bootstrap_over_tasks, probability_of_improvement,  # noqa: E402
                                      stratified_bootstrap_ci)
from wmrl.icrl.context_report import (LEARNT, MIN_CONTEXT_GAIN, MIN_TASKS, TOO_FEW_TASKS, context_figure,  # noqa
                                      context_gain, control_table, gate, task_matrix)
from wmrl.jobs import IcrlReportSpec, check_spec  # noqa: E402
from wmrl.report.plots import save  # noqa: E402

CURVE_POINTS = 100  # steps drawn per curve (evenly spaced): bounds the bootstrap's cost at H = 500
LABELS = {"online": "cumulative regret", "offline": "suboptimality of the chosen arm", "darkroom": "episode return"}


# --------------------------------------------------------------------------- statistics


def cumulative(rows: pl.DataFrame) -> pl.DataFrame:
    """Online rows with value = the cumulative regret up to each step."""
    return (rows.filter(pl.col("setting") == "online").sort("step")
            .with_columns(pl.col("value").cum_sum().over("method", "model_seed", "task", "seed")))


def run_matrix(rows: pl.DataFrame, method: str, setting: str, step: int) -> np.ndarray:
    """Scores (runs, tasks) at `step`: one column per task, one row per (model seed, seed)."""
    chosen = rows.filter((pl.col("method") == method) & (pl.col("setting") == setting) & (pl.col("step") == step))
    chosen = chosen.with_columns(pl.col("model_seed").fill_null(-1)).sort("task", "model_seed", "seed")
    tasks = chosen["task"].n_unique()
    return chosen["value"].to_numpy().reshape(tasks, -1).T


def interval(point: float, lower: float, upper: float) -> str:
    return f"{point:.3f} [{lower:.3f}, {upper:.3f}]"


def final_table(rows: pl.DataFrame, setting: str, step: int, methods: list[str], repetitions: int,
                confidence: float) -> pl.DataFrame:
    """Each method's mean over tasks at `step`, with its CI over tasks, and its runs."""
    records = []
    for method in methods:
        steps, matrix, runs = task_matrix(rows.filter(pl.col("step") == step), method, setting)
        point, lower, upper = (float(x[0]) for x in bootstrap_over_tasks(matrix, repetitions, confidence))
        records.append({"method": method, "step": int(step), "mean": point, "lower": lower, "upper": upper,
                        "tasks": len(matrix), "runs_per_task": runs, "mean [CI]": interval(point, lower, upper)})
    return pl.DataFrame(records)


def difference(rows: pl.DataFrame, setting: str, a: tuple[str, int], b: tuple[str, int], repetitions: int,
               confidence: float) -> tuple[float, float, float, int, int]:
    """Mean over tasks of (method a at step a) - (method b at step b), its CI over tasks, the runs
    and the tasks."""
    _, first, runs_a = task_matrix(rows.filter(pl.col("step") == a[1]), a[0], setting)
    _, second, runs_b = task_matrix(rows.filter(pl.col("step") == b[1]), b[0], setting)
    point, lower, upper = (float(x[0]) for x in bootstrap_over_tasks(first - second, repetitions, confidence))
    return point, lower, upper, len(first) * min(runs_a, runs_b), len(first)


def verdict(lower: float, upper: float, runs: int, above: str, below: str, inside: str, tasks: int) -> str:
    """The claim's verdict from its CI; undecided below `MIN_RUNS` runs or `MIN_TASKS` held-out
    tasks (the CI resamples tasks: a handful of them gives an interval far too narrow)."""
    if tasks < MIN_TASKS:
        return TOO_FEW_TASKS
    if runs < MIN_RUNS:
        return "too few runs to decide"
    return above if lower > 0 else below if upper < 0 else inside


# --------------------------------------------------------------------------- figures


def curves_figure(rows: pl.DataFrame, setting: str, models: list[str], baselines: list[str], repetitions: int,
                  confidence: float, title: str):
    """Each model's (solid) and baseline's (dashed) curve: the mean over tasks with its CI."""
    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    for i, method in enumerate(models + baselines):
        steps, matrix, _ = task_matrix(rows, method, setting)
        keep = np.unique(np.linspace(0, len(steps) - 1, min(CURVE_POINTS, len(steps))).round().astype(int))
        point, lower, upper = bootstrap_over_tasks(matrix[:, keep], repetitions, confidence)
        style = "-" if method in models else "--"
        axis.plot(steps[keep], point, style, color=f"C{i}", label=method, lw=1.4)
        axis.fill_between(steps[keep], lower, upper, color=f"C{i}", alpha=0.2, lw=0)
    axis.set_xlabel("episode" if setting == "darkroom" else "step (pulls seen)" if setting == "offline" else "step")
    axis.set_ylabel(LABELS[setting])
    axis.set_title(title)
    axis.legend(fontsize=8)
    return figure


# --------------------------------------------------------------------------- the page


def table_html(frame: pl.DataFrame) -> str:
    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "—"
        return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in frame.iter_rows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def cost_table(benchmarks: dict[str, list[str]]) -> pl.DataFrame:
    """Wall seconds and peak memory of every job that has a benchmark file yet."""
    records = []
    for rule, files in benchmarks.items():
        for file in files:
            if Path(file).is_file():
                bench = pl.read_csv(file, separator="\t")
                records.append({"rule": rule, "job": Path(file).stem, "seconds": float(bench["s"][0]),
                                "max_rss_mb": float(bench["max_rss"][0]) if bench["max_rss"][0] != "-" else None})
    schema = {"rule": pl.String, "job": pl.String, "seconds": pl.Float64, "max_rss_mb": pl.Float64}
    return pl.DataFrame(records, schema=schema)


def context_reference(rows: pl.DataFrame, family: str) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The context curve's reference (bandits): the share of held-out histories whose empirically
    best arm after t pulls is the optimal one, from the offline rows (suboptimality 0)."""
    if family != "bandit":
        return None
    chosen = rows.filter((pl.col("setting") == "offline") & (pl.col("method") == "empirical_mean"))
    shares = chosen.group_by("step").agg((pl.col("value") == 0).mean()).sort("step")
    return {"empirical best arm": (shares["step"].to_numpy(), shares["value"].to_numpy())}


def bandit_tables(rows: pl.DataFrame, dpts: list[str], repetitions: int, confidence: float, out: dict[str, str],
                  tables: dict[str, pl.DataFrame], figures: dict[str, str]) -> None:
    """The bandits' online-regret and offline-suboptimality figures and final tables, P(DPT beats
    Thompson) and the claim "DPT ≈ Thompson sampling online" for each DPT model."""
    reps = repetitions
    online = cumulative(rows)
    horizon = int(online["step"].max())
    online_baselines = ["thompson", "ucb", "empirical_mean", "uniform", "oracle"]
    offline_baselines = ["lcb", "empirical_mean"]
    methods, offline_methods = dpts + online_baselines, dpts + offline_baselines
    figures["online_regret"] = "Online: cumulative regret on held-out bandits (mean, CI over tasks)"
    save(curves_figure(online, "online", dpts, online_baselines, reps, confidence, figures["online_regret"]),
         out["online_regret"])
    figures["offline_suboptimality"] = "Offline: suboptimality of the greedy arm after t pulls of a fixed history"
    save(curves_figure(rows, "offline", dpts, offline_baselines, reps, confidence, figures["offline_suboptimality"]),
         out["offline_suboptimality"])
    tables["online_final"] = final_table(online, "online", horizon, methods, reps, confidence)
    tables["offline_final"] = final_table(rows, "offline", horizon, offline_methods, reps, confidence)
    improvement, claims = [], []
    for dpt in dpts:
        x, y = -run_matrix(online, dpt, "online", horizon), -run_matrix(online, "thompson", "online", horizon)
        p, lower, upper = stratified_bootstrap_ci((x, y), probability_of_improvement, reps, confidence)
        improvement.append({"method": dpt, "baseline": "thompson", "P(method beats baseline)": p,
                            "lower": lower, "upper": upper, "runs_method": x.size, "runs_baseline": y.size})
        point, low, high, runs, tasks = difference(online, "online", (dpt, horizon), ("thompson", horizon), reps,
                                                   confidence)
        claims.append({"claim": f"DPT ≈ Thompson sampling online on held-out tasks ({dpt})", "method": dpt,
                       "measure": f"final cumulative regret, {dpt} - thompson (step {horizon})",
                       "difference [CI]": interval(point, low, high), "runs": runs, "tasks": tasks,
                       "verdict": verdict(low, high, runs, "refuted: DPT's regret is higher",
                                          "refuted: DPT's regret is lower", "consistent (no difference detected)",
                                          tasks)})
    tables["improvement"] = pl.DataFrame(improvement)
    tables["claims"] = pl.DataFrame(claims)


def darkroom_tables(rows: pl.DataFrame, models: list[str], methods: list[str], repetitions: int, confidence: float,
                    out: dict[str, str], tables: dict[str, pl.DataFrame], figures: dict[str, str]) -> None:
    """Dark Room's returns figure, first- and last-episode table and claims: each model improves
    over its in-context episodes and beats uniform; each later method's model against the first
    method's of the same backbone (AD against DPT), and against the learner it distils where its
    entry names one (`wmrl.config.icrl.ICRL_METHODS`), at the last episode."""
    episodes = int(rows.filter(pl.col("setting") == "darkroom")["step"].max())
    sources = {method: ICRL_METHODS[method].source for method in methods if ICRL_METHODS[method].source}
    baselines = ["oracle", "uniform", *sources.values()]
    figures["returns"] = "Dark Room: return per in-context episode on held-out goals (mean, CI over goals)"
    save(curves_figure(rows, "darkroom", models, baselines, repetitions, confidence, figures["returns"]),
         out["returns"])
    tables["returns_final"] = pl.concat([final_table(rows, "darkroom", step, models + baselines, repetitions,
                                                     confidence) for step in (1, episodes)])
    comparisons = []
    for model in models:
        method, backbone = model.split("_")
        comparisons += [(f"{model} improves over its in-context episodes on held-out goals", model, (model, 1),
                         ("supported", "refuted", "not shown")),
                        (f"{model} beats a uniform policy on held-out goals", model, ("uniform", episodes),
                         ("supported", "refuted", "not shown"))]
        first = f"{methods[0]}_{backbone}"
        if method != methods[0]:
            comparisons.append((f"{model} against {first} at the last episode", model, (first, episodes),
                                (f"{method} higher", f"{methods[0]} higher", "no difference detected")))
        if method in sources:
            comparisons.append((f"{model} against its source learner at episode {episodes}", model,
                                (sources[method], episodes), (f"{method} above its source",
                                                              f"{method} below its source", "no difference detected")))
    claims = []
    for claim, model, other, verdicts in comparisons:
        point, low, high, runs, tasks = difference(rows, "darkroom", (model, episodes), other, repetitions, confidence)
        claims.append({"claim": claim, "method": model, "measure": f"return, {model} ep {episodes} - {other[0]} ep "
                       f"{other[1]}", "difference [CI]": interval(point, low, high), "runs": runs, "tasks": tasks,
                       "verdict": verdict(low, high, runs, *verdicts, tasks)})
    tables["claims"] = pl.DataFrame(claims)


def build_icrl_report(spec: IcrlReportSpec, out: dict[str, str]) -> None:
    """Read every evaluation's rows, write the tables, figures and the page named in `out`."""
    check_spec(spec, IcrlReportSpec)
    for path in out.values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    rows = pl.concat([pl.read_parquet(f) for f in spec["inputs"]["evaluations"]])
    rows.write_parquet(out["rows"])
    icrl, reps, confidence = spec["icrl"], spec["bootstrap_repetitions"], spec["confidence"]
    models = spec["methods"]
    tables: dict[str, pl.DataFrame] = {}
    figures: dict[str, str] = {}
    gains = context_gain(rows, models, reps, confidence)
    figures["context_curve"] = ("In-context learning curve on held-out tasks: accuracy and cross-entropy against "
                                "context length at each training snapshot")
    save(context_figure(rows, models, context_reference(rows, icrl["family"]), figures["context_curve"]),
         out["context_curve"])
    if icrl["family"] == "bandit":
        bandit_tables(rows, models, reps, confidence, out, tables, figures)
        tables["claims"] = gate(tables["claims"], gains)
        if icrl["control"]:
            tables["control"] = control_table(tables["online_final"], tables["offline_final"], gains, icrl["control"])
    else:
        darkroom_tables(rows, models, icrl["methods"], reps, confidence, out, tables, figures)
        tables["claims"] = gate(tables["claims"], gains)
    tables["context_gain"] = gains
    tables["cost"] = cost_table(spec["benchmarks"])
    for name, frame in tables.items():
        frame.write_csv(out[f"{name}_csv"])
    Path(out["html"]).write_text(page(spec, tables, figures, out))


def control_box(spec: dict[str, Any], tables: dict[str, pl.DataFrame]) -> list[str]:
    """The positive control's verdict and criteria, first on the page (bandit experiments that set one)."""
    if "control" not in tables:
        return []
    icrl = spec["icrl"]
    passed = tables["control"]["pass"][-1]
    return [f"<h2>Positive control: {'PASS' if passed else 'FAIL'}</h2>",
            f"<p>{html.escape(icrl['control'])} on {icrl['arms']}-armed bandits, H = {icrl['horizon']}, "
            f"{icrl['pretrain']['steps']} training steps on {icrl['train_tasks']} training tasks, "
            f"{icrl['evaluate']['tasks']} held-out tasks (means drawn with seed {icrl['heldout_seed']}), one "
            f"pretraining seed. The criteria were fixed before any run was read (wmrl.icrl.context_report); the "
            f"training budget was chosen by probes on other held-out bandits. The first criterion compares DPT's "
            f"mean with Thompson's interval, unpaired; the claims table below gives the paired difference."
            f"</p>", table_html(tables["control"])]


def page(spec: dict[str, Any], tables: dict[str, pl.DataFrame], figures: dict[str, str], out: dict[str, str]) -> str:
    icrl = spec["icrl"]
    p, e = icrl["pretrain"], icrl["evaluate"]
    if icrl["family"] == "bandit":
        setup = (f"{icrl['arms']}-armed Gaussian bandits, arm means U(0, 1), reward noise standard "
                 f"deviation {icrl['noise_std']}, horizon H = "
                 f"{icrl['horizon']}; {icrl['train_tasks']} training tasks x {icrl['histories_per_task']} "
                 f"histories; {e['tasks']} held-out tasks (means drawn with another seed) x {len(e['seeds'])} "
                 f"evaluation seeds")
    else:
        setup = (f"Dark Room {icrl['size']}x{icrl['size']} (DPT's is 10x10), episodes of {icrl['episode_steps']} "
                 f"steps; {icrl['size'] ** 2 - icrl['heldout_goals']} training goals, {e['tasks']} held-out goals x "
                 f"{len(e['seeds'])} evaluation seeds x {e['episodes']} in-context episodes. DPT: "
                 f"{icrl['histories_per_task']} histories per goal of {icrl['horizon']} uniform-random transitions, "
                 f"its context in play the last {icrl['horizon']} transitions of its previous episodes")
        if "ad" in icrl["methods"]:
            ad = icrl["ad"]
            setup += (f". AD: {ad['histories_per_task']} learning histories per goal of {ad['episodes']} episodes "
                      f"(the oracle with exploration decaying to 0 by episode {ad['decay'] * ad['episodes']:.0f}), "
                      f"its context the last {ad['context_episodes']} episodes")
    model = p["model"]
    setup += (f". Models ({', '.join(icrl['methods'])}): backbones {', '.join(p['backbones'])}, width {model['dim']}, "
              f"{model['layers']} layers, {p['steps']} steps of batch {model['batch_size']}, learning rate "
              f"{model['learning_rate']} ({p['schedule']}), pretraining seeds {p['seeds']}.")
    parts = [f"<h1>In-context RL: {html.escape(spec['experiment'])} ({html.escape(spec['scale'])})</h1>",
             f"<p><b>Question.</b> {html.escape(spec['question'])}</p>", f"<p>{html.escape(setup)}</p>",
             f"<p>Config hash {spec['config_hash']}. Intervals: {spec['confidence']:.0%} percentile bootstrap "
             f"({spec['bootstrap_repetitions']} repetitions) over held-out tasks; below {MIN_RUNS} runs a claim "
             f"reads “too few runs to decide”. Every method was played by the same code on the same held-out "
             f"tasks and seeds (wmrl.icrl.evaluate).</p>",
             *control_box(spec, tables), "<h2>Claims</h2>", table_html(tables["claims"]),
             "<h2>Has each model learnt in context?</h2>",
             f"<p>Accuracy at the final snapshot from the shortest context to the longest one on held-out tasks "
             f"(DPT: from an empty context; AD: per episode of an oracle's last episodes, over each episode's "
             f"steps before its first reward); “{LEARNT}” needs a gain of at least {MIN_CONTEXT_GAIN} with its CI "
             f"above 0 over at least {MIN_TASKS} held-out tasks, and a model not shown to have learnt in context "
             f"has none of its claims judged.</p>", table_html(tables["context_gain"])]
    for name, title in figures.items():
        svg = Path(out[name]).read_text()
        parts += [f"<h2>{html.escape(title)}</h2>", svg[svg.index("<svg"):]]
    for name, frame in tables.items():
        if name not in ("claims", "context_gain", "control"):
            parts += [f"<h2>{html.escape(name.replace('_', ' '))}</h2>", table_html(frame)]
    style = ("body{font-family:sans-serif;max-width:60em;margin:2em auto}table{border-collapse:collapse;"
             "margin:1em 0}td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(spec['experiment'])}</title>"
            f"<style>{style}</style></head><body>" + "\n".join(parts) + "</body></html>\n")

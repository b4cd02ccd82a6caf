"""The report's honesty section: what was not run, how much was run, and every check that failed.

Each entry is {"status", "what", "detail"} with status "failed" (a result should not be trusted
as is), "note" (read it before the numbers) or "ok". Nothing is dropped for looking bad.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from wmrl.evaluate.statistics import MIN_RUNS
from wmrl.report.tables import control_result

LAPTOP_MEMORY_MB = 2048  # the goal every job meets below `paper` scale


def entry(status: str, what: str, detail: str) -> dict[str, str]:
    return {"status": status, "what": what, "detail": detail}


def checks(spec: dict[str, Any], tables: dict[str, pl.DataFrame], curves: pl.DataFrame) -> list[dict[str, str]]:
    found = [entry("note", "not run", item) for item in spec["not_run"]]
    found += [_amount(tables["runs"]), *_few_runs(tables["aggregate"]), *_finite(tables["episodes"], curves),
              *_cut(tables["episodes"], spec), *_below_random(tables["aggregate"]), *_lineage(tables["lineage"]),
              *_cost(tables["jobs"], spec), *_budget(tables["training_speed"]), *_world_model(tables["world_model"]),
              *_planning(tables["aggregate"]), *_variants(tables["aggregate"], spec), *_control(tables, spec)]
    order = {"failed": 0, "note": 1, "ok": 2}
    return sorted(found, key=lambda item: order[item["status"]])


def _amount(runs: pl.DataFrame) -> dict[str, str]:
    per_method = (runs.group_by("method", maintain_order=True)
                  .agg(pl.col("seed").unique().sort(), pl.col("task").unique().sort(), pl.col("episodes").min()))
    detail = "; ".join(f"{row['method']}: seeds {row['seed']} on {', '.join(row['task'])}, "
                       f"{row['episodes']} episodes per seed and setting" for row in per_method.iter_rows(named=True))
    return entry("ok", "seeds and episodes", detail)


def _few_runs(aggregate: pl.DataFrame) -> list[dict[str, str]]:
    few = aggregate.filter(pl.col("runs") < MIN_RUNS).select("method", "runs").unique(maintain_order=True)
    if few.is_empty():
        return []
    methods = ", ".join(f"{row['method']} ({row['runs']})" for row in few.iter_rows(named=True))
    return [entry("note", "too few runs for intervals",
                  f"{methods}: fewer than {MIN_RUNS} runs (seeds x tasks). A bootstrap resamples the runs, and two "
                  f"runs give three distinct resamples, so an interval can shrink to a point (P = 1.00 [1.00, 1.00]) "
                  f"that measures nothing; their CIs are marked \u2020 and no verdict compares them")]


def _finite(episodes: pl.DataFrame, curves: pl.DataFrame) -> list[dict[str, str]]:
    found = []
    bad_returns = episodes.filter(~pl.col("return").is_finite())
    if not bad_returns.is_empty():
        found.append(entry("failed", "non-finite returns", f"{len(bad_returns)} episodes"))
    if not curves.is_empty():
        bad = curves.filter(~pl.col("value").is_finite()).select("method", "model", "seed", "metric").unique()
        for row in bad.sort(pl.all()).iter_rows(named=True):
            found.append(entry("failed", "non-finite validation loss",
                               f"{row['method']} [{row['model']}] seed {row['seed']}: {row['metric']}"))
    return found or [entry("ok", "finite losses and returns", "every validation loss and return is finite")]


def _cut(episodes: pl.DataFrame, spec: dict[str, Any]) -> list[dict[str, str]]:
    caps = pl.DataFrame({"task": list(spec["episode_caps"]), "cap": list(spec["episode_caps"].values())})
    cut = (episodes.join(caps, on="task").filter(pl.col("length") >= pl.col("cap"))
           .group_by("task", "method", maintain_order=True).agg(pl.len(), pl.col("cap").first()))
    return [entry("note", "episodes cut at the step cap",
                  f"{row['task']}, {row['method']}: {row['len']} episodes reached {row['cap']} steps "
                  f"(their return is a lower bound)") for row in cut.iter_rows(named=True)]


def _below_random(aggregate: pl.DataFrame) -> list[dict[str, str]]:
    below = aggregate.filter(pl.col("iqm_high") < 0)
    return [entry("note", "below random", f"{row['method']} [{row['model']}] {row['checkpoint']}, planning "
                  f"{row['planning']}: IQM {row['iqm']:.2f} [{row['iqm_low']:.2f}, {row['iqm_high']:.2f}]")
            for row in below.iter_rows(named=True)]


def _lineage(lineage: pl.DataFrame) -> list[dict[str, str]]:
    shas = set(lineage["eval_git_sha"]) | set(lineage["train_git_sha"])
    found = []
    dirty = sorted(sha for sha in shas if sha.endswith("-dirty") or sha == "unknown")
    if dirty:
        found.append(entry("failed", "uncommitted code", f"runs were made from a dirty or unknown tree: {dirty}"))
    if len(shas) > 1:
        found.append(entry("note", "several commits", f"the runs come from {len(shas)} code versions: "
                           f"{sorted(shas)} (Snakemake reruns a job only when its own code changed)"))
    return found or [entry("ok", "one clean commit", f"every run was made at {shas.pop() if shas else '—'}")]


def _cost(jobs: pl.DataFrame, spec: dict[str, Any]) -> list[dict[str, str]]:
    found = []
    unmeasured = jobs.filter(pl.col("wall_s").is_null())
    if not unmeasured.is_empty():
        found.append(entry("note", "jobs not measured", f"{len(unmeasured)} jobs have no benchmark file (their "
                           f"outputs came from elsewhere, e.g. `dvc pull`): {', '.join(unmeasured['job'][:5])}"))
    if spec["scale"] != "paper":
        heavy = jobs.filter(pl.col("max_rss_mb") > LAPTOP_MEMORY_MB)
        found += [entry("failed", "memory goal", f"{row['job']}: peak {row['max_rss_mb']:.0f} MB > "
                        f"{LAPTOP_MEMORY_MB} MB") for row in heavy.iter_rows(named=True)]
        if heavy.is_empty() and jobs["max_rss_mb"].drop_nulls().len():
            found.append(entry("ok", "memory goal", f"every measured job peaked under {LAPTOP_MEMORY_MB} MB "
                               f"(highest {jobs['max_rss_mb'].max():.0f} MB)"))
    return found


def _budget(speed: pl.DataFrame) -> list[dict[str, str]]:
    """Offline methods, ours and the peers, train for the same gradient steps: checked wherever the
    models' records say what training took."""
    timed = speed.filter(pl.col("kind") != "online", pl.col("timed") > 0)
    if timed.is_empty():
        return []
    steps = ", ".join(f"{row['method']} {row['grad_steps']:.0f}" for row in timed.iter_rows(named=True))
    if timed["grad_steps"].n_unique() > 1:
        return [entry("failed", "unequal training budgets", f"mean gradient steps per run: {steps}")]
    return [entry("ok", "same training budget", f"gradient steps per run (from the models' records): {steps}")]


def _world_model(errors: pl.DataFrame) -> list[dict[str, str]]:
    """Per source task: the horizons at which the model's open-loop error is not below "nothing changes"."""
    by_horizon = (errors.group_by("task", "horizon", "predictor").agg(pl.col("error").mean())
                  .pivot(on="predictor", index=["task", "horizon"], values="error").sort("task", "horizon"))
    found = []
    for (task,), rows in by_horizon.group_by("task", maintain_order=True):
        worse = rows.filter(pl.col("model") >= pl.col("nothing changes"))
        if not worse.is_empty():
            first = worse.row(0, named=True)
            found.append(entry("note", "world model vs. nothing changes",
                               f"{task}: not below the 'nothing changes' predictor at horizons "
                               f"{worse['horizon'].to_list()} ({first['horizon']} steps: {first['model']:.4f} vs "
                               f"{first['nothing changes']:.4f})"))
    if not found and not by_horizon.is_empty():
        found.append(entry("ok", "world model vs. nothing changes", "below the 'nothing changes' predictor on every "
                           f"task at every horizon 1..{by_horizon['horizon'].max()}"))
    return found


def _planning(aggregate: pl.DataFrame) -> list[dict[str, str]]:
    """Where planning lowers a method's IQM: its interval lies below the greedy policy's point."""
    arm = ["method", "model", "transitions", "checkpoint"]
    greedy = aggregate.filter(planning="none").select(*arm, greedy="iqm")
    planned = aggregate.filter(pl.col("planning") != "none").join(greedy, on=arm)
    lower = planned.filter(pl.col("iqm_high") < pl.col("greedy"))
    return [entry("note", "planning lowers the score", f"{row['method']} [{row['model']}] {row['checkpoint']}, "
                  f"{row['transitions']} transitions: "
                  f"IQM {row['greedy']:.2f} greedy, {row['iqm']:.2f} [{row['iqm_low']:.2f}, {row['iqm_high']:.2f}] "
                  f"with {row['planning']}") for row in lower.iter_rows(named=True)]


def _variants(aggregate: pl.DataFrame, spec: dict[str, Any]) -> list[dict[str, str]]:
    """What each variant tried (report.variants) gave, beside the headline's method, in its setting,
    at the largest data size where the variant ran."""
    compare = spec["compare"]
    arms = aggregate.filter(checkpoint=compare["checkpoint"], planning=compare["planning"])

    def iqm(method: str, transitions: int) -> str:
        rows = arms.filter(method=method, transitions=transitions)
        if rows.is_empty():
            return f"{method}: not evaluated in this setting"
        row = rows.row(0, named=True)
        return f"{method} {row['iqm']:.2f} [{row['iqm_low']:.2f}, {row['iqm_high']:.2f}]"

    found = []
    for name in spec.get("variants", []):
        size = max(arms.filter(method=name)["transitions"].to_list(), default=max(spec["data_sizes"]))
        found.append(entry("note", "variant tried", f"{iqm(name, size)}, against {iqm(compare['method'], size)} "
                           f"(IQM normalized, {size} transitions, {compare['checkpoint']} checkpoint, planning "
                           f"{compare['planning']}); the headline compares {compare['method']} with "
                           f"{compare['baseline']}, fixed before the run"))
    return found


def _control(tables: dict[str, pl.DataFrame], spec: dict[str, Any]) -> list[dict[str, str]]:
    """Whether the bench can see transfer where it must exist (the control), before any null is read."""
    control = spec["control"]
    if control is None:
        return [entry("note", "no transfer control", "the experiment has no positive control "
                      "(finetune.control): a null result cannot be told from an instrument that could not see one")]
    judged = control_result(tables["control"])
    smallest = judged["smallest"]
    what = (f"{control['method']} vs {control['baseline']} on held-back {control['task']} episodes, "
            f"{smallest['transitions']} transitions")
    if judged["status"] == "not evaluated":
        return [entry("failed", "transfer control", f"{what}: not evaluated")]
    difference = (f"IQM difference {smallest['difference']:+.2f} [{smallest['difference_low']:+.2f}, "
                  f"{smallest['difference_high']:+.2f}]")
    if judged["status"] == "passed":
        return [entry("ok", "transfer control", f"{what}: {difference}; the bench detects transfer on known dynamics")]
    return [entry("failed", "transfer control", f"{what}: {difference}, CI not above 0; the fine-tuning recipe or the "
                  f"budget hides transfer, so every null verdict here is inconclusive")]

"""The report's tables beyond the scores: method kinds, datasets, pipeline cost, lineage, training
speed, and the headline.

Every function takes files or frames and returns a polars frame (or, for the headline, a dict of
the sentence's parts); nothing here draws or renders.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import polars as pl

from wmrl.dag.paths import MULTIGAME, SINGLEGAME
from wmrl.evaluate.statistics import MIN_RUNS

# Snakemake's benchmark TSV columns kept here: wall seconds, peak resident memory (MB), CPU seconds.
BENCHMARK_COLUMNS = {"s": "wall_s", "max_rss": "max_rss_mb", "cpu_time": "cpu_s"}


def with_kinds(frame: pl.DataFrame, methods: dict[str, dict[str, str]], column: str = "method",
               kind: str = "kind") -> pl.DataFrame:
    """`frame` with the kind (ours | peer | online) of the method in `column` as column `kind`,
    placed right after it (`methods`: the report spec's {method: {kind, label}})."""
    kinds = {name: method["kind"] for name, method in methods.items()}
    labelled = frame.with_columns(pl.col(column).replace_strict(kinds, return_dtype=pl.String).alias(kind))
    order = [name for name in frame.columns if name != kind]
    return labelled.select(*order[:order.index(column) + 1], kind, *order[order.index(column) + 1:])


def dataset_md5(directory: str | Path) -> str:
    """The md5 of the dataset's card, which lists the sha256 of every shard: it pins every byte
    of the dataset and costs one small read, however large the shards (`md5sum DIR/card.json`;
    `wmrl check-dataset DIR` checks the shards against it)."""
    return hashlib.md5((Path(directory) / "card.json").read_bytes()).hexdigest()


def datasets_table(datasets: dict[str, str]) -> pl.DataFrame:
    """One row per dataset directory ({directory: its role in the experiment}), from its card."""
    rows = []
    for directory, role in datasets.items():
        card = json.loads((Path(directory) / "card.json").read_text())
        returns = card["returns"]
        rows.append({"task": card["task"], "policy": card["policy"]["name"], "seed": card["seed"], "role": role,
                     "transitions": card["transitions"], "episodes": returns["episodes"],  # complete ones
                     # return statistics are null where no episode completed (a short random-policy run)
                     **{f"return_{key}": returns.get(key) for key in ("mean", "std", "min", "max")},
                     # a learning behaviour policy's final score, greedy (dqn) or sampled (ppo, recurrent_ppo)
                     "final_policy_return": (card["policy"].get("reference_score") or {}).get("mean"),
                     "bytes": sum(p.stat().st_size for p in Path(directory).iterdir()),
                     "md5": dataset_md5(directory), "directory": directory})
    return pl.DataFrame(rows)


def job_costs(benchmarks: dict[str, list[str]]) -> pl.DataFrame:
    """One row per job ({rule: benchmark files}): wall and CPU seconds, peak RSS, and when it
    ended (the file's modification time). A job without a file (its output came from elsewhere,
    e.g. `dvc pull`) has a row with nulls: it is shown as not measured, not dropped."""
    rows = []
    for rule, files in benchmarks.items():
        for file in files:
            row: dict[str, Any] = {"rule": rule, "job": Path(file).with_suffix("").as_posix().split("/", 2)[2]}
            if Path(file).is_file():
                measured = pl.read_csv(file, separator="\t", null_values=["-", "NA"], infer_schema_length=0)
                row |= {name: float(measured[column][0]) if measured[column][0] is not None else math.nan
                        for column, name in BENCHMARK_COLUMNS.items()}
                row["ended"] = Path(file).stat().st_mtime
            rows.append(row)
    schema = {"rule": pl.String, "job": pl.String, **{name: pl.Float64 for name in BENCHMARK_COLUMNS.values()},
              "ended": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def busy_seconds(jobs: pl.DataFrame) -> float:
    """Wall time during which at least one job ran: the union of [ended - wall_s, ended] intervals
    (runs made at different times are not counted with the idle time between them)."""
    intervals = sorted((end - wall, end) for end, wall in jobs.drop_nulls(["ended"]).select("ended", "wall_s").rows())
    total, current_start, current_end = 0.0, None, None
    for start, end in intervals:
        if current_end is None or start > current_end:
            total += (current_end - current_start) if current_end is not None else 0.0
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    return total + ((current_end - current_start) if current_end is not None else 0.0)


def cost_table(jobs: pl.DataFrame) -> pl.DataFrame:
    """Per rule: jobs, how many were measured, summed wall and CPU time, the highest peak RSS."""
    return (jobs.group_by("rule", maintain_order=True)
            .agg(pl.len().alias("jobs"), pl.col("wall_s").is_not_null().sum().alias("measured"),
                 pl.col("wall_s").sum(), pl.col("cpu_s").sum(), pl.col("max_rss_mb").max()))


def lineage_table(files: list[str], md5: dict[str, str]) -> pl.DataFrame:
    """One row per evaluated model from the evaluations' lineage files: the evaluation's MLflow
    run and git SHA, and the model's training run, git SHA, config hash and datasets (by md5)."""
    rows = []
    for file in files:
        lineage = json.loads(Path(file).read_text())
        evaluation, model = lineage["evaluation"], lineage["model"]
        datasets = sorted(model["datasets"])
        rows.append({
            **{key: evaluation[key] for key in ("scale", "experiment", "task", "method", "model")},
            "transitions": int(evaluation["transitions"]), "seed": int(evaluation["seed"]),
            "parameters": model.get("parameters"),
            "trained_parameters": model.get("trained_parameters", model.get("parameters")),
            "from_pretraining": " ".join(model.get("from_pretraining", [])),
            "eval_run_id": evaluation["run_id"], "eval_run_url": evaluation["run_url"],
            "eval_git_sha": evaluation["git_sha"], "eval_config_hash": evaluation["config_hash"],
            "train_run_id": model["run_id"], "train_run_url": model["run_url"], "train_git_sha": model["git_sha"],
            "train_config_hash": model["config_hash"],
            # what training took, where the model's record says (see tracking.write_record)
            "training_steps": model.get("training", {}).get("steps"),
            "training_seconds": model.get("training", {}).get("seconds"),
            "training_env_steps": model.get("training", {}).get("env_steps"),  # online methods' alone
            "dataset_md5": " ".join(md5.get(directory, "not in this experiment") for directory in datasets)
            or "none (trained online)",
            "datasets": " ".join(datasets),
        })
    return pl.DataFrame(rows, schema_overrides={"parameters": pl.Int64, "trained_parameters": pl.Int64,
                                                "from_pretraining": pl.String, "eval_run_url": pl.String,
                                                "train_run_url": pl.String, "training_steps": pl.Int64,
                                                "training_seconds": pl.Float64, "training_env_steps": pl.Int64})


def training_speed(lineage: pl.DataFrame, methods: dict[str, dict[str, str]]) -> pl.DataFrame:
    """Per fine-tuning method and model: its recipe, parameters (all, and those training changed),
    the modules that came from pretraining, its trained models (runs), how many records say what
    training took (timed), their mean gradient steps and training seconds, and gradient steps per
    second (all timed steps over all timed seconds) and, for online methods, environment steps per
second. Cells stay null where no record says."""
    trained = lineage.filter(~pl.col("method").is_in([MULTIGAME, SINGLEGAME]))
    timed = pl.col("training_seconds").is_not_null()
    recipes = {name: method["recipe"] for name, method in methods.items()}
    speed = (trained.group_by("method", "model", maintain_order=True)
             .agg(pl.col("method").first().replace_strict(recipes, return_dtype=pl.String).alias("recipe"),
                  pl.col("parameters").max(), pl.col("trained_parameters").max(),
                  pl.col("from_pretraining").first(), pl.len().alias("runs"), timed.sum().alias("timed"),
                  pl.col("training_steps").mean().alias("grad_steps"),
                  pl.col("training_seconds").mean().alias("training_s"),
                  (pl.col("training_steps").filter(timed).sum() / pl.col("training_seconds").filter(timed).sum())
                  .alias("grad_steps_per_s"),
                  (pl.col("training_env_steps").filter(timed).sum() / pl.col("training_seconds").filter(timed).sum())
                  .alias("env_steps_per_s")))
    timed = pl.col("timed") > 0
    acted = timed & (pl.col("env_steps_per_s") > 0)
    return with_kinds(speed.with_columns(pl.when(timed).then(pl.col("grad_steps_per_s")),
                                         pl.when(acted).then(pl.col("env_steps_per_s"))), methods)


def compare(aggregate: pl.DataFrame, improvement: pl.DataFrame, method: str, baseline: str,
            setting: dict[str, Any]) -> dict[str, Any]:
    """`method` against `baseline` in one setting (data size, checkpoint, planning): their aggregate
    rows (the best model of each), P(method > baseline), the IQM difference, and the verdict the
    CIs support:

    * "yes": P's interval lies above 1/2 and the method's IQM interval above 0 (random play);
    * "no useful transfer": P's interval lies above 1/2, but the method is not above random;
    * "no": P's interval lies below 1/2;
    * "no measurable difference": P's interval holds 1/2;
    * "too few runs to decide": either method has fewer than MIN_RUNS runs (seeds x tasks), whose
      bootstrap intervals are degenerate, whatever they show.

    The verdict is None, with the `missing` methods, when either has no rows in that setting."""
    arms = aggregate.filter(**setting)
    found = [arms.filter(method=name).sort("iqm", descending=True) for name in (method, baseline)]
    missing = [name for name, frame in zip((method, baseline), found, strict=True) if frame.is_empty()]
    if missing:
        return {"verdict": None, "missing": missing, **setting}
    ours, theirs = (frame.row(0, named=True) for frame in found)
    p = improvement.filter(method=ours["method"], model=ours["model"], than=theirs["method"],
                           than_model=theirs["model"], **setting).row(0, named=True)
    if min(ours["runs"], theirs["runs"]) < MIN_RUNS:
        verdict = "too few runs to decide"
    elif p["probability_low"] > 0.5:
        verdict = "yes" if ours["iqm_low"] > 0 else "no useful transfer"
    else:
        verdict = "no" if p["probability_high"] < 0.5 else "no measurable difference"
    return {"verdict": verdict, "method": ours, "baseline": theirs, "improvement": p, **setting}


def size_comparisons(aggregate: pl.DataFrame, improvement: pl.DataFrame, method: str, baseline: str,
                     setting: dict[str, Any], sizes: list[int]) -> pl.DataFrame:
    """`compare` at every data size (`setting` without one): one row per size with both methods'
    IQM [CI], P(method > baseline) [CI], the IQM difference [CI] and the verdict."""
    rows = []
    for size in sorted(sizes):
        answer = compare(aggregate, improvement, method, baseline, {**setting, "transitions": size})
        row = {"transitions": size, "method": method, "baseline": baseline,
               "verdict": answer["verdict"] or "not evaluated"}
        if answer["verdict"] is not None:
            for arm in ("method", "baseline"):
                row |= {f"{arm}_{key}": answer[arm][key] for key in ("iqm", "iqm_low", "iqm_high", "runs")}
            row |= {key: answer["improvement"][key] for key in DIFFERENCE_COLUMNS}
        rows.append(row)
    numbers = {f"{arm}_{key}": pl.Float64 for arm in ("method", "baseline") for key in ("iqm", "iqm_low", "iqm_high")}
    return pl.DataFrame(rows, schema={"transitions": pl.Int64, "method": pl.String, "baseline": pl.String,
                                      "verdict": pl.String, **numbers, "method_runs": pl.Int64,
                                      "baseline_runs": pl.Int64, **{key: pl.Float64 for key in DIFFERENCE_COLUMNS}})


DIFFERENCE_COLUMNS = ("probability", "probability_low", "probability_high", "difference", "difference_low",
                      "difference_high")


def control_result(comparisons: pl.DataFrame | None) -> dict[str, Any] | None:
    """The transfer control's outcome from its `size_comparisons` (None: the experiment has none):
    it passes when, at the smallest size, the method beats the baseline with the CI of the IQM
    difference above 0 ("passed"); "failed" otherwise, "not evaluated" without rows."""
    if comparisons is None:
        return None
    smallest = comparisons.row(0, named=True)
    if smallest["verdict"] == "not evaluated":
        status = "not evaluated"
    else:
        status = "passed" if smallest["difference_low"] > 0 else "failed"
    return {"status": status, "smallest": smallest}


def read_control(verdict: str | None, control: dict[str, Any] | None) -> str | None:
    """A verdict as the control lets it stand: a finding of no transfer ("no", "no measurable
    difference", "no useful transfer") means nothing when the control did not pass — the bench
    could not see transfer where it must exist — so it becomes "inconclusive". Without a control,
    or for "yes" and "too few runs to decide", the verdict stands as it is."""
    if control is None or control["status"] == "passed" or verdict in (None, "yes", "too few runs to decide"):
        return verdict
    return "inconclusive"


def headline(aggregate: pl.DataFrame, improvement: pl.DataFrame, chosen: dict[str, Any],
             sizes: pl.DataFrame, control: dict[str, Any] | None) -> dict[str, Any]:
    """The answer to the experiment's question: `compare` of the chosen method and baseline in the
    chosen setting (data size, checkpoint, planning) as the control lets it stand (`read_control`;
    the comparison's own verdict kept as "measured"), whether any data size shows transfer
    (`sizes`: size_comparisons), the best fine-tuned method in that setting, and which of the three
    are below random."""
    setting = {key: chosen[key] for key in ("transitions", "checkpoint", "planning")}
    answer = compare(aggregate, improvement, chosen["method"], chosen["baseline"], setting)
    answer |= {"control": control, "measured": answer["verdict"],
               "any_size": bool((sizes["verdict"] == "yes").any()), "sizes": len(sizes)}
    if answer["verdict"] is None:
        return answer
    answer["verdict"] = read_control(answer["verdict"], control)
    fine_tuned = aggregate.filter(**setting).filter(~pl.col("method").is_in([MULTIGAME, SINGLEGAME]))
    best = fine_tuned.sort("iqm", descending=True).row(0, named=True)
    arms = (answer["method"], answer["baseline"], best)
    return {**answer, "best": best, "below_random": [arm["method"] for arm in arms if arm["iqm_high"] < 0]}


def claim_size(aggregate: pl.DataFrame, claim: dict[str, str], setting: dict[str, Any]) -> int:
    """The data size a claim is judged at: the headline's (`setting`) when both its methods ran
    there, else the largest size both ran at (a method off the curve runs at the largest only)."""
    sizes = [set(aggregate.filter(method=claim[key])["transitions"].to_list()) for key in ("method", "baseline")]
    common = sizes[0] & sizes[1]
    return setting["transitions"] if setting["transitions"] in common or not common else max(common)


def claims_table(aggregate: pl.DataFrame, improvement: pl.DataFrame, claims: list[dict[str, str]],
                 setting: dict[str, Any], control: dict[str, Any] | None) -> pl.DataFrame:
    """One row per claim (`report.claims`), judged like the headline in its setting, at the size
    `claim_size` gives: both methods' IQM and CI, P(method > baseline) and CI, the verdict as the
    control lets it stand ("not evaluated" where a method has no rows; "measured": the comparison's
    own); a claim with a `model` compares both methods at that model, otherwise each at its best."""
    rows = []
    for claim in claims:
        at_model = aggregate.filter(model=claim["model"]) if claim.get("model") else aggregate
        size = claim_size(at_model, claim, setting)
        answer = compare(at_model, improvement, claim["method"], claim["baseline"], {**setting, "transitions": size})
        verdict = read_control(answer["verdict"], control)
        row = {"claim": claim["claim"], "method": claim["method"], "baseline": claim["baseline"],
               "model": claim.get("model") or "best of each", "transitions": size,
               "verdict": verdict or "not evaluated", "measured": answer["verdict"] or "not evaluated"}
        if answer["verdict"] is not None:
            for arm in ("method", "baseline"):
                row |= {f"{arm}_{key}": answer[arm][key] for key in ("iqm", "iqm_low", "iqm_high")}
            row |= {key: answer["improvement"][key] for key in DIFFERENCE_COLUMNS}
        rows.append(row)
    numbers = [f"{arm}_{key}" for arm in ("method", "baseline") for key in ("iqm", "iqm_low", "iqm_high")]
    schema = {"claim": pl.String, "method": pl.String, "baseline": pl.String, "model": pl.String,
              "transitions": pl.Int64, "verdict": pl.String, "measured": pl.String,
              **{name: pl.Float64 for name in numbers + list(DIFFERENCE_COLUMNS)}}
    return pl.DataFrame(rows, schema=schema)

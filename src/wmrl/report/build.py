"""Stage 5: one self-contained HTML report of an experiment, and the tables behind it.

From the evaluation rows, the world-model errors, the fine-tuning curves, the datasets' cards, the
jobs' benchmark files and the lineage files, `build_report` writes (paths in `out`):

* the scores (Parquet): every episode row, the aggregates (IQM and mean with stratified
  bootstrap CIs), per task, probability of improvement — `wmrl.evaluate.summary` — each
  summary row with its method's kind (ours, peer, online), so peers share every table and figure
  and stay labelled;
* the figures (SVG) and every table as CSV;
* ``report.html``: a Jinja2 template (``workflow/report/``) with the figures embedded as data
  URIs, so it opens offline and makes no network request.
"""

from __future__ import annotations

import base64
import logging
import math
from pathlib import Path
from typing import Any

import jinja2
import polars as pl

from wmrl.evaluate.statistics import MIN_RUNS
from wmrl.evaluate.summary import run_scores, summarize
from wmrl.files import publish
from wmrl.jobs import ReportSpec, check_spec
from wmrl.report import backbones, imagination, plots
from wmrl.report.checks import checks
from wmrl.report.tables import (busy_seconds, claims_table, control_result, cost_table, datasets_table, headline,
                                job_costs, lineage_table, size_comparisons, training_speed, with_kinds)

log = logging.getLogger("wmrl")
ONLINE_BINS = 20  # online training episodes are averaged in this many bins of environment steps


def fine_tuning_curves(curves: list[dict[str, Any]]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The validation curves of offline fine-tuning runs (long: method, model, seed, step, metric,
    value) and online runs' episode returns averaged in bins of environment steps."""
    offline, online = [], []
    for run in curves:
        frame = pl.read_parquet(run["file"])
        labels = {key: pl.lit(run[key]) for key in ("task", "transitions", "method", "model", "seed")}
        if run["online"]:
            if frame.is_empty():
                continue
            width = math.ceil(run["transitions"] / ONLINE_BINS)  # online: as many env steps as the data's transitions
            online.append(frame.with_columns(step=(pl.col("step") // width + 1) * width).group_by("step")
                          .agg(pl.col("episode_return").mean()).with_columns(**labels))
        else:
            offline.append(frame.unpivot(index="step", variable_name="metric").with_columns(**labels))
    offline_schema = {"step": pl.Int64, "metric": pl.String, "value": pl.Float64, "task": pl.String,
                      "transitions": pl.Int64, "method": pl.String, "model": pl.String, "seed": pl.Int64}
    return (pl.concat(offline, how="diagonal") if offline else pl.DataFrame(schema=offline_schema),
            pl.concat(online, how="diagonal") if online else pl.DataFrame(schema={"step": pl.Int64}))


def summaries(episodes: pl.DataFrame, methods: dict[str, dict[str, str]], interval: dict[str, Any]
              ) -> dict[str, pl.DataFrame]:
    """The aggregate, per-task and improvement tables of evaluation rows, each with its methods' kinds."""
    scores = {name: with_kinds(frame, methods) for name, frame in summarize(episodes, **interval).items()}
    scores["improvement"] = with_kinds(scores["improvement"], methods, column="than", kind="than_kind")
    return scores


def transfer_control(episodes: pl.DataFrame, spec: ReportSpec, interval: dict[str, Any], setting: dict[str, str]
                     ) -> tuple[dict[str, pl.DataFrame] | None, pl.DataFrame | None]:
    """The transfer control's summaries (of its own evaluation rows) and its comparison at every
    data size; (None, None) for an experiment without one."""
    control = spec["control"]
    if control is None:
        return None, None
    scores = summaries(episodes, spec["methods"], interval)
    return scores, size_comparisons(scores["aggregate"], scores["improvement"], control["method"], control["baseline"],
                                    setting, spec["data_sizes"])


def data_uri(path: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(Path(path).read_bytes()).decode()


def build_report(spec: ReportSpec, out: dict[str, str]) -> None:
    """Write the scores, figures, CSV tables and the HTML report of one experiment (see module doc);
    the page last, so a report that exists is whole."""
    check_spec(spec, ReportSpec)
    for path in out.values():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    inputs, interval = spec["inputs"], {"repetitions": spec["bootstrap_repetitions"],
                                        "confidence": spec["confidence"]}
    episodes = pl.concat([pl.read_parquet(f) for f in inputs["evaluations"]], how="vertical")
    methods, compared, control = spec["methods"], spec["compare"], spec["control"]
    in_control = (pl.col("task") == control["task"]) & (pl.col("transitions") > 0) if control else pl.lit(False)
    scores = summaries(episodes.filter(~in_control), methods, interval)
    runs = with_kinds(run_scores(episodes), methods)
    datasets = datasets_table(inputs["datasets"])
    lineage = lineage_table(inputs["lineage"], dict(zip(datasets["directory"], datasets["md5"], strict=True)))
    jobs = job_costs(spec["benchmarks"])
    curves, online = fine_tuning_curves(inputs["curves"])
    errors = pl.concat([pl.read_parquet(f) for f in inputs["world_model"]], how="vertical")
    with_lineage = episodes.join(lineage.drop("scale", "experiment"),
                                 on=["task", "transitions", "method", "model", "seed"],
                                 how="left")  # the episodes' CSV: every row with its run's lineage
    setting = {"checkpoint": compared["checkpoint"], "planning": compared["planning"]}
    sizes = size_comparisons(scores["aggregate"], scores["improvement"], compared["method"], compared["baseline"],
                             setting, spec["data_sizes"])
    control_scores, control_sizes = transfer_control(episodes.filter(in_control), spec, interval, setting)
    judged = control_result(control_sizes)
    at_size = {**setting, "transitions": compared["transitions"]}
    tables = {**scores, "episodes": with_lineage, "runs": runs, "datasets": datasets, "lineage": lineage,
              "jobs": jobs, "cost": cost_table(jobs), "training_speed": training_speed(lineage, methods),
              "world_model": errors, "sizes": sizes,
              "claims": claims_table(scores["aggregate"], scores["improvement"], spec["claims"], at_size, judged)}
    if control:
        tables |= {"control": control_sizes, "control_aggregate": control_scores["aggregate"]}

    shown = pl.col("transitions").is_in([0, compared["transitions"]])  # the headline's size, and not fine-tuned
    figures = {"data_curve": plots.data_curve_plot(scores["aggregate"], setting, tables.get("control_aggregate"),
                                                   control and control["task"]),
               "iqm": plots.iqm_plot(scores["aggregate"].filter(shown)),
               "per_seed": plots.per_seed_plot(runs.filter(shown & ~in_control)),
               "curves": plots.curves_plot(curves.filter(shown & ~in_control), online, **interval),
               "world_model": plots.world_model_plot(errors)}
    if "scaling" in out:
        parameters = dict(lineage.select("model", "parameters").drop_nulls().unique().rows())
        figures["scaling"] = plots.scaling_plot(scores["aggregate"].filter(shown), parameters)
    if "backbone_errors" in out:
        probe = pl.concat([pl.read_parquet(f) for f in inputs["memory_probe"]], how="vertical")
        section_tables, section_figures = backbones.section(errors, probe, pl.read_parquet(inputs["context_costs"][0]),
                                                            interval)
        tables |= section_tables
        figures |= section_figures
    if "imagination_error" in out:
        section_tables, section_figures = imagination.section(inputs["imagination"], inputs["curves"], episodes,
                                                              lineage, spec["target"])
        tables |= section_tables
        figures |= section_figures
    for name, figure in figures.items():
        plots.save(figure, out[name])

    for name in ("aggregate", "per_task", "improvement"):
        scores[name].write_parquet(out[f"{name}_parquet"])
    episodes.write_parquet(out["episodes"])
    for name, table in tables.items():
        if f"{name}_csv" in out:
            table.write_csv(out[f"{name}_csv"])

    context = {
        "spec": spec, "headline": headline(scores["aggregate"], scores["improvement"], compared, sizes, judged),
        "tables": {name: table.to_dicts() for name, table in tables.items() if name not in ("episodes", "jobs")},
        "figures": {name: data_uri(out[name]) for name in figures},
        "checks": checks(spec, tables, curves),
        "busy_hours": busy_seconds(jobs) / 3600,
        "min_runs": MIN_RUNS, "few_runs": bool((scores["aggregate"]["runs"] < MIN_RUNS).any()),
        "csv": {name: str(Path(path).relative_to(Path(out["html"]).parent)) for name, path in out.items()
                if name.endswith("_csv")},
    }
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(inputs["template"]).parent),
                                     autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                                     lstrip_blocks=True)
    environment.filters["num"] = number
    html = environment.get_template(Path(inputs["template"]).name).render(**context)
    publish(out["html"], lambda partial: Path(partial).write_text(html))
    with pl.Config(tbl_rows=100, tbl_cols=20, tbl_width_chars=200, float_precision=3):
        log.info("aggregate normalized scores:\n%s", scores["aggregate"])
    log.info("report: %s (%d episodes, %d runs)", out["html"], len(episodes), len(runs))


def number(value: Any, digits: int = 2) -> str:
    """A table cell: floats to `digits` decimals, None/NaN as an em dash, the rest as is."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)

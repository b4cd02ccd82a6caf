"""Stage 5: the report's tables and checks on small frames, and the smoke run's HTML report as a
browser renders it (headless Chromium: loads offline, no failed request, the key tables present)."""

import json
import math
import shutil
import subprocess

import polars as pl
import pytest
from browser import Browser

from conftest import ROOT
from wmrl.config import compose
from wmrl.dag.targets import report_files
from wmrl.report.checks import _few_runs as few_runs
from wmrl.report.checks import checks
from wmrl.report.tables import (busy_seconds, claims_table, control_result, dataset_md5, headline, job_costs,
                                read_control, size_comparisons, training_speed, with_kinds)


def test_dataset_md5_is_md5sum_of_the_card_which_pins_every_shard(random_dataset):
    expected = subprocess.run(["md5sum", str(random_dataset / "card.json")], capture_output=True, text=True,
                              check=True).stdout.split()[0]
    assert dataset_md5(random_dataset) == expected
    card = json.loads((random_dataset / "card.json").read_text())
    assert all(len(shard["sha256"]) == 64 for shard in card["shards"]) and len(card["shards"]) >= 3


def test_job_costs_keep_unmeasured_jobs_and_wall_time_is_the_union_of_job_intervals(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    measured = {"a": (10.0, 100.0), "b": (5.0, 103.0), "c": (4.0, 200.0)}  # (wall s, end time)
    for name, (wall, end) in measured.items():
        path = tmp_path / f"bench/rule/{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(header + f"{wall}\t-\t512.5\t1\t1\t1\t0\t0\t50\t{wall / 2}\n")
        path.touch()
        import os

        os.utime(path, (end, end))
    jobs = job_costs({"rule": [str(tmp_path / f"bench/rule/{n}.tsv") for n in [*measured, "pulled"]]})
    assert jobs["wall_s"].null_count() == 1 and jobs["max_rss_mb"].max() == 512.5
    assert busy_seconds(jobs) == pytest.approx((103 - 90) + 4)  # [90, 100] and [98, 103] overlap; [196, 200]


def arm(method, iqm, low, high, checkpoint="last", planning="none", tasks=1, kind="ours", seeds=3, transitions=250):
    return {"method": method, "kind": kind, "model": "m", "transitions": transitions, "checkpoint": checkpoint,
            "planning": planning,
            "tasks": tasks, "seeds": seeds, "runs": seeds * tasks, "iqm": iqm, "iqm_low": low, "iqm_high": high,
            "mean": iqm, "mean_low": low, "mean_high": high}


@pytest.mark.parametrize("probability, pretrained, verdict", [
    ((0.6, 0.9), (-0.1, -0.2, -0.05), "no useful transfer"),  # better than scratch, worse than random
    ((0.6, 0.9), (0.3, 0.2, 0.4), "yes"),
    ((0.1, 0.4), (-0.1, -0.2, -0.05), "no"),
    ((0.3, 0.8), (-0.1, -0.2, -0.05), "no measurable difference")])
def test_headline_verdict_follows_the_intervals(probability, pretrained, verdict):
    low, high = probability
    aggregate = pl.DataFrame([arm("pretrained", *pretrained), arm("scratch", -0.15, -0.2, -0.1),
                              arm("bc", 0.5, 0.4, 0.6), arm("multigame", 2.0, 1.5, 2.5, tasks=4, transitions=0)])
    improvement = pl.DataFrame([improvement_row("pretrained", "scratch", low, high)])
    chosen = {"method": "pretrained", "baseline": "scratch", "transitions": 250, "checkpoint": "last",
              "planning": "none"}
    sizes = size_comparisons(aggregate, improvement, "pretrained", "scratch", SETTING, [250])
    found = headline(aggregate, improvement, chosen, sizes, None)
    assert found["verdict"] == verdict == found["measured"] == sizes["verdict"][0]
    assert found["best"]["method"] == "bc"  # the pretrained model on its source games is not a fine-tuned method
    assert found["below_random"] == (["pretrained", "scratch"] if pretrained[2] < 0 else ["scratch"])
    missing = headline(aggregate, improvement, {**chosen, "checkpoint": "best"}, sizes, None)
    assert missing["verdict"] is None and missing["missing"] == ["pretrained", "scratch"]
    assert headline(aggregate, improvement, {**chosen, "transitions": 5000}, sizes, None)["verdict"] is None


SETTING = {"checkpoint": "last", "planning": "none"}


def improvement_row(method, than, low, high, difference=(0.1, -0.1, 0.3), transitions=250, runs=3):
    return {"method": method, "model": "m", "than": than, "than_model": "m", "transitions": transitions,
            "checkpoint": "last", "planning": "none", "runs": runs, "probability": (low + high) / 2,
            "probability_low": low, "probability_high": high,
            **dict(zip(("difference", "difference_low", "difference_high"), difference, strict=True))}


@pytest.mark.parametrize("control_difference, status, verdict", [
    ((0.5, 0.2, 0.8), "passed", "no measurable difference"),  # the bench can see transfer: the null stands
    ((0.1, -0.1, 0.3), "failed", "inconclusive"),  # it cannot: a null says nothing
])
def test_a_null_verdict_stands_only_when_the_transfer_control_passes(control_difference, status, verdict):
    aggregate = pl.DataFrame([arm(method, 0.4, 0.2, 0.6, transitions=size) for method in ("pretrained", "scratch")
                              for size in (250, 1000)])
    improvement = pl.DataFrame([improvement_row("pretrained", "scratch", 0.3, 0.7, transitions=size)
                                for size in (250, 1000)])
    control_aggregate = pl.DataFrame([arm("pretrained", 0.8, 0.6, 0.9), arm("scratch", 0.3, 0.1, 0.5)])
    control_improvement = pl.DataFrame([improvement_row("pretrained", "scratch", 0.6, 0.9, control_difference)])
    control_sizes = size_comparisons(control_aggregate, control_improvement, "pretrained", "scratch", SETTING,
                                     [250, 1000])
    assert control_sizes["verdict"].to_list() == ["yes", "not evaluated"]  # the control ran at 250 only, here
    control = control_result(control_sizes)
    assert control["status"] == status and control["smallest"]["difference"] == control_difference[0]
    chosen = {"method": "pretrained", "baseline": "scratch", "transitions": 250, **SETTING}
    sizes = size_comparisons(aggregate, improvement, "pretrained", "scratch", SETTING, [250, 1000])
    found = headline(aggregate, improvement, chosen, sizes, control)
    assert (found["verdict"], found["measured"], found["any_size"]) == (verdict, "no measurable difference", False)
    claims = claims_table(aggregate, improvement, [{"claim": "c", "method": "pretrained", "baseline": "scratch"}],
                          {**SETTING, "transitions": 250}, control)
    assert claims.row(0, named=True)["verdict"] == verdict and claims["measured"][0] == "no measurable difference"
    assert read_control("yes", control) == "yes"  # a found effect needs no control to be seen
    assert read_control("too few runs to decide", control) == "too few runs to decide"
    assert read_control("no", None) == "no"  # no control: the verdict stands, the report notes it has none
    unevaluated = size_comparisons(control_aggregate, control_improvement, "pretrained", "scratch",
                                   {"checkpoint": "best", "planning": "none"}, [250])
    assert control_result(unevaluated)["status"] == "not evaluated"


def test_fewer_than_three_runs_decide_nothing_whatever_their_intervals_show():
    """Two seeds on one task: P = 1.00 [1.00, 1.00] is what a bootstrap of two runs gives."""
    aggregate = pl.DataFrame([arm("pretrained", 0.9, 0.9, 0.9, seeds=2), arm("scratch", 0.1, 0.1, 0.1, seeds=2)])
    improvement = pl.DataFrame([improvement_row("pretrained", "scratch", 1.0, 1.0, runs=2)])
    chosen = {"method": "pretrained", "baseline": "scratch", "transitions": 250, **SETTING}
    sizes = size_comparisons(aggregate, improvement, "pretrained", "scratch", SETTING, [250])
    assert headline(aggregate, improvement, chosen, sizes, None)["verdict"] == "too few runs to decide"
    three = aggregate.with_columns(seeds=pl.lit(3), runs=pl.lit(3))
    assert headline(three, improvement, chosen, sizes, None)["verdict"] == "yes"
    (note,) = few_runs(aggregate)
    assert note["status"] == "note" and "pretrained (2), scratch (2)" in note["detail"]
    assert few_runs(three) == []


def test_checks_show_failures_first_and_hide_nothing():
    spec = {"not_run": ["method x (defined, not run)"], "episode_caps": {"t": 10}, "scale": "laptop",
            "compare": {"method": "a", "baseline": "b", "transitions": 250, "checkpoint": "last", "planning": "none"},
            "variants": ["v"], "data_sizes": [250, 1000], "control": {"task": "c", "method": "a", "baseline": "b"}}
    tables = {
        "runs": pl.DataFrame({"method": ["a"], "task": ["t"], "seed": [0], "episodes": [2]}),
        "episodes": pl.DataFrame({"task": ["t", "t"], "method": ["a", "a"], "return": [1.0, math.nan],
                                  "length": [10, 3]}),
        "aggregate": pl.DataFrame([arm("a", -0.5, -0.6, -0.4), arm("a", -0.9, -1.0, -0.8, planning="beam w2 h2"),
                                   arm("v", 0.1, 0.0, 0.2)]),
        "lineage": pl.DataFrame({"eval_git_sha": ["abc-dirty"], "train_git_sha": ["abc"]}),
        "jobs": pl.DataFrame({"job": ["j1", "j2"], "wall_s": [1.0, None], "max_rss_mb": [3000.0, None]}),
        "world_model": pl.DataFrame({"task": ["t"] * 4, "horizon": [1, 1, 2, 2],
                                     "predictor": ["model", "nothing changes"] * 2, "error": [0.05, 0.1, 0.2, 0.1]}),
        "training_speed": pl.DataFrame({"method": ["a", "p", "o"], "kind": ["ours", "peer", "online"],
                                        "timed": [1, 2, 1], "grad_steps": [20.0, 40.0, 7.0]}),
        "control": pl.DataFrame([{"transitions": 250, "verdict": "no measurable difference", "difference": 0.1,
                                  "difference_low": -0.2, "difference_high": 0.4}]),
    }
    curves = pl.DataFrame({"method": ["a"], "model": ["m"], "seed": [0], "metric": ["val/loss"], "value": [math.inf]})
    found = checks(spec, tables, curves)
    failed = {item["what"] for item in found if item["status"] == "failed"}
    assert failed == {"non-finite returns", "non-finite validation loss", "uncommitted code", "memory goal",
                      "unequal training budgets", "transfer control"}
    assert [item["status"] for item in found][:len(failed)] == ["failed"] * len(failed)
    notes = {item["what"] for item in found if item["status"] == "note"}
    assert notes >= {"not run", "episodes cut at the step cap", "below random", "several commits",
                     "jobs not measured", "world model vs. nothing changes", "planning lowers the score",
                     "variant tried"}
    detail = {item["what"]: item["detail"] for item in found}
    assert detail["world model vs. nothing changes"].startswith("t: not below the 'nothing changes' predictor at "
                                                                "horizons [2]")
    assert detail["variant tried"].startswith("v 0.10 [0.00, 0.20], against a -0.50 [-0.60, -0.40] (IQM normalized, "
                                              "250 transitions")
    assert detail["transfer control"] == ("a vs b on held-back c episodes, 250 transitions: IQM difference +0.10 "
                                          "[-0.20, +0.40], CI not above 0; the fine-tuning recipe or the budget hides "
                                          "transfer, so every null verdict here is inconclusive")
    no_control = {item["what"]: item for item in checks({**spec, "control": None}, tables, curves)}
    assert no_control["no transfer control"]["status"] == "note"


def test_training_speed_comes_from_the_records_and_stays_empty_where_they_are_silent():
    methods = {"a": {"kind": "ours", "label": "a", "recipe": "scratch · dt · linear head · LoRA r4 on qkv"},
               "p": {"kind": "peer", "label": "p (peer: d3rlpy)", "recipe": "d3rlpy discrete_cql"},
               "o": {"kind": "online", "label": "o", "recipe": "online DQN"},
               "multigame": {"kind": "ours", "label": "multigame", "recipe": "pretrained, not fine-tuned"}}
    lineage = pl.DataFrame({"method": ["a", "a", "p", "p", "o", "multigame"],
                            "model": ["m", "m", "d3rlpy", "d3rlpy", "sb3", "m"],
                            "parameters": [900, 900, 50, 50, 10, 900], "trained_parameters": [70, 70, 50, 50, 10, 900],
                            "from_pretraining": ["backbone encoder", "backbone encoder", "", "", "", ""],
                            "training_steps": [None, None, 100, 100, 30, None],
                            "training_seconds": [None, None, 2.0, 3.0, 4.0, None],
                            "training_env_steps": [None, None, None, None, 400, None]},
                           schema_overrides={"training_steps": pl.Int64, "training_seconds": pl.Float64,
                                             "training_env_steps": pl.Int64})
    speed = training_speed(lineage, methods)
    assert speed.columns[:4] == ["method", "kind", "model", "recipe"]
    assert speed.rows() == [
        ("a", "ours", "m", "scratch · dt · linear head · LoRA r4 on qkv", 900, 70, "backbone encoder", 2, 0, None, None,
         None, None),
        ("p", "peer", "d3rlpy", "d3rlpy discrete_cql", 50, 50, "", 2, 2, 100.0, 2.5, 40.0, None),
        ("o", "online", "sb3", "online DQN", 10, 10, "", 1, 1, 30.0, 4.0, 7.5, 100.0)]  # online: env steps/s too
    with pytest.raises(pl.exceptions.InvalidOperationError):
        with_kinds(pl.DataFrame({"method": ["unknown"]}), methods)  # every evaluated method has a kind


def test_claims_are_judged_like_the_headline_and_unevaluated_ones_say_so():
    aggregate = pl.DataFrame([arm("x", 0.8, 0.7, 0.9), arm("y", 0.3, 0.2, 0.4)])
    improvement = pl.DataFrame([improvement_row("x", "y", 0.8, 1.0), improvement_row("y", "x", 0.0, 0.2)])
    claims = [{"claim": "x beats y", "method": "x", "baseline": "y"},
              {"claim": "y beats x", "method": "y", "baseline": "x"},
              {"claim": "z beats x", "method": "z", "baseline": "x"}]
    table = claims_table(aggregate, improvement, claims, {**SETTING, "transitions": 250}, None)
    assert table["verdict"].to_list() == ["yes", "no", "not evaluated"]
    assert table["transitions"].to_list() == [250, 250, 250]
    at_largest = claims_table(aggregate.with_columns(transitions=pl.lit(5000)),
                              pl.DataFrame([improvement_row("x", "y", 0.8, 1.0, transitions=5000)]), claims[:1],
                              {**SETTING, "transitions": 250}, None)  # x and y ran at 5,000 only: judged there
    assert at_largest.row(0, named=True)["transitions"] == 5000 and at_largest["verdict"][0] == "yes"
    assert table.row(0, named=True)["method_iqm_low"] == 0.7 and table.row(0, named=True)["probability"] == 0.9
    assert table.row(2, named=True)["probability"] is None


@pytest.mark.e2e
@pytest.mark.browser
def test_the_smoke_report_renders_offline_in_a_browser(smoke_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium), so the report is not rendered")
    cfg = compose({"scale": "smoke"}, ROOT)
    page = smoke_run / report_files(cfg)["html"]
    browser = Browser(chromium, height=1600)
    try:
        browser.load(page.as_uri())
        assert browser.failures() == []
        requests = browser.requests()
        assert requests[0] == page.as_uri() and all(url.startswith("data:image/svg+xml") for url in requests[1:])
        assert len(requests) - 1 == sum(1 for name in report_files(cfg) if name in ("data_curve", "iqm", "per_seed",
                                                                                    "curves", "world_model", "scaling"))
        found = browser.evaluate("""JSON.stringify({
            tables: [...document.querySelectorAll('table[id]')].map(t => [t.id, t.tBodies[0].rows.length]),
            images: [...document.images].map(i => i.complete && i.naturalWidth > 0),
            headline: document.getElementById('headline').innerText})""")
        browser.screenshot(tmp_path / "report.png")
    finally:
        browser.close()
    shown = json.loads(found)
    rows = dict(shown["tables"])
    for table in ("aggregate", "improvement", "per_task", "datasets", "cost", "lineage", "training_speed", "checks"):
        assert rows.get(table, 0) > 0, (table, rows)
    assert all(shown["images"]) and len(shown["images"]) >= 4
    assert "pretrained" in shown["headline"] and "scratch" in shown["headline"]
    assert (tmp_path / "report.png").stat().st_size > 50_000  # the screenshot (pytest keeps the last runs' tmp dirs)


def test_figures_are_the_same_bytes_for_the_same_tables_and_scaling_reads_parameter_counts(tmp_path):
    from wmrl.report import plots

    aggregate = pl.DataFrame([{**arm(method, iqm, iqm - 0.1, iqm + 0.1), "model": f"{size}-transformer"}
                              for method, base in (("pretrained", 0.3), ("scratch", 0.1))
                              for size, iqm in (("small", base), ("large", base + 0.2))])
    parameters = {"small-transformer": 1_000_000, "large-transformer": 9_000_000}
    svgs = []
    for run in ("a", "b"):
        control = aggregate.filter(method="pretrained")
        for name, figure in {"iqm": plots.iqm_plot(aggregate), "scaling": plots.scaling_plot(aggregate, parameters),
                             "data_curve": plots.data_curve_plot(aggregate, SETTING, control, "c")
                             }.items():
            plots.save(figure, tmp_path / f"{run}-{name}.svg")
        svgs.append([(tmp_path / f"{run}-{name}.svg").read_bytes() for name in ("iqm", "scaling", "data_curve")])
    assert svgs[0] == svgs[1]
    curve = svgs[0][2].decode()
    assert "fine-tuning data (transitions, log scale)" in curve and "control: c (held-back episodes)" in curve
    scaling = svgs[0][1].decode()
    assert "model parameters" in scaling and "pretrained [transformer]" in scaling
    assert "10^{6}" in scaling and "10^{7}" in scaling  # the parameter axis is log-scaled (tick labels)


def test_each_online_method_gets_its_own_colour_in_the_training_curves():
    from wmrl.report import plots

    online = pl.DataFrame([{"method": method, "seed": seed, "step": step, "episode_return": float(step + seed)}
                           for method in ("imagine_scratch", "dqn_online", "ppo_online")
                           for seed in range(3) for step in (100, 200, 300)])
    figure = plots.curves_plot(pl.DataFrame(schema={"method": pl.String, "metric": pl.String}), online, 50, 0.95)
    lines = {line.get_label(): line.get_color() for line in figure.axes[0].get_lines()}
    plots.save(figure, "/dev/null")
    assert set(lines) == {"imagine_scratch", "dqn_online", "ppo_online"} and len(set(lines.values())) == 3

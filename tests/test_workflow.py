"""The whole `smoke` pipeline end to end, and Snakemake's linter on the workflow."""

import json
import re
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
import torch

from conftest import PYTHON, ROOT, snakemake_command, snakemake_env, snakemake_report, stop, wait_until
from wmrl.config import compose
from wmrl.dag import icrl
from wmrl.dag.experiment import dataset_dirs
from wmrl.dag.paths import MULTIGAME
from wmrl.dag.targets import finetune_runs, pretrain_models, report_files, size_seeds, world_model_errors
from wmrl.data import open_dataset


@pytest.mark.e2e
def test_smoke_pipeline_end_to_end(smoke_run):
    tmp_path = smoke_run
    cfg = compose({"scale": "smoke"}, ROOT)
    for directory in dataset_dirs(cfg):
        card = open_dataset(tmp_path / directory).card
        assert card["transitions"] == cfg.dataset[card["policy"]["name"]].steps
        if card["policy"]["name"] == "dqn":
            assert card["policy"]["reference_score"]["episodes"] == cfg.dataset.dqn.eval_episodes
        benchmark = tmp_path / directory.replace("data/", "benchmarks/generate_dataset/", 1)
        assert benchmark.with_suffix(".tsv").is_file()
        log = (tmp_path / directory.replace("data/", "logs/generate_dataset/", 1)).with_suffix(".log").read_text()
        assert "steps/s, ETA" in log  # long work reports its progress
    assert json.loads((tmp_path / dataset_dirs(cfg)[0] / "card.json").read_text())["suite"] == "minatar"

    (model,) = pretrain_models(cfg)
    checkpoint = torch.load(tmp_path / model, weights_only=True)
    assert checkpoint["tasks"] == list(cfg.tasks)  # the task embedding covers the suite
    heldout = pl.read_parquet((tmp_path / model).with_name("heldout.parquet"))
    world_model = heldout.filter(pl.col("head").is_in(["next_obs", "reward"]))
    assert len(world_model) == 2 * len(cfg.source_tasks)
    # held-out next-observation and reward losses fall well below those of the untrained model
    assert (world_model["trained"] < 0.8 * world_model["untrained"]).all(), world_model

    # stage 4: a row for every (method, task, data size, seed, checkpoint, planning) that applies
    episodes = pl.read_parquet(tmp_path / report_files(cfg)["episodes"])
    runs = episodes.group_by("method", "task", "transitions", "seed", "checkpoint", "planning").len()
    assert (runs["len"] == cfg.evaluate.episodes).all()
    trained = Counter((run["task"], run["method"]) for run in finetune_runs(cfg))  # (task, method): sizes x seeds
    for method, settings in {"pretrained": 4, "scratch": 4, "bc": 2, "dqn_online": 1, "d3rlpy_cql": 1,
                             "d3rlpy_bc": 1}.items():
        for task in ("breakout", "space_invaders"):  # the held-out task and the control's
            found = runs.filter(pl.col("method") == method, pl.col("task") == task, pl.col("transitions") > 0)
            assert len(found) == settings * trained[task, method], (task, method)
    control_runs = sum(len(size_seeds(cfg, size)) for size in cfg.finetune.data.sizes)  # every size, its seeds
    assert trained["space_invaders", "pretrained"] == trained["space_invaders", "scratch"] == control_runs
    assert set(runs.filter(pl.col("method") == MULTIGAME)["task"]) == set(cfg.source_tasks)
    aggregate = pl.read_parquet(tmp_path / report_files(cfg)["aggregate_parquet"])
    assert set(aggregate.filter(kind="peer")["method"]) == {"d3rlpy_cql", "d3rlpy_bc"}  # peers share the tables
    # every offline method's record says what training took; the peers trained our number of steps
    speed = pl.read_csv(tmp_path / report_files(cfg)["training_speed_csv"])
    peers = speed.filter(kind="peer")
    assert len(peers) == 2 and (peers["grad_steps"] == cfg.finetune.steps).all() and (peers["grad_steps_per_s"] > 0).all()
    (error_file,) = world_model_errors(cfg)
    assert set(pl.read_parquet(tmp_path / error_file)["predictor"]) == {"model", "nothing changes"}

    report = report_files(cfg)
    assert all((tmp_path / path).stat().st_size > 0 for path in report.values())


def planned_jobs(workdir, settings: str) -> set[str]:
    """The rules `snakemake -n` would run in `workdir` with `settings` (YAML) as an extra configfile."""
    (workdir / "change.yaml").write_text(settings)
    plan = subprocess.run(snakemake_command("-n", "--config", "scale=smoke", "--configfile", "change.yaml"),
                          cwd=workdir, capture_output=True, text=True, env=snakemake_env(), timeout=120).stdout
    stats = plan.split("Job stats:")[1].split("\n\n")[0]
    return {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", stats, re.MULTILINE)} - {"all", "total"}


@pytest.mark.e2e
def test_changing_an_evaluation_setting_reruns_evaluation_and_the_report_only(smoke_run):
    assert planned_jobs(smoke_run, "evaluate:\n  episodes: 4\n") == {"evaluate", "report"}


@pytest.mark.e2e
def test_changing_a_report_setting_reruns_only_the_report(smoke_run):
    assert planned_jobs(smoke_run, "report:\n  bootstrap_repetitions: 300\n") == {"report"}
    assert planned_jobs(smoke_run, "report:\n  compare: {baseline: bc}\n") == {"report"}


@pytest.mark.e2e
def test_snakemake_report_captions_every_report_output(smoke_run, tmp_path):
    result = subprocess.run(snakemake_command("--config", "scale=smoke", "--report", str(tmp_path / "report.zip")),
                            cwd=smoke_run, capture_output=True, text=True, env=snakemake_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = {Path(name).name for name in archive.namelist()}
        page = archive.read("report/report.html").decode()
    cfg = compose({"scale": "smoke"}, ROOT)
    shown = {Path(path).name for path in report_files(cfg).values() if not path.endswith(".parquet")}
    assert shown <= names, shown - names
    assert "Interquartile mean (IQM) of normalized scores" in page  # a caption made it in


EXPERIMENTS = sorted(path.stem for path in (ROOT / "config" / "experiments").glob("*.yaml"))
STAND_INS = {".svg": '<svg xmlns="http://www.w3.org/2000/svg"/>', ".csv": "column\n1\n",
             ".html": "<html><body>report</body></html>"}


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_snakemake_report_holds_every_report_output_of_every_experiment_with_its_caption(experiment, tmp_path):
    """`snakemake --report` for each experiment at smoke, over stand-ins of its report job's outputs
    (the files' content is each experiment's own tests' business; this is the report's assembly:
    every output marked for it, every caption there). The default and the ICRL experiments also
    build it from real runs (test_snakemake_report_captions_every_report_output, test_icrl_pipeline)."""
    cfg = compose({"scale": "smoke", "experiment": experiment}, ROOT)
    files = icrl.report_files(cfg) if cfg.icrl is not None else report_files(cfg)
    shown = {path for path in files.values() if Path(path).suffix in STAND_INS}
    for path in shown:
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(STAND_INS[Path(path).suffix])
    names, _ = snakemake_report(tmp_path, "scale=smoke", f"experiment={experiment}")
    assert {Path(path).name for path in shown} <= names


def test_snakemake_lint_is_clean():
    result = subprocess.run([PYTHON, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True,
                            env=snakemake_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.e2e
def test_a_second_snakemake_in_a_running_directory_gets_the_lock_message_and_the_first_finishes(tmp_path):
    """Two `snakemake` runs in one directory: the second stops at Snakemake's lock, starting no job
    of its own, and the first finishes as if alone."""
    target = "results/smoke/minatar_transfer/pretrain/small-transformer-seed0/model.pt"
    command = snakemake_command(target, "--cores", "1", "--config", "scale=smoke")
    locks = tmp_path / ".snakemake" / "locks"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=snakemake_env(),
                                 start_new_session=True)
    try:
        wait_until(lambda: locks.is_dir() and any(locks.iterdir()), "the first run's lock", 120, first)
        second = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=snakemake_env(),
                                timeout=120)
        assert second.returncode != 0 and "Directory cannot be locked" in second.stderr, second.stderr[-2000:]
        assert "localrule" not in second.stderr and "rule " not in second.stderr  # it started no job
        assert first.wait(timeout=1800) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        stop(first)  # and its jobs, if the test failed while it ran
    assert (tmp_path / target).is_file() and not (locks.is_dir() and any(locks.iterdir()))  # the lock released

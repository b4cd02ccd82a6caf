"""The whole `smoke` pipeline end to end, and Snakemake's linter on the workflow."""

import json
import re
import subprocess

import polars as pl
import torch

from wmrl.config import compose
from wmrl.data import open_dataset
from wmrl.pipeline import MULTIGAME, dataset_dirs, pretrain_models, scores_files, world_model_errors

from conftest import PYTHON, ROOT, snakemake_env


def test_smoke_pipeline_end_to_end(tmp_path):
    command = [PYTHON, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2",
               "--config", "scale=smoke"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=snakemake_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
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

    # stage 4: a row for every (method, task, seed, checkpoint, planning) that applies
    episodes = pl.read_parquet(tmp_path / scores_files(cfg)["episodes"])
    runs = episodes.group_by("method", "task", "seed", "checkpoint", "planning").len()
    assert (runs["len"] == cfg.evaluate.episodes).all()
    fine_tuned = runs.filter(pl.col("task") == "breakout")
    for method, settings in {"pretrained": 4, "scratch": 4, "bc": 2, "dqn_online": 1}.items():
        assert len(fine_tuned.filter(pl.col("method") == method)) == settings * len(cfg.finetune.seeds), method
    assert set(runs.filter(pl.col("method") == MULTIGAME)["task"]) == set(cfg.source_tasks)
    assert not pl.read_parquet(tmp_path / scores_files(cfg)["aggregate"]).is_empty()
    (error_file,) = world_model_errors(cfg)
    assert set(pl.read_parquet(tmp_path / error_file)["predictor"]) == {"model", "nothing changes"}

    # changing an evaluation setting reruns evaluation and the scores, nothing upstream
    (tmp_path / "eval.yaml").write_text("evaluate:\n  episodes: 4\n")
    plan = subprocess.run(command[:-2] + ["-n", "--config", "scale=smoke", "--configfile", "eval.yaml"], cwd=tmp_path,
                          capture_output=True, text=True, env=snakemake_env(), timeout=120).stdout
    stats = plan.split("Job stats:")[1].split("\n\n")[0]
    jobs = {m.group(1) for m in re.finditer(r"^(\w+)\s+\d+$", stats, re.MULTILINE)}
    assert jobs == {"evaluate", "scores", "all", "total"}, plan


def test_snakemake_lint_is_clean():
    result = subprocess.run([PYTHON, "-m", "snakemake", "--lint"], cwd=ROOT, capture_output=True, text=True,
                            env=snakemake_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr

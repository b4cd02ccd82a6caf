"""The Snakemake pipeline as a user drives it: DAG, bad config, caching, selective reruns."""

import re
import subprocess

import polars as pl
import pytest

from conftest import PYTHON, ROOT, snakemake_env

TINY = """
experiment: cartpole
dataset:
  policies: [random]
  shard_rows: 200
  random: {steps: 300}
pretrain:
  policies: [random]
finetune:
  data: {policy: random, sizes: [200]}
"""


def snakemake(workdir, *args, check=True):
    command = [PYTHON, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--cores", "2", *args]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=snakemake_env(), timeout=900)
    if check and result.returncode != 0:
        pytest.fail(f"snakemake {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture
def workdir(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TINY)
    return tmp_path


def job_stats(plan: str) -> dict[str, int]:
    """The jobs per rule in the first "Job stats" table of Snakemake's output (`total` included)."""
    assert "Job stats:" in plan, plan[-3000:]
    table = plan.split("Job stats:")[1].split("\n\n")[0]
    return {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def test_dry_run_shows_the_default_dag(tmp_path):
    out = snakemake(tmp_path, "-n").stdout
    # laptop's default experiment: five MinAtar games, random and DQN data, one seed
    stats = job_stats(out)
    assert stats["generate_dataset"] == 10
    # the curve (5 methods x 3 sizes, 6 + 3 + 3 seeds), online DQN at the largest (3 seeds) and the
    # control (2 methods x 12 seeds)
    assert stats["finetune"] + stats["train_peer"] + stats["train_online"] == 5 * 12 + 1 * 3 + 2 * 12
    assert "data/laptop/minatar/breakout/dqn/seed0" in out


@pytest.mark.parametrize("text, message", [
    ("dataset:\n  random:\n    stepz: 5\n",
     "unknown key 'dataset.random.stepz'; allowed keys under 'dataset.random': steps"),
    ("dataset:\n  seeds: zero\n", "'dataset.seeds'"),
    ("finetune:\n  control: {task: breakout}\n",
     "'finetune.control.task' is 'breakout', which is not a source task"),
])
def test_config_typo_fails_before_any_job(workdir, text, message):
    (workdir / "bad.yaml").write_text(text)
    result = snakemake(workdir, "--configfile", "bad.yaml", check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert not (workdir / "data").exists()


@pytest.mark.e2e
def test_runs_caches_and_reruns_only_the_changed_dataset(workdir):
    snakemake(workdir, "datasets", "--configfile", "tiny.yaml")
    cartpole = workdir / "data/laptop/classic/cartpole/random/seed0"
    acrobot = workdir / "data/laptop/classic/acrobot/random/seed0"
    assert (cartpole / "card.json").is_file() and (acrobot / "card.json").is_file()
    assert (workdir / "logs/generate_dataset/laptop/classic/cartpole/random/seed0.log").is_file()
    assert (workdir / "benchmarks/generate_dataset/laptop/classic/cartpole/random/seed0.tsv").is_file()

    # how fast a no-op run is belongs to `wmrl bench dag`, not to a timed test
    again = snakemake(workdir, "datasets", "--configfile", "tiny.yaml")
    assert "Nothing to be done" in again.stdout + again.stderr

    (workdir / "changed.yaml").write_text(TINY + "tasks:\n  cartpole:\n    dataset:\n      random: {steps: 400}\n")
    plan = snakemake(workdir, "datasets", "--configfile", "changed.yaml", "-n").stdout
    assert "wildcards: scale=laptop, suite=classic, task=cartpole, policy=random, seed=0" in plan
    assert "task=acrobot" not in plan
    reason = next(line for line in plan.splitlines() if "reason: Params have changed" in line)
    assert "'settings': {'steps': 300}" in reason and "'settings': {'steps': 400}" in reason
    # Snakemake 9's --list-changes params also lists outputs whose params did not change
    # (ParamsChange iterates its files even when it holds no change), so only check inclusion.
    changes = snakemake(workdir, "datasets", "--configfile", "changed.yaml", "-n", "--list-changes",
                        "params").stdout
    assert "data/laptop/classic/cartpole/random/seed0" in changes


@pytest.mark.e2e
def test_a_gymnasium_heldout_task_runs_every_stage(workdir):
    """cartpole (2 actions) held out from acrobot (3 actions): vector observations, uneven action
    sets and a Gymnasium id go through pretraining, fine-tuning, evaluation and the scores."""
    # acrobot's episodes last 500 steps: cut them so 300 random steps hold several
    (workdir / "short.yaml").write_text("tasks:\n  acrobot: {max_episode_steps: 100}\n")
    snakemake(workdir, "--config", "scale=smoke", "--configfile", "tiny.yaml", "short.yaml")
    scores = workdir / "results/smoke/cartpole/report/scores"
    episodes = pl.read_parquet(scores / "episodes.parquet")
    assert set(episodes.filter(pl.col("task") == "cartpole")["method"]) == {"pretrained", "scratch", "bc",
                                                                             "dqn_online", "d3rlpy_cql", "d3rlpy_bc"}
    assert set(episodes.filter(pl.col("method") == "multigame")["task"]) == {"acrobot"}
    assert (episodes["length"] > 0).all() and not pl.read_parquet(scores / "aggregate.parquet").is_empty()


def test_single_game_models_are_a_config_switch(tmp_path):
    from wmrl.config import compose
    from wmrl.dag.specs import pretrain_spec
    from wmrl.dag.targets import evaluate_runs

    cfg = compose({"scale": "smoke", "pretrain": {"single_game": True}}, ROOT)
    spec = pretrain_spec(cfg, "small", "transformer", 0, game="freeway")
    assert spec["tasks"] == ["freeway"] and list(spec["datasets"]) == ["freeway"]
    assert spec["pretrain"]["steps"] == cfg.pretrain.steps // len(cfg.source_tasks)
    assert "/pretrain/single/freeway/" in spec["work_dir"]
    single = [run for run in evaluate_runs(cfg) if "/singlegame/" in run]
    assert len(single) == len(cfg.source_tasks)
    (tmp_path / "single.yaml").write_text("pretrain: {single_game: true}\n")
    plan = snakemake(tmp_path, "-n", "--config", "scale=smoke", "--configfile", "single.yaml").stdout
    assert "pretrain_single" in plan and "results/smoke/minatar_transfer/pretrain/single/seaquest/" in plan

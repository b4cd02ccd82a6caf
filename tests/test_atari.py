"""The `paper` scale: its whole DAG (JOWA on Atari) lists without running, and a paper-shaped run
— the same rules, Atari frames, single-game models, planning — with tiny numbers on two Atari
games runs end to end on the CPU."""

import re
import subprocess

import polars as pl
import pytest

from conftest import ROOT, snakemake_command, snakemake_env
from wmrl.config import compose
from wmrl.dag.targets import report_files, world_model_errors

# Two games of JOWA's split, every count tiny; the paper scale's settings otherwise.
TWO_GAMES = """\
source_tasks: [space_invaders]
heldout_tasks: [pong]
tasks:
  space_invaders: {max_episode_steps: 300}
  pong: {max_episode_steps: 300}
dataset:
  shard_rows: 1000
  dqn: {steps: 1500, buffer_size: 1500, learning_starts: 500, target_update_interval: 250,
        exploration_steps: 1000, eval_episodes: 1}
pretrain:
  steps: 4
  batch_size: 4
  warmup_steps: 1
  target_update: 2
  validate_every: 2
  checkpoint_every: 2
  heldout_windows: 8
  holdout_fraction: 0.3
  stream_rows: 400
  stream_refresh: 2
  trainer: {accelerator: cpu, precision: 32-true}
  sizes_run: ["40M"]
  backbones: [transformer]
  seeds: [0]
finetune:
  data: {sizes: [600], seeds_per_size: null}
  steps: 4
  batch_size: 4
  warmup_steps: 1
  target_update: 2
  validate_every: 2
  checkpoint_every: 2
  heldout_windows: 8
  holdout_fraction: 0.3
  trainer: {accelerator: cpu, precision: 32-true}
  seeds: [0]
  # ours and d3rlpy's learner on frames; CQL and online DQN add no frame path of their own (the
  # dataset stage's DQN is SB3's on frames; CQL shares d3rlpy's encoder) and run on MinAtar's smoke
  methods_run: [pretrained, scratch, bc, d3rlpy_bc]
evaluate:
  episodes: 2
  max_episode_steps: 30
  world_model_horizon: 3
  world_model_windows: 4
report:
  bootstrap_repetitions: 100
"""


@pytest.mark.slow
def test_the_paper_dag_lists_every_job(tmp_path):
    result = subprocess.run(snakemake_command("-n", "--config", "scale=paper"), cwd=tmp_path, capture_output=True,
                            text=True, env=snakemake_env(), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    stats = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout.split("Job stats:")[1].split("\n\n")[0], re.MULTILINE))
    cfg = compose({"scale": "paper"}, ROOT)
    assert cfg.experiment == "jowa_atari" and int(stats["generate_dataset"]) == 20
    assert int(stats["pretrain"]) == 3 * 3 * 3 and int(stats["pretrain_single"]) == 15 * 27
    assert int(stats["total"]) >= 1000


@pytest.mark.e2e
def test_a_paper_shaped_run_on_two_atari_games(tmp_path):
    (tmp_path / "two_games.yaml").write_text(TWO_GAMES)
    command = snakemake_command("--cores", "2", "--config", "scale=paper", "--configfile", "two_games.yaml")
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=snakemake_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = compose({"scale": "paper", **_yaml(TWO_GAMES)}, ROOT)
    episodes = pl.read_parquet(tmp_path / report_files(cfg)["episodes"])
    runs = episodes.select("task", "method", "checkpoint", "planning").unique()
    assert set(runs.filter(task="pong")["method"]) == {"pretrained", "scratch", "bc", "d3rlpy_bc"}
    assert set(runs.filter(task="space_invaders")["method"]) == {"multigame", "singlegame"}
    assert "beam w2 h2" in set(runs["planning"])
    errors = pl.read_parquet(tmp_path / world_model_errors(cfg)[0])
    assert errors["error"].is_finite().all() and set(errors["task"]) == {"space_invaders"}
    assert "human (DQN Nature table)" in set(episodes["score_source"])


def _yaml(text: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.create(text))

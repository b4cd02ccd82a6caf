"""The backbone face-off: the memory task needs memory, the memory probe tells remembering features
from forgetting ones, the claims' verdicts follow the CIs, and the experiment runs end to end."""

import subprocess

import numpy as np
import polars as pl
import pytest
import torch

from conftest import ROOT, snakemake_command, snakemake_env
from wmrl.config import compose
from wmrl.dag.paths import CONTEXT_COSTS
from wmrl.dag.targets import report_files
from wmrl.data.windows import ObsLayout, TaskSteps, WindowSampler
from wmrl.envs import make_env
from wmrl.evaluate.memory import memory_probe
from wmrl.models.backbones import backbone_parameters
from wmrl.models.config import BACKBONES
from wmrl.report.backbones import claims


def repeat_first_episodes(episodes: int, seed: int = 0) -> list[dict[str, np.ndarray]]:
    env = make_env("popgym:popgym-RepeatFirstEasy-v0")
    rng, found = np.random.default_rng(seed), []
    for index in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + index)
        steps, done = {"obs": [obs], "action": [], "reward": []}, False
        while not done:
            action = int(rng.integers(4))
            obs, reward, terminated, truncated, _ = env.step(action)
            steps["obs"].append(obs)
            steps["action"].append(action)
            steps["reward"].append(reward)
            done = terminated or truncated
        found.append({k: np.asarray(v) for k, v in steps.items()})
    return found


def test_repeat_first_needs_memory_over_more_than_32_steps():
    """Its reward is a function of the first card and the action alone; the best predictor from the
    current card and action (a memoryless one) is far worse, and episodes last over 32 steps."""
    episodes = repeat_first_episodes(60)
    assert min(len(e["action"]) for e in episodes) > 32
    first = np.concatenate([np.full(len(e["action"]), int(np.argmax(e["obs"][0]))) for e in episodes])
    now = np.concatenate([e["obs"][:-1].argmax(-1) for e in episodes])
    action = np.concatenate([e["action"] for e in episodes])
    reward = np.concatenate([e["reward"] for e in episodes])

    def best_table_error(keys: np.ndarray) -> float:  # the mean squared error of E[r | keys] on the data
        codes = np.unique(keys, axis=0, return_inverse=True)[1].ravel()
        means = np.bincount(codes, reward) / np.bincount(codes)
        return float(np.mean((reward - means[codes]) ** 2))

    with_memory = best_table_error(np.stack([first, action], 1))
    memoryless = best_table_error(np.stack([now, action], 1))
    assert with_memory < 1e-12 < memoryless
    assert memoryless > 0.5 * reward.var()  # the current card explains almost nothing of the reward


class Probed:
    """A stand-in model whose features at step t hold the first observation (remembers) or only
    the current one (forgets), plus noise."""

    def __init__(self, remembers: bool):
        self.remembers = remembers
        self.backbone = self.norm = lambda x: x

    def tokens(self, obs, actions, task):
        torch.manual_seed(0)
        shown = obs[:, :1].expand_as(obs) if self.remembers else obs
        tokens = torch.zeros(obs.shape[0], 2 * obs.shape[1] - 1, obs.shape[-1])
        tokens[:, 0::2] = shown
        return tokens + 0.1 * torch.randn_like(tokens)


def episode_steps(episodes: list[dict[str, np.ndarray]]) -> TaskSteps:
    obs = np.concatenate([e["obs"] for e in episodes]).astype(np.float32)
    lengths = [len(e["obs"]) for e in episodes]
    ends = np.repeat(np.cumsum(lengths) - 1, lengths)
    final = np.arange(len(obs)) == ends
    action = np.concatenate([np.append(e["action"], -1) for e in episodes])
    reward = np.concatenate([np.append(e["reward"], 0.0) for e in episodes]).astype(np.float32)
    return TaskSteps("repeat_first", 0, obs, action, reward, np.zeros(len(obs), bool), ends, np.flatnonzero(~final),
                     np.zeros(len(obs), np.float32))


@pytest.mark.slow
def test_the_memory_probe_tells_remembering_features_from_forgetting_ones():
    episodes = repeat_first_episodes(80, seed=1)
    sampler = WindowSampler([episode_steps(episodes)], ObsLayout("vector", (4,), {"repeat_first": [0, 1, 2, 3]}), 40)
    windows = sampler.episode_starts(0)
    assert len(windows["obs"]) == 80
    np.testing.assert_array_equal(windows["obs"][:, 0], np.stack([e["obs"][0] for e in episodes]))
    mask = torch.ones(4)
    remembered = memory_probe(Probed(remembers=True), sampler, 0, mask, [1, 8, 32], seed=0)
    forgot = memory_probe(Probed(remembers=False), sampler, 0, mask, [1, 8, 32], seed=0)
    assert [row["delay"] for row in remembered] == [1, 8, 32] and remembered[0]["chance"] == 0.25
    assert all(row["accuracy"] > 0.9 for row in remembered)
    assert all(row["accuracy"] < 0.45 for row in forgot)  # chance 0.25, 40 scored episodes
    with pytest.raises(ValueError, match="beyond the model's window of 40"):
        memory_probe(Probed(True), sampler, 0, mask, [48], seed=0)


def errors_of(values: dict[str, list[float]]) -> pl.DataFrame:
    """Open-loop errors at horizon 1 of one size: per backbone, one value per seed."""
    return pl.DataFrame([{"size": "xs", "backbone": backbone, "seed": seed, "task": "t", "horizon": 1,
                          "predictor": "model", "error": value, "windows": 8}
                         for backbone, seeds in values.items() for seed, value in enumerate(seeds)])


def test_backbone_claims_follow_the_confidence_intervals():
    interval = {"repetitions": 500, "confidence": 0.95}
    errors = errors_of({"transformer": [0.30, 0.31, 0.29], "ssm": [0.10, 0.11, 0.09], "gru": [0.50, 0.52, 0.51],
                        "gtrxl": [0.20, 0.40, 0.31]})
    verdicts = dict(claims(errors, pl.DataFrame(), interval).select("backbone", "verdict").rows())
    assert verdicts == {"ssm": "better", "gru": "worse", "gtrxl": "no measurable difference"}
    few = claims(errors_of({"transformer": [0.3, 0.31], "ssm": [0.1, 0.11]}), pl.DataFrame(), interval)
    assert few["verdict"].to_list() == ["too few runs to decide"]


@pytest.mark.e2e
def test_the_face_off_runs_end_to_end_at_smoke(tmp_path):
    """backbones_memory at smoke: the four backbones at matched widths, their probe, costs and
    claims in the report's Backbones section."""
    result = subprocess.run(snakemake_command("--cores", "2", "--config", "scale=smoke",
                                              "experiment=backbones_memory"),
                            cwd=tmp_path, capture_output=True, text=True, env=snakemake_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = compose({"scale": "smoke", "experiment": "backbones_memory"}, ROOT)
    outputs = report_files(cfg)
    costs = pl.read_parquet(tmp_path / CONTEXT_COSTS.format(scale="smoke", experiment="backbones_memory"))
    assert sorted(costs["backbone"].unique()) == sorted(BACKBONES) and sorted(costs["window"].unique()) == [8, 16]
    window = 2 * cfg.pretrain.window + 1
    counts = {row["backbone"]: backbone_parameters(row["backbone"], row["dim"], 2, 2, window)
              for row in costs.unique("backbone").to_dicts()}
    assert max(counts.values()) <= 1.1 * counts["transformer"] and min(counts.values()) >= 0.9 * counts["transformer"]
    probe = pl.read_csv(tmp_path / outputs["memory_probe_csv"])
    assert sorted(probe["backbone"].unique()) == sorted(BACKBONES) and sorted(probe["delay"].unique()) == [1, 4, 8]
    verdicts = pl.read_csv(tmp_path / outputs["backbone_claims_csv"])
    assert len(verdicts) == 6 and set(verdicts["verdict"]) == {"too few runs to decide"}  # one seed
    page = (tmp_path / outputs["html"]).read_text()
    assert 'id="backbones"' in page and "Memory probe" in page

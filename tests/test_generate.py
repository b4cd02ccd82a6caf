"""Generation: determinism, the learners' learning histories (DQN, PPO, recurrent PPO), and recovery
from a killed job."""

import json
import signal
import subprocess
import time

import polars as pl
import pytest

from wmrl.data import open_dataset
from wmrl.data.generate import generate_dataset

from conftest import PYTHON, make_spec


def shard_bytes(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.glob("*"))}


@pytest.mark.parametrize("spec", [make_spec(steps=2500), make_spec("CartPole-v1", steps=1500),
                                  make_spec("Pendulum-v1", steps=400)], ids=["minatar", "cartpole", "pendulum"])
def test_same_spec_same_bytes(spec, tmp_path):
    generate_dataset(spec, tmp_path / "a")
    generate_dataset(spec, tmp_path / "b")
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    generate_dataset({**spec, "seed": 1}, tmp_path / "c")
    assert shard_bytes(tmp_path / "a")["part-00000.parquet"] != shard_bytes(tmp_path / "c")["part-00000.parquet"]


@pytest.mark.parametrize("env,policy", [("minatar:breakout", "dqn"), ("minatar:breakout", "ppo"),
                                        ("minigrid:MiniGrid-Empty-5x5-v0", "ppo"),
                                        ("popgym:popgym-RepeatPreviousEasy-v0", "recurrent_ppo")])
def test_a_learner_records_its_whole_learning_history_deterministically(env, policy, tmp_path):
    spec = make_spec(env, policy=policy, steps=600)
    card = generate_dataset(spec, tmp_path / "a")
    generate_dataset(spec, tmp_path / "b")
    assert shard_bytes(tmp_path / "a") == shard_bytes(tmp_path / "b")
    assert card["transitions"] == 600
    reference = card["policy"]["reference_score"]
    assert reference["episodes"] == 2 and len(reference["returns"]) == 2
    assert reference.get("sampled", False) == (policy != "dqn")  # PPO's as it acted; DQN's greedy
    frame = open_dataset(tmp_path / "a").read()
    steps = frame.filter(pl.col("action").is_not_null())["policy_step"]
    assert steps.to_list() == list(range(600))  # every step, in the order the agent took it


@pytest.mark.parametrize("policy", ["dqn", "ppo", "recurrent_ppo"])
def test_a_learner_needs_discrete_actions(policy, tmp_path):
    with pytest.raises(ValueError, match="need discrete actions, the env has Box"):
        generate_dataset(make_spec("Pendulum-v1", policy=policy, steps=100), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_budget_cut_episode_is_truncated_and_kept(tmp_path):
    card = generate_dataset(make_spec("CartPole-v1", steps=30, max_episode_steps=None), tmp_path / "d")
    frame = open_dataset(tmp_path / "d").read()
    last = frame.filter(pl.col("action").is_not_null()).tail(1)
    assert last["truncated"].item() or last["terminated"].item()
    assert card["transitions"] == 30 and card["returns"]["episodes"] <= card["episodes"]


def test_killed_job_leaves_nothing_that_looks_complete_and_reruns_cleanly(tmp_path):
    out = tmp_path / "data"
    spec = json.dumps(make_spec(policy="dqn", steps=20_000, shard_rows=200))
    command = [PYTHON, "-m", "wmrl", "generate-dataset", "--spec", spec, "--out", str(out)]
    job = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    partial = tmp_path / "data.partial"
    deadline = time.monotonic() + 60
    while not list(partial.glob("part-*.parquet")) and time.monotonic() < deadline:
        time.sleep(0.1)
    job.send_signal(signal.SIGKILL)
    job.wait()
    assert list(partial.glob("part-*.parquet")), "the job never wrote a shard"
    assert not out.exists() and not (partial / "card.json").exists()
    small = make_spec(policy="random", steps=500)
    generate_dataset(small, out)
    assert not partial.exists()
    assert open_dataset(out).card["transitions"] == 500


def generated_in_a_process(spec: dict, out, env: dict[str, str]) -> str:
    """The sha256 of the dataset `python -m wmrl generate-dataset` writes under `env` (added to ours
    without the kernel settings this process was pinned to)."""
    import hashlib
    import os

    from wmrl import CPU_KERNELS

    ours = {name: value for name, value in os.environ.items() if name not in CPU_KERNELS}
    result = subprocess.run([PYTHON, "-m", "wmrl", "generate-dataset", "--spec", json.dumps(spec), "--out", str(out)],
                            env={**ours, **env}, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(out.glob("*.parquet")))).hexdigest()


AVX2_CAP = {"ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


@pytest.mark.slow
def test_a_dqn_dataset_is_the_same_bytes_under_two_instruction_set_caps(tmp_path):
    """Enough DQN learning (20k steps, updates from step 1,000) for the math libraries' choice of
    kernels to change the data: wmrl's pin on this CPU writes the bytes that an unpinned job capped
    at AVX2 from outside writes, which is what an AVX2-only CPU runs. The control: unpinned and
    uncapped (AVX-512 kernels) the bytes differ, so the comparison can see a difference (on a CPU
    with AVX-512; on an AVX2-only CPU both are AVX2 and nothing can differ)."""
    spec = make_spec(policy="dqn", steps=20_000, shard_rows=50_000, max_episode_steps=10_000)
    spec["settings"] |= {"learning_starts": 1000, "exploration_steps": 10_000, "buffer_size": 20_000,
                         "target_update_interval": 1000, "conv_channels": 16, "hidden": 128}
    native = {"WMRL_CPU_KERNELS": "native"}
    pinned = generated_in_a_process(spec, tmp_path / "pinned", {})
    capped = generated_in_a_process(spec, tmp_path / "native-capped", {**native, **AVX2_CAP})
    assert pinned == capped
    card = json.loads((tmp_path / "pinned" / "card.json").read_text())
    assert card["generator"]["cpu_kernels"]["WMRL_CPU_KERNELS"] == "avx2"
    if "avx512f" in open("/proc/cpuinfo").read():
        assert generated_in_a_process(spec, tmp_path / "native", native) != capped


def test_the_kernel_pin_applies_only_on_an_x86_64_cpu_with_avx2(monkeypatch):
    import platform

    import wmrl

    monkeypatch.setattr(platform, "machine", lambda: "aarch64")
    assert not wmrl.has_avx2()  # elsewhere an AVX2 cap is meaningless, or would crash
    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    flags = next((line.split() for line in open("/proc/cpuinfo") if line.startswith("flags")), [])
    assert wmrl.has_avx2() == ("avx2" in flags)


def test_the_final_policy_score_carries_a_recurrent_policys_state_through_each_episode_and_no_further():
    import gymnasium as gym

    from wmrl.data.behaviour import evaluate_policy

    class Recorder:
        """A policy that returns as its state how many steps it has seen since its last reset."""

        calls = []

        def predict(self, obs, state=None, episode_start=None, deterministic=False):
            self.calls.append((state, bool(episode_start[0])))
            return 0, (0 if episode_start[0] else state) + 1

    policy = Recorder()
    score = evaluate_policy(policy, gym.make("CartPole-v1"), episodes=2, seed=0)
    starts = [i for i, (_, start) in enumerate(policy.calls) if start]
    assert len(starts) == 2 and starts[0] == 0 and all(policy.calls[s][0] is None for s in starts)  # afresh
    for i, (state, start) in enumerate(policy.calls):
        if not start:
            assert state == i - max(s for s in starts if s < i)  # steps since the episode began: carried
    assert sum(score["returns"]) == len(policy.calls)  # CartPole pays 1 per step

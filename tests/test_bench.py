"""The benchmarks run end to end at tiny step counts: their figures, not their speed, are checked
(the speed is the benchmark's to measure, on a quiet machine)."""

from __future__ import annotations

import json
import math

import pytest

from wmrl.__main__ import main


def test_bench_icrl_writes_every_case(tmp_path):
    from wmrl.bench.icrl import BACKBONES, CASES

    out = tmp_path / "icrl.json"
    assert main(["bench", "icrl", "--steps", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["threads"] == 1 and figures["steps"] == 2 and figures["peak_gflops"] > 0
    assert [(case["method"], case["family"]) for case in figures["cases"]] == list(CASES)
    for case in figures["cases"]:
        timed = case["backbones"]
        assert list(timed) == list(BACKBONES)
        for row in timed.values():  # DPT: a context of 50 and its query token; AD: 4 episodes x 15 steps
            assert row["tokens_per_sample"] == {"dpt": 51, "ad": 60}[case["method"]]
            assert row["tokens_per_s"] > 0 and row["flops_per_step"] > 0 and 0 < row["of_peak"] <= 1
            assert row["tokens_per_s"] == pytest.approx(row["batch"] * row["tokens_per_sample"] / row["step_s"])
        ratio = timed["ssm"]["step_s"] / timed["transformer"]["step_s"]
        assert case["ssm_over_transformer_step"] == pytest.approx(ratio)


def test_bench_imagine_writes_its_figures(tmp_path):
    out = tmp_path / "imagine.json"
    assert main(["bench", "imagine", "--scale", "smoke", "--steps", "2", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["experiment"] == "imagination_control" and figures["task"] == "cartpole"
    assert figures["threads"] == figures["torch_threads"] == 1 and figures["steps"] == 2
    assert set(figures["settings"]) == {"imagine_scratch", "dqn_online", "model"}
    imagine, dqn = figures["imagine"], figures["dqn"]
    assert set(imagine) == {"act_env_steps_per_s", "update_s", "world_model_s", "imagination_s",
                            "loop_env_steps_per_s", "updates_per_env_step", "parameters"}
    assert set(dqn) == {"gradient_step_s", "loop_env_steps_per_s", "updates_per_env_step", "parameters"}
    assert imagine["updates_per_env_step"] == 1 / figures["settings"]["imagine_scratch"]["train_every"]
    assert dqn["updates_per_env_step"] == 1 / figures["settings"]["dqn_online"]["train_freq"]
    assert all(imagine[key] > 0 for key in ("update_s", "world_model_s", "imagination_s"))
    assert set(figures["ratios"]) == {"update_over_gradient_step", "loop_env_steps_per_s"}
    for ratio in figures["ratios"].values():
        assert math.isfinite(ratio) and ratio > 0
    assert figures["ratios"]["update_over_gradient_step"] == pytest.approx(imagine["update_s"] / dqn["gradient_step_s"])


@pytest.mark.slow
def test_bench_kernels_times_each_stage_pinned_and_native_in_processes_that_ran_under_each(tmp_path):
    out = tmp_path / "kernels.json"
    assert main(["bench", "kernels", "--steps", "300", "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["ran_under"]["native"]["WMRL_CPU_KERNELS"] == "native"
    assert figures["ran_under"]["native"]["ONEDNN_MAX_CPU_ISA"] == ""  # the parent's pin did not leak in
    assert figures["ran_under"]["avx2"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    stages = {"matmul_gflops_2_threads", "pretrain_step_s_2_threads", "pretrain_step_s_1_thread", "dqn_dataset_s"}
    assert set(figures["native"]) == set(figures["avx2"]) == set(figures["pinned_over_native"]) == stages
    ratios = figures["pinned_over_native"]
    native, pinned = figures["native"], figures["avx2"]
    assert ratios["dqn_dataset_s"] == pytest.approx(pinned["dqn_dataset_s"] / native["dqn_dataset_s"])
    assert ratios["matmul_gflops_2_threads"] == pytest.approx(
        native["matmul_gflops_2_threads"] / pinned["matmul_gflops_2_threads"])

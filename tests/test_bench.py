"""The benchmarks run end to end at tiny step counts: their figures, not their speed, are checked
(the speed is the benchmark's to measure, on a quiet machine)."""

from __future__ import annotations

import json

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

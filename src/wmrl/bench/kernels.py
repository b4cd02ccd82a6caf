"""What pinning the CPU math kernels to AVX2 (`wmrl.CPU_KERNELS`) costs, per stage that computes.

Reference: the same work in the same run with ``WMRL_CPU_KERNELS=native`` (the libraries pick
kernels for this CPU, AVX-512 where it has it). Measured, each in a fresh process per setting
(the settings act when torch loads), the settings alternated over `repeats` rounds and the best
time kept:
- fp32 matmul peak on 2 threads (what the pin takes from the heaviest kernels);
- the default experiment's pretraining step (transformer, laptop's largest size) on 2 threads, as
  pretraining runs;
- the same step on 1 thread, as fine-tuning, ICRL and imagination jobs run;
- generating a DQN behaviour dataset (SB3's DQN learning on Breakout) of `steps` env steps, 1 thread.
Ratio: pinned time / native time (above 1 means the pin is slower). Where the CPU has no AVX-512
the two settings run the same kernels and every ratio is about 1.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from wmrl import CPU_KERNELS

ROOT = Path(__file__).resolve().parents[3]  # the repository: its config/ defines the jobs
SETTINGS = ("native", "avx2")


def measure(steps: int) -> dict[str, float]:
    """Seconds of each stage's unit of work in this process, under whatever kernels it loaded."""
    import torch

    from wmrl.bench.pretrain import largest_size, matmul_peak, time_training_step
    from wmrl.config import compose
    from wmrl.dag.specs import dataset_spec
    from wmrl.data.generate import generate_dataset
    from wmrl.models.config import ModelConfig

    cfg = compose({"scale": "laptop"}, ROOT)
    pretrain = cfg.pretrain
    size = pretrain.sizes[largest_size(pretrain)]
    model = ModelConfig(**{**dict(pretrain.model), **size, "backbone": "transformer"})
    figures = {"matmul_gflops_2_threads": matmul_peak(2)}
    for threads in (2, 1):
        torch.set_num_threads(threads)
        step = time_training_step(model, pretrain.batch_size, pretrain.window)
        figures[f"pretrain_step_s_{threads}_thread{'s' if threads > 1 else ''}"] = step["step_s"]
    spec = dataset_spec(cfg, "breakout", "dqn", 0)
    spec["settings"] = {**spec["settings"], "steps": steps, "learning_starts": min(1000, steps // 4)}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        generate_dataset(spec, Path(tmp) / "breakout")
        figures["dqn_dataset_s"] = time.perf_counter() - start
    return figures


def in_fresh_process(setting: str, steps: int) -> tuple[dict[str, str], dict[str, float]]:
    """The kernel settings a fresh process ran under and its `measure`."""
    env = {**os.environ, "WMRL_CPU_KERNELS": setting}
    for name in CPU_KERNELS:
        env.pop(name, None)  # this process's pin is in its environment: the child sets its own
    code = f"import json, wmrl, wmrl.bench.kernels as k; print(json.dumps([wmrl.cpu_kernels(), k.measure({steps})]))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(steps: int, out: str, repeats: int = 2) -> dict:
    best: dict[str, dict[str, float]] = {setting: {} for setting in SETTINGS}
    ran_under = {}
    for round_ in range(repeats):
        for setting in SETTINGS:
            ran_under[setting], figures = in_fresh_process(setting, steps)
            for name, value in figures.items():
                keep = max if name.endswith("gflops_2_threads") else min
                best[setting][name] = keep(best[setting].get(name, value), value)
            print(f"round {round_ + 1}/{repeats}, {setting}: done", flush=True)
    print(f"{'stage':28} {'native':>10} {'avx2 pin':>10} {'pin/native':>10}  (best of {repeats}; seconds unless named)")
    ratios = {}
    for name in best["native"]:
        native, pinned = best["native"][name], best["avx2"][name]
        ratios[name] = native / pinned if name.endswith("gflops_2_threads") else pinned / native
        print(f"{name:28} {native:10.4g} {pinned:10.4g} {ratios[name]:10.2f}")
    figures = {"benchmark": "cpu_kernel_pin", "reference": "WMRL_CPU_KERNELS=native in the same run",
               "ratio": "pinned time / native time", "dqn_dataset_steps": steps, "repeats": repeats,
               "machine": platform.processor() or platform.machine(), "native": best["native"],
               "avx2": best["avx2"], "pinned_over_native": ratios, "ran_under": ran_under}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(figures, indent=1) + "\n")
    return figures

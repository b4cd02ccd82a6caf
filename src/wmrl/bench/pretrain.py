"""Pretraining throughput against this machine's fp32 matmul peak, per backbone and size, and how
step time grows with the context length K.

Reference: the best of several square fp32 matmuls (torch.mm), GFLOP/s on the threads given.
Measured: full training steps of the world-action model (joint loss, backward, AdamW) on
laptop-shaped windows; the FLOPs of one step are counted by torch's FlopCounterMode (forward,
backward and the target network's forward), so achieved GFLOP/s = counted FLOPs / step time.
Goal: achieved/peak >= 0.4 for the transformer at the largest laptop size.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from wmrl.config import BACKBONES, LossConfig, ModelConfig, compose
from wmrl.models.world_model import ModelShape, WorldActionModel
from wmrl.rl.objectives import joint_loss

GOAL = 0.4
ROOT = Path(__file__).resolve().parents[3]  # the repository: its config/ defines the sizes
OBS_SHAPE = (10, 10, 24)  # the default experiment's union of source-game channels


def matmul_peak(threads: int, size: int = 2048, repeats: int = 10) -> float:
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def synthetic_batch(batch: int, window: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    return {
        "obs": torch.from_numpy((rng.random((batch, window + 1, *OBS_SHAPE)) < 0.05).astype(np.float32)),
        "actions": torch.from_numpy(rng.integers(0, 6, (batch, window))),
        "reward": torch.from_numpy(rng.random((batch, window)).astype(np.float32)),
        "terminated": torch.from_numpy(rng.random((batch, window)) < 0.01),
        "mask": torch.ones(batch, window, dtype=torch.bool),
        "task": torch.from_numpy(rng.integers(0, 4, batch)),
    }


def time_training_step(model_cfg: ModelConfig, batch: int, window: int, steps: int = 8) -> dict[str, float]:
    torch.manual_seed(0)
    model = WorldActionModel(ModelShape("grid", OBS_SHAPE, 6, 4, window), model_cfg)
    target = copy.deepcopy(model).requires_grad_(False)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    data = synthetic_batch(batch, window, np.random.default_rng(0))
    weights = LossConfig()

    def step():
        loss, _ = joint_loss(model, target, data, weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - start) / steps
    return {"parameters": model.parameter_count(), "step_s": seconds, "samples_per_s": batch / seconds,
            "tokens_per_s": batch * (2 * window + 1) / seconds, "flops_per_step": counter.get_total_flops(),
            "achieved_gflops": counter.get_total_flops() / seconds / 1e9}


def main(threads: int, out: str) -> dict:
    torch.set_num_threads(threads)
    cfg = compose({}, ROOT)
    pretrain = cfg.pretrain
    peak = matmul_peak(threads)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s on {threads} threads")
    base = dict(pretrain.model)
    rows = []
    print(f"{'backbone':12} {'size':7} {'params':>9} {'samples/s':>10} {'tokens/s':>9} {'GFLOP/s':>8} {'of peak':>7}")
    for backbone in BACKBONES:
        for size, dims in pretrain.sizes.items():
            model_cfg = ModelConfig(**{**base, **dims, "backbone": backbone})
            row = {"backbone": backbone, "size": size, "window": pretrain.window, "batch": pretrain.batch_size,
                   **time_training_step(model_cfg, pretrain.batch_size, pretrain.window)}
            row["of_peak"] = row["achieved_gflops"] / peak
            rows.append(row)
            print(f"{backbone:12} {size:7} {row['parameters']:9,} {row['samples_per_s']:10.1f} "
                  f"{row['tokens_per_s']:9.0f} {row['achieved_gflops']:8.1f} {row['of_peak']:7.2f}")
    largest = max(pretrain.sizes, key=lambda s: pretrain.sizes[s].dim * pretrain.sizes[s].layers)
    headline = next(r for r in rows if r["backbone"] == "transformer" and r["size"] == largest)
    print(f"transformer at the largest laptop size ({largest}): {headline['of_peak']:.2f} of peak (goal >= {GOAL})")

    scaling = []
    print("step time (ms) vs context K, size small, batch 8:")
    print(f"{'K':>5} " + " ".join(f"{b:>12}" for b in BACKBONES))
    for window in (16, 32, 64, 128, 256, 512):
        times = {}
        for backbone in BACKBONES:
            model_cfg = ModelConfig(**{**base, **pretrain.sizes["small"], "backbone": backbone})
            times[backbone] = time_training_step(model_cfg, 8, window, steps=3)["step_s"]
        scaling.append({"window": window, **{f"{b}_step_s": t for b, t in times.items()}})
        print(f"{window:5} " + " ".join(f"{1000 * times[b]:12.1f}" for b in BACKBONES))
    figures = {"benchmark": "pretrain_throughput", "reference": "fp32 torch.mm peak", "peak_gflops": peak,
               "threads": threads, "goal_of_peak": GOAL, "machine": platform.processor() or platform.machine(),
               "throughput": rows, "context_scaling": scaling}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(figures, indent=1) + "\n")
    return figures

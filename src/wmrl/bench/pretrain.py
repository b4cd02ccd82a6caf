"""Pretraining throughput against this machine's fp32 matmul peak, per backbone and size, and how
step time grows with the context length K.

Reference: the best of several square fp32 matmuls (torch.mm), GFLOP/s on the threads given.
Measured: full training steps of the world-action model (joint loss, backward, AdamW) on
laptop-shaped windows; the FLOPs of one step are counted by torch's FlopCounterMode (forward,
backward and the target network's forward), so achieved GFLOP/s = counted FLOPs / step time.
Goals: achieved/peak >= 0.4 for the transformer at the largest laptop size; the SSM's training
step within 2x of the transformer's at K = 16 and faster from K = 256 on; its acting step flat in K.
"""

from __future__ import annotations

import copy
import json
import platform
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from torch.utils.flop_counter import FlopCounterMode

from wmrl.config import compose
from wmrl.files import publish
from wmrl.models.config import BACKBONES, ModelConfig
from wmrl.models.world_model import ModelShape, WorldActionModel
from wmrl.rl.config import LossConfig
from wmrl.rl.objectives import joint_loss

GOAL = 0.4
SSM_GOAL_SHORT = 2.0  # the SSM's training step at K = 16 within 2x of the transformer's
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


def time_acting_step(model_cfg: ModelConfig, window: int, batch: int = 8, repeats: int = 20) -> float:
    """Seconds of one recurrent step (`advance`) of `batch` envs whose context already holds a full
    window of 2K tokens: the cost of acting at context K (the transformer attends to its cache,
    the GRU and the SSM update a state of fixed size)."""
    torch.manual_seed(0)
    model = WorldActionModel(ModelShape("grid", OBS_SHAPE, 6, 4, window), model_cfg).eval()
    tokens = torch.randn(batch, 2 * window + 1, model_cfg.dim)
    with torch.no_grad():
        _, state = model.start(tokens[:, :-1])
        model.advance(tokens[:, -1], state)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model.advance(tokens[:, -1], state)
    return (time.perf_counter() - start) / repeats


def largest_size(pretrain) -> str:
    """The name of the largest of `pretrain.sizes` (width x depth)."""
    return max(pretrain.sizes, key=lambda s: pretrain.sizes[s].dim * pretrain.sizes[s].layers)


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
    largest = largest_size(pretrain)
    headline = next(r for r in rows if r["backbone"] == "transformer" and r["size"] == largest)
    print(f"transformer at the largest laptop size ({largest}): {headline['of_peak']:.2f} of peak (goal >= {GOAL})")

    print("training step and acting step (ms) vs context K, size small; training batch 8, acting 8 envs:")
    small = {b: ModelConfig(**{**base, **pretrain.sizes["small"], "backbone": b}) for b in BACKBONES}
    windows = (16, 32, 64, 128, 256, 512)
    scaling = context_timings(small, windows).to_dicts()
    at = {(r["backbone"], r["window"]): r for r in scaling}
    ssm = {k: at["ssm", k]["train_step_s"] / at["transformer", k]["train_step_s"] for k in windows}
    print("SSM / transformer training-step time: " + ", ".join(f"K={k}: {v:.2f}" for k, v in ssm.items())
          + f" (goals: <= {SSM_GOAL_SHORT} at K=16, < 1 at K >= 256)")
    acting = at["ssm", 512]["act_step_s"] / at["ssm", 16]["act_step_s"]
    print(f"SSM acting step at K=512 / at K=16: {acting:.2f} (flat in K: about 1)")
    figures = {"benchmark": "pretrain_throughput", "reference": "fp32 torch.mm peak", "peak_gflops": peak,
               "threads": threads, "goal_of_peak": GOAL, "machine": platform.processor() or platform.machine(),
               "throughput": rows, "context_scaling": scaling,
               "ssm_over_transformer_step": ssm, "ssm_acting_512_over_16": acting}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def context_timings(models: dict[str, ModelConfig], windows) -> pl.DataFrame:
    """Training step (batch 8) and acting step (8 envs) seconds of each named model at each
    context K, on the synthetic 10 x 10 x 24 grid windows; one row per (model, K), printed as measured."""
    rows = []
    for name, model_cfg in models.items():
        for window in windows:
            timed = time_training_step(model_cfg, 8, window, steps=3)
            rows.append({"backbone": name, "dim": model_cfg.dim, "parameters": timed["parameters"], "window": window,
                         "train_step_s": timed["step_s"], "act_step_s": time_acting_step(model_cfg, window)})
            print(f"{name:12} K={window:4}: training step {1000 * timed['step_s']:8.1f} ms, "
                  f"acting step {1000 * rows[-1]['act_step_s']:6.2f} ms")
    return pl.DataFrame(rows)


def context_costs(spec: dict, out: str) -> pl.DataFrame:
    """An experiment's training and acting step time against the context K, for each of its
    backbones at the widths it trains them (spec: {"models": {backbone: model spec}, "windows": [K],
    "threads"})."""
    torch.set_num_threads(spec["threads"])
    table = context_timings({b: ModelConfig(**model) for b, model in spec["models"].items()}, spec["windows"])
    publish(out, table.write_parquet)
    return table

"""Training throughput of the in-context RL models (`wmrl.icrl.methods`) at the laptop scale's sizes,
against this machine's fp32 matmul peak measured in the same run.

Cases: DPT on bandits (icrl_bandit), DPT and AD on Dark Room (icrl_darkroom), each with the
transformer and the SSM backbone, with the settings their laptop pretraining jobs get
(`wmrl.dag.icrl.pretrain_spec`: width, layers, batch, context; at this writing bandits H = 50, Dark
Room 5x5 with DPT's context 50 and AD's window of 4 episodes x 15 steps). Each case trains on
batches its method draws (`method.batch`) from a few hundred synthetic histories of the pipeline's
generators at those sizes.
Measured: full training steps as the pipeline's ICRL jobs take them (forward, the method's loss,
backward, gradient clipping, AdamW) on 1 thread by default, as the jobs run; after warm-up steps,
the median step time of the timed steps; tokens/s = batch x tokens per sample / step time (DPT: the
context + its query token; AD: the window); the FLOPs of one step counted by torch's FlopCounterMode
over forward and backward, so achieved GFLOP/s = counted FLOPs / step time, and its share of the
peak; the SSM's step time over the transformer's per case.
Goal: what a step of each ICRL pretraining job costs (the steps an experiment's time budget
affords), how far below the matmul peak these width-32 models run, and what the SSM costs against
the transformer at these short contexts.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.flop_counter import FlopCounterMode

from wmrl.bench.pretrain import ROOT, matmul_peak
from wmrl.config import compose
from wmrl.dag import icrl
from wmrl.files import publish
from wmrl.icrl.histories import Histories, bandit_histories, darkroom_histories
from wmrl.icrl.learning import noise_distillation_histories
from wmrl.icrl.methods import ICRL_METHODS, IcrlMethod
from wmrl.icrl.tasks import bandit_tasks, darkroom_goals, split_goals
from wmrl.train.icrl import to_tensors

EXPERIMENTS = {"bandit": "icrl_bandit", "darkroom": "icrl_darkroom"}  # their laptop sizes are measured
CASES = (("dpt", "bandit"), ("dpt", "darkroom"), ("ad", "darkroom"))
BACKBONES = ("transformer", "ssm")
HISTORIES = 256  # synthetic histories per case (bandits: tasks; Dark Room: spread over the training goals)
WARMUP = 5  # untimed steps before the timed ones


def laptop(family: str) -> DictConfig:
    return compose({"scale": "laptop", "experiment": EXPERIMENTS[family]}, ROOT)


def histories(method: str, cfg: DictConfig) -> Histories:
    """A case's synthetic training histories at the laptop sizes of `cfg`, made by the pipeline's
    generators (seed 0), `HISTORIES` of them."""
    icrl = cfg.icrl
    if icrl.family == "bandit":
        return bandit_histories(bandit_tasks(HISTORIES, icrl.arms), icrl.horizon, noise_std=icrl.noise_std)
    goals, _ = split_goals(darkroom_goals(icrl.size), icrl.heldout_goals, icrl.task_seed)
    per_goal = -(-HISTORIES // len(goals))
    if method == "ad":
        return noise_distillation_histories(goals, icrl.ad.episodes, icrl.episode_steps, per_task=per_goal,
                                            size=icrl.size, decay=icrl.ad.decay)
    return darkroom_histories(goals, icrl.horizon, per_task=per_goal, size=icrl.size)


def time_training(method: IcrlMethod, data: Histories, settings: dict, steps: int) -> dict[str, float]:
    """Median step time, tokens/s, counted FLOPs per step and achieved GFLOP/s of `method` with the
    pretraining job's `settings` (`wmrl.dag.icrl.pretrain_spec`) trained on batches drawn from `data`."""
    card = {"family": data.family, "kind": data.kind, "states": data.states, "actions": data.actions,
            "horizon": data.horizon, "settings": data.settings, "episode_steps": data.episode_steps}
    config = method.model_config(settings)
    torch.manual_seed(0)
    model = method.build(method.shape(card), config)
    optimiser = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    arrays, rng = method.arrays(data.frame, card), np.random.default_rng(0)

    def draw() -> dict[str, torch.Tensor]:
        return to_tensors(method.batch(arrays, config.batch_size, rng, config))

    counter = FlopCounterMode(display=False)
    with counter:
        method.metrics(model, draw())["loss"].backward()
    model.zero_grad()
    times = []
    for step in range(WARMUP + steps):
        batch = draw()  # drawn outside the timed step
        start = time.perf_counter()
        loss = method.metrics(model, batch)["loss"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings["grad_clip"])
        optimiser.step()
        if step >= WARMUP:
            times.append(time.perf_counter() - start)
    seconds = float(np.median(times))
    tokens = method.tokens(method.shape(card), config)
    flops = counter.get_total_flops()
    return {"parameters": sum(p.numel() for p in model.parameters()), "batch": config.batch_size,
            "tokens_per_sample": tokens, "step_s": seconds, "tokens_per_s": config.batch_size * tokens / seconds,
            "flops_per_step": flops, "achieved_gflops": flops / seconds / 1e9}


def main(threads: int, out: str, steps: int = 50) -> dict:
    torch.set_num_threads(threads)
    peak = matmul_peak(threads)
    print(f"fp32 matmul peak: {peak:.1f} GFLOP/s on {threads} threads; median of {steps} training steps "
          f"after {WARMUP} warm-up steps")
    print(f"{'case':13} {'backbone':12} {'params':>7} {'tokens':>6} {'step ms':>8} {'tokens/s':>9} "
          f"{'MFLOP':>7} {'GFLOP/s':>8} {'of peak':>7}")
    cases = []
    for name, family in CASES:
        cfg = laptop(family)
        method, data = ICRL_METHODS[name], histories(name, cfg)
        timed = {}
        for backbone in BACKBONES:
            row = time_training(method, data, icrl.pretrain_spec(cfg, f"{name}_{backbone}", 0)["model"], steps)
            timed[backbone] = row = {**row, "of_peak": row["achieved_gflops"] / peak}
            print(f"{name + '_' + family:13} {backbone:12} {row['parameters']:7,} {row['tokens_per_sample']:6} "
                  f"{1000 * row['step_s']:8.1f} {row['tokens_per_s']:9.0f} {row['flops_per_step'] / 1e6:7.0f} "
                  f"{row['achieved_gflops']:8.2f} {row['of_peak']:7.3f}")
        cases.append({"method": name, "family": family, "backbones": timed,
                      "ssm_over_transformer_step": timed["ssm"]["step_s"] / timed["transformer"]["step_s"]})
    print("SSM / transformer training-step time: "
          + ", ".join(f"{c['method']}_{c['family']}: {c['ssm_over_transformer_step']:.2f}" for c in cases))
    figures = {"benchmark": "icrl_training_throughput", "reference": "fp32 torch.mm peak", "peak_gflops": peak,
               "threads": threads, "steps": steps, "warmup": WARMUP,
               "machine": platform.processor() or platform.machine(), "cases": cases}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    publish(out, lambda path: Path(path).write_text(json.dumps(figures, indent=1) + "\n"))
    return figures

"""Time to score: how much training wall time our fine-tuning methods and the d3rlpy peers need
on the same few-shot slice, on the same threads, to reach the score of the reference peer.

Reference (measured in the same run): d3rlpy's DiscreteCQL (`reference_method`, the experiment's
`d3rlpy_cql` method) trained for `reference_steps` gradient steps (10,000: where the peer had
converged on laptop breakout); its normalized score at the end is the target. Every method —
ours through the pipeline's own fine-tuning setup and Lightning loop, the peers through
`wmrl.peers.d3rlpy.train` — is stopped every `every` of its gradient steps and played by the
evaluation stage's agents (`episodes` greedy episodes per seed, the evaluation's env seeds); its
time to score is the training wall time (evaluations left out) at the first check whose score,
the mean over seeds, reaches the target. The other methods train up to `steps` gradient steps
(1,000 by default: enough to reach the target, more than the pipeline's laptop budget of 300),
on the largest few-shot slice. Figures: the ratio of each method's time to the reference's own,
printed and written to JSON with every check's score. Goal: ratio <= 0.5 for `scratch`. A first
crossing of a noisy score is optimistic for every method alike.
"""

from __future__ import annotations

import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from wmrl.config import compose
from wmrl.dag.specs import evaluate_spec, finetune_spec
from wmrl.dag.targets import method_models, training_rule
from wmrl.data import open_dataset
from wmrl.envs import env_settings
from wmrl.evaluate.rollout import make_agent, play, reference_scores
from wmrl.train.finetune import setup
from wmrl.train.peer import training_episodes

ROOT = Path(__file__).resolve().parents[3]  # the repository: its config/ (data/ is read from the working directory)
GOAL = 0.5


def score(spec: dict[str, Any], checkpoint: dict[str, Any], episodes: int) -> float:
    """Mean normalized score of a checkpoint over `episodes` evaluation episodes."""
    env = env_settings(spec)
    with tempfile.TemporaryDirectory() as directory:
        path = f"{directory}/model.pt"
        torch.save(checkpoint, path)
        returns, _ = play(make_agent(spec, path, None, env), env, episodes, spec["env_seed"])
    reference = reference_scores(spec, spec["inputs"]["datasets"])
    return float((returns.mean() - reference["random"]) / (reference["reference"] - reference["random"]))


class Checks(L.Callback):
    """Every `every` gradient steps: the training seconds so far (checks left out) and the score."""

    def __init__(self, every: int, check):
        self.every, self.check, self.rows, self.seconds, self.resumed = every, check, [], 0.0, None

    def on_train_start(self, trainer, module):
        self.resumed = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        step = trainer.global_step
        if step % self.every == 0:
            self.seconds += time.perf_counter() - self.resumed
            self.rows.append({"step": step, "seconds": self.seconds, "score": self.check(step)})
            self.resumed = time.perf_counter()


def ours(spec: dict[str, Any], evaluation: dict[str, Any], steps: int, every: int, episodes: int) -> list[dict]:
    """Our method's checks: the pipeline's fine-tuning setup, trained by a bare Lightning loop."""
    spec = {**spec, "finetune": {**spec["finetune"], "steps": steps}}
    run = setup(spec)
    checks = Checks(every, lambda step: score(evaluation, run.checkpoint(spec, step), episodes))
    trainer = L.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        callbacks=[checks], gradient_clip_val=spec["finetune"]["grad_clip"], limit_val_batches=0,
                        deterministic=True, enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tempfile.mkdtemp())
    trainer.fit(run.module, datamodule=run.data)
    return checks.rows


def peer(spec: dict[str, Any], evaluation: dict[str, Any], steps: int, every: int, episodes: int) -> list[dict]:
    """A d3rlpy peer's checks, timed inside its fit with the checks subtracted."""
    from wmrl.peers import d3rlpy

    dataset = open_dataset(spec["inputs"]["dataset"])
    kind = dataset.card["obs"]["kind"]
    episodes_data = training_episodes(dataset, spec["data"], spec["finetune"]["holdout_fraction"])
    settings = {**spec["settings"], **d3rlpy.data_settings(spec["peer"], episodes_data, spec["finetune"].get("window", 0))}
    best = d3rlpy.best_return(episodes_data)
    rows, checking = [], 0.0

    def check(algo, step):
        nonlocal checking
        now = time.perf_counter()
        checkpoint = d3rlpy.checkpoint(algo, spec["peer"], settings, kind, best)
        rows.append({"step": step, "seconds": now - started - checking, "score": score(evaluation, checkpoint, episodes)})
        checking += time.perf_counter() - now

    started = time.perf_counter()
    d3rlpy.train(spec["peer"], settings, kind, episodes_data, steps, every, spec["seed"], check)
    return rows


def time_to_score(checks: list[dict], target: float) -> float | None:
    """Training seconds at the first check whose mean score over seeds reaches `target`."""
    for row in checks:
        if row["score"] >= target:
            return row["seconds"]
    return None


def mean_over_seeds(runs: list[list[dict]]) -> list[dict]:
    return [{"step": rows[0]["step"], "seconds": float(np.mean([r["seconds"] for r in rows])),
             "score": float(np.mean([r["score"] for r in rows]))} for rows in zip(*runs, strict=True)]


def main(methods: list[str], reference_method: str, reference_steps: int, seeds: list[int], episodes: int,
         threads: int, out: str, scale: str = "laptop", steps: int = 1_000) -> dict:
    torch.set_num_threads(threads)
    cfg = compose({"scale": scale}, ROOT)
    task = cfg.heldout_tasks[0]
    every = cfg.finetune.validate_every
    curves = {}
    for method in [reference_method, *methods]:
        model = method_models(cfg, method)[0]
        runs = []
        for seed in seeds:
            transitions = max(cfg.finetune.data.sizes)  # the largest few-shot slice
            spec = finetune_spec(cfg, task, transitions, method, model, seed)
            evaluation = evaluate_spec(cfg, task, transitions, method, model, seed)
            if training_rule(cfg, method) == "train_peer":
                n = reference_steps if method == reference_method else steps
                runs.append(peer(spec, evaluation, n, n // 10, episodes))
            else:
                runs.append(ours(spec, evaluation, steps, every, episodes))
        curves[method] = mean_over_seeds(runs)
        print(f"{method:12} " + " ".join(f"{r['step']}:{r['score']:.2f}@{r['seconds']:.0f}s" for r in curves[method]),
              flush=True)
    target = curves[reference_method][-1]["score"]
    reference_time = time_to_score(curves[reference_method], target)
    print(f"target: {reference_method}'s score after {reference_steps:,} steps, {target:.2f} normalized, "
          f"first reached after {reference_time:.1f} s of training")
    results = []
    for method in methods:
        seconds = time_to_score(curves[method], target)
        ratio = None if seconds is None else seconds / reference_time
        results.append({"method": method, "seconds": seconds, "ratio": ratio,
                        "final_score": curves[method][-1]["score"]})
        shown = "not reached" if seconds is None else f"{seconds:.1f} s, {ratio:.2f}x the reference's time"
        print(f"{method:12} time to {target:.2f}: {shown} (final score {curves[method][-1]['score']:.2f})")
    figures = {"benchmark": "finetune_time_to_score", "reference": f"{reference_method} after {reference_steps} steps",
               "target_score": target, "reference_seconds": reference_time, "goal_ratio": GOAL, "task": task,
               "scale": scale, "seeds": seeds, "episodes": episodes, "threads": threads,
               "machine": platform.processor() or platform.machine(), "methods": results, "checks": curves}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(figures, indent=1) + "\n")
    return figures

"""The d3rlpy 2.8.1 peers: an offline algorithm of d3rlpy trained on our few-shot training
episodes for our number of gradient steps, saved weights-only, rebuilt to act in our evaluation.

**Data** (`to_mdp_dataset`). Our frames hold one row per step and a final row per episode (action
null) with the last observation. d3rlpy's MDPDataset ends an episode at a row flagged `terminals`
(that row's transition ends in a terminal state: d3rlpy gives it no next observation) or
`timeouts` (that row's observation is the episode's last: d3rlpy takes no transition from it).
So an episode that terminates gives its T transition rows, `terminals` set on the last; one that
is cut — by the time limit, or by the few-shot slice, whose last transition has `truncated` set —
gives its T rows plus its final observation as an extra row flagged `timeouts`. Either way
d3rlpy holds exactly our T transitions. Actions are counted from the task's card, not the data.

**Network** (`encoder_settings`), one per observation kind, in the task's own layout (a peer is
single-task): MinAtar grids as channel-first float32 (C, H, W) into
``PixelEncoderFactory(filters=[[16, 3, 1]], feature_size=128)``, the MinAtar paper's network
(d3rlpy's default Nature-DQN filters cannot take 10x10 inputs), no observation scaler; Atari frames
as channel-first uint8 into d3rlpy's default pixel encoder (Nature DQN) behind its
``PixelObservationScaler`` (x / 255), frames under 36 pixels a side into two 3x3 convolutions
(as our `ImageEncoder`); vectors into its default vector encoder.

**Algorithms** (wmrl.peers.algorithms; `settings` override their d3rlpy configs), as d3rlpy's
source computes them:

* ``discrete_cql`` — DiscreteCQL (Kumar et al. 2020): L = Huber(Q(s, a) - y) + alpha (logsumexp_a'
  Q(s, a') - Q(s, a)), with y = r + gamma (1 - done) Q'(s', argmax_a' Q'(s', a')) from the target
  network Q', copied from Q every `target_update_interval` gradient steps (d3rlpy's docstring calls
  the TD part double DQN; its target takes the argmax from Q' too). Adam.
* ``discrete_bc`` — DiscreteBC: L = -log softmax(l(s))[a] + beta mean(l(s)^2) over the policy's
  logits l. Adam. Acts by argmax of the logits.
* ``discrete_dt`` — DiscreteDecisionTransformer (Chen et al. 2021): a GPT over (R_t, o_t, a_t)
  triples of `context_size` steps, with a global time-step embedding (up to `max_timestep`),
  trained by cross-entropy of the data's actions. AdamW with a linear warm-up over
  `warmup_tokens`, then cosine decay. Acts through d3rlpy's stateful wrapper, which lowers the
  target return by every reward received.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import d3rlpy
import numpy as np
import polars as pl
import structlog
import torch
from d3rlpy.constants import ActionSpace
from d3rlpy.dataset import MDPDataset
from d3rlpy.logging import LoggerAdapterFactory, NoopAdapter
from d3rlpy.models.encoders import PixelEncoderFactory
from d3rlpy.preprocessing import PixelObservationScaler

from wmrl.data.windows import task_steps
from wmrl.peers.algorithms import PEER_ALGORITHMS

MINATAR_ENCODER = {"filters": [[16, 3, 1]], "feature_size": 128}  # Conv2d(C, 16, 3) + ReLU + Linear(., 128) + ReLU
NATURE_MIN_SIDE = 36  # d3rlpy's default filters (8x8/4, 4x4/2, 3x3/1) leave one cell of a 36x36 frame
SMALL_FRAME_ENCODER = {"filters": [[32, 3, 1], [32, 3, 1]], "feature_size": 256}  # for smaller frames


def plain_logs() -> None:
    """d3rlpy's log lines (structlog, to stdout: the parameters, each epoch's mean losses) in plain
    text from INFO up, as a job's log file wants them (d3rlpy configures coloured debug output)."""
    structlog.configure(processors=[structlog.processors.add_log_level,
                                    structlog.processors.TimeStamper(fmt="%Y-%m-%d %H:%M:%S"),
                                    structlog.dev.ConsoleRenderer(colors=False)],
                        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def peer_observations(obs: np.ndarray, kind: str) -> np.ndarray:
    """Observations (N, *the card's obs shape) as the peer's network takes them: grids (N, H, W, C)
    as float32 (N, C, H, W), images as uint8 (N, C, H, W), vectors as float32."""
    if kind == "vector":
        return obs.astype(np.float32)
    first = np.ascontiguousarray(np.moveaxis(obs, -1, 1))
    return first.astype(np.uint8 if kind == "image" else np.float32)


def to_mdp_dataset(frame: pl.DataFrame, card: dict[str, Any]) -> MDPDataset:
    """The episodes of `frame` (rows of whole episodes of the dataset `card` describes, sorted) as
    a d3rlpy MDPDataset holding exactly their transitions (see the module doc)."""
    if card["action"]["kind"] != "discrete":
        raise ValueError(f"the d3rlpy peers take discrete actions; {card['task']} has {card['action']}")
    steps = task_steps(frame, card["obs"], card["task"], 0)
    final = steps.action < 0
    after_terminal = np.r_[False, steps.terminated[:-1]]  # a final row whose episode terminated
    keep = ~final | ~after_terminal
    dataset = MDPDataset(
        observations=peer_observations(steps.obs[keep], card["obs"]["kind"]),
        actions=np.where(final, 0, steps.action)[keep],  # the timeout row's action is never trained on
        rewards=steps.reward[keep], terminals=steps.terminated[keep].astype(np.float32),
        timeouts=final[keep].astype(np.float32), action_space=ActionSpace.DISCRETE, action_size=card["action"]["n"])
    if dataset.transition_count != len(steps.starts):
        raise ValueError(f"d3rlpy holds {dataset.transition_count} transitions of the {len(steps.starts)} given")
    return dataset


def data_settings(algorithm: str, episodes: MDPDataset, window: int) -> dict[str, int]:
    """Settings the data fixes: a Decision Transformer reads `window` steps (ours do too) and
    embeds time steps up to the longest training episode."""
    if not PEER_ALGORITHMS[algorithm].return_conditioned:
        return {}
    return {"context_size": window, "max_timestep": max(episode.size() for episode in episodes.episodes) + 1}


def best_return(dataset: MDPDataset) -> float:
    """The best episode return of a dataset (a return-conditioned peer's target return scale)."""
    return max(float(episode.rewards.sum()) for episode in dataset.episodes)


def encoder_settings(kind: str, shape: tuple[int, ...]) -> dict[str, Any]:
    """The encoder and observation scaler of the peer's config for observations of `kind` and
    (channel-first) `shape`."""
    if kind == "grid":
        return {"encoder_factory": PixelEncoderFactory(**MINATAR_ENCODER)}
    if kind == "image" and min(shape[1:]) < NATURE_MIN_SIDE:
        return {"encoder_factory": PixelEncoderFactory(**SMALL_FRAME_ENCODER),
                "observation_scaler": PixelObservationScaler()}
    if kind == "image":
        return {"observation_scaler": PixelObservationScaler()}
    return {}  # vectors: d3rlpy's default vector encoder


def make_algo(algorithm: str, settings: dict[str, Any], kind: str, shape: tuple[int, ...]):
    """An unbuilt d3rlpy algorithm on the CPU: `algorithm` (wmrl.peers.algorithms) with `settings`
    over its defaults and the encoder for observations of `kind` and `shape`."""
    config = getattr(d3rlpy.algos, f"{PEER_ALGORITHMS[algorithm].d3rlpy_class}Config")
    return config(**settings, **encoder_settings(kind, shape)).create(device="cpu:0")


@dataclass
class Trained:
    """A trained peer: the d3rlpy algorithm, its losses and what training took."""

    algo: Any
    steps: int  # gradient steps taken
    seconds: float  # wall time of d3rlpy's fit alone
    curve: list[dict[str, float]]  # per epoch: step, train/<d3rlpy loss> (its mean over the epoch)


def train(algorithm: str, settings: dict[str, Any], kind: str, dataset: MDPDataset, steps: int, steps_per_epoch: int,
          seed: int, on_epoch: Callable[[Any, int], None] | None = None) -> Trained:
    """Train a peer on `dataset` for exactly `steps` gradient steps (epochs of `steps_per_epoch`,
    which must divide them): d3rlpy seeded with `seed`, its logger writing nothing, no file
    written. `on_epoch(algo, step)` is called at the end of every epoch (inside the timed fit)."""
    if steps_per_epoch <= 0 or steps % steps_per_epoch:
        raise ValueError(f"{steps} gradient steps do not split into epochs of {steps_per_epoch}")
    d3rlpy.seed(seed)
    algo = make_algo(algorithm, settings, kind, dataset.episodes[0].observations.shape[1:])
    epochs = steps // steps_per_epoch

    def callback(fitted, _epoch: int, step: int) -> None:  # after every step (both of d3rlpy's fit loops)
        if on_epoch is not None and step % steps_per_epoch == 0:
            on_epoch(fitted, step)

    curve = CurveAdapterFactory()
    started = time.perf_counter()
    algo.fit(dataset, n_steps=steps, n_steps_per_epoch=steps_per_epoch, experiment_name=algorithm,
             with_timestamp=False, logger_adapter=curve, show_progress=False, save_interval=epochs + 1,
             callback=callback)
    seconds = time.perf_counter() - started
    return Trained(algo, algo.grad_step, seconds, curve.rows)


class CurveAdapter(NoopAdapter):
    """A d3rlpy logger adapter that writes nothing and keeps the losses its logger commits at the end
    of each epoch (their means over the epoch), one row per epoch: step, train/<loss>."""

    def __init__(self, rows: list[dict[str, float]]):
        self.rows = rows

    def before_write_metric(self, epoch: int, step: int) -> None:
        self.rows.append({"step": step})

    def write_metric(self, epoch: int, step: int, name: str, value: float) -> None:
        if not name.startswith("time_"):
            self.rows[-1][f"train/{name}"] = value


class CurveAdapterFactory(LoggerAdapterFactory):
    def __init__(self):
        self.rows: list[dict[str, float]] = []

    def create(self, algo, experiment_name: str, n_steps_per_epoch: int) -> CurveAdapter:
        return CurveAdapter(self.rows)


def trained_modules(algo) -> dict[str, torch.nn.Module]:
    """The torch modules of a built algorithm by d3rlpy's names (q_funcs, targ_q_funcs; imitator)."""
    return algo.impl.modules.get_torch_modules()


def parameter_count(algo) -> int:
    """Parameters of the network that acts: the Q-functions (CQL) or the policy (BC), no target copies."""
    return sum(p.numel() for name, module in trained_modules(algo).items() if not name.startswith("targ_")
               for p in module.parameters())


def checkpoint(algo, algorithm: str, settings: dict[str, Any], kind: str, best: float) -> dict[str, Any]:
    """What ``last.pt`` holds: plain values and tensors only (``torch.load(weights_only=True)``),
    with `best`, the training episodes' best return."""
    return {"algo": algorithm, "settings": dict(settings), "obs_kind": kind, "best_return": best,
            "observation_shape": list(algo.impl.observation_shape), "action_size": int(algo.impl.action_size),
            "d3rlpy": d3rlpy.__version__,
            "modules": {name: module.state_dict() for name, module in trained_modules(algo).items()}}


def load_algo(saved: dict[str, Any]):
    """The algorithm of a `checkpoint`, rebuilt and holding its weights."""
    algo = make_algo(saved["algo"], saved["settings"], saved["obs_kind"], tuple(saved["observation_shape"]))
    algo.create_impl(tuple(saved["observation_shape"]), saved["action_size"])
    for name, module in trained_modules(algo).items():
        module.load_state_dict(saved["modules"][name])
    return algo

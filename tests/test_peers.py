"""The d3rlpy peers: our few-shot episodes become d3rlpy's dataset transition for transition, a
peer trains for our gradient steps and saves weights-only, the same seed gives the same bytes,
evaluation plays it, and config mistakes name their key. The online peers (stable-baselines3 DQN
and PPO in the real environment) likewise."""

import dataclasses
import os

import d3rlpy
import numpy as np
import polars as pl
import pytest
import torch

from conftest import DQN_TINY, ROOT, job_directory, prepare_tracking, run_twice
from wmrl.config import ConfigError, compose
from wmrl.dag.specs import evaluate_spec, finetune_spec
from wmrl.dag.targets import methods_pattern
from wmrl.data.dataset import encode_obs
from wmrl.data.windows import few_shot, task_steps
from wmrl.methods.online import ONLINE
from wmrl.methods.peer import PEER
from wmrl.peers import d3rlpy as peer
from wmrl.peers.algorithms import PEER_ALGORITHMS

OBS = {"kind": "grid", "shape": [3, 3, 2], "dtype": "bool", "channels": ["a", "b"], "encoding": "packbits"}
CARD = {"task": "toy", "obs": OBS, "action": {"kind": "discrete", "n": 3}}


def toy_frame(episodes: list[tuple[int, str]]) -> pl.DataFrame:
    """Episodes of (transitions, how it ends: "terminated" | "truncated"), each with a final row,
    random observations that differ on every row."""
    rng = np.random.default_rng(0)
    rows = []
    for episode, (length, end) in enumerate(episodes):
        for t in range(length + 1):
            final, last = t == length, t == length - 1
            rows.append({"episode": episode, "t": t, "action": None if final else int(rng.integers(3)),
                         "reward": None if final else float(rng.normal()),
                         "terminated": None if final else last and end == "terminated",
                         "truncated": None if final else last and end == "truncated",
                         "policy_step": 100 * episode + t})
    frame = pl.DataFrame(rows, schema={"episode": pl.Int64, "t": pl.Int32, "action": pl.Int16, "reward": pl.Float32,
                                       "terminated": pl.Boolean, "truncated": pl.Boolean, "policy_step": pl.Int64})
    return frame.with_columns(obs=encode_obs(rng.random((len(frame), *OBS["shape"])) < 0.5))


def our_transitions(frame: pl.DataFrame) -> list[dict]:
    """(obs, action, reward, next obs, terminal) of every transition row, as our learners read them."""
    obs = peer.peer_observations(task_steps(frame, OBS, "toy", 0).obs, "grid")
    found = []
    for i, row in enumerate(frame.iter_rows(named=True)):
        if row["action"] is not None:
            found.append({"obs": obs[i], "action": row["action"], "reward": row["reward"], "next_obs": obs[i + 1],
                          "terminal": row["terminated"]})
    return found


def d3rlpy_transitions(dataset) -> list[dict]:
    picker = d3rlpy.dataset.BasicTransitionPicker()
    found = []
    for episode in dataset.episodes:
        for index in range(episode.transition_count):
            t = picker(episode, index)
            found.append({"obs": t.observation, "action": int(t.action[0]), "reward": float(t.reward[0]),
                          "next_obs": t.next_observation, "terminal": bool(t.terminal)})
    return found


def test_conversion_keeps_every_transition_and_marks_terminals_and_timeouts():
    # a terminated episode, one cut by the time limit, one cut by the few-shot slice (at 3 of its 6)
    frame = few_shot(toy_frame([(4, "terminated"), (5, "truncated"), (6, "terminated")]), 12, 0.0, "toy")
    assert frame.filter(pl.col("episode") == 2)["truncated"].drop_nulls().to_list() == [False, False, True]
    dataset = peer.to_mdp_dataset(frame, CARD)
    ours, theirs = our_transitions(frame), d3rlpy_transitions(dataset)
    assert dataset.transition_count == len(theirs) == len(ours) == 12
    assert [e.terminated for e in dataset.episodes] == [True, False, False]
    assert [e.transition_count for e in dataset.episodes] == [4, 5, 3]
    assert dataset.dataset_info.action_size == 3 and theirs[0]["obs"].dtype == np.float32
    assert theirs[0]["obs"].shape == (2, 3, 3)  # channel-first
    for mine, read in zip(ours, theirs, strict=True):
        assert (mine["action"], mine["terminal"]) == (read["action"], read["terminal"])
        assert read["reward"] == pytest.approx(mine["reward"])
        assert np.array_equal(mine["obs"], read["obs"])
        # a terminal transition does not bootstrap: d3rlpy gives it a zero next observation
        expected_next = np.zeros_like(mine["next_obs"]) if mine["terminal"] else mine["next_obs"]
        assert np.array_equal(expected_next, read["next_obs"])


def test_a_peer_trains_on_the_rows_finetune_trains_on(random_dataset):
    from wmrl.data import open_dataset
    from wmrl.data.windows import read_few_shot, split_episodes
    from wmrl.train.peer import training_episodes

    dataset = open_dataset(random_dataset)
    episodes = training_episodes(dataset, {"transitions": 700, "start": 0.5, "largest": 700}, 0.2)
    # finetune's train split of the same slice (wmrl.train.finetune: read_few_shot, then split_episodes)
    frame = split_episodes(read_few_shot(dataset, 700, 0.5), "train", 0.2, str(dataset.directory))
    ours = task_steps(frame, dataset.card["obs"], "breakout", 0)
    assert 0 < episodes.transition_count == len(ours.starts) < 700
    theirs = np.concatenate([episode.actions[:episode.transition_count, 0] for episode in episodes.episodes])
    assert np.array_equal(theirs, ours.action[ours.starts])


def test_the_static_settings_are_the_scalar_fields_of_d3rlpys_configs():
    not_settable = {"discrete_cql": {"compile_graph"}, "discrete_bc": {"compile_graph", "gamma"},  # CUDA; BC has no TD
                    # the data fixes context and time steps; no discounting; the schedule's end is for long runs
                    "discrete_dt": {"compile_graph", "gamma", "context_size", "max_timestep", "final_tokens"}}
    for name, algorithm in PEER_ALGORITHMS.items():
        config = getattr(d3rlpy.algos, f"{algorithm.d3rlpy_class}Config")
        scalars = {f.name: f.type for f in dataclasses.fields(config) if f.type in (int, float, bool)}
        assert {key: scalars.get(key) for key in algorithm.settings} == algorithm.settings, name
        assert set(scalars) - set(algorithm.settings) == not_settable[name]


@pytest.fixture(scope="module")
def breakout_episodes(random_dataset):
    from wmrl.data import open_dataset

    dataset = open_dataset(random_dataset)
    return peer.to_mdp_dataset(few_shot(dataset.read(), 600, 0.0, "fixture"), dataset.card)


@pytest.mark.parametrize("algorithm", list(PEER_ALGORITHMS))
def test_a_trained_peer_saves_weights_only_and_rebuilds_to_act_alike(algorithm, breakout_episodes, tmp_path):
    torch.set_num_threads(1)
    method = compose({"scale": "smoke"}, ROOT).finetune.methods[f"d3rlpy_{algorithm.removeprefix('discrete_')}"]
    settings = {**method.settings, **peer.data_settings(algorithm, breakout_episodes, 4)}
    seen = []
    trained = peer.train(algorithm, settings, "grid", breakout_episodes, 20, 10, seed=0,
                         on_epoch=lambda algo, step: seen.append((algo.grad_step, step)))
    assert trained.steps == 20 and trained.seconds > 0 and [row["step"] for row in trained.curve] == [10, 20]
    assert seen == [(10, 10), (20, 20)]  # the callback sees the algorithm at each epoch's end
    assert all(key.startswith("train/") for row in trained.curve for key in row if key != "step")
    torch.save(peer.checkpoint(trained.algo, algorithm, settings, "grid", 1.0), tmp_path / "last.pt")
    saved = torch.load(tmp_path / "last.pt", weights_only=True)
    assert saved["observation_shape"] == [4, 10, 10] and saved["action_size"] == 6 and saved["best_return"] == 1.0
    rebuilt = peer.load_algo(saved)
    obs = np.concatenate([episode.observations for episode in breakout_episodes.episodes])[:64]
    if algorithm == "discrete_dt":  # a sequence model acts through d3rlpy's stateful wrapper
        assert settings["context_size"] == 4
        assert settings["max_timestep"] == max(e.size() for e in breakout_episodes.episodes) + 1
        from d3rlpy.algos import GreedyTransformerActionSampler

        acting = [algo.as_stateful_wrapper(3.0, GreedyTransformerActionSampler()) for algo in (rebuilt, trained.algo)]
        first, second = ([wrapper.predict(o, 0.0) for o in obs[:12]] for wrapper in acting)
        assert first == second
        from wmrl.evaluate.rollout import PeerDecisionAgent, play

        env = {"env": "minatar:breakout", "env_kwargs": {}, "max_episode_steps": 30}
        agents = [PeerDecisionAgent(tmp_path / "last.pt", {"mode": "best", "value": 2.0}, True, 0) for _ in "ab"]
        assert agents[0].target == 2.0
        (returns_a, lengths_a), (returns_b, lengths_b) = (play(agent, env, 2, 5) for agent in agents)
        assert np.array_equal(returns_a, returns_b) and np.array_equal(lengths_a, lengths_b)  # sampled, seeded
    else:
        assert np.array_equal(rebuilt.predict(obs), trained.algo.predict(obs))
    for name, module in peer.trained_modules(rebuilt).items():
        for key, value in module.state_dict().items():
            assert torch.equal(value, peer.trained_modules(trained.algo)[name].state_dict()[key])


@pytest.fixture(scope="module")
def peer_job(random_dataset, tmp_path_factory):
    """The train_peer job of d3rlpy_cql, twice from the same seed (two work dirs), in a fresh
    directory whose every file afterwards is listed by the test."""
    from wmrl.train.peer import train_peer

    tmp, monkeypatch = job_directory(tmp_path_factory, "peer")
    cfg = compose({"scale": "smoke"}, ROOT)
    outputs = {}
    for run in ("a", "b"):
        spec = finetune_spec(cfg, "breakout", 1000, "d3rlpy_cql", PEER.model, 0)
        prepare_tracking(spec["mlflow_experiment"])
        spec["inputs"]["dataset"] = str(random_dataset)
        spec["finetune"] |= {"steps": 20, "validate_every": 10}
        spec["work_dir"] = f"work/{run}"
        (tmp / run).mkdir()
        outputs[run] = {name: f"{run}/{file}" for name, file in PEER.files.items()}
        train_peer(spec, outputs[run])
    yield cfg, outputs, tmp
    monkeypatch.undo()


def test_the_peer_job_writes_weights_only_a_curve_and_a_timed_record(peer_job):
    import json

    _, outputs, tmp = peer_job
    out = {name: tmp / path for name, path in outputs["a"].items()}
    saved = torch.load(out["last"], weights_only=True)
    assert saved["algo"] == "discrete_cql" and set(saved["modules"]) == {"q_funcs", "targ_q_funcs"}
    assert saved["settings"]["target_update_interval"] == 100
    curve = pl.read_parquet(out["curve"])
    assert curve["step"].to_list() == [10, 20]
    assert {"train/loss", "train/td_loss", "train/conservative_loss"} <= set(curve.columns)
    record = json.loads(out["mlflow"].read_text())
    assert record["training"]["steps"] == 20 and record["training"]["seconds"] > 0
    assert record["parameters"] > 0 and record["rule"] == "train_peer" and record["method"] == "d3rlpy_cql"
    assert list(record["datasets"].values())[0]
    # nothing else is written: no d3rlpy_logs/, no model files of d3rlpy's own, no leftover .partial
    assert sorted(os.listdir(tmp)) == ["a", "b", "mlruns.db", "work"]
    assert sorted(os.listdir(tmp / "a")) == sorted(PEER.files.values())


def test_the_same_seed_gives_the_same_weights_bytes(peer_job):
    _, outputs, tmp = peer_job
    assert (tmp / outputs["a"]["last"]).read_bytes() == (tmp / outputs["b"]["last"]).read_bytes()
    assert pl.read_parquet(tmp / outputs["a"]["curve"]).equals(pl.read_parquet(tmp / outputs["b"]["curve"]))


def plays_its_last_checkpoint_alike_twice(spec, tmp, outputs) -> None:
    """The evaluation stage plays a trained run's `last` checkpoint for 3 short episodes, twice alike."""
    from wmrl.evaluate.rollout import evaluate

    spec["inputs"]["checkpoints"] = {"last": str(tmp / outputs["last"])}
    spec["inputs"]["record"] = str(tmp / outputs["mlflow"])
    spec |= {"episodes": 3, "max_episode_steps": 60}
    first, second = (evaluate(spec, {"rows": str(tmp / f"eval-{n}.parquet"), "lineage": str(tmp / f"eval-{n}.json")})
                     for n in "ab")
    assert first.equals(second)
    assert first.select("checkpoint", "planning").unique().rows() == [("last", "none")]
    assert first["episode"].n_unique() == 3 and (first["length"] <= 60).all()


def test_evaluation_plays_the_peer_at_its_last_checkpoint(peer_job):
    cfg, outputs, tmp = peer_job
    spec = evaluate_spec(cfg, "breakout", 1000, "d3rlpy_cql", PEER.model, 0)
    assert spec["agent"] == "wmrl.evaluate.rollout:PeerAgent" and spec["planning"] is None
    assert list(spec["inputs"]["checkpoints"]) == ["last"]
    plays_its_last_checkpoint_alike_twice(spec, tmp, outputs["a"])


def test_peers_train_on_the_few_shot_data_alone_in_their_own_rule():
    cfg = compose({"scale": "smoke"}, ROOT)
    spec = finetune_spec(cfg, "breakout", 1000, "d3rlpy_bc", PEER.model, 1)
    assert spec["inputs"] == {"dataset": "data/smoke/minatar/breakout/dqn/seed0"}
    assert spec["tags"]["rule"] == "train_peer"
    assert spec["finetune"] == {key: cfg.finetune[key] for key in ("steps", "validate_every", "holdout_fraction")}
    data = cfg.finetune.data
    assert spec["data"] == {"policy": data.policy, "seed": data.seed, "transitions": 1000, "largest": 1000,
                            "start": data.start, "control": False}
    changed = compose({"scale": "smoke", "finetune": {"learning_rate": 1.0, "batch_size": 8}}, ROOT)
    assert finetune_spec(changed, "breakout", 1000, "d3rlpy_bc", PEER.model, 1) == spec  # our settings are not theirs
    patterns = [set(methods_pattern(cfg, rule).split("|")) for rule in ("finetune", "train_online", "train_peer")]
    decision = {"dt_scratch", "dt_pretrained", "dt_pretrained_lora", "dt_pretrained_lora_heads", "dt_pretrained_modt",
                "dt_pretrained_fourier"}
    assert patterns == [{"pretrained", "scratch", "bc", "pretrained_jowa", "pretrained_q_only"} | decision,
                        {"dqn_online", "ppo_online"}, {"d3rlpy_cql", "d3rlpy_bc", "d3rlpy_dt"}]
    dt = finetune_spec(cfg, "breakout", 1000, "d3rlpy_dt", PEER.model, 1)
    assert dt["finetune"]["window"] == cfg.finetune.window  # a DT peer reads windows as long as ours


@pytest.mark.parametrize("method, expected", [
    ({"kind": "peer", "algorithm": "discrete_sac"},
     "'finetune.methods.m.algorithm' must be one of discrete_cql, discrete_bc"),
    ({"kind": "peer", "algorithm": "discrete_cql", "settings": {"lr": 0.1}},
     "unknown key 'finetune.methods.m.settings.lr'; allowed keys for discrete_cql: learning_rate,"),
    ({"kind": "peer", "algorithm": "discrete_bc", "settings": {"batch_size": 0.5}},
     "'finetune.methods.m.settings.batch_size' must be int, got 0.5 (float)"),
    ({"kind": "joint", "settings": {"alpha": 1.0}}, "unknown key 'finetune.methods.m.settings'"),
    ({"kind": "peer", "algorithm": "discrete_bc", "loss": {"td": 0.0}},
     "unknown key 'finetune.methods.m.loss'; allowed keys under 'finetune.methods.m': kind, algorithm, settings"),
    ({"kind": "online", "algorithm": "a2c"}, "'finetune.methods.m.algorithm' must be one of dqn, ppo, got 'a2c'"),
])
def test_a_bad_peer_method_names_its_key(method, expected):
    with pytest.raises(ConfigError) as error:
        compose({"finetune": {"methods": {"m": method}}}, ROOT)
    assert expected in str(error.value) and "\n" not in str(error.value)


def test_a_running_peer_needs_epochs_that_divide_the_steps():
    steps = compose({}, ROOT).finetune.steps
    with pytest.raises(ConfigError, match=rf"peer d3rlpy_cql trains 'finetune.steps' \({steps}\) in epochs of "
                                          r"'finetune.validate_every' \(70\) steps"):
        compose({"finetune": {"validate_every": 70}}, ROOT)
    compose({"finetune": {"validate_every": 70, "methods_run": ["pretrained", "scratch"]},  # curve_methods: defined
             "report": {"variants": [], "claims": []}}, ROOT)  # no peer runs


def test_an_online_method_trains_the_algorithm_it_names_with_its_settings():
    cfg = compose({"scale": "smoke"}, ROOT)
    for method, section in (("dqn_online", "online"), ("ppo_online", "ppo")):
        spec = finetune_spec(cfg, "breakout", 1000, method, ONLINE.model, 0)
        algorithm = cfg.finetune.methods[method].algorithm
        assert spec["settings"] == {**cfg.finetune[section], "algorithm": algorithm, "steps": 1000}
        assert ONLINE.recipe(cfg, cfg.finetune.methods[method]) == f"online {algorithm.upper()} in the real environment"
    assert ONLINE.label("ppo_online", cfg.finetune.methods.ppo_online).endswith(" PPO)")


# (method, task, experiment): PPO on a MinAtar grid and on a vector, DQN on the grid
ONLINE_JOBS = [("ppo_online", "breakout", "minatar_transfer"), ("ppo_online", "cartpole", "cartpole"),
               ("dqn_online", "breakout", "minatar_transfer")]


@pytest.fixture(scope="module", params=ONLINE_JOBS, ids=lambda job: f"{job[0]}-{job[1]}")
def online_job(request, tmp_path_factory):
    """The train_online job of an online peer for 600 env steps, twice from the same seed (two work
    dirs), in a fresh directory."""
    from wmrl.train.online import train_online

    method, task, experiment = request.param
    tmp, monkeypatch = job_directory(tmp_path_factory, method)
    cfg = compose({"scale": "smoke", "experiment": experiment}, ROOT)

    def spec_of():
        spec = finetune_spec(cfg, task, 1000, method, ONLINE.model, 0)
        spec["settings"]["steps"] = 600
        return spec

    outputs = run_twice(tmp, ONLINE.files, spec_of, train_online)
    yield cfg, request.param, outputs, tmp
    monkeypatch.undo()


def test_the_online_job_writes_weights_only_a_curve_and_a_timed_record(online_job):
    import json

    _, (method, task, _), outputs, tmp = online_job
    out = {name: tmp / path for name, path in outputs["a"].items()}
    saved = torch.load(out["last"], weights_only=True)
    assert saved["settings"]["algorithm"] == method.removesuffix("_online") and saved["settings"]["steps"] == 600
    curve = pl.read_parquet(out["curve"])
    record = json.loads(out["mlflow"].read_text())
    # PPO: two whole rollouts of 250 steps (the 100 left are not taken), each 10 epochs of 5 minibatches
    if method == "ppo_online":
        assert curve["step"].max() <= 500 and record["training"]["steps"] == 2 * 10 * 5
        assert any(key.startswith("value_net.") for key in saved["policy"])
    else:
        assert curve["step"].max() <= 600 and record["training"]["steps"] > 0
    assert curve.height > 0 and curve["episode_return"].is_not_null().all()
    assert record["training"]["seconds"] > 0 and record["parameters"] > 0
    assert record["rule"] == "train_online" and record["method"] == method and record["task"] == task
    assert sorted(os.listdir(tmp / "a")) == sorted(ONLINE.files.values())


def test_the_same_seed_gives_the_same_online_weights_bytes(online_job):
    _, _, outputs, tmp = online_job
    assert (tmp / outputs["a"]["last"]).read_bytes() == (tmp / outputs["b"]["last"]).read_bytes()
    assert pl.read_parquet(tmp / outputs["a"]["curve"]).equals(pl.read_parquet(tmp / outputs["b"]["curve"]))


def test_evaluation_plays_the_online_peer_at_its_last_checkpoint(online_job):
    cfg, (method, task, _), outputs, tmp = online_job
    spec = evaluate_spec(cfg, task, 1000, method, ONLINE.model, 0)
    assert spec["agent"] == "wmrl.evaluate.rollout:OnlineAgent" and spec["planning"] is None
    spec["score"]["random"] = spec["score"]["random"] or 20.0  # cartpole's comes from its random data
    plays_its_last_checkpoint_alike_twice(spec, tmp, outputs["a"])


def test_an_online_checkpoint_without_its_algorithm_is_dqns_and_acts_by_its_q_networks_argmax(tmp_path):
    from wmrl.data.behaviour import dqn_agent
    from wmrl.envs import make_task_env
    from wmrl.evaluate.rollout import OnlineAgent
    from wmrl.files import save_checkpoint

    env = {"env": "minatar:breakout", "env_kwargs": {}, "max_episode_steps": None}
    agent = dqn_agent(make_task_env(env), DQN_TINY, seed=3)
    save_checkpoint({"policy": agent.policy.state_dict(), "settings": DQN_TINY}, tmp_path / "last.pt")
    player = OnlineAgent(tmp_path / "last.pt", env)
    obs = np.random.default_rng(0).random((4, 10, 10, 4)) < 0.5  # breakout's grids
    player.reset(obs)
    q_values = agent.policy.q_net(torch.as_tensor(obs, dtype=torch.float32).permute(0, 3, 1, 2))
    assert np.array_equal(player.act(np.arange(4)), q_values.argmax(-1).numpy())

"""Return-conditioned fine-tuning (Decision Transformer): returns-to-go, the Fourier head, LoRA
through peft, initialization from the pretrained model, the agent's target return, checkpoints."""

import copy
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, finetune_methods, job_directory
from wmrl.config import ConfigError, compose
from wmrl.dag.specs import evaluate_spec
from wmrl.data.windows import few_shot, read_few_shot, returns_to_go, task_steps
from wmrl.models.config import DecisionConfig, LoraConfig, ModelConfig
from wmrl.models.decision_transformer import DecisionTransformer, FourierHead
from wmrl.models.world_model import ModelShape, WorldActionModel
from wmrl.rl.rcsl import decision_loss

SHAPE = ModelShape("grid", (10, 10, 4), 6, 2, 8, (3, 6))
SPEC = ModelConfig(dim=32, layers=1, heads=2)


def batch(size: int = 4, k: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randint(0, 2, (size, k + 1, 10, 10, 4), generator=g).float(),
            "actions": torch.randint(0, 3, (size, k), generator=g), "task": torch.zeros(size, dtype=torch.long),
            "reward": torch.rand(size, k, generator=g), "return_to_go": 5 * torch.rand(size, k, generator=g),
            "terminated": torch.zeros(size, k, dtype=torch.bool), "mask": torch.ones(size, k, dtype=torch.bool)}


def test_returns_to_go_sum_the_rewards_left_in_each_episode():
    # episode 0 terminates after rewards 1, 2, 3; episode 1 is cut (time limit or slice) after 4, 5
    reward = np.array([1, 2, 3, 0, 4, 5, 0], dtype=np.float32)  # 0 on each final row
    episode_end = np.array([3, 3, 3, 3, 6, 6, 6])
    assert returns_to_go(reward, episode_end).tolist() == [6, 5, 3, 0, 9, 5, 0]


def test_the_few_shot_slice_counts_no_reward_beyond_its_cut(random_dataset):
    from wmrl.data import open_dataset

    dataset = open_dataset(random_dataset)
    whole = dataset.read()
    sliced = read_few_shot(dataset, 700, 0.0)
    steps = task_steps(sliced, dataset.card["obs"], "breakout", 0)
    last = sliced["episode"].max()
    first_row = int(np.flatnonzero(sliced["episode"].to_numpy() == last)[0])
    kept = sliced.filter(sliced["episode"] == last)["reward"].drop_nulls().sum()
    assert steps.return_to_go[first_row] == pytest.approx(kept)  # the cut episode: its kept rewards only
    full = whole.filter(whole["episode"] == whole["episode"].unique().sort()[int(last)])["reward"].drop_nulls()
    assert kept <= full.sum() and len(full) >= (sliced["episode"] == last).sum() - 1
    assert few_shot(whole, 700, 0.0, "x")["reward"].equals(sliced["reward"])


def test_the_fourier_head_is_a_density_and_a_categorical_over_valid_actions():
    head = FourierHead(16, 6, 3)
    features = torch.randn(5, 16)
    z = torch.linspace(-1, 1, 40_001)
    density = head.density(features, z)
    assert (density >= -1e-6).all()
    assert torch.allclose(torch.trapezoid(density, z), torch.ones(5), atol=1e-4)  # integral over [-1, 1] is 1
    model = DecisionTransformer(SHAPE, SPEC, DecisionConfig(action_head="fourier", frequencies=3))
    logits = model.policy_logits(torch.randn(4, 7, 32), torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(logits.softmax(-1).sum(-1), torch.ones(4, 7))
    assert (logits[:2].argmax(-1) < 3).all()  # task 0 has 3 actions: never a fourth
    with pytest.raises(ValueError, match="at most 3 frequencies"):
        FourierHead(16, 6, 4)


def test_the_fourier_regularizer_enters_the_loss():
    model = DecisionTransformer(SHAPE, SPEC, DecisionConfig(action_head="fourier", fourier_regularizer=0.5))
    loss, parts = decision_loss(model, batch(), model.decision)
    assert set(parts) == {"action", "fourier"}
    assert loss.item() == pytest.approx(parts["action"].item() + 0.5 * parts["fourier"].item(), rel=1e-5)


def test_the_auxiliary_heads_exist_only_with_a_weight():
    plain = DecisionTransformer(SHAPE, SPEC, DecisionConfig())
    assert plain.next_obs_head is None and plain.reward_head is None and plain.q_head is None
    _, parts = decision_loss(plain, batch(), plain.decision)
    assert set(parts) == {"action"}
    modt = DecisionTransformer(SHAPE, SPEC, DecisionConfig(next_obs=1.0, reward=0.5))
    _, parts = decision_loss(modt, batch(), modt.decision)
    assert set(parts) == {"action", "next_obs", "reward"}


def test_the_policy_reads_only_the_past():
    model = DecisionTransformer(SHAPE, SPEC, DecisionConfig()).eval()
    first = batch(2, 4)
    later = {**first, "actions": first["actions"].clone(), "return_to_go": first["return_to_go"].clone()}
    later["actions"][:, 2] = (later["actions"][:, 2] + 1) % 3  # a_2 changes
    a, b = (model(x["obs"], x["actions"], x["return_to_go"], x["task"])["policy"] for x in (first, later))
    assert torch.equal(a[:, :3], b[:, :3])  # pi at o_0 .. o_2 has not seen a_2
    assert not torch.equal(a[:, 3], b[:, 3])


def test_a_pretrained_world_model_initializes_all_but_the_new_parts():
    from wmrl.models.decision_transformer import load_pretrained

    world = WorldActionModel(SHAPE, SPEC)
    model = DecisionTransformer(SHAPE, SPEC, DecisionConfig(next_obs=1.0))
    loaded = load_pretrained(model, world.state_dict())
    assert loaded == ["action_embedding", "backbone", "encoder", "next_obs_head", "norm", "task_embedding"]
    assert torch.equal(model.backbone.position.weight, world.backbone.position.weight)
    with pytest.raises(ValueError, match="lack \\['encoder'\\]"):
        load_pretrained(model, {k: v for k, v in world.state_dict().items() if not k.startswith("encoder.")})


def test_lora_trains_only_the_adapters_and_the_named_modules_and_merges_exactly():
    from wmrl.train.finetune import add_adapters
    from wmrl.train.module import WorldModelModule

    lora = asdict(LoraConfig(rank=2, trainable=["return_embedding", "action_head"]))
    module = WorldModelModule(asdict(SHAPE), asdict(SPEC), {}, {}, ["a", "b"], asdict(DecisionConfig(lora=lora)))
    add_adapters(module, lora)
    trainable = {name: p.numel() for name, p in module.model.named_parameters() if p.requires_grad}
    adapters = {name for name in trainable if ".lora_" in name}
    # rank 2 on qkv (32 -> 96) and proj (32 -> 32) of one block: 2 x (32 + 96) + 2 x (32 + 32)
    assert sum(trainable[name] for name in adapters) == 2 * (32 + 96) + 2 * (32 + 32)
    others = {name.removeprefix("base_model.model.").split(".")[0] for name in set(trainable) - adapters}
    assert others == {"return_embedding", "action_head"}
    before = {name: p.detach().clone() for name, p in module.model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in module.model.parameters() if p.requires_grad], lr=0.1)
    for step in range(3):
        loss, _ = decision_loss(module.model, batch(seed=step), module.weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {name for name, p in module.model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and changed <= set(trainable)
    merged = copy.deepcopy(module.model).merge_and_unload()
    assert not any("lora" in key for key in merged.state_dict())
    x = batch(seed=9)
    with torch.no_grad():
        wrapped = module.model(x["obs"], x["actions"], x["return_to_go"], x["task"])["policy"]
        plain = merged(x["obs"], x["actions"], x["return_to_go"], x["task"])["policy"]
    assert torch.allclose(wrapped, plain, atol=1e-5)


def test_lamos_lora_also_trains_the_encoder_by_default():
    from wmrl.train.finetune import add_adapters
    from wmrl.train.module import WorldModelModule

    lora = asdict(LoraConfig())
    module = WorldModelModule(asdict(SHAPE), asdict(SPEC), {}, {}, ["a", "b"], asdict(DecisionConfig(lora=lora)))
    add_adapters(module, lora)
    trained = {name.removeprefix("base_model.model.").split(".")[0]
               for name, p in module.model.named_parameters() if p.requires_grad}
    assert trained == {"backbone", "encoder", "return_embedding", "action_head"}  # backbone: its adapters only
    with pytest.raises(ValueError, match="names 'decoder', which the model does not have"):
        add_adapters(WorldModelModule(asdict(SHAPE), asdict(SPEC), {}, {}, ["a", "b"], asdict(DecisionConfig())),
                     {**lora, "trainable": ["decoder"]})


@pytest.fixture(scope="module")
def decision_runs(random_dataset, tmp_path_factory):
    """dt_scratch, then dt_pretrained_lora_heads from it (any model of this suite's shape stands in for
    the pretrained one), fine-tuned for a few steps on the fixture."""
    tmp, monkeypatch = job_directory(tmp_path_factory, "decision")
    cfg = compose({"scale": "smoke"}, ROOT)

    def world_model(done):  # a world-action model of dt_scratch's shape stands in for the pretrained one
        scratch = torch.load(done["dt_scratch"]["last"], weights_only=True)
        world = WorldActionModel(ModelShape(**scratch["shape"]), ModelConfig(**scratch["model"]))
        torch.save({**scratch, "state_dict": world.state_dict()}, tmp / "pretrained.pt")
        return str(tmp / "pretrained.pt")

    outputs = finetune_methods(cfg, ["dt_scratch", "dt_pretrained_lora_heads"], random_dataset, tmp, 8, world_model)
    yield cfg, outputs, tmp
    monkeypatch.undo()


def test_a_decision_checkpoint_loads_weights_only_with_its_settings(decision_runs):
    from wmrl.models.checkpoint import load_model

    _, outputs, _ = decision_runs
    for method, out in outputs.items():
        model, checkpoint = load_model(out["last"])
        assert isinstance(model, DecisionTransformer) and checkpoint["best_return"] >= 0
        assert not any("lora" in key for key in checkpoint["state_dict"])  # adapters merged
        record = json.loads(Path(out["mlflow"]).read_text())
        if method == "dt_pretrained_lora_heads":
            assert record["trained_parameters"] < 10_000 < record["parameters"]
            merged = sum(value.numel() for value in torch.load(out["last"], weights_only=True)["state_dict"].values())
            assert record["parameters"] == merged
            assert "backbone" in record["from_pretraining"] and "action_head" not in record["from_pretraining"]
        else:
            assert record["trained_parameters"] == record["parameters"] and record["from_pretraining"] == []


def test_the_agent_asks_for_its_target_and_lowers_it_by_each_reward(decision_runs, monkeypatch):
    from wmrl.envs import make_env
    from wmrl.evaluate.rollout import DecisionAgent

    _, outputs, _ = decision_runs
    best = torch.load(outputs["dt_scratch"]["last"], weights_only=True)["best_return"]
    agent = DecisionAgent(outputs["dt_scratch"]["last"], "breakout", 4, {"mode": "best", "value": 2.0}, False)
    assert agent.target == 2.0 * best
    seen = []
    original = agent.model.return_tokens
    monkeypatch.setattr(agent.model, "return_tokens", lambda r, task: seen.append(r.clone()) or original(r, task))
    env = make_env("minatar:breakout", {}, 100)
    obs, _ = env.reset(seed=0)
    agent.reset(obs[None])
    received = []
    for _ in range(6):
        action = agent.act(np.array([0]))
        obs, reward, *_ = env.step(int(action[0]))
        reward = 1.0 if not received else reward  # at least one reward to subtract
        received.append(reward)
        agent.observe(np.array([0]), action, obs[None], np.array([reward], dtype=np.float32))
    agent.act(np.array([0]))
    expected = agent.target - np.cumsum([0.0] + received)
    assert np.allclose(seen[-1][0].numpy(), expected[-4:])  # the last 3 steps before and the current R_t
    assert seen[0].tolist() == [[agent.target]]


def test_evaluating_a_decision_method_is_deterministic_for_either_action_choice(decision_runs):
    from wmrl.evaluate.rollout import evaluate

    cfg, outputs, tmp = decision_runs
    spec = evaluate_spec(cfg, "breakout", 1000, "dt_pretrained_lora_heads", "small-transformer", 0)
    assert spec["agent"] == "wmrl.evaluate.rollout:DecisionAgent" and spec["planning"] is None
    assert spec["target_return"] == {"mode": "best", "value": 1.0} and spec["actions"] == "greedy"
    spec["inputs"]["checkpoints"] = {name: outputs["dt_pretrained_lora_heads"][name] for name in ("last", "best")}
    spec["inputs"]["record"] = outputs["dt_pretrained_lora_heads"]["mlflow"]
    for actions in ("greedy", "sampled"):
        spec |= {"episodes": 2, "max_episode_steps": 40, "actions": actions}
        first, second = (evaluate(spec, {"rows": str(tmp / f"{actions}{n}.parquet"),
                                         "lineage": str(tmp / f"{actions}{n}.json")}) for n in "ab")
        assert first.equals(second)


@pytest.mark.parametrize("method, expected", [
    ({"kind": "decision", "init": "peer"}, "'finetune.methods.mine.init' must be one of pretrained, scratch"),
    ({"kind": "decision", "loss": {"td": 0.0}}, "unknown key 'finetune.methods.mine.loss'; allowed keys under "
                                                "'finetune.methods.mine': kind, init, learning_rate, model, decision"),
    ({"kind": "decision", "decision": {"action_head": "mixture"}}, "must be one of linear, fourier"),
    ({"kind": "dt"}, "'finetune.methods.mine.kind' must be one of joint, decision, online, peer, imagine, got 'dt'"),
    ({"kind": "joint", "decision": {"next_obs": 1.0}}, "unknown key 'finetune.methods.mine.decision'"),
    ({"kind": "decision", "decision": {"lora": {"rank": 0}}}, "lora.rank' must be at least 1"),
])
def test_a_bad_decision_method_names_its_key(method, expected):
    with pytest.raises(ConfigError, match=expected):
        compose({"finetune": {"methods": {"mine": method}}}, ROOT)


def test_a_steps_three_tokens_share_its_position_in_the_world_models_layout():
    from wmrl.models.decision_transformer import step_positions

    assert step_positions(8).tolist() == [0, 0, 1, 2, 2, 3, 4, 4]  # R_0 o_0 a_0 R_1 o_1 a_1 R_2 o_2
    model = DecisionTransformer(ModelShape("grid", (10, 10, 4), 6, 2, 4, (3, 6)), SPEC, DecisionConfig())
    x = batch(2, 4)  # K = 4 steps fit a model of 2 x 4 + 1 positions, like the joint objective's windows
    assert model(x["obs"], x["actions"], x["return_to_go"], x["task"])["policy"].shape == (2, 4, 6)
    compose({"scale": "paper", "experiment": "minatar_transfer"}, ROOT)  # pretrain.window = finetune.window
    with pytest.raises(ConfigError, match="'tasks.breakout.target_return.mode' must be one of best, absolute"):
        compose({"tasks": {"breakout": {"target_return": {"mode": "max"}}}}, ROOT)


def test_a_task_may_ask_for_its_own_target_return():
    cfg = compose({"tasks": {"breakout": {"target_return": {"mode": "absolute", "value": 12.0}}}}, ROOT)
    spec = evaluate_spec(cfg, "breakout", 1000, "d3rlpy_dt", "d3rlpy", 0)
    assert spec["target_return"] == {"mode": "absolute", "value": 12.0}
    assert "target_return" not in evaluate_spec(cfg, "breakout", 1000, "d3rlpy_cql", "d3rlpy", 0)


@pytest.mark.e2e
def test_the_return_conditioned_experiment_runs_end_to_end_at_smoke_scale(smoke_run, tmp_path):
    """dt_transfer in a copy of the default experiment's smoke run: the same datasets, its own
    pretraining, every return-conditioned method and d3rlpy's DT evaluated, the claims judged."""
    import shutil
    import subprocess

    import polars as pl

    from conftest import snakemake_command, snakemake_env

    workdir = tmp_path / "smoke"
    shutil.copytree(smoke_run, workdir, symlinks=True)  # with Snakemake's metadata and the files' times
    result = subprocess.run(snakemake_command("--cores", "2", "--config", "scale=smoke", "experiment=dt_transfer"),
                            cwd=workdir, capture_output=True, text=True, env=snakemake_env(), timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "generate_dataset" not in result.stdout + result.stderr  # the default experiment's data serve
    report = workdir / "results/smoke/dt_transfer/report"
    cfg = compose({"scale": "smoke", "experiment": "dt_transfer"}, ROOT)
    aggregate = pl.read_csv(report / "tables/aggregate.csv")
    assert set(aggregate["method"]) == set(cfg.finetune.methods_run)
    claims = pl.read_csv(report / "tables/claims.csv")
    assert claims["claim"].to_list() == [claim.claim for claim in cfg.report.claims]
    assert set(claims["verdict"]) == {"too few runs to decide"}  # smoke: 1 seed x 1 held-out task
    methods = pl.read_csv(report / "tables/training_speed.csv")
    lora = methods.filter(pl.col("method") == "dt_pretrained_lora_heads").row(0, named=True)
    assert lora["trained_parameters"] < 10_000 < lora["parameters"] and "backbone" in lora["from_pretraining"]

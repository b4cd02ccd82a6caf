"""The imagination agent (kind imagine): its returns, its rollouts, the gradients it sends, its
resume, and how it enters the pipeline (one module and a config entry, like every method)."""

from __future__ import annotations

import json
import os

import numpy as np
import polars as pl
import pytest
import torch

from conftest import ROOT, job_directory, run_twice
from wmrl.config import ConfigError, compose
from wmrl.dag.specs import evaluate_spec, finetune_spec
from wmrl.dag.targets import methods_pattern, training_rule
from wmrl.methods import KINDS
from wmrl.methods.imagine import IMAGINE
from wmrl.models.config import ModelConfig
from wmrl.models.world_model import ModelShape, WorldActionModel
from wmrl.rl.config import ImagineConfig
from wmrl.rl.imagination import ActorCritic, actor_critic_losses, imagine, lambda_returns, reach_weights

MODEL = "small-transformer"


def test_lambda_returns_match_a_hand_computed_example():
    # R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1}), R_{H-1} = r + gamma c v_H; gamma 0.5, lam 0.5
    reward, cont = torch.tensor([[1.0, 2.0, 3.0]]), torch.ones(1, 3)
    next_value = torch.tensor([[10.0, 20.0, 30.0]])  # v_1, v_2, v_3
    r2 = 3 + 0.5 * 30  # 18
    r1 = 2 + 0.5 * (0.5 * 20 + 0.5 * r2)  # 2 + 0.5 * 19 = 11.5
    r0 = 1 + 0.5 * (0.5 * 10 + 0.5 * r1)  # 1 + 0.5 * 10.75 = 6.375
    returns = lambda_returns(reward, cont, next_value, gamma=0.5, lam=0.5)
    assert torch.allclose(returns, torch.tensor([[r0, r1, r2]]))


def test_an_imagined_terminal_stops_the_return_and_every_later_step_counts_nothing():
    reward, next_value = torch.tensor([[1.0, 1.0, 1.0, 1.0]]), torch.full((1, 4), 100.0)
    cont = torch.tensor([[1.0, 0.0, 1.0, 1.0]])  # the episode ends at step 1
    returns = lambda_returns(reward, cont, next_value, gamma=0.9, lam=0.8)
    assert returns[0, 1] == 1.0  # the terminal step's reward alone: no value from beyond it
    assert returns[0, 0] == pytest.approx(1 + 0.9 * (0.2 * 100 + 0.8 * 1.0))
    assert reach_weights(cont).tolist() == [[1.0, 1.0, 0.0, 0.0]]  # steps after the terminal are not reached


def grid_model(actions: int = 3) -> WorldActionModel:
    torch.manual_seed(0)
    return WorldActionModel(ModelShape("grid", (5, 5, 2), actions, tasks=1, window=4), ModelConfig(dim=16, layers=1,
                                                                                                  heads=2))


def test_an_imagined_rollout_reads_its_start_alone_and_samples_grid_cells():
    model = grid_model()
    agent = ActorCritic(16, 3, ImagineConfig(hidden=8, bins=11))
    start, task, mask = (torch.rand(6, 5, 5, 2) > 0.5).float(), torch.zeros(6, dtype=torch.long), torch.ones(5, 5, 2)
    # the rollout's only observation input is `start`: the same generator gives the same rollout, and a
    # different start a different one (it never sees a replayed future to copy)
    one = imagine(model, agent, start, task, mask, 4, torch.Generator().manual_seed(1))
    two = imagine(model, agent, start, task, mask, 4, torch.Generator().manual_seed(1))
    assert all(torch.equal(one[key], two[key]) for key in one)
    assert one["features"].shape == (6, 5, 16) and one["actions"].shape == one["reward"].shape == (6, 4)
    assert ((one["cont"] >= 0) & (one["cont"] <= 1)).all()
    other = imagine(model, agent, 1 - start, task, mask, 4, torch.Generator().manual_seed(1))
    assert not torch.equal(one["features"], other["features"])


def test_a_rollout_longer_than_the_models_positions_restarts_its_context_every_h_steps():
    """Window 4: one context holds 4 steps. A 12-step rollout runs in 3 contexts, its first 4 steps
    the same as an unbroken 4-step rollout's, and a fresh context after them."""
    model = grid_model()
    agent = ActorCritic(16, 3, ImagineConfig(hidden=8, bins=11))
    start, task, mask = (torch.rand(6, 5, 5, 2) > 0.5).float(), torch.zeros(6, dtype=torch.long), torch.ones(5, 5, 2)
    with pytest.raises(ValueError, match="context of 9 tokens is full"):  # past the positions, no restart
        imagine(model, agent, start, task, mask, 12, torch.Generator().manual_seed(1))
    long = imagine(model, agent, start, task, mask, 12, torch.Generator().manual_seed(1), restart_every=4)
    unbroken = imagine(model, agent, start, task, mask, 4, torch.Generator().manual_seed(1), restart_every=5)
    assert long["features"].shape == (6, 13, 16) and long["cont"].shape == (6, 12)
    assert torch.equal(long["features"][:, :4], unbroken["features"][:, :4])
    assert not torch.equal(long["features"][:, 4], unbroken["features"][:, 4])  # step 4 opens a fresh context


def test_the_actor_critic_loss_sends_no_gradient_into_the_world_model():
    model = grid_model()
    agent = ActorCritic(16, 3, ImagineConfig(hidden=8, bins=11))
    start = (torch.rand(4, 5, 5, 2) > 0.5).float()
    task = torch.zeros(4, dtype=torch.long)
    rollout = imagine(model, agent, start, task, torch.ones(5, 5, 2), 3, torch.Generator().manual_seed(0))
    loss, logged = actor_critic_losses(agent, rollout, model.valid_actions[task])
    loss.backward()
    assert all(p.grad is None for p in model.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.actor.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in agent.critic.parameters())
    assert all(p.grad is None for p in agent.slow_critic.parameters())
    assert np.isfinite(list(logged.values())).all()


def test_the_actor_never_picks_an_action_its_task_does_not_have():
    agent = ActorCritic(4, 3, ImagineConfig(hidden=8, bins=11))
    valid = torch.tensor([[True, True, False]]).expand(500, -1)
    actions = agent.act(torch.randn(500, 4), valid, greedy=False, generator=torch.Generator().manual_seed(0))
    assert set(actions.tolist()) == {0, 1}


# ------------------------------------------------------------------ through the pipeline


def test_the_method_enters_through_its_kind_and_a_config_entry():
    cfg = compose({"scale": "smoke", "experiment": "imagination_control"}, ROOT)
    assert KINDS["imagine"] is IMAGINE and training_rule(cfg, "imagine_scratch") == "train_imagine"
    assert methods_pattern(cfg, "train_imagine") == "imagine_pretrained|imagine_scratch"
    spec = finetune_spec(cfg, "cartpole", 600, "imagine_scratch", MODEL, 0)
    assert spec["settings"]["steps"] == 600 and spec["loss"]["td"] == 0 and spec["loss"]["cql_alpha"] == 0
    assert spec["inputs"] == {} and spec["settings"]["imagine"]["horizon"] == 4
    pretrained = compose({"scale": "smoke", "experiment": "imagination_control",
                          "finetune": {"methods_run": ["imagine_pretrained", "dqn_online"],
                                       "methods": {"imagine_pretrained": {"imagine": {"horizon": 4}}}},
                          "report": {"compare": {"method": "imagine_pretrained"},
                                     "target": {"method": "imagine_pretrained"}, "claims": []}}, ROOT)
    assert "pretrained" in finetune_spec(pretrained, "cartpole", 600, "imagine_pretrained", MODEL, 0)["inputs"]
    assert evaluate_spec(cfg, "cartpole", 600, "imagine_scratch", MODEL, 0)["agent"] == \
        "wmrl.train.imagine:ImagineAgent"


@pytest.mark.parametrize("method, expected", [
    ({"imagine": {"horizon": 20}}, "'finetune.methods.imagine_scratch.imagine.horizon' must be within 1..pretrain"),
    ({"imagine": {"horizons": 3}}, "imagine_scratch.imagine.horizons"),
    ({"init": "warm"}, "'finetune.methods.imagine_scratch.init' must be one of pretrained, scratch"),
    ({"train_every": 0}, "'finetune.methods.imagine_scratch.train_every' must be at least 1"),
    ({"imagine": {"contexts": 0}}, "'finetune.methods.imagine_scratch.imagine.contexts' must be at least 1"),
])
def test_a_bad_imagination_setting_names_its_key(method, expected):
    with pytest.raises(ConfigError) as error:
        compose({"scale": "smoke", "experiment": "imagination_control",
                 "finetune": {"methods": {"imagine_scratch": method}}}, ROOT)
    assert expected in str(error.value)


@pytest.fixture(scope="module")
def imagine_job(tmp_path_factory):
    """The train_imagine job on CartPole for 700 env steps: run a, uninterrupted; run b, killed
    after its first saved state (past learning_starts) and rerun."""
    from wmrl.train import imagine as job

    tmp, monkeypatch = job_directory(tmp_path_factory, "imagine")
    cfg = compose({"scale": "smoke", "experiment": "imagination_control"}, ROOT)

    def spec_of():
        spec = finetune_spec(cfg, "cartpole", 700, "imagine_scratch", MODEL, 0)
        spec["settings"]["checkpoint_every"] = 300  # a save after learning starts (200): updates before it count
        return spec

    def killed_then_rerun(spec, out):
        save = job.save_checkpoint

        def save_then_die(state, path):
            save(state, path)
            raise KeyboardInterrupt  # as kill -9 right after the state is on disk

        with monkeypatch.context() as patch:
            patch.setattr(job, "save_checkpoint", save_then_die)
            with pytest.raises(KeyboardInterrupt):
                job.train_imagine(spec, out)
        assert not os.listdir(tmp / "b")  # nothing written that looks complete
        job.train_imagine(spec, out)

    outputs = run_twice(tmp, IMAGINE.files, spec_of, job.train_imagine, killed_then_rerun)
    yield outputs, tmp
    monkeypatch.undo()


def test_the_imagination_job_writes_weights_only_a_curve_its_errors_and_a_timed_record(imagine_job):
    outputs, tmp = imagine_job
    out = {name: tmp / path for name, path in outputs["a"].items()}
    saved = torch.load(out["last"], weights_only=True)
    assert saved["step"] == 700 and set(saved["agent"]) >= {"actor.0.weight", "critic.0.weight", "scale"}
    curve = pl.read_parquet(out["curve"])
    assert curve.columns == ["step", "episode_return", "seconds"] and curve["step"].max() <= 700
    errors = pl.read_parquet(out["imagination"])
    assert errors["horizon"].to_list() == [1, 2, 3, 4] and (errors["nothing_changes"] > 0).all()
    record = json.loads(out["mlflow"].read_text())
    assert record["training"]["env_steps"] == 700 and record["training"]["steps"] == (700 - 200) // 4 + 1
    assert record["rule"] == "train_imagine" and record["method"] == "imagine_scratch"


def test_a_killed_run_resumes_from_its_state_to_the_same_bytes(imagine_job):
    outputs, tmp = imagine_job
    assert (tmp / outputs["a"]["last"]).read_bytes() == (tmp / outputs["b"]["last"]).read_bytes()
    assert pl.read_parquet(tmp / outputs["a"]["curve"]).drop("seconds").equals(
        pl.read_parquet(tmp / outputs["b"]["curve"]).drop("seconds"))


def test_the_learning_rates_fall_linearly_to_zero_at_the_last_environment_step(tmp_path, monkeypatch):
    """The world model's, the actor's and the critic's learning rates at each update are their
    settings times the share of the run's environment steps still to come."""
    from wmrl.progress import Progress
    from wmrl.train import imagine as job

    cfg = compose({"scale": "smoke", "experiment": "imagination_control"}, ROOT)
    spec = finetune_spec(cfg, "cartpole", 400, "imagine_scratch", MODEL, 0)
    learner = job.Learner(spec)
    bases = (spec["settings"]["learning_rate"], learner.config.actor_lr, learner.config.critic_lr)
    seen = []
    update = job.Learner.update

    def recording(self):
        logged = update(self)
        optimizers = (self.world_optimizer, self.optimizers["actor"], self.optimizers["critic"])
        seen.append((self.env_steps, [optimizer.param_groups[0]["lr"] for optimizer in optimizers]))
        return logged

    monkeypatch.setattr(job.Learner, "update", recording)
    learner.run(tmp_path, Progress(400, "test", unit="env steps"))
    assert [step for step, _ in seen] == list(range(200, 401, 4))
    for step, rates in seen:
        assert rates == pytest.approx([base * (1 - step / 400) for base in bases])
    assert seen[-1][1] == [0.0, 0.0, 0.0]


def test_evaluation_plays_the_imagination_agent_greedily(imagine_job):
    from wmrl.evaluate.rollout import evaluate

    outputs, tmp = imagine_job
    cfg = compose({"scale": "smoke", "experiment": "imagination_control"}, ROOT)
    spec = evaluate_spec(cfg, "cartpole", 700, "imagine_scratch", MODEL, 0)
    spec["inputs"] = {**spec["inputs"], "checkpoints": {"last": str(tmp / outputs["a"]["last"])},
                      "record": str(tmp / outputs["a"]["mlflow"]), "datasets": {}}
    spec["score"] = {"random": 22.0, "reference": 475.0, "source": "test"}
    first = evaluate(spec, {"rows": str(tmp / "rows.parquet"), "lineage": str(tmp / "lineage.json")})
    again = evaluate(spec, {"rows": str(tmp / "again.parquet"), "lineage": str(tmp / "again.json")})
    assert first.height == spec["episodes"] and first["return"].equals(again["return"])


@pytest.mark.e2e
def test_the_imagination_control_runs_end_to_end_at_smoke_and_its_report_gives_a_verdict(tmp_path):
    import subprocess

    from conftest import snakemake_command, snakemake_env
    from wmrl.dag.targets import report_files

    result = subprocess.run(snakemake_command("--cores", "2", "--config", "scale=smoke",
                                              "experiment=imagination_control"),
                            cwd=tmp_path, capture_output=True, text=True, env=snakemake_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    files = report_files(compose({"scale": "smoke", "experiment": "imagination_control"}, ROOT))
    control = pl.read_csv(tmp_path / files["imagination_control_csv"])
    assert control["method"].to_list() == ["imagine_scratch"] and control["target"].to_list() == [475.0]
    assert control["passed"].to_list() == (control["return"] >= 475.0).to_list()
    errors = pl.read_csv(tmp_path / files["imagination_error_csv"])
    assert errors["horizon"].to_list() == [1, 2, 3, 4]
    cost = pl.read_csv(tmp_path / files["imagination_cost_csv"])
    assert cost["env_steps_per_s"][0] > 0 and cost["updates_per_s"][0] > 0
    page = (tmp_path / files["html"]).read_text()
    assert "Positive control: FAIL" in page or "Positive control: PASS" in page
    assert set(pl.read_csv(tmp_path / files["training_speed_csv"])["method"]) == {"imagine_scratch", "dqn_online",
                                                                                   "ppo_online"}

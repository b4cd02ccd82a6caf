"""Stages 3-4 on a small fixture: the few-shot slice, fine-tuning from pretrained weights or from
scratch, held-out checks, and evaluation that is deterministic for a fixed seed."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from conftest import ROOT, finetune_methods, job_directory
from wmrl.config import compose
from wmrl.dag.specs import evaluate_spec, finetune_spec
from wmrl.data.windows import few_shot, split_episodes


def episodes_frame(lengths: list[int]) -> pl.DataFrame:
    """Rows of episodes with the given numbers of transitions (each ends with a final row)."""
    rows = []
    for episode, length in enumerate(lengths):
        for t in range(length + 1):
            final = t == length
            rows.append({"episode": episode, "t": t, "action": None if final else t % 3,
                         "reward": None if final else 1.0, "terminated": None if final else t == length - 1,
                         "truncated": None if final else False, "policy_step": 100 * episode + t})
    return pl.DataFrame(rows, schema={"episode": pl.Int64, "t": pl.Int32, "action": pl.Int16, "reward": pl.Float32,
                                      "terminated": pl.Boolean, "truncated": pl.Boolean, "policy_step": pl.Int64})


@pytest.mark.parametrize("start, first_step", [(0.0, 0), (1.0, 300), (0.5, 100)])
def test_fewshot_slice_takes_exactly_the_asked_transitions(start, first_step):
    frame = episodes_frame([10, 10, 10, 10, 10])  # 50 transitions
    sliced = few_shot(frame, 15, start, "fixture")
    assert sliced["action"].is_not_null().sum() == 15
    assert sliced["policy_step"][0] == first_step  # begins at an episode start
    assert sliced["episode"].unique().to_list() == [0, 1]  # renumbered from 0
    cut = sliced.filter(pl.col("episode") == 1)
    assert cut["t"].max() == 5 and cut["action"][-1] is None  # cut after 5 transitions: a final row
    assert cut["truncated"][-2] is True and cut["terminated"][-2] is False


def test_fewshot_slice_keeps_whole_episodes_when_they_fit_and_refuses_too_little_data():
    sliced = few_shot(episodes_frame([5, 5, 5]), 10, 0.0, "fixture")
    assert sliced["action"].is_not_null().sum() == 10 and sliced["truncated"].drop_nulls().sum() == 0
    with pytest.raises(ValueError, match="fixture: 15 transitions, fewer than the 20"):
        few_shot(episodes_frame([5, 5, 5]), 20, 0.0, "fixture")
    assert split_episodes(sliced, "heldout", 0.5, "fixture")["episode"].unique().to_list() == [1]


@pytest.mark.parametrize("start", [0.0, 0.37, 1.0])
def test_the_fewshot_slice_read_without_the_whole_dataset_is_the_same(random_dataset, start):
    from wmrl.data import open_dataset
    from wmrl.data.windows import read_few_shot

    dataset = open_dataset(random_dataset)
    whole = few_shot(dataset.read(), 700, start, str(dataset.directory))
    assert read_few_shot(dataset, 700, start).equals(whole)


@pytest.fixture(scope="module")
def finetuned(random_dataset, tmp_path_factory):
    """Fine-tune a small model from scratch and from 'pretrained' weights on the fixture."""
    tmp, monkeypatch = job_directory(tmp_path_factory, "finetune")
    cfg = compose({"scale": "smoke"}, ROOT)
    outputs = finetune_methods(cfg, ["scratch", "pretrained"], random_dataset, tmp, 12,
                               lambda done: done["scratch"]["last"])  # any model of this suite's shape
    yield cfg, outputs, tmp
    monkeypatch.undo()


def test_finetuning_writes_loadable_last_and_best_checkpoints_and_a_curve(finetuned):
    cfg, outputs, _ = finetuned
    for out in outputs.values():
        last, best = (torch.load(out[name], weights_only=True) for name in ("last", "best"))
        assert last["task"] == "breakout" and last["tasks"] == list(cfg.tasks) and last["step"] == 12
        assert best["step"] in (4, 8, 12)
        curve = pl.read_parquet(out["curve"])
        assert curve["step"].to_list() == [4, 8, 12] and "val/loss" in curve.columns
        assert best["step"] == curve["step"][int(np.argmin(curve["val/loss"].to_numpy()))]
        training = json.loads(Path(out["mlflow"]).read_text())["training"]  # the report's training-speed row
        assert training["steps"] == 12 and training["seconds"] > 0
    scratch = torch.load(outputs["scratch"]["last"], weights_only=True)["state_dict"]
    pretrained = torch.load(outputs["pretrained"]["last"], weights_only=True)["state_dict"]
    assert not torch.equal(scratch["q_head.2.weight"], pretrained["q_head.2.weight"])


def test_finetuning_refuses_a_source_task_unless_it_is_the_controls_held_back_data(finetuned, random_dataset):
    from wmrl.train.finetune import finetune

    cfg, _, _ = finetuned
    spec = finetune_spec(cfg, "breakout", 1000, "scratch", "small-transformer", 0)
    with pytest.raises(ValueError, match=r"held-out tasks \(or the transfer control's held-back data\); 'asterix' is "
                                         "not one of"):
        finetune({**spec, "task": "asterix"}, {})
    control = finetune_spec(cfg, "space_invaders", 1000, "scratch", "small-transformer", 0)
    assert control["data"]["control"] and control["task"] not in control["heldout_tasks"]


def test_evaluation_is_deterministic_for_a_fixed_seed(finetuned):
    from wmrl.evaluate.rollout import evaluate

    cfg, outputs, tmp = finetuned
    spec = evaluate_spec(cfg, "breakout", 1000, "pretrained", "small-transformer", 0)
    spec["inputs"]["checkpoints"] = {name: outputs["pretrained"][name] for name in ("last", "best")}
    spec["inputs"]["record"] = outputs["pretrained"]["mlflow"]
    spec |= {"episodes": 3, "max_episode_steps": 60}
    first, second = (evaluate(spec, {"rows": str(tmp / f"{n}.parquet"), "lineage": str(tmp / f"{n}.json")})
                     for n in "ab")
    assert first.equals(second)
    combos = first.select("checkpoint", "planning").unique().sort("checkpoint", "planning").rows()
    assert combos == [("best", "beam w2 h2"), ("best", "none"), ("last", "beam w2 h2"), ("last", "none")]
    assert (first["length"] <= 60).all() and first["episode"].n_unique() == 3
    score = cfg.tasks.breakout.score
    expected = (first["return"] - score.random) / (score.reference - score.random)
    assert np.allclose(first["normalized"].to_numpy(), expected.to_numpy())


@pytest.mark.parametrize("planning", [None, {"width": 2, "horizon": 2}])
def test_the_agent_reads_q_only_where_the_model_learnt_it(finetuned, planning, monkeypatch):
    """Trained on windows of K steps, Q was learnt at o_0 .. o_{K-1}: the agent keeps K - 1 steps
    before the current observation (K - h with a plan of horizon h, whose leaves lie h - 1 further)."""
    from wmrl.envs import make_env
    from wmrl.evaluate.rollout import ModelAgent

    _, outputs, _ = finetuned
    agent = ModelAgent(outputs["scratch"]["last"], "breakout", 4, planning, 0.99)
    seen = []
    for module, name in ((agent.model, "last_q"), (agent.model, "start")):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda tokens, *rest, f=original: seen.append(tokens.shape[1]) or
                            f(tokens, *rest))
    env = make_env("minatar:breakout", {}, 100)
    obs, _ = env.reset(seed=0)
    agent.reset(obs[None])
    for _ in range(10):
        action = agent.act(np.array([0]))
        obs, *_ = env.step(int(action[0]))
        agent.observe(np.array([0]), action, obs[None], np.zeros(1))
    before = 4 - (planning["horizon"] if planning else 1)
    assert seen[-1] == max(seen) == 2 * before + 1  # tokens o_0 a_0 ... o_before: the current one last


def test_evaluation_is_tracked_with_the_lineage_of_the_model_it_played(finetuned):
    import mlflow

    _, outputs, tmp = finetuned
    lineage = json.loads((tmp / "a.json").read_text())  # written by the test above
    trained = json.loads(open(outputs["pretrained"]["mlflow"]).read())
    assert lineage["model"] == trained
    assert set(trained) >= {"run_id", "git_sha", "config_hash", "datasets", "run_url"}
    assert list(trained["datasets"].values())[0] and trained["run_url"] is None  # a SQLite store has no pages
    run = mlflow.MlflowClient().get_run(lineage["evaluation"]["run_id"])
    assert run.data.tags["trained_by"] == trained["run_id"] and run.info.status == "FINISHED"
    assert run.data.tags["git_sha"] == lineage["evaluation"]["git_sha"]
    assert "eval/last/none/normalized" in run.data.metrics

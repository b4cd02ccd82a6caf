"""In-context RL as pipeline stages (issue 13): the config section and its checks, the DAG helpers,
held-out tasks kept out of pretraining, determinism of the jobs for a fixed seed, and both
experiments end to end at smoke through Snakemake."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from conftest import PYTHON, ROOT, snakemake_command, snakemake_env, snakemake_report

from wmrl.config import ConfigError, compose, to_plain
from wmrl.dag import icrl
from wmrl.dag.targets import stage_targets
from wmrl.icrl.evaluate import DARKROOM_BASELINES, OFFLINE_BASELINES, ONLINE_BASELINES, evaluate_icrl, heldout_tasks
from wmrl.icrl.generate import generate_histories
from wmrl.icrl.histories import read_histories
from wmrl.icrl.methods import ICRL_METHODS
from wmrl.icrl.report import verdict
from wmrl.icrl.tasks import bandit_tasks, darkroom_step
from wmrl.train.icrl import IcrlModule, save_model

EXPERIMENTS = ("icrl_bandit", "icrl_bandit_control", "icrl_darkroom")


def smoke(experiment: str, **overrides):
    return compose({"scale": "smoke", "experiment": experiment, **overrides}, ROOT)


def test_icrl_section_composes_per_scale_and_family_and_leaves_other_experiments_alone():
    for scale in ("smoke", "laptop", "paper"):
        bandit = compose({"scale": scale, "experiment": "icrl_bandit"}, ROOT)
        room = compose({"scale": scale, "experiment": "icrl_darkroom"}, ROOT)
        assert (bandit.icrl.family, room.icrl.family) == ("bandit", "darkroom")
        assert bandit.icrl.noise_std == 0.3
        assert compose({"scale": scale, "experiment": "cartpole"}, ROOT).icrl is None
    assert compose({"scale": "paper", "experiment": "icrl_bandit"}, ROOT).icrl.horizon == 500  # DPT's H


def test_icrl_section_errors_name_every_problem_at_once():
    with pytest.raises(ConfigError, match=r"icrl.family.*icrl.pretrain.backbones") as error:
        smoke("icrl_bandit", icrl={"family": "maze", "pretrain": {"backbones": ["cnn"]}})
    assert "config error" in str(error.value)
    with pytest.raises(ConfigError, match="heldout_seed"):
        smoke("icrl_bandit", icrl={"heldout_seed": 0, "task_seed": 0})
    with pytest.raises(ConfigError, match="exceeds the 20 held-out goals"):
        smoke("icrl_darkroom", icrl={"evaluate": {"tasks": 21}, "heldout_goals": 20})
    with pytest.raises(ConfigError, match="unknown key 'icrl.arm'"):
        smoke("icrl_bandit", icrl={"arm": 3})


def test_dag_helpers_give_one_run_per_method_backbone_and_seed_and_the_baselines_once():
    cfg = smoke("icrl_bandit")
    assert icrl.runs(cfg) == ["baselines", "dpt_transformer-seed0", "dpt_ssm-seed0"]
    spec = icrl.pretrain_spec(cfg, "dpt_ssm", 0)
    assert spec["method"] == "dpt" and spec["model"]["backbone"] == "ssm"
    assert spec["model"]["steps"] == cfg.icrl.pretrain.steps
    assert spec["dataset"] == "data/smoke/icrl/icrl_bandit/contexts-seed0"
    assert icrl.evaluate_spec(cfg, "dpt_ssm-seed0")["model"].endswith("dpt_ssm-seed0/model.pt")
    assert set(icrl.report_files(cfg).values()) <= set(stage_targets(cfg)["all"])
    room = smoke("icrl_darkroom")
    assert icrl.histories_dirs(room) == ["data/smoke/icrl/icrl_darkroom/contexts-seed0",
                                         "data/smoke/icrl/icrl_darkroom/learning-seed0"]
    spec = icrl.pretrain_spec(room, "ad_transformer", 0)
    assert spec["dataset"].endswith("learning-seed0") and spec["model"]["context_steps"] == 2 * 8
    assert "control" not in " ".join(icrl.report_files(cfg)) and "control_csv" in icrl.report_files(
        smoke("icrl_bandit_control"))


def test_heldout_tasks_never_enter_pretraining_histories(tmp_path):
    bandit = smoke("icrl_bandit")
    card = generate_histories(icrl.histories_spec(bandit, "contexts", 0), tmp_path / "bandit")
    train = np.asarray(card["tasks"])
    heldout = np.asarray(heldout_tasks({**to_plain(bandit.icrl)}))
    np.testing.assert_array_equal(train, bandit_tasks(bandit.icrl.train_tasks, bandit.icrl.arms, 0))
    assert not any(np.isclose(train, task).all(1).any() for task in heldout)
    room = smoke("icrl_darkroom")
    held = {tuple(goal) for goal in heldout_tasks(to_plain(room.icrl))}
    for kind in ("contexts", "learning"):  # DPT's and AD's pretraining data
        card = generate_histories(icrl.histories_spec(room, kind, 0), tmp_path / kind)
        goals = {tuple(goal) for goal in card["tasks"]}
        assert card["kind"] == kind and len(goals) == 20 and held and not goals & held
        frame, _ = read_histories(tmp_path / kind)
        assert frame["task"].n_unique() == 20


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_jobs_are_deterministic_for_a_fixed_seed(experiment, tmp_path):
    cfg = smoke(experiment)
    for kind in icrl.data_kinds(cfg):
        first = generate_histories(icrl.histories_spec(cfg, kind, 0), tmp_path / f"{kind}-a")
        assert generate_histories(icrl.histories_spec(cfg, kind, 0), tmp_path / f"{kind}-b")["sha256"] == \
            first["sha256"]
        assert generate_histories(icrl.histories_spec(cfg, kind, 1), tmp_path / f"{kind}-c")["sha256"] != \
            first["sha256"]
        for model in icrl.model_labels(cfg):
            if icrl.dataset(cfg, model, 0).split("/")[-1].startswith(kind):
                spec = icrl.pretrain_spec(cfg, model, 0)
                method = ICRL_METHODS[spec["method"]]
                module = IcrlModule(method.name, method.shape(first), {**spec["model"], "dim": 8, "layers": 1})
                save_model(method, module.model, method.shape(first), tmp_path / f"{model}.pt", first,
                           {5: module.model.state_dict()})
    for run in icrl.runs(cfg):
        spec = icrl.evaluate_spec(cfg, run)
        if run != "baselines":
            spec["model"] = str(tmp_path / f"{run.split('-seed')[0]}.pt")
        one = evaluate_icrl(spec, str(tmp_path / "one.parquet"))
        assert one.equals(evaluate_icrl(spec, str(tmp_path / "two.parquet")))


def test_a_claim_with_too_few_runs_or_tasks_is_not_decided():
    assert verdict(0.1, 0.2, 12, "above", "below", "inside", tasks=12) == "above"
    assert verdict(-0.1, 0.2, 12, "above", "below", "inside", tasks=12) == "inside"
    assert verdict(0.1, 0.2, 2, "above", "below", "inside", tasks=12) == "too few runs to decide"
    assert verdict(0.1, 0.2, 25, "above", "below", "inside", tasks=5) == "too few held-out tasks to decide"


@pytest.mark.e2e
@pytest.mark.parametrize("experiment", ("icrl_bandit_control", "icrl_darkroom"))  # icrl_bandit: the control's path
def test_an_icrl_experiment_runs_end_to_end_at_smoke(experiment, tmp_path):
    result = subprocess.run(snakemake_command("--cores", "2", "--config", "scale=smoke", f"experiment={experiment}"),
                            cwd=tmp_path, capture_output=True, text=True, env=snakemake_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = smoke(experiment)
    files = icrl.report_files(cfg)
    assert all((tmp_path / path).is_file() for path in files.values())
    dpts = icrl.model_labels(cfg)
    rows = pl.read_parquet(tmp_path / files["rows"])
    page = (tmp_path / files["html"]).read_text()
    if cfg.icrl.family == "bandit":
        online = set(pl.read_csv(tmp_path / files["online_final_csv"])["method"])
        assert online == set(dpts) | set(ONLINE_BASELINES)
        assert set(pl.read_csv(tmp_path / files["offline_final_csv"])["method"]) == set(dpts) | set(OFFLINE_BASELINES)
        assert set(pl.read_csv(tmp_path / files["improvement_csv"])["baseline"]) == {"thompson"}
        assert "DPT ≈ Thompson sampling online on held-out tasks" in page
        control = pl.read_csv(tmp_path / files["control_csv"])
        assert control["criterion"][-1] == "positive control" and "Positive control: " in page
        # every method on the same tasks and seeds
        keys = rows.filter(pl.col("setting") == "online").group_by("method").agg(
            pl.struct("task", "seed").unique().sort().alias("keys"))
        assert keys["keys"].list.len().n_unique() == 1
    else:
        returns = set(pl.read_csv(tmp_path / files["returns_final_csv"])["method"])
        assert returns == set(dpts) | set(DARKROOM_BASELINES) | {"ad_source"}
        assert {"ad_transformer", "dpt_transformer"} <= set(dpts)  # AD ran end to end
        assert "ad_transformer against its source learner" in page
    gains = pl.read_csv(tmp_path / files["context_gain_csv"])
    assert set(gains["method"]) == set(dpts) and gains["verdict"].null_count() == 0
    curve = rows.filter(pl.col("setting") == "context_accuracy")
    assert set(curve["checkpoint"].unique()) == {10, 20}  # every snapshot
    assert curve["task"].n_unique() == cfg.icrl.evaluate.tasks
    claims = pl.read_csv(tmp_path / files["claims_csv"])
    assert len(claims) >= len(dpts) and claims["verdict"].null_count() == 0
    cost = pl.read_csv(tmp_path / files["cost_csv"])
    assert {"icrl_histories", "icrl_pretrain", "icrl_evaluate"} <= set(cost["rule"])
    assert "<svg" in page
    registered_predicts_as_saved(cfg, tmp_path)
    names, index = snakemake_report(tmp_path, "scale=smoke", f"experiment={experiment}")  # every figure, captioned
    assert {Path(path).name for name, path in files.items() if name != "rows"} <= names
    assert "at every weight snapshot of its" in index  # the context curve's own caption made it in


def test_snakemake_lint_is_clean_for_an_icrl_experiment():
    result = subprocess.run(snakemake_command("--lint", "--config", "experiment=icrl_bandit", "scale=smoke"),
                            cwd=ROOT, capture_output=True, text=True, env=snakemake_env(), timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


@pytest.mark.parametrize("experiment", ("icrl_bandit", "icrl_darkroom"))
def test_the_context_curve_reads_held_out_tasks_only(experiment):
    """Each method's curve histories are the held-out tasks' own: bandits labelled with the
    held-out means' best arm; in Dark Room every reward is at the row's held-out goal."""
    cfg = to_plain(smoke(experiment).icrl)
    held = heldout_tasks(cfg)
    for name in cfg["methods"]:
        arrays = ICRL_METHODS[name].curve_histories(cfg, held, 0)
        assert sorted(set(arrays.task)) == list(range(len(held)))
        if cfg["family"] == "bandit":
            np.testing.assert_array_equal(arrays.optimal_action, np.argmax(held, axis=1)[arrays.task])
            continue
        goal_cells = np.array([x * cfg["size"] + y for x, y in held])[arrays.task]
        following = arrays.next_states if name == "dpt" else darkroom_step(arrays.states, arrays.actions, cfg["size"])
        rewarded = arrays.rewards > 0
        assert rewarded.any() and (following[rewarded] == np.broadcast_to(goal_cells[:, None],
                                                                          following.shape)[rewarded]).all()


REGISTERED_CHECK = """
import json, sys
import mlflow, numpy as np, torch
from wmrl.train.icrl import load_model
uri, path = sys.argv[1], sys.argv[2]
example = {name: np.asarray(values, dtype=dtype) for name, (values, dtype) in json.loads(sys.argv[3]).items()}
method, saved, _ = load_model(path)
registered = mlflow.pyfunc.load_model(uri)
assert registered.metadata.get_input_schema().input_names() == list(method.inputs)
with torch.no_grad():
    expected = saved(*(torch.as_tensor(example[name]) for name in method.inputs)).numpy()
np.testing.assert_allclose(registered.predict(example), expected)
"""


def registered_predicts_as_saved(cfg, workdir: Path) -> None:
    """Every in-context model is registered in MLflow like our world models (its record's URI, an
    alias naming its job), and the registered pyfunc predicts what the saved model does, on a
    shorter context than training's. Checked in a process of its own: MLflow's URIs are global
    state (set_tracking_uri also sets the environment later Snakemake runs would inherit)."""
    from wmrl.dag.paths import ICRL_PRETRAIN_MLFLOW, ICRL_PRETRAIN_MODEL
    from wmrl.train.icrl import load_model

    env = {**snakemake_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{workdir / 'mlruns' / 'mlflow.db'}"}
    for model in icrl.model_labels(cfg):
        paths = {"scale": "smoke", "experiment": cfg.experiment, "model": model, "seed": cfg.icrl.pretrain.seeds[0]}
        record = json.loads((workdir / ICRL_PRETRAIN_MLFLOW.format(**paths)).read_text())
        assert record["model_uri"] == f"models:/wmrl-{cfg.experiment}-icrl@smoke-{model}-seed{paths['seed']}"
        path = workdir / ICRL_PRETRAIN_MODEL.format(**paths)
        method, saved, _ = load_model(path)
        arrays = method.arrays(*read_histories(workdir / icrl.dataset(cfg, model, paths["seed"])))
        drawn = method.batch(arrays, 3, np.random.default_rng(0), saved.config)
        shorter = {name: drawn[name] if name == "query_state" else drawn[name][:, :2] for name in method.inputs}
        example = {name: (value.tolist(), str(value.dtype)) for name, value in shorter.items()}
        checked = subprocess.run([PYTHON, "-c", REGISTERED_CHECK, record["model_uri"], str(path), json.dumps(example)],
                                 env=env, capture_output=True, text=True, timeout=120)
        assert checked.returncode == 0, checked.stderr[-2000:]

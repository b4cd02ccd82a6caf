"""The typed config: composition of the layers and one clear error per bad key or value."""

import pytest

from conftest import ROOT
from wmrl.config import ConfigError, compose, task_dataset, to_plain
from wmrl.dag.experiment import dataset_dirs
from wmrl.dag.specs import dataset_spec
from wmrl.provenance import code_hash


def test_default_is_the_laptop_minatar_transfer_experiment():
    cfg = compose({}, ROOT)
    assert (cfg.scale, cfg.experiment, cfg.suite) == ("laptop", "minatar_transfer", "minatar")
    assert set(cfg.tasks) == {"asterix", "breakout", "freeway", "seaquest", "space_invaders"}
    assert cfg.heldout_tasks == ["breakout"]
    assert task_dataset(cfg, "breakout").dqn.steps == 100_000


def test_scale_overlay_changes_sizes_only():
    smoke, laptop = compose({"scale": "smoke"}, ROOT), compose({}, ROOT)
    assert smoke.dataset.dqn.steps < laptop.dataset.dqn.steps
    envs_and_scores = [{name: {**task, "dataset": None} for name, task in to_plain(cfg.tasks).items()}
                       for cfg in (smoke, laptop)]  # a task's dataset section is resolved per scale
    assert envs_and_scores[0] == envs_and_scores[1]


def test_a_scale_may_name_its_experiment_and_the_user_still_chooses():
    assert compose({"scale": "paper"}, ROOT).experiment == "jowa_atari"
    assert compose({"scale": "paper", "experiment": "minatar_transfer"}, ROOT).suite == "minatar"


def test_user_layer_wins_and_a_task_override_touches_only_that_task():
    cfg = compose({"tasks": {"seaquest": {"dataset": {"dqn": {"steps": 1234}}}}}, ROOT)
    assert task_dataset(cfg, "seaquest").dqn.steps == 1234
    assert task_dataset(cfg, "asterix").dqn.steps == 100_000
    base = compose({}, ROOT)
    assert dataset_spec(cfg, "asterix", "dqn", 0) == dataset_spec(base, "asterix", "dqn", 0)
    assert dataset_spec(cfg, "seaquest", "dqn", 0) != dataset_spec(base, "seaquest", "dqn", 0)
    assert dataset_spec(cfg, "seaquest", "random", 0) == dataset_spec(base, "seaquest", "random", 0)


def test_fewshot_data_must_exist_for_the_heldout_task():
    with pytest.raises(ConfigError, match=r"'finetune.data.sizes' \(5000 transitions\) exceeds the 1234 steps"):
        compose({"tasks": {"breakout": {"dataset": {"dqn": {"steps": 1234}}}}}, ROOT)
    with pytest.raises(ConfigError, match="asks for the 'dqn' dataset of seed 7"):
        compose({"finetune": {"data": {"seed": 7}}}, ROOT)
    with pytest.raises(ConfigError, match="'finetune.methods.bc.loss.cql': unknown|unknown key 'finetune.methods.bc"):
        compose({"finetune": {"methods": {"bc": {"loss": {"cql": 1.0}}}}}, ROOT)


@pytest.mark.parametrize("overrides, expected", [
    ({"dataset": {"random": {"stepz": 3}}},
     "unknown key 'dataset.random.stepz'; allowed keys under 'dataset.random': steps"),
    ({"datset": {}}, "unknown key 'datset'; allowed keys under '<top level>': scale, experiment, suite"),
    ({"dataset": {"random": {"steps": "many"}}}, "'dataset.random.steps' must be int, got 'many' (str)"),
    ({"tasks": {"breakout": {"dataset": {"dqn": {"gama": 0.9}}}}},
     "unknown key 'tasks.breakout.dataset.dqn.gama'; allowed keys under 'tasks.breakout.dataset.dqn': steps,"),
    ({"tasks": {"breakout": {"max_episode_steps": "long"}}}, "'tasks.breakout.max_episode_steps'"),
    ({"dataset.random.steps": 5}, "nested overrides go in a --configfile"),
    ({"scale": "huge"}, "unknown scale 'huge' (no "),
    ({"experiment": "nope"}, "unknown experiment 'nope'"),
    ({"heldout_tasks": ["asterix"]}, "held-out tasks ['asterix'] are also source tasks"),
    ({"source_tasks": ["pong"]}, "'source_tasks' names tasks not in 'tasks': ['pong']"),
    ({"report": {"variants": ["nope"]}}, "'report.variants' names 'nope', which is not run"),
    ({"finetune": {"methods": {"d3rlpy_bc": {"learning_rate": 0.1}}}},
     "unknown key 'finetune.methods.d3rlpy_bc.learning_rate'; allowed keys under 'finetune.methods.d3rlpy_bc': kind,"),
    ({"finetune": {"methods": {"mine": {"init": "scratch"}}}},
     "'finetune.methods.mine.kind' must be one of joint, decision, online, peer, imagine, got None"),
    ({"dataset": {"policies": ["sac"]}}, "policies ['sac'] unknown; allowed: random, dqn, ppo, recurrent_ppo"),
    ({"dataset": {"policies": ["random", "dqn", "ppo"], "ppo": {"steps": 1000, "n_steps": 512}}},
     "'tasks.asterix.dataset.ppo.steps' (1000) must be a multiple of its n_steps (512)"),
    ({"pretrain": {"model": {"value_loss": "huber"}}},
     "'pretrain.model.value_loss' must be one of hl_gauss, two_hot, mse, got 'huber'"),
    ({"finetune": {"methods": {"pretrained": {"model": {"value_loss": "mse"}}}}},
     "'finetune.methods.pretrained.model' applies to init scratch only"),
    ({"finetune": {"methods": {"scratch": {"model": {"value_loss": "l1"}}}}},
     "'finetune.methods.scratch.model.value_loss' must be one of hl_gauss, two_hot, mse, got 'l1'"),
    ({"finetune": {"methods": {"scratch": {"model": {"width": 3}}}}},
     "unknown key 'finetune.methods.scratch.model.width'"),
    ({"tasks": {"new": {"env_kwargs": {}}}}, "'tasks.new.env' is missing"),
    ({"pretrain": {"model": {"dim": "wide"}}}, "'pretrain.model.dim' must be int, got 'wide' (str)"),
    ({"pretrain": {"sizes_run": ["huge"]}}, "'pretrain.sizes_run' names 'huge'; sizes: ['small', 'medium', 'large']"),
    ({"pretrain": {"backbones": ["lstm"]}}, "'pretrain.backbones' names 'lstm'; allowed: transformer, gtrxl, gru, ssm"),
    ({"pretrain": {"channel_layout": "stack"}}, "'pretrain.channel_layout' must be one of union, pad"),
    ({"dataset": {"policies": ["random"]}}, "'pretrain.policies' ['dqn'] are not generated for source task"),
    ({"pretrain": {"sizes": {"tiny": {"dim": 8, "depth": 1}}}}, "unknown key 'pretrain.sizes.tiny.depth'"),
    ({"finetune": {"data": {"transitions": 500}}}, "unknown key 'finetune.data.transitions'; allowed keys under "
                                                   "'finetune.data': policy, seed, sizes, start, seeds_per_size"),
    ({"finetune": {"data": {"sizes": [1000, 250]}}}, "'finetune.data.sizes' must be ascending positive"),
    ({"finetune": {"data": {"seeds_per_size": [3, 3]}}}, "'finetune.data.seeds_per_size' must give a seed count"),
    ({"finetune": {"curve_methods": ["dt_scratchy"]}}, "'finetune.curve_methods' names ['dt_scratchy'], which are not"),
    ({"finetune": {"control": {"task": "breakout"}}},
     "'finetune.control.task' is 'breakout', which is not a source task; the control fine-tunes on a game "
     "pretraining knows (source_tasks: ['asterix', 'freeway', 'seaquest', 'space_invaders'])"),
    ({"finetune": {"control": {"baseline": "nope"}}}, "'finetune.control.baseline' names 'nope'; it must be a method"),
    ({"finetune": {"control": {"method": "dqn_online"}}}, "'finetune.control.method' names 'dqn_online'; it must be"),
    ({"report": {"compare": {"transitions": 300}}}, "'report.compare.transitions' is 300, not one of"),
])
def test_bad_config_names_the_key_and_what_is_allowed(overrides, expected):
    with pytest.raises(ConfigError) as error:
        compose(overrides, ROOT)
    assert expected in str(error.value)
    assert "\n" not in str(error.value)


def test_a_broken_yaml_layer_names_its_file(tmp_path):
    (tmp_path / "config" / "experiments").mkdir(parents=True)
    (tmp_path / "config" / "config.yaml").write_text("experiment: x\nscale: [unclosed\n")
    with pytest.raises(ConfigError, match="config.yaml: cannot be read as YAML"):
        compose({}, tmp_path)


def test_targets_cover_every_task_policy_and_seed():
    cfg = compose({"dataset": {"seeds": [0, 1]}}, ROOT)
    dirs = dataset_dirs(cfg)
    assert len(dirs) == 5 * 2 * 2
    assert "data/laptop/minatar/breakout/dqn/seed1" in dirs


def test_code_hash_covers_exactly_the_named_subpackages_and_modules():
    assert code_hash("envs", "data") == code_hash("data", "envs") != code_hash("envs")
    assert code_hash("data/writer") != code_hash("data/dataset")


def test_an_experiment_extends_another_and_restates_only_what_differs(tmp_path):
    import shutil

    derived = compose({"experiment": "dt_transfer"}, ROOT)
    base = compose({"experiment": "minatar_transfer"}, ROOT)
    assert derived.tasks == base.tasks and derived.source_tasks == base.source_tasks
    assert "d3rlpy_dt" in derived.finetune.methods_run and "d3rlpy_dt" not in base.finetune.methods_run
    assert derived.report.compare.method == "dt_pretrained" and base.report.claims == []
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / "config/experiments/a.yaml").write_text("extends: b\n")
    (tmp_path / "config/experiments/b.yaml").write_text("extends: a\n")
    with pytest.raises(ConfigError, match="experiments extend each other in a cycle: a -> b -> a"):
        compose({"experiment": "a"}, tmp_path)

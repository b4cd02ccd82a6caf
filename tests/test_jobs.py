"""Job specs by type (wmrl.jobs): every spec the DAG builds fits its job's type, and a spec that
does not fit fails at the job's start with one line naming every wrong key."""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import PYTHON, ROOT
from wmrl.config import compose
from wmrl.dag import icrl, reporting, specs
from wmrl.dag.experiment import run_tasks
from wmrl.dag.targets import finetune_runs, training_rule
from wmrl.jobs import (DatasetSpec, EvaluateSpec, IcrlEvaluateSpec, IcrlHistoriesSpec, IcrlPretrainSpec, IcrlReportSpec,
                       PretrainSpec, ReportSpec, SpecError, WorldModelSpec, check_spec)
from wmrl.methods import RULES

EXPERIMENTS = sorted(path.stem for path in (ROOT / "config/experiments").glob("*.yaml"))


@pytest.mark.parametrize("scale", ["smoke", "laptop"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_spec_the_dag_builds_fits_its_jobs_type(experiment, scale):
    cfg = compose({"scale": scale, "experiment": experiment}, ROOT)
    if cfg.icrl is not None:
        for kind in icrl.data_kinds(cfg):
            check_spec(icrl.histories_spec(cfg, kind, cfg.icrl.data_seeds[0]), IcrlHistoriesSpec)
        for model in icrl.model_labels(cfg):
            check_spec(icrl.pretrain_spec(cfg, model, cfg.icrl.pretrain.seeds[0]), IcrlPretrainSpec)
        for run in icrl.runs(cfg):
            check_spec(icrl.evaluate_spec(cfg, run), IcrlEvaluateSpec)
        check_spec(icrl.report_spec(cfg), IcrlReportSpec)
        return
    for task in run_tasks(cfg):
        for policy in cfg.tasks[task].dataset.policies:
            check_spec(specs.dataset_spec(cfg, task, policy, 0), DatasetSpec)
    size, backbone = cfg.pretrain.sizes_run[0], cfg.pretrain.backbones[0]
    check_spec(specs.pretrain_spec(cfg, size, backbone, 0), PretrainSpec)
    check_spec(specs.world_model_spec(cfg, size, backbone, 0), WorldModelSpec)
    for run in finetune_runs(cfg):
        wildcards = (run["task"], run["transitions"], run["method"], run["model"], run["seed"])
        check_spec(specs.finetune_spec(cfg, *wildcards), RULES[training_rule(cfg, run["method"])].spec)
        check_spec(specs.evaluate_spec(cfg, *wildcards), EvaluateSpec)
    check_spec(reporting.report_spec(cfg), ReportSpec)


def test_a_spec_that_does_not_fit_names_every_wrong_key():
    spec = specs.pretrain_spec(compose({"scale": "smoke"}, ROOT), "small", "transformer", 0)
    del spec["suite"]
    with pytest.raises(SpecError) as error:
        check_spec({**spec, "seed": "0", "stepz": 3, "model": None}, PretrainSpec)
    assert str(error.value) == ("bad PretrainSpec (missing 'suite', unknown 'stepz', 'seed' must be int, got str, "
                                "'model' must be dict, got NoneType); see wmrl.jobs.PretrainSpec")


def test_optional_keys_may_be_left_out_and_a_null_where_allowed_fits():
    spec = specs.evaluate_spec(compose({"scale": "smoke"}, ROOT), "freeway", 1000, "scratch", "small-transformer", 0)
    assert "target_return" not in spec and "wrappers" not in spec and spec["max_episode_steps"] is not None
    check_spec({**spec, "max_episode_steps": None, "planning": None}, EvaluateSpec)


def test_a_job_run_by_hand_with_a_bad_spec_fails_in_one_line_before_it_starts(tmp_path):
    result = subprocess.run([PYTHON, "-m", "wmrl", "finetune", "--spec", json.dumps({"seed": 0}), "--out-dir",
                             str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("wmrl finetune: bad FinetuneSpec (missing 'alias', ")
    assert "Traceback" not in result.stderr
    assert not [path for path in tmp_path.rglob("*") if path.is_file()]  # nothing written, no work dir claimed

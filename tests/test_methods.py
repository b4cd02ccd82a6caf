"""The method registry's contract: every registered kind trains at a tiny size, writes the files
its rule declares (checkpoints that load weights-only), plays evaluation episodes through the agent
it names, and is labelled in the report — the same checks for every kind (d3rlpy's shared
algorithm test, applied to wmrl.methods.KINDS)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import ROOT, job_directory, prepare_tracking
from wmrl.config import compose
from wmrl.dag.reporting import method_labels
from wmrl.dag.specs import evaluate_spec, finetune_spec
from wmrl.dag.targets import method_models, training_rule
from wmrl.evaluate.rollout import evaluate
from wmrl.jobs import check_spec
from wmrl.methods import KINDS, RULES

TINY = {"steps": 4, "validate_every": 2, "checkpoint_every": 2, "data": {"sizes": [300], "seeds_per_size": None}}


def a_method_of(kind: str) -> str:
    """The first catalogue method of `kind` that starts from scratch (no pretrained model needed)."""
    methods = compose({"scale": "smoke"}, ROOT).finetune.methods
    return next(name for name, method in methods.items() if method.kind == kind and method.get("init") != "pretrained")


def test_every_kind_has_its_own_rule_files_and_agent():
    assert set(RULES) == {kind.rule for kind in KINDS.values()}
    for kind in KINDS.values():
        assert {"last", "curve", "mlflow"} <= set(kind.files), kind.name
        assert kind.report_kind in ("ours", "peer", "online")
        assert "best" in kind.files or kind.no_best, f"{kind.name}: say why it has no best checkpoint"


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_trains_saves_weights_only_acts_and_is_reported(kind, random_dataset, tmp_path_factory):
    name, run = a_method_of(kind), list(compose({"scale": "smoke"}, ROOT).finetune.methods_run)
    cfg = compose({"scale": "smoke", "finetune": {**TINY, "methods_run": run + [name] * (name not in run)}}, ROOT)
    model = method_models(cfg, name)[0]
    tmp, patch = job_directory(tmp_path_factory, f"kind-{kind}")
    try:
        spec = finetune_spec(cfg, "breakout", 300, name, model, 0)
        assert spec["tags"]["rule"] == training_rule(cfg, name) == KINDS[kind].rule
        check_spec(spec, KINDS[kind].spec)
        if "dataset" in spec.get("inputs", {}):
            spec["inputs"]["dataset"] = str(random_dataset)
        prepare_tracking(spec["mlflow_experiment"])
        out = {file: str(tmp / f"{name}-{file}") for file in KINDS[kind].files}
        KINDS[kind].train(spec, out, threads=1)

        assert all(Path(path).is_file() for path in out.values()), out
        for checkpoint in ("last", "best"):
            if checkpoint in out:
                assert torch.load(out[checkpoint], weights_only=True)
        evaluation = evaluate_spec(cfg, "breakout", 300, name, model, 0)
        evaluation |= {"episodes": 2, "max_episode_steps": 20, "score": {"random": 0.0, "reference": 1.0,
                                                                          "source": "test"}}
        evaluation["inputs"] |= {"checkpoints": {c: out[c] for c in evaluation["inputs"]["checkpoints"]},
                                 "record": out["mlflow"]}
        rows = evaluate(evaluation, {"rows": str(tmp / "rows.parquet"), "lineage": str(tmp / "lineage.json")})
        assert set(rows["method"]) == {name} and rows.height >= 2 and (rows["length"] >= 1).all()
    finally:
        patch.undo()
    label = method_labels(cfg)[name]
    assert label["kind"] == KINDS[kind].report_kind and label["recipe"] and name in label["label"]

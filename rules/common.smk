# Shared by every rule: the composed, validated config and the package's DAG helpers.
import sys

from wmrl.config import ConfigError, code_hash, compose
from wmrl.pipeline import (DATASET, DATASET_CODE, PRETRAIN_CODE, PRETRAIN_HELDOUT, PRETRAIN_MLFLOW,
                           PRETRAIN_MODEL, dataset_dirs, dataset_spec, pretrain_datasets, pretrain_models,
                           pretrain_spec)
from wmrl.tracking import experiment_name

try:
    CFG = compose(config, root=workflow.basedir)
except ConfigError as error:
    sys.exit(f"wmrl: {error}")


wildcard_constraints:
    scale=CFG.scale,
    suite=CFG.suite,
    experiment=CFG.experiment,
    seed=r"\d+",
    size=r"[A-Za-z0-9_]+",
    backbone=r"[a-z]+",


onstart:
    # Create the MLflow store and experiment once, before parallel jobs race to do it.
    from wmrl.tracking import prepare

    prepare([experiment_name(CFG.experiment, CFG.scale)])

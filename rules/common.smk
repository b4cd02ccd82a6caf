# Shared by every rule: the composed, validated config and the package's DAG helpers.
import sys

from wmrl.config import ConfigError, code_hash, compose, to_plain
from wmrl.pipeline import (DATASET, DATASET_CODE, EVALUATE, EVALUATE_CODE, FINETUNE, FINETUNE_CODE, FINETUNE_FILES,
                           ONLINE_CODE, ONLINE_FILES, ONLINE_MODEL, PRETRAIN_CODE, PRETRAIN_HELDOUT, PRETRAIN_MLFLOW,
                           PRETRAIN_MODEL, SINGLE_PRETRAIN_FILES, WORLD_MODEL_ERROR, dataset_dirs, dataset_spec,
                           evaluate_inputs, evaluate_runs, evaluate_spec, finetune_inputs, finetune_spec,
                           methods_pattern, pretrain_datasets, pretrain_models, pretrain_spec, score_datasets,
                           scores_files, world_model_errors, world_model_spec)
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
    task="|".join(CFG.tasks),
    model=r"[A-Za-z0-9_]+(-[a-z]+)?",


onstart:
    # Create the MLflow store and experiment once, before parallel jobs race to do it.
    from wmrl.tracking import prepare

    prepare([experiment_name(CFG.experiment, CFG.scale)])

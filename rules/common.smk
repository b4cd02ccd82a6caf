# Shared by every rule: the composed, validated config and the package's DAG helpers.
import sys

from wmrl.config import ConfigError, code_hash, compose, to_plain
from wmrl.pipeline import (BENCHMARKS, CHECKED_ENVS, DATASET, DATASET_CODE, EVALUATE, EVALUATE_CODE,
                           EVALUATE_LINEAGE, FINETUNE, FINETUNE_CODE, FINETUNE_FILES, ICRL_BENCHMARKS, ICRL_EVALUATE,
                           ICRL_EVALUATE_CODE, ICRL_HISTORIES, ICRL_HISTORIES_CODE, ICRL_PRETRAIN_CODE,
                           ICRL_PRETRAIN_MLFLOW, ICRL_PRETRAIN_MODEL, ICRL_REPORT_CODE, ONLINE_CODE, ONLINE_FILES,
                           ONLINE_MODEL, PEER_CODE, PEER_FILES, PEER_MODEL, PRETRAIN_CODE, PRETRAIN_HELDOUT,
                           PRETRAIN_MLFLOW, PRETRAIN_MODEL, SINGLE_PRETRAIN_FILES, WORLD_MODEL_ERROR, MEMORY_PROBE,
                           CONTEXT_COSTS, context_costs_spec, check_envs,
                           dataset_dirs, dataset_spec, evaluate_inputs, evaluate_runs, evaluate_spec,
                           finetune_inputs, finetune_spec, icrl_dataset, icrl_evaluate_inputs, icrl_evaluate_spec,
                           icrl_evaluations, icrl_histories_dirs, icrl_histories_spec, icrl_models,
                           icrl_pretrain_spec, icrl_report_files, icrl_report_spec, stage_targets, methods_pattern,
                           model_record, pretrain_datasets, pretrain_models, pretrain_spec, report_files,
                           report_inputs, report_spec, score_datasets, world_model_errors, world_model_spec)
from wmrl.tracking import experiment_name

try:
    CFG = compose(config, root=workflow.basedir)
    check_envs(CFG, CHECKED_ENVS)  # every task's env builds and has a model form, before any job
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


def captioned(outputs):
    """The report job's outputs, each as Snakemake's report shows it: the page and the figures by
    name, the tables under one caption; the scores in Parquet stay out (data for other tools)."""
    captions = "../workflow/report/captions"

    def shown(name, path):
        if name == "html":
            return report(path, caption=f"{captions}/report.rst", category="Report")
        if name.endswith("_csv"):
            return report(path, caption=f"{captions}/table.rst", category="Tables",
                          labels={"table": name.removesuffix("_csv")})
        if path.endswith(".svg"):
            return report(path, caption=f"{captions}/{name}.rst", category="Figures")
        return path

    return {name: shown(name, path) for name, path in outputs.items()}

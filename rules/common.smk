# Shared by every rule: the composed, validated config and the package's DAG helpers (wmrl.dag).
import sys

from wmrl.config import ConfigError, compose
from wmrl.dag import icrl
from wmrl.dag.code import (CONTEXT_COSTS_CODE, DATASET_CODE, EVALUATE_CODE, ICRL_EVALUATE_CODE, ICRL_HISTORIES_CODE,
                           ICRL_PRETRAIN_CODE, ICRL_REPORT_CODE, PRETRAIN_CODE, REPORT_CODE)
from wmrl.dag.experiment import pretrain_datasets, score_datasets
from wmrl.dag.paths import (BENCHMARKS, CHECKED_ENVS, CONTEXT_COSTS, DATASET, EVALUATE, EVALUATE_LINEAGE, FINETUNE,
                            FINETUNE_BENCHMARK, ICRL_BENCHMARKS, ICRL_EVALUATE, ICRL_HISTORIES, ICRL_PRETRAIN_MLFLOW,
                            ICRL_PRETRAIN_MODEL, MEMORY_PROBE, PRETRAIN_HELDOUT, PRETRAIN_MLFLOW, PRETRAIN_MODEL,
                            SINGLE_PRETRAIN_FILES, WORLD_MODEL_ERROR)
from wmrl.dag.preflight import check_envs
from wmrl.dag.reporting import report_inputs, report_spec
from wmrl.dag.specs import (context_costs_spec, dataset_spec, evaluate_inputs, evaluate_spec, finetune_inputs,
                            finetune_spec, model_record, pretrain_spec, world_model_spec)
from wmrl.dag.targets import methods_pattern, report_files, stage_targets
from wmrl.methods import RULES
from wmrl.provenance import code_hash
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
    transitions=r"\d+",
    size=r"[A-Za-z0-9_]+",
    backbone=r"[a-z]+",
    task="|".join(CFG.tasks),
    model=r"[A-Za-z0-9_]+(-[a-z]+)?",
    data=r"contexts|learning",


onstart:
    # Create the MLflow store and experiment once, before parallel jobs race to do it.
    from wmrl.tracking import prepare

    prepare([experiment_name(CFG.experiment, CFG.scale)])


def captioned(outputs, page="report", tables="table"):
    """The report job's outputs, each as Snakemake's report shows it: the page (caption `page`) and
    the figures by name, the tables under one caption (`tables`); the scores in Parquet stay out
    (data for other tools). Every figure's caption is workflow/report/captions/<name>.rst."""
    captions = "../workflow/report/captions"

    def shown(name, path):
        if name == "html":
            return report(path, caption=f"{captions}/{page}.rst", category="Report")
        if name.endswith("_csv"):
            return report(path, caption=f"{captions}/{tables}.rst", category="Tables",
                          labels={"table": name.removesuffix("_csv")})
        if path.endswith(".svg"):
            return report(path, caption=f"{captions}/{name}.rst", category="Figures")
        return path

    return {name: shown(name, path) for name, path in outputs.items()}

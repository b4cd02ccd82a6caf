"""Every stage's file layout: the path patterns (Snakemake wildcards in braces) and file names."""

from __future__ import annotations

import re

DATASET = "data/{scale}/{suite}/{task}/{policy}/seed{seed}"
CHECKED_ENVS = ".snakemake/wmrl/checked-envs.json"  # specs of envs checked before earlier runs

PRETRAIN = "results/{scale}/{experiment}/pretrain/{size}-{backbone}-seed{seed}"
PRETRAIN_FILES = {"model": "model.pt", "mlflow": "model.mlflow.json", "heldout": "heldout.parquet"}
PRETRAIN_MODEL, PRETRAIN_MLFLOW, PRETRAIN_HELDOUT = (f"{PRETRAIN}/{name}" for name in PRETRAIN_FILES.values())
SINGLE_PRETRAIN = "results/{scale}/{experiment}/pretrain/single/{task}/{size}-{backbone}-seed{seed}"
SINGLE_PRETRAIN_FILES = {name: f"{SINGLE_PRETRAIN}/{file}" for name, file in PRETRAIN_FILES.items()}

# Stage 3: one run per (task, data size, method, model, seed): the held-out tasks' runs and the
# transfer control's on its source task; `transitions` is the size of the run's fine-tuning data
# (finetune.data.sizes), `model` "<size>-<backbone>" for the methods that fine-tune our model, else
# the method kind's own label (wmrl.methods: "sb3", "d3rlpy"). Each method's kind names the rule
# that trains it and the files the run writes here.
FINETUNE = "results/{scale}/{experiment}/finetune/{task}/n{transitions}/{method}/{model}-seed{seed}"

# Stage 4: episodes of every trained model (fine-tuned ones where they were fine-tuned; the
# pretrained one, as method MULTIGAME with transitions 0, on its source tasks) and the world model's
# open-loop prediction error.
EVALUATE = "results/{scale}/{experiment}/evaluate/{task}/n{transitions}/{method}/{model}-seed{seed}.parquet"
MULTIGAME, SINGLEGAME = "multigame", "singlegame"


def memory_probe_file(errors: str) -> str:
    """The memory probe's rows beside a world-model error file (or pattern): X.parquet -> X.probe.parquet."""
    return errors.removesuffix(".parquet") + ".probe.parquet"


def evaluate_lineage(rows: str) -> str:
    """The lineage file written beside an evaluation's rows (X.parquet -> X.lineage.json)."""
    return rows.removesuffix(".parquet") + ".lineage.json"


EVALUATE_LINEAGE = evaluate_lineage(EVALUATE)
WORLD_MODEL_ERROR = "results/{scale}/{experiment}/evaluate/world_model/{size}-{backbone}-seed{seed}.parquet"
MEMORY_PROBE = memory_probe_file(WORLD_MODEL_ERROR)
CONTEXT_COSTS = "results/{scale}/{experiment}/evaluate/context_costs.parquet"  # several backbones: cost vs K

# Stage 5: the report — the scores (Parquet), figures (SVG), tables (CSV) and one HTML page.
REPORT = "results/{scale}/{experiment}/report"
REPORT_TEMPLATE = "workflow/report/report.html.j2"
SCORES_FILES = {"episodes": "scores/episodes.parquet", "aggregate_parquet": "scores/aggregate.parquet",
                "per_task_parquet": "scores/per_task.parquet", "improvement_parquet": "scores/improvement.parquet"}
FIGURES = ("data_curve", "iqm", "per_seed", "curves", "world_model")  # + "scaling" when several model sizes run
TABLES = ("aggregate", "sizes", "improvement", "claims", "per_task", "runs", "datasets", "cost", "jobs", "lineage",
          "training_speed", "world_model", "episodes")
CONTROL_TABLES = ("control", "control_aggregate")  # when the experiment has a transfer control
IMAGINATION_TABLES = ("imagination_error", "imagination_cost")  # when an agent learns in imagination


def report_layout(sizes: int, backbones: int = 1, probe: bool = False, control: bool = False,
                  imagination: bool = False, target: bool = False) -> dict[str, str]:
    """The report job's outputs by name, relative to its directory: html, the scores, each figure
    (the scaling plot only when several model sizes run; the Backbones section's when several
    backbones do, the memory probe's when it runs; the Imagination section's when an agent learns
    in imagination), each table's CSV (the control's when it runs, the imagination control's with a
    `report.target`)."""
    several = ("backbone_errors", "context_costs") + ("memory_probe",) * probe if backbones > 1 else ()
    figures = FIGURES + ("scaling",) * (sizes > 1) + several + ("imagination_error",) * imagination
    tables = (TABLES + CONTROL_TABLES * control + ("backbone_claims",) * (backbones > 1) + several
              + IMAGINATION_TABLES * imagination + ("imagination_control",) * target)
    return {"html": "report.html", **SCORES_FILES, **{name: f"figures/{name}.svg" for name in figures},
            **{f"{name}_csv": f"tables/{name}.csv" for name in tables}}


# Every rule's benchmark file (Snakemake's `benchmark:`); the report reads them for the pipeline's
# cost. The rules that train a method (one per method kind's rule) share FINETUNE_BENCHMARK.
FINETUNE_BENCHMARK = "benchmarks/finetune/{scale}/{experiment}/{task}/n{transitions}/{method}/{model}-seed{seed}.tsv"
BENCHMARKS = {
    "generate_dataset": "benchmarks/generate_dataset/{scale}/{suite}/{task}/{policy}/seed{seed}.tsv",
    "pretrain": "benchmarks/pretrain/{scale}/{experiment}/{size}-{backbone}-seed{seed}.tsv",
    "pretrain_single": "benchmarks/pretrain/{scale}/{experiment}/single/{task}/{size}-{backbone}-seed{seed}.tsv",
    "evaluate": "benchmarks/evaluate/{scale}/{experiment}/{task}/n{transitions}/{method}/{model}-seed{seed}.tsv",
    "world_model_error": "benchmarks/world_model_error/{scale}/{experiment}/{size}-{backbone}-seed{seed}.tsv",
    "context_costs": "benchmarks/context_costs/{scale}/{experiment}.tsv",
    "report": "benchmarks/report/{scale}/{experiment}.tsv",
}

# In-context RL (an experiment that sets `icrl`): histories -> DPT pretraining -> evaluation -> report.
ICRL_HISTORIES = "data/{scale}/icrl/{experiment}/{data}-seed{seed}"  # data: contexts | learning
ICRL_PRETRAIN = "results/{scale}/{experiment}/icrl/pretrain/{model}-seed{seed}"  # model: <method>_<backbone>
ICRL_PRETRAIN_FILES = {"model": "model.pt", "mlflow": "model.mlflow.json"}
ICRL_PRETRAIN_MODEL, ICRL_PRETRAIN_MLFLOW = (f"{ICRL_PRETRAIN}/{name}" for name in ICRL_PRETRAIN_FILES.values())
ICRL_EVALUATE = "results/{scale}/{experiment}/icrl/evaluate/{run}.parquet"  # run: baselines | <model>-seed<s>
ICRL_BASELINES = "baselines"
ICRL_BENCHMARKS = {
    "icrl_histories": "benchmarks/icrl_histories/{scale}/{experiment}/{data}-seed{seed}.tsv",
    "icrl_pretrain": "benchmarks/icrl_pretrain/{scale}/{experiment}/{model}-seed{seed}.tsv",
    "icrl_evaluate": "benchmarks/icrl_evaluate/{scale}/{experiment}/{run}.tsv",
    "icrl_report": "benchmarks/icrl_report/{scale}/{experiment}.tsv",
}
# The ICRL report's outputs by family, relative to REPORT: figures (SVG) and tables (CSV) by name.
ICRL_FIGURES = {"bandit": ("online_regret", "offline_suboptimality", "context_curve"),
                "darkroom": ("returns", "context_curve")}
ICRL_TABLES = {"bandit": ("online_final", "offline_final", "improvement", "claims", "context_gain", "cost"),
               "darkroom": ("returns_final", "claims", "context_gain", "cost")}
ICRL_CONTROL_TABLE = "control"  # bandit experiments that set icrl.control


def wildcards(pattern: str, path: str) -> dict[str, str]:
    """The wildcard values that `pattern` formats into `path` (e.g. a job's output)."""
    regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+?)", re.escape(pattern))
    found = re.fullmatch(regex, path)
    if found is None:
        raise ValueError(f"{path} does not match {pattern}")
    return found.groupdict()

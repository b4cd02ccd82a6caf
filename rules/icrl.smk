# In-context RL (an experiment that sets `icrl`; wmrl.dag.icrl): history datasets (kind x seed) ->
# pretraining (method x backbone x seed) -> evaluation on held-out tasks (each model; the baselines
# once) -> report.


rule icrl_histories:
    output:
        directory(ICRL_HISTORIES),
    params:
        spec=lambda wc: icrl.histories_spec(CFG, wc.data, int(wc.seed)),
        code=code_hash(*ICRL_HISTORIES_CODE),
    log:
        "logs/icrl_histories/{scale}/{experiment}/{data}-seed{seed}.log",
    benchmark:
        ICRL_BENCHMARKS["icrl_histories"]
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/icrl_histories.py"


rule icrl_pretrain:
    input:
        dataset=lambda wc: icrl.dataset(CFG, wc.model, int(wc.seed)),
    output:
        model=ICRL_PRETRAIN_MODEL,
        mlflow=ICRL_PRETRAIN_MLFLOW,
    params:
        spec=lambda wc: icrl.pretrain_spec(CFG, wc.model, int(wc.seed)),
        code=code_hash(*ICRL_PRETRAIN_CODE),
    log:
        "logs/icrl_pretrain/{scale}/{experiment}/{model}-seed{seed}.log",
    benchmark:
        ICRL_BENCHMARKS["icrl_pretrain"]
    threads: 1
    priority: 10
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/icrl_pretrain.py"


rule icrl_evaluate:
    input:
        unpack(lambda wc: icrl.evaluate_inputs(CFG, wc.run)),
    output:
        ICRL_EVALUATE,
    params:
        spec=lambda wc: icrl.evaluate_spec(CFG, wc.run),
        code=code_hash(*ICRL_EVALUATE_CODE),
    wildcard_constraints:
        run=r"baselines|[a-z]+_[a-z]+-seed\d+",
    log:
        "logs/icrl_evaluate/{scale}/{experiment}/{run}.log",
    benchmark:
        ICRL_BENCHMARKS["icrl_evaluate"]
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/icrl_evaluate.py"


ICRL_REPORT_SPEC = icrl.report_spec(CFG)


rule icrl_report:
    input:
        **ICRL_REPORT_SPEC["inputs"],
    output:
        **captioned(icrl.report_files(CFG), page="icrl_report", tables="icrl_table"),
    params:
        spec=ICRL_REPORT_SPEC,
        code=code_hash(*ICRL_REPORT_CODE),
    log:
        f"logs/icrl_report/{CFG.scale}/{CFG.experiment}.log",
    benchmark:
        ICRL_BENCHMARKS["icrl_report"].format(scale=CFG.scale, experiment=CFG.experiment)
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/icrl_report.py"

# Stage 4: real-environment episodes of every trained model; the world model's open-loop error.


rule evaluate:
    input:
        unpack(lambda wc: evaluate_inputs(CFG, wc.task, int(wc.transitions), wc.method, wc.model, int(wc.seed))),
        datasets=lambda wc: list(score_datasets(CFG, wc.task).values()),
        record=lambda wc: model_record(CFG, wc.task, int(wc.transitions), wc.method, wc.model, int(wc.seed)),
    output:
        rows=EVALUATE,
        lineage=EVALUATE_LINEAGE,
    params:
        spec=lambda wc: evaluate_spec(CFG, wc.task, int(wc.transitions), wc.method, wc.model, int(wc.seed)),
        code=code_hash(*EVALUATE_CODE),
    log:
        "logs/evaluate/{scale}/{experiment}/{task}/n{transitions}/{method}/{model}-seed{seed}.log",
    benchmark:
        BENCHMARKS["evaluate"]
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/evaluate.py"


rule world_model_error:
    input:
        model=PRETRAIN_MODEL,
        datasets=lambda wc: [d for dirs in pretrain_datasets(CFG).values() for d in dirs],
    output:
        errors=WORLD_MODEL_ERROR,
        probe=MEMORY_PROBE,
    params:
        spec=lambda wc: world_model_spec(CFG, wc.size, wc.backbone, int(wc.seed)),
        code=code_hash(*EVALUATE_CODE),
    log:
        "logs/world_model_error/{scale}/{experiment}/{size}-{backbone}-seed{seed}.log",
    benchmark:
        BENCHMARKS["world_model_error"]
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/world_model_error.py"


rule context_costs:
    output:
        CONTEXT_COSTS,
    params:
        spec=lambda wc: context_costs_spec(CFG),
        code=code_hash(*CONTEXT_COSTS_CODE),
    log:
        "logs/context_costs/{scale}/{experiment}.log",
    benchmark:
        BENCHMARKS["context_costs"]
    threads: 2  # timed alone: with --cores 2 no other job runs beside it
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/context_costs.py"

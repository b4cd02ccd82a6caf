# Stage 2: multi-task world-action model pretraining on the source tasks.


rule pretrain:
    input:
        datasets=lambda wc: [d for dirs in pretrain_datasets(CFG).values() for d in dirs],
    output:
        model=PRETRAIN_MODEL,
        mlflow=PRETRAIN_MLFLOW,
        heldout=PRETRAIN_HELDOUT,
    params:
        spec=lambda wc: pretrain_spec(CFG, wc.size, wc.backbone, int(wc.seed)),
        code=code_hash(*PRETRAIN_CODE),
    log:
        "logs/pretrain/{scale}/{experiment}/{size}-{backbone}-seed{seed}.log",
    benchmark:
        BENCHMARKS["pretrain"]
    threads: 2
    priority: 10  # on the critical path: start it before the baselines that do not need it
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/pretrain.py"


rule pretrain_single:
    input:
        datasets=lambda wc: pretrain_datasets(CFG)[wc.task],
    output:
        **SINGLE_PRETRAIN_FILES,
    params:
        spec=lambda wc: pretrain_spec(CFG, wc.size, wc.backbone, int(wc.seed), game=wc.task),
        code=code_hash(*PRETRAIN_CODE),
    log:
        "logs/pretrain/{scale}/{experiment}/single/{task}/{size}-{backbone}-seed{seed}.log",
    benchmark:
        BENCHMARKS["pretrain_single"]
    threads: 2
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/pretrain.py"

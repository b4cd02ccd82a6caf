# Stage 1: offline datasets, one per (task, behaviour policy, seed).


rule generate_dataset:
    output:
        directory(DATASET),
    params:
        spec=lambda wc: dataset_spec(CFG, wc.task, wc.policy, int(wc.seed)),
        code=code_hash(*DATASET_CODE),
    log:
        "logs/generate_dataset/{scale}/{suite}/{task}/{policy}/seed{seed}.log",
    benchmark:
        BENCHMARKS["generate_dataset"]
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/generate_dataset.py"

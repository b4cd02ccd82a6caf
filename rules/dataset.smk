# Stage 1: offline datasets, one per (task, behaviour policy, seed).


rule generate_dataset:
    output:
        directory(DATASET),
    params:
        spec=lambda wc: json.dumps(dataset_spec(CFG, wc.task, wc.policy, int(wc.seed))),
        code=code_hash(*DATASET_CODE),
    log:
        "logs/generate_dataset/{scale}/{suite}/{task}/{policy}/seed{seed}.log",
    benchmark:
        "benchmarks/generate_dataset/{scale}/{suite}/{task}/{policy}/seed{seed}.tsv"
    threads: 1
    shell:
        "{PYTHON:q} -m wmrl generate-dataset --spec {params.spec:q} --out {output:q} 2> {log:q}"

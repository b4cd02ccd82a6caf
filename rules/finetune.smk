# Stage 3: fine-tuning on each held-out task's few-shot data; online DQN as the peer baseline.


rule finetune:
    input:
        unpack(lambda wc: finetune_inputs(CFG, wc.task, wc.method, wc.model)),
    output:
        **{name: f"{FINETUNE}/{file}" for name, file in FINETUNE_FILES.items()},
    params:
        spec=lambda wc: finetune_spec(CFG, wc.task, wc.method, wc.model, int(wc.seed)),
        code=code_hash(*FINETUNE_CODE),
    wildcard_constraints:
        method=methods_pattern(CFG, online=False),
    log:
        "logs/finetune/{scale}/{experiment}/{task}/{method}/{model}-seed{seed}.log",
    benchmark:
        BENCHMARKS["finetune"]
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/finetune.py"


rule train_online:
    output:
        **{name: f"{FINETUNE}/{file}" for name, file in ONLINE_FILES.items()},
    params:
        spec=lambda wc: finetune_spec(CFG, wc.task, wc.method, wc.model, int(wc.seed)),
        code=code_hash(*ONLINE_CODE),
    wildcard_constraints:
        method=methods_pattern(CFG, online=True),
        model=ONLINE_MODEL,
    log:
        "logs/finetune/{scale}/{experiment}/{task}/{method}/{model}-seed{seed}.log",
    benchmark:
        BENCHMARKS["train_online"]
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/train_online.py"

# Stage 3: fine-tuning on each held-out task's few-shot data; online DQN and the d3rlpy peers as
# baselines. Each method's init picks its one rule (wildcard constraints keep the three apart).


rule finetune:
    input:
        unpack(lambda wc: finetune_inputs(CFG, wc.task, wc.method, wc.model)),
    output:
        **{name: f"{FINETUNE}/{file}" for name, file in FINETUNE_FILES.items()},
    params:
        spec=lambda wc: finetune_spec(CFG, wc.task, wc.method, wc.model, int(wc.seed)),
        code=code_hash(*FINETUNE_CODE),
    wildcard_constraints:
        method=methods_pattern(CFG, "finetune"),
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
        method=methods_pattern(CFG, "train_online"),
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


rule train_peer:
    input:
        unpack(lambda wc: finetune_inputs(CFG, wc.task, wc.method, wc.model)),
    output:
        **{name: f"{FINETUNE}/{file}" for name, file in PEER_FILES.items()},
    params:
        spec=lambda wc: finetune_spec(CFG, wc.task, wc.method, wc.model, int(wc.seed)),
        code=code_hash(*PEER_CODE),
    wildcard_constraints:
        method=methods_pattern(CFG, "train_peer"),
        model=PEER_MODEL,
    log:
        "logs/finetune/{scale}/{experiment}/{task}/{method}/{model}-seed{seed}.log",
    benchmark:
        BENCHMARKS["train_peer"]
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/train_peer.py"

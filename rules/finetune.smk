# Stage 3: fine-tuning on each held-out task's few-shot data at every size (and the transfer
# control's on its source task); online DQN and the d3rlpy peers as baselines. One rule per training rule a method kind names (wmrl.methods: finetune, train_online,
# train_peer); each method's kind picks its rule (the wildcard constraints keep them apart).


for trainer in RULES.values():

    rule:
        name:
            trainer.rule
        input:
            unpack(lambda wc: finetune_inputs(CFG, wc.task, wc.method, wc.model)),
        output:
            **{name: f"{FINETUNE}/{file}" for name, file in trainer.files.items()},
        params:
            spec=lambda wc: finetune_spec(CFG, wc.task, int(wc.transitions), wc.method, wc.model, int(wc.seed)),
            code=code_hash(*trainer.code),
        wildcard_constraints:
            method=methods_pattern(CFG, trainer.rule),
            **({"model": trainer.model} if trainer.model else {}),
        log:
            "logs/finetune/{scale}/{experiment}/{task}/n{transitions}/{method}/{model}-seed{seed}.log",
        benchmark:
            FINETUNE_BENCHMARK
        threads: 1
        conda:
            "../workflow/envs/wmrl.yaml"
        script:
            "../workflow/scripts/train_method.py"

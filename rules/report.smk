# Stage 5: every evaluation row in one table, and the aggregates over runs.


rule scores:
    input:
        evaluate_runs(CFG),
    output:
        **scores_files(CFG),
    params:
        report=to_plain(CFG.report),
        code=code_hash("evaluate/summary", "evaluate/statistics"),
    log:
        f"logs/scores/{CFG.scale}/{CFG.experiment}.log",
    benchmark:
        f"benchmarks/scores/{CFG.scale}/{CFG.experiment}.tsv"
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/scores.py"

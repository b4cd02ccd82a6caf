# Stage 5: the scores over runs, figures, tables and one self-contained HTML report.
# Every output is also in `snakemake --report report.zip`, with a caption.


rule report:
    input:
        **report_inputs(CFG, workflow.basedir),
    output:
        **captioned(report_files(CFG)),
    params:
        spec=report_spec(CFG, workflow.basedir),
        code=code_hash("report", "evaluate/summary", "evaluate/statistics"),
    log:
        f"logs/report/{CFG.scale}/{CFG.experiment}.log",
    benchmark:
        f"benchmarks/report/{CFG.scale}/{CFG.experiment}.tsv"
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/report.py"

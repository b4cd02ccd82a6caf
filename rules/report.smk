# Stage 5: the scores over runs, figures, tables and one self-contained HTML report.
# Every output is also in `snakemake --report report.zip`, with a caption.


REPORT_SPEC = report_spec(CFG, workflow.basedir)  # built once: inputs and params both come from it


rule report:
    input:
        **report_inputs(REPORT_SPEC),
    output:
        **captioned(report_files(CFG)),
    params:
        spec=REPORT_SPEC,
        code=code_hash(*REPORT_CODE),
    log:
        f"logs/report/{CFG.scale}/{CFG.experiment}.log",
    benchmark:
        BENCHMARKS["report"].format(scale=CFG.scale, experiment=CFG.experiment)
    threads: 1
    conda:
        "../workflow/envs/wmrl.yaml"
    script:
        "../workflow/scripts/report.py"

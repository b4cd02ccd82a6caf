# wmrl: generate datasets -> pretrain world model -> fine-tune with RL -> evaluate -> report.
# Run: snakemake --cores all [--config scale=smoke experiment=NAME] [--configfile FILE]
from snakemake.utils import min_version

min_version("9.10")


include: "rules/common.smk"
# An experiment that sets `icrl` (in-context RL, rules/icrl.smk) runs its own stages instead.
if CFG.icrl is None:

    include: "rules/dataset.smk"
    include: "rules/pretrain.smk"
    include: "rules/finetune.smk"
    include: "rules/evaluate.smk"
    include: "rules/report.smk"

    rule all:
        default_target: True
        input:
            dataset_dirs(CFG),
            pretrain_models(CFG),
            world_model_errors(CFG),
            report_files(CFG).values(),

    # Stage targets: `snakemake --cores all datasets` runs stage 1 only, `pretrained` up to stage 2,
    # `evaluated` up to stage 4.
    rule datasets:
        input:
            dataset_dirs(CFG),

    rule pretrained:
        input:
            pretrain_models(CFG),

    rule evaluated:
        input:
            evaluate_runs(CFG),
            world_model_errors(CFG),

else:

    include: "rules/icrl.smk"

    rule all:
        default_target: True
        input:
            icrl_targets(CFG),

    rule datasets:
        input:
            icrl_histories_dirs(CFG),

    rule pretrained:
        input:
            icrl_models(CFG),

    rule evaluated:
        input:
            icrl_evaluations(CFG),

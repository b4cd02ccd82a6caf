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

else:

    include: "rules/icrl.smk"


TARGETS = stage_targets(CFG)


rule all:
    default_target: True
    input:
        TARGETS["all"],


# Stage targets: `snakemake --cores all datasets` runs stage 1 only, `pretrained` up to stage 2,
# `evaluated` up to stage 4.
rule datasets:
    input:
        TARGETS["datasets"],


rule pretrained:
    input:
        TARGETS["pretrained"],


rule evaluated:
    input:
        TARGETS["evaluated"],

# elasticity: does a language model resist alignment? (Ji et al., ACL 2025)
# This file is the table of contents; each stage lives in workflow/rules/.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/invert.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/plots.smk"


rule all:
    input:
        SUMMARY,
        BASE_TABLE,
        FIGURES,
    default_target: True

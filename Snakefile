# elasticity: does a language model resist alignment? (Ji et al., ACL 2025)
# This file is the table of contents; each stage lives in workflow/rules/. The embedded default
# config (config.yaml) is read in common.smk, strictly; `--configfile my.yaml` overrides it.

from snakemake.utils import min_version

min_version("9.0")


include: "workflow/rules/common.smk"
include: "workflow/rules/resources.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/hub.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/align.smk"
include: "workflow/rules/invert.smk"
include: "workflow/rules/generate.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/likelihood.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/rebound.smk"
include: "workflow/rules/algorithms.smk"
include: "workflow/rules/reverse.smk"
include: "workflow/rules/kl_table.smk"
include: "workflow/rules/resistance.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/threshold.smk"
include: "workflow/rules/mitigation.smk"


# The report opens on the analysis's landing page (what was run, the claims) once it exists.
report: os.path.abspath(LANDING) if os.path.exists(LANDING) else "workflow/report/workflow.rst"


rule all:
    input:
        [target for name in config["experiments"] for target in EXPERIMENT_TARGETS[name]],
    default_target: True

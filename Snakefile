# edge-moe-bench: does Mixture-of-Experts help inference on edge hardware?
# DAG: engine source -> builds -> model GGUFs -> benchmark cells -> run table -> tables, figures.
# See README.md for the design; config/config.yaml for what runs.

from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/engine.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/cells.smk"
include: "workflow/rules/rounds.smk"
include: "workflow/rules/prompts.smk"
include: "workflow/rules/profile.smk"
include: "workflow/rules/fidelity.smk"
include: "workflow/rules/locality.smk"
include: "workflow/rules/store.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/faults.smk"


rule all:
    default_target: True
    input:
        "figures/all",

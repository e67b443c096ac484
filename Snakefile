# affectflow: raw videos of people -> ABAW challenge submissions.
# Usage: snakemake --cores all [--configfile yours.yaml]   (rule all: see get_final_output)
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# The package lives in src/. The Snakefile imports it from there; job scripts find it through
# the symlink workflow/scripts/affectflow (Snakemake puts a script's directory on its sys.path),
# so jobs in conda envs or on cluster nodes need no install of the package.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))


# The demo config is the default; a --configfile replaces it rather than being merged into
# it, so no demo setting leaks into a run on real data.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# Unknown keys fail here; every default of the schema is filled in (the one place defaults live).
validate(config, "workflow/schemas/config.schema.yaml", set_default=True)


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/media.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/ensemble.smk"
include: "workflow/rules/submit.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/predict.smk"


rule all:
    default_target: True
    input:
        get_final_output(),

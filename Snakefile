"""CFT reproduction workflow. Stages live in workflow/rules/, logic in src/cft/.

snakemake --profile profiles/local                       # offline demo (config/config.yaml)
snakemake --profile profiles/slurm --configfile config/paper.yaml
"""

from snakemake.utils import min_version

min_version("9.0")


# The demo config is the default; a --configfile replaces it rather than merging into it,
# so the paper grid never inherits demo models or domains.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/download.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/demo_data.smk"
include: "workflow/rules/base_model.smk"
include: "workflow/rules/autogen.smk"
include: "workflow/rules/packing.smk"
include: "workflow/rules/export.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/evaluation.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/curves.smk"
include: "workflow/rules/synthetic.smk"


rule all:
    default_target: True
    input:
        all_outputs(),

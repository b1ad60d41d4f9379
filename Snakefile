# cotscale: the cost-performance trade-offs of chain-of-thought prompting, as a Snakemake pipeline.
# Logic lives in src/cotscale/; these files only wire inputs to outputs.
import sys

from snakemake.utils import min_version, validate

# The checkout that defines this workflow (also when another project uses it as a Snakemake `module`: then
# workflow.basedir is that project's). Its src/ goes first, so the DAG is built by this checkout's cotscale.
CHECKOUT = str(workflow.current_basedir)
sys.path.insert(0, f"{CHECKOUT}/src")

min_version("9.0")


if not workflow.overwrite_configfiles:

    # `--configfile config/demo.yaml` replaces the paper grid instead of merging into it.
    configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/prefetch.smk"


rule all:
    default_target: True
    input:
        TABLES,
        OUTCOME_FILES,
        FIGURE_FILES,


# With an executor (`--profile profiles/slurm`) only evaluations are submitted as cluster jobs; building the demo
# models, prefetching, tables, fits and figures are light and run on the submitting host.
workflow.localrules(
    *(rule.name for rule in workflow.rules if not rule.name.startswith("evaluate"))
)

"""Entry point of every rule's `script:`: hand the job to cotscale (see cotscale.workflow)."""

from cotscale.workflow import run_rule

run_rule(snakemake)  # noqa: F821 - injected by Snakemake

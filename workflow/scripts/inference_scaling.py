"""`script:` of the inference_scaling rule: cotscale.workflow.inference_scaling (src/ first: a rule's conda env lacks
cotscale)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 - injected by Snakemake
from cotscale import workflow  # noqa: E402

workflow.run_rule(snakemake, workflow.inference_scaling)  # noqa: F821

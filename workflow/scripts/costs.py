"""`script:` of the costs rule: cotscale.workflow.costs (src/ first: a rule's conda env lacks cotscale)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 - injected by Snakemake
from cotscale import workflow  # noqa: E402

workflow.run_rule(snakemake, workflow.costs)  # noqa: F821

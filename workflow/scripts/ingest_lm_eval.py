"""`script:` of the ingest_lm_eval rule(s): cotscale.workflow.ingest_lm_eval (src/ first: a rule's conda env lacks cotscale)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 - injected by Snakemake
from cotscale import workflow  # noqa: E402

workflow.run_rule(snakemake, workflow.ingest_lm_eval)  # noqa: F821

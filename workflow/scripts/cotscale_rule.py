"""The `script:` of every rule: hands the job to its entry point in cotscale.workflow (chosen by the rule's name).

src/ of the checkout that holds this file goes first on the path, so a job runs the code of the workflow that
defines it (also when used as a Snakemake `module` from another project, or under `--sdm conda`, whose envs bring
only the libraries), never whichever cotscale another checkout installed. Snakemake's scriptdir is the unresolved
`workflow/rules/../scripts`: resolve it before walking up.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).resolve().parents[1] / "src"))  # noqa: F821 - injected by Snakemake
from cotscale import workflow  # noqa: E402

workflow.run_rule(snakemake, workflow.entry_point(snakemake.rule))  # noqa: F821

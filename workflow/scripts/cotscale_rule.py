"""Entry point of every rule's `script:`: hand the job to cotscale (see cotscale.workflow).

The repository's src/ goes on sys.path so that a rule's conda environment (envs/*.yaml) needs only the libraries,
not an installed cotscale.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(snakemake.scriptdir).parents[1] / "src"))  # noqa: F821 - injected by Snakemake

from cotscale.workflow import run_rule  # noqa: E402

run_rule(snakemake)  # noqa: F821

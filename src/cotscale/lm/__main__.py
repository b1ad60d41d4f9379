"""``python -m cotscale.lm <lm_eval CLI args>``: lm-eval's CLI with ``--model cotscale`` registered."""

from lm_eval.__main__ import cli_evaluate

import cotscale.lm.model  # noqa: F401 - registers the "cotscale" model

if __name__ == "__main__":
    cli_evaluate()

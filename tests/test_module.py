"""The workflow used as a Snakemake `module` from another directory (issue 26): a project with its own Snakefile
imports every rule of this checkout and builds a figure; the jobs run this checkout's code and find its files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cotscale.pca import RUAN_COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"


@pytest.mark.slow
def test_workflow_as_a_module_draws_a_figure(tmp_path):
    # A small table of Ruan et al.'s shape, in the using project's folder (a path relative to its working directory)
    rng = np.random.default_rng(0)
    ruan = pd.DataFrame(rng.uniform(0.2, 0.8, size=(6, len(RUAN_COLUMNS))), columns=list(RUAN_COLUMNS))
    ruan.insert(0, "Model", [f"m{i}" for i in range(6)])
    ruan.to_csv(tmp_path / "ruan.csv", index=False)
    (tmp_path / "Snakefile").write_text(
        f'configfile: "{ROOT}/config/demo.yaml"\n\n'
        'config["analysis"]["ruan_table"] = "ruan.csv"\n\n'
        "module cotscale:\n"
        f'    snakefile: "{ROOT}/Snakefile"\n'
        "    config: config\n\n"
        "use rule * from cotscale\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the module's own path insert finds src/
    run = subprocess.run([str(SNAKEMAKE), "--cores", "1", "fig6_pca_loadings_ruan"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    png = tmp_path / "figures" / "fig6_pca_loadings_ruan.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 8 benchmarks (the seven and HumanEval) and the explained-variance row: the table was really read
    assert len(pd.read_csv(tmp_path / "results" / "tables" / "pca_loadings_ruan.csv")) == len(RUAN_COLUMNS) + 1
    log = (tmp_path / "logs" / "figures" / "fig6_pca_loadings_ruan.log").read_text()
    assert "nothing to draw" not in log and "has no rows" not in log, log
    # the rules that did the work have their benchmark files (this checkout's rules, not an installed copy's)
    assert (tmp_path / "logs" / "benchmarks" / "figures" / "fig6_pca_loadings_ruan.tsv").exists()
    assert (tmp_path / "logs" / "benchmarks" / "pca_ruan.tsv").exists()


def test_entry_point_by_rule_name_also_with_a_module_prefix():
    """Every rule runs workflow/scripts/cotscale_rule.py, which picks the entry point by the rule's name; a rule
    imported with `use rule * from cotscale as cotscale_*` keeps its name as a suffix."""
    from cotscale import workflow
    from cotscale.config import CotscaleError

    expected = {"evaluate": workflow.evaluate, "evaluate_model_2": workflow.evaluate, "aggregate": workflow.aggregate,
                "aggregate_strategy": workflow.aggregate_strategy, "pca": workflow.pca, "pca_ruan": workflow.pca_ruan,
                "fig12_plan": workflow.figure, "table1_tokens": workflow.figure, "plan": workflow.plan}
    for rule, entry in expected.items():
        assert workflow.entry_point(rule) is entry, rule
        assert workflow.entry_point(f"cotscale_{rule}") is entry, rule
    with pytest.raises(CotscaleError, match="rule 'all' has no entry point"):
        workflow.entry_point("all")


def test_contract_paths_read_back():
    """aggregate.py recovers a suite's model from its benchmark file: model keys may hold `@revision/with/slashes`."""
    from cotscale import contract

    assert contract.path_fields(contract.EVAL_BENCHMARK["model"], "w/logs/benchmarks/evaluate/m@step1/a.tsv") == {
        "model": "m@step1/a"}
    assert contract.path_fields(contract.EVAL_BENCHMARK["strategy"],
                                "logs/benchmarks/evaluate/m@rev/x/hybrid_cot.tsv") == {"model": "m@rev/x",
                                                                                       "strategy": "hybrid_cot"}
    with pytest.raises(ValueError, match="is not a path of the form"):
        contract.path_fields(contract.EVAL_BENCHMARK["strategy"], "logs/benchmarks/evaluate/m.tsv")

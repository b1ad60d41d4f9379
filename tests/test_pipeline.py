"""End to end: a reduced demo through real Snakemake, real lm-eval and locally trained models.

The tables are checked against the per-sample records they were computed from, so a wrong join or metric in the
aggregation fails here, not in a figure.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from _demo import read_gz, reduced_demo, samples, snakemake, write_config


@pytest.fixture(scope="module")
def demo_run(root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    write_config(workdir, reduced_demo(root))
    run = snakemake(root, workdir, "aggregate")
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


@pytest.mark.slow
def test_tables_match_the_samples(demo_run):
    bench = pd.read_csv(demo_run / "results" / "tables" / "benchmarks.csv").set_index("model")
    assert sorted(bench.index) == ["mini-llama", "mini-neox@step10", "mini-neox@step30"]
    for model in bench.index:
        arc = samples(demo_run, model, "arc_challenge")
        assert len(arc) == 6
        assert bench.loc[model, "arc_challenge"] == pytest.approx(sum(s["acc"] for s in arc) / len(arc))
        mmlu = samples(demo_run, model, "mmlu")  # 3 subjects × 6 documents, pooled by size as lm-eval does
        assert len(mmlu) == 18
        assert bench.loc[model, "mmlu"] == pytest.approx(sum(s["acc"] for s in mmlu) / len(mmlu))
        gsm = [s for s in samples(demo_run, model, "gsm8k") if s["filter"] == "flexible-extract"]
        assert bench.loc[model, "gsm8k"] == pytest.approx(sum(s["exact_match"] for s in gsm) / len(gsm))
        # the overall score is the mean of the configured benchmarks; the absent ones make it NaN, not a wrong number
        assert bench.loc[model, "n_benchmarks"] == 3 and pd.isna(bench.loc[model, "overall"])
    neox = bench.loc["mini-neox@step30"]
    assert neox["train_flops"] == 6 * neox["N"] * neox["D"] and neox["D"] == 30 * 4 * 64


@pytest.mark.slow
def test_results_record_provenance_and_usage(demo_run):
    out = demo_run / "results" / "evals" / "mini-neox@step10" / "standard" / "arc_challenge"
    meta = json.loads((out / "results.json").read_text())["cotscale"]
    assert (meta["revision"], meta["D"], meta["seed"], meta["backend"]) == ("step10", 10 * 4 * 64, 1234, "hf")
    assert {"lm_eval", "torch", "transformers"} <= set(meta["versions"])
    usage = read_gz(out / "usage.jsonl.gz")
    assert len({u["doc_id"] for u in usage}) == 6 and all(u["kind"] == "loglikelihood" for u in usage)
    tokens = pd.read_csv(demo_run / "results" / "tables" / "tokens.csv")
    row = tokens[(tokens.model == "mini-neox@step10") & (tokens.task == "arc_challenge")].iloc[0]
    assert row["requests"] == len(usage) and row["prompt_tokens"] == sum(u["prompt_tokens"] for u in usage)

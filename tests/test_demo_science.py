"""The demo's science end to end: fits on models the pipeline itself trained and evaluated, checked against an oracle.

A reduced demo (the tinyllama family: three sizes; hybrid vs hybrid_cot on all seven benchmarks)
runs through real Snakemake and lm-eval. The regression, train-equivalent FLOPs and crossover it writes are
recomputed here from benchmarks.csv and tokens.csv alone, with numpy's least squares and the formulas of DESIGN.md,
independently of cotscale.fits / table1 / flops.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _demo import science_run

TABLES = "results/tables"
FAMILY = "tinyllama"  # three sizes: its slope is clearly positive (tinyneox's bootstrap interval reaches 0)


@pytest.fixture(scope="module")
def run(root, tmp_path_factory):
    return science_run(tmp_path_factory, root)


def _read(workdir, name):
    return pd.read_csv(workdir / TABLES / name)


def _oracle(workdir) -> pd.DataFrame:
    """Per model: OLS of the baseline's overall on ln C within the family, TEF, Table I tokens and R*."""
    bench = _read(workdir, "benchmarks.csv")
    tokens = _read(workdir, "tokens.csv")
    base = bench[bench.strategy == "hybrid"].set_index("model")
    cot = bench[bench.strategy == "hybrid_cot"].set_index("model")
    C = 6.0 * base["N"] * base["D"]
    X = np.column_stack([np.ones(len(base)), np.log(C.to_numpy())])
    (a, b), *_ = np.linalg.lstsq(X, base["overall"].to_numpy(), rcond=None)
    resid = base["overall"].to_numpy() - X @ [a, b]
    r2 = 1 - resid @ resid / np.sum((base["overall"] - base["overall"].mean()) ** 2)
    # Table I: per benchmark (subtasks pooled) generated tokens per generate request, then the unweighted mean
    per_bench = tokens.groupby(["model", "strategy", "benchmark"])[["generated_tokens", "generate_requests"]].sum()
    tok = (per_bench["generated_tokens"] / per_bench["generate_requests"]).groupby(["model", "strategy"]).mean()
    out = pd.DataFrame({"C": C, "N": base["N"], "overall_cot": cot["overall"]})
    reg = _read(workdir, "regression.csv").set_index("family").loc[FAMILY]
    # the pipeline gives no TEF where the slope's bootstrap interval (its own draws) reaches 0: follow that gate
    out["tef"] = np.exp((out["overall_cot"] - a) / b) if b > 0 and reg["b_ci_low"] > 0 else np.nan
    out["tok_std"] = tok.xs("hybrid", level="strategy")
    out["tok_cot"] = tok.xs("hybrid_cot", level="strategy")
    finite = (out["tef"] > out["C"]) & (out["tok_cot"] > out["tok_std"])
    out["r_star"] = np.where(finite, (out["tef"] - out["C"]) / (2 * out["N"] * (out["tok_cot"] - out["tok_std"])), np.nan)
    out.attrs.update(a=a, b=b, r2=r2)
    return out


@pytest.mark.slow
def test_fits_match_an_independent_oracle(run):
    bench = _read(run, "benchmarks.csv")
    assert len(bench) == 6 and bench["overall"].notna().all() and (bench["n_benchmarks"] == 7).all()
    oracle = _oracle(run)
    reg = _read(run, "regression.csv").set_index("family").loc[FAMILY]
    assert reg["n_models"] == 3
    assert (reg["a"], reg["b"], reg["r2"]) == pytest.approx((oracle.attrs["a"], oracle.attrs["b"], oracle.attrs["r2"]))
    assert reg["b"] > 0  # the demo world is learnable: longer training scores higher

    tef = _read(run, "train_equivalent.csv").set_index("model").loc[oracle.index]
    assert oracle["tef"].notna().all()  # this family's slope is clearly positive: every model has a TEF
    np.testing.assert_allclose(tef["tef"], oracle["tef"], rtol=1e-9)
    np.testing.assert_allclose(tef["tef_ratio"], oracle["tef"] / oracle["C"], rtol=1e-9)

    cross = _read(run, "crossover.csv")
    cross = cross[cross["cost_model"] == "paper"].set_index("model").loc[oracle.index]  # the paper's 2·N·t
    np.testing.assert_allclose(cross["tok_std"], oracle["tok_std"], rtol=1e-9)
    np.testing.assert_allclose(cross["tok_cot"], oracle["tok_cot"], rtol=1e-9)
    np.testing.assert_allclose(cross["crossover_requests"], oracle["r_star"], rtol=1e-9, equal_nan=True)
    assert (cross["reason"].isna() | (cross["reason"].fillna("") == "")).to_numpy().tolist() == (
        oracle["r_star"].notna().to_numpy().tolist())
    assert oracle["r_star"].notna().any()  # at least one real crossover


@pytest.mark.slow
def test_two_clean_runs_give_identical_fit_tables(root, tmp_path_factory, run):
    second = science_run(tmp_path_factory, root, "b")
    for name in ("benchmarks.csv", "tokens.csv", "regression.csv", "train_equivalent.csv", "crossover.csv",
                 "isoflop_fit.csv", "table1_tokens.csv"):
        first_table, second_table = _read(run, name), _read(second, name)
        assert len(first_table) > 0, name
        assert (run / TABLES / name).read_bytes() == (second / TABLES / name).read_bytes(), name


@pytest.mark.slow
def test_per_document_outcomes_reproduce_the_scores(run):
    # the mean of each benchmark's per-document values (outcomes.parquet, read from lm-eval's sample records) is the
    # score benchmarks.csv has from lm-eval's results.json: the intervals resample the documents the scores average
    bench = _read(run, "benchmarks.csv")
    for strategy in ("hybrid", "hybrid_cot"):
        outcomes = pd.read_parquet(run / TABLES / "strategies" / strategy / "outcomes.parquet")
        means = outcomes.groupby(["model", "benchmark"])["value"].mean().unstack()
        scores = bench[bench.strategy == strategy].set_index("model")[means.columns]
        np.testing.assert_allclose(means.loc[scores.index].to_numpy(), scores.to_numpy(), rtol=0, atol=1e-12)
        rows = bench[bench.strategy == strategy]
        assert ((rows["overall_ci_low"] <= rows["overall"]) & (rows["overall"] <= rows["overall_ci_high"])).all()

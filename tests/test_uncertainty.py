"""Intervals (cotscale.uncertainty): every expected value comes from a second method computed here — scipy's paired
bootstrap, an exhaustive enumeration of resamples, an exact binomial sum, a normal calculation by hand."""

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from cotscale import fits, uncertainty
from cotscale.config import BENCHMARKS

BOOT = {"draws": 4000, "level": 0.95, "seed": 7}


def outcome_rows(model, strategy, values_by_bench, tokens=0.0):
    return [{"model": model, "strategy": strategy, "benchmark": b, "task": b, "doc_id": i, "budget_kind": None,
             "budget": math.nan, "value": float(v), "generated_tokens": tokens, "generate_requests": 1.0}
            for b, values in values_by_bench.items() for i, v in enumerate(values)]


def bench_row(model, strategy, scores, family="f", n=1e8, d=1e9, stderr=0.0):
    row = {"model": model, "strategy": strategy, "family": family, "N": n, "D": d, "train_flops": 6 * n * d}
    for b in BENCHMARKS:
        row[b], row[f"{b}_stderr"] = scores.get(b, math.nan), stderr
    row["overall"] = np.mean([row[b] for b in BENCHMARKS])
    row["overall_stderr"] = stderr
    return row


def test_paired_gain_interval_matches_scipy_paired_bootstrap():
    rng = np.random.default_rng(3)
    base = (rng.random(60) < 0.4).astype(float)
    treat = np.where(rng.random(60) < 0.3, 1 - base, base)  # correlated with base: pairing matters
    out = pd.DataFrame(outcome_rows("m", "b", {"arc_challenge": base}) + outcome_rows("m", "t", {"arc_challenge": treat}))
    bench = pd.DataFrame([bench_row("m", "b", {"arc_challenge": base.mean()}),
                          bench_row("m", "t", {"arc_challenge": treat.mean()})])
    boot = {**BOOT, "draws": 20000}
    row = next(r for r in uncertainty.gain_rows("p", "b", "t", bench, out, boot) if r["benchmark"] == "arc_challenge")
    ref = stats.bootstrap((base, treat), lambda b, t, axis=-1: t.mean(axis=axis) - b.mean(axis=axis), paired=True,
                          vectorized=True, n_resamples=20000, method="percentile", confidence_level=0.95,
                          random_state=np.random.default_rng(11)).confidence_interval
    # Monte-Carlo tolerance: two independent 20 000-draw percentile estimates of a tail quantile of a mean of 60
    # documents (step 1/60) agree within one step
    assert row["gain_ci_low"] == pytest.approx(ref.low, abs=1 / 60 + 1e-9)
    assert row["gain_ci_high"] == pytest.approx(ref.high, abs=1 / 60 + 1e-9)
    assert row["gain"] == pytest.approx(treat.mean() - base.mean())


def test_stratified_overall_draws_match_exhaustive_enumeration():
    # two documents per benchmark: each benchmark's resample is one of 4 equally likely ordered pairs, so the
    # overall score's bootstrap distribution has 4^7 equally likely outcomes, enumerated here
    values = {b: [1.0, 0.0] if i % 2 else [1.0, 1.0] if i == 2 else [0.0, 0.0] if i == 4 else [0.0, 1.0]
              for i, b in enumerate(BENCHMARKS)}
    out = pd.DataFrame(outcome_rows("m", "s", values))
    draws = uncertainty.overall(uncertainty.strategy_draws(out, {**BOOT, "draws": 40000})[("m", "s")])
    per_bench = [[np.mean([v[i], v[j]]) for i, j in itertools.product(range(2), repeat=2)] for v in values.values()]
    exact = np.array([np.mean(c) for c in itertools.product(*per_bench)])
    # mean and spread within 4 Monte-Carlo standard errors; every tail probability within 0.01
    assert draws.mean() == pytest.approx(exact.mean(), abs=4 * exact.std() / math.sqrt(len(draws)))
    assert draws.std() == pytest.approx(exact.std(), rel=0.02)
    for x in np.unique(exact):
        assert (draws <= x + 1e-12).mean() == pytest.approx((exact <= x + 1e-12).mean(), abs=0.01)


def test_mcnemar_against_exact_binomial():
    before = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
    after = np.array([1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 0])
    gained, lost = 7, 2  # counted by eye: (0 -> 1) and (1 -> 0)
    n = gained + lost
    p = min(1.0, 2 * sum(math.comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n)
    assert uncertainty.mcnemar_exact(before, after) == (pytest.approx(p), gained, lost)
    assert uncertainty.mcnemar_exact(before, before) == (1.0, 0, 0)
    assert math.isnan(uncertainty.mcnemar_exact([0.5, 1], [1, 1])[0])  # not binary: no McNemar


def test_holm_by_hand():
    # sorted p 0.01, 0.02, 0.04, NaN (no test): 3 tests -> 0.03, 0.04 (max(0.02*2, 0.03)), 0.04
    got = uncertainty.holm([0.04, 0.01, np.nan, 0.02])
    np.testing.assert_allclose(got, [0.04, 0.03, np.nan, 0.04])


def test_normal_approximation_by_hand():
    bench = pd.DataFrame([bench_row("m", "b", {b: 0.40 for b in BENCHMARKS}, stderr=0.004),
                          bench_row("m", "t", {b: 0.41 for b in BENCHMARKS}, stderr=0.003)])
    row = uncertainty.gain_rows("p", "b", "t", bench, None, BOOT, only_overall=True)[0]
    se = math.sqrt(0.004**2 + 0.003**2)  # 0.005
    assert row["gain"] == pytest.approx(0.01)
    assert row["gain_ci_low"] == pytest.approx(0.01 - 1.959964 * se, abs=1e-6)
    assert row["gain_ci_high"] == pytest.approx(0.01 + 1.959964 * se, abs=1e-6)
    assert row["p_value"] == pytest.approx(2 * (1 - 0.5 * (1 + math.erf(2 / math.sqrt(2)))), abs=1e-9)  # z = 2
    assert row["ci_method"].startswith("normal_unpaired_from_stderr")
    lo, hi = uncertainty.normal_interval(0.99, 0.01, 0.95)
    assert hi == 1.0 and lo == pytest.approx(0.99 - 1.959964 * 0.01, abs=1e-6)  # never outside [0, 1]


def test_identical_outcomes_give_zero_gain_and_no_crossover():
    rng = np.random.default_rng(0)
    values = {b: (rng.random(12) < 0.5).astype(float) for b in BENCHMARKS}
    out = pd.DataFrame(outcome_rows("m", "b", values) + outcome_rows("m", "t", values))
    scores = {b: v.mean() for b, v in values.items()}
    bench = pd.DataFrame([bench_row("m", "b", scores), bench_row("m", "t", scores)])
    table = uncertainty.gain_table(uncertainty.gain_rows("p", "b", "t", bench, out, BOOT), BOOT["level"])
    assert (table["gain_ci_low"] == 0).all() and (table["gain_ci_high"] == 0).all()
    assert not table["significant"].any() and (table["verdict"] == "not distinguishable from zero").all()
    cross = pd.DataFrame([{"model": "m", "train_flops": 1.0, "reason": ""}])
    tef = pd.DataFrame([{"model": "m", "tef_ci_low": 100.0}])  # even with a TEF far above C
    verdict = fits.crossover_verdict(cross, tef, table[table["benchmark"] == "overall"])
    assert verdict == ["no crossover claimed: the CoT gain's interval [0, 0] contains 0"]


def test_strategies_are_paired_across_processes():
    # one strategy's draws alone equal its draws beside another strategy's: the resample depends on (seed, model,
    # benchmark, documents) only, so per-strategy tables and paired comparisons see the same documents
    rng = np.random.default_rng(1)
    a = pd.DataFrame(outcome_rows("m", "a", {"gsm8k": rng.random(30)}))
    b = pd.DataFrame(outcome_rows("m", "b", {"gsm8k": rng.random(30)}))
    alone = uncertainty.strategy_draws(a, BOOT)[("m", "a")]["gsm8k"]
    together = uncertainty.strategy_draws(pd.concat([a, b]), BOOT)[("m", "a")]["gsm8k"]
    np.testing.assert_allclose(alone, together, rtol=1e-12)  # the same resamples (BLAS rounding aside)


def test_score_intervals_stay_in_unit_interval():
    out = pd.DataFrame(outcome_rows("m", "s", {b: [1.0] * 11 + [0.0] for b in BENCHMARKS}))
    cols = uncertainty.score_interval_columns(uncertainty.strategy_draws(out, BOOT)[("m", "s")], BOOT)
    assert all(0.0 <= v <= 1.0 for v in cols.values())
    # P(a resample of 12 documents has no 0) = (11/12)^12 = 0.35 > 2.5%: the benchmark's upper bound is 1, as a
    # Wald interval's (11/12 + 1.96·0.08 = 1.07) was not
    assert cols["arc_challenge_ci_high"] == 1.0 and cols["overall_ci_low"] < 11 / 12 < cols["overall_ci_high"]


def _points(rows):
    base = {"revision": "main", "family": "f", "D": 1e9, "budget": "", "generated_tokens_per_request": 0.0,
            "seconds_per_request": np.nan, "token_unit": "tokens", "overall_stderr": np.nan, "overall_ci_low": np.nan,
            "overall_ci_high": np.nan}
    points = pd.DataFrame([{**base, **r} for r in rows])
    points["train_flops"] = 6 * points["N"] * points["D"]
    return points


def test_p_cheapest_overlap_and_domination():
    from cotscale import plan

    rng = np.random.default_rng(5)
    # "small" is cheaper and scores 0.5 on 12 documents per benchmark; "big" scores 0.75. At S = 0.5 the small
    # point qualifies in about half the draws: p_cheapest strictly between 0 and 1 for both (their intervals
    # overlap S). At S = 0.3 the small point reaches S in every draw (its lowest possible resample mean is far
    # above) and, cheaper, wins every draw: p = 1.
    small = {b: np.array([1.0] * 6 + [0.0] * 6) for b in BENCHMARKS}
    big = {b: (rng.random(12) < 0.75).astype(float) for b in BENCHMARKS}
    big = {b: np.sort(v)[::-1] if v.mean() else v for b, v in big.items()}
    out = pd.DataFrame(outcome_rows("small", "s", small) + outcome_rows("big", "s", big))
    points = _points([
        {"model": "small", "strategy": "s", "N": 1e6, "tokens_per_request": 10.0,
         "overall": np.mean([v.mean() for v in small.values()])},
        {"model": "big", "strategy": "s", "N": 1e8, "tokens_per_request": 10.0,
         "overall": np.mean([v.mean() for v in big.values()])}])
    draws = plan.point_draws(points, out, BOOT)
    overlap = plan.rank(points, 1e3, 0.5, draws).set_index("model")["p_cheapest"]
    assert 0 < overlap["small"] < 1 and 0 < overlap["big"] < 1
    assert overlap.sum() == pytest.approx(((draws >= 0.5).any(axis=1)).mean())
    dominated = plan.rank(points, 1e3, 0.3, draws).set_index("model")["p_cheapest"]
    assert dominated["small"] == 1.0 and dominated["big"] == 0.0
    # by hand: small's share at S = 0.5 is the share of its draws >= 0.5 (it is cheaper whenever it qualifies)
    assert overlap["small"] == pytest.approx((draws[:, 0] >= 0.5).mean())


def test_sweep_outcomes_reproduce_the_sweep_scores():
    from cotscale import scaling

    scored = pd.DataFrame([
        {"model": "m", "revision": "main", "family": "f", "N": 1e6, "D": 1e9, "strategy": "g", "benchmark": b,
         "task": b, "doc_id": d, "budget": budget, "correct": ok, "generated_tokens": t}
        for b, d, budget, ok, t in [("gsm8k", 1, 32, True, 20), ("gsm8k", 0, 32, False, 32),
                                    ("gsm8k", 0, 64, True, 50), ("gsm8k", 1, 64, True, 20)]])
    rows = scaling.length_sweep(scored)
    out = scaling.sweep_outcomes(rows)
    assert list(out.columns) == list(uncertainty_outcome_columns())
    by = out.groupby("budget")
    assert by["value"].mean().to_dict() == {32.0: 0.5, 64.0: 1.0}  # counted by hand from the rows above
    assert by["generated_tokens"].mean().to_dict() == {32.0: 26.0, 64.0: 35.0}
    assert (out["budget_kind"] == "max_gen_toks").all() and list(out["doc_id"][:2]) == [0, 1]


def uncertainty_outcome_columns():
    from cotscale.contract import OUTCOME_COLUMNS

    return OUTCOME_COLUMNS


def test_fig12_marks_cells_whose_winner_is_unsure(tmp_path):
    from cotscale import figures

    rows = [{"requests": r, "target": s, "model": "m", "strategy": "s", "budget": "", "lifetime_flops": 1.0,
             "cost": "generated", "p_cheapest": p}
            for (r, s, p) in [(1e3, 0.2, 0.95), (1e4, 0.2, 0.79), (1e3, 0.3, 0.5), (1e4, 0.3, 1.0)]]
    path = tmp_path / "plan.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    fig = figures.fig12_plan({"plan": path}, tmp_path / "fig12.png", {"models": {}})
    marks = [line for line in fig.axes[0].get_lines() if line.get_gid() == "uncertain"]
    assert len(marks) == 1
    assert sorted(zip(marks[0].get_xdata(), marks[0].get_ydata())) == [(1e3, 0.3), (1e4, 0.2)]

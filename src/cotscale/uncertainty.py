"""Intervals from per-document outcomes: a seeded, vectorised bootstrap over documents, paired across strategies.

Every score of the pipeline is a mean over documents (cotscale.aggregate: a benchmark's metric is the mean of its
documents' values, a group such as mmlu or xwinograd pooling its subtasks' documents; ``overall`` the unweighted mean
over the seven benchmarks). A bootstrap draw resamples each benchmark's documents with replacement (stratified by
benchmark, a group pooled as its score pools it) and recomputes those means.

Pairing: the documents of one (model, benchmark) are resampled with a generator seeded by (seed, model, benchmark,
number of documents) alone, so every strategy of a model that scored the same documents gets the *same* resampled
indices, in any process — the tables of one strategy (rule aggregate_strategy) and the paired comparisons (cot_gain,
TEF, R*, the planner) see identical draws. Documents are ordered by (task, doc_id) before indexing.

A draw is an index array; the means of all strategies at once are ``counts @ values`` with ``counts`` the draw's
multiplicities (np.bincount of the index rows): one matrix product per (model, benchmark) instead of a loop per draw.
"""

from __future__ import annotations

import math
import warnings
import zlib

import numpy as np
import pandas as pd

from cotscale.config import BENCHMARKS
from cotscale.contract import CI_HIGH, CI_LOW, CI_METHOD
from cotscale.flops import train_flops

#: defaults of config key analysis.bootstrap (workflow/schemas/config.schema.yaml repeats them for the docs)
DEFAULTS = {"draws": 2000, "level": 0.95, "seed": 0}
#: draws per chunk of index arrays: bounds memory at chunk × documents of one benchmark
CHUNK = 250
NORMAL_METHOD = "normal_unpaired_from_stderr"


def settings(config: dict) -> dict:
    """analysis.bootstrap of a loaded config, with its defaults (the seed defaults to the config's ``seed``)."""
    boot = dict((config.get("analysis") or {}).get("bootstrap") or {})
    out = {**DEFAULTS, "seed": config.get("seed", DEFAULTS["seed"]), **boot}
    return {"draws": int(out["draws"]), "level": float(out["level"]), "seed": int(out["seed"])}


def method(boot: dict, what: str = "documents, stratified by benchmark, paired across strategies") -> str:
    """The ``ci_method`` text of a bootstrap interval."""
    return (f"{boot['level']:.0%} percentile bootstrap over {what} "
            f"(draws={boot['draws']}, seed={boot['seed']})")


def generator(seed: int, *key) -> np.random.Generator:
    """A generator determined by ``seed`` and ``key`` alone (stable across processes: crc32, not hash())."""
    words = [zlib.crc32(str(part).encode()) for part in key]
    return np.random.default_rng(np.random.SeedSequence([int(seed), *words]))


def counts(n: int, draws: int, rng: np.random.Generator):
    """Multiplicities (chunk × n, float64) of ``draws`` resamples of n documents, yielded in chunks of CHUNK draws:
    each chunk is an index array rng.integers(0, n, (chunk, n)) counted row by row with one bincount."""
    done = 0
    while done < draws:
        m = min(CHUNK, draws - done)
        idx = rng.integers(0, n, size=(m, n))
        idx += (np.arange(m) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=m * n).reshape(m, n).astype(np.float64)
        done += m


def resampled_means(values: np.ndarray, draws: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means (draws × k) of the k columns of ``values`` (n × k), all columns on the same resamples."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n == 0:
        return np.full((draws, values.shape[1]), np.nan)
    return np.concatenate([c @ values for c in counts(n, draws, rng)]) / n


def percentile(draws: np.ndarray, level: float, axis: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) percentile interval of the draws along ``axis``, NaN draws ignored. Draws with infinities (R*
    where CoT costs nothing extra) take order statistics instead of interpolating (inf − inf is NaN)."""
    tail = (1.0 - level) / 2.0
    how = "inverted_cdf" if np.isinf(draws).any() else "linear"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are NaN intervals
        return (np.nanquantile(draws, tail, axis=axis, method=how),
                np.nanquantile(draws, 1.0 - tail, axis=axis, method=how))


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["task", "doc_id"], kind="stable")


def document_matrix(outcomes: pd.DataFrame, columns=("value",)) -> dict:
    """Per (model, benchmark): {document keys: {strategy: values n × len(columns)}} of the plain points of an
    outcome table (budget-sweep rows are other operating points and are left out). Strategies of a model that scored
    the same documents share a block (they are paired); one with other documents gets its own."""
    plain = outcomes[outcomes["budget_kind"].isna() | (outcomes["budget_kind"] == "")]
    out = {}
    for (model, bench), grp in plain.groupby(["model", "benchmark"], sort=True, observed=True):
        blocks: dict[tuple, dict] = {}
        for strategy, rows in grp.groupby("strategy", sort=True, observed=True):
            rows = _ordered(rows)
            keys = tuple(zip(rows["task"], rows["doc_id"]))
            blocks.setdefault(keys, {})[strategy] = rows[list(columns)].to_numpy(dtype=np.float64)
        out[(model, bench)] = blocks
    return out


def strategy_draws(outcomes: pd.DataFrame, boot: dict, columns=("value",)) -> dict[tuple[str, str], dict]:
    """Bootstrap draws of every (model, strategy) of an outcome table: {(model, strategy): {benchmark: array
    (draws × len(columns)) of the resampled column means}}. Strategies of a model with the same documents share the
    resampled indices (paired)."""
    out: dict[tuple[str, str], dict] = {}
    k = len(columns)
    for (model, bench), blocks in document_matrix(outcomes, columns).items():
        for keys, by_strategy in blocks.items():
            names = sorted(by_strategy)
            rng = generator(boot["seed"], model, bench, len(keys))
            means = resampled_means(np.hstack([by_strategy[s] for s in names]), boot["draws"], rng)
            for j, strategy in enumerate(names):
                out.setdefault((model, strategy), {})[bench] = means[:, j * k:(j + 1) * k]
    return out


def overall(by_benchmark: dict[str, np.ndarray], benchmarks=BENCHMARKS, column: int = 0) -> np.ndarray:
    """Draws of ``overall``: the unweighted mean over the benchmarks (NaN where one has no draws, as the score)."""
    parts = [by_benchmark[b][:, column] if b in by_benchmark else None for b in benchmarks]
    if all(p is None for p in parts):
        return np.array([np.nan])
    draws = next(len(p) for p in parts if p is not None)
    stacked = np.column_stack([p if p is not None else np.full(draws, np.nan) for p in parts])
    return stacked.mean(axis=1)


def score_interval_columns(draws_by_benchmark: dict[str, np.ndarray], boot: dict, benchmarks=BENCHMARKS) -> dict:
    """benchmarks.csv's interval columns of one (model, strategy): overall_ci_low/high and <benchmark>_ci_low/high."""
    row = {}
    low, high = percentile(overall(draws_by_benchmark, benchmarks), boot["level"])
    row[f"overall{CI_LOW}"], row[f"overall{CI_HIGH}"] = float(low), float(high)
    for bench in benchmarks:
        if bench in draws_by_benchmark:
            low, high = percentile(draws_by_benchmark[bench][:, 0], boot["level"])
        else:
            low = high = math.nan
        row[f"{bench}{CI_LOW}"], row[f"{bench}{CI_HIGH}"] = float(low), float(high)
    return row


def interval_columns(benchmarks=BENCHMARKS) -> list[str]:
    """The interval columns benchmarks.csv gains, after its existing ones."""
    return [f"overall{CI_LOW}", f"overall{CI_HIGH}",
            *(f"{b}{s}" for b in benchmarks for s in (CI_LOW, CI_HIGH)), CI_METHOD]


def normal_interval(value, stderr, level: float):
    """(low, high) of value ± z·stderr, clipped to [0, 1] (scores are proportions): the interval of a score for
    which only lm-eval's stderr is known (published data)."""
    from scipy.stats import norm

    z = norm.ppf(0.5 + level / 2.0)
    value, stderr = np.asarray(value, dtype=float), np.asarray(stderr, dtype=float)
    return np.clip(value - z * stderr, 0.0, 1.0), np.clip(value + z * stderr, 0.0, 1.0)


def normal_interval_columns(row: dict, level: float, benchmarks=BENCHMARKS) -> dict:
    """benchmarks.csv's interval columns from the stderr columns of a row (no per-document outcomes)."""
    out = {}
    for name in ("overall", *benchmarks):
        low, high = normal_interval(row[name], row[f"{name}_stderr"], level)
        out[f"{name}{CI_LOW}"], out[f"{name}{CI_HIGH}"] = float(low), float(high)
    return out


# ---------------------------------------------------------------- tests of a gain

def mcnemar_exact(before, after) -> tuple[float, int, int]:
    """Exact McNemar test of paired binary outcomes: (two-sided p, documents right only after, right only before).
    Under no effect the discordant pairs split as Binomial(b + c, 1/2); p = min(1, 2·P(X ≤ min(b, c)))."""
    from scipy.stats import binom

    before, after = np.asarray(before, dtype=float), np.asarray(after, dtype=float)
    if not (np.isin(before, (0.0, 1.0)).all() and np.isin(after, (0.0, 1.0)).all()):
        return math.nan, -1, -1
    gained = int(((after == 1) & (before == 0)).sum())
    lost = int(((after == 0) & (before == 1)).sum())
    if gained + lost == 0:
        return 1.0, 0, 0
    return float(min(1.0, 2.0 * binom.cdf(min(gained, lost), gained + lost, 0.5))), gained, lost


def bootstrap_p(draws: np.ndarray) -> float:
    """Two-sided bootstrap p-value of a gain being 0: twice the smaller share of draws on either side of 0 (draws
    exactly 0 count on both sides, so identical outcomes give 1)."""
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return math.nan
    return float(min(1.0, 2.0 * min((draws <= 0).mean(), (draws >= 0).mean())))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error over the given tests; NaN stays NaN)."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order]) if m else np.array([])
    out[order] = np.minimum(adjusted, 1.0)
    return out


def normal_p(gain, stderr) -> float:
    """Two-sided p of a normal gain with its standard error being 0."""
    from scipy.stats import norm

    if not stderr > 0:
        return math.nan
    return float(2.0 * norm.sf(abs(gain) / stderr))


GAIN_COLUMNS = ["pair", "model", "family", "train_flops", "baseline", "treatment", "benchmark", "score_baseline",
                "score_treatment", "gain", "gain_ci_low", "gain_ci_high", "ci_method", "documents", "gained", "lost",
                "p_value", "test", "p_adjusted", "correction", "significant", "verdict"]


def _verdict(gain: float, low: float, high: float, significant: bool) -> str:
    if np.isnan(low) or np.isnan(high):
        return "no interval"
    if low > 0 or high < 0:
        what = "gain" if low > 0 else "loss"
        if significant:
            return f"{what} distinguishable from zero"
        return f"{what}'s interval excludes zero, but not significant after Holm's correction across models"
    return "not distinguishable from zero"


def gain_rows(pair: str, base: str, treat: str, bench: pd.DataFrame, outcome_table: pd.DataFrame | None,
              boot: dict, benchmarks=BENCHMARKS, only_overall: bool = False) -> list[dict]:
    """cot_gain.csv's rows of one analysis pair: per model with both strategies, ``overall`` and every benchmark:
    the gain treat − base, its interval and a test. With per-document outcomes: the paired bootstrap (the same
    resampled documents for both strategies), an exact McNemar test per benchmark and the bootstrap p of overall;
    without (published data): the normal approximation from lm-eval's stderr, unpaired."""
    by = {s: bench[bench["strategy"] == s].set_index("model") for s in (base, treat)}
    models = sorted(set(by[base].index) & set(by[treat].index))
    lone = [{"pair": pair, "model": m, "family": by[s].loc[m, "family"], "baseline": base, "treatment": treat,
             "benchmark": "overall", "verdict": f"no {other} score"}
            for s, other in ((base, treat), (treat, base)) for m in sorted(set(by[s].index) - set(models))]
    draws = {} if outcome_table is None else strategy_draws(
        outcome_table[outcome_table["strategy"].isin([base, treat]) & outcome_table["model"].isin(models)], boot)
    docs = None if outcome_table is None else {
        key: grp.sort_values(["task", "doc_id"], kind="stable")
        for key, grp in outcome_table[outcome_table["budget_kind"].isna()].groupby(["model", "strategy", "benchmark"],
                                                                                  observed=True)}
    rows = []
    for model in models:
        b, t = by[base].loc[model], by[treat].loc[model]
        ident = {"pair": pair, "model": model, "family": t["family"], "train_flops": float(train_flops(t["N"], t["D"])),
                 "baseline": base, "treatment": treat}
        for name in ("overall",) if only_overall else ("overall", *benchmarks):
            row = {**ident, "benchmark": name, "score_baseline": float(b[name]), "score_treatment": float(t[name]),
                   "gain": float(t[name] - b[name]), "documents": math.nan, "gained": math.nan, "lost": math.nan}
            if outcome_table is None:
                se = math.sqrt(float(b.get(f"{name}_stderr", math.nan)) ** 2
                               + float(t.get(f"{name}_stderr", math.nan)) ** 2)
                low, high = row["gain"] + np.array([-1.0, 1.0]) * _z(boot["level"]) * se
                row.update(gain_ci_low=float(low), gain_ci_high=float(high), p_value=normal_p(row["gain"], se),
                           test="normal, unpaired", ci_method=f"{NORMAL_METHOD} ({boot['level']:.0%})")
            else:
                db, dt = draws.get((model, base), {}), draws.get((model, treat), {})
                if name == "overall":
                    diff = overall(dt, benchmarks) - overall(db, benchmarks) if db and dt else np.array([np.nan])
                    p, test = bootstrap_p(diff), "bootstrap, two-sided"
                else:
                    diff = dt[name][:, 0] - db[name][:, 0] if name in db and name in dt else np.array([np.nan])
                    xb, xt = docs.get((model, base, name)), docs.get((model, treat, name))
                    p, test = math.nan, "exact McNemar"
                    if xb is not None and xt is not None and \
                            list(zip(xb["task"], xb["doc_id"])) == list(zip(xt["task"], xt["doc_id"])):
                        p, gained, lost = mcnemar_exact(xb["value"], xt["value"])
                        row.update(documents=len(xb), gained=gained, lost=lost)
                low, high = percentile(diff, boot["level"])
                row.update(gain_ci_low=float(low), gain_ci_high=float(high), p_value=p, test=test,
                           ci_method=method(boot, "documents, stratified by benchmark, paired across the two "
                                                  "strategies"))
            rows.append(row)
    return rows + lone


def _z(level: float) -> float:
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2.0))


def gain_table(rows: list[dict], level: float) -> pd.DataFrame:
    """cot_gain.csv from gain_rows() of every pair: Holm's correction across the models of each pair × benchmark,
    ``significant`` at 1 − level, and a verdict per row."""
    table = pd.DataFrame(rows).reindex(columns=GAIN_COLUMNS)
    if table.empty:
        return table
    table["p_adjusted"] = table.groupby(["pair", "benchmark"])["p_value"].transform(lambda p: holm(p.to_numpy()))
    table["correction"] = f"holm across the pair's models (per benchmark), alpha={1 - level:.2g}"
    table["significant"] = table["p_adjusted"] < 1.0 - level
    table["verdict"] = [v if isinstance(v, str) else _verdict(r.gain, r.gain_ci_low, r.gain_ci_high, r.significant)
                        for v, r in zip(table["verdict"], table.itertuples())]  # a model with one score says so
    return table


def write_gains(out, pairs: list[tuple[str, str, str]], bench: pd.DataFrame, outcome_table: pd.DataFrame | None,
                boot: dict) -> pd.DataFrame:
    """cot_gain.csv of the analysis pairs ((name, baseline strategy, treatment strategy), those configured)."""
    from cotscale.io import write_csv

    rows = [r for name, base, treat in pairs for r in gain_rows(name, base, treat, bench, outcome_table, boot)]
    table = gain_table(rows, boot["level"])
    write_csv(out, table)
    return table

"""Fits of the analysis: per-family scaling of the baseline score, train-equivalent FLOPs, IsoFLOP curves.

- Per family with ≥2 models: OLS ``overall_baseline = a + b·ln(C)`` (C = 6ND). The 95% intervals come from a
  percentile bootstrap over the family's models (fixed seed); with fewer than 3 models a bootstrap only
  reproduces the point estimate, so the interval is left NaN.
- Train-equivalent FLOPs ``TEF = exp((overall_cot − a)/b)``: the training compute a baseline model of the same
  family would need to score what the model scores with CoT; its interval maps each bootstrap draw of (a, b).
  Only a family whose score rises with compute gives one: where b ≤ 0, or b's bootstrap interval contains 0,
  the inversion means nothing and the model gets no TEF and a ``reason`` saying which.
- IsoFLOP, per prompting type on its own scores: ``score = α·ln(C) + β·tokens + δ``. The seed fitted the CoT
  curve on baseline scores; that variant is reported too, with its difference from the corrected fit.
``run_pair_analysis`` (Experiment 2: baseline vs CoT), ``run_pca`` and ``run_pca_ruan`` write the analysis tables.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cotscale import flops, pca, table1, uncertainty
from cotscale.aggregate import check_same_documents
from cotscale.contract import CROSSOVER_CLAIMED
from cotscale.io import atomic_path, write_csv

log = logging.getLogger(__name__)


def ols(X: np.ndarray, y: np.ndarray) -> dict:
    """Least squares of y on the columns of X (include an intercept column): coef, stderr, r2, n.

    Standard errors are the classical ones, NaN when there are no residual degrees of freedom.
    """
    n, p = X.shape
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    rss = float(np.sum((y - X @ coef) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    sigma2 = rss / (n - p) if n > p else np.nan
    stderr = np.sqrt(np.diag(sigma2 * np.linalg.pinv(X.T @ X)))
    return {"coef": coef, "stderr": stderr, "r2": 1 - rss / tss if tss > 0 else np.nan, "n": n}


def strategy_scores(benchmarks: pd.DataFrame, strategy: str) -> pd.DataFrame:
    """One strategy's rows of benchmarks.csv that have an overall score, with train_flops filled in."""
    df = benchmarks[benchmarks["strategy"] == strategy]
    missing = df["overall"].isna()
    if missing.any():
        log.info("%s: no overall score for %s", strategy, ", ".join(df.loc[missing, "model"]))
    df = df[~missing].copy()
    df["train_flops"] = flops.train_flops(df["N"], df["D"])
    return df


def bootstrap_draws(scores: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Bootstrap (a, b) of ``overall = a + b·ln(C)`` per family, resampling models with replacement.

    Draws whose resample has a single distinct C (slope undefined) are dropped. Families are visited in sorted
    order from one generator, so the draws depend only on (data, n_boot, seed). Columns: family, a, b.
    """
    rng = np.random.default_rng(seed)
    out = []
    for family, grp in sorted(scores.groupby("family"), key=lambda kv: kv[0]):
        x, y = np.log(grp["train_flops"].to_numpy()), grp["overall"].to_numpy()
        idx = rng.integers(0, len(x), size=(n_boot, len(x)))
        xs, ys = x[idx], y[idx]
        ok = xs.max(axis=1) > xs.min(axis=1)  # exact; the rounding of a mean leaves sxx > 0 for one repeated C
        xs, ys = xs[ok], ys[ok]
        dx = xs - xs.mean(axis=1, keepdims=True)
        b = (dx * (ys - ys.mean(axis=1, keepdims=True))).sum(axis=1) / (dx**2).sum(axis=1)
        a = ys.mean(axis=1) - b * xs.mean(axis=1)
        out.append(pd.DataFrame({"family": family, "a": a, "b": b}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["family", "a", "b"])


def regression(scores: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-family OLS of the baseline overall score on ln(train FLOPs), and the bootstrap draws behind its CIs.

    ``scores``: strategy_scores() of the baseline. Families with one model (or one distinct C) are skipped with a
    logged reason. Table columns: family, n_models, a, b, r2, a_stderr, b_stderr, a_ci_low, a_ci_high, b_ci_low,
    b_ci_high, ci_method, models.
    """
    rows, fitted = [], []
    for family, grp in sorted(scores.groupby("family"), key=lambda kv: kv[0]):
        if grp["train_flops"].nunique() < 2:
            log.warning("regression: family %r skipped: %d model(s), %d distinct train FLOPs (need 2)",
                        family, len(grp), grp["train_flops"].nunique())
            continue
        x = np.log(grp["train_flops"].to_numpy())
        fit = ols(np.column_stack([np.ones_like(x), x]), grp["overall"].to_numpy())
        rows.append({"family": family, "n_models": len(grp), "a": fit["coef"][0], "b": fit["coef"][1],
                     "r2": fit["r2"], "a_stderr": fit["stderr"][0], "b_stderr": fit["stderr"][1],
                     "models": ";".join(grp["model"])})
        fitted.append(grp)
    table = pd.DataFrame(rows, columns=["family", "n_models", "a", "b", "r2", "a_stderr", "b_stderr", "models"])
    draws = bootstrap_draws(pd.concat(fitted) if fitted else scores.iloc[:0], n_boot, seed)
    small = set(table.loc[table["n_models"] < 3, "family"])
    if small:
        log.info("regression: no bootstrap interval for %s (fewer than 3 models)", sorted(small))
    draws = draws[~draws["family"].isin(small)]
    ci = draws.groupby("family").agg(a_ci_low=("a", lambda v: v.quantile(0.025)),
                                     a_ci_high=("a", lambda v: v.quantile(0.975)),
                                     b_ci_low=("b", lambda v: v.quantile(0.025)),
                                     b_ci_high=("b", lambda v: v.quantile(0.975)))
    table = table.merge(ci, on="family", how="left")
    table["ci_method"] = np.where(table["family"].isin(small), "none: fewer than 3 models",
                                  f"95% percentile bootstrap over models (n_boot={n_boot}, seed={seed})")
    cols = ["family", "n_models", "a", "b", "r2", "a_stderr", "b_stderr", "a_ci_low", "a_ci_high",
            "b_ci_low", "b_ci_high", "ci_method", "models"]
    return table[cols], draws.reset_index(drop=True)


def train_equivalent(baseline: pd.DataFrame, cot: pd.DataFrame, reg: pd.DataFrame,
                     draws: pd.DataFrame) -> pd.DataFrame:
    """TEF, TEF/C and a 95% bootstrap interval for every model with a CoT score.

    ``baseline``/``cot``: strategy_scores() of each strategy; ``reg``, ``draws``: from regression(). A model
    whose family has no fit keeps NaN and a ``reason``. Columns: model, family, N, D, train_flops,
    overall_baseline, overall_cot, tef, tef_ratio, tef_ci_low, tef_ci_high, reason.
    """
    df = cot[["model", "family", "N", "D", "train_flops", "overall"]].rename(columns={"overall": "overall_cot"})
    coefs = reg[["family", "a", "b", "b_ci_low", "b_ci_high"]].astype(
        {"a": float, "b": float, "b_ci_low": float, "b_ci_high": float})
    df = df.merge(baseline[["model", "overall"]].rename(columns={"overall": "overall_baseline"}),
                  on="model", how="left").merge(coefs, on="family", how="left")
    df["reason"] = [_no_tef(row) for row in df.itertuples()]
    ok = df["reason"] == ""
    with np.errstate(over="ignore"):
        df["tef"] = np.where(ok, np.exp((df["overall_cot"] - df["a"]) / df["b"]), np.nan)
        lo, hi = [], []
        for row in df.itertuples():
            d = draws[draws["family"] == row.family] if row.reason == "" else draws.iloc[:0]
            tef = np.exp((row.overall_cot - d["a"].to_numpy()) / d["b"].to_numpy())
            lo.append(np.quantile(tef, 0.025) if len(tef) else np.nan)
            hi.append(np.quantile(tef, 0.975) if len(tef) else np.nan)
    df["tef_ratio"] = df["tef"] / df["train_flops"]
    df["tef_ci_low"], df["tef_ci_high"] = lo, hi
    for row in df[~ok].itertuples():
        log.warning("train_equivalent: %s (%s): no TEF: %s", row.model, row.family, row.reason)
    cols = ["model", "family", "N", "D", "train_flops", "overall_baseline", "overall_cot", "tef", "tef_ratio",
            "tef_ci_low", "tef_ci_high", "reason"]
    return df[cols]


def document_draws(outcome_table: pd.DataFrame, baseline: str, cot: str, boot: dict) -> dict[str, dict]:
    """Per model with outcomes of both strategies: bootstrap draws (cotscale.uncertainty, the same resampled
    documents for both) of its overall scores and Table I tokens per request: {model: {overall_baseline,
    overall_cot, tok_std, tok_cot}}, each an array of boot['draws']. Tokens as Table I counts them: per benchmark
    Σ generated / Σ generate requests of the resampled documents (0 without generate requests), then the mean over
    the benchmarks both strategies have."""
    table = outcome_table[outcome_table["strategy"].isin([baseline, cot])]
    draws = uncertainty.strategy_draws(table, boot, columns=("value", "generated_tokens", "generate_requests"))
    out = {}
    for model in sorted({m for m, _ in draws}):
        db, dc = draws.get((model, baseline)), draws.get((model, cot))
        if not db or not dc:
            continue
        shared = [b for b in db if b in dc]

        def tokens(d):
            with np.errstate(invalid="ignore", divide="ignore"):
                per = [np.where(d[b][:, 2] > 0, d[b][:, 1] / d[b][:, 2], 0.0) for b in shared]
            return np.mean(per, axis=0)

        out[model] = {"overall_baseline": uncertainty.overall(db), "overall_cot": uncertainty.overall(dc),
                      "tok_std": tokens(db), "tok_cot": tokens(dc)}
    return out


def carried_intervals(base: pd.DataFrame, tef: pd.DataFrame, docs: dict[str, dict], boot: dict) -> pd.DataFrame:
    """TEF and R* draws that carry both sources of noise: each draw takes every model's document-resampled scores
    and tokens (``docs``: document_draws) and resamples the family's models for the regression, then recomputes a,
    b, TEF and R* (cotscale.flops.crossover_requests of 2·N·tokens per request). Per model of ``tef`` with a TEF:
    tef_ci_low/high, crossover_ci_low/high (draws where CoT buys no compute count as R* = 0, where it costs nothing
    extra as inf). Draws whose model resample has one distinct C are NaN, as in bootstrap_draws."""
    rows = []
    for family, grp in sorted(base.groupby("family"), key=lambda kv: kv[0]):
        grp = grp[grp["model"].isin(list(docs))]
        members = tef[(tef["family"] == family) & (tef["reason"] == "") & tef["model"].isin(list(docs))]
        if len(grp) < 3 or members.empty:
            continue
        x = np.log(grp["train_flops"].to_numpy())
        ys_all = np.column_stack([docs[m]["overall_baseline"] for m in grp["model"]])  # draws × models
        idx = uncertainty.generator(boot["seed"], "models", family).integers(0, len(x), size=ys_all.shape)
        xs, ys = x[idx], np.take_along_axis(ys_all, idx, axis=1)
        dx = xs - xs.mean(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            b = (dx * (ys - ys.mean(axis=1, keepdims=True))).sum(axis=1) / (dx**2).sum(axis=1)
        b = np.where(xs.max(axis=1) > xs.min(axis=1), b, np.nan)
        a = ys.mean(axis=1) - b * xs.mean(axis=1)
        for row in members.itertuples():
            d = docs[row.model]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # a draw's b = 0: no TEF
                tef_draws = np.exp((d["overall_cot"] - a) / b)
            r_star = flops.crossover_requests(tef_draws, row.train_flops, flops.inference_flops(row.N, d["tok_cot"]),
                                              flops.inference_flops(row.N, d["tok_std"]))
            (tl, th), (cl, ch) = (uncertainty.percentile(v, boot["level"]) for v in (tef_draws, r_star))
            rows.append({"model": row.model, "tef_ci_low": float(tl), "tef_ci_high": float(th),
                         "crossover_ci_low": float(cl), "crossover_ci_high": float(ch)})
    return pd.DataFrame(rows, columns=["model", "tef_ci_low", "tef_ci_high", "crossover_ci_low", "crossover_ci_high"])


def crossover_verdict(cross: pd.DataFrame, tef: pd.DataFrame, gains: pd.DataFrame) -> list[str]:
    """Per crossover row: whether a finite R* is claimed — only where the CoT gain's interval (overall, cot_gain)
    excludes 0 and TEF's lower bound exceeds C — or which condition failed."""
    tef, gains = tef.set_index("model"), gains.set_index("model")
    out = []
    for row in cross.itertuples():
        low, high = (gains.loc[row.model, c] if row.model in gains.index else np.nan
                     for c in ("gain_ci_low", "gain_ci_high"))
        tef_low = tef.loc[row.model, "tef_ci_low"] if row.model in tef.index else np.nan
        if row.reason:
            out.append(f"no crossover: {row.reason}")
        elif np.isnan(low) or np.isnan(high):
            out.append("no crossover claimed: the CoT gain has no interval")
        elif low <= 0 <= high:
            out.append(f"no crossover claimed: the CoT gain's interval [{low:.3g}, {high:.3g}] contains 0")
        elif high < 0:
            out.append(f"no crossover claimed: the CoT gain's interval [{low:.3g}, {high:.3g}] is below 0")
        elif np.isnan(tef_low) or tef_low <= row.train_flops:
            out.append(f"no crossover claimed: TEF's lower bound {tef_low:.3g} does not exceed C = "
                       f"{row.train_flops:.3g}")
        else:
            out.append(CROSSOVER_CLAIMED)
    return out


def _no_tef(row) -> str:
    """Why a model gets no train-equivalent FLOPs ('' when it gets one)."""
    if np.isnan(row.a):
        return "no baseline fit for this family (needs 2 models with distinct train FLOPs)"
    if row.b <= 0:
        return f"family slope b = {row.b:.3g} <= 0: the baseline score does not rise with train FLOPs"
    if row.b_ci_low <= 0 <= row.b_ci_high:
        return (f"bootstrap 95% interval of the family slope [{row.b_ci_low:.3g}, {row.b_ci_high:.3g}] contains 0: "
                "the score's rise with train FLOPs is not resolved")
    return ""


def isoflop_fit(baseline: pd.DataFrame, cot: pd.DataFrame, tokens: pd.DataFrame,
                names: tuple[str, str]) -> pd.DataFrame:
    """IsoFLOP fits ``score = α·ln(C) + β·tokens + δ``: baseline and CoT on their own scores, plus the seed's.

    ``baseline``/``cot``: strategy_scores(); ``tokens``: table1() per-model rows (baseline_tokens, cot_tokens);
    ``names``: the two strategy names. The ``seed_bug`` row fits CoT tokens against *baseline* scores, as the
    seed did; its d_alpha/d_beta/d_delta are seed minus corrected.
    """
    per_model = tokens[tokens["model"] != "Overall"]
    base, cot_name = names
    specs = [("baseline", base, baseline, base, "baseline_tokens", "own scores"),
             ("cot", cot_name, cot, cot_name, "cot_tokens",
              "own scores (corrected; the seed fitted this curve on baseline scores, see the seed_bug row)"),
             ("seed_bug", cot_name, baseline, base, "cot_tokens",
              f"seed's fit: CoT tokens with {base} scores (a bug); d_* = this minus the corrected cot row")]
    rows = []
    for prompting, strategy, scores, score_strategy, tok_col, note in specs:
        df = scores[["model", "train_flops", "overall"]].merge(
            per_model[["model", tok_col, "token_unit"]], on="model").dropna(subset=["overall", tok_col])
        row = {"prompting": prompting, "strategy": strategy, "score_strategy": score_strategy, "n": len(df),
               "token_unit": "+".join(sorted(set(df["token_unit"]))), "note": note}
        if len(df) < 3:
            log.warning("isoflop: %s fit skipped: %d models (need 3)", prompting, len(df))
        else:
            X = np.column_stack([np.log(df["train_flops"]), df[tok_col], np.ones(len(df))])
            fit = ols(X, df["overall"].to_numpy())
            row.update(zip(["alpha", "beta", "delta"], fit["coef"]))
            row.update(zip(["alpha_stderr", "beta_stderr", "delta_stderr"], fit["stderr"]))
            row["r2"] = fit["r2"]
        rows.append(row)
    cols = ["prompting", "strategy", "score_strategy", "alpha", "beta", "delta", "alpha_stderr", "beta_stderr",
            "delta_stderr", "r2", "n", "token_unit", "note"]
    out = pd.DataFrame(rows).reindex(columns=cols)
    seed, corrected = out["prompting"] == "seed_bug", out[out["prompting"] == "cot"].iloc[0]
    for c in ("alpha", "beta", "delta"):
        out[f"d_{c}"] = np.where(seed, out[c] - corrected[c], np.nan)
    return out


def _concat(paths) -> pd.DataFrame:
    """Per-strategy tables (cotscale.aggregate.write_strategy_tables) as one."""
    parts = [pd.read_csv(p) for p in paths]
    rows = [p for p in parts if not p.empty]
    return pd.concat(rows, ignore_index=True) if rows else (parts[0] if parts else pd.DataFrame())


def crossover_by_cost_model(pairs: pd.DataFrame, costs: pd.DataFrame | None, baseline: str,
                            cot: str, hardware: dict | None = None) -> pd.DataFrame:
    """crossover.csv: R* under the paper's convention (flops.crossover, unchanged), then under each other cost
    model of costs.csv, the lifetime cost of the TEF baseline priced the same way: cost_std and cost_cot are the
    mean cost per request over the benchmarks both strategies have (as Table I averages tokens); under seconds
    and dollars the training compute TEF and C run at the hardware's peak (cotscale.cost.from_flops)."""
    from cotscale.cost import from_flops

    from cotscale.contract import COST_MODEL_COLUMN, DEFAULT_COST_MODEL

    paper = flops.crossover(pairs)
    parts = [paper.assign(**{COST_MODEL_COLUMN: DEFAULT_COST_MODEL}, cost_std=flops.inference_flops(
        paper["N"], paper["tok_std"]), cost_cot=flops.inference_flops(paper["N"], paper["tok_cot"]))]
    if costs is not None and not costs.empty:
        rows = costs[(costs["benchmark"] != "overall") & (costs["cost_model"] != DEFAULT_COST_MODEL)]
        keys = ["model", "cost_model", "benchmark"]
        pair = rows[rows["strategy"] == baseline][[*keys, "cost_per_request", "reason"]].merge(
            rows[rows["strategy"] == cot][[*keys, "cost_per_request", "reason"]], on=keys, suffixes=("_b", "_c"))
        per = pair.groupby(["model", "cost_model"], as_index=False).agg(
            cost_std=("cost_per_request_b", lambda v: v.mean(skipna=False)),
            cost_cot=("cost_per_request_c", lambda v: v.mean(skipna=False)),
            cost_reason=("reason_c", "first"))
        units = rows.drop_duplicates("cost_model").set_index("cost_model")["unit"]
        for name, group in per.groupby("cost_model", sort=False):
            priced = pairs.merge(group, on="model", how="left")
            for col in ("tef", "train_flops"):
                priced[col] = from_flops(priced[col], units[name], hardware)
            parts.append(flops.crossover(priced).assign(**{COST_MODEL_COLUMN: name}))
    return pd.concat(parts, ignore_index=True)


def _carry_crossover_intervals(cross: pd.DataFrame, carried: pd.DataFrame, method: str) -> None:
    """crossover.csv's R* intervals, in place: the paper's rows take the carried draws' interval (carried_intervals,
    2·N·tokens per request); another cost model's rows scale it by that row's R* over the paper's R* of the model —
    its cost per request held at the point estimate, which ``ci_method`` states."""
    from cotscale.contract import COST_MODEL_COLUMN, DEFAULT_COST_MODEL

    paper = cross[cross[COST_MODEL_COLUMN] == DEFAULT_COST_MODEL].set_index("model")["crossover_requests"]
    for i, row in cross.iterrows():
        if row["model"] not in carried.index or not np.isfinite(row["crossover_requests"]):
            continue
        scale = 1.0 if row[COST_MODEL_COLUMN] == DEFAULT_COST_MODEL else row["crossover_requests"] / paper.get(
            row["model"], np.nan)
        if not np.isfinite(scale):
            continue
        cross.loc[i, ["crossover_ci_low", "crossover_ci_high"]] = [carried.loc[row["model"], c] * scale
                                                                  for c in ("crossover_ci_low", "crossover_ci_high")]
        cross.loc[i, "ci_method"] = method if scale == 1.0 else (
            f"{method}; scaled from the paper's R* interval by this cost model's R* ratio (its cost per request held "
            f"at the point estimate)")


def run_pair_analysis(benchmark_paths, token_paths, out_dir, baseline: str, cot: str,
                      n_boot: int = 2000, seed: int = 0, outcome_table: pd.DataFrame | None = None,
                      boot: dict | None = None, empty_warning: float = 0.1, costs: pd.DataFrame | None = None,
                      hardware: dict | None = None) -> dict[str, pd.DataFrame]:
    """Experiment 2's tables from the baseline and CoT strategies' benchmarks.csv and tokens.csv: regression,
    train-equivalent FLOPs, Table I (its rows marked where an empty share passes ``empty_warning``), crossover and
    the IsoFLOP fit, written into ``out_dir``. Returns them by stem.

    With per-document outcomes (``outcome_table``, cotscale.outcomes), TEF's and R*'s intervals carry both the
    documents' and the family's models' noise (carried_intervals, settings ``boot``); without (published data) TEF's
    resamples the models only and R* has none. crossover.csv's ``verdict`` reads the CoT gain's interval
    (cotscale.uncertainty.gain_rows: paired bootstrap, or the normal approximation without outcomes)."""
    out_dir = Path(out_dir)
    boot = boot or {**uncertainty.DEFAULTS, "draws": n_boot, "seed": seed}
    bench, tokens = _concat(benchmark_paths), _concat(token_paths)
    check_same_documents(bench, (baseline, cot), "the analysis (fits, train-equivalent FLOPs, Table I)")
    base, cots = strategy_scores(bench, baseline), strategy_scores(bench, cot)
    reg, draws = regression(base, n_boot, seed)
    tef = train_equivalent(base, cots, reg, draws)
    tef["ci_method"] = np.where(tef["tef_ci_low"].notna(), "95% percentile bootstrap over the family's models "
                                f"(n_boot={n_boot}, seed={seed}); scores as measured", "")
    tab1 = table1.table1(tokens, baseline, cot, empty_warning)
    pairs = tef.merge(tab1[["model", "baseline_tokens", "cot_tokens", "token_unit"]], on="model",
                      how="left").rename(columns={"baseline_tokens": "tok_std", "cot_tokens": "tok_cot"})
    cross = crossover_by_cost_model(pairs, costs, baseline, cot, hardware)
    cross["crossover_ci_low"] = cross["crossover_ci_high"] = np.nan
    cross["ci_method"] = ""
    if outcome_table is not None and len(outcome_table):
        carried = carried_intervals(base, tef, document_draws(outcome_table, baseline, cot, boot), boot).set_index(
            "model")
        both = uncertainty.method(boot, "documents (paired across the two strategies) and the family's models")
        has = tef["model"].isin(carried.index)
        for col in ("tef_ci_low", "tef_ci_high"):
            tef.loc[has, col] = tef.loc[has, "model"].map(carried[col])
        tef.loc[has, "ci_method"] = both
        tef.loc[~has, ["tef_ci_low", "tef_ci_high"]] = np.nan
        tef.loc[~has, "ci_method"] = ""
        _carry_crossover_intervals(cross, carried, both)
    gains = pd.DataFrame(uncertainty.gain_rows("cot_vs_baseline", baseline, cot, bench, outcome_table, boot,
                                               only_overall=True))
    cross["verdict"] = crossover_verdict(cross, tef, gains if len(gains) else
                                         pd.DataFrame(columns=["model", "gain_ci_low", "gain_ci_high"]))
    out = {"regression": reg, "train_equivalent": tef, "table1_tokens": tab1, "crossover": cross,
           "isoflop_fit": isoflop_fit(base, cots, tab1, (baseline, cot))}
    for stem, df in out.items():
        write_csv(out_dir / f"{stem}.csv", df)
    for suffix, text in (("md", table1.to_markdown(tab1)), ("tex", table1.to_latex(tab1))):
        with atomic_path(out_dir / f"table1_tokens.{suffix}") as tmp:
            tmp.write_text(text)
    return out


def run_pca(benchmarks_path, out_dir) -> pd.DataFrame:
    """Our PCA loadings (pca_loadings_ours.csv) on the log-likelihood strategy's benchmarks.csv."""
    loadings = pca.pca_loadings(pd.read_csv(benchmarks_path))
    write_csv(Path(out_dir) / "pca_loadings_ours.csv", loadings)
    return loadings


def run_pca_ruan(ruan, out_dir) -> dict[str, pd.DataFrame]:
    """Ruan et al.'s PCA with and without HumanEval; ``ruan`` None (analysis.ruan_table unset): empty tables."""
    if ruan is not None:
        scores = pca.ruan_scores(pd.read_csv(ruan))
        out = {"pca_loadings_ruan": pca.pca_loadings(scores, pca.BENCHMARKS + ("humaneval",)),
               "pca_loadings_ruan_no_humaneval": pca.pca_loadings(scores)}
    else:
        log.warning("analysis.ruan_table is not set: Ruan et al.'s PCA tables are written empty")
        empty = pd.DataFrame(columns=["benchmark", "pc_1", "pc_2", "pc_3", "n_rows"])
        out = {"pca_loadings_ruan": empty, "pca_loadings_ruan_no_humaneval": empty}
    for stem, df in out.items():
        write_csv(Path(out_dir) / f"{stem}.csv", df)
    return out

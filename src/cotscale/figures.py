"""The paper's figures, one function each, drawn from the tables with seaborn.

Every function takes ``(inputs, png, config)`` — the rule's input tables by name, the png to write (the pdf goes
beside it) and the loaded config — and returns the matplotlib Figure it drew (closed, but its artists keep their
data, which the tests read back). Artists that carry a number worth checking have a ``gid``.

A figure whose inputs are partial draws what exists and logs what is missing instead of failing: a sweep with one
model still running should not block the rest of the report. An input table that is absent or empty gives a panel
that says so.

Uncertainty: score error bars are ±1.96·stderr (lm-eval's standard errors, normal approximation); train-equivalent
FLOPs carry the bootstrap 95% interval of train_equivalent.csv.

Length: one function per figure of the registry (cotscale.registry) and the styling they share; a figure
is found by its name here, and a module per figure would spread the shared helpers over fourteen files.
"""

from __future__ import annotations

import logging
import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.colors import ListedColormap, LogNorm  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from cotscale import flops, plan  # noqa: E402
from cotscale.aggregate import check_same_documents  # noqa: E402
from cotscale.contract import DEFAULT_COST_MODEL, claims_crossover  # noqa: E402
from cotscale.io import atomic_path  # noqa: E402
from cotscale.registry import FIGURE_NAMES, free_form_cot  # noqa: E402

log = logging.getLogger(__name__)

#: families in this order get the first palette colours, so a family keeps its colour in every figure
KNOWN_FAMILIES = ("olmo", "pythia", "gemma", "llama", "qwen")
Z95 = 1.96
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "<", ">", "p", "h")
#: fig12 marks the cells whose cheapest point wins fewer than this share of the bootstrap draws
UNSURE = 0.8
#: the columns of benchmarks.csv the figures read (aggregate.BENCHMARK_COLUMNS is the whole table)
DRAWN_BENCHMARK_COLUMNS = ["model", "family", "N", "D", "train_flops", "strategy", "overall", "overall_stderr",
                           "overall_ci_low", "overall_ci_high", "ci_method"]


# ---------------------------------------------------------------- helpers

def _save(fig, png: Path) -> None:
    """png and pdf side by side, written atomically; fixed metadata so reruns give identical files."""
    for path in (png, png.with_suffix(".pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if path.suffix == ".pdf" else {"Software": None})
    plt.close(fig)


def _theme() -> None:
    sns.set_theme(style="whitegrid", context="paper")


def _read(inputs: dict, key: str, figure: str) -> pd.DataFrame:
    """An input table (several: concatenated, e.g. the per-strategy benchmarks.csv files), or an empty frame (logged)
    when the rule did not give it or it is absent or empty."""
    paths = inputs.get(key)
    if paths is None:
        log.warning("%s: input table %r not given", figure, key)
        return pd.DataFrame()
    tables = [_read_one(Path(path), figure) for path in (paths if isinstance(paths, (list, tuple)) else [paths])]
    tables = [t for t in tables if not t.empty]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _read_one(path: Path, figure: str) -> pd.DataFrame:
    if not path.exists() or path.stat().st_size == 0:
        log.warning("%s: input table %s is missing or empty", figure, path)
        return pd.DataFrame()
    try:
        table = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        table = pd.DataFrame()
    if table.empty:
        log.warning("%s: input table %s has no rows", figure, path)
    return table


def _columns(table: pd.DataFrame, columns) -> pd.DataFrame:
    """``table`` with every column in ``columns`` (absent ones all-NaN), so an empty input still has a schema; its
    model column is text even when empty (an empty CSV reads it as float, which no join with text accepts)."""
    table = table.reindex(columns=list(dict.fromkeys([*table.columns, *columns])))
    return table.astype({"model": object}) if "model" in table else table


def _expected_models(config: dict, *tables: pd.DataFrame) -> set[str]:
    """Models a figure could draw: the configured ones plus any a table mentions (published mode has no list)."""
    models = set(config.get("models") or {})
    for table in tables:
        if "model" in table:
            models |= set(table["model"].dropna()) - {"Overall"}
    return models


def _log_absent(figure: str, what: str, expected, present) -> None:
    missing = sorted(set(expected) - set(present))
    if missing:
        log.warning("%s: no %s for %d model(s), not drawn: %s", figure, what, len(missing), ", ".join(missing))


def _log_missing(frame: pd.DataFrame, config: dict, strategy: str, figure: str) -> pd.DataFrame:
    present = frame.dropna(subset=["overall"])
    _log_absent(figure, f"complete {strategy} scores", _expected_models(config, frame), present["model"])
    return present


def _palette(families) -> dict[str, tuple]:
    """Family -> colour, stable across figures: known families first, then the rest sorted."""
    names = [f for f in KNOWN_FAMILIES if f in set(families)]
    names += sorted(set(families) - set(names))
    colours = sns.color_palette("deep", 10)
    order = list(KNOWN_FAMILIES) + sorted(set(names) - set(KNOWN_FAMILIES))
    return {f: colours[order.index(f) % len(colours)] for f in names}


def _model_order(table: pd.DataFrame) -> list[str]:
    """Models sorted by family, then train FLOPs, then name."""
    keys = table.drop_duplicates("model").copy()
    keys["_c"] = keys["train_flops"] if "train_flops" in keys else np.nan
    return list(keys.sort_values(["family", "_c", "model"], na_position="last")["model"])


def _empty(ax, text: str) -> None:
    """A panel that says why there is nothing to draw."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=10, wrap=True,
            bbox={"boxstyle": "round", "facecolor": "0.95", "edgecolor": "0.7"})


def _nothing_to_draw(png: Path, title: str, text: str):
    """A figure with the figure's title and a panel saying why there is nothing to draw (already logged)."""
    log.warning("%s: nothing to draw: %s", png.stem, text.replace("\n", " "))
    fig, ax = plt.subplots(figsize=(6.5, 2.5))
    _empty(ax, text)
    ax.set_title(title)
    _save(fig, png)
    return fig


def _unit(table: pd.DataFrame) -> str:
    """'tokens' or 'whitespace words' (imported data), from a token_unit column."""
    units = sorted(set(table.get("token_unit", pd.Series(dtype=object)).dropna()) - {""})
    if not units:
        return "tokens"
    return " / ".join("whitespace words" if u == "words" else u for u in units)


def _legend_outside(ax, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1), borderaxespad=0, **kwargs)


def _sci(x: float) -> str:
    """1.2e+21 -> '1.2×10²¹'-style mathtext."""
    if not np.isfinite(x) or x <= 0:
        return str(x)
    exp = math.floor(math.log10(x) + 1e-12)
    mant = x / 10**exp
    if round(mant, 1) == 1.0:
        return rf"$10^{{{exp}}}$"
    return rf"${mant:.1f}\times10^{{{exp}}}$"


# ---------------------------------------------------------------- fig1

def fig1_overall_vs_train_flops(inputs: dict[str, Path], png: Path, config: dict):
    strategy = config["analysis"]["llh"]
    table = _columns(_read(inputs, "benchmarks", "fig1"), DRAWN_BENCHMARK_COLUMNS)
    data = _log_missing(table[table["strategy"] == strategy], config, strategy, "fig1").sort_values("train_flops")
    _theme()
    if data.empty:
        return _nothing_to_draw(png, "Overall score vs train compute", f"no {strategy} scores")
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=data, x="train_flops", y="overall", hue="family", marker="o", estimator=None, sort=True,
                 palette=_palette(data["family"]), ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("train FLOPs, 6·N·D (log scale)")
    ax.set_ylabel(f"overall score ({strategy})")
    ax.set_title("Overall score vs train compute")
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title="family")
    _save(fig, png)
    return fig


# ---------------------------------------------------------------- fig2, fig3, fig10: two strategies per model

def _paired_scores(inputs, png, config, figure: str, pair: tuple[str, str], labels: tuple[str, str], title: str):
    """Overall score of two strategies per model (one row per model, bars: benchmarks.csv's interval, the bootstrap
    over documents, or ±1.96·stderr where a table has none), joined where both exist.

    Rows are the models with a score for ``pair[1]`` (all models with ``pair[0]`` if none has one).

    Points have gid = strategy name; the joining segments gid ``pair``.
    """
    benchmarks = _read(inputs, "benchmarks", figure)
    if pair[0] != pair[1] and not benchmarks.empty:
        check_same_documents(benchmarks, pair, figure)
    table = _columns(benchmarks, DRAWN_BENCHMARK_COLUMNS)
    expected = _expected_models(config, table)
    data = table[table["strategy"].isin(pair)].dropna(subset=["overall"])
    for strategy in pair:
        _log_absent(figure, f"{strategy} overall score", expected, data.loc[data["strategy"] == strategy, "model"])
    # rows: the models the comparison strategy reached (the reference alone is fig1's business), else the reference
    compared = data[data["strategy"] == pair[1]]["model"]
    if len(compared):
        alone = sorted(set(data["model"]) - set(compared))
        if alone:
            log.info("%s: only %s scores for %s, not drawn", figure, pair[0], ", ".join(alone))
        data = data[data["model"].isin(compared)]
    models = _model_order(data)
    _theme()
    if not models:
        return _nothing_to_draw(png, title, f"no {pair[0]} or {pair[1]} overall scores")
    fig, ax = plt.subplots(figsize=(7.5, 1.6 + 0.32 * max(len(models), 3)))
    row = {m: i for i, m in enumerate(models)}
    colours = sns.color_palette("deep", 4)[:2] if pair[0] != pair[1] else sns.color_palette("deep", 1) * 2
    points = {}
    for k, (strategy, label, colour, marker) in enumerate(zip(pair, labels, colours, ("o", "D"))):
        d = data[data["strategy"] == strategy].drop_duplicates("model").set_index("model")
        y = np.array([row[m] for m in d.index]) + (-0.14 if k == 0 else 0.14)
        err = _score_error(d)
        ax.errorbar(d["overall"], y, xerr=err, fmt="none", ecolor=colour, elinewidth=1.2, capsize=2.5)
        ax.plot(d["overall"], y, marker=marker, linestyle="none", color=colour, markersize=6,
                label=f"{label} ({strategy})", gid=strategy)
        points[strategy] = pd.Series(d["overall"].to_numpy(), index=d.index)
    both = [m for m in models if all(m in points[s].index for s in pair)]
    for m in both:
        ax.plot([points[pair[0]][m], points[pair[1]][m]], [row[m] - 0.14, row[m] + 0.14], color="0.6", lw=1,
                zorder=1, gid="pair")
    ax.set_yticks(range(len(models)), models)
    ax.set_ylim(len(models) - 0.5, -0.5)
    ax.set_xlabel(f"overall score (mean over the 7 benchmarks; bars: {_interval_label(data)})")
    ax.set_title(title)
    _legend_outside(ax, title="strategy")
    _save(fig, png)
    return fig


def _score_error(d: pd.DataFrame) -> np.ndarray:
    """Asymmetric error bars (2 × n) of overall from its interval columns, ±1.96·stderr where they are NaN."""
    sym = Z95 * d["overall_stderr"].fillna(0).to_numpy()
    low = (d["overall"] - d["overall_ci_low"].astype(float)).to_numpy()
    high = (d["overall_ci_high"].astype(float) - d["overall"]).to_numpy()
    return np.vstack([np.where(np.isnan(low), sym, low), np.where(np.isnan(high), sym, high)])


def _interval_label(data: pd.DataFrame) -> str:
    """What the bars are, from ci_method (the bootstrap, or the normal approximation of published data)."""
    methods = set(data["ci_method"].dropna().astype(str))
    if any("bootstrap" in m for m in methods):
        return "95% CI, bootstrap over documents"
    if methods:
        return "95% CI, normal approx. from stderr"
    return "95% CI, ±1.96·stderr"


def fig2_loglikelihood_vs_hybrid(inputs: dict[str, Path], png: Path, config: dict):
    a = config["analysis"]
    return _paired_scores(inputs, png, config, "fig2", (a["llh"], a["baseline"]),
                          ("log-likelihood", "hybrid generation, no CoT"),
                          "Log-likelihood vs hybrid generation format (no CoT)")


def fig3_cot_vs_no_cot(inputs: dict[str, Path], png: Path, config: dict):
    a = config["analysis"]
    return _paired_scores(inputs, png, config, "fig3", (a["baseline"], a["cot"]), ("without CoT", "with CoT"),
                          "Overall score with and without chain-of-thought")


def fig10_free_form_cot(inputs: dict[str, Path], png: Path, config: dict):
    a = config["analysis"]
    return _paired_scores(inputs, png, config, "fig10", (a["llh"], free_form_cot(config)),
                          ("log-likelihood baseline", "free-form CoT generation"),
                          "Free-form CoT generation vs the log-likelihood baseline")


# ---------------------------------------------------------------- fig4

def cot_gain(benchmarks: pd.DataFrame, baseline: str, cot: str) -> pd.DataFrame:
    """Per model with both scores: gain = overall_cot − overall_baseline and its stderr (independent errors)."""
    cols = ["model", "family", "train_flops", "overall", "overall_stderr"]
    b = benchmarks[benchmarks["strategy"] == baseline].dropna(subset=["overall"])[cols].drop_duplicates("model")
    c = benchmarks[benchmarks["strategy"] == cot].dropna(subset=["overall"])[cols].drop_duplicates("model")
    m = b.merge(c.drop(columns=["family", "train_flops"]), on="model", suffixes=("_baseline", "_cot"))
    m["gain"] = m["overall_cot"] - m["overall_baseline"]
    m["gain_stderr"] = np.hypot(m["overall_stderr_baseline"], m["overall_stderr_cot"])
    return m.sort_values(["family", "train_flops", "model"]).reset_index(drop=True)


GAIN_COLUMNS = ["pair", "model", "family", "train_flops", "benchmark", "gain", "gain_ci_low", "gain_ci_high",
                "ci_method", "significant", "verdict"]


def fig4_cot_gain_vs_train_flops(inputs: dict[str, Path], png: Path, config: dict):
    """CoT improvement per model against train FLOPs, a line per family (gid ``gain:<family>``), bars: cot_gain.csv's
    interval (paired bootstrap; published: normal approximation); filled markers: significant after Holm's
    correction (gid ``significant``)."""
    a = config["analysis"]
    benchmarks = _read(inputs, "benchmarks", "fig4")
    if not benchmarks.empty:
        check_same_documents(benchmarks, (a["baseline"], a["cot"]), "fig4")
    table = _columns(benchmarks, DRAWN_BENCHMARK_COLUMNS)
    data = cot_gain(table, a["baseline"], a["cot"])
    gains = _columns(_read(inputs, "cot_gain", "fig4"), GAIN_COLUMNS)
    gains = gains[(gains["pair"] == "cot_vs_baseline") & (gains["benchmark"] == "overall")]
    data = data.merge(gains[["model", "gain_ci_low", "gain_ci_high", "ci_method", "significant"]], on="model",
                      how="left")
    _log_absent("fig4", f"pair of {a['baseline']} and {a['cot']} scores", _expected_models(config, table),
                data["model"])
    _theme()
    title = "Improvement from chain-of-thought vs train compute"
    if data.empty:
        return _nothing_to_draw(png, title, f"no model has both {a['baseline']} and {a['cot']} scores")
    fig, ax = plt.subplots(figsize=(6.5, 4))
    palette = _palette(data["family"])
    for family, d in data.groupby("family", sort=True):
        sym = Z95 * d["gain_stderr"].fillna(0).to_numpy()
        low, high = (d["gain"] - d["gain_ci_low"].astype(float)).to_numpy(), \
            (d["gain_ci_high"].astype(float) - d["gain"]).to_numpy()
        err = np.vstack([np.where(np.isnan(low), sym, low), np.where(np.isnan(high), sym, high)])
        ax.errorbar(d["train_flops"], d["gain"], yerr=err, fmt="none", ecolor=palette[family], elinewidth=1,
                    capsize=2.5, alpha=0.8)
        ax.plot(d["train_flops"], d["gain"], marker="o", color=palette[family], label=family, gid=f"gain:{family}",
                markerfacecolor="white")
        sig = d[d["significant"].astype(str).str.lower() == "true"]
        ax.plot(sig["train_flops"], sig["gain"], marker="o", linestyle="none", color=palette[family],
                gid="significant")
    ax.axhline(0, color="0.2", lw=0.9, zorder=1)
    ax.set_xscale("log")
    ax.set_xlabel("train FLOPs, 6·N·D (log scale)")
    ax.set_ylabel(f"CoT improvement in overall score\n({a['cot']} − {a['baseline']})")
    ax.set_title(title)
    _legend_outside(ax, title="family")
    methods = set(data["ci_method"].dropna().astype(str))
    what = ("paired bootstrap\nover documents" if any("bootstrap" in m for m in methods) else
            "normal approx.\nfrom stderr, unpaired" if methods else "±1.96·stderr")
    ax.text(1.01, 0.0, f"bars: 95% CI,\n{what};\nfilled: significant\n(Holm across models)",
            transform=ax.transAxes, fontsize=7, va="bottom")
    _save(fig, png)
    return fig


# ---------------------------------------------------------------- Table I

def table1_tokens(inputs: dict[str, Path], png: Path, config: dict):
    """Table I as paired horizontal bars (baseline, CoT) per model and the overall row, the ratio written beside.

    Bars have gid ``baseline``/``cot`` (one patch per row, rows in table order); ratio labels gid ``ratio``.
    """
    a = config["analysis"]
    cols = ["model", "family", "N", "D", "baseline_tokens", "cot_tokens", "ratio", "token_unit"]
    table = _columns(_read(inputs, "table1_tokens", "table1_tokens"), cols)
    data = table.dropna(subset=["baseline_tokens", "cot_tokens"], how="all").reset_index(drop=True)
    _log_absent("table1_tokens", "token counts", _expected_models(config, table), data["model"])
    # per-model rows first (in family, size order), the overall row last
    overall = data[data["model"] == "Overall"]
    models = data[data["model"] != "Overall"].assign(train_flops=lambda d: flops.train_flops(d["N"], d["D"]))
    models = models.set_index("model").loc[_model_order(models)].reset_index() if len(models) else models
    data = pd.concat([models, overall], ignore_index=True)
    _theme()
    title = "Table I: generation length without and with CoT (×: CoT/baseline)"
    if data.empty:
        return _nothing_to_draw(png, title, "no Table I rows (no model has token counts for both strategies)")
    fig, ax = plt.subplots(figsize=(7.5, 1.4 + 0.36 * max(len(data), 3)))
    unit = _unit(data)
    y = np.arange(len(data), dtype=float)
    if len(overall):
        y[-1] += 0.5  # set the overall row apart
    colours = sns.color_palette("deep", 2)
    h = 0.38
    ax.barh(y - h / 2, data["baseline_tokens"], height=h, color=colours[0], label=f"baseline ({a['baseline']})",
            gid="baseline")
    ax.barh(y + h / 2, data["cot_tokens"], height=h, color=colours[1], label=f"CoT ({a['cot']})", gid="cot")
    right = np.nanmax(data[["baseline_tokens", "cot_tokens"]].to_numpy())
    for yi, row in zip(y, data.itertuples()):
        top = np.nanmax([row.baseline_tokens, row.cot_tokens])
        text = f"×{row.ratio:.2f}" if np.isfinite(row.ratio) else "n/a"
        ax.text(top + 0.02 * right, yi, text, va="center", fontsize=8, gid="ratio")
    ax.set_yticks(y, data["model"])
    for label in ax.get_yticklabels():
        if label.get_text() == "Overall":
            label.set_fontweight("bold")
    ax.set_ylim(y[-1] + 0.6, -0.6)
    ax.set_xlim(0, right * 1.15)
    ax.set_xlabel(f"{unit} generated per request (mean over benchmarks)")
    ax.set_title(title)
    _legend_outside(ax)
    _save(fig, png)
    return fig


# ---------------------------------------------------------------- fig5, fig6: PCA loadings

def _loadings(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, int]:
    """(benchmark × pc loadings, explained variance ratio per pc, rows fitted) from a pca_loadings table."""
    table = _columns(table, ["benchmark", "n_rows"])
    pcs = sorted((c for c in table.columns if c.startswith("pc_")), key=lambda c: int(c.split("_")[1]))
    evr_row = table[table["benchmark"] == "explained_variance_ratio"]
    evr = evr_row[pcs].iloc[0] if len(evr_row) else pd.Series(np.nan, index=pcs)
    loads = table[table["benchmark"] != "explained_variance_ratio"].set_index("benchmark")[pcs]
    n_rows = int(table["n_rows"].dropna().iloc[0]) if table["n_rows"].notna().any() else 0
    return loads, evr, n_rows


def _loading_panels(png: Path, variants: list[tuple[str, pd.DataFrame]], title: str,
                    empty_text: str):
    """One panel per principal component, a horizontal bar per benchmark and a colour per variant.

    Bars have gid ``<variant label>:<pc>`` (one patch per benchmark of the union, NaN where the variant lacks it).
    """
    parsed = [(label, *_loadings(t)) for label, t in variants if not t.empty and "benchmark" in t]
    parsed = [p for p in parsed if len(p[1]) and p[1].notna().any().any()]
    _theme()
    if not parsed:
        return _nothing_to_draw(png, title, empty_text)
    pcs = list(dict.fromkeys(pc for _, loads, _, _ in parsed for pc in loads.columns))
    benchmarks = list(dict.fromkeys(b for _, loads, _, _ in parsed for b in loads.index))
    fig, axes = plt.subplots(1, len(pcs), figsize=(3.0 * len(pcs) + 1.5, 1.2 + 0.42 * len(benchmarks)),
                             sharey=True, squeeze=False)
    colours = sns.color_palette("deep", len(parsed))
    h = 0.8 / len(parsed)
    y = np.arange(len(benchmarks))
    for ax, pc in zip(axes[0], pcs):
        shares = []
        for k, ((label, loads, evr, n_rows), colour) in enumerate(zip(parsed, colours)):
            values = loads.reindex(benchmarks)[pc] if pc in loads else pd.Series(np.nan, index=benchmarks)
            offset = (k - (len(parsed) - 1) / 2) * h
            ax.barh(y + offset, values.to_numpy(dtype=float), height=h, color=colour,
                    label=f"{label} (n={n_rows} rows)", gid=f"{label}:{pc}")
            share = evr.get(pc, np.nan)
            shares.append(f"{share:.1%}" if np.isfinite(share) else "n/a")
        ax.axvline(0, color="0.2", lw=0.8)
        number = pc.split("_")[1]
        ax.set_title(f"PC{number}: " + " / ".join(shares) + " of variance", fontsize=9)
        ax.set_xlabel("loading (score per s.d. of the PC)")
    axes[0][0].set_yticks(y, benchmarks)
    axes[0][0].set_ylim(len(benchmarks) - 0.5, -0.5)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(parsed), frameon=False)
    fig.suptitle(title if len(parsed) == 1 else f"{title}\n(variance shares in legend order)")
    fig.tight_layout()
    _save(fig, png)
    return fig


def fig5_pca_loadings_ours(inputs: dict[str, Path], png: Path, config: dict):
    strategy = config["analysis"]["llh"]
    table = _read(inputs, "pca_loadings_ours", "fig5")
    return _loading_panels(png, [(f"our models, {strategy}", table)],
                           "PCA loadings of the benchmarks (our models)",
                           f"no PCA loadings: too few models with all {strategy} benchmark scores")


def fig6_pca_loadings_ruan(inputs: dict[str, Path], png: Path, config: dict):
    variants = [("with HumanEval", _read(inputs, "pca_loadings_ruan", "fig6")),
                ("without HumanEval", _read(inputs, "pca_loadings_ruan_no_humaneval", "fig6"))]
    return _loading_panels(png, variants, "PCA loadings on Ruan et al.'s models, HumanEval ablated",
                           "Ruan et al. table not configured (analysis.ruan_table): no loadings to draw")


# ---------------------------------------------------------------- fig7: IsoFLOP

def isoflop_levels(train_flops) -> list[float]:
    """Train-FLOP levels for the IsoFLOP curves: the powers of ten inside the models' range (else its ends)."""
    c = np.asarray([x for x in train_flops if np.isfinite(x) and x > 0], dtype=float)
    if not len(c):
        return []
    lo, hi = math.ceil(math.log10(c.min()) - 1e-9), math.floor(math.log10(c.max()) + 1e-9)
    levels = [10.0**k for k in range(lo, hi + 1)]
    return levels if len(levels) >= 2 else sorted({float(c.min()), float(c.max())})


def isoflop_score(fit: pd.Series, train_flops: float, tokens):
    """score = α·ln(C) + β·tokens + δ."""
    return fit["alpha"] * np.log(train_flops) + fit["beta"] * np.asarray(tokens, dtype=float) + fit["delta"]


def fig7_isoflop(inputs: dict[str, Path], png: Path, config: dict):
    """Score vs tokens per request, a panel per prompting type, with its IsoFLOP lines at fixed train FLOPs.

    Model points gid ``points:<prompting>``; curves gid ``isoflop:<prompting>:<C>`` (the seed's CoT fit:
    ``seed_bug:<C>``).
    """
    fits = _columns(_read(inputs, "isoflop_fit", "fig7"),
                    ["prompting", "strategy", "score_strategy", "alpha", "beta", "delta"])
    tab1 = _columns(_read(inputs, "table1_tokens", "fig7"), ["model", "baseline_tokens", "cot_tokens", "token_unit"])
    bench = _columns(_read(inputs, "benchmarks", "fig7"), DRAWN_BENCHMARK_COLUMNS)
    a = config["analysis"]
    panels = []
    for prompting, strategy, tok_col in (("baseline", a["baseline"], "baseline_tokens"),
                                         ("cot", a["cot"], "cot_tokens")):
        fit = fits[fits["prompting"] == prompting]
        fit = fit.iloc[0] if len(fit) else None
        if fit is not None and isinstance(fit["strategy"], str):
            strategy = fit["strategy"]
        pts = (bench[bench["strategy"] == strategy].dropna(subset=["overall"])
               .merge(tab1[tab1["model"] != "Overall"][["model", tok_col]], on="model")
               .dropna(subset=[tok_col]).rename(columns={tok_col: "tokens"}))
        _log_absent("fig7", f"{strategy} score with token counts", _expected_models(config, bench, tab1),
                    pts["model"])
        if fit is None or not np.isfinite(fit[["alpha", "beta", "delta"]].astype(float)).all():
            log.warning("fig7: no %s IsoFLOP fit; drawing the models only", prompting)
            fit = None
        panels.append((prompting, strategy, pts, fit))
    seed = fits[fits["prompting"] == "seed_bug"]
    seed = seed.iloc[0] if len(seed) and np.isfinite(seed.iloc[0][["alpha", "beta", "delta"]].astype(float)).all() \
        else None
    _theme()
    all_c = pd.concat([p[2]["train_flops"] for p in panels]).dropna()
    levels = isoflop_levels(all_c)
    if not levels:
        return _nothing_to_draw(png, "Score vs inference tokens, with IsoFLOP lines",
                                "no model has both a score and token counts")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True, layout="constrained")
    norm = LogNorm(vmin=min(levels + list(all_c)), vmax=max(levels + list(all_c)))
    cmap = plt.get_cmap("viridis")
    unit = _unit(tab1)
    t_max = max([float(p[2]["tokens"].max()) for p in panels if len(p[2])] + [1.0]) * 1.1
    t = np.linspace(0, t_max, 100)
    for ax, (prompting, strategy, pts, fit) in zip(axes, panels):
        if fit is not None:
            for c in levels:
                ax.plot(t, isoflop_score(fit, c, t), color=cmap(norm(c)), lw=1.6, gid=f"isoflop:{prompting}:{c:g}")
        if prompting == "cot" and seed is not None:
            for c in levels:
                ax.plot(t, isoflop_score(seed, c, t), color=cmap(norm(c)), lw=1, ls="--", alpha=0.7,
                        gid=f"seed_bug:{c:g}")
        ax.scatter(pts["tokens"], pts["overall"], c=pts["train_flops"], cmap=cmap, norm=norm, s=36,
                   edgecolor="black", linewidth=0.6, zorder=3, gid=f"points:{prompting}")
        label = "without CoT" if prompting == "baseline" else "with CoT"
        ax.set_title(f"{label} ({strategy}), {len(pts)} models", fontsize=10)
        ax.set_xlabel(f"{unit} generated per request")
        ax.set_xlim(0, t_max)
    axes[0].set_ylabel("overall score")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=list(axes), label="train FLOPs C = 6·N·D (log scale)", pad=0.02)
    handles = [Line2D([], [], color=cmap(norm(c)), lw=1.6, label=f"IsoFLOP line, C = {_sci(c)}") for c in levels]
    handles.append(Line2D([], [], marker="o", color="0.5", markeredgecolor="black", ls="none",
                          label="model (colour: its C)"))
    if seed is not None:
        handles.append(Line2D([], [], color="0.3", lw=1, ls="--",
                              label=f"seed's CoT fit (on {seed['score_strategy']} scores; a bug)"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.45, 0.0), ncol=min(len(handles), 3),
               frameon=False)
    fig.suptitle("Score vs inference tokens, with IsoFLOP lines fitted on each type's own scores:\n"
                 "score = α·ln C + β·tokens + δ at fixed train FLOPs C")
    _save(fig, png)
    return fig


# ---------------------------------------------------------------- fig8

def fig8_tef_ratio_vs_token_ratio(inputs: dict[str, Path], png: Path, config: dict):
    """TEF/C (bootstrap 95% interval) against the CoT/baseline token ratio, a point per model (gid ``models``)."""
    te = _columns(_read(inputs, "train_equivalent", "fig8"),
                  ["model", "family", "train_flops", "tef", "tef_ratio", "tef_ci_low", "tef_ci_high"])
    tab1 = _columns(_read(inputs, "table1_tokens", "fig8"), ["model", "ratio", "token_unit"])
    data = te.merge(tab1[tab1["model"] != "Overall"][["model", "ratio", "token_unit"]], on="model", how="inner")
    data = data.dropna(subset=["tef_ratio", "ratio"])
    data = data[data["tef_ratio"] > 0].sort_values(["family", "train_flops", "model"]).reset_index(drop=True)
    _log_absent("fig8", "train-equivalent FLOPs with a token ratio", _expected_models(config, te, tab1),
                data["model"])
    _theme()
    title = "Compute CoT is worth vs the extra generation it costs"
    if data.empty:
        return _nothing_to_draw(png, title, "no model has both train-equivalent FLOPs and a CoT token ratio")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    palette = _palette(data["family"])
    for family, d in data.groupby("family", sort=True):
        ci = d.dropna(subset=["tef_ci_low", "tef_ci_high"])
        lo, hi = ci["tef_ci_low"] / ci["train_flops"], ci["tef_ci_high"] / ci["train_flops"]
        # a percentile bootstrap interval need not contain the point estimate (few models): draw it as it is
        ax.vlines(ci["ratio"], lo, hi, colors=palette[family], linewidth=1, alpha=0.6)
        for k, row in enumerate(d.itertuples()):
            ax.plot(row.ratio, row.tef_ratio, marker=MARKERS[k % len(MARKERS)], color=palette[family],
                    markeredgecolor="black", markeredgewidth=0.5, markersize=7, ls="none", zorder=3,
                    label=row.model)
    ax.plot(data["ratio"], data["tef_ratio"], ls="none", gid="models")  # the drawn values, in one place
    ax.axhline(1, color="0.2", lw=0.9, ls="--", zorder=1, label="TEF = C")
    ax.axvline(1, color="0.5", lw=0.8, ls=":", zorder=1, label="equal generation length")
    ax.set_yscale("log")
    ax.set_xlabel(f"CoT token ratio, CoT / baseline {_unit(data)} per request")
    ax.set_ylabel("train-equivalent compute ratio TEF / C (log scale)")
    ax.set_title(f"{title}\n(bars: bootstrap 95% interval of TEF)")
    _legend_outside(ax, title="model (colour: family)", fontsize=7)
    _save(fig, png)
    return fig


# ---------------------------------------------------------------- fig9

def fig9_lifetime_cost(inputs: dict[str, Path], png: Path, config: dict):
    """Lifetime cost vs requests for each model with a point crossover R*, a panel each.

    cost_cot(R) = C + 2·R·N·tok_cot (gid ``cost_cot``), cost_std(R) = TEF + 2·R·N·tok_std (gid ``cost_std``, band:
    TEF's interval). Where crossover.csv's verdict claims a finite R*: R* a vertical line (gid ``crossover``) and its
    interval shaded (gid ``crossover_ci``); elsewhere no line, and the panel says why (gid ``no_crossover``).
    Dashed, the same lifetime costs and R* under the configured realistic cost model
    (``analysis.realistic_cost_model``, cotscale.cost; gids ``cost_cot:<name>``, ``cost_std:<name>``,
    ``crossover:<name>``), where crossover.csv has it.
    """
    cols = ["model", "family", "N", "train_flops", "tef", "tok_std", "tok_cot", "token_unit",
            "crossover_requests", "crossover_cot_tokens", "reason", "crossover_ci_low", "crossover_ci_high", "verdict"]
    every = _read(inputs, "crossover", "fig9")
    realistic = _realistic_crossover(every, config)
    cross = _columns(every[every["cost_model"] == DEFAULT_COST_MODEL] if "cost_model" in every else every, cols)
    te = _columns(_read(inputs, "train_equivalent", "fig9"), ["model", "tef_ci_low", "tef_ci_high"])
    finite = cross[np.isfinite(cross["crossover_requests"].astype(float)) & (cross["crossover_requests"] > 0)]
    for row in cross[~cross["model"].isin(finite["model"])].itertuples():
        log.info("fig9: %s has no finite crossover (%s), not drawn", row.model, row.reason)
    _log_absent("fig9", "crossover row", _expected_models(config, te), cross["model"])
    finite = finite.merge(te[["model", "tef_ci_low", "tef_ci_high"]], on="model", how="left")
    finite = finite.sort_values(["family", "train_flops", "model"]).reset_index(drop=True)
    _theme()
    n = len(finite)
    title = "Lifetime compute: CoT on a smaller model vs training the train-equivalent model"
    if not n:
        return _nothing_to_draw(png, title, "no model has a finite crossover\n(see crossover.csv's reason column)")
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.6 * nrows + 0.4), squeeze=False)
    colours = sns.color_palette("deep", 2)
    unit = _unit(cross)
    for ax, row in zip(axes.flat, finite.itertuples()):
        r_star = float(row.crossover_requests)
        claimed = claims_crossover(row.verdict)
        r = np.logspace(math.log10(r_star) - 3, math.log10(r_star) + 3, 241)
        cot = flops.lifetime_cost(row.train_flops, row.N, row.tok_cot, r)
        std = flops.lifetime_cost(row.tef, row.N, row.tok_std, r)
        ax.plot(r, cot, color=colours[1], lw=1.8, label="with CoT: C + 2·R·N·tok_cot", gid="cost_cot")
        ax.plot(r, std, color=colours[0], lw=1.8, label="train-equivalent model without CoT: TEF + 2·R·N·tok_std",
                gid="cost_std")
        if np.isfinite(row.tef_ci_low) and np.isfinite(row.tef_ci_high):
            ax.fill_between(r, flops.lifetime_cost(row.tef_ci_low, row.N, row.tok_std, r),
                            flops.lifetime_cost(row.tef_ci_high, row.N, row.tok_std, r), color=colours[0],
                            alpha=0.15, lw=0, label="95% CI of TEF")
        _draw_realistic(ax, realistic, row, r, colours, claimed)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(r[0], r[-1])
        box = {"boxstyle": "round", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.9}
        if claimed:
            ax.axvspan(r[0], r_star, color=colours[1], alpha=0.06, lw=0)
            low, high = float(row.crossover_ci_low), float(row.crossover_ci_high)
            interval = ""
            if np.isfinite(low) or np.isfinite(high):
                ax.axvspan(max(low, r[0]) if np.isfinite(low) else r[0], min(high, r[-1]) if np.isfinite(high)
                           else r[-1], color="0.3", alpha=0.15, lw=0, label="95% CI of R*", gid="crossover_ci")
                interval = f"\n95% CI [{_sci(low)}, {_sci(high) if np.isfinite(high) else '∞'}]"
            ax.axvline(r_star, color="0.15", ls=":", lw=1.2, label="crossover R*", gid="crossover")
            ax.text(0.03, 0.97, f"R* = {_sci(r_star)} requests{interval}\n= {_sci(float(row.crossover_cot_tokens))} "
                    f"CoT {unit}", transform=ax.transAxes, va="top", fontsize=8, bbox=box)
        else:
            why = str(row.verdict).replace("no crossover claimed: ", "")
            ax.text(0.03, 0.97, "no crossover claimed:\n" + textwrap.fill(why, 34), transform=ax.transAxes,
                    va="top", fontsize=7.5, bbox=box, gid="no_crossover")
        ax.set_title(row.model, fontsize=9)
        ax.set_xlabel("inference requests R (log scale)")
        ax.set_ylabel("lifetime compute, FLOPs (log scale)")
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    seen = {}
    for ax in list(axes.flat)[:n]:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    handles, labels = list(seen.values()), list(seen)
    handles.append(Patch(color=colours[1], alpha=0.15))
    labels.append("region where CoT is the cheaper route")
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, png)
    return fig


def _realistic_crossover(cross: pd.DataFrame, config: dict) -> tuple[str, pd.DataFrame]:
    """(name, its crossover rows by model) of the realistic cost model fig9 draws beside the paper's."""
    name = config.get("analysis", {}).get("realistic_cost_model", "kinetics")
    if "cost_model" not in cross:
        return name, pd.DataFrame()
    return name, cross[cross["cost_model"] == name].set_index("model")


def _draw_realistic(ax, realistic: tuple[str, pd.DataFrame], row, r, colours, claimed: bool) -> None:
    """Fig 9's dashed lines: C + R·cost_cot and TEF + R·cost_std under the realistic cost model, and its R* where
    the paper's verdict claims one (the verdict reads the CoT gain and TEF, which no cost model changes)."""
    name, table = realistic
    if row.model not in table.index or not np.isfinite(float(table.loc[row.model, "cost_cot"])):
        return
    priced = table.loc[row.model]
    ax.plot(r, row.train_flops + r * priced["cost_cot"], color=colours[1], lw=1.3, ls="--",
            label=f"with CoT, {name} cost per request", gid=f"cost_cot:{name}")
    ax.plot(r, row.tef + r * priced["cost_std"], color=colours[0], lw=1.3, ls="--",
            label=f"train-equivalent model, {name} cost per request", gid=f"cost_std:{name}")
    r_star = float(priced["crossover_requests"])
    if claimed and np.isfinite(r_star):
        ax.axvline(r_star, color="0.45", ls="-.", lw=1.0, label=f"crossover R* under {name}",
                   gid=f"crossover:{name}")
        ax.text(0.97, 0.03, f"R* ({name}) = {_sci(r_star)}", transform=ax.transAxes, ha="right", fontsize=7,
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.8", "alpha": 0.9})


# ---------------------------------------------------------------- fig11: inference-compute scaling

def fig11_inference_scaling(inputs: dict[str, Path], png: Path, config: dict):
    """Overall score vs inference cost per request (log x) over every operating point: on the left under the
    paper's 2·N·generated tokens, on the right (where costs.csv prices them) under the realistic cost model
    (``analysis.realistic_cost_model``; costs.csv: plain points priced on their requests, budget points on their
    documents' requests, cotscale.sweep_cost).

    Budget sweeps of inference_scaling.csv are a line per model × strategy (gid ``sweep:<model>/<strategy>``),
    evaluated strategies without a sweep a marker each; colour: train FLOPs. All points drawn carry gid
    ``points``, the Pareto frontier (no point cheaper and better) gid ``pareto``; the right panel's gids end in
    ``:<cost model>``.
    """
    title = "Score vs inference compute per request, over budgets and models"
    tables = {name: _read(inputs, name, "fig11") for name in ("benchmarks", "tokens", "inference_scaling")}
    costs = _read(inputs, "costs", "fig11")
    tables["benchmarks"] = _columns(tables["benchmarks"], plan.REQUIRED["benchmarks"])
    tables["tokens"] = _columns(tables["tokens"], plan.REQUIRED["tokens"])
    if tables["inference_scaling"].empty:
        del tables["inference_scaling"]
    _theme()
    try:
        points = plan.operating_points(tables, "generated")
    except plan.PlanError as exc:
        return _nothing_to_draw(png, title, str(exc))
    points = points.assign(x=flops.inference_flops(points["N"], points["tokens_per_request"]))
    points = points[(points["x"] > 0) & points["overall"].notna()]
    _log_absent("fig11", "operating point with generated tokens", _expected_models(config, tables["benchmarks"]),
                points["model"])
    if points.empty:
        return _nothing_to_draw(png, title, "no operating point has an overall score and generated tokens")
    panels = [("", points, f"inference FLOPs per request, 2·N·({_unit(points)} generated) (log scale)")]
    realistic = _fig11_realistic(costs, config, points)
    if realistic is not None:
        panels.append(realistic)
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 + 5.5 * (len(panels) - 1), 4.8), layout="constrained",
                             squeeze=False)
    c = points["train_flops"]
    norm = LogNorm(vmin=c.min(), vmax=c.max() if c.max() > c.min() else c.min() * 10)
    cmap = plt.get_cmap("viridis")
    for ax, (suffix, pts, xlabel) in zip(axes[0], panels):
        _fig11_panel(ax, pts, cmap, norm, suffix)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("overall score")
        ax.set_title(f"under {suffix[1:]}" if suffix else "under paper (2·N·t)", fontsize=9)
    fig.suptitle(title)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), label="train FLOPs 6·N·D (log scale)")
    handles = [Line2D([], [], color="0.4", marker="o", markersize=4, lw=1.4, label="budget sweep (one run)"),
               Line2D([], [], color="0.6", marker="s", markeredgecolor="black", ls="none",
                      label="evaluated strategy"),
               Line2D([], [], color="crimson", lw=1.6, label="Pareto frontier")]
    axes[0][0].legend(handles=handles, loc="best", fontsize=8)  # a sweep may run along any edge
    _save(fig, png)
    return fig


def _fig11_realistic(costs: pd.DataFrame, config: dict, points: pd.DataFrame):
    """(gid suffix, points with x = their cost per request under the realistic cost model, x label) from costs.csv
    (its overall rows, by model × strategy × budget), or None (logged) where it prices none of them."""
    name = config.get("analysis", {}).get("realistic_cost_model", "kinetics")
    if costs.empty or "cost_model" not in costs or not (costs["cost_model"] == name).any():
        log.warning("fig11: costs.csv has no %s costs (analysis.cost_models); the paper's panel only", name)
        return None
    rows = costs[(costs["cost_model"] == name) & (costs["benchmark"] == "overall")].assign(
        budget=lambda t: t["budget"].fillna("").astype(str))
    priced = points.merge(rows[["model", "strategy", "budget", "cost_per_request", "unit"]],
                          on=["model", "strategy", "budget"], how="left")
    priced = priced.assign(x=priced["cost_per_request"])
    missing = priced.loc[~(priced["x"] > 0), ["model", "strategy", "budget"]]
    if len(missing):
        log.warning("fig11: no %s cost for %s", name, ", ".join(
            f"{m}/{s}{' ' + b if b else ''}" for m, s, b in missing.itertuples(index=False)))
    priced = priced[priced["x"] > 0]
    if priced.empty:
        return None
    unit = priced["unit"].iloc[0]
    return f":{name}", priced, f"{name} cost per request ({unit}; prompt, attention, KV) (log scale)"


def _fig11_panel(ax, points: pd.DataFrame, cmap, norm, suffix: str) -> None:
    """One panel of fig 11: the sweeps as lines, plain points as squares, the Pareto frontier of x vs overall."""
    swept = points[points["budget"] != ""]
    for (model, strategy), d in swept.groupby(["model", "strategy"], sort=True):
        d = d.sort_values("x")
        ax.plot(d["x"], d["overall"], color=cmap(norm(d["train_flops"].iloc[0])), lw=1.4, marker="o",
                markersize=4, gid=f"sweep:{model}/{strategy}{suffix}")
    plain = points[points["budget"] == ""]
    ax.scatter(plain["x"], plain["overall"], c=plain["train_flops"], cmap=cmap, norm=norm, marker="s", s=34,
               edgecolor="black", linewidth=0.5, zorder=3)
    ax.plot(points["x"], points["overall"], ls="none", gid=f"points{suffix}")  # every drawn value, in one place
    front = plan.pareto_frontier(points, "x", "overall")
    ax.step(front["x"], front["overall"], where="post", color="crimson", lw=1.6, zorder=4, gid=f"pareto{suffix}")
    ax.plot(front["x"], front["overall"], ls="none", marker="o", markersize=9, markerfacecolor="none",
            markeredgecolor="crimson", zorder=4)
    ax.set_xscale("log")


# ---------------------------------------------------------------- fig12: the planner's regions

def distinct_colours(n: int) -> list:
    """n colours, no two alike: tab20's up to 20 (then it repeats), evenly spaced hues beyond (fig 12's winners and
    fig 13's lines are told apart by colour alone)."""
    return sns.color_palette("tab20" if n <= 20 else "husl", max(n, 1))


def _cell_edges(centres, log_scale: bool) -> np.ndarray:
    """Cell boundaries halfway between grid values (geometrically on a log axis), the ends mirrored."""
    v = np.log10(centres) if log_scale else np.asarray(centres, dtype=float)
    step = np.diff(v) if len(v) > 1 else np.array([1.0 if log_scale else 0.01])
    e = np.concatenate([[v[0] - step[0] / 2], v[:-1] + step / 2, [v[-1] + step[-1] / 2]])
    return 10**e if log_scale else e


def fig12_plan(inputs: dict[str, Path], png: Path, config: dict):
    """The cheapest operating point of plan.csv for each lifetime-request count R × target score S, as regions;
    one panel per cost model of plan.csv (the paper's, then the realistic one, cotscale.cost); a cross (gid
    ``uncertain``) marks the cells whose winner has p_cheapest < UNSURE.

    Each panel's cell mesh has gid ``regions`` (``regions:<cost model>`` after the first): its values (rows: S
    ascending, columns: R ascending) index the legend's entries, −1 where no point reaches S (grey).
    """
    cols = ["requests", "target", "model", "strategy", "budget", "lifetime_flops", "cost", "p_cheapest"]
    every = _read(inputs, "plan", "fig12")
    table = _columns(every, cols + (["cost_model", "cost_unit"] if "cost_model" in every else []))
    table = table.dropna(subset=["requests", "target"])
    if "cost_model" not in table:
        table = table.assign(cost_model=DEFAULT_COST_MODEL, cost_unit="FLOPs")
    _theme()
    title = "Cheapest operating point by lifetime requests and target score"
    if table.empty:
        return _nothing_to_draw(png, title, "no plan grid (plan.csv has no rows)")
    budget = table["budget"].fillna("").astype(str)
    label = (table["model"].astype(str) + " / " + table["strategy"].astype(str)
             + np.where(budget != "", " (" + budget + ")", ""))
    table = table.assign(label=label.where(table["model"].notna()))
    labels = sorted(table["label"].dropna().unique())
    rs, ss = np.sort(table["requests"].unique()), np.sort(table["target"].unique())
    names = list(dict.fromkeys(table["cost_model"].fillna(DEFAULT_COST_MODEL)))
    log_x = bool((rs > 0).all())
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names) + 3.0, 1.8 + 0.35 * max(len(ss), 6)),
                             layout="constrained", squeeze=False)
    colours = distinct_colours(len(labels))
    cmap = ListedColormap(["0.85", *colours[:len(labels)]])
    any_empty = any_unsure = False
    for i, (ax, name) in enumerate(zip(axes.flat, names)):
        part = table[table["cost_model"].fillna(DEFAULT_COST_MODEL) == name]
        cells = np.full((len(ss), len(rs)), -1.0)
        for row in part.itertuples():
            cells[np.searchsorted(ss, row.target), np.searchsorted(rs, row.requests)] = \
                labels.index(row.label) if isinstance(row.label, str) else -1
        any_empty |= bool((cells < 0).any())
        ax.pcolormesh(_cell_edges(rs, log_x), _cell_edges(ss, False), cells, cmap=cmap, vmin=-1.5,
                      vmax=len(labels) - 0.5, edgecolors="white", linewidth=0.4,
                      gid="regions" if i == 0 else f"regions:{name}")
        unsure = part[part["model"].notna() & (part["p_cheapest"].astype(float) < UNSURE)]
        if len(unsure):
            any_unsure = True
            ax.plot(unsure["requests"], unsure["target"], linestyle="none", marker="x", color="0.1", markersize=5,
                    markeredgewidth=1.1, gid="uncertain" if i == 0 else f"uncertain:{name}")
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel("lifetime inference requests R" + (" (log scale)" if log_x else ""))
        ax.set_ylabel("target overall score S")
        if name == DEFAULT_COST_MODEL:
            cost = ", ".join(sorted(set(part["cost"].dropna()))) or "generated"
            ax.set_title(f"paper: 6·N·D + R·2·N·t\n(t: {cost} tokens per request)", fontsize=9)
        else:
            unit = part["cost_unit"].dropna().iloc[0] if part["cost_unit"].notna().any() else ""
            ax.set_title(f"{name}: train + R·(cost per request)\n(cotscale.cost, {unit})", fontsize=9)
    fig.suptitle(title)
    handles = [Patch(color=colours[i], label=name) for i, name in enumerate(labels)]
    if any_unsure:
        handles.append(Line2D([], [], linestyle="none", marker="x", color="0.1",
                              label=f"winner is cheapest in < {UNSURE:.0%}\nof bootstrap draws (p_cheapest)"))
    if any_empty:
        handles.append(Patch(color="0.85", label="no evaluated point reaches S"))
    axes.flat[-1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=7,
                         title="cheapest point")
    _save(fig, png)
    return fig


# ---------------------------------------------------------------- fig13: cost models

def pairs_count(costs: pd.DataFrame) -> int:
    """Model × strategy pairs of a costs table (fig13's legend rows, two a line)."""
    return len(costs.drop_duplicates(["model", "strategy"])) // 2

#: the cost models fig13 steps through, from the paper's convention to KV-cache traffic (all in (e)FLOPs)
FIG13_STEPS = (DEFAULT_COST_MODEL, "attention", "kinetics")


def fig13_cost_models(inputs: dict[str, Path], png: Path, config: dict):
    """How the cost per request (left: ratio to the paper's 2·N·t, per model × strategy, overall) and the crossover
    R* (right, per model) move from ``paper`` to ``attention`` to ``kinetics`` (cotscale.cost). A line each (gid
    ``ratio:<model>/<strategy>``, ``rstar:<model>``); a model without the architecture has no line past paper."""
    costs = _columns(_read(inputs, "costs", "fig13"), ["model", "strategy", "benchmark", "budget", "cost_model",
                                                        "ratio_to_paper"])
    costs = costs[costs["budget"].fillna("").astype(str) == ""]  # the evaluated points (budgets: costs.csv)
    cross = _read(inputs, "crossover", "fig13")
    _theme()
    title = "When the paper's 2·N·t stops being safe: cost per request and R* under richer cost models"
    steps = [s for s in FIG13_STEPS if s in set(costs["cost_model"].dropna())]
    costs = costs[(costs["benchmark"] == "overall") & costs["cost_model"].isin(steps)]
    costs = costs[np.isfinite(costs["ratio_to_paper"].astype(float))]
    if costs.empty or len(steps) < 2:
        return _nothing_to_draw(png, title, "costs.csv has no cost model beyond paper with a finite ratio\n"
                                            "(see its reason column: architecture facts missing?)")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5.5 + 0.12 * pairs_count(costs)), layout="constrained")
    x = {name: i for i, name in enumerate(steps)}
    pairs = costs.groupby(["model", "strategy"], sort=True)
    colours = distinct_colours(pairs.ngroups)
    for colour, ((model, strategy), part) in zip(colours, pairs):
        part = part.sort_values("cost_model", key=lambda c: c.map(x))
        left.plot(part["cost_model"].map(x), part["ratio_to_paper"], marker="o", color=colour, lw=1.4,
                  label=f"{model} / {strategy}", gid=f"ratio:{model}/{strategy}")
    left.axhline(1, color="0.4", lw=0.8, ls=":")
    left.set_yscale("log")
    left.set_xticks(range(len(steps)), steps)
    left.set_ylabel("cost per request / paper's 2·N·t (log scale)")
    left.set_title("cost per request, overall (mean over benchmarks)", fontsize=9)
    left.legend(fontsize=6, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2, frameon=False)
    drawn = 0
    if {"cost_model", "crossover_requests"} <= set(cross.columns):
        cross = cross[cross["cost_model"].isin(steps)]
        for model, part in cross.groupby("model", sort=True):
            part = part.sort_values("cost_model", key=lambda c: c.map(x))
            r = part["crossover_requests"].astype(float)
            if not np.isfinite(r).any():
                continue
            xs = part["cost_model"].map(x)
            line, = right.plot(xs, r, lw=1.4, label=model, gid=f"rstar:{model}")
            claimed = part["verdict"].map(claims_crossover) if "verdict" in part else pd.Series(True, index=part.index)
            right.scatter(xs[claimed], r[claimed], marker="s", color=line.get_color(), zorder=3)
            right.scatter(xs[~claimed], r[~claimed], marker="s", facecolors="white", edgecolors=line.get_color(),
                          zorder=3, gid=f"rstar_not_claimed:{model}")
            drawn += 1
    right.set_xticks(range(len(steps)), steps)
    right.set_yscale("log")
    right.set_ylabel("crossover R*, requests (log scale)")
    right.set_title("R*: CoT stays the cheaper route below it\n(hollow: not claimed, crossover.csv's verdict says why)",
                    fontsize=9)
    if drawn:
        right.legend(fontsize=7)
    else:
        right.text(0.5, 0.5, "no model has a finite R*\n(crossover.csv's reason column)", ha="center",
                   va="center", transform=right.transAxes)
    fig.suptitle(title)
    _save(fig, png)
    return fig


def draw(figure: str, inputs: dict[str, Path], png: Path, config: dict):
    """Draw the registry's figure `figure` (cotscale.registry) with its function of the same name here."""
    if figure not in FIGURE_NAMES:
        raise ValueError(f"unknown figure {figure!r}; the registry (cotscale.registry) has {', '.join(FIGURE_NAMES)}")
    return globals()[figure](inputs, Path(png), config)

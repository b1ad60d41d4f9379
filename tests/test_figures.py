"""Figures: each function on small hand-made tables, on partial and empty inputs, and one Snakemake run.

The figure functions return their (closed) matplotlib Figure; the artists that carry numbers have a gid, so the
tests read back what was drawn and compare it with the tables.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cotscale import figures, registry

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper"

CONFIG = {
    "analysis": {"baseline": "hybrid", "cot": "hybrid_cot", "llh": "standard"},
    "strategies": {"standard": {"format": "loglikelihood", "prompt": "plain"},
                   "free_cot": {"format": "generate", "prompt": "cot"},
                   "hybrid": {"format": "hybrid", "prompt": "plain"},
                   "hybrid_cot": {"format": "hybrid", "prompt": "cot"}},
    "models": {},
}
BENCH = ["arc_challenge", "gsm8k", "hellaswag", "mmlu", "winogrande", "xwinograd", "truthfulqa_mc1"]

# model -> (family, N, D); "solo" is the only model of its family
MODELS = {"f-s": ("f", 1e8, 1e10), "f-m": ("f", 1e8, 1e11), "f-l": ("f", 1e8, 1e12), "solo": ("g", 1e9, 1e12)}
# (model, strategy) -> overall; absent pairs were not evaluated
OVERALL = {
    ("f-s", "standard"): 0.30, ("f-m", "standard"): 0.34, ("f-l", "standard"): 0.40, ("solo", "standard"): 0.50,
    ("f-s", "hybrid"): 0.28, ("f-m", "hybrid"): 0.31, ("f-l", "hybrid"): 0.36,
    ("f-s", "hybrid_cot"): 0.27, ("f-m", "hybrid_cot"): 0.33, ("f-l", "hybrid_cot"): 0.39,
    ("solo", "hybrid_cot"): 0.45,
    ("f-m", "free_cot"): 0.05, ("f-l", "free_cot"): 0.08,
}


def benchmarks_table() -> pd.DataFrame:
    rows = []
    for (model, strategy), overall in OVERALL.items():
        family, n, d = MODELS[model]
        row = {"model": model, "revision": "main", "family": family, "N": n, "D": d, "strategy": strategy,
               "train_flops": 6 * n * d, "overall": overall, "overall_stderr": 0.004, "n_benchmarks": 7}
        row.update({b: overall for b in BENCH})
        row.update({f"{b}_stderr": 0.01 for b in BENCH})
        rows.append(row)
    # a model whose run is incomplete: no overall score
    rows.append({"model": "f-xl", "family": "f", "N": 1e9, "D": 1e12, "strategy": "hybrid", "train_flops": 6e21,
                 "overall": np.nan, "n_benchmarks": 3})
    return pd.DataFrame(rows)


TABLE1 = pd.DataFrame({
    "model": ["f-s", "f-m", "f-l", "Overall"], "family": ["f", "f", "f", np.nan], "N": [1e8, 1e8, 1e8, np.nan],
    "D": [1e10, 1e11, 1e12, np.nan], "baseline_tokens": [10.0, 12.0, 14.0, 12.0],
    "cot_tokens": [40.0, 30.0, 70.0, 140 / 3],
    "n_benchmarks": [7, 7, 7, np.nan], "token_unit": "tokens"})
TABLE1["ratio"] = TABLE1["cot_tokens"] / TABLE1["baseline_tokens"]

ISOFLOP = pd.DataFrame({
    "prompting": ["baseline", "cot", "seed_bug"], "strategy": ["hybrid", "hybrid_cot", "hybrid_cot"],
    "score_strategy": ["hybrid", "hybrid_cot", "hybrid"], "alpha": [0.01, 0.02, 0.015],
    "beta": [0.001, -0.0005, 0.0002],
    "delta": [-0.2, -0.5, -0.3], "n": 3, "token_unit": "tokens"})

TRAIN_EQUIVALENT = pd.DataFrame({
    "model": ["f-s", "f-m", "f-l", "solo"], "family": ["f", "f", "f", "g"], "N": [1e8, 1e8, 1e8, 1e9],
    "D": [1e10, 1e11, 1e12, 1e12], "train_flops": [6e18, 6e19, 6e20, 6e21],
    "tef": [3e18, 2e20, 1.8e21, np.nan], "tef_ci_low": [1e18, 8e19, 9e20, np.nan],
    "tef_ci_high": [9e18, 5e20, 4e21, np.nan]})
TRAIN_EQUIVALENT["tef_ratio"] = TRAIN_EQUIVALENT["tef"] / TRAIN_EQUIVALENT["train_flops"]


def crossover_table() -> pd.DataFrame:
    te = TRAIN_EQUIVALENT.merge(TABLE1[["model", "baseline_tokens", "cot_tokens"]], on="model", how="left")
    from cotscale import flops
    return flops.crossover(te.rename(columns={"baseline_tokens": "tok_std", "cot_tokens": "tok_cot"})
                           .assign(token_unit="tokens"))


PCA_OURS = pd.DataFrame({"benchmark": BENCH + ["explained_variance_ratio"],
                         "pc_1": [0.1, 0.3, 0.08, 0.18, 0.06, 0.07, 0.04, 0.9],
                         "pc_2": [0.04, -0.05, 0.06, 0.0, 0.04, 0.05, -0.01, 0.08],
                         "pc_3": [0.0, -0.01, 0.0, 0.03, 0.0, -0.01, 0.0, 0.01], "n_rows": 26})
PCA_RUAN = pd.concat([PCA_OURS.iloc[:-1], pd.DataFrame({"benchmark": ["humaneval"], "pc_1": [0.16], "pc_2": [-0.05],
                                                        "pc_3": [0.07]}), PCA_OURS.iloc[-1:]],
                     ignore_index=True).assign(n_rows=124)


@pytest.fixture
def tables(tmp_path) -> dict[str, Path]:
    frames = {"benchmarks": benchmarks_table(), "table1_tokens": TABLE1, "isoflop_fit": ISOFLOP,
              "train_equivalent": TRAIN_EQUIVALENT, "crossover": crossover_table(),
              "pca_loadings_ours": PCA_OURS, "pca_loadings_ruan": PCA_RUAN,
              "pca_loadings_ruan_no_humaneval": PCA_OURS.assign(n_rows=129)}
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp_path / "tables" / f"{name}.csv"
        paths[name].parent.mkdir(exist_ok=True)
        frame.to_csv(paths[name], index=False)
    return paths


def draw(name, inputs, tmp_path):
    png = tmp_path / "figures" / f"{name}.png"
    fig = figures.draw(name, inputs, png, CONFIG)
    assert png.stat().st_size > 0 and png.with_suffix(".pdf").stat().st_size > 0
    return fig


def by_gid(fig, gid):
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid() == gid]


# ---------------------------------------------------------------- one test per figure, on real values

def test_fig1_draws_each_family(tables, tmp_path):
    fig = draw("fig1_overall_vs_train_flops", tables, tmp_path)
    ys = sorted(y for line in fig.axes[0].lines for y in line.get_ydata())
    assert ys == pytest.approx(sorted(v for (m, s), v in OVERALL.items() if s == "standard"))


def test_paired_scores_fig3(tables, tmp_path, caplog):
    fig = draw("fig3_cot_vs_no_cot", tables, tmp_path)
    ax = fig.axes[0]
    base, cot = by_gid(fig, "hybrid")[0], by_gid(fig, "hybrid_cot")[0]
    # rows: the models with a CoT score, in family then train-FLOP order
    assert [t.get_text() for t in ax.get_yticklabels()] == ["f-s", "f-m", "f-l", "solo"]
    assert list(cot.get_xdata()) == pytest.approx([0.27, 0.33, 0.39, 0.45])
    assert list(base.get_xdata()) == pytest.approx([0.28, 0.31, 0.36])  # solo has no hybrid score
    assert len(by_gid(fig, "pair")) == 3
    assert "f-xl" in caplog.text and "solo" in caplog.text  # incomplete / absent runs are logged


def test_fig2_and_fig10_pick_their_strategies(tables, tmp_path):
    fig2 = draw("fig2_loglikelihood_vs_hybrid", tables, tmp_path)
    assert list(by_gid(fig2, "hybrid")[0].get_xdata()) == pytest.approx([0.28, 0.31, 0.36])
    assert list(by_gid(fig2, "standard")[0].get_xdata()) == pytest.approx([0.30, 0.34, 0.40])
    # the free-form CoT strategy is found by format (generate + cot) when not called cot_generate
    assert registry.free_form_cot(CONFIG) == "free_cot"
    fig10 = draw("fig10_free_form_cot", tables, tmp_path)
    assert list(by_gid(fig10, "free_cot")[0].get_xdata()) == pytest.approx([0.05, 0.08])
    assert [t.get_text() for t in fig10.axes[0].get_yticklabels()] == ["f-m", "f-l"]


def test_fig4_gain_per_family(tables, tmp_path):
    fig = draw("fig4_cot_gain_vs_train_flops", tables, tmp_path)
    line = by_gid(fig, "gain:f")
    assert len(line) == 1 and not by_gid(fig, "gain:g")  # solo has no baseline score
    assert list(line[0].get_xdata()) == pytest.approx([6e18, 6e19, 6e20])
    assert list(line[0].get_ydata()) == pytest.approx([-0.01, 0.02, 0.03])
    assert fig.axes[0].get_xscale() == "log"


def test_table1_bars_and_ratios(tables, tmp_path):
    fig = draw("table1_tokens", tables, tmp_path)
    base = [p.get_width() for p in by_gid(fig, "baseline")]
    cot = [p.get_width() for p in by_gid(fig, "cot")]
    assert base == pytest.approx(list(TABLE1["baseline_tokens"]))
    assert cot == pytest.approx(list(TABLE1["cot_tokens"]))
    assert [t.get_text() for t in by_gid(fig, "ratio")] == [f"×{r:.2f}" for r in TABLE1["ratio"]]
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()][-1] == "Overall"


def test_pca_loadings(tables, tmp_path):
    fig5 = draw("fig5_pca_loadings_ours", tables, tmp_path)
    bars = by_gid(fig5, "our models, standard:pc_1")
    assert [b.get_width() for b in bars] == pytest.approx(PCA_OURS["pc_1"][:7].tolist())
    assert "90.0%" in fig5.axes[0].get_title()
    fig6 = draw("fig6_pca_loadings_ruan", tables, tmp_path)
    with_he = [b.get_width() for b in by_gid(fig6, "with HumanEval:pc_3")]
    without = [b.get_width() for b in by_gid(fig6, "without HumanEval:pc_3")]
    assert with_he[-1] == pytest.approx(0.07) and len(with_he) == 8
    assert math.isnan(without[-1])  # no HumanEval bar in the ablated fit


def test_fig7_isoflop_lines_follow_the_fit(tables, tmp_path):
    fig = draw("fig7_isoflop", tables, tmp_path)
    assert figures.isoflop_levels([6e18, 6e20]) == [1e19, 1e20]
    for prompting, fit in (("baseline", ISOFLOP.iloc[0]), ("cot", ISOFLOP.iloc[1])):
        pts = by_gid(fig, f"points:{prompting}")[0].get_offsets()
        assert len(pts) == 3  # f-s, f-m, f-l have scores and tokens; solo has no tokens
        for c in (1e19, 1e20):
            line = by_gid(fig, f"isoflop:{prompting}:{c:g}")[0]
            t, y = line.get_xdata(), line.get_ydata()
            assert y == pytest.approx(fit["alpha"] * np.log(c) + fit["beta"] * t + fit["delta"])
    assert len([a for a in fig.axes[1].lines if str(a.get_gid()).startswith("seed_bug:")]) == 2
    cot_pts = by_gid(fig, "points:cot")[0].get_offsets()
    assert np.array(sorted(map(tuple, cot_pts))) == pytest.approx(np.array([(30.0, 0.33), (40.0, 0.27), (70.0, 0.39)]))


def test_fig8_tef_ratio(tables, tmp_path):
    fig = draw("fig8_tef_ratio_vs_token_ratio", tables, tmp_path)
    line = by_gid(fig, "models")[0]
    assert list(line.get_xdata()) == pytest.approx([4.0, 2.5, 5.0])
    assert list(line.get_ydata()) == pytest.approx([0.5, 2e20 / 6e19, 3.0])
    assert fig.axes[0].get_yscale() == "log"


def test_fig9_crossover_at_r_star(tables, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="cotscale.figures")
    cross = pd.read_csv(tables["crossover"]).set_index("model")
    finite = cross["crossover_requests"].dropna()
    assert sorted(finite.index) == ["f-l", "f-m"]  # f-s: TEF < C; solo: no TEF
    fig = draw("fig9_lifetime_cost", tables, tmp_path)
    drawn = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(drawn) == set(finite.index)
    for model, r_star in finite.items():
        ax = drawn[model]
        vline = [a for a in ax.lines if a.get_gid() == "crossover"]
        assert len(vline) == 1 and vline[0].get_xdata()[0] == pytest.approx(r_star)
        cot = [a for a in ax.lines if a.get_gid() == "cost_cot"][0]
        std = [a for a in ax.lines if a.get_gid() == "cost_std"][0]
        mid = len(cot.get_xdata()) // 2  # the request grid is centred on R*
        assert cot.get_xdata()[mid] == pytest.approx(r_star)
        row = cross.loc[model]
        expected = row["train_flops"] + 2 * r_star * row["N"] * row["tok_cot"]
        assert cot.get_ydata()[mid] == pytest.approx(expected)
        assert std.get_ydata()[mid] == pytest.approx(expected)  # both lifetime costs meet at R*
        assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "f-s has no finite crossover" in caplog.text


def test_fig9_shades_a_claimed_r_star_and_explains_an_unclaimed_one(tables, tmp_path):
    cross = pd.read_csv(tables["crossover"])
    r_star = cross.set_index("model")["crossover_requests"]
    cross["crossover_ci_low"] = cross["crossover_requests"] / 4
    cross["crossover_ci_high"] = cross["crossover_requests"] * 4
    cross["verdict"] = np.where(cross["model"] == "f-l", "finite R* claimed",
                                "no crossover claimed: the CoT gain's interval [-0.01, 0.02] contains 0")
    cross.to_csv(tables["crossover"], index=False)
    fig = draw("fig9_lifetime_cost", tables, tmp_path)
    drawn = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    claimed, unclaimed = drawn["f-l"], drawn["f-m"]
    band = [p for p in claimed.patches if p.get_gid() == "crossover_ci"]
    assert len(band) == 1
    x0, width = band[0].get_x(), band[0].get_width()  # axvspan's rectangle, in data coordinates
    assert (x0, x0 + width) == pytest.approx((r_star["f-l"] / 4, r_star["f-l"] * 4))
    assert not [a for a in unclaimed.lines if a.get_gid() == "crossover"]  # no line where R* is not claimed
    why = [t.get_text() for t in unclaimed.texts if t.get_gid() == "no_crossover"]
    assert len(why) == 1 and "contains 0" in why[0].replace("\n", " ")


def test_fig13_marks_the_r_stars_no_verdict_claims(tmp_path):
    """R* per cost model: a claimed one as a filled square, one the verdict does not claim as a hollow one."""
    steps = ["paper", "attention", "kinetics"]
    costs = pd.DataFrame({"model": "m", "strategy": "hybrid_cot", "benchmark": "overall", "budget": np.nan,
                          "cost_model": steps, "ratio_to_paper": [1.0, 3.0, 9.0]})
    claimed = "finite R* claimed"
    cross = pd.DataFrame({"model": "m", "cost_model": steps, "crossover_requests": [1e6, 2e5, 5e4],
                          "verdict": [claimed, claimed, "no crossover claimed: the CoT gain's interval [-0.01, 0.02] "
                                                        "contains 0"]})
    paths = {}
    for name, frame in {"costs": costs, "crossover": cross}.items():
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    fig = draw("fig13_cost_models", paths, tmp_path)
    line = by_gid(fig, "rstar:m")[0]
    assert list(line.get_ydata()) == [1e6, 2e5, 5e4]
    hollow = by_gid(fig, "rstar_not_claimed:m")[0]
    assert hollow.get_offsets().tolist() == [[2.0, 5e4]]  # kinetics, the third step
    assert list(hollow.get_facecolors()[0]) == [1.0, 1.0, 1.0, 1.0]


# ---------------------------------------------------------------- partial and empty inputs

def registry_inputs(figure: registry.Figure) -> list[str]:
    """The input names the figure's rule gives it (workflow/rules/common.smk get_figure_inputs): its analysis
    tables, and `benchmarks` when it reads strategies' scores."""
    return [*figure.tables, *(["benchmarks"] if figure.strategies else [])]


def drawn(fig) -> list:
    """The artists that carry numbers (every figure function gives them a gid)."""
    return [a for ax in fig.axes for a in ax.get_children() if a.get_gid()]


@pytest.mark.parametrize("figure", registry.FIGURES, ids=registry.FIGURE_NAMES)
def test_empty_and_missing_inputs_draw_nothing_and_log_each_missing_input(figure, tmp_path, caplog):
    """Each input of the figure's rule absent (empty file), with a header and no rows, or not given at all: the figure
    still exists, draws no data, and the log names every input and why it is missing."""
    names = registry_inputs(figure)
    assert names, figure.name  # every figure reads something
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    header_only = tmp_path / "header.csv"
    header_only.write_text("model,family,strategy,overall\n")
    cases = {"a": ({k: empty for k in names}, [f"input table {empty} is missing or empty"]),
             "b": ({k: header_only for k in names}, [f"input table {header_only} has no rows"]),
             "c": ({}, [f"input table {k!r} not given" for k in names])}
    for case, (inputs, expected) in cases.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cotscale.figures"):
            fig = draw(figure.name, inputs, tmp_path / case)
        assert drawn(fig) == [], (figure.name, case, [a.get_gid() for a in drawn(fig)])
        assert any(t.get_text() for ax in fig.axes for t in ax.texts), (figure.name, case)  # says why it is empty
        for line in expected:
            assert line in caplog.text, (figure.name, case, line, caplog.text)


def test_ruan_not_configured_says_so(tables, tmp_path):
    empty = tmp_path / "ruan.csv"
    pd.DataFrame(columns=["benchmark", "pc_1", "pc_2", "pc_3", "n_rows"]).to_csv(empty, index=False)
    fig = draw("fig6_pca_loadings_ruan", {"pca_loadings_ruan": empty, "pca_loadings_ruan_no_humaneval": empty},
               tmp_path)
    assert any("not configured" in t.get_text() for ax in fig.axes for t in ax.texts)
    # one of the two present: that one is drawn
    fig = draw("fig6_pca_loadings_ruan", {"pca_loadings_ruan": empty,
                                          "pca_loadings_ruan_no_humaneval": tables["pca_loadings_ruan_no_humaneval"]},
               tmp_path)
    assert by_gid(fig, "without HumanEval:pc_1") and not by_gid(fig, "with HumanEval:pc_1")


def test_partial_tables_draw_what_exists(tables, tmp_path, caplog):
    bench = benchmarks_table()
    bench = bench[~((bench["model"] == "f-m") & (bench["strategy"] == "hybrid_cot"))]
    bench.to_csv(tables["benchmarks"], index=False)
    fig = draw("fig4_cot_gain_vs_train_flops", tables, tmp_path)
    assert list(by_gid(fig, "gain:f")[0].get_xdata()) == pytest.approx([6e18, 6e20])
    assert "f-m" in caplog.text
    cross = crossover_table()
    cross.loc[cross["model"] == "f-l", ["crossover_requests", "reason"]] = [np.nan, "TEF <= C"]
    cross.to_csv(tables["crossover"], index=False)
    fig = draw("fig9_lifetime_cost", tables, tmp_path)
    assert len(by_gid(fig, "crossover")) == 1


def test_output_is_deterministic(tables, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    draw("fig9_lifetime_cost", tables, a)
    draw("fig9_lifetime_cost", tables, b)
    for suffix in ("png", "pdf"):
        assert (a / "figures" / f"fig9_lifetime_cost.{suffix}").read_bytes() == \
            (b / "figures" / f"fig9_lifetime_cost.{suffix}").read_bytes()


# ---------------------------------------------------------------- wiring

def test_every_registered_figure_has_a_rule_a_function_and_a_caption():
    """The registry is the one list: Snakemake generates a rule per entry (and rule all asks for its files)."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "--list-rules", "--configfile", "config/demo.yaml"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    rules = set(run.stdout.split())
    for figure in registry.FIGURES:
        assert figure.name in rules
        assert callable(getattr(figures, figure.name))
        assert (ROOT / "workflow" / "report" / figure.caption).is_file()
    # --forceall: every job, also where this checkout already holds the published run's outputs
    dry = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--forceall", "--configfile",
                          "config/published.yaml", "--quiet", "rules"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert dry.returncode == 0, dry.stderr[-3000:]
    for name in registry.FIGURE_NAMES:  # rule all's targets
        assert re.search(rf"^{name}\s+1$", dry.stdout, flags=re.M), name
    with pytest.raises(ValueError, match="unknown figure 'fig99'"):
        figures.draw("fig99", {}, Path("x.png"), CONFIG)


@pytest.mark.skipif(not (PAPER / "models.csv").exists(), reason="../shared/paper not present")
def test_snakemake_builds_one_figure_from_published_outputs(tmp_path):
    """`snakemake figures/fig9_lifetime_cost.pdf` on the published config builds that figure and only what it needs."""
    work = tmp_path / "main"
    shutil.copytree(ROOT, work, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".snakemake", "results", "figures", "logs", "__pycache__", "*.egg-info", ".pytest_cache",
        "report.html"))
    (tmp_path / "shared").symlink_to(PAPER.parent)  # config/published.yaml reads ../shared/paper
    run = subprocess.run([sys.executable, "-m", "snakemake", "figures/fig9_lifetime_cost.pdf", "--cores", "1",
                          "--configfile", "config/published.yaml"], cwd=work, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(p.name for p in (work / "figures").iterdir()) == ["fig9_lifetime_cost.pdf", "fig9_lifetime_cost.png"]
    log = (work / "logs" / "figures" / "fig9_lifetime_cost.log").read_text()
    assert "no finite crossover" in log
    # the report of that target's DAG: the figure and the tables it was drawn from, with their captions
    report = subprocess.run([sys.executable, "-m", "snakemake", "--report", "report.html",
                             "figures/fig9_lifetime_cost.pdf", "--configfile", "config/published.yaml"], cwd=work,
                            capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr[-3000:]
    html = (work / "report.html").read_text()
    assert "fig9_lifetime_cost.png" in html and "crossover R* = (TEF" in html


@pytest.mark.parametrize("n", [1, 7, 20, 21, 40])
def test_distinct_colours_never_repeat(n):
    colours = [tuple(round(c, 6) for c in colour) for colour in figures.distinct_colours(n)]
    assert len(colours) == n and len(set(colours)) == n

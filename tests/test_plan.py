"""The planner on hand-made tables of three models, every expected choice worked out by hand from
lifetime FLOPs = 6·N·D + R·2·N·t; the R × S grid; fig12 on that grid."""

from __future__ import annotations

import pandas as pd
import pytest

from cotscale import figures, plan

# model -> N, D (train FLOPs: A 6e18, B 6e20, C 6e22)
MODELS = {"A": (1e8, 1e10), "B": (1e9, 1e11), "C": (1e10, 1e12)}
OVERALL = {("A", "cot"): 0.30, ("B", "cot"): 0.40, ("C", "cot"): 0.50, ("C", "standard"): 0.60}


def tok(model, strategy, benchmark, task, documents, generate_requests, generated, prompt):
    n, d = MODELS[model]
    return {"model": model, "revision": "main", "family": "f", "N": n, "D": d, "strategy": strategy,
            "benchmark": benchmark, "task": task, "requests": documents * 4, "generate_requests": generate_requests,
            "documents": documents, "prompt_tokens": prompt, "generated_tokens": generated, "token_unit": "tokens"}


TOKENS = pd.DataFrame([
    # A: arc 1000/10 = 100 per generate request; mmlu pooled by generate requests (140 + 660)/(2 + 6) = 100 -> t = 100
    tok("A", "cot", "arc_challenge", "arc_challenge", 10, 10, 1000, 500),
    tok("A", "cot", "mmlu", "mmlu_x", 2, 2, 140, 40),
    tok("A", "cot", "mmlu", "mmlu_y", 6, 6, 660, 120),
    # B: t = 5; C: t = 2
    tok("B", "cot", "arc_challenge", "arc_challenge", 20, 20, 100, 400),
    tok("B", "cot", "mmlu", "mmlu_x", 10, 10, 50, 100),
    tok("C", "cot", "arc_challenge", "arc_challenge", 20, 20, 40, 400),
    tok("C", "cot", "mmlu", "mmlu_x", 20, 20, 40, 400),
    # C standard: log-likelihood, nothing generated; forward tokens per document (2000/20 + 4000/20)/2 = 150
    tok("C", "standard", "arc_challenge", "arc_challenge", 20, 0, 0, 2000),
    tok("C", "standard", "mmlu", "mmlu_x", 20, 0, 0, 4000),
])


def benchmarks() -> pd.DataFrame:
    return pd.DataFrame([{"model": m, "revision": "main", "family": "f", "N": MODELS[m][0], "D": MODELS[m][1],
                          "strategy": s, "overall": v} for (m, s), v in OVERALL.items()])


def sweep() -> pd.DataFrame:
    """A k=4 operating point of A's run: overall 0.42 at 400 tokens per request."""
    n, d = MODELS["A"]
    row = {"model": "A", "revision": "main", "family": "f", "N": n, "D": d, "strategy": "cot", "budget_kind": "k",
           "budget": 4, "benchmark": "overall", "metric": "maj@k", "estimator": "exact", "documents": 18,
           "score": 0.42, "score_stderr": 0.01, "mc_stderr": 0.0, "ci_low": 0.40, "ci_high": 0.44,
           "tokens_per_request": 400.0, "inference_flops_per_request": 2 * n * 400, "train_flops": 6 * n * d,
           "n_benchmarks": 7}
    # the same run's weighted vote is not the primary metric: never an operating point
    return pd.DataFrame([row, {**row, "metric": "weighted_maj@k", "score": 0.9}])


COMPUTE = pd.DataFrame({"model": ["A", "B", "C"], "strategy": "cot", "documents": [10, 20, 20],
                        "wall_seconds": [100.0, 40.0, 300.0]})  # 10, 2, 15 seconds per request


@pytest.fixture
def tables_dir(tmp_path):
    folder = tmp_path / "tables"
    folder.mkdir()
    benchmarks().to_csv(folder / "benchmarks.csv", index=False)
    TOKENS.to_csv(folder / "tokens.csv", index=False)
    sweep().to_csv(folder / "inference_scaling.csv", index=False)
    COMPUTE.to_csv(folder / "compute.csv", index=False)
    return folder


def points(folder, cost="generated"):
    return plan.operating_points(plan.read_tables_dir(folder), cost)


def test_operating_points_tokens_as_table1(tables_dir):
    pts = points(tables_dir).set_index(["model", "strategy", "budget"])["tokens_per_request"]
    assert pts.to_dict() == {("A", "cot", ""): 100.0, ("B", "cot", ""): 5.0, ("C", "cot", ""): 2.0,
                             ("A", "cot", "k=4"): 400.0}  # C standard generates nothing: not priced
    fwd = points(tables_dir, "forward").set_index(["model", "strategy", "budget"])["tokens_per_request"]
    # A: arc (500 + 1000)/10 = 150, mmlu (40 + 140 + 120 + 660)/8 = 120 -> 135; k=4: prompt 35 + 400
    assert fwd[("A", "cot", "")] == 135.0 and fwd[("A", "cot", "k=4")] == 435.0
    assert fwd[("C", "standard", "")] == 150.0


@pytest.mark.parametrize("requests, target, expected", [
    (1e9, 0.30, [("A", ""), ("A", "k=4"), ("B", ""), ("C", "")]),  # 2.6e19, 8.6e19, 6.1e20, 6.004e22
    (1e11, 0.30, [("B", ""), ("A", ""), ("A", "k=4"), ("C", "")]),  # 1.6e21, 2.006e21, 8.006e21, 6.4e22
    (1e11, 0.42, [("A", "k=4"), ("C", "")]),
    (1e13, 0.42, [("C", ""), ("A", "k=4")]),  # 4.6e23 vs 8.00006e23
])
def test_rank_cheapest_first(tables_dir, requests, target, expected):
    ranked = plan.rank(points(tables_dir), requests, target)
    assert list(zip(ranked["model"], ranked["budget"])) == expected
    first = ranked.iloc[0]
    n, d = MODELS[first["model"]]
    t = {("A", ""): 100, ("A", "k=4"): 400, ("B", ""): 5, ("C", ""): 2}[(first["model"], first["budget"])]
    assert first["lifetime_flops"] == pytest.approx(6 * n * d + requests * 2 * n * t)
    assert first["inference_flops"] == pytest.approx(requests * 2 * n * t)
    assert list(ranked["rank"]) == list(range(1, len(expected) + 1))


def test_measured_seconds_ranked_beside(tables_dir):
    ranked = plan.rank(points(tables_dir), 1e6, 0.30).set_index(["model", "budget"])
    assert ranked.loc[("A", ""), "lifetime_gpu_seconds"] == pytest.approx(1e7)
    assert ranked.loc[("B", ""), "seconds_per_request"] == pytest.approx(2.0)
    assert ranked["rank_by_gpu_seconds"].dropna().to_dict() == {("B", ""): 1, ("A", ""): 2, ("C", ""): 3}
    assert pd.isna(ranked.loc[("A", "k=4"), "lifetime_gpu_seconds"])  # its run was timed at k = n


def test_forward_cost_prices_log_likelihood(tables_dir):
    ranked = plan.rank(points(tables_dir, "forward"), 1e9, 0.55)
    assert list(ranked["strategy"]) == ["standard"]
    assert ranked.iloc[0]["lifetime_flops"] == pytest.approx(6e22 + 1e9 * 2e10 * 150)


def test_errors_say_what_is_wrong(tables_dir, tmp_path):
    with pytest.raises(plan.PlanError, match=r"reaches overall score 0.55: the best is 0.5000 \(C / cot\)"):
        plan.rank(points(tables_dir), 1e9, 0.55)
    with pytest.raises(plan.PlanError, match="does not exist"):
        plan.read_tables_dir(tmp_path / "nowhere")
    TOKENS.iloc[:0].to_csv(tables_dir / "tokens.csv", index=False)
    with pytest.raises(plan.PlanError, match="no token counts"):
        points(tables_dir)
    TOKENS.drop(columns="generate_requests").to_csv(tables_dir / "tokens.csv", index=False)
    with pytest.raises(plan.PlanError, match=r"tokens.csv: lacks column\(s\) generate_requests"):
        points(tables_dir)
    (tables_dir / "tokens.csv").unlink()
    with pytest.raises(plan.PlanError, match="tokens.csv: missing or empty"):
        points(tables_dir)
    with pytest.raises(plan.PlanError, match="--requests"):
        plan.rank(pd.DataFrame({"overall": [0.5]}), -1, 0.3)


GRID = {(1e9, 0.30): ("A", ""), (1e11, 0.30): ("B", ""), (1e13, 0.30): ("B", ""),
        (1e9, 0.42): ("A", "k=4"), (1e11, 0.42): ("A", "k=4"), (1e13, 0.42): ("C", "")}


def test_grid_and_fig12(tables_dir, tmp_path):
    out = tmp_path / "plan.csv"
    tables = plan.read_tables_dir(tables_dir)
    written = plan.write_plan(out, tables, [1e13, 1e9, 1e11], [0.42, 0.30, 0.55])
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == len(written) == 9
    for (r, s), (model, budget) in GRID.items():
        row = table[(table["requests"] == r) & (table["target"] == s)].iloc[0]
        assert (row["model"], row["budget"]) == (model, budget)
    unreachable = table[table["target"] == 0.55]
    assert (unreachable["model"] == "").all() and unreachable["reason"].str.contains("no operating point").all()
    png = tmp_path / "fig12_plan.png"
    fig = figures.fig12_plan({"plan": out}, png, {})
    assert png.stat().st_size > 0 and png.with_suffix(".pdf").stat().st_size > 0
    ax = fig.axes[0]
    mesh = [c for c in ax.collections if c.get_gid() == "regions"][0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    cells = mesh.get_array().reshape(3, 3)  # rows: S = .30, .42, .55; columns: R = 1e9, 1e11, 1e13
    for i, s in enumerate((0.30, 0.42)):
        for j, r in enumerate((1e9, 1e11, 1e13)):
            model, budget = GRID[(r, s)]
            assert legend[int(cells[i, j])] == f"{model} / cot" + (f" ({budget})" if budget else "")
    assert (cells[2] == -1).all() and legend[-1] == "no evaluated point reaches S"
    assert ax.get_xscale() == "log"


def test_fig12_without_plan_says_so(tmp_path):
    empty, header = tmp_path / "empty.csv", tmp_path / "header.csv"
    empty.write_text("")
    header.write_text(",".join(plan.GRID_COLUMNS) + "\n")
    for i, given in enumerate(({}, {"plan": empty}, {"plan": header})):
        png = tmp_path / str(i) / "fig12.png"
        fig = figures.fig12_plan(given, png, {})
        assert png.stat().st_size > 0
        assert any("no plan grid" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_pareto_frontier_by_hand():
    pts = pd.DataFrame({"x": [1, 2, 2, 3, 4, 5], "y": [0.1, 0.3, 0.2, 0.25, 0.3, 0.4]})
    front = plan.pareto_frontier(pts, "x", "y")
    assert list(zip(front["x"], front["y"])) == [(1, 0.1), (2, 0.3), (5, 0.4)]


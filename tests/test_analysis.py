"""Analysis: FLOPs, family fits, train-equivalent FLOPs, IsoFLOP, crossover, Table I, PCA.

Unit tests on small hand-made frames, then checks on the paper's published data (../shared/paper) against values
derived by hand from the source files and against the numbers the seed repository published.
"""

import csv
import gzip
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cotscale import fits, flops, pca, published, table1

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper"
needs_paper = pytest.mark.skipif(not PAPER.is_dir(), reason="../shared/paper not present")
BENCHMARKS = list(pca.BENCHMARKS)


# ---------------------------------------------------------------- unit tests (no data needed)

def test_train_and_inference_flops():
    assert flops.train_flops(1e9, 1e12) == 6e21
    assert flops.lifetime_cost(6e21, 1e9, 100, 10) == 6e21 + 2e9 * 100 * 10


def test_crossover_by_hand_and_reasons():
    rows = pd.DataFrame({
        "model": ["gain", "no_gain", "no_extra", "no_tef"], "family": "f", "N": 1e9, "train_flops": 6e20,
        "tef": [1e21, 5e20, 1e21, np.nan], "tok_std": [10.0, 10.0, 50.0, 10.0], "tok_cot": [50.0, 50.0, 40.0, 50.0],
        "token_unit": "tokens"})
    out = flops.crossover(rows).set_index("model")
    r_star = (1e21 - 6e20) / (2 * 1e9 * (50 - 10))
    assert out.loc["gain", "crossover_requests"] == pytest.approx(r_star)
    assert out.loc["gain", "crossover_cot_tokens"] == pytest.approx(r_star * 50)
    # at R* both lifetime costs are equal
    assert flops.lifetime_cost(6e20, 1e9, 50, r_star) == pytest.approx(flops.lifetime_cost(1e21, 1e9, 10, r_star))
    assert out.loc["gain", "reason"] == ""
    for model, word in [("no_gain", "TEF <= C"), ("no_extra", "tok_cot <= tok_std"), ("no_tef", "no train")]:
        assert math.isnan(out.loc[model, "crossover_requests"]) and word in out.loc[model, "reason"]


def _scores(family, flops_, overall, strategy="b"):
    n = len(flops_)
    return pd.DataFrame({"model": [f"{family}{i}" for i in range(n)], "family": family, "N": 1.0,
                         "D": np.array(flops_) / 6, "train_flops": flops_, "overall": overall, "strategy": strategy})


def test_regression_matches_polyfit_and_skips_singletons(caplog):
    x = [1e20, 1e21, 1e22, 1e23]
    y = [0.30, 0.33, 0.35, 0.40]
    scores = pd.concat([_scores("fam", x, y), _scores("solo", [1e21], [0.5])])
    reg, draws = fits.regression(scores, n_boot=500, seed=1)
    assert list(reg["family"]) == ["fam"] and "solo" in caplog.text
    b, a = np.polyfit(np.log(x), y, 1)
    row = reg.iloc[0]
    assert (row.a, row.b) == (pytest.approx(a), pytest.approx(b))
    assert row.a_ci_low <= row.a <= row.a_ci_high and row.b_ci_low <= row.b <= row.b_ci_high
    again, _ = fits.regression(scores, n_boot=500, seed=1)
    pd.testing.assert_frame_equal(reg, again)
    assert len(draws) <= 500


def test_bootstrap_drops_resamples_of_one_model_even_where_the_mean_of_its_log_flops_rounds():
    """The OLS slope of any resample with two distinct C is a weighted mean of the pairwise slopes, so every draw
    lies between the smallest and largest pairwise slope. ln(2.9026e12), repeated three times, has a mean that
    differs from it in the last bit; such a resample has no slope and must be dropped, not give one of ~0/0."""
    x = [121090867200.0, 544466534400.0, 2902641868800.0]  # the demo family's train FLOPs that exposed it
    r = np.full(3, np.log(x[2]))
    assert ((r - r.mean()) ** 2).sum() > 0  # the rounding the test needs
    y = [0.380, 0.609, 0.800]
    pair = [(y[j] - y[i]) / (np.log(x[j]) - np.log(x[i])) for i in range(3) for j in range(i + 1, 3)]
    draws = fits.bootstrap_draws(_scores("fam", x, y), n_boot=2000, seed=1234)
    assert len(draws) < 2000  # the resamples of one model are gone (each of 3 is one in 9)
    assert draws["b"].between(min(pair) - 1e-12, max(pair) + 1e-12).all(), draws["b"].describe()


def test_pca_sign_convention_and_variance():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(40, 1))
    data = pd.DataFrame(-(g @ rng.uniform(0.5, 1, (1, 4))) + 0.1 * rng.normal(size=(40, 4)), columns=list("abcd"))
    out = pca.pca_loadings(data, columns=list("abcd")).set_index("benchmark")
    load = out.loc[list("abcd"), ["pc_1", "pc_2", "pc_3"]].to_numpy()
    for k in range(3):
        assert load[np.abs(load[:, k]).argmax(), k] > 0
    cov = np.cov(data.to_numpy(), rowvar=False)
    evr = out.loc["explained_variance_ratio", ["pc_1", "pc_2", "pc_3"]].to_numpy(dtype=float)
    # squared loadings of a component sum to its variance
    np.testing.assert_allclose((load**2).sum(axis=0) / np.trace(cov), evr)
    assert (np.diff(evr) <= 0).all()


def tokens_rows(rows) -> pd.DataFrame:
    """tokens.csv-shaped rows from (strategy, benchmark, task, requests, generate_requests, generated_tokens)."""
    cols = ["strategy", "benchmark", "task", "requests", "generate_requests", "generated_tokens"]
    df = pd.DataFrame(rows, columns=cols).assign(model="m", family="f", N=1.0, D=1.0, token_unit="tokens")
    return df.assign(documents=df["generate_requests"], prompt_tokens=0)


def test_table1_pools_subtasks_and_averages_benchmarks():
    rows = [("s", "mmlu", "mmlu_a", 1, 1, 10), ("s", "mmlu", "mmlu_b", 3, 3, 6), ("s", "arc", "arc", 5, 5, 40),
            ("c", "mmlu", "mmlu_a", 4, 4, 80), ("c", "arc", "arc", 5, 5, 200), ("c", "gsm8k", "gsm8k", 5, 5, 495)]
    out = table1.table1(tokens_rows(rows), "s", "c").set_index("model")
    # mmlu pooled: (10 + 6)/4 = 4; mean over {mmlu, arc} (gsm8k only has CoT): (4 + 8)/2 = 6 vs (20 + 40)/2 = 30
    assert (out.loc["m", "baseline_tokens"], out.loc["m", "cot_tokens"], out.loc["m", "n_benchmarks"]) == (6, 30, 2)
    assert out.loc["Overall", "ratio"] == 5
    tex = table1.to_latex(out.reset_index())
    assert r"\toprule" in tex and r"\bottomrule" in tex and "Overall & 6.0 & 30.0 & 5.00" in tex
    assert "| m | 6.0 | 30.0 | 5.00 |" in table1.to_markdown(out.reset_index())


def test_table1_pools_subtasks_with_different_choice_counts_by_generate_requests():
    """A hybrid document is 1 generate request + one log-likelihood request per choice: a 4-choice subtask has 5
    requests per document, a 2-choice one 3. Pooling must weigh subtasks by generate requests, not by requests."""
    rows = [("h", "xwinograd", "xwinograd_en", 10 * 3, 10, 10 * 30),   # 2 choices, 30 tokens per rationale
            ("h", "xwinograd", "xwinograd_fr", 30 * 3, 30, 30 * 10),   # 2 choices, 10 tokens per rationale
            ("h", "mmlu", "mmlu_a", 20 * 5, 20, 20 * 50),              # 4 choices
            ("h", "mmlu", "mmlu_b", 10 * 3, 10, 10 * 20),              # 2 choices
            ("c", "xwinograd", "xwinograd_en", 10 * 3, 10, 10 * 60),
            ("c", "mmlu", "mmlu_a", 20 * 5, 20, 20 * 100)]
    out = table1.table1(tokens_rows(rows), "h", "c").set_index("model")
    # by hand: xwinograd (300 + 300)/(10 + 30) = 15; mmlu (1000 + 200)/(20 + 10) = 40 -> (15 + 40)/2 = 27.5
    # (request-weighting would give mmlu (100·50 + 30·20)/130 = 43.08, and the same here only by accident)
    assert out.loc["m", "baseline_tokens"] == pytest.approx(27.5)
    assert out.loc["m", "cot_tokens"] == pytest.approx((60 + 100) / 2)
    bench = table1.benchmark_tokens(tokens_rows(rows)).set_index(["strategy", "benchmark"])
    assert bench.loc[("h", "mmlu"), "mean_generated_tokens"] == pytest.approx(40)
    # a benchmark without generate requests (log-likelihood) generated nothing: 0 per request, not NaN
    llh = tokens_rows([("s", "arc", "arc", 40, 0, 0)])
    assert table1.benchmark_tokens(llh)["mean_generated_tokens"].tolist() == [0.0]


def test_no_tef_where_the_family_slope_is_not_positive():
    x = [1e20, 1e21, 1e22, 1e23]
    down = _scores("down", x, [0.40, 0.37, 0.35, 0.30])  # score falls with compute: b < 0
    flat = _scores("flat", x, [0.30, 0.45, 0.28, 0.46])  # b > 0 by a hair, its bootstrap interval spans 0
    up = _scores("up", x, [0.30, 0.33, 0.35, 0.40])
    base = pd.concat([down, flat, up])
    assert np.polyfit(np.log(x), [0.40, 0.37, 0.35, 0.30], 1)[0] < 0 < np.polyfit(np.log(x), flat["overall"], 1)[0]
    reg, draws = fits.regression(base, n_boot=500, seed=1)
    r = reg.set_index("family")
    assert r.loc["flat", "b_ci_low"] < 0 < r.loc["flat", "b_ci_high"] and r.loc["up", "b_ci_low"] > 0
    cot = base.assign(overall=base["overall"] + 0.01)
    tef = fits.train_equivalent(base, cot, reg, draws).set_index("model")
    assert np.isnan(tef.loc["down0", "tef"]) and "<= 0" in tef.loc["down0", "reason"]
    assert np.isnan(tef.loc["flat1", ["tef", "tef_ratio", "tef_ci_low", "tef_ci_high"]].astype(float)).all()
    assert "interval of the family slope" in tef.loc["flat1", "reason"] and "contains 0" in tef.loc["flat1", "reason"]
    b, a = np.polyfit(np.log(x), up["overall"], 1)
    assert tef.loc["up2", "tef"] == pytest.approx(math.exp((0.35 + 0.01 - a) / b))
    assert tef.loc["up2", "reason"] == ""
    # the crossover says why it has no TEF
    cross = flops.crossover(tef.reset_index().assign(tok_std=10.0, tok_cot=50.0)).set_index("model")
    assert cross.loc["down0", "reason"].startswith("no train-equivalent FLOPs: family slope b =")
    assert np.isnan(cross.loc["down0", "crossover_requests"])


# ---------------------------------------------------------------- the paper's published data

METRIC = {b: "acc,none" for b in BENCHMARKS} | {"gsm8k": "exact_match,flexible-extract"}


def overall(results: dict, roots: dict[str, str], metric: dict[str, str]) -> float:
    """Unweighted mean of the 7 benchmark scores; a group without its own metric = mean of its subtasks."""
    r, vals = results["results"], []
    for bench, root in roots.items():
        key = metric[bench]
        if key in r[root]:
            vals.append(r[root][key])
        else:  # the experiment-1 free-form CoT groups (mmlu_flan_cot_zeroshot, xwinograd_cot) carry no metric
            vals.append(np.mean([v[key] for t, v in r.items() if t.startswith(root + "_") and key in v]))
    return float(np.mean(vals))


def tables_from_evals(evals: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A stand-in for the aggregation step: benchmarks.csv- and tokens.csv-shaped frames from ingested evals."""
    rows, tokens = {}, []
    for f in sorted(evals.glob("*/*/*/results.json")):
        res = json.loads(f.read_text())
        cs, (model, strategy, bench) = res["cotscale"], f.parts[-4:-1]
        row = rows.setdefault((model, strategy), {"model": model, "family": cs["family"], "N": cs["N"],
                                                  "D": cs["D"], "strategy": strategy})
        key = "exact_match,flexible-extract" if strategy == "cot_generate" else METRIC[bench]
        row[bench] = overall(res, {bench: cs["lm_eval_task"]}, {bench: key})
    for f in sorted(evals.glob("*/*/*/usage.jsonl.gz")):
        cs = json.loads((f.parent / "results.json").read_text())["cotscale"]
        model, strategy, bench = f.parts[-4:-1]
        use = pd.read_json(io.StringIO(gzip.decompress(f.read_bytes()).decode()), lines=True)
        for task, g in use.groupby("task"):
            tokens.append({"model": model, "family": cs["family"], "N": cs["N"], "D": cs["D"], "strategy": strategy,
                           "benchmark": bench, "task": task, "requests": len(g), "documents": g["doc_id"].nunique(),
                           "generate_requests": int((g["kind"] == "generate").sum()),
                           "prompt_tokens": int(g["prompt_tokens"].sum()),
                           "generated_tokens": int(g["generated_tokens"].sum()),
                           "token_unit": g["token_unit"].iloc[0]})
    bench = pd.DataFrame(rows.values())
    bench["overall"] = bench[BENCHMARKS].mean(axis=1, skipna=False)
    return bench, pd.DataFrame(tokens)


@pytest.fixture(scope="module")
def analysis(tmp_path_factory):
    if not PAPER.is_dir():
        pytest.skip("../shared/paper not present")
    root = tmp_path_factory.mktemp("analysis")
    published.ingest(PAPER, root)
    bench, tokens = tables_from_evals(root / "evals")
    bench.to_csv(root / "benchmarks.csv", index=False)
    tokens.to_csv(root / "tokens.csv", index=False)
    out = fits.run_pair_analysis([root / "benchmarks.csv"], [root / "tokens.csv"], root / "tables", "hybrid",
                                 "hybrid_cot", n_boot=1000, seed=0)
    bench[bench["strategy"] == "standard"].to_csv(root / "standard.csv", index=False)
    out["pca_loadings_ours"] = fits.run_pca(root / "standard.csv", root / "tables")
    out.update(fits.run_pca_ruan(PAPER / "ruan.csv", root / "tables"))
    return root, out


def source_overall(folder: str) -> dict[str, float]:
    """Overall per seed model name (file stem) straight from the published JSONs."""
    roots = {b: b for b in BENCHMARKS}
    return {f.stem: overall(json.loads(f.read_text()), roots, METRIC)
            for f in sorted((PAPER / folder).glob("*.json"))}


def seed_models() -> pd.DataFrame:
    df = pd.read_csv(PAPER / "models.csv", skipinitialspace=True, index_col=0)
    df["stem"] = np.where(df["model"].str.startswith("OLMo"), df["model"] + "_" + df["checkpoint"], df["model"])
    return df.set_index("stem")


@needs_paper
@pytest.mark.parametrize("family", ["olmo", "pythia"])
def test_family_regression_matches_polyfit(analysis, family):
    _, out = analysis
    std, cot, models = source_overall("experiment_2/standard"), source_overall("experiment_2/cot"), seed_models()
    stems = [s for s in std if models.loc[s, "family"].strip() == family]
    x = np.log([6 * models.loc[s, "N"] * models.loc[s, "D"] for s in stems])
    b, a = np.polyfit(x, [std[s] for s in stems], 1)
    row = out["regression"].set_index("family").loc[family]
    assert (row.a, row.b, row.n_models) == (pytest.approx(a, abs=1e-12), pytest.approx(b, abs=1e-12), len(stems))
    # TEF of one model by hand
    stem = stems[0]
    tef = out["train_equivalent"].set_index("model")
    key = stem.replace("_", "@") if family == "olmo" else stem
    assert tef.loc[key, "tef"] == pytest.approx(math.exp((cot[stem] - a) / b), rel=1e-9)
    assert tef.loc[key, "overall_baseline"] == pytest.approx(std[stem], abs=1e-15)


@needs_paper
def test_regression_reproduces_seed_published_coefficients(analysis):
    # results/regression.csv of AkshayM21/obs-scaling-inference-opts (commit ddce5cb8), the seed's own output
    seed = {"olmo": (0.011406747677969176, 0.005990928357980378),
            "pythia": (-0.07979128498851457, 0.007826706772410576)}
    reg = analysis[1]["regression"].set_index("family")
    for family, (a, b) in seed.items():
        assert (reg.loc[family, "a"], reg.loc[family, "b"]) == (pytest.approx(a, rel=1e-9), pytest.approx(b, rel=1e-9))
    assert reg.loc["olmo", "ci_method"].startswith("95% percentile bootstrap")
    assert reg.loc["olmo", "b_ci_low"] < reg.loc["olmo", "b"] < reg.loc["olmo", "b_ci_high"]
    assert np.isnan(reg.loc["pythia", "b_ci_low"]) and "llama" not in reg.index  # 2 models; 1 model


@needs_paper
def test_overall_matches_seed_flattening():
    """The seed's experiment_2/{standard,cot}.csv give the same Overall as the JSONs (column = task_metric)."""
    cols = {b: f"{b}_{METRIC[b].replace(',', '_')}" for b in BENCHMARKS}
    for kind in ("standard", "cot"):
        flat = pd.read_csv(PAPER / f"experiment_2/{kind}.csv")
        stems = np.where(flat["model"].str.startswith("OLMo"), flat["model"] + "_" + flat["checkpoint"], flat["model"])
        ours = source_overall(f"experiment_2/{kind}")
        for stem, value in zip(stems, flat[list(cols.values())].mean(axis=1)):
            assert ours[stem] == pytest.approx(value, abs=1e-15)


@needs_paper
def test_table1_and_crossover_match_seed_token_table(analysis):
    _, out = analysis
    lines = (PAPER / "toks_generated.csv").read_text().splitlines()
    seed = {(r["model"], r["task"]): r for r in csv.DictReader(lines)}
    tab = out["table1_tokens"].set_index("model")
    row = tab.loc["OLMo-1B-0724-hf@main"]
    ref = seed[("OLMo-1B-0724-hf_main", "ALL")]
    assert row.baseline_tokens == pytest.approx(float(ref["reg_tokens"]), rel=1e-12)
    assert row.cot_tokens == pytest.approx(float(ref["cot_tokens"]), rel=1e-12)
    assert (row.n_benchmarks, row.token_unit) == (6, "words")  # the seed kept no gsm8k rationales
    all_ = seed[("ALL", "ALL")]
    assert tab.loc["Overall", "baseline_tokens"] == pytest.approx(float(all_["reg_tokens"]), rel=1e-12)
    assert tab.loc["Overall", "ratio"] == pytest.approx(float(all_["token_ratio"]), rel=1e-12)
    # crossover of OLMo-1B main by hand: R* = (TEF - C) / (2N(tok_cot - tok_std))
    tef = out["train_equivalent"].set_index("model").loc["OLMo-1B-0724-hf@main", "tef"]
    c = 6 * 1e9 * 3.05e12
    r_star = (tef - c) / (2 * 1e9 * (float(ref["cot_tokens"]) - float(ref["reg_tokens"])))
    cross = out["crossover"].set_index("model")
    assert cross.loc["OLMo-1B-0724-hf@main", "crossover_requests"] == pytest.approx(r_star, rel=1e-9)
    assert "TEF <= C" in cross.loc["pythia-1b-deduped", "reason"]
    assert "no train-equivalent" in cross.loc["Llama-3.2-1B", "reason"]


@needs_paper
def test_isoflop_fits_own_scores_and_reports_seed_variant(analysis):
    root, out = analysis
    iso = out["isoflop_fit"].set_index("prompting")
    bench = pd.read_csv(root / "benchmarks.csv")
    tab = out["table1_tokens"].set_index("model")
    cot = bench[bench["strategy"] == "hybrid_cot"].set_index("model").loc[tab.index[:-1]]
    X = np.column_stack([np.log(6 * cot["N"] * cot["D"]), tab["cot_tokens"].iloc[:-1], np.ones(len(cot))])
    coef, *_ = np.linalg.lstsq(X, cot["overall"].to_numpy(), rcond=None)
    np.testing.assert_allclose(iso.loc["cot", ["alpha", "beta", "delta"]].to_numpy(dtype=float), coef, rtol=1e-9)
    assert iso.loc["seed_bug", "score_strategy"] == "hybrid" and iso.loc["cot", "n"] == 8
    assert iso.loc["seed_bug", "d_alpha"] == pytest.approx(iso.loc["seed_bug", "alpha"] - iso.loc["cot", "alpha"])


@needs_paper
def test_pca_reproduces_seed_loadings(analysis):
    root, out = analysis
    # benchmark_loadings.csv and results/pca/ruan_loadings.csv of the seed repository (GSM8K, pc_1 and pc_2)
    ours = out["pca_loadings_ours"].set_index("benchmark")
    assert ours.loc["gsm8k", "pc_1"] == pytest.approx(0.28116258985530374, rel=1e-9)
    assert ours.loc["gsm8k", "pc_2"] == pytest.approx(-0.051131969945870194, rel=1e-9)
    assert ours["n_rows"].iloc[0] == 26
    ruan = out["pca_loadings_ruan_no_humaneval"].set_index("benchmark")
    assert ruan.loc["gsm8k", "pc_1"] == pytest.approx(0.25019034471172835, rel=1e-9)
    assert ruan["n_rows"].iloc[0] == 129
    with_he = out["pca_loadings_ruan"].set_index("benchmark")
    assert "humaneval" in with_he.index and with_he["n_rows"].iloc[0] == 124
    for name in ("pca_loadings_ours", "pca_loadings_ruan", "pca_loadings_ruan_no_humaneval", "regression",
                 "train_equivalent", "isoflop_fit", "crossover", "table1_tokens"):
        assert (root / "tables" / f"{name}.csv").is_file()
    assert (root / "tables/table1_tokens.tex").read_text().startswith(r"\begin{tabular}")

"""Budget-sweep estimators and inference_scaling rows, against brute-force enumeration of all k-subsets, the
hypergeometric distribution (scipy) and hand-computed tables; fig11 on a hand-made sweep."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hypergeom

from cotscale import figures, scaling

# ---------------------------------------------------------------- brute-force oracles (no code under test)


def brute_pass(n: int, c: int, k: int) -> float:
    """Fraction of the k-subsets of n samples (the first c correct) that hold a correct sample."""
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(i < c for i in s) for s in subsets) / len(subsets)


def brute_vote(answers, correct, k, weights=None) -> float:
    """Mean over all k-subsets of the (weighted) vote's accuracy, a tie's credit split evenly among the tied."""
    ok = {a: bool(c) for a, c in zip(answers, correct)}
    total = 0.0
    subsets = list(itertools.combinations(range(len(answers)), k))
    for s in subsets:
        votes = Counter()
        for i in s:
            votes[answers[i]] += 1.0 if weights is None else weights[i]
        top = max(votes.values())
        winners = [a for a, v in votes.items() if math.isclose(v, top, rel_tol=1e-12)]
        total += sum(ok[a] for a in winners) / len(winners)
    return total / len(subsets)


# ---------------------------------------------------------------- one document


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert scaling.pass_at_k(n, c, k) == pytest.approx(brute_pass(n, c, k), abs=1e-12)


def test_pass_at_k_rejects_k_above_n():
    with pytest.raises(ValueError, match="0 < k <= n"):
        scaling.pass_at_k(4, 1, 5)


def test_maj_at_k_matches_enumeration_on_random_small_documents():
    rng = np.random.default_rng(7)
    for _ in range(300):
        n = int(rng.integers(1, 10))
        answers = [f"a{x}" for x in rng.integers(0, 4, n)]
        right = {f"a{x}" for x in range(4) if rng.random() < 0.35}  # zero, one or several correct answers
        correct = [a in right for a in answers]
        ks = list(range(1, n + 1))
        expected = [brute_vote(answers, correct, k) for k in ks]
        np.testing.assert_allclose(scaling.maj_at_k(answers, correct, ks), expected, atol=1e-12)


def test_maj_at_k_for_real_n_against_the_hypergeometric():
    """Two answers: the correct one (c of n votes) wins when it draws more than half the k votes, half on a tie."""
    n, c = 64, 37
    answers = ["right"] * c + ["wrong"] * (n - c)
    ks = [1, 2, 3, 4, 8, 15, 16, 32, 63, 64]
    got = scaling.maj_at_k(answers, [a == "right" for a in answers], ks)
    for k, value in zip(ks, got):
        votes = hypergeom(n, c, k)  # the correct answer's votes among k drawn without replacement
        expected = votes.sf(k // 2) + (0.5 * votes.pmf(k // 2) if k % 2 == 0 else 0.0)
        assert value == pytest.approx(expected, abs=1e-10)


def test_maj_at_k_many_answers_real_n_against_monte_carlo():
    """n = 48 votes over 12 answers: the exact value lies within 4 standard errors of 200k random subsets."""
    rng = np.random.default_rng(3)
    answers = list(rng.choice(12, size=48, p=np.r_[0.3, np.full(11, 0.7 / 11)]))
    correct = [a == 0 for a in answers]
    k = 9
    exact = scaling.maj_at_k(answers, correct, [k])[0]
    arr = np.asarray(answers)
    draws = np.argsort(rng.random((200_000, 48)), axis=1)[:, :k]
    picked = arr[draws]
    counts = np.stack([(picked == a).sum(axis=1) for a in range(12)], axis=1)
    top = counts == counts.max(axis=1, keepdims=True)
    values = top[:, 0] / top.sum(axis=1)
    assert exact == pytest.approx(values.mean(), abs=4 * values.std() / math.sqrt(len(values)))


def test_maj_at_k_refuses_inconsistent_correctness():
    with pytest.raises(scaling.ScalingError, match="both correct and incorrect"):
        scaling.maj_at_k(["7", "7", "8"], [True, False, False], [2])


def test_weighted_maj_at_k_exact_matches_enumeration_and_uses_the_weights():
    rng = np.random.default_rng(11)
    for _ in range(50):
        n = int(rng.integers(1, 8))
        answers = [int(x) for x in rng.integers(0, 3, n)]
        correct = [a == 0 for a in answers]
        logprobs = list(rng.normal(-30, 5, n))
        weights = np.exp(np.array(logprobs) - max(logprobs))
        ks = list(range(1, n + 1))
        values, mc, exact = scaling.weighted_maj_at_k(answers, correct, logprobs, ks, np.random.default_rng(0))
        assert exact.all() and (mc == 0).all()
        np.testing.assert_allclose(values, [brute_vote(answers, correct, k, weights) for k in ks], atol=1e-12)
    # two likely votes for a wrong answer lose to one much likelier correct one; the plain vote does not
    answers, correct, logprobs = ["b", "b", "a"], [False, False, True], [-50.0, -50.0, -5.0]
    assert scaling.weighted_maj_at_k(answers, correct, logprobs, [3], np.random.default_rng(0))[0][0] == 1.0
    assert scaling.maj_at_k(answers, correct, [3])[0] == 0.0


def test_weighted_maj_at_k_monte_carlo_beyond_the_exact_limit(monkeypatch):
    rng = np.random.default_rng(5)
    n, ks = 12, [1, 5, 7, 12]  # C(12, 5) = 792 and C(12, 7) = 792 subsets; C(12, 1) = 12, C(12, 12) = 1
    answers = [int(x) for x in rng.integers(0, 3, n)]
    correct = [a == 1 for a in answers]
    logprobs = list(rng.normal(-20, 2, n))
    weights = np.exp(np.array(logprobs) - max(logprobs))
    expected = [brute_vote(answers, correct, k, weights) for k in ks]
    monkeypatch.setattr(scaling, "EXACT_SUBSETS", 100)
    values, mc, exact = scaling.weighted_maj_at_k(answers, correct, logprobs, ks, np.random.default_rng(1))
    assert exact.tolist() == [True, False, False, True]
    assert values[[0, 3]] == pytest.approx([expected[0], expected[3]], abs=1e-12)
    for i in (1, 2):
        assert 0 < mc[i] < 0.05 and abs(values[i] - expected[i]) < 4 * mc[i]
    again = scaling.weighted_maj_at_k(answers, correct, logprobs, ks, np.random.default_rng(1))
    assert (again[0] == values).all()  # seeded


# ---------------------------------------------------------------- tables

RUN = {"model": "m", "revision": "main", "family": "f", "N": 1e9, "D": 2e10, "strategy": "sc"}


def sample_table() -> pd.DataFrame:
    """gsm8k: 2 documents × 4 samples; arc_challenge: 2 documents × 4 samples (choice indices)."""
    rows = []
    docs = {("gsm8k", 0): (["5", "5", "6", "7"], "5", [10, 20, 30, 40]),
            ("gsm8k", 1): (["1", "2", "2", "2"], "1", [5, 5, 5, 5]),
            ("arc_challenge", 0): ([0, 1, 1, 2], 1, [8, 8, 8, 8]),
            ("arc_challenge", 1): ([3, 3, 3, 0], 0, [4, 6, 8, 10])}
    for (bench, doc), (answers, gold, toks) in docs.items():
        for i, (a, t) in enumerate(zip(answers, toks)):
            rows.append({**RUN, "benchmark": bench, "task": bench, "doc_id": doc, "sample": i, "answer": a,
                         "correct": a == gold, "generated_tokens": t, "logprob": -float(t)})
    return pd.DataFrame(rows)


def test_sample_sweep_rows_by_hand():
    out = scaling.sample_sweep(sample_table(), [1, 2, 4]).set_index(["benchmark", "metric", "budget"])
    # gsm8k doc 0: 2 of 4 votes right; k=1: 1/2. doc 1: 1 of 4; k=1: 1/4. Mean 3/8.
    assert out.loc[("gsm8k", "maj@k", 1), "score"] == pytest.approx(3 / 8)
    # k=4: doc 0 "5" wins outright (2 vs 1, 1); doc 1 "2" wins -> 1/2
    assert out.loc[("gsm8k", "maj@k", 4), "score"] == pytest.approx(1 / 2)
    # pass@2: doc 0 1 - C(2,2)/C(4,2) = 5/6; doc 1 1 - C(3,2)/C(4,2) = 1/2
    assert out.loc[("gsm8k", "pass@k", 2), "score"] == pytest.approx((5 / 6 + 1 / 2) / 2)
    assert ("arc_challenge", "pass@k", 2) not in out.index
    # arc k=2: doc 0 answers 0,1,1,2 gold 1: pairs {01,01,02,11,12,12}: credit 1/2,1/2,0,1,1/2,1/2 = 3/6
    #          doc 1 answers 3,3,3,0 gold 0: pairs with the 0: 3 of 6, each a tie: 1/2 -> 1.5/6
    assert out.loc[("arc_challenge", "maj@k", 2), "score"] == pytest.approx((3 / 6 + 1.5 / 6) / 2)
    # tokens per request at k: k × mean per-sample tokens; gsm8k means 25 and 5 -> 15 per sample
    assert out.loc[("gsm8k", "maj@k", 4), "tokens_per_request"] == pytest.approx(60)
    assert out.loc[("arc_challenge", "weighted_maj@k", 2), "tokens_per_request"] == pytest.approx(2 * 7.5)
    # weighted k=4, arc doc 1: weights exp(-4), exp(-6), exp(-8) on 3 vs exp(-10) on 0 -> 3 wins -> 0; doc 0:
    # 0: e^-8, 1: 2e^-8, 2: e^-8 -> 1 wins -> 1
    assert out.loc[("arc_challenge", "weighted_maj@k", 4), "score"] == pytest.approx(0.5)
    row = out.loc[("gsm8k", "maj@k", 1)]
    assert row["score_stderr"] == pytest.approx(np.std([0.5, 0.25], ddof=1) / math.sqrt(2))
    # intervals: the bootstrap over documents (cotscale.uncertainty; tests/test_uncertainty.py checks it against
    # scipy), never outside [0, 1] as the Wald interval was
    table = scaling.inference_scaling(scaling.sample_sweep(sample_table(), [1, 2, 4]),
                                      benchmarks=("arc_challenge", "gsm8k"))
    assert ((table["ci_low"] >= 0) & (table["ci_low"] <= table["score"]) & (table["score"] <= table["ci_high"])
            & (table["ci_high"] <= 1)).all()
    assert table["ci_method"].str.contains("bootstrap").all()


def test_sample_sweep_needs_n_samples_per_document():
    table = sample_table()
    with pytest.raises(scaling.ScalingError, match=r"n >= 8"):
        scaling.sample_sweep(table, [8])
    with pytest.raises(scaling.ScalingError, match=r"same number"):
        scaling.sample_sweep(table.iloc[1:], [2])
    with pytest.raises(scaling.ScalingError, match="lacks column"):
        scaling.sample_sweep(table.drop(columns="correct"), [2])


def test_length_sweep_and_inference_scaling_overall():
    scored = pd.DataFrame([
        {**RUN, "strategy": "greedy", "benchmark": b, "task": b, "doc_id": d, "budget": budget,
         "correct": ok, "generated_tokens": t}
        for b, d, budget, ok, t in [("gsm8k", 0, 32, False, 32), ("gsm8k", 1, 32, True, 20),
                                    ("gsm8k", 0, 64, True, 50), ("gsm8k", 1, 64, True, 20),
                                    ("arc_challenge", 0, 32, True, 32), ("arc_challenge", 0, 64, True, 64)]])
    rows = scaling.length_sweep(scored)
    table = scaling.inference_scaling(rows, benchmarks=("arc_challenge", "gsm8k")).set_index(
        ["budget", "benchmark"])
    assert table.loc[(32, "gsm8k"), "score"] == 0.5 and table.loc[(32, "gsm8k"), "tokens_per_request"] == 26
    overall = table.loc[(32, "overall")]
    assert overall["score"] == pytest.approx((0.5 + 1.0) / 2)
    assert overall["tokens_per_request"] == pytest.approx((26 + 32) / 2)  # mean over benchmarks (Table I)
    assert overall["inference_flops_per_request"] == pytest.approx(2 * 1e9 * 29)
    assert overall["train_flops"] == pytest.approx(6 * 1e9 * 2e10)
    assert table.loc[(64, "overall"), "score"] == 1.0 and table.loc[(64, "overall"), "budget_kind"] == "max_gen_toks"
    assert list(scaling.inference_scaling(rows).columns) == scaling.COLUMNS


def test_inference_scaling_overall_needs_every_benchmark(caplog):
    rows = scaling.sample_sweep(sample_table(), [1, 2])
    table = scaling.inference_scaling(rows, benchmarks=("arc_challenge", "gsm8k"))
    overall = table[table["benchmark"] == "overall"]
    assert set(overall["metric"]) == {"maj@k", "weighted_maj@k"}  # pass@k exists for gsm8k only
    arc = table[(table["benchmark"] == "arc_challenge") & (table["metric"] == "maj@k")].set_index("budget")
    gsm = table[(table["benchmark"] == "gsm8k") & (table["metric"] == "maj@k")].set_index("budget")
    got = overall[overall["metric"] == "maj@k"].set_index("budget")["score"]
    assert got.to_dict() == pytest.approx(((arc["score"] + gsm["score"]) / 2).to_dict())
    seven = scaling.inference_scaling(rows)  # the seven benchmarks: five missing
    assert (seven["benchmark"] != "overall").all() and "no score for hellaswag" in caplog.text


# ---------------------------------------------------------------- fig11


def test_fig11_draws_sweeps_points_and_pareto_frontier(tmp_path):
    sweep = pd.DataFrame([
        {**RUN, "model": m, "N": n, "D": 1e11, "strategy": "sc", "budget_kind": "k", "budget": k,
         "benchmark": "overall", "metric": "maj@k", "estimator": "exact", "documents": 10, "score": s,
         "score_stderr": 0.01, "mc_stderr": 0.0, "ci_low": s - 0.02, "ci_high": s + 0.02,
         "tokens_per_request": t, "inference_flops_per_request": 2 * n * t, "train_flops": 6 * n * 1e11,
         "n_benchmarks": 7}
        for m, n, k, s, t in [("small", 1e8, 1, 0.30, 10), ("small", 1e8, 4, 0.36, 40), ("small", 1e8, 16, 0.37, 160),
                              ("big", 1e9, 1, 0.35, 10), ("big", 1e9, 4, 0.45, 40)]])
    bench = pd.DataFrame([{**RUN, "model": "big", "N": 1e9, "D": 1e11, "strategy": "greedy", "overall": 0.33}])
    tokens = pd.DataFrame([{**RUN, "model": "big", "N": 1e9, "D": 1e11, "strategy": "greedy", "benchmark": "arc",
                            "task": "arc", "generate_requests": 10, "generated_tokens": 200, "documents": 10,
                            "prompt_tokens": 500, "token_unit": "tokens"}])
    paths = {}
    for name, frame in (("inference_scaling", sweep), ("benchmarks", bench), ("tokens", tokens)):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    png = tmp_path / "fig11_inference_scaling.png"
    fig = figures.fig11_inference_scaling(paths, png, {"models": {}})
    assert png.stat().st_size > 0 and png.with_suffix(".pdf").stat().st_size > 0
    lines = {a.get_gid(): a for ax in fig.axes for a in ax.get_lines() if a.get_gid()}
    assert list(lines["sweep:small/sc"].get_xdata()) == pytest.approx([2e9, 8e9, 3.2e10])
    points = sorted(zip(lines["points"].get_xdata(), lines["points"].get_ydata()))
    assert len(points) == 6
    # frontier by hand, cheapest first: small k=1 (2e9, .30), small k=4 (8e9, .36), big k=1 (2e10, .35) is beaten
    # by small k=4; big greedy (4e10, .33) beaten; small k=16 (3.2e10, .37); big k=4 (8e10, .45)
    assert list(lines["pareto"].get_xdata()) == pytest.approx([2e9, 8e9, 3.2e10, 8e10])
    assert list(lines["pareto"].get_ydata()) == pytest.approx([0.30, 0.36, 0.37, 0.45])
    assert fig.axes[0].get_xscale() == "log"


def test_fig11_without_inputs_says_so(tmp_path):
    empty, header = tmp_path / "empty.csv", tmp_path / "header.csv"
    empty.write_text("")
    header.write_text("model,family,strategy,overall\n")
    for i, given in enumerate(({}, {"benchmarks": empty, "tokens": empty, "inference_scaling": empty},
                               {"benchmarks": header, "tokens": header, "inference_scaling": header})):
        png = tmp_path / str(i) / "fig11.png"
        fig = figures.fig11_inference_scaling(given, png, {"models": {}})
        assert png.stat().st_size > 0
        assert any("token counts" in t.get_text() for ax in fig.axes for t in ax.texts)


def test_write_inference_scaling(tmp_path):
    out = tmp_path / "inference_scaling.csv"
    scaling.write_inference_scaling(out, [scaling.sample_sweep(sample_table(), [2]), pd.DataFrame()],
                                    benchmarks=("arc_challenge", "gsm8k"))
    table = pd.read_csv(out)
    assert list(table.columns) == scaling.COLUMNS and set(table["benchmark"]) == {"arc_challenge", "gsm8k", "overall"}
    scaling.write_inference_scaling(out, [])
    assert list(pd.read_csv(out).columns) == scaling.COLUMNS  # no sweeps: the header alone


# ---------------------------------------------------------------- cost models of the sweep points (cotscale.sweep_cost)
# A tiny architecture priced by hand: 4 FLOPs × layers 2 × query heads 2 × head_dim 4 = 64 FLOPs per attended key;
# KV bytes per context token 2 (K, V) × 2 layers × 1 KV head × 4 × 2 bytes = 32; hardware I = 1e9 / 1e8 = 10.
ARCH = {"layers": 2, "query_heads": 2, "head_dim": 4, "kv_heads": 1, "bytes_per_value": 2}
HW = {"name": "toy", "peak_flops": 1e9, "bandwidth": 1e8, "price_per_gpu_hour": 3.6}
TOY = {**RUN, "N": 1000.0, "strategy": "think"}


def _usage_file(tmp_path, records, strategy="think"):
    from cotscale.io import write_jsonl_gz

    path = tmp_path / "results/evals/m" / strategy / "arc_challenge" / "usage.jsonl.gz"
    path.parent.mkdir(parents=True)
    write_jsonl_gz(path, records)
    return path


def _priced(tmp_path, rows, usage, names=("paper", "attention", "kinetics")):
    from cotscale import sweep_cost

    prompts = sweep_cost.document_prompts([_usage_file(tmp_path, usage, rows["strategy"].iloc[0])])
    out = tmp_path / "inference_scaling.csv"
    scaling.write_inference_scaling(
        out, [rows], benchmarks=("arc_challenge",),
        price=lambda t, f: sweep_cost.with_costs(t, f, prompts, {"m": ARCH}, names, HW, 8))
    return pd.read_csv(out)


def test_length_sweep_priced_per_cost_model_by_hand(tmp_path):
    # one document, P = 10 prompt tokens, generating 4 tokens at budget 4 and 8 at budget 8
    scored = pd.DataFrame([{**TOY, "benchmark": "arc_challenge", "task": "arc_challenge", "doc_id": 0, "budget": b,
                            "correct": True, "generated_tokens": g} for b, g in ((4, 4), (8, 8))])
    usage = [{"task": "arc_challenge", "doc_id": 0, "kind": "generate", "prompt_tokens": 10, "generated_tokens": 8,
              "sequences": 1}]
    table = _priced(tmp_path, scaling.length_sweep(scored), usage)
    assert list(table.columns) == [*scaling.COLUMNS, "cost_model", "cost_unit", "cost_per_request",
                                   "decode_cost_per_request", "ratio_to_paper", "decode_ratio_to_paper"]
    got = table[table["benchmark"] == "overall"].set_index(["budget", "cost_model"])
    # attention, G = 4: forward 2·1000·14 = 28000; keys: prefill 10·11/2 = 55, decode 4·10 + 4·5/2 = 50 → 64·105
    # = 6720; total 34720. Prefill alone: 20000 + 64·55 = 23520, so the decode steps cost 11200 against 2·N·4 = 8000.
    # G = 8: forward 36000; keys 55 + 80 + 36 = 171 → 10944; total 46944; decode 46944 − 23520 = 23424 vs 16000.
    # kinetics adds I·32 B × KV tokens read (T·P + T(T−1)/2): G = 4: 46 → 14720; G = 8: 108 → 34560.
    expected = {(4, "paper"): (8000, 1.0, 1.0), (8, "paper"): (16000, 1.0, 1.0),
                (4, "attention"): (34720, 34720 / 8000, 11200 / 8000),
                (8, "attention"): (46944, 46944 / 16000, 23424 / 16000),
                (4, "kinetics"): (49440, 49440 / 8000, 25920 / 8000),
                (8, "kinetics"): (81504, 81504 / 16000, 57984 / 16000)}
    for key, (value, ratio, decode) in expected.items():
        assert got.loc[key, "cost_per_request"] == pytest.approx(value)
        assert got.loc[key, "ratio_to_paper"] == pytest.approx(ratio)
        assert got.loc[key, "decode_ratio_to_paper"] == pytest.approx(decode)
        assert got.loc[key, "decode_cost_per_request"] == pytest.approx(decode * (8000 if key[0] == 4 else 16000))
    # the whole request's ratio falls with the budget (the prompt's prefill is shared by more tokens) while the
    # generated tokens' own cost ratio grows (longer contexts): the column a budget sweep should be read by
    for name in ("attention", "kinetics"):
        assert got.loc[(8, name), "ratio_to_paper"] < got.loc[(4, name), "ratio_to_paper"]
        assert got.loc[(8, name), "decode_ratio_to_paper"] > got.loc[(4, name), "decode_ratio_to_paper"]
    assert got.loc[(4, "attention"), "cost_unit"] == "FLOPs" and got.loc[(4, "kinetics"), "cost_unit"] == "eFLOPs"
    # one row per operating point under the paper's model, as before
    from cotscale import sweep_cost

    assert len(sweep_cost.paper_rows(table)) == len(table) / 3


def test_sweep_documents_priced_each_with_all_their_prompt_tokens(tmp_path):
    # two documents: P = 10, and P = 15 + 5 (a generate prompt and a choice's log-likelihood tokens, as Table I)
    scored = pd.DataFrame([{**TOY, "benchmark": "arc_challenge", "task": "arc_challenge", "doc_id": d, "budget": 8,
                            "correct": True, "generated_tokens": g} for d, g in ((0, 8), (1, 4))])
    usage = [{"task": "arc_challenge", "doc_id": 0, "kind": "generate", "prompt_tokens": 10, "generated_tokens": 8,
              "sequences": 1},
             {"task": "arc_challenge", "doc_id": 1, "kind": "generate", "prompt_tokens": 15, "generated_tokens": 4,
              "sequences": 1},
             {"task": "arc_challenge", "doc_id": 1, "kind": "loglikelihood", "prompt_tokens": 5,
              "generated_tokens": 0, "sequences": 1, "scored_tokens": 24}]
    got = _priced(tmp_path, scaling.length_sweep(scored), usage, ("paper", "attention")).set_index(
        ["benchmark", "cost_model"])
    # doc 1 (P = 20, G = 4): forward 48000 + 64·(210 + 80 + 10) = 67200; doc 0 as above 46944; mean 57072,
    # not the cost of the mean request (P = 15, G = 6): 42000 + 64·(120 + 90 + 21) = 56784
    assert got.loc[("arc_challenge", "attention"), "cost_per_request"] == pytest.approx((46944 + 67200) / 2)
    assert got.loc[("overall", "attention"), "cost_per_request"] == pytest.approx((46944 + 67200) / 2)
    assert got.loc[("overall", "paper"), "cost_per_request"] == pytest.approx(2000 * 6)


def test_self_consistency_k_is_k_sequences_sharing_one_prompt(tmp_path):
    samples = pd.DataFrame([{**TOY, "strategy": "sc", "benchmark": "arc_challenge", "task": "arc_challenge",
                             "doc_id": 0, "sample": i, "answer": 1, "correct": True, "generated_tokens": 4}
                            for i in range(2)])
    usage = [{"task": "arc_challenge", "doc_id": 0, "kind": "generate", "prompt_tokens": 10, "generated_tokens": 8,
              "sequences": 2}]
    got = _priced(tmp_path, scaling.sample_sweep(samples, [1, 2]), usage)
    got = got[(got["benchmark"] == "overall") & (got["metric"] == "maj@k")].set_index(["budget", "cost_model"])
    # k = 2: G = 8 over n = 2 sequences of T = 4: forward 2·1000·18 = 36000; keys: the shared prefill 55 once,
    # then 2 × (4·10 + 4·5/2) = 100 → 64·155 = 9920; KV tokens read: 4·10 (prompt, once per step) + 2·4·3/2 = 52
    assert got.loc[(2, "attention"), "cost_per_request"] == pytest.approx(45920)
    assert got.loc[(2, "kinetics"), "cost_per_request"] == pytest.approx(45920 + 320 * 52)
    assert got.loc[(1, "attention"), "cost_per_request"] == pytest.approx(34720)  # one sequence: as G = 4 above


def test_sweep_without_prompt_or_architecture_is_priced_only_by_paper(tmp_path, caplog):
    from cotscale import sweep_cost

    scored = pd.DataFrame([{**TOY, "benchmark": "arc_challenge", "task": "arc_challenge", "doc_id": 0, "budget": 4,
                            "correct": True, "generated_tokens": 4}])
    rows = scaling.length_sweep(scored)
    table = scaling.inference_scaling(rows, benchmarks=("arc_challenge",))
    got = sweep_cost.with_costs(table, rows, {}, {"m": {}}, ["paper", "forward", "attention"], HW, 8).set_index(
        ["benchmark", "cost_model"])
    assert got.loc[("overall", "paper"), "cost_per_request"] == 8000
    assert np.isnan(got.loc[("overall", "forward"), "cost_per_request"])  # no usage record: no prompt tokens
    assert np.isnan(got.loc[("overall", "attention"), "cost_per_request"])
    assert "needs layers, query_heads, head_dim of model m" in caplog.text
    assert "no usage record (prompt tokens) for document(s) arc_challenge/0" in caplog.text
    assert caplog.text.count("needs layers") == 1  # once, not per row


def test_fig11_draws_the_realistic_cost_model_beside_paper(tmp_path):
    sweep = pd.DataFrame([
        {**RUN, "model": "small", "N": 1e8, "D": 1e11, "strategy": "sc", "budget_kind": "k", "budget": k,
         "benchmark": "overall", "metric": "maj@k", "estimator": "exact", "documents": 10, "score": s,
         "score_stderr": 0.01, "mc_stderr": 0.0, "ci_low": s - 0.02, "ci_high": s + 0.02, "tokens_per_request": t,
         "inference_flops_per_request": 2e8 * t, "train_flops": 6e19, "n_benchmarks": 7, "cost_model": cm}
        for k, s, t in [(1, 0.30, 10), (4, 0.36, 40)] for cm in ("paper", "kinetics")])  # a point per cost model
    bench = pd.DataFrame([{**RUN, "model": "small", "N": 1e8, "D": 1e11, "strategy": "greedy", "overall": 0.33}])
    tokens = pd.DataFrame([{**RUN, "model": "small", "N": 1e8, "D": 1e11, "strategy": "greedy", "benchmark": "arc",
                            "task": "arc", "generate_requests": 10, "generated_tokens": 200, "documents": 10,
                            "prompt_tokens": 500, "token_unit": "tokens"}])
    # costs.csv's kinetics rows (overall): greedy 1.2e10 eFLOPs per request, the sweep's k = 1 and k = 4 3e9 and 1e10
    costs = pd.DataFrame([{"model": "small", "strategy": st, "benchmark": "overall", "budget": b, "cost_model": cm,
                           "unit": "eFLOPs", "cost_per_request": c}
                          for st, b, cm, c in [("greedy", "", "kinetics", 1.2e10), ("sc", "k=1", "kinetics", 3e9),
                                               ("sc", "k=4", "kinetics", 1e10), ("greedy", "", "paper", 4e9)]])
    paths = {}
    for name, frame in (("inference_scaling", sweep), ("benchmarks", bench), ("tokens", tokens), ("costs", costs)):
        paths[name] = tmp_path / f"{name}.csv"
        frame.to_csv(paths[name], index=False)
    fig = figures.fig11_inference_scaling(paths, tmp_path / "fig11.png", {"analysis": {
        "realistic_cost_model": "kinetics"}})
    lines = {a.get_gid(): a for ax in fig.axes for a in ax.get_lines() if a.get_gid()}
    assert list(lines["sweep:small/sc"].get_xdata()) == pytest.approx([2e9, 8e9])  # paper: 2·N·t, once each
    assert list(lines["sweep:small/sc:kinetics"].get_xdata()) == pytest.approx([3e9, 1e10])
    # paper: greedy 2·1e8·20 = 4e9 for .33 sits between k = 1 (2e9, .30) and k = 4 (8e9, .36), all on the frontier;
    # kinetics: greedy (1.2e10, .33) costs more than k = 4 (1e10, .36) and drops off it
    assert list(lines["pareto"].get_xdata()) == pytest.approx([2e9, 4e9, 8e9])
    assert list(lines["pareto:kinetics"].get_xdata()) == pytest.approx([3e9, 1e10])
    assert "kinetics" in fig.axes[1].get_xlabel() and "eFLOPs" in fig.axes[1].get_xlabel()


def test_planner_under_a_cost_model_takes_the_sweeps_own_costs():
    from cotscale import plan

    sweep = pd.DataFrame([
        {**RUN, "model": "small", "N": 1e8, "D": 1e11, "strategy": "sc", "budget_kind": "k", "budget": 4,
         "benchmark": "overall", "metric": "maj@k", "estimator": "exact", "documents": 10, "score": 0.36,
         "score_stderr": 0.01, "mc_stderr": 0.0, "ci_low": 0.34, "ci_high": 0.38, "tokens_per_request": 40,
         "inference_flops_per_request": 8e9, "train_flops": 6e19, "n_benchmarks": 7, "cost_model": cm,
         "cost_per_request": c} for cm, c in (("paper", 8e9), ("attention", 1.25e10))])
    bench = pd.DataFrame([{**RUN, "model": "small", "N": 1e8, "D": 1e11, "strategy": s, "overall": 0.33}
                          for s in ("greedy", "sc")])
    tokens = pd.DataFrame([{**RUN, "model": "small", "N": 1e8, "D": 1e11, "strategy": s, "benchmark": "arc",
                            "task": "arc", "generate_requests": 10, "generated_tokens": 200, "documents": 10,
                            "prompt_tokens": 500, "token_unit": "tokens"} for s in ("greedy", "sc")])
    models = pd.DataFrame([{"model": "small", "N": 1e8, "layers": 2, "query_heads": 2, "head_dim": 4, "kv_heads": 1}])
    points = plan.operating_points({"benchmarks": bench, "tokens": tokens, "inference_scaling": sweep,
                                    "models": models}, cost_model="attention").set_index(["strategy", "budget"])
    assert points.loc[("sc", "k=4"), "cost_per_request"] == 1.25e10  # inference_scaling.csv's, not re-priced
    # a plain point on its mean request (P = 50, G = 20): 2e8·70 + 64·(50·51/2 + 20·50 + 20·21/2)
    assert points.loc[("greedy", ""), "cost_per_request"] == pytest.approx(2e8 * 70 + 64 * (1275 + 1000 + 210))

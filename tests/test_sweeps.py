"""Budget sweeps from one run (issue 14): the strategy keys, the wrapper's length sweep against real greedy
generation at each smaller budget, and inference_scaling.csv from hand-made sample records."""

from __future__ import annotations

import pytest

from _lm_fixtures import Spy

from cotscale.config import resolve_strategy
from cotscale.strategy import StrategyError, budget_sweep

SWEEP = {"format": "hybrid", "prompt": "cot", "decoding": "greedy", "max_gen_toks": [3, 7, 16], "until": []}


# ---------------------------------------------------------------------------------------------- strategy keys
def test_sweep_keys_fill_and_validate():
    s = resolve_strategy(dict(SWEEP, max_gen_toks=[16, 3, 7, 7]))
    assert s["max_gen_toks"] == 16 and s["max_gen_toks_sweep"] == [3, 7, 16]
    assert budget_sweep(s) == ("max_gen_toks", [3, 7, 16])
    sc = resolve_strategy({"format": "hybrid", "decoding": "sample", "samples": 4, "temperature": 0.7, "k": [4, 1, 2]})
    assert sc["k"] == [1, 2, 4] and budget_sweep(sc) == ("k", [1, 2, 4])
    assert budget_sweep(resolve_strategy({"format": "hybrid"})) is None
    bad = [
        ({"decoding": "sample", "samples": 3, "temperature": 0.7, "k": [1, 4]}, "k", "<= samples"),
        ({"decoding": "greedy", "k": [1]}, "k", "decoding: sample"),
        ({"decoding": "sample", "temperature": 0.7, "max_gen_toks": [8, 16]}, "max_gen_toks", "decoding: greedy"),
        ({"max_gen_toks": []}, "max_gen_toks", "non-empty list"),
        ({"max_gen_toks": [0, 3]}, "max_gen_toks", "non-empty list"),
        ({"decoding": "sample", "samples": 3, "temperature": 0.7, "k": [0]}, "k", "integers >= 1"),
    ]
    for spec, key, why in bad:
        with pytest.raises(StrategyError, match=why) as err:
            resolve_strategy(spec)
        assert err.value.key == key


def test_config_loader_names_the_strategy_key(tmp_path):
    from cotscale.config import ConfigError, load_config, read_yaml
    from cotscale.config import PAPER_CONFIG

    raw = read_yaml(PAPER_CONFIG)
    raw["strategies"]["self_consistency"]["k"] = [1, raw["strategies"]["self_consistency"]["samples"] + 1]
    with pytest.raises(ConfigError, match=r"strategies\.self_consistency\.k: every k must be <= samples"):
        load_config(raw)


# ---------------------------------------------------------------------------------------------- the wrapper
@pytest.fixture(scope="module")
def sweep_lm(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("lm_eval")
    from _lm_fixtures import build_tiny_model

    from cotscale import lm as cl

    model = build_tiny_model(tmp_path_factory.mktemp("tiny"))
    return cl.CotscaleLM(pretrained=str(model), backend="hf", dtype="float32", batch_size=8, device="cpu",
                         strategy=SWEEP)


def test_length_sweep_cut_equals_real_greedy_generation_at_each_budget(sweep_lm, monkeypatch):
    """Oracle: transformers' own greedy generate() at max_new_tokens=b, each prompt alone; and the wrapper's real
    hybrid run at max_gen_toks=b (its rationale and its choice log-likelihoods)."""
    from _lm_fixtures import MC_DOCS, mc_requests

    lm = sweep_lm
    lm.begin_task(SWEEP)
    answers = Spy(monkeypatch, lm.engine, "generate")
    lm.loglikelihood(mc_requests())
    monkeypatch.undo()
    (generated,) = answers.results
    model, tok = lm.backend.model, lm.backend.tokenizer
    swept = {doc_id: dict(lm.hybrid_details[("mini_mc", doc_id)]) for doc_id in range(len(MC_DOCS))}
    for b in (3, 7, 16):
        lm.begin_task(dict(SWEEP, max_gen_toks=b))
        lm.loglikelihood(mc_requests())
        real = {doc_id: lm.hybrid_details[("mini_mc", doc_id)] for doc_id in range(len(MC_DOCS))}
        for doc_id, value in enumerate(generated):
            at = swept[doc_id]["budgets"].index(b)
            prompt = tok(swept[doc_id]["prompt"], return_tensors="pt").input_ids
            alone = model.generate(prompt, max_new_tokens=b, do_sample=False, pad_token_id=tok.pad_token_id)
            alone_ids = alone[0, prompt.shape[1]:].tolist()
            if tok.eos_token_id in alone_ids:
                alone_ids = alone_ids[:alone_ids.index(tok.eos_token_id) + 1]
            assert value.ids[:b] == alone_ids  # the cut of the longest generation IS the generation at b
            assert swept[doc_id]["budget_generated_tokens"][at] == len(alone_ids)
            assert swept[doc_id]["budget_rationales"][at] == real[doc_id]["rationales"][0]
            assert swept[doc_id]["budget_loglikelihoods"][at] == pytest.approx(real[doc_id]["loglikelihoods"][0],
                                                                              abs=1e-4)
    assert any(len(value.ids) > 7 for value in generated), "no rationale ran past a smaller budget: no cut tested"


def test_length_sweep_generates_once_per_document_at_the_largest_budget(sweep_lm, monkeypatch):
    from _lm_fixtures import MC_DOCS, mc_requests

    lm = sweep_lm
    lm.begin_task(SWEEP)
    gen = Spy(monkeypatch, lm.backend, "generate_until")
    reqs = mc_requests()
    lm.loglikelihood(reqs)
    assert len(gen.calls) == 1
    assert {r.args[1]["max_gen_toks"] for r in gen.calls[0][0][0]} == {16}
    records = list(lm.usage)
    generate = [r for r in records if r["kind"] == "generate"]
    assert sorted(r["doc_id"] for r in generate) == list(range(len(MC_DOCS)))
    assert all(r["sequences"] == 1 and r["generated_tokens"] <= 16 for r in generate)
    # the smaller budgets' scoring passes are no cost of the run: one loglikelihood record per request
    assert len([r for r in records if r["kind"] == "loglikelihood"]) == len(reqs)
    fields = lm.sample_fields()[("mini_mc", 0)]
    assert fields["budgets"] == [3, 7, 16] and fields["budget_loglikelihoods"][-1] == fields[
        "rationale_loglikelihoods"][0]


# ---------------------------------------------------------------------------------------------- inference_scaling
def _run(tmp_path, name, strategy, records, benchmark="arc_challenge", **extra):
    from cotscale.io import write_json, write_jsonl_gz

    results, samples = tmp_path / f"{name}.json", tmp_path / f"{name}.jsonl.gz"
    write_json(results, {"cotscale": {"model": "m@s1", "revision": "s1", "family": "f", "N": 1000.0, "D": 50.0,
                                      "strategy": {"name": strategy}, "benchmark": benchmark,
                                      **extra.pop("meta", {})}, **extra})
    write_jsonl_gz(samples, records)
    return str(results), str(samples), strategy


def test_inference_scaling_rows_of_hand_made_sample_records(tmp_path):
    """Expected values by hand. k sweep, 3 rationales: doc 0 (gold 1) votes 1, 1, 0 -> maj@1 = 2/3, maj@2 = (1 +
    1/2 + 1/2)/3 = 2/3, maj@3 = 1; doc 1 (gold 0) never votes 0 -> 0. Tokens per request at k: k x the mean over
    documents of the mean per rationale, (6 + 2)/2 = 4. Length sweep: doc 0 (gold 2) wrong at 3, right at 7; doc 1
    right at both; tokens (3 + 2)/2 and (7 + 2)/2."""
    import pandas as pd

    from cotscale.scaling import sweep_rows, write_inference_scaling

    sc = [{"task": "arc_challenge", "doc_id": 0, "target": "1", "generated_tokens": [4, 6, 8],
           "rationale_loglikelihoods": [[-3, -1, -2], [-2, -1, -5], [-1, -4, -4]]},
          {"task": "arc_challenge", "doc_id": 1, "target": 0, "generated_tokens": [2, 2, 2],
           "rationale_loglikelihoods": [[-3, -1], [-2, -1], [-5, -1]]}]
    ln = [{"task": "arc_challenge", "doc_id": 0, "target": "2", "budgets": [3, 7], "budget_generated_tokens": [3, 7],
           "budget_loglikelihoods": [[-1, -2, -3], [-3, -2, -1]]},
          {"task": "arc_challenge", "doc_id": 1, "target": "0", "budgets": [3, 7], "budget_generated_tokens": [2, 2],
           "budget_loglikelihoods": [[-1, -2, -3], [-1, -2, -3]]}]
    runs = [_run(tmp_path, "sc", "sc", sc), _run(tmp_path, "ln", "ln", ln)]
    rows = sweep_rows(runs, {"sc": ("k", [1, 2, 3]), "ln": ("max_gen_toks", [3, 7])})
    write_inference_scaling(tmp_path / "inference_scaling.csv", rows)
    table = pd.read_csv(tmp_path / "inference_scaling.csv")
    assert set(table["benchmark"]) == {"arc_challenge"}  # one benchmark: no overall row
    got = {(r.strategy, r.metric, int(r.budget)): (r.score, r.tokens_per_request, r.inference_flops_per_request)
           for r in table.itertuples()}
    expected = {("sc", "maj@k", 1): (1 / 3, 4.0), ("sc", "maj@k", 2): (1 / 3, 8.0), ("sc", "maj@k", 3): (0.5, 12.0),
                ("ln", "accuracy", 3): (0.5, 2.5), ("ln", "accuracy", 7): (1.0, 4.5)}
    assert set(got) == set(expected)  # no weighted maj@k: the records carry no sequence log-probabilities
    for key, (score, tokens) in expected.items():
        assert got[key][:2] == pytest.approx((score, tokens))
        assert got[key][2] == pytest.approx(2 * 1000 * tokens)
    assert (table["train_flops"] == 6 * 1000 * 50).all()


def test_inference_scaling_is_header_only_without_sweeps(tmp_path):
    from cotscale.scaling import COLUMNS, sweep_rows, write_inference_scaling

    write_inference_scaling(tmp_path / "t.csv", sweep_rows([], {}))
    assert (tmp_path / "t.csv").read_text().strip() == ",".join(COLUMNS)


# ---------------------------------------------------------------------------------------------- sequence log-probs
SAMPLED = {"format": "generate", "prompt": "plain", "decoding": "sample", "samples": 3, "temperature": 0.7,
           "max_gen_toks": 12}


def test_hf_sequence_logprob_is_the_forward_log_likelihood_of_the_sampled_ids(sweep_lm, monkeypatch):
    """Oracle: one plain forward pass of the model over prompt + the captured ids, log-softmax at temperature 1,
    summed over the generated positions. The sample records carry the same numbers per response."""
    import torch
    from _lm_fixtures import GEN_DOCS, gen_requests

    lm = sweep_lm
    lm.begin_task(SAMPLED)
    captured = Spy(monkeypatch, lm.backend, "generate_captured")  # the capture protocol's return value
    requests = gen_requests(repeats=3, gen_kwargs={"until": ["\n\n"], "do_sample": True})
    lm.generate_until(requests)
    ((_, generations),) = captured.results
    doc_of = {tuple(lm.backend.tok_encode(r.args[0])): r.doc_id for r in requests}  # plain prompts: no cue
    fields = lm.sample_fields()
    assert sorted(doc_of[g.prompt_ids] for g in generations) == list(range(len(GEN_DOCS)))
    for generation in generations:
        prompt, seqs = generation.prompt_ids, generation.sequences
        assert len(seqs) == 3
        for seq in seqs:
            assert len(seq.ids) == seq.tokens > 0
            with torch.no_grad():
                logits = lm.backend.model(torch.tensor([list(prompt) + list(seq.ids)])).logits[0].float()
            lps = torch.log_softmax(logits, dim=-1)
            expected = sum(float(lps[len(prompt) - 1 + t, tok]) for t, tok in enumerate(seq.ids))
            assert seq.logprob == pytest.approx(expected, abs=1e-4)
        record = fields[("mini_gen", doc_of[prompt])]
        assert {k: record[k] for k in ("generated_tokens", "sequence_logprobs")} == {
            "generated_tokens": [seq.tokens for seq in seqs], "sequence_logprobs": [seq.logprob for seq in seqs]}
        # the arguments this generation really ran with: the request's stop sequence, 3 sampled sequences
        used = record["generation_args"]["generate"]
        assert (used["until"], used["do_sample"], used["num_return_sequences"]) == (["\n\n"], True, 3)
    assert len(fields) == len(GEN_DOCS)


# gsm8k_cot_zeroshot's filter and metric as lm-eval's task YAML gives them (results.json "configs")
GSM8K_CONFIG = {
    "filter_list": [
        {"name": "strict-match", "filter": [{"function": "regex", "regex_pattern": "The answer is (\\-?[0-9\\.\\,]+)."},
                                            {"function": "majority_vote"}, {"function": "take_first"}]},
        {"name": "flexible-extract", "filter": [{"function": "regex", "group_select": -1,
                                                 "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                                                {"function": "majority_vote"}, {"function": "take_first"}]}],
    "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True, "ignore_case": True,
                     "ignore_punctuation": False, "regexes_to_ignore": [",", "\\$", "(?s).*#### ", "\\.$"]}],
}


def test_gsm8k_k_sweep_re_extracts_each_response(tmp_path):
    """Expected values by hand, through lm-eval's own regex filter and exact_match. doc 0 (gold 7): responses
    extract to "7" (right), "8" (wrong), "7." (right: the trailing "." is ignored), log-probs -1, -0.5, -3. doc 1
    (gold 12): "12", "12", "5", log-probs -4, -4, -0.1.
    maj@k (ties split): doc 0: 2/3, (1/2 + 1 + 1/2)/3 = 2/3, three-way tie 2/3; doc 1: 2/3, (1 + 1/2 + 1/2)/3, 1.
    weighted (weights e^lp): doc 0: 2/3; pairs {7,8} -> 8, {7,7.} -> 7, {8,7.} -> 8: 1/3; all three -> 8: 0.
    doc 1: 2/3; {12,12} -> 12, {12,5} -> 5 twice: 1/3; all -> 5 (e^-0.1 > 2 e^-4): 0.
    pass@k (2 of 3 right in both): 2/3, 1, 1. Tokens per request: k x mean((4+6+8)/3, 2) = 4k."""
    import pandas as pd

    from cotscale.scaling import sweep_rows, write_inference_scaling

    fields = {"filter": "flexible-extract", "metrics": ["exact_match"]}
    records = [
        {"task": "gsm8k_cot_zeroshot", "doc_id": 0, "doc": {"question": "q0"}, "target": "Tom ... #### 7", **fields,
         "resps": [["so he has 7", "which is 8", "he has 7."]], "generated_tokens": [4, 6, 8],
         "sequence_logprobs": [-1.0, -0.5, -3.0]},
        {"task": "gsm8k_cot_zeroshot", "doc_id": 1, "doc": {"question": "q1"}, "target": "#### 12", **fields,
         "resps": [["12", "it is 12", "5"]], "generated_tokens": [2, 2, 2], "sequence_logprobs": [-4.0, -4.0, -0.1]},
        # the other filter's records of the same documents are not read
        {"task": "gsm8k_cot_zeroshot", "doc_id": 0, "doc": {}, "target": "#### 7", "filter": "strict-match",
         "resps": [["x"]], "generated_tokens": [1]},
    ]
    spec = {"task": {"benchmark": "gsm8k", "task": "gsm8k_cot_zeroshot", "metric": "exact_match",
                     "filter": "flexible-extract"}}
    runs = [_run(tmp_path, "sc", "sc_gen", records, "gsm8k", meta={"spec": spec},
                 configs={"gsm8k_cot_zeroshot": GSM8K_CONFIG})]
    write_inference_scaling(tmp_path / "t.csv", sweep_rows(runs, {"sc_gen": ("k", [1, 2, 3])}))
    table = pd.read_csv(tmp_path / "t.csv")
    assert set(table["benchmark"]) == {"gsm8k"}
    got = {(r.metric, int(r.budget)): (r.score, r.tokens_per_request) for r in table.itertuples()}
    expected = {("maj@k", 1): 2 / 3, ("maj@k", 2): 2 / 3, ("maj@k", 3): 5 / 6,
                ("weighted_maj@k", 1): 2 / 3, ("weighted_maj@k", 2): 1 / 3, ("weighted_maj@k", 3): 0.0,
                ("pass@k", 1): 2 / 3, ("pass@k", 2): 1.0, ("pass@k", 3): 1.0}
    assert set(got) == set(expected)
    for (metric, k), score in expected.items():
        assert got[(metric, k)] == pytest.approx((score, 4.0 * k))
    assert set(table["estimator"]) == {"exact"}


def test_gsm8k_sweep_names_a_missing_filter(tmp_path):
    from cotscale.scaling import ScalingError, sweep_rows

    record = {"task": "gsm8k_cot_zeroshot", "doc_id": 0, "doc": {}, "target": "#### 7", "filter": "other",
              "resps": [["7"]], "generated_tokens": [1]}
    spec = {"task": {"metric": "exact_match", "filter": "other"}}
    runs = [_run(tmp_path, "sc", "sc_gen", [record], "gsm8k", meta={"spec": spec},
                 configs={"gsm8k_cot_zeroshot": GSM8K_CONFIG})]
    with pytest.raises(ScalingError, match="has no filter 'other'"):
        sweep_rows(runs, {"sc_gen": ("k", [1])})


# ---------------------------------------------------------------------------------------------- achieved throughput
def test_compute_rows_achieved_throughput_by_hand():
    """N = 1000, two tasks of one job: prompt 100 + 20, generated 50 + 30 tokens, measured 2 s + 3 s. Inference
    FLOPs 2·1000·80 = 160000 -> 32000 per second; forward FLOPs 2·1000·200 = 400000 -> 80000 per second."""
    import pandas as pd

    from cotscale.aggregate import compute_rows

    ident = {"model": "m", "revision": "main", "family": "f", "N": 1000.0, "D": 10.0, "strategy": "s"}
    tokens = pd.DataFrame([{**ident, "documents": 4, "requests": 4, "prompt_tokens": 100, "generated_tokens": 50,
                            "token_unit": "tokens"},
                           {**ident, "documents": 1, "requests": 1, "prompt_tokens": 20, "generated_tokens": 30,
                            "token_unit": "tokens"}])
    measured = pd.DataFrame([{"model": "m", "strategy": "s", "wall_seconds": w, "model_load_seconds": 1.0,
                              "max_rss_mb": 10.0} for w in (2.0, 3.0)])
    (row,) = compute_rows(tokens, measured).to_dict("records")
    assert (row["inference_flops"], row["forward_flops"]) == (160000.0, 400000.0)
    assert row["inference_flops_per_second"] == pytest.approx(32000.0)
    assert row["forward_flops_per_second"] == pytest.approx(80000.0)
    unmeasured = compute_rows(tokens, pd.DataFrame()).iloc[0]
    assert unmeasured["inference_flops"] == 160000.0 and pd.isna(unmeasured["inference_flops_per_second"])


# ---------------------------------------------------------------------------------------------- truncation, thinking
def _summary(truncated, generate_requests, **extra):
    return {"requests": generate_requests, "generate_requests": generate_requests, "loglikelihood_requests": 0,
            "documents": generate_requests, "prompt_tokens": 10, "generate_prompt_tokens": 10,
            "loglikelihood_prompt_tokens": 0, "generated_tokens": 40, "sequences": generate_requests,
            "truncated": truncated, "token_unit": "tokens", **extra}


def test_benchmarks_truncated_fraction_by_hand():
    """arc_challenge has two tasks, 1 of 4 and 1 of 6 requests truncated: 2/10 = 0.2 (pooled); gsm8k 3 of 4; the
    other five none of 5. The row's truncated_fraction is the mean over the seven, (0.2 + 0.75)/7."""
    from cotscale import aggregate as agg
    from cotscale.config import BENCHMARKS

    config = {"tasks": {b: {"standard": {"task": b, "metric": "acc", "filter": "none"}} for b in BENCHMARKS},
              "strategies": {"s": {"variant": "standard"}}}
    summaries = {b: {b: _summary(0, 5)} for b in BENCHMARKS}
    summaries["arc_challenge"] = {"arc_a": _summary(1, 4), "arc_b": _summary(1, 6)}
    summaries["gsm8k"] = {"gsm8k": _summary(3, 4)}
    by_bench = {b: {"results": {b: {"acc,none": 0.5, "acc_stderr,none": 0.1}},
                    "cotscale": {"model": "m", "revision": "main", "family": "f", "N": 1.0, "D": 1.0,
                                 "strategy": "s", "benchmark": b, "usage_summary": summaries[b]}}
                for b in BENCHMARKS}
    (row,) = agg.benchmark_rows(config, {("m", "s"): by_bench})
    assert row["arc_challenge_truncated_fraction"] == pytest.approx(0.2)
    assert row["gsm8k_truncated_fraction"] == 0.75 and row["mmlu_truncated_fraction"] == 0.0
    assert row["truncated_fraction"] == pytest.approx(0.95 / 7)
    assert set(agg.BENCHMARK_COLUMNS) >= set(row)
    # the same function gives tokens.csv's per-task share
    tokens = agg.token_rows(by_bench["arc_challenge"])
    assert [r["truncated_fraction"] for r in tokens] == [0.25, pytest.approx(1 / 6)]


def test_tokens_mean_thinking_and_answer_tokens_by_hand():
    """5 generate requests with 30 thinking and 10 answer tokens in all: 6 and 2 per request; an entry without the
    fields (an older run) reads 0."""
    from cotscale import aggregate as agg

    results = {"cotscale": {"model": "m", "revision": "main", "family": "f", "N": 1.0, "D": 1.0, "strategy": "s",
                            "benchmark": "gsm8k",
                            "usage_summary": {"a": _summary(0, 5, thinking_tokens=30, answer_tokens=10),
                                              "b": _summary(0, 5)}}}
    a, b = agg.token_rows(results)
    assert (a["mean_thinking_tokens"], a["mean_answer_tokens"]) == (6.0, 2.0)
    assert (b["mean_thinking_tokens"], b["mean_answer_tokens"]) == (0.0, 0.0)


# ---------------------------------------------------------------------------------------------- generate length sweep
GEN_SWEEP = {"format": "generate", "prompt": "plain", "decoding": "greedy", "max_gen_toks": [3, 7, 16]}


def test_generate_length_sweep_cut_equals_real_generation_at_each_budget(sweep_lm, monkeypatch):
    """One generate_until call at the largest budget; oracle: the wrapper's real greedy run at each budget b (its
    response text and its usage record's generated tokens)."""
    from _lm_fixtures import GEN_DOCS, gen_requests

    kwargs = {"until": ["\n\n"], "do_sample": False}
    lm = sweep_lm
    lm.begin_task(GEN_SWEEP)
    gen = Spy(monkeypatch, lm.backend, "generate_until")
    lm.generate_until(gen_requests(gen_kwargs=kwargs))
    monkeypatch.undo()
    assert len(gen.calls) == 1 and {r.args[1]["max_gen_toks"] for r in gen.calls[0][0][0]} == {16}
    assert len([r for r in lm.usage if r["kind"] == "generate"]) == len(GEN_DOCS)
    swept = {doc_id: dict(d) for (_, doc_id), d in lm.sample_fields().items()}
    for b in (3, 7, 16):
        lm.begin_task(dict(GEN_SWEEP, max_gen_toks=b))
        texts = lm.generate_until(gen_requests(gen_kwargs=kwargs))
        for doc_id, (text, record) in enumerate(zip(texts, lm.usage, strict=True)):
            at = swept[doc_id]["budgets"].index(b)
            assert swept[doc_id]["budget_responses"][at] == text
            assert swept[doc_id]["budget_generated_tokens"][at] == record["generated_tokens"]
    assert any(max(d["generated_tokens"]) > 7 for d in swept.values()), "no response ran past a budget: no cut"


def test_gsm8k_length_sweep_rows_by_hand(tmp_path):
    """doc 0 (gold 7): cut at 4 tokens "he has 3", at 9 "he has 3 and 4 so 7" -> wrong, right; doc 1 (gold 12)
    ended at 2 tokens, "12" at both -> right, right. Accuracy 1/2 and 1; tokens (4 + 2)/2 and (9 + 2)/2."""
    import pandas as pd

    from cotscale.scaling import sweep_rows, write_inference_scaling

    fields = {"filter": "flexible-extract", "doc": {}}
    records = [
        {"task": "gsm8k_cot_zeroshot", "doc_id": 0, "target": "#### 7", **fields, "resps": [["he has 3 and 4 so 7"]],
         "generated_tokens": [9], "budgets": [4, 9], "budget_responses": ["he has 3", "he has 3 and 4 so 7"],
         "budget_generated_tokens": [4, 9]},
        {"task": "gsm8k_cot_zeroshot", "doc_id": 1, "target": "#### 12", **fields, "resps": [["12"]],
         "generated_tokens": [2], "budgets": [4, 9], "budget_responses": ["12", "12"],
         "budget_generated_tokens": [2, 2]},
    ]
    spec = {"task": {"metric": "exact_match", "filter": "flexible-extract"}}
    runs = [_run(tmp_path, "ln", "ln_gen", records, "gsm8k", meta={"spec": spec},
                 configs={"gsm8k_cot_zeroshot": GSM8K_CONFIG})]
    write_inference_scaling(tmp_path / "t.csv", sweep_rows(runs, {"ln_gen": ("max_gen_toks", [4, 9])}))
    table = pd.read_csv(tmp_path / "t.csv")
    got = {int(r.budget): (r.metric, r.score, r.tokens_per_request) for r in table.itertuples()}
    assert got == {4: ("accuracy", 0.5, 3.0), 9: ("accuracy", 1.0, 5.5)}


# ---------------------------------------------------------------------------------------------- end to end
E2E_STRATEGIES = {
    "sc": {"format": "hybrid", "prompt": "cot", "decoding": "sample", "samples": 2, "k": [1, 2], "temperature": 0.7,
           "variant": "standard", "max_gen_toks": 8, "until": ["\n"]},
    "lengths": {"format": "generate", "prompt": "cot", "decoding": "greedy", "variant": "cot", "max_gen_toks": [4, 8]},
}


@pytest.mark.slow
def test_sweeps_end_to_end_on_a_reduced_demo(root, tmp_path_factory):
    """Real Snakemake, lm-eval and the tiny model: a self-consistency k sweep (hybrid on arc_challenge, repeats +
    majority vote on gsm8k) and a generate length sweep give their rows, and the usage records show one
    generation per request at the largest budget (the sample records' largest cut is that generation)."""
    import numpy as np
    import pandas as pd
    from _demo import eval_dir, read_gz, reduced_demo, snakemake, write_config

    workdir = tmp_path_factory.mktemp("sweeps")
    config = reduced_demo(root, tasks=["arc_challenge", "gsm8k"], models=["mini-llama"])
    config["strategies"].update(E2E_STRATEGIES)
    write_config(workdir, config)
    run = snakemake(root, workdir, "results/tables/inference_scaling.csv", timeout=1200)
    assert run.returncode == 0, run.output[-4000:]
    table = pd.read_csv(workdir / "results/tables/inference_scaling.csv")
    got = {(r.strategy, r.benchmark, r.metric, int(r.budget)) for r in table.itertuples()}
    for bench in ("arc_challenge", "gsm8k"):
        for k in (1, 2):
            assert {("sc", bench, "maj@k", k), ("sc", bench, "weighted_maj@k", k)} <= got
        assert {("lengths", bench, "accuracy", 4), ("lengths", bench, "accuracy", 8)} <= got
    assert {("sc", "gsm8k", "pass@k", 1), ("sc", "gsm8k", "pass@k", 2)} <= got
    assert table["score"].between(0, 1).all() and table["tokens_per_request"].notna().all()
    # every point under every cost model, priced on its documents' usage records (cotscale.sweep_cost)
    assert set(table["cost_model"]) == set(config["analysis"].get("cost_models") or
                                           ["paper", "forward", "attention", "kinetics", "seconds", "dollars"])
    assert table["cost_per_request"].notna().all() and (table["cost_per_request"] > 0).all()
    paper = table[table["cost_model"] == "paper"]
    assert np.allclose(paper["ratio_to_paper"], 1) and np.allclose(paper["decode_ratio_to_paper"], 1)
    attention = table[table["cost_model"] == "attention"]
    assert (attention["decode_ratio_to_paper"] > 1).all() and (attention["ratio_to_paper"] > 1).all()
    for task in ("arc_challenge", "gsm8k"):
        usage = read_gz(workdir / eval_dir("mini-llama", "lengths", task) / "usage.jsonl.gz")
        records = {(r["task"], r["doc_id"]): r for r in read_gz(workdir / eval_dir("mini-llama", "lengths", task)
                                                               / "samples.jsonl.gz")}
        generate = [u for u in usage if u["kind"] == "generate"]
        assert len(generate) == len({(u["task"], u["doc_id"]) for u in generate}) == len(records)  # one per request
        for u in generate:
            assert u["sequences"] == 1 and u["generated_tokens"] <= 8
            assert records[(u["task"], u["doc_id"])]["budget_generated_tokens"] == [min(u["generated_tokens"], 4),
                                                                                    u["generated_tokens"]]
        sc = [u for u in read_gz(workdir / eval_dir("mini-llama", "sc", task) / "usage.jsonl.gz")
              if u["kind"] == "generate"]
        assert sum(u["sequences"] for u in sc) == 2 * len({(u["task"], u["doc_id"]) for u in sc})


def test_gold_choice_of_lm_eval_records():
    """winogrande-style records (one continuation after two contexts): gold is lm-eval's answer when acc = 1, the
    other choice when 0; a target that is one continuation is that choice; an integer target is the index."""
    from cotscale.scaling import ScalingError, _gold

    wino = {"doc_id": 0, "target": "was too big.", "arguments": [["a cake", " was too big."], ["a box", " was too big."]],
            "filtered_resps": [[-0.1, True], [-5.0, False]]}
    assert _gold({**wino, "acc": 1.0}, "w") == 0 and _gold({**wino, "acc": 0.0}, "w") == 1
    assert _gold({"doc_id": 1, "target": "robin", "arguments": [["Q", " robin"], ["Q", " trout"]]}, "w") == 0
    assert _gold({"doc_id": 2, "target": 3, "arguments": []}, "w") == 3
    three = {**wino, "arguments": wino["arguments"] * 2, "filtered_resps": wino["filtered_resps"] * 2, "acc": 0.0}
    three["arguments"] = three["arguments"][:3]
    three["filtered_resps"] = three["filtered_resps"][:3]
    with pytest.raises(ScalingError, match="cannot tell the right choice"):
        _gold(three, "w")

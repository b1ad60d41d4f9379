"""Cost models (cotscale.cost) and architecture facts (cotscale.architecture) against oracles outside them.

* FLOPs: torch.utils.flop_counter.FlopCounterMode counting the matmuls of real forward passes of tiny Llama and
  GPT-NeoX models (eager attention, so both attention matmuls are counted), a prefill and a greedy generation with
  the KV cache. The cost model's convention differs from the kernels in three stated ways, removed from the
  measurement before comparing: (1) eager attention multiplies the full P×P score matrix in a prefill, the
  convention counts only the causal lower triangle (P(P+1)/2 keys); (2) generate() computes the output head at the
  last prompt position only, the convention at every token; (3) a generation of T tokens runs P + T − 1 tokens
  (the last one is never fed back), i.e. the convention at T − 1. N is the count of weights each token multiplies:
  every nn.Linear weight of the model (counted from the module, not from cotscale).
* KV bytes per context token: the size of the real past_key_values tensors.
* kinetics and seconds of one Qwen3-0.6B request: a hand calculation written out below.
* Parameter counts: the published totals (Pythia paper Table 1 exact counts; Llama 3.2 and Qwen3 model cards).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cotscale import architecture, cost

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402


def _tiny(kind: str):
    torch.manual_seed(0)
    common = dict(vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                  intermediate_size=128, max_position_embeddings=256, tie_word_embeddings=False)
    if kind == "llama":
        cfg = transformers.LlamaConfig(**common, num_key_value_heads=2)
    else:
        cfg = transformers.GPTNeoXConfig(**common)
    model = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    linear_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    arch = architecture.from_hf_config(cfg.to_dict())
    return model, {**arch, "N": float(linear_weights), "bytes_per_value": 4}


def _flops(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("kind", ["llama", "gpt_neox"])
def test_forward_and_attention_flops_of_a_real_prefill(kind):
    model, arch = _tiny(kind)
    P = 37
    ids = torch.randint(3, 256, (1, P))
    measured = _flops(lambda: model(ids))
    d_attn = arch["query_heads"] * arch["head_dim"]
    masked = 4 * arch["layers"] * d_attn * (P * P - P * (P + 1) // 2)  # (1) the full square, less the triangle
    attention_only = 4 * arch["layers"] * d_attn * P * P
    assert cost.request_cost("forward", arch, P, 0) == pytest.approx(measured - attention_only, rel=0.02)
    assert cost.request_cost("attention", arch, P, 0) == pytest.approx(measured - masked, rel=0.02)


@pytest.mark.parametrize("kind", ["llama", "gpt_neox"])
def test_attention_flops_of_a_real_greedy_generation(kind):
    model, arch = _tiny(kind)
    P, T = 23, 15
    ids = torch.randint(3, 256, (1, P))
    measured = _flops(lambda: model.generate(ids, max_new_tokens=T, min_new_tokens=T, do_sample=False,
                                             pad_token_id=0, attention_mask=torch.ones_like(ids)))
    d_attn = arch["query_heads"] * arch["head_dim"]
    masked = 4 * arch["layers"] * d_attn * (P * P - P * (P + 1) // 2)  # (1)
    head = 2 * arch["vocab_size"] * arch["d_model"] * (P - 1)  # (2) output head at P − 1 prompt positions
    expected = cost.request_cost("attention", arch, P, T - 1)  # (3)
    assert expected == pytest.approx(measured - masked + head, rel=0.02)
    # and attention is a real share here: forward alone misses it by more than the tolerance
    assert cost.request_cost("forward", arch, P, T - 1) < 0.97 * (measured - masked + head)


@pytest.mark.parametrize("kind", ["llama", "gpt_neox"])
def test_kv_bytes_per_context_token_is_the_real_cache(kind):
    model, arch = _tiny(kind)
    P = 19
    with torch.no_grad():
        cache = model(torch.randint(3, 256, (1, P)), use_cache=True).past_key_values
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    real = sum(t.numel() * t.element_size() for t in tensors)
    assert cost.kv_bytes_per_token(arch) * P == real


QWEN3_06B = {"N": 0.6e9, "layers": 28, "query_heads": 16, "kv_heads": 8, "head_dim": 128, "bytes_per_value": 2}
H100 = {"peak_flops": 989.4e12, "bandwidth": 3.35e12, "price_per_gpu_hour": 2.5}


def test_kinetics_and_seconds_of_one_qwen3_request_by_hand():
    P, G, n = 100, 400, 2  # two sequences of T = 200 tokens sharing a 100-token prompt
    # attended keys: prefill 100·101/2 = 5050; decode 2 · (200·100 + 200·201/2) = 80200
    attn = 4 * 28 * 16 * 128 * (5050 + 80200)
    attention = 2 * 0.6e9 * (100 + 400) + attn
    assert cost.request_cost("attention", QWEN3_06B, P, G, n) == pytest.approx(attention, rel=1e-12)
    # KV bytes per token 2·28·8·128·2 = 114688; tokens read: 200·100 (prompt, shared) + 2 · (0 + 1 + ... + 199)
    kv_read = 114688 * (200 * 100 + 2 * 19900)
    kinetics = attention + (989.4e12 / 3.35e12) * kv_read
    assert cost.request_cost("kinetics", QWEN3_06B, P, G, n, hardware=H100) == pytest.approx(kinetics, rel=1e-12)
    # seconds on H100 at batch 64: prefill is compute-bound (1.2116e11 FLOPs / peak = 1.22e-4 s against a weight
    # share of 2·1.2e9/64 B / bandwidth = 1.1e-5 s). Every decode step is memory-bound: at step 0 compute
    # 2·(1.2e9 + 229376·101) / peak = 2.5e-6 s < memory (3.75e7 + 114688·100) / bandwidth = 1.5e-5 s, and memory
    # grows faster per step (2·114688 / bandwidth against 2·229376 / peak), so the sum is the memory sum.
    prefill = (2 * 0.6e9 * 100 + 4 * 28 * 2048 * 5050) / 989.4e12
    decode = (200 * (2 * 1.2e9 / 64 + 114688 * 100) + 114688 * 2 * 19900) / 3.35e12
    got = cost.request_cost("seconds", QWEN3_06B, P, G, n, hardware=H100, batch_size=64)
    assert got == pytest.approx(prefill + decode, rel=1e-12)
    assert cost.request_cost("dollars", QWEN3_06B, P, G, n, hardware=H100, batch_size=64) == pytest.approx(
        (prefill + decode) * 2.5 / 3600, rel=1e-12)


def test_roofline_sum_matches_a_step_by_step_loop():
    """The closed-form Σ max(compute, memory) against a plain loop over decode steps, across the regime change."""
    arch = dict(QWEN3_06B)
    for P, T, n, batch in itertools.product([0, 7, 3000], [1, 5, 900], [1, 3], [1, 256]):
        peak, bw = H100["peak_flops"], H100["bandwidth"]
        weights = 0.6e9 * 2 / batch
        steps = [max(n * (2 * 0.6e9 + 4 * 28 * 2048 * (P + j + 1)) / peak,
                     (n * weights + 114688 * (P + n * j)) / bw) for j in range(T)]
        prefill = max((2 * 0.6e9 * P + 4 * 28 * 2048 * P * (P + 1) / 2) / peak, n * weights / bw if P else 0.0)
        got = cost.request_cost("seconds", arch, P, n * T, n, hardware=H100, batch_size=batch)
        assert got == pytest.approx(prefill + sum(steps), rel=1e-9), (P, T, n, batch)


@pytest.mark.parametrize("name", ["forward", "attention"])
def test_sequences_sharing_a_prompt_save_exactly_the_shared_prefill(name):
    P, T, n = 300, 120, 5
    shared = cost.request_cost(name, QWEN3_06B, P, n * T, n)
    separate = n * cost.request_cost(name, QWEN3_06B, P, T, 1)
    prefill = cost.request_cost(name, QWEN3_06B, P, 0, 1)
    assert separate - shared == pytest.approx((n - 1) * prefill, rel=1e-12)


def test_paper_is_two_n_t_and_vectorised():
    G = np.array([0, 10, 250])
    np.testing.assert_array_equal(cost.request_cost("paper", {"N": 1e9}, [5, 5, 5], G), 2e9 * G)


def test_missing_architecture_names_the_key():
    with pytest.raises(cost.MissingArchitecture, match="layers.*pythia-x.*architecture: block"):
        cost.request_cost("attention", {"N": 1e9}, 10, 10, model="pythia-x")
    cost.request_cost("forward", {"N": 1e9}, 10, 10)  # needs nothing but N


def test_an_unbuilt_local_model_folder_has_no_architecture_yet(tmp_path):
    """A demo model's folder before its build is neither a folder nor a Hub id: no facts, not a Hub error."""
    from cotscale.architecture import config_json

    assert config_json({"hf_id": str(tmp_path / "results/demo_models/tiny/main")}) is None
    (tmp_path / "built").mkdir()
    (tmp_path / "built/config.json").write_text("{}")
    assert config_json({"hf_id": str(tmp_path / "built")}) == tmp_path / "built/config.json"


KNOWN_TOTALS = [  # config.json values; total (and non-embedding) parameters as published
    ("pythia-160m", dict(model_type="gpt_neox", num_hidden_layers=12, hidden_size=768, num_attention_heads=12,
                         intermediate_size=3072, vocab_size=50304, tie_word_embeddings=False), 162_322_944, 85_056_000),
    ("pythia-410m", dict(model_type="gpt_neox", num_hidden_layers=24, hidden_size=1024, num_attention_heads=16,
                         intermediate_size=4096, vocab_size=50304, tie_word_embeddings=False), 405_334_016,
     302_311_424),
    ("pythia-1b", dict(model_type="gpt_neox", num_hidden_layers=16, hidden_size=2048, num_attention_heads=8,
                       intermediate_size=8192, vocab_size=50304, tie_word_embeddings=False), 1_011_781_632,
     805_736_448),
    ("Llama-3.2-1B", dict(model_type="llama", num_hidden_layers=16, hidden_size=2048, num_attention_heads=32,
                          num_key_value_heads=8, head_dim=64, intermediate_size=8192, vocab_size=128256,
                          tie_word_embeddings=True), 1_235_814_400, None),
    ("Qwen3-0.6B", dict(model_type="qwen3", num_hidden_layers=28, hidden_size=1024, num_attention_heads=16,
                        num_key_value_heads=8, head_dim=128, intermediate_size=3072, vocab_size=151936,
                        tie_word_embeddings=True), 0.6e9, 0.44e9),
    ("Qwen3-8B", dict(model_type="qwen3", num_hidden_layers=36, hidden_size=4096, num_attention_heads=32,
                      num_key_value_heads=8, head_dim=128, intermediate_size=12288, vocab_size=151936,
                      tie_word_embeddings=False), 8.2e9, 6.95e9),
]


@pytest.mark.parametrize("name,cfg,total,non_embedding", KNOWN_TOTALS, ids=[k[0] for k in KNOWN_TOTALS])
def test_parameter_counts_match_the_published_totals(name, cfg, total, non_embedding):
    arch = architecture.from_hf_config(cfg)
    rel = 0 if isinstance(total, int) else 0.01  # model cards round to two digits
    assert arch["total_params"] == pytest.approx(total, rel=rel)
    if non_embedding:
        assert arch["non_embedding_params"] == pytest.approx(non_embedding, rel=0 if rel == 0 else 0.01)


@pytest.mark.parametrize("kind", ["llama", "gpt_neox"])
def test_parameter_count_of_a_real_module(kind):
    model, _ = _tiny(kind)
    arch = architecture.from_hf_config(model.config.to_dict())
    assert arch["total_params"] == sum(p.numel() for p in model.parameters())


# --- tables: costs.csv from usage records, crossover per cost model, planner, configs ------------------------------
def _keys_by_loop(P, G, n, offset):
    """Keys attended, counted token by token (the convention in words: each token attends its causal context)."""
    keys = sum(offset + i + 1 for i in range(P))
    for _ in range(n):
        keys += sum(offset + P + j + 1 for j in range(G // n))
    return keys


def test_costs_priced_request_by_request_from_usage_records(tmp_path):
    import pandas as pd

    from cotscale.io import write_jsonl_gz
    from cotscale.usage import make_record

    records = [make_record("arc_challenge", 0, "generate", 30, 12, 1),
               make_record("arc_challenge", 1, "generate", 50, 40, 2),
               make_record("arc_challenge", 1, "loglikelihood", 3, scored_tokens=95)]
    path = tmp_path / "results/evals/m/cot/arc_challenge/usage.jsonl.gz"
    path.parent.mkdir(parents=True)
    write_jsonl_gz(path, records)
    tokens = pd.DataFrame([{"model": "m", "revision": "main", "family": "f", "N": 1e6, "D": 1e9, "strategy": "cot",
                            "benchmark": "arc_challenge", "task": "arc_challenge", "generate_requests": 2,
                            "documents": 2, "prompt_tokens": 83, "generated_tokens": 52, "token_unit": "tokens"}])
    arch = {"layers": 2, "query_heads": 4, "kv_heads": 2, "head_dim": 16}
    table = cost.cost_table(tokens, {"m": arch}, ["paper", "attention"], usage_paths=[path])
    row = table.set_index(["benchmark", "cost_model"])
    assert row.loc[("arc_challenge", "paper"), "cost_per_request"] == 2e6 * 52 / 2
    keys = _keys_by_loop(30, 12, 1, 0) + _keys_by_loop(50, 40, 2, 0) + _keys_by_loop(3, 0, 1, 92)
    attention = (2e6 * (83 + 52) + 4 * 2 * 64 * keys) / 2
    assert row.loc[("arc_challenge", "attention"), "cost_per_request"] == pytest.approx(attention, rel=1e-12)
    assert row.loc[("overall", "attention"), "ratio_to_paper"] == pytest.approx(attention / (2e6 * 26))
    assert set(table["priced_on"]) == {"requests"}
    # a sweep's budgets: overall rows priced on the run's prompt and the budget's generated tokens per request
    sweep = pd.DataFrame([{"model": "m", "strategy": "cot", "budget_kind": "max_gen_toks", "budget": b,
                           "benchmark": "overall", "metric": "accuracy", "tokens_per_request": t}
                          for b, t in [(16, 10.0), (64, 40.0)]])
    budgets = cost.cost_table(tokens, {"m": arch}, ["paper", "attention"], usage_paths=[path], sweep=sweep)
    budgets = budgets[budgets["budget"] != ""].set_index(["budget", "cost_model"])
    P = 83 / 2  # the run's prompt tokens per request
    for budget, G in (("max_gen_toks=16", 10.0), ("max_gen_toks=64", 40.0)):
        keys = P * (P + 1) / 2 + G * P + G * (G + 1) / 2
        assert budgets.loc[(budget, "attention"), "cost_per_request"] == pytest.approx(
            2e6 * (P + G) + 4 * 2 * 64 * keys, rel=1e-12)
        assert budgets.loc[(budget, "paper"), "cost_per_request"] == 2e6 * G
    assert set(budgets["priced_on"]) == {"mean_request"}
    # the decode steps alone: 2·N·G + 4·2·64·(G·P + G(G+1)/2), over 2·N·G
    G = 40.0
    assert budgets.loc[("max_gen_toks=64", "attention"), "decode_ratio_to_paper"] == pytest.approx(
        (2e6 * G + 4 * 2 * 64 * (G * P + G * (G + 1) / 2)) / (2e6 * G), rel=1e-12)
    assert budgets.loc[("max_gen_toks=64", "paper"), "decode_ratio_to_paper"] == 1.0
    # an inference_scaling.csv with its own cost models (priced per document, cotscale.sweep_cost): costs.csv takes
    # its numbers, one source for a budget's cost
    priced = pd.concat([sweep.assign(cost_model=name, cost_per_request=value) for name, value in
                        (("paper", 2e6 * sweep["tokens_per_request"]), ("attention", [7.0e7, 9.0e7]))])
    budgets = cost.cost_table(tokens, {"m": arch}, ["paper", "attention"], usage_paths=[path], sweep=priced)
    budgets = budgets[budgets["budget"] != ""].set_index(["budget", "cost_model"])
    assert budgets.loc[("max_gen_toks=64", "attention"), "cost_per_request"] == 9.0e7
    assert budgets.loc[("max_gen_toks=64", "attention"), "ratio_to_paper"] == pytest.approx(9.0e7 / (2e6 * 40))
    assert set(budgets["priced_on"]) == {"documents"} and len(budgets) == 4
    # measured beside modelled seconds: the job's wall seconds over Σ of its requests' roofline seconds
    cpu = {"name": "cpu", "peak_flops": 1e10, "bandwidth": 2e9, "price_per_gpu_hour": 0.1}
    timed = cost.cost_table(tokens, {"m": arch}, ["paper", "seconds"], cpu, 8, usage_paths=[path],
                            compute=pd.DataFrame({"model": ["m"], "strategy": ["cot"], "wall_seconds": [3.0]}))
    row = timed[(timed["cost_model"] == "seconds") & (timed["benchmark"] == "overall")].iloc[0]
    modelled = sum(cost.request_cost("seconds", {**arch, "N": 1e6}, p, g, k, off, hardware=cpu, batch_size=8)
                   for p, g, k, off in [(30, 12, 1, 0), (50, 40, 2, 0), (3, 0, 1, 92)])
    assert row["modelled_seconds"] == pytest.approx(modelled, rel=1e-12)
    assert row["measured_over_modelled"] == pytest.approx(3.0 / modelled, rel=1e-12)
    # without usage records: the mean request, said so
    assert set(cost.cost_table(tokens, {"m": arch}, ["paper"])["priced_on"]) == {"mean_request"}
    # a model without the architecture: paper still priced, attention empty with the missing key named
    bare = cost.cost_table(tokens, {}, ["paper", "attention"], usage_paths=[path]).set_index("cost_model")
    assert bare.loc["paper", "cost_per_request"].notna().all()
    assert bare.loc["attention", "cost_per_request"].isna().all()
    assert bare.loc["attention", "reason"].str.contains("needs layers").all()


def test_crossover_per_cost_model_keeps_paper_and_prices_tef_alike():
    import pandas as pd

    from cotscale import flops
    from cotscale.fits import crossover_by_cost_model

    pairs = pd.DataFrame([{"model": "m", "family": "f", "N": 1e9, "train_flops": 1e21, "tef": 3e21,
                           "tok_std": 10.0, "tok_cot": 50.0, "token_unit": "tokens"}])
    costs = pd.DataFrame([
        {"model": "m", "strategy": s, "benchmark": b, "cost_model": "attention", "unit": "FLOPs",
         "cost_per_request": c, "reason": ""}
        for s, b, c in [("base", "arc_challenge", 3e10), ("base", "mmlu", 5e10), ("cot", "arc_challenge", 2e11),
                        ("cot", "mmlu", 1e11), ("cot", "gsm8k", 9e11)]])  # gsm8k: CoT only, not compared
    out = crossover_by_cost_model(pairs, costs, "base", "cot").set_index("cost_model")
    assert out.loc["paper", "crossover_requests"] == flops.crossover(pairs)["crossover_requests"].iloc[0]
    assert out.loc["attention", "crossover_requests"] == pytest.approx(2e21 / (1.5e11 - 4e10))
    # seconds: TEF and C run at the hardware's peak, the requests in roofline seconds
    secs = costs.assign(cost_model="seconds", unit="s", cost_per_request=costs["cost_per_request"] / 1e15)
    out = crossover_by_cost_model(pairs, secs, "base", "cot", {"peak_flops": 1e15, "price_per_gpu_hour": 1.0})
    assert out.set_index("cost_model").loc["seconds", "crossover_requests"] == pytest.approx(2e21 / (1.5e11 - 4e10))


def test_planner_forward_cost_model_equals_forward_tokens(tmp_path):
    """cost model ``forward`` through cotscale.cost ranks as the planner's own ``--cost forward`` (2·N·t)."""
    import pandas as pd

    from cotscale import plan
    from tests.test_plan import COMPUTE, MODELS, TOKENS, benchmarks

    folder = tmp_path / "tables"
    folder.mkdir()
    benchmarks().to_csv(folder / "benchmarks.csv", index=False)
    TOKENS.to_csv(folder / "tokens.csv", index=False)
    COMPUTE.to_csv(folder / "compute.csv", index=False)
    with pytest.raises(plan.PlanError, match="models.csv"):
        plan.operating_points(plan.read_tables_dir(folder), cost_model="attention")
    pd.DataFrame([{"model": m, "N": n} for m, (n, _) in MODELS.items()]).to_csv(folder / "models.csv", index=False)
    tables = plan.read_tables_dir(folder)
    by_model = plan.rank(plan.operating_points(tables, cost_model="forward"), 1e12, 0.3)
    by_tokens = plan.rank(plan.operating_points(tables, "forward"), 1e12, 0.3)
    assert list(by_model["model"]) == list(by_tokens["model"])
    np.testing.assert_allclose(by_model["lifetime_flops"], by_tokens["lifetime_flops"], rtol=1e-12)
    # without layers, attention prices nothing and says so
    with pytest.raises(plan.PlanError, match="no operating point"):
        plan.rank(plan.operating_points(tables, cost_model="attention"), 1e12, 0.3)


def test_reasoning_and_published_configs_carry_complete_architectures():
    from cotscale.config import ROOT, load_config

    reasoning = load_config(ROOT / "config" / "reasoning.yaml")
    archs = cost.architectures(reasoning, list(reasoning["models"]))
    assert len(archs) == 4
    for name, arch in archs.items():
        cost.check("kinetics", {**arch, "N": 1.0}, name)  # every key kinetics and seconds need
        # the stated totals are the formula's on the stated config.json values (second check: the model cards,
        # test_parameter_counts_match_the_published_totals)
        model_type = "qwen3"
        ff = {"Qwen3-0.6B": 3072, "Qwen3-1.7B": 6144, "Qwen3-4B": 9728, "Qwen3-8B": 12288}[name]
        assert architecture.count_params(arch, ff, model_type)["total_params"] == arch["total_params"]
    published = load_config(ROOT / "config" / "published.yaml")
    keys = ["Llama-3.2-1B", "OLMo-1B-0724-hf@step48000-tokens100B", "pythia-410m-deduped"]
    for name, arch in cost.architectures(published, keys).items():
        cost.check("kinetics", {**arch, "N": 1.0}, name)

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

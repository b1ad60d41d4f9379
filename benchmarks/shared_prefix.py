"""Benchmark: scoring each shared token prefix once (cotscale.lm.prefix) vs lm-eval's own path, paper-length prompts.

A hybrid document scores every answer choice on the same context + rationale + answer cue; self-consistency scores
the choices on each of its k rationales. Here: contexts of about ``--context`` tokens (a 5-shot MMLU prompt is ~600),
rationales of ``--rationale`` tokens (the paper's max_gen_toks 256), 4 multi-token choices, and for self-consistency
k rationales per document. The model is a randomly initialised Llama of ~20M parameters built in the script (hidden 512, 6 layers;
large enough that scoring is compute-bound on a CPU) with the demo's byte-level tokenizer; weights do not matter for
cost. Both sides score the same requests through cotscale's engine (``CotscaleLM.loglikelihood``, the standard format
on the augmented contexts: exactly what the hybrid format sends), one with ``shared_prefix=True``, one with ``False``;
computed tokens come from the usage records (``computed_tokens``), wall time is the scoring call, sides alternate
in order over the rounds. Run:

    python benchmarks/shared_prefix.py [--docs 2] [--k 5] [--rounds 2] [--json benchmarks/out/shared_prefix.json]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from pathlib import Path

from _common import add_quick, load_line, premise, save_json

# ARC-like answer texts of several tokens: one-token choices (MMLU's letters) lm-eval already scores on one run of the
# shared context (its logits_cache), so they gain nothing here
CHOICES = [" the sun warms the ground", " plants need water to grow", " ice melts when it is heated",
           " rocks break into smaller pieces"]
ANSWER_CUE = " The answer is:"


def build_model(folder: Path, hidden: int, layers: int, seed: int = 0) -> Path:
    """A randomly initialised Llama with the demo tokenizer (vocab 512), saved as an HF model folder."""
    import torch
    import transformers

    from cotscale.demo_models import DEFAULT_CORPUS, train_tokenizer

    tok = train_tokenizer(DEFAULT_CORPUS, 512)
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers,
                                      num_attention_heads=hidden // 64, num_key_value_heads=hidden // 64,
                                      intermediate_size=hidden * 11 // 4, max_position_embeddings=2048,
                                      bos_token_id=0, eos_token_id=1, pad_token_id=2, dtype="float32")
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def text_of(tok, rng: random.Random, words: list[str], tokens: int) -> str:
    """Random corpus words of about ``tokens`` tokens under ``tok``."""
    out: list[str] = []
    while len(tok.encode(" ".join(out))) < tokens:
        out.extend(rng.choice(words) for _ in range(8))
    while len(tok.encode(" ".join(out))) > tokens:
        out.pop()
    return " ".join(out)


def requests_of(tok, docs: int, k: int, context: int, rationale: int, seed: int = 0):
    """Per document a context and k rationales; the four choices scored on each context + rationale + cue."""
    from lm_eval.api.instance import Instance

    from cotscale.demo_models import DEFAULT_CORPUS, read_corpus

    rng = random.Random(seed)
    words = " ".join(read_corpus(DEFAULT_CORPUS)).split()
    out = []
    for doc_id in range(docs):
        prompt = text_of(tok, rng, words, context) + "\nAnswer: Let's think step by step."
        for _ in range(k):
            augmented = prompt + " " + text_of(tok, rng, words, rationale) + ANSWER_CUE
            out += [Instance("loglikelihood", {}, (augmented, c), i, ("bench", doc_id, 1))
                    for i, c in enumerate(CHOICES)]
    return out


def score(lm, requests) -> dict:
    lm.begin_task("standard")
    start = time.perf_counter()
    lm.loglikelihood(requests, disable_tqdm=True)
    wall = time.perf_counter() - start
    records = [r for r in lm.usage if r["kind"] == "loglikelihood"]
    return {"wall_s": wall, "computed_tokens": sum(r["computed_tokens"] for r in records),
            "scored_tokens": sum(r["scored_tokens"] for r in records)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2)
    ap.add_argument("--k", type=int, default=5, help="self-consistency rationales per document")
    ap.add_argument("--context", type=int, default=600)
    ap.add_argument("--rationale", type=int, default=256)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write every round and the medians here")
    add_quick(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.docs, a.k, a.context, a.rationale, a.hidden, a.layers, a.rounds = 1, 2, 64, 32, 128, 2, 1

    import logging

    logging.disable(logging.WARNING)
    from cotscale.lm import CotscaleLM

    with tempfile.TemporaryDirectory(prefix="cotscale-bench-") as tmp:
        model = build_model(Path(tmp), a.hidden, a.layers)
        import torch
        import transformers

        params = sum(p.numel() for p in transformers.AutoModelForCausalLM.from_pretrained(model).parameters())
        tok = transformers.AutoTokenizer.from_pretrained(model)
        cases = {"hybrid": requests_of(tok, a.docs, 1, a.context, a.rationale),
                 f"self_consistency_k{a.k}": requests_of(tok, a.docs, a.k, a.context, a.rationale, seed=1)}
        sides = {name: CotscaleLM(pretrained=str(model), backend="hf", dtype="float32", batch_size=a.batch_size,
                                  device="cpu", shared_prefix=name == "shared") for name in ("shared", "unshared")}
        score(sides["shared"], cases["hybrid"][:4])  # warm-up, both sides
        score(sides["unshared"], cases["hybrid"][:4])
        rows = {case: {side: [] for side in sides} for case in cases}
        for rnd in range(a.rounds):
            for case, requests in cases.items():
                for side in (("shared", "unshared") if rnd % 2 == 0 else ("unshared", "shared")):
                    rows[case][side].append(score(sides[side], requests))

    print(f"random Llama {params / 1e6:.1f}M params (hidden {a.hidden}, {a.layers} layers), threads "
          f"{torch.get_num_threads()}, {a.docs} documents, context ~{a.context} + rationale ~{a.rationale} tokens, "
          f"4 choices, {a.rounds} rounds (medians); {load_line()}")
    print(f"{'case':22s} {'side':9s} {'requests':>8s} {'scored tok':>10s} {'computed tok':>12s} {'wall s':>8s}")
    med, ratios = {}, {}
    for case, by_side in rows.items():
        med[case] = {side: {key: statistics.median(r[key] for r in rs) for key in rs[0]}
                     for side, rs in by_side.items()}
        for side, m in med[case].items():
            print(f"{case:22s} {side:9s} {len(cases[case]):8d} {m['scored_tokens']:10.0f} {m['computed_tokens']:12.0f} "
                  f"{m['wall_s']:8.2f}")
        u, s = med[case]["unshared"], med[case]["shared"]
        ratios[case] = {"tokens": u["computed_tokens"] / s["computed_tokens"], "wall": u["wall_s"] / s["wall_s"],
                        "wall_per_round": [x["wall_s"] / y["wall_s"]
                                           for x, y in zip(by_side["unshared"], by_side["shared"], strict=True)]}
        print(f"{case}: unshared / shared = {ratios[case]['tokens']:.2f}x computed tokens, "
              f"{ratios[case]['wall']:.2f}x scoring wall time (per round "
              f"{', '.join(f'{r:.2f}' for r in ratios[case]['wall_per_round'])}; targets >=3x, >=2x)")
        premise(u["scored_tokens"] == s["scored_tokens"],
                f"{case}: both sides must score the same ids ({u['scored_tokens']} vs {s['scored_tokens']})")
        premise(s["computed_tokens"] < u["computed_tokens"], f"{case}: sharing computed no fewer tokens")
    result = {"medians": med, "ratios": ratios, "rounds": rows, "params": params,
              "args": {k: str(v) for k, v in vars(a).items()}}
    save_json(a.json, result)
    return result


if __name__ == "__main__":
    main()

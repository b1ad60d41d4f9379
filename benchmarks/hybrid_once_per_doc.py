"""Benchmark: hybrid generation once per document (cotscale) vs once per answer choice (the seed's scheme).

One 4-choice mini task, the HF backend on CPU, the same prompts for every scheme:

* ``per_choice``   — the seed: a rationale generated for EVERY answer choice (temperature 0.7), each choice scored
                     on its own rationale.
* ``per_doc``      — cotscale: one rationale per document (same decoding, temperature 0.7), every choice scored on
                     that same rationale.
* ``per_doc_greedy`` — cotscale's default hybrid (greedy), for reference.

Generated tokens come from cotscale's usage records (backend token ids); wall time is the whole hybrid step
(generation + scoring). Several rounds, medians, ratios per_choice / per_doc. Run:

    python benchmarks/hybrid_once_per_doc.py [--docs 24] [--rounds 3] [--max-gen-toks 64] [--model DIR]

Without ``--model`` it trains the tiny demo Llama (hidden 64, 2 layers) in a temporary folder first (~10 s).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _common import ROOT, add_quick, premise, save_json


def mini_task(n_docs: int):
    """4-choice documents of the bundled demo ARC-Challenge (fixed order: the same prompts for every scheme)."""
    import json

    from lm_eval.api.instance import Instance

    lines = (ROOT / "config" / "tasks" / "demo_data" / "arc_challenge" / "test.jsonl").read_text().splitlines()
    rows = [r for r in (json.loads(line) for line in lines if line.strip()) if len(r["choices"]["text"]) >= 4]
    docs = [rows[i % len(rows)] for i in range(n_docs)]
    requests = []
    for doc_id, doc in enumerate(docs):
        context = f"Question: {doc['question']}\nAnswer:"
        for i, choice in enumerate(doc["choices"]["text"][:4]):
            requests.append(Instance("loglikelihood", {}, (context, " " + choice), i, ("mini_mc", doc_id, 1)))
    return requests


def per_choice(lm, requests, max_gen_toks: int, temperature: float):
    """The seed's hybrid: generate a rationale for each (document, choice) and score each choice on its own."""
    s = lm.strategy
    gen_kwargs = {"until": [], "max_gen_toks": max_gen_toks, "do_sample": True, "temperature": temperature}
    items = [(r, r.args[0] + s["cue"], dict(gen_kwargs)) for r in requests]
    texts = [g.texts[0] for g in lm.run.generate(items)]  # one sequence each, usage recorded
    scored = [(r, r.args[0] + s["cue"] + t + s["answer_cue"], r.args[1]) for r, t in zip(requests, texts)]
    return [s.answer for s in lm.run.score(scored)]


def run(lm, scheme: str, requests, max_gen_toks: int, temperature: float, seed: int) -> dict:
    import torch

    base = {"format": "hybrid", "prompt": "cot", "max_gen_toks": max_gen_toks}
    if scheme == "per_doc_greedy":
        lm.begin_task(base)  # empty usage records
    else:
        lm.begin_task(base, decoding="sample", temperature=temperature)
    torch.manual_seed(seed)
    start = time.perf_counter()
    if scheme == "per_choice":
        per_choice(lm, requests, max_gen_toks, temperature)
    else:
        lm.loglikelihood(requests, disable_tqdm=True)
    wall = time.perf_counter() - start
    gen = [r for r in lm.usage if r["kind"] == "generate"]
    return {"wall_s": wall, "generated_tokens": sum(r["generated_tokens"] for r in gen), "generate_requests": len(gen),
            "loglikelihood_requests": sum(r["kind"] == "loglikelihood" for r in lm.usage)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--max-gen-toks", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=0.7)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--model", type=Path, help="HF model folder (default: train the tiny demo model)")
    ap.add_argument("--json", type=Path, help="also write the medians here")
    add_quick(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.docs, a.rounds, a.max_gen_toks = 4, 1, 8

    import logging

    logging.disable(logging.WARNING)
    from cotscale.lm import CotscaleLM

    with tempfile.TemporaryDirectory(prefix="cotscale-bench-") as tmp:
        model = a.model
        if model is None:
            from cotscale.demo_models import build_demo_model

            spec = dict(arch="llama", hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128,
                        vocab_size=512, seq_len=64, batch_size=8, lr=3e-3)
            build_demo_model(spec, {"main": 60}, Path(tmp))
            model = Path(tmp) / "main"
        lm = CotscaleLM(pretrained=str(model), backend="hf", dtype="float32", batch_size=a.batch_size, device="cpu")
        requests = mini_task(a.docs)
        schemes = ["per_choice", "per_doc", "per_doc_greedy"]
        run(lm, "per_doc", requests[:8], a.max_gen_toks, a.temperature, 0)  # warm-up
        rows: dict[str, list[dict]] = {s: [] for s in schemes}
        for rnd in range(a.rounds):
            for scheme in (schemes if rnd % 2 == 0 else schemes[::-1]):
                rows[scheme].append(run(lm, scheme, requests, a.max_gen_toks, a.temperature, seed=1000 + rnd))

    med = {s: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for s, rs in rows.items()}
    print(f"{a.docs} documents x 4 choices, HF backend on CPU, max_gen_toks={a.max_gen_toks}, "
          f"temperature={a.temperature}, {a.rounds} rounds (medians)")
    print(f"{'scheme':16s} {'gen requests':>12s} {'ll requests':>11s} {'gen tokens':>10s} {'wall s':>8s}")
    for s in schemes:
        m = med[s]
        print(f"{s:16s} {m['generate_requests']:12.0f} {m['loglikelihood_requests']:11.0f} "
              f"{m['generated_tokens']:10.0f} {m['wall_s']:8.2f}")
    ratios = {"tokens": med["per_choice"]["generated_tokens"] / max(med["per_doc"]["generated_tokens"], 1),
              "wall": med["per_choice"]["wall_s"] / med["per_doc"]["wall_s"],
              "tokens_vs_greedy": med["per_choice"]["generated_tokens"]
              / max(med["per_doc_greedy"]["generated_tokens"], 1),
              "wall_vs_greedy": med["per_choice"]["wall_s"] / med["per_doc_greedy"]["wall_s"]}
    print(f"per_choice / per_doc (same decoding): {ratios['tokens']:.2f}x tokens, {ratios['wall']:.2f}x wall time "
          "(targets: >=3x, >=2.5x)")
    print(f"per_choice / per_doc_greedy:          {ratios['tokens_vs_greedy']:.2f}x tokens, "
          f"{ratios['wall_vs_greedy']:.2f}x wall time")
    # per_choice generates one rationale per choice, per_doc one per document: 4 choices, so 4x the requests
    premise(med["per_choice"]["generate_requests"] == 4 * med["per_doc"]["generate_requests"] == 4 * a.docs,
            f"generate requests per_choice {med['per_choice']['generate_requests']}, per_doc "
            f"{med['per_doc']['generate_requests']} for {a.docs} documents of 4 choices")
    result = {"medians": med, "ratios": ratios, "rounds": rows, "args": {k: str(v) for k, v in vars(a).items()}}
    save_json(a.json, result)
    return result


if __name__ == "__main__":
    main()

"""Benchmark (CUDA): generated tokens/s of cotscale's HF generation vs bare HF `generate` on the same prompts.

The demo's tinyllama-l (config/demo.yaml, trained here first) in bfloat16 on one GPU; prompts are the gsm8k mini
benchmark's questions in the zero-shot CoT format, repeated to `--prompts`; greedy, `--max-gen-toks` new tokens, EOS
as the only stop (so both sides decode exactly the same tokens), `--batch-size` prompts per batch on both sides.

* ``bare``     — `AutoModelForCausalLM.generate` on left-padded batches; tokens counted to the first EOS.
* ``cotscale`` — `CotscaleLM.generate_until` (lm-eval's HFLM underneath, with cotscale's per-row stop criteria and
                 token capture); tokens from its usage records.
* ``job``      — one whole evaluation job (`run_evaluation`, cot_generate on the gsm8k mini benchmark): model load,
                 task building and scoring included, for scale.

Each side runs once untimed (CUDA warm-up), then `--rounds` timed rounds; medians. Run:

    python benchmarks/hf_generate_throughput.py [--prompts 192] [--batch-size 64] [--max-gen-toks 256] [--json out.json]

(`--device cpu` runs the same comparison on CPU, for trying the script out; the numbers that matter are CUDA's.)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import ROOT, add_quick, build_demo_llama, one_model_config, premise, save_json

from cotscale.io import iter_jsonl_gz

COT_PROMPT = "Q: {question}\nA: Let's think step by step."


def prompts(n: int) -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "config/tasks/demo_data/gsm8k/test.jsonl").read_text().splitlines()]
    return [COT_PROMPT.format(question=rows[i % len(rows)]["question"]) for i in range(n)]


def _sync(device: str):
    import torch

    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def bare(model_dir: Path, texts: list[str], batch_size: int, max_new: int, device: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).to(device).eval()
    sync = _sync(device)

    def run() -> tuple[float, int]:
        tokens = 0
        sync()
        started = time.perf_counter()
        for start in range(0, len(texts), batch_size):
            batch = tok(texts[start:start + batch_size], return_tensors="pt", padding=True).to(device)
            with torch.no_grad():
                out = model.generate(**batch, max_new_tokens=max_new, do_sample=False,
                                     eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
            for row in out[:, batch["input_ids"].shape[1]:].tolist():
                tokens += row.index(tok.eos_token_id) + 1 if tok.eos_token_id in row else len(row)
        sync()
        return time.perf_counter() - started, tokens

    return run


def wrapped(model_dir: Path, texts: list[str], batch_size: int, max_new: int, device: str):
    from lm_eval.api.instance import Instance

    from cotscale.lm import CotscaleLM

    lm = CotscaleLM(pretrained=str(model_dir), backend="hf", dtype="bfloat16", batch_size=batch_size, device=device,
                    strategy={"format": "generate", "prompt": "plain", "max_gen_toks": max_new})
    gen_kwargs = {"until": [], "do_sample": False, "temperature": 0.0}
    sync = _sync(device)

    def run() -> tuple[float, int]:
        lm.usage.clear()
        requests = [Instance("generate_until", {}, (text, dict(gen_kwargs)), 0, ("bench", i, 1))
                    for i, text in enumerate(texts)]
        sync()
        started = time.perf_counter()
        lm.generate_until(requests, disable_tqdm=True)
        sync()
        return time.perf_counter() - started, sum(r["generated_tokens"] for r in lm.usage)

    return run


def job(model_dir: Path, scratch: Path, batch_size: int, max_new: int, device: str) -> dict:
    from cotscale.evaluate import run_evaluation

    config = one_model_config(model_dir, device=device, dtype="bfloat16", batch_size=batch_size)
    # one generation budget: the demo's cot_generate sweeps [12, 24, 48], whose largest must be max_gen_toks
    config["strategies"]["cot_generate"].update(max_gen_toks=max_new, max_gen_toks_sweep=[])
    started = time.perf_counter()
    results = run_evaluation(config, "m", "cot_generate", "gsm8k", scratch / "job")
    wall = time.perf_counter() - started
    usage = list(iter_jsonl_gz(scratch / "job" / "usage.jsonl.gz"))
    generated = sum(r["generated_tokens"] for r in usage)
    return {"requests": len(usage), "generated_tokens": generated, "job_wall_s": round(wall, 2),
            "evaluation_wall_s": results["cotscale"]["wall_seconds"], "tokens_per_s_job": round(generated / wall, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=192)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-gen-toks", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", type=Path)
    add_quick(parser)
    args = parser.parse_args()
    if args.quick:  # on CPU (CI has no GPU): a few prompts, a few tokens, a model trained 20 steps
        args.prompts, args.batch_size, args.max_gen_toks, args.rounds, args.device = 4, 2, 8, 1, "cpu"

    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("hf_generate_throughput: no CUDA GPU is visible")
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    texts = prompts(args.prompts)
    result: dict = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else args.device, "torch": torch.__version__, "prompts": len(texts),
                    "batch_size": args.batch_size, "max_gen_toks": args.max_gen_toks, "dtype": "bfloat16"}
    with tempfile.TemporaryDirectory(prefix="cotscale-tps-") as scratch:
        scratch = Path(scratch)
        model = build_demo_llama(scratch / "model", steps=20 if args.quick else None)
        for name, make in (("bare", bare), ("cotscale", wrapped)):
            run = make(model, texts, args.batch_size, args.max_gen_toks, args.device)
            run()  # warm-up
            rounds = [run() for _ in range(args.rounds)]
            wall = statistics.median(r[0] for r in rounds)
            tokens = rounds[0][1]
            assert all(r[1] == tokens for r in rounds), rounds
            result[name] = {"generated_tokens": tokens, "wall_s": round(wall, 3),
                            "tokens_per_s": round(tokens / wall, 1), "rounds_s": [round(r[0], 3) for r in rounds]}
        premise(result["bare"]["generated_tokens"] == result["cotscale"]["generated_tokens"],
                f"bare generate decoded {result['bare']['generated_tokens']} tokens, cotscale "
                f"{result['cotscale']['generated_tokens']}: the two sides must decode the same tokens")
        result["cotscale_over_bare_tokens_per_s"] = round(result["cotscale"]["tokens_per_s"]
                                                          / result["bare"]["tokens_per_s"], 3)
        result["job"] = job(model, scratch, args.batch_size, args.max_gen_toks, args.device)
    print(json.dumps(result, indent=2))
    save_json(args.json, result)


if __name__ == "__main__":
    main()

"""Device check: evaluation jobs on the hf backend on a CUDA GPU, against the same jobs on CPU.

Calls the evaluate rule's own function (cotscale.evaluate.run_evaluation) on the demo's tinyllama-l (trained here
first) and the bundled mini benchmarks, offline:

* hybrid_cot and beam on arc_challenge, float32 on CPU and on CUDA: the same answers, the same generated tokens,
  the choices' log-likelihoods within a tolerance (different kernels);
* hybrid_cot in bfloat16 on CUDA (the paper grid's dtype): accuracy and wall time beside float32;
* self_consistency on gsm8k on CUDA: k sampled sequences per document, lm-eval's repeats and majority vote;
* data_parallel 2 on a one-GPU host: the job's one clear error.

    python benchmarks/cuda_check.py [--docs 24] [--json out.json]

Needs a CUDA GPU (it says so and stops otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from _common import add_quick, build_demo_llama, one_model_config, save_json

from cotscale.io import iter_jsonl_gz


def _config(model_dir: Path, docs: int, device: str, dtype: str, data_parallel: int = 1) -> dict:
    return one_model_config(model_dir, device=device, dtype=dtype, limit=docs, data_parallel=data_parallel)


def _run(config: dict, strategy: str, task: str, out: Path) -> dict:
    from cotscale.evaluate import run_evaluation

    started = time.perf_counter()
    run_evaluation(config, "m", strategy, task, out)
    results = json.loads((out / "results.json").read_text())
    return {"results": results, "seconds": time.perf_counter() - started,
            "samples": list(iter_jsonl_gz(out / "samples.jsonl.gz")), "usage": list(iter_jsonl_gz(out / "usage.jsonl.gz"))}


def _compare(cpu: dict, gpu: dict, task: str) -> dict:
    """Per-choice log-likelihoods, answers and token counts of the same job on CPU and on CUDA."""
    by_doc = {s["doc_id"]: s for s in gpu["samples"]}
    diffs, same_rationale = [], 0
    for sample in cpu["samples"]:
        other = by_doc[sample["doc_id"]]
        diffs += [abs(float(a[0]) - float(b[0])) for a, b in zip(sample["filtered_resps"], other["filtered_resps"])]
        same_rationale += sample.get("rationales") == other.get("rationales")
    tokens = [sum(r["generated_tokens"] for r in run["usage"]) for run in (cpu, gpu)]
    acc = [run["results"]["results"][task]["acc,none"] for run in (cpu, gpu)]
    return {"acc_cpu": acc[0], "acc_cuda": acc[1], "max_abs_loglikelihood_diff": max(diffs),
            "same_rationale_docs": f"{same_rationale}/{len(cpu['samples'])}", "generated_tokens_cpu": tokens[0],
            "generated_tokens_cuda": tokens[1], "seconds_cpu": round(cpu["seconds"], 2),
            "seconds_cuda": round(gpu["seconds"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=24)
    parser.add_argument("--json", type=Path)
    add_quick(parser)
    args = parser.parse_args()
    if args.quick:
        args.docs = 4

    import torch

    if not torch.cuda.is_available():
        if args.quick:  # CI's CPU machine: the quick mode checks that the script imports and parses, no more
            print("cuda_check --quick: no CUDA GPU is visible; skipped")
            return
        raise SystemExit("cuda_check: no CUDA GPU is visible")
    from cotscale.evaluate import EvaluationError

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[var] = "1"
    report: dict = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="cotscale-cuda-") as scratch:
        scratch = Path(scratch)
        model = build_demo_llama(scratch / "model", steps=20 if args.quick else None)
        runs = {}
        for strategy in ("hybrid_cot", "beam"):
            for device in ("cpu", "cuda"):
                runs[strategy, device] = _run(_config(model, args.docs, device, "float32"), strategy, "arc_challenge",
                                              scratch / f"{strategy}-{device}")
            report[f"{strategy} float32"] = _compare(runs[strategy, "cpu"], runs[strategy, "cuda"], "arc_challenge")
        bf16 = _run(_config(model, args.docs, "cuda", "bfloat16"), "hybrid_cot", "arc_challenge", scratch / "bf16")
        report["hybrid_cot bfloat16 cuda"] = {"acc": bf16["results"]["results"]["arc_challenge"]["acc,none"],
                                              "generated_tokens": sum(r["generated_tokens"] for r in bf16["usage"]),
                                              "seconds": round(bf16["seconds"], 2)}
        sc = _run(_config(model, args.docs, "cuda", "float32"), "self_consistency", "gsm8k", scratch / "sc")
        report["self_consistency gsm8k cuda"] = {
            "repeats": sc["results"]["configs"]["gsm8k"]["repeats"],
            "sequences_per_request": sorted({r["sequences"] for r in sc["usage"]}),
            "requests": len(sc["usage"]), "generated_tokens": sum(r["generated_tokens"] for r in sc["usage"]),
            "exact_match_flexible": sc["results"]["results"]["gsm8k"]["exact_match,flexible-extract"],
            "seconds": round(sc["seconds"], 2)}
        try:
            _run(_config(model, args.docs, "cuda", "float32", data_parallel=2), "hybrid_cot", "arc_challenge",
                 scratch / "dp2")
            report["data_parallel 2 on one GPU"] = "ran (unexpected on a one-GPU host)"
        except EvaluationError as exc:
            report["data_parallel 2 on one GPU"] = str(exc)
    print(json.dumps(report, indent=2))
    save_json(args.json, report)


if __name__ == "__main__":
    main()

"""Benchmark: costs.csv at paper scale — every usage record of the paper grid priced under all six cost models.

Setup (untimed): a synthetic results/evals tree of 26 model revisions × 6 strategies × 7 benchmarks = 1092
usage.jsonl.gz files holding --records records in all (7M by default, the paper grid at full test sets: see
aggregation.py), prompt 50–400 tokens, generations 0–8192 tokens over 1–8 sequences, log-likelihood records with a
shared context; a tokens.csv whose sums are those of the records (a second count, taken while writing them).
Timed, in a child process (peak RSS = its ru_maxrss): cotscale.cost.cost_table over that tree (each file decoded
once, every request priced by paper, forward, attention, kinetics, seconds and dollars on H100). Check: the paper
cost per request equals 2·N·Σ generated / generate requests from the second count. Targets: <= 60 s, < 2 GB.

    python benchmarks/cost_tables.py [--records 7000000] [--quick] [--data DIR (kept)] [--json OUT]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import PYTHON, ROOT, load_line, save_json

BENCHMARKS = ("arc_challenge", "gsm8k", "hellaswag", "mmlu", "winogrande", "xwinograd", "truthfulqa_mc1")
STRATEGIES = ("standard", "cot_generate", "hybrid", "hybrid_cot", "self_consistency", "thinking")
ARCH = {"layers": 24, "d_model": 2048, "query_heads": 16, "kv_heads": 8, "head_dim": 128}


def write_tree(folder: Path, records: int, seed: int = 0) -> None:
    """The synthetic usage files and tokens.csv (sums counted while writing)."""
    rng = np.random.default_rng(seed)
    jobs = [(f"model{m:02d}", s, b) for m in range(26) for s in STRATEGIES for b in BENCHMARKS]
    per_file = records // len(jobs)
    rows = []
    for model, strategy, bench in jobs:
        kind = rng.random(per_file) < (0.0 if strategy == "standard" else 0.3)
        P = rng.integers(50, 400, per_file)
        n = np.where(kind, rng.integers(1, 9, per_file), 1)
        G = np.where(kind, n * rng.integers(0, 8192 // 8, per_file), 0)
        scored = P + rng.integers(0, 200, per_file)
        lines = [
            f'{{"task":"{bench}","doc_id":{i},"kind":"generate","prompt_tokens":{p},"generated_tokens":{g},'
            f'"sequences":{k}}}' if gen else
            f'{{"task":"{bench}","doc_id":{i},"kind":"loglikelihood","prompt_tokens":{p},"generated_tokens":0,'
            f'"sequences":1,"scored_tokens":{sc}}}'
            for i, (gen, p, g, k, sc) in enumerate(zip(kind, P, G, n, scored))]
        path = folder / "results/evals" / model / strategy / bench / "usage.jsonl.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        with gzip.open(path, "wb", compresslevel=1) as fh:
            fh.write(("\n".join(lines) + "\n").encode())
        generate = int(kind.sum())
        rows.append({"model": model, "revision": "main", "family": "synthetic", "N": 1.5e9, "D": 1e12,
                     "strategy": strategy, "benchmark": bench, "task": bench, "generate_requests": generate,
                     "documents": per_file, "prompt_tokens": int(P.sum()), "generated_tokens": int(G.sum()),
                     "token_unit": "tokens"})
    import pandas as pd

    pd.DataFrame(rows).to_csv(folder / "tokens.csv", index=False)


def child(folder: Path) -> None:
    """The timed side: cost_table over the tree; prints one JSON line."""
    import pandas as pd

    from cotscale import cost

    tokens = pd.read_csv(folder / "tokens.csv")
    paths = sorted(folder.glob("results/evals/*/*/*/usage.jsonl.gz"))
    start = time.perf_counter()
    table = cost.cost_table(tokens, {m: ARCH for m in tokens["model"].unique()}, cost.COST_MODELS,
                            cost.load_hardware(), 64, usage_paths=paths)
    seconds = time.perf_counter() - start
    paper = table[(table["cost_model"] == "paper") & (table["benchmark"] != "overall")].merge(
        tokens, on=["model", "strategy", "benchmark"], suffixes=("", "_t"))
    per = paper["generate_requests"].where(paper["generate_requests"] > 0, paper["documents"])
    expected = 2 * paper["N"] * paper["generated_tokens"] / per
    ok = bool(np.allclose(paper["cost_per_request"], expected, rtol=1e-12))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": rss_mb, "files": len(paths), "rows": len(table),
                      "priced_on": sorted(table["priced_on"].unique()), "paper_check": ok}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=7_000_000)
    parser.add_argument("--quick", action="store_true", help="100k records (CI)")
    parser.add_argument("--data", type=Path, help="keep the synthetic tree here")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    records = 100_000 if args.quick else args.records
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.data or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        write_tree(folder, records)
        print(f"setup: {records} records in 1092 files, {time.perf_counter() - start:.1f} s", file=sys.stderr)
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        out = subprocess.run([PYTHON, __file__, "--child", str(folder)], capture_output=True, text=True, env=env,
                             check=True)
        result = {**json.loads(out.stdout.strip().splitlines()[-1]), "records": records, "load": load_line()}
    print(json.dumps(result, indent=1))
    save_json(args.json, result)
    if not result["paper_check"]:
        sys.exit("paper cost per request differs from 2·N·Σ generated / generate requests")
    if not args.quick and (result["seconds"] > 60 or result["peak_rss_mb"] > 2048):
        sys.exit(f"over target: {result['seconds']:.1f} s (<= 60), {result['peak_rss_mb']:.0f} MB (< 2048)")


if __name__ == "__main__":
    main()

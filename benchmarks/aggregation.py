"""Benchmark: aggregation of paper-scale usage records (results/evals/**/usage.jsonl.gz -> tables).

The benchmark first writes a synthetic paper-scale evaluation tree into a temporary folder (or --data): for every
model of config/config.yaml (26) × strategy (6) × benchmark (7), a small results.json in the evaluation contract, a
`benchmark:` TSV and a usage.jsonl.gz whose records are byte-for-byte what cotscale.usage.write_usage writes. Request
counts follow the real test sets (documents × answer choices; mmlu 57 and xwinograd 6 subtasks, their records
interleaved as lm-eval's length-sorted batching leaves them; one generation per document for the generative
strategies, k samples and k × choices scoring requests for self-consistency), scaled to --records (7M by default).

Each side runs in its own subprocess (peak RSS = the child's ru_maxrss), in alternating order over --rounds rounds:

* ``seed``        — the seed's approach: per model, every usage file json-loaded whole into one in-memory list,
                    then Python loops for the same per-task sums (requests, generate requests, tokens, documents).
* ``stream_v0``   — cotscale.aggregate.write_tables with the first streaming usage_summary (gzip text lines +
                    json.loads per record; kept below as the reference).
* ``write_tables``— cotscale.aggregate.write_tables as it is now (all four tables; the usage files dominate).

Reported: records/s (all records / seconds of the aggregation call), the child's peak RSS, and a check that every side
produced the same totals. Targets: write_tables >= 200k records/s and peak RSS < 1 GB. Run:

    python benchmarks/aggregation.py [--records 7000000] [--rounds 3] [--data DIR (kept and reused)]
                                     [--sides seed,stream_v0,write_tables] [--profile]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from _common import PYTHON, ROOT, load_line, save_json

# Real test-set sizes and answer choices of the seven benchmarks.
SUBTASKS = {
    "arc_challenge": {"arc_challenge": 1172},
    "gsm8k": {"gsm8k": 1319},
    "hellaswag": {"hellaswag": 10042},
    "mmlu": {f"mmlu_subject{i:02d}": 14042 // 57 + (i < 14042 % 57) for i in range(57)},
    "winogrande": {"winogrande": 1267},
    "xwinograd": {"xwinograd_en": 2325, "xwinograd_fr": 83, "xwinograd_jp": 959, "xwinograd_pt": 263,
                  "xwinograd_ru": 315, "xwinograd_zh": 504},
    "truthfulqa_mc1": {"truthfulqa_mc1": 817},
}
CHOICES = {"arc_challenge": 4, "gsm8k": 0, "hellaswag": 4, "mmlu": 4, "winogrande": 2, "xwinograd": 2,
           "truthfulqa_mc1": 7}
SIDES = ("seed", "stream_v0", "write_tables")


# ------------------------------------------------------------------------------------------------ synthetic data
def requests_per_doc(strategy: dict, bench: str) -> list[tuple[str, int]]:
    """[(kind, sequences)] one document costs under a strategy."""
    choices = CHOICES[bench]
    k = strategy["samples"] if strategy["decoding"] == "sample" else 1
    beams = strategy["num_beams"] if strategy["decoding"] == "beam" else 1
    if bench == "gsm8k" or strategy["format"] == "generate":
        return [("generate", k * beams)]
    if strategy["format"] == "loglikelihood":
        return [("loglikelihood", 1)] * choices
    return [("generate", k * beams)] + [("loglikelihood", 1)] * (choices * k)


def subtasks(bench: str, lm_task: str) -> dict[str, int]:
    """lm-eval (sub)task names and sizes: a single task is named as the strategy's variant (gsm8k_cot_zeroshot)."""
    return SUBTASKS[bench] if len(SUBTASKS[bench]) > 1 else {lm_task: SUBTASKS[bench][bench]}


def usage_lines(rng: random.Random, strategy: dict, bench: str, lm_task: str, scale: float) -> list[str]:
    per_doc = requests_per_doc(strategy, bench)
    lines = []
    for task, docs in subtasks(bench, lm_task).items():
        for doc in range(max(1, round(docs * scale))):
            for kind, seqs in per_doc:
                gen = sum(rng.randint(1, 256) for _ in range(seqs)) if kind == "generate" else 0
                lines.append(f'{{"task": "{task}", "doc_id": {doc}, "kind": "{kind}", '
                             f'"prompt_tokens": {rng.randint(40, 700)}, "generated_tokens": {gen}, "sequences": {seqs}}}\n')
    rng.shuffle(lines)  # lm-eval sorts requests by length across the subtasks of a group
    return lines


def results_json(model: dict, strategy: dict, bench: str, lm_task: str, rng: random.Random) -> dict:
    tasks = subtasks(bench, lm_task)
    metrics = lambda: {"acc,none": rng.random(), "acc_stderr,none": 0.01,  # noqa: E731
                       "exact_match,flexible-extract": rng.random(), "exact_match_stderr,flexible-extract": 0.01}
    results = {t: {"alias": t, **metrics()} for t in tasks}
    out = {"results": results, "configs": {}, "versions": {}, "n-shot": {},
           "n-samples": {t: {"original": n, "effective": n} for t, n in tasks.items()}}
    if len(tasks) > 1:
        out["group_subtasks"] = {lm_task: list(tasks)}
        out["groups"] = {lm_task: metrics()}
    out["cotscale"] = {"model": model["key"], "hf_id": model["hf_id"], "revision": model["revision"],
                       "family": model["family"], "N": model["N"], "D": model["D"], "strategy": strategy,
                       "benchmark": bench, "lm_eval_task": bench, "backend": "hf", "wall_seconds": 1.0}
    return out


def generate(data: Path, target_records: int, seed: int = 0) -> dict:
    """Write the synthetic evaluation tree; returns its manifest (reused when the same size is asked again)."""
    from cotscale.config import evaluation_jobs, lm_eval_task, load_config

    manifest_path = data / "manifest.json"
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        if (manifest["target_records"], manifest["seed"], manifest.get("format")) == (target_records, seed, 2):
            return manifest
    cfg = load_config(ROOT / "config" / "config.yaml")
    jobs = evaluation_jobs(cfg)
    full = sum(len(requests_per_doc(cfg["strategies"][s], b)) * sum(SUBTASKS[b].values()) for _, s, b in jobs)
    scale = target_records / full
    started = time.perf_counter()
    records, results, benches, nbytes = 0, [], [], 0
    for i, (m, s, b) in enumerate(jobs):
        rng = random.Random(seed * 1_000_003 + i)
        out = data / "results" / "evals" / m / s / b
        out.mkdir(parents=True, exist_ok=True)
        lm_task = lm_eval_task(cfg, s, b)
        lines = usage_lines(rng, cfg["strategies"][s], b, lm_task, scale)
        records += len(lines)
        raw = "".join(lines).encode()
        with open(out / "usage.jsonl.gz", "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0) as gz:
            gz.write(raw)  # compresslevel 9, as cotscale.io.write_jsonl_gz
        nbytes += (out / "usage.jsonl.gz").stat().st_size
        (out / "results.json").write_text(json.dumps(results_json(cfg["models"][m], cfg["strategies"][s], b, lm_task, rng)))
        bench = data / "logs" / "benchmarks" / "evaluate" / m / s / f"{b}.tsv"
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                         f"{rng.uniform(10, 5000):.2f}\t0:00:10\t{rng.uniform(500, 9000):.2f}\t0\t0\t0\t0\t0\t0\t0\n")
        results.append(str(out / "results.json"))
        benches.append(str(bench))
    manifest = {"target_records": target_records, "seed": seed, "format": 2, "records": records, "scale": scale,
                "jobs": len(jobs), "gz_bytes": nbytes, "generate_s": time.perf_counter() - started,
                "results": results, "benchmarks": benches}
    manifest_path.write_text(json.dumps(manifest))
    return manifest


# ------------------------------------------------------------------------------------------------ sides (children)
def stream_v0_usage_summary(usage_path: Path) -> dict[str, dict]:
    """The first streaming implementation of cotscale.aggregate.usage_summary (json.loads per line), kept as the
    reference."""
    from cotscale.aggregate import add_record, new_entry
    from cotscale.io import iter_jsonl_gz

    per_task: dict[str, dict] = defaultdict(new_entry)
    for record in iter_jsonl_gz(usage_path):
        add_record(per_task, record)
    return per_task


def seed_side(manifest: dict) -> dict:
    """Per model: every usage file loaded whole (one in-memory list per model), then Python loops."""
    by_model: dict[str, list[str]] = defaultdict(list)
    for path in manifest["results"]:
        by_model[Path(path).parents[2].name].append(str(Path(path).parent / "usage.jsonl.gz"))
    totals = {"requests": 0, "prompt_tokens": 0, "generated_tokens": 0, "documents": 0, "generate_requests": 0}
    for model, paths in by_model.items():
        records = []
        for p in paths:
            with gzip.open(p, "rt", encoding="utf-8") as fh:
                text = fh.read()
            loaded = json.loads("[" + ",".join(line for line in text.splitlines() if line.strip()) + "]")
            strategy = Path(p).parents[1].name
            for r in loaded:
                r["strategy"] = strategy
            records.extend(loaded)
        table: dict[tuple, dict] = {}
        for r in records:
            key = (r["strategy"], r["task"])
            if key not in table:
                table[key] = {"requests": 0, "generate_requests": 0, "prompt_tokens": 0, "generated_tokens": 0,
                              "docs": set()}
            e = table[key]
            e["requests"] += 1
            e["generate_requests"] += r["kind"] == "generate"
            e["prompt_tokens"] += r["prompt_tokens"]
            e["generated_tokens"] += r["generated_tokens"]
            e["docs"].add(r["doc_id"])
        for e in table.values():
            for k in ("requests", "generate_requests", "prompt_tokens", "generated_tokens"):
                totals[k] += e[k]
            totals["documents"] += len(e["docs"])
        del records, table
    return totals


def write_tables_side(manifest: dict, out_dir: Path, v0: bool) -> dict:
    import pandas as pd

    import cotscale.aggregate as agg
    from cotscale.config import load_config

    if v0:
        agg.usage_summary = stream_v0_usage_summary
    cfg = load_config(ROOT / "config" / "config.yaml")
    agg.write_tables(cfg, manifest["results"], out_dir, manifest["benchmarks"])
    tokens = pd.read_csv(out_dir / "tokens.csv")
    return {k: int(tokens[k].sum()) for k in ("requests", "prompt_tokens", "generated_tokens", "documents",
                                              "generate_requests")}


def child(side: str, data: Path, out: Path, profile: bool) -> None:
    manifest = json.loads((data / "manifest.json").read_text())
    # imports before the clock, as a rule process has them by the time it aggregates
    import pandas  # noqa: F401

    import cotscale.aggregate  # noqa: F401

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cotscale-agg-") as tmp:
        if side == "seed":
            totals = seed_side(manifest)
        else:
            totals = write_tables_side(manifest, Path(tmp), v0=side == "stream_v0")
    seconds = time.perf_counter() - started
    if profiler:
        profiler.stop()
        prof = ROOT / "benchmarks" / "out" / f"aggregation_{side}.pyinstrument.txt"
        prof.parent.mkdir(parents=True, exist_ok=True)
        prof.write_text(profiler.output_text(unicode=True, color=False))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps({"seconds": seconds, "records": manifest["records"], "totals": totals,
                               "maxrss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}))


# ------------------------------------------------------------------------------------------------ driver
def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=float, default=7e6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sides", default=",".join(SIDES))
    ap.add_argument("--data", type=Path, help="keep the synthetic tree here (reused when --records matches)")
    ap.add_argument("--profile", action="store_true", help="one extra pyinstrument run per side")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.child, a.data, a.out, a.profile)

    sides = a.sides.split(",")
    tmp = tempfile.TemporaryDirectory(prefix="cotscale-aggdata-") if a.data is None else None
    data = Path(tmp.name) if tmp else a.data
    data.mkdir(parents=True, exist_ok=True)
    try:
        manifest = generate(data, int(a.records))
        print(f"synthetic tree: {manifest['records']:,} usage records in {manifest['jobs']} evaluation folders "
              f"(scale {manifest['scale']:.3f} of the full test sets), {manifest['gz_bytes'] / 1e6:.0f} MB gzip; "
              f"written in {manifest['generate_s']:.0f} s")
        rows: dict[str, list[dict]] = {s: [] for s in sides}
        for rnd in range(a.rounds + (1 if a.profile else 0)):
            profile = a.profile and rnd == a.rounds
            for side in (sides if rnd % 2 == 0 else sides[::-1]):
                out = data / f"child-{side}.json"
                cmd = [PYTHON, __file__, "--child", side, "--data", str(data), "--out", str(out)]
                subprocess.run(cmd + (["--profile"] if profile else []), check=True)
                if not profile:
                    rows[side].append(json.loads(out.read_text()))
    finally:
        if tmp:
            tmp.cleanup()

    n = manifest["records"]
    med = {s: {"seconds": statistics.median(r["seconds"] for r in rs),
               "records_per_s": n / statistics.median(r["seconds"] for r in rs),
               "maxrss_mb": statistics.median(r["maxrss_mb"] for r in rs),
               "cpu_s": statistics.median(r["cpu_s"] for r in rs)} for s, rs in rows.items()}
    totals = {s: rs[0]["totals"] for s, rs in rows.items()}
    same = all(t == next(iter(totals.values())) for t in totals.values())
    print(f"{n:,} records, {a.rounds} rounds (medians); {load_line()}")
    print(f"{'side':14s} {'seconds':>8s} {'records/s':>10s} {'peak RSS MB':>12s}")
    for s, m in med.items():
        print(f"{s:14s} {m['seconds']:8.2f} {m['records_per_s']:10,.0f} {m['maxrss_mb']:12.0f}")
    if "write_tables" in med:
        for base in ("seed", "stream_v0"):
            if base in med:
                print(f"write_tables vs {base}: {med[base]['seconds'] / med['write_tables']['seconds']:.2f}x faster")
        print(f"targets: >= 200,000 records/s (got {med['write_tables']['records_per_s']:,.0f}), "
              f"peak RSS < 1024 MB (got {med['write_tables']['maxrss_mb']:.0f})")
    print(f"same totals on every side: {same} {next(iter(totals.values()))}")
    result = {"manifest": {k: v for k, v in manifest.items() if k not in ("results", "benchmarks")}, "medians": med,
              "totals": totals, "same_totals": same, "rounds": rows, "load": load_line()}
    save_json(a.json, result)
    if not same:
        sys.exit("the sides disagree")
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()

"""Benchmark: aggregation at paper scale through the usage summaries (results.json files -> tables).

Aggregation no longer reads usage.jsonl.gz: every evaluation task writes `cotscale.usage_summary` (per lm-eval task sums
of its usage records, cotscale.usage.summarize_usage) into its results.json, and the tables are built per strategy
from those (cotscale.aggregate.write_strategy_tables), then concatenated (combine_tables). So the paper-scale cost
has two parts, measured here:

* ``summarize`` — what the evaluation jobs pay in total: for every task of the paper grid (26 model revisions × 6
                  strategies × 7 benchmarks of config/config.yaml = 1092), its usage records are built in memory as
                  the model wrapper holds them (untimed), then `summarize_usage` runs over them (timed, summed over
                  the 1092 calls). Request counts follow the real test sets (documents × answer choices; mmlu 57 and
                  xwinograd 6 subtasks, interleaved as lm-eval's length-sorted batching leaves them; one generation per
                  document for the generative strategies, k samples and k × choices scoring requests for
                  self-consistency), scaled to --records (7M by default). This child also writes the synthetic tree:
                  each task's results.json in the evaluation contract (its spec = cotscale.config.job_spec, the
                  configured metric, the summary just computed) and each suite's `benchmark:` TSV. Run once.
* ``tables``    — write_strategy_tables for each of the 6 strategies (its results.json files and suite TSVs, as the
                  aggregate_strategy rule gets them) and combine_tables into the four tables, in one process; run
                  --rounds times.

Each side runs in its own subprocess (peak RSS = the child's ru_maxrss). Checks: the summaries' sums equal the sums
taken while the records were generated (a second count, not summarize_usage), and the combined tokens.csv equals
them too. Targets: summarize >= 200k records/s; the tables' peak RSS < 1 GB. Run:

    python benchmarks/aggregation.py [--records 7000000] [--rounds 3] [--data DIR (kept)] [--profile]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import PYTHON, ROOT, add_quick, load_line, premise, save_json

from cotscale import contract
from cotscale.config import BENCHMARKS

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
TOTAL_KEYS = ("requests", "generate_requests", "prompt_tokens", "generated_tokens", "documents")
SIDES = ("summarize", "tables")


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


def usage_records(rng: random.Random, strategy: dict, bench: str, lm_task: str, scale: float,
                  totals: dict) -> list[dict]:
    """One task's usage records as the model wrapper holds them; adds their sums to `totals` as it goes."""
    per_doc = requests_per_doc(strategy, bench)
    records = []
    for task, docs in subtasks(bench, lm_task).items():
        n_docs = max(1, round(docs * scale))
        totals["documents"] += n_docs
        for doc in range(n_docs):
            for kind, seqs in per_doc:
                prompt = rng.randint(40, 700)
                gen = sum(rng.randint(1, 256) for _ in range(seqs)) if kind == "generate" else 0
                records.append({"task": task, "doc_id": doc, "kind": kind, "prompt_tokens": prompt,
                                "generated_tokens": gen, "sequences": seqs})
                totals["prompt_tokens"] += prompt
                totals["generated_tokens"] += gen
                totals["generate_requests"] += kind == "generate"
    totals["requests"] += len(records)
    rng.shuffle(records)  # lm-eval sorts requests by length across the subtasks of a group
    return records


def results_json(cfg: dict, m: str, s: str, bench: str, summary: dict, rng: random.Random) -> dict:
    """A results.json of the evaluation contract with the configured metric of the strategy's task variant."""
    from cotscale.config import job_spec, task_variant

    variant = task_variant(cfg, s, bench)
    tasks = subtasks(bench, variant["task"])
    key, se_key = f"{variant['metric']},{variant['filter']}", f"{variant['metric']}_stderr,{variant['filter']}"
    metrics = lambda: {key: rng.random(), se_key: 0.01}  # noqa: E731
    out = {"results": {t: {"alias": t, **metrics()} for t in tasks}, "configs": {}, "versions": {}, "n-shot": {},
           "n-samples": {t: {"original": n, "effective": n} for t, n in tasks.items()}}
    if len(tasks) > 1:
        out["group_subtasks"] = {variant["task"]: list(tasks)}
        out["groups"] = {variant["task"]: metrics()}
    model = cfg["models"][m]
    out["cotscale"] = {"model": m, "hf_id": model["hf_id"], "revision": model["revision"], "family": model["family"],
                       "N": model["N"], "D": model["D"], "strategy": cfg["strategies"][s], "benchmark": bench,
                       "lm_eval_task": variant["task"], "spec": job_spec(cfg, m, s, bench), "backend": "hf",
                       "wall_seconds": round(rng.uniform(10, 5000), 3),
                       "model_load_seconds": round(rng.uniform(5, 60), 3), "usage_summary": summary}
    return out


def summarize_child(data: Path, target_records: int, seed: int = 0) -> dict:
    """Every task's records in memory (untimed) -> summarize_usage (timed); writes the synthetic tree."""
    from cotscale.config import evaluation_jobs, lm_eval_task, load_config, suites
    from cotscale.usage import summarize_usage

    cfg = load_config(ROOT / "config" / "config.yaml")
    jobs = evaluation_jobs(cfg)
    full = sum(len(requests_per_doc(cfg["strategies"][s], b)) * sum(SUBTASKS[b].values()) for _, s, b in jobs)
    scale = target_records / full
    started = time.perf_counter()
    totals = dict.fromkeys(TOTAL_KEYS, 0)
    summarized = dict.fromkeys(TOTAL_KEYS, 0)
    seconds, largest, results = 0.0, 0, {}
    for i, (m, s, b) in enumerate(jobs):
        rng = random.Random(seed * 1_000_003 + i)
        records = usage_records(rng, cfg["strategies"][s], b, lm_eval_task(cfg, s, b), scale, totals)
        largest = max(largest, len(records))
        t0 = time.perf_counter()
        summary = summarize_usage(records)
        seconds += time.perf_counter() - t0
        del records
        for entry in summary.values():
            for k in TOTAL_KEYS:
                summarized[k] += entry[k]
        out = data / contract.EVAL_DIR.format(model=m, strategy=s, task=b) / "results.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results_json(cfg, m, s, b, summary, rng)))
        results.setdefault(s, []).append(str(out))
    benchmarks: dict[str, list[str]] = {}
    for i, (m, (s,)) in enumerate(suites({**cfg, "suite": "strategy"})):
        rng = random.Random(seed * 1_000_003 + len(jobs) + i)
        bench = data / contract.EVAL_BENCHMARK["strategy"].format(model=m, strategy=s)
        bench.parent.mkdir(parents=True, exist_ok=True)
        bench.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                         f"{rng.uniform(100, 30000):.2f}\t0:10:00\t{rng.uniform(500, 9000):.2f}\t0\t0\t0\t0\t0\t0\t0\n")
        benchmarks.setdefault(s, []).append(str(bench))
    return {"records": totals["requests"], "scale": scale, "tasks": len(jobs), "largest_task_records": largest,
            "summarize_s": seconds, "generate_s": time.perf_counter() - started, "totals": totals,
            "summarized_totals": summarized, "results": results, "benchmarks": benchmarks}


def tables_child(manifest: dict, out_dir: Path) -> dict:
    """The aggregate_strategy rule for each strategy, then the aggregate rule (combine_tables), in one process."""
    import pandas as pd

    from cotscale.aggregate import combine_tables, write_strategy_tables
    from cotscale.config import load_config

    cfg = load_config(ROOT / "config" / "config.yaml")
    per_strategy = {}
    for s, paths in manifest["results"].items():
        t0 = time.perf_counter()
        write_strategy_tables(cfg, s, paths, out_dir / "strategies" / s, manifest["benchmarks"][s])
        per_strategy[s] = time.perf_counter() - t0
    t0 = time.perf_counter()
    combine_tables([out_dir / "strategies" / s for s in manifest["results"]], out_dir / "all")
    combine_s = time.perf_counter() - t0
    tokens = pd.read_csv(out_dir / "all" / "tokens.csv")
    return {"per_strategy_s": per_strategy, "combine_s": combine_s,
            "totals": {k: int(tokens[k].sum()) for k in TOTAL_KEYS}}


def child(side: str, data: Path, out: Path, records: int, profile: bool) -> None:
    # imports before the clock, as a rule process has them by the time it aggregates
    import pandas  # noqa: F401

    import cotscale.aggregate  # noqa: F401
    import cotscale.usage  # noqa: F401

    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    started = time.perf_counter()
    if side == "summarize":
        result = summarize_child(data, records)
        (data / "manifest.json").write_text(json.dumps(result))
        result = {k: v for k, v in result.items() if k not in ("results", "benchmarks")}
    else:
        with tempfile.TemporaryDirectory(prefix="cotscale-agg-") as tmp:
            result = tables_child(json.loads((data / "manifest.json").read_text()), Path(tmp))
    result["seconds"] = time.perf_counter() - started
    if profiler:
        profiler.stop()
        prof = ROOT / "benchmarks" / "out" / f"aggregation_{side}.pyinstrument.txt"
        prof.parent.mkdir(parents=True, exist_ok=True)
        prof.write_text(profiler.output_text(unicode=True, color=False))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.write_text(json.dumps({**result, "maxrss_mb": usage.ru_maxrss / 1024,
                               "cpu_s": usage.ru_utime + usage.ru_stime}))


# ------------------------------------------------------------------------------------------------ driver
def run_child(side: str, data: Path, records: int, profile: bool = False) -> dict:
    out = data / f"child-{side}.json"
    subprocess.run([PYTHON, __file__, "--child", side, "--data", str(data), "--out", str(out), "--records",
                    str(records), *(["--profile"] if profile else [])], check=True)
    return json.loads(out.read_text())


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=float, default=7e6)
    ap.add_argument("--rounds", type=int, default=3, help="rounds of the tables side")
    ap.add_argument("--data", type=Path, help="keep the synthetic tree here")
    ap.add_argument("--profile", action="store_true", help="one extra pyinstrument run of the tables side")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    add_quick(ap)
    a = ap.parse_args(argv)
    premise(tuple(SUBTASKS) == tuple(CHOICES) == BENCHMARKS,
            f"the test-set sizes here cover {list(SUBTASKS)}, config/tasks/benchmarks.yaml lists {list(BENCHMARKS)}")
    if a.quick:
        a.records, a.rounds = 2e4, 1
    if a.child:
        return child(a.child, a.data, a.out, int(a.records), a.profile)

    tmp = tempfile.TemporaryDirectory(prefix="cotscale-aggdata-") if a.data is None else None
    data = Path(tmp.name) if tmp else a.data
    data.mkdir(parents=True, exist_ok=True)
    try:
        summ = run_child("summarize", data, int(a.records))
        print(f"summarize: {summ['records']:,} usage records of {summ['tasks']} tasks (scale {summ['scale']:.3f} of "
              f"the full test sets; largest task {summ['largest_task_records']:,} records), built and written in "
              f"{summ['seconds']:.0f} s; {load_line()}")
        tables = [run_child("tables", data, int(a.records)) for _ in range(a.rounds)]
        if a.profile:
            run_child("tables", data, int(a.records), profile=True)
    finally:
        if tmp:
            tmp.cleanup()

    n, tasks = summ["records"], summ["tasks"]
    rate = n / summ["summarize_s"]
    seconds = statistics.median(r["seconds"] for r in tables)
    rss = statistics.median(r["maxrss_mb"] for r in tables)
    same = summ["totals"] == summ["summarized_totals"] == tables[0]["totals"]
    print(f"summarize_usage over {n:,} in-memory records ({summ['tasks']} calls, summed): {summ['summarize_s']:.2f} s, "
          f"{rate:,.0f} records/s (target >= 200,000: {'met' if rate >= 2e5 else 'missed'}); child peak RSS "
          f"{summ['maxrss_mb']:.0f} MB")
    print(f"tables: write_strategy_tables x {len(tables[0]['per_strategy_s'])} + combine_tables over {tasks} "
          f"results.json files, {a.rounds} rounds (medians; {load_line()}): {seconds:.2f} s, "
          f"{tasks / seconds:,.0f} results files/s ({n / seconds:,.0f} usage records/s represented), peak RSS "
          f"{rss:.0f} MB (target < 1024 MB: {'met' if rss < 1024 else 'missed'}), CPU "
          f"{statistics.median(r['cpu_s'] for r in tables):.2f} s")
    per = {s: statistics.median(r["per_strategy_s"][s] for r in tables) for s in tables[0]["per_strategy_s"]}
    print("  per strategy s: " + ", ".join(f"{s} {v:.2f}" for s, v in per.items())
          + f"; combine_tables {statistics.median(r['combine_s'] for r in tables):.2f}")
    print(f"same totals (generated, summarize_usage, tokens.csv): {same} {summ['totals']}")
    result = {"summarize": summ, "tables": {"seconds": seconds, "results_files_per_s": tasks / seconds,
                                            "maxrss_mb": rss, "per_strategy_s": per, "rounds": tables},
              "summarize_records_per_s": rate, "same_totals": same, "load": load_line()}
    save_json(a.json, result)
    if not same:
        sys.exit("the totals disagree")
    return result


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()

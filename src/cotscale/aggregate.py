"""Evaluation outputs → tidy tables (scores, benchmarks, tokens, compute).

Everything here is read from the evaluation contract (results.json with its `cotscale` block, usage.jsonl.gz and the
job's benchmark file), never from the config alone, so the same code aggregates our runs and ingested published ones.
Usage files are streamed record by record: a paper-scale run holds millions of requests.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from pathlib import Path

import pandas as pd

from cotscale.config import BENCHMARKS, task_variant
from cotscale.io import iter_jsonl_gz, read_json, write_csv

log = logging.getLogger(__name__)

ID_COLUMNS = ["model", "revision", "family", "N", "D", "strategy"]


def read_results(path: str | Path) -> dict:
    """A results.json of the evaluation contract, or a ValueError naming the file and what is wrong."""
    results = read_json(path)
    if not isinstance(results, dict) or "results" not in results or "cotscale" not in results:
        raise ValueError(f"{path}: not a cotscale results file (needs 'results' and 'cotscale' keys); rerun its evaluation")
    return results


def _identity(results: dict) -> dict:
    meta = results["cotscale"]
    strategy = meta["strategy"]
    return {
        "model": meta["model"],
        "revision": meta["revision"],
        "family": meta["family"],
        "N": float(meta["N"]),
        "D": float(meta["D"]),
        "strategy": strategy["name"] if isinstance(strategy, dict) else strategy,
    }


def score_rows(results: dict) -> list[dict]:
    """One row per task/group × metric × filter that lm-eval reported."""
    ident = _identity(results)
    rows = []
    tables = {**results.get("groups", {}), **results["results"]}
    for task, metrics in sorted(tables.items()):
        for key, value in metrics.items():
            if "," not in key or "_stderr," in key:
                continue
            metric, filt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append(
                {
                    **ident,
                    "benchmark": results["cotscale"]["benchmark"],
                    "task": task,
                    "metric": metric,
                    "filter": filt,
                    "value": _number(value),
                    "stderr": _number(stderr),
                }
            )
    return rows


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _leaves(results: dict, task: str) -> list[str]:
    subtasks = results.get("group_subtasks", {}).get(task, [])
    if not subtasks:
        return [task]
    return [leaf for sub in subtasks for leaf in _leaves(results, sub)]


def benchmark_score(results: dict, task: str, metric: str, filt: str) -> tuple[float, float]:
    """(value, stderr) of `metric,filter` for a task or group.

    A group row without the metric (older lm-eval runs, such as the paper's CoT groups, had no aggregate for them)
    is the size-weighted mean of its subtasks, unweighted where sizes are unknown.
    """
    key, se_key = f"{metric},{filt}", f"{metric}_stderr,{filt}"
    tables = {**results.get("groups", {}), **results["results"]}
    row = tables.get(task, {})
    if key in row:
        return _number(row[key]), _number(row.get(se_key))
    leaves = [leaf for leaf in _leaves(results, task) if leaf != task]
    values = [(tables.get(leaf, {}).get(key), tables.get(leaf, {}).get(se_key)) for leaf in leaves]
    if not leaves or any(v is None for v, _ in values):
        return math.nan, math.nan
    sizes = [results.get("n-samples", {}).get(leaf, {}).get("effective") for leaf in leaves]
    weights = [float(s) for s in sizes] if all(sizes) else [1.0] * len(leaves)
    total = sum(weights)
    value = sum(w * _number(v) for w, (v, _) in zip(weights, values)) / total
    stderr = math.sqrt(sum((w / total) ** 2 * _number(se) ** 2 for w, (_, se) in zip(weights, values)))
    return value, stderr


def benchmark_rows(config: dict, results_by_key: dict[tuple[str, str], dict[str, dict]]) -> list[dict]:
    """One row per model × strategy: the 7 benchmark scores and `overall`, their unweighted mean."""
    rows = []
    for (model, strategy), by_benchmark in results_by_key.items():
        first = next(iter(by_benchmark.values()))
        row = _identity(first)
        row["train_flops"] = 6.0 * row["N"] * row["D"]
        values, stderrs = [], []
        for bench in BENCHMARKS:
            if bench not in config["tasks"] or bench not in by_benchmark:
                value = stderr = math.nan
            else:
                variant = task_variant(config, strategy, bench)
                value, stderr = benchmark_score(by_benchmark[bench], variant["task"], variant["metric"], variant["filter"])
                if math.isnan(value):
                    log.warning("%s / %s: no %s,%s for %s", model, strategy, variant["metric"], variant["filter"], variant["task"])
            row[bench] = value
            values.append(value)
            stderrs.append(stderr)
        row["overall"] = sum(values) / len(values)
        row["overall_stderr"] = math.sqrt(sum(s * s for s in stderrs)) / len(stderrs)
        row["n_benchmarks"] = sum(not math.isnan(v) for v in values)
        for bench, stderr in zip(BENCHMARKS, stderrs):
            row[f"{bench}_stderr"] = stderr
        rows.append(row)
    return rows


def usage_summary(usage_path: Path) -> dict[str, dict]:
    """Per lm-eval (sub)task: request counts and token sums, streamed from usage.jsonl.gz."""
    per_task: dict[str, dict] = defaultdict(
        lambda: {"requests": 0, "generate_requests": 0, "prompt_tokens": 0, "generated_tokens": 0, "docs": set(), "token_unit": "tokens"}
    )
    for record in iter_jsonl_gz(usage_path):
        entry = per_task[record["task"]]
        entry["requests"] += 1
        entry["generate_requests"] += record["kind"] == "generate"
        entry["prompt_tokens"] += record["prompt_tokens"]
        entry["generated_tokens"] += record["generated_tokens"]
        entry["docs"].add(record["doc_id"])
        entry["token_unit"] = record.get("token_unit", "tokens")
    return per_task


def token_rows(results: dict, usage_path: Path) -> list[dict]:
    ident = _identity(results)
    rows = []
    for task, entry in sorted(usage_summary(usage_path).items()):
        documents = len(entry["docs"])
        rows.append(
            {
                **ident,
                "benchmark": results["cotscale"]["benchmark"],
                "task": task,
                "requests": entry["requests"],
                "generate_requests": entry["generate_requests"],
                "documents": documents,
                "prompt_tokens": entry["prompt_tokens"],
                "generated_tokens": entry["generated_tokens"],
                "mean_prompt_tokens": entry["prompt_tokens"] / entry["requests"],
                "mean_generated_tokens": entry["generated_tokens"] / entry["generate_requests"] if entry["generate_requests"] else 0.0,
                "generated_tokens_per_document": entry["generated_tokens"] / documents,
                "token_unit": entry["token_unit"],
            }
        )
    return rows


def read_benchmark_file(path: Path) -> dict:
    """Wall seconds and max RSS (MB) of a job, from the `benchmark:` TSV Snakemake wrote."""
    with open(path) as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))
    return {"wall_seconds": _number(row.get("s")), "max_rss_mb": _number(row.get("max_rss"))}


def compute_rows(tokens: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """Modelled FLOPs (6ND; 2N per generated token; 2N per processed token) beside measured job cost."""
    if tokens.empty:
        return pd.DataFrame()
    per = tokens.groupby(ID_COLUMNS, sort=True).agg(
        documents=("documents", "sum"),
        requests=("requests", "sum"),
        prompt_tokens=("prompt_tokens", "sum"),
        generated_tokens=("generated_tokens", "sum"),
        token_unit=("token_unit", "first"),
    ).reset_index()
    per["train_flops"] = 6.0 * per["N"] * per["D"]
    per["generated_tokens_per_document"] = per["generated_tokens"] / per["documents"]
    per["inference_flops_per_document"] = 2.0 * per["N"] * per["generated_tokens_per_document"]
    per["forward_flops_per_document"] = 2.0 * per["N"] * (per["prompt_tokens"] + per["generated_tokens"]) / per["documents"]
    if not measured.empty:
        cost = measured.groupby(["model", "strategy"]).agg(wall_seconds=("wall_seconds", "sum"), max_rss_mb=("max_rss_mb", "max"))
        per = per.join(cost, on=["model", "strategy"])
        per["generated_tokens_per_second"] = per["generated_tokens"] / per["wall_seconds"]
    return per


def write_tables(config: dict, result_paths: list[str], out_dir: Path, benchmark_paths: list[str] | None = None) -> None:
    """scores.csv, benchmarks.csv, tokens.csv and compute.csv from results.json files (and, aligned with them,
    the evaluation jobs' benchmark files)."""
    out_dir = Path(out_dir)
    scores, tokens, measured = [], [], []
    by_key: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    pairs = sorted(zip(result_paths, benchmark_paths or [None] * len(result_paths)))
    for path, bench in pairs:
        path = Path(path)
        results = read_results(path)
        ident = _identity(results)
        scores.extend(score_rows(results))
        by_key[(ident["model"], ident["strategy"])][results["cotscale"]["benchmark"]] = results
        usage = path.parent / "usage.jsonl.gz"
        if usage.exists():
            tokens.extend(token_rows(results, usage))
        if bench is not None:
            measured.append({"model": ident["model"], "strategy": ident["strategy"], **read_benchmark_file(Path(bench))})
    benchmarks_table = pd.DataFrame(benchmark_rows(config, by_key))
    if len(benchmarks_table):
        benchmarks_table = benchmarks_table.sort_values(["family", "model", "strategy"])
    tokens_table = pd.DataFrame(tokens)
    write_csv(out_dir / "scores.csv", pd.DataFrame(scores))
    write_csv(out_dir / "benchmarks.csv", benchmarks_table)
    write_csv(out_dir / "tokens.csv", tokens_table)
    write_csv(out_dir / "compute.csv", compute_rows(tokens_table, pd.DataFrame(measured)))

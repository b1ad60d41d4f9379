"""Evaluation outputs → tidy tables (scores, benchmarks, tokens, compute).

Everything here is read from the evaluation contract (results.json with its `cotscale` block, usage.jsonl.gz and the
job's benchmark file), never from the config alone, so the same code aggregates our runs and ingested published ones.
Usage files are streamed record by record: a paper-scale run holds millions of requests.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import logging
import math
import re
from collections import defaultdict
from itertools import groupby
from operator import itemgetter
from pathlib import Path

import pandas as pd

from cotscale.config import BENCHMARKS, CotscaleError, task_variant
from cotscale.io import read_json, write_csv

log = logging.getLogger(__name__)

ID_COLUMNS = ["model", "revision", "family", "N", "D", "strategy"]
# Every table has its header even when it has no rows, so that the analysis and figures can read it.
SCORE_COLUMNS = [*ID_COLUMNS, "benchmark", "task", "metric", "filter", "value", "stderr"]
BENCHMARK_COLUMNS = [*ID_COLUMNS, "train_flops", *BENCHMARKS, "overall", "overall_stderr", "n_benchmarks",
                     *(f"{b}_stderr" for b in BENCHMARKS)]
TOKEN_COLUMNS = [*ID_COLUMNS, "benchmark", "task", "requests", "generate_requests", "documents", "prompt_tokens",
                 "generated_tokens", "mean_prompt_tokens", "mean_generated_tokens", "generated_tokens_per_document",
                 "token_unit"]
COMPUTE_COLUMNS = [*ID_COLUMNS, "documents", "requests", "prompt_tokens", "generated_tokens", "token_unit",
                   "train_flops", "generated_tokens_per_document", "inference_flops_per_document",
                   "forward_flops_per_document", "wall_seconds", "max_rss_mb", "generated_tokens_per_second"]


class AggregationError(CotscaleError, ValueError):
    """Evaluation outputs that cannot be aggregated as they are; the message names the file and the fix."""


def read_results(path: str | Path) -> dict:
    """A results.json of the evaluation contract, or an AggregationError naming the file and what is wrong."""
    try:
        results = read_json(path)
    except ValueError as exc:  # truncated or not JSON
        raise AggregationError(str(exc)) from None
    if not isinstance(results, dict) or "results" not in results or "cotscale" not in results:
        raise AggregationError(f"{path}: not a cotscale results file (needs 'results' and 'cotscale' keys); delete it and rerun its evaluation")
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


def _metrics_of(results: dict, task: str) -> list[str]:
    tables = {**results.get("groups", {}), **results["results"]}
    return sorted(k for k in tables.get(task, {}) if "," in k and "_stderr," not in k)


def benchmark_rows(config: dict, results_by_key: dict[tuple[str, str], dict[str, dict]],
                   paths: dict[tuple[str, str, str], Path] | None = None) -> list[dict]:
    """One row per model × strategy: the 7 benchmark scores and `overall`, their unweighted mean.

    A benchmark that is not configured or was not evaluated is NaN by design (and so is `overall`). A results file
    that is there but lacks the configured metric, or has NaN for it, is an AggregationError naming file and metric:
    a silent NaN would drop the model from every fit.
    """
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
                    where = (paths or {}).get((model, strategy, bench), f"results of {model} / {strategy} / {bench}")
                    name = config["strategies"][strategy]["variant"]
                    raise AggregationError(
                        f"{where}: benchmark {bench} needs metric {variant['metric']!r} with filter "
                        f"{variant['filter']!r} of lm-eval task {variant['task']!r}, but it is missing or NaN there "
                        f"(reported: {', '.join(_metrics_of(by_benchmark[bench], variant['task'])) or 'nothing'}). "
                        f"Fix config keys tasks.{bench}.{name}.metric / .filter, or delete the file and rerun "
                        f"its evaluation"
                    )
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


# One usage record exactly as cotscale.usage.write_usage writes it (json.dumps, keys in FIELDS order). Blocks of
# such lines are parsed by one regex over the whole decompressed block instead of json.loads per line (a few C calls
# per block instead of ~20 Python operations per record). A block with any other line — published ingests add
# token_unit, a hand-edited file may reorder keys or hold blank lines, an invalid file has numbers with leading zeros —
# is parsed line by line with json.loads instead, so both paths give the same values, and a file json.loads
# rejects is still rejected (a ValueError naming the file).
_USAGE_LINE = re.compile(
    rb'^\{"task": "([^"\\\n\r]*)", "doc_id": (-?[0-9]+|null), "kind": "(generate|loglikelihood)", '
    rb'"prompt_tokens": ([0-9]+), "generated_tokens": ([0-9]+), "sequences": [0-9]+\}$',
    re.MULTILINE,
)
_LEADING_ZERO = re.compile(rb": -?0[0-9]")  # JSON forbids 007; json.loads must be the one to reject it
_BLOCK_BYTES = 1 << 22  # decompressed bytes parsed at a time: memory stays bounded whatever the file size


def new_entry() -> dict:
    return {"requests": 0, "generate_requests": 0, "prompt_tokens": 0, "generated_tokens": 0, "docs": set(),
            "token_unit": "tokens"}


def _doc_id(raw: bytes):
    return None if raw == b"null" else int(raw)


def _add_canonical(per_task: dict, rows: list[tuple[bytes, ...]]) -> None:
    """Sums of regex-parsed records, one group of columns per task (C-level sum/count/set per column)."""
    rows.sort(key=itemgetter(0))  # subtasks of a group (mmlu) come interleaved
    groups = [(rows[0][0], rows)] if rows[0][0] == rows[-1][0] else groupby(rows, key=itemgetter(0))
    for task, group in groups:
        _, docs, kinds, prompts, generated = zip(*group)
        entry = per_task[task.decode("utf-8")]
        entry["requests"] += len(docs)
        entry["generate_requests"] += kinds.count(b"generate")
        entry["prompt_tokens"] += sum(map(int, prompts))
        entry["generated_tokens"] += sum(map(int, generated))
        entry["docs"].update(map(_doc_id, set(docs)))
        entry["token_unit"] = "tokens"


def _add_records(per_task: dict, text: str, path) -> None:
    """Line by line with json.loads (universal newlines, blank lines skipped, as cotscale.io.iter_jsonl_gz)."""
    for line in io.StringIO(text, newline=None):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: a usage record is not valid JSON ({exc.msg}); the file is truncated or "
                             "corrupt — delete it and rerun the evaluation that writes it") from exc
        add_record(per_task, record)


def add_record(per_task: dict, record: dict) -> None:
    """One parsed usage record into its task's sums."""
    entry = per_task[record["task"]]
    entry["requests"] += 1
    entry["generate_requests"] += record["kind"] == "generate"
    entry["prompt_tokens"] += record["prompt_tokens"]
    entry["generated_tokens"] += record["generated_tokens"]
    entry["docs"].add(record["doc_id"])
    entry["token_unit"] = record.get("token_unit", "tokens")


def usage_summary(usage_path: Path) -> dict[str, dict]:
    """Per lm-eval (sub)task: request counts, token sums, the set of document ids and the token unit, streamed
    from usage.jsonl.gz in bounded blocks (a paper-scale file never sits in memory whole)."""
    per_task: dict[str, dict] = defaultdict(new_entry)
    tail = b""
    with gzip.open(usage_path, "rb") as fh:
        while True:
            block = fh.read(_BLOCK_BYTES)
            if not block:
                body, tail = tail, b""
            else:
                block = tail + block
                cut = block.rfind(b"\n") + 1
                body, tail = block[:cut], block[cut:]
            if body:
                rows = _USAGE_LINE.findall(body)
                lines = body.count(b"\n") + (not body.endswith(b"\n"))
                if len(rows) == lines and not _LEADING_ZERO.search(body):
                    _add_canonical(per_task, rows)
                else:
                    _add_records(per_task, body.decode("utf-8"), usage_path)
            if not block:
                break
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
        return pd.DataFrame(columns=COMPUTE_COLUMNS)
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


def _frame(rows: list[dict], empty_columns: list[str]) -> pd.DataFrame:
    """The rows as a table; no rows: an empty table that still has its header."""
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=empty_columns)


def _check_known(config: dict, path: Path, ident: dict) -> None:
    """Results of a strategy the config does not define, or (when the config lists models) of a model it does not
    list, are stale or misplaced files: aggregating them would mix them into the tables silently."""
    if ident["strategy"] not in config["strategies"]:
        raise AggregationError(
            f"{path}: results of strategy {ident['strategy']!r}, which config key strategies does not define "
            f"(defined: {', '.join(sorted(config['strategies']))}); add it to the config or remove the file"
        )
    if config["models"] and not config.get("published") and ident["model"] not in config["models"]:
        raise AggregationError(
            f"{path}: results of model {ident['model']!r}, which config key models does not list; add the model to "
            f"the config or remove the file"
        )


def write_tables(config: dict, result_paths: list[str], out_dir: Path, benchmark_paths: list[str] | None = None) -> None:
    """scores.csv, benchmarks.csv, tokens.csv and compute.csv from results.json files (and, aligned with them,
    the evaluation jobs' benchmark files)."""
    out_dir = Path(out_dir)
    scores, tokens, measured = [], [], []
    by_key: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    paths: dict[tuple[str, str, str], Path] = {}
    pairs = sorted(zip(result_paths, benchmark_paths or [None] * len(result_paths)))
    for path, bench in pairs:
        path = Path(path)
        results = read_results(path)
        ident = _identity(results)
        _check_known(config, path, ident)
        scores.extend(score_rows(results))
        by_key[(ident["model"], ident["strategy"])][results["cotscale"]["benchmark"]] = results
        paths[(ident["model"], ident["strategy"], results["cotscale"]["benchmark"])] = path
        usage = path.parent / "usage.jsonl.gz"
        if usage.exists():
            tokens.extend(token_rows(results, usage))
        if bench is not None:
            measured.append({"model": ident["model"], "strategy": ident["strategy"], **read_benchmark_file(Path(bench))})
    benchmarks_table = _frame(benchmark_rows(config, by_key, paths), BENCHMARK_COLUMNS)
    if len(benchmarks_table):
        benchmarks_table = benchmarks_table.sort_values(["family", "model", "strategy"])
    else:
        log.warning("no evaluation results to aggregate: the tables have headers only")
    tokens_table = _frame(tokens, TOKEN_COLUMNS)
    write_csv(out_dir / "scores.csv", _frame(scores, SCORE_COLUMNS))
    write_csv(out_dir / "benchmarks.csv", benchmarks_table)
    write_csv(out_dir / "tokens.csv", tokens_table)
    write_csv(out_dir / "compute.csv", compute_rows(tokens_table, pd.DataFrame(measured)))

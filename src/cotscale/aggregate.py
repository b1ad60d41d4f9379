"""Evaluation outputs → tidy tables (scores, benchmarks, tokens, compute), one set per strategy, then together.

Everything here is read from the evaluation contract (results.json with its `cotscale` block and the suite's
benchmark file), never from the config alone, so the same code aggregates our runs and ingested published ones.
Token counts come from the `usage_summary` each evaluation writes into its results.json (per-task sums of its usage
records, cotscale.usage.summarize_usage): a paper-scale run's millions of usage records are never re-read here.
A results.json whose recorded spec differs from what the config asks for now is refused: the tables must describe
the experiment the config defines.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from pathlib import Path

import pandas as pd

from cotscale import contract, outcomes, uncertainty
from cotscale.config import BENCHMARKS, CotscaleError, canonical, job_spec, task_variant
from cotscale.flops import inference_flops, train_flops
from cotscale.io import read_json, write_csv
from cotscale.registry import STRATEGY_TABLES
from cotscale.usage import empty_fraction

log = logging.getLogger(__name__)

ID_COLUMNS = list(contract.ID_COLUMNS)
# Every table has its header even when it has no rows, so that the analysis and figures can read it.
SCORE_COLUMNS = [*ID_COLUMNS, "benchmark", "task", "metric", "filter", "value", "stderr"]
BENCHMARK_COLUMNS = [*ID_COLUMNS, "train_flops", *BENCHMARKS, "overall", "overall_stderr", "n_benchmarks",
                     *(f"{b}_stderr" for b in BENCHMARKS), *(f"{b}_truncated_fraction" for b in BENCHMARKS),
                     "truncated_fraction", *(f"{b}_empty_fraction" for b in BENCHMARKS), "empty_fraction",
                     *(f"{b}_documents" for b in BENCHMARKS), *uncertainty.interval_columns()]
TOKEN_COLUMNS = [*ID_COLUMNS, "benchmark", "task", "requests", "generate_requests", "loglikelihood_requests",
                 "documents", "prompt_tokens", "generate_prompt_tokens", "loglikelihood_prompt_tokens",
                 "generated_tokens", contract.COMPUTED_TOKENS_FIELD, "mean_generate_prompt_tokens",
                 "mean_loglikelihood_prompt_tokens",
                 "mean_generated_tokens", "generated_tokens_per_document", "truncated_fraction",
                 "mean_thinking_tokens", "mean_answer_tokens", "token_unit", "empty_fraction"]
COMPUTE_COLUMNS = [*ID_COLUMNS, "documents", "requests", "prompt_tokens", "generated_tokens",
                   contract.COMPUTED_TOKENS_FIELD, "token_unit",
                   "train_flops", "generated_tokens_per_document", "inference_flops_per_document",
                   "forward_flops_per_document", "wall_seconds", "model_load_seconds", "max_rss_mb",
                   "generated_tokens_per_second", "inference_flops", "forward_flops", "inference_flops_per_second",
                   "forward_flops_per_second"]


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


def benchmark_documents(results: dict, task: str) -> float:
    """Documents lm-eval evaluated for a task or group: ``n-samples`` effective, summed over its leaf tasks (NaN when
    the results do not say, as the paper's published files)."""
    counts = [results.get("n-samples", {}).get(leaf, {}).get("effective") for leaf in _leaves(results, task)]
    return float(sum(counts)) if counts and None not in counts else math.nan


def check_same_documents(benchmarks: pd.DataFrame, pair: tuple[str, str], what: str) -> None:
    """A comparison of two strategies (``what``: the figure or table) must score both on the same documents: a
    benchmark whose ``{benchmark}_documents`` differ between them for a model is an AggregationError naming the
    benchmark, both counts and the fix. Unknown counts (published files) are not compared."""
    by = {s: benchmarks[benchmarks["strategy"] == s].drop_duplicates("model").set_index("model") for s in pair}
    for model in sorted(set(by[pair[0]].index) & set(by[pair[1]].index)):
        for bench in BENCHMARKS:
            column = f"{bench}_documents"
            counts = [by[s].loc[model].get(column, math.nan) for s in pair]
            if not any(pd.isna(c) for c in counts) and counts[0] != counts[1]:
                raise AggregationError(
                    f"{what}: {pair[0]} and {pair[1]} of model {model} are not on the same documents: task {bench} "
                    f"evaluated {counts[0]:.0f} documents under {pair[0]} and {counts[1]:.0f} under {pair[1]}. Give "
                    f"both task variants the same split (config key tasks.{bench}.<variant>.split) and the same "
                    f"limit, then rerun their evaluations")


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
        row["train_flops"] = train_flops(row["N"], row["D"])
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
        summaries = {bench: r["cotscale"].get("usage_summary") for bench, r in by_benchmark.items()}
        for bench in BENCHMARKS:
            summary = summaries.get(bench)
            row[f"{bench}_truncated_fraction"] = truncated_fraction(summary.values()) if summary else math.nan
        # like overall: the unweighted mean over the seven benchmarks (NaN when one is missing)
        row["truncated_fraction"] = sum(row[f"{b}_truncated_fraction"] for b in BENCHMARKS) / len(BENCHMARKS)
        for bench in BENCHMARKS:
            summary = summaries.get(bench)
            row[f"{bench}_empty_fraction"] = empty_fraction(summary.values()) if summary else math.nan
        row["empty_fraction"] = overall_fraction([row[f"{b}_empty_fraction"] for b in BENCHMARKS])
        for bench in BENCHMARKS:
            row[f"{bench}_documents"] = (benchmark_documents(by_benchmark[bench], task_variant(config, strategy, bench)
                                                             ["task"]) if bench in by_benchmark else math.nan)
        rows.append(row)
    return rows


def _mean(total: float, count: float) -> float:
    return total / count if count else math.nan


def truncated_fraction(entries) -> float:
    """Share of the generate requests of usage_summary ``entries`` whose generation hit max_gen_toks (NaN without
    generate requests): tokens.csv per task, benchmarks.csv per benchmark."""
    entries = list(entries)
    return _mean(sum(e["truncated"] for e in entries), sum(e["generate_requests"] for e in entries))


def overall_fraction(values: list[float]) -> float:
    """The unweighted mean over the benchmarks that generated (NaN if none did). Unlike ``overall`` a benchmark
    without generations does not make it NaN: the paper's samples hold no gsm8k rationale, and how often the other
    six rationales are empty is worth stating all the same."""
    known = [v for v in values if not math.isnan(v)]
    return sum(known) / len(known) if known else math.nan


def empty_warnings(benchmarks: pd.DataFrame, threshold: float) -> list[str]:
    """One line per model × strategy × benchmark of benchmarks.csv whose ``{benchmark}_empty_fraction`` passes
    ``threshold`` (config key analysis.empty_warning): rationales that never happened, averaged into its token
    means and scores."""
    lines = []
    for row in benchmarks.to_dict("records"):
        for bench in BENCHMARKS:
            value = row.get(f"{bench}_empty_fraction", math.nan)
            if value > threshold:
                lines.append(f"{row['model']} / {row['strategy']} / {bench}: {value:.0%} of its generations are "
                             f"empty (no text before the first stop sequence or EOS; analysis.empty_warning "
                             f"{threshold:.0%}): the strategy's tokens and score average them in")
    return lines


def token_rows(results: dict, path: Path | str = "results.json") -> list[dict]:
    """One row per lm-eval (sub)task of the evaluation, from the usage summary in its results.json. Means per
    request are taken within a kind: generate prompts (context + cue) apart from log-likelihood prompts (choices)."""
    ident = _identity(results)
    summary = results["cotscale"].get("usage_summary")
    if summary is None:
        raise AggregationError(f"{path}: has no cotscale.usage_summary (written by an older cotscale); delete it and "
                               "rerun its evaluation")
    rows = []
    for task, e in sorted(summary.items()):
        rows.append({
            **ident,
            "benchmark": results["cotscale"]["benchmark"],
            "task": task,
            **{k: e[k] for k in ("requests", "generate_requests", "loglikelihood_requests", "documents",
                                 "prompt_tokens", "generate_prompt_tokens", "loglikelihood_prompt_tokens",
                                 "generated_tokens")},
            # what the backend ran (shared-prefix scoring counts a shared prefix once); older summaries: P + G
            contract.COMPUTED_TOKENS_FIELD: e.get(contract.COMPUTED_TOKENS_FIELD,
                                                  e["prompt_tokens"] + e["generated_tokens"]),
            "mean_generate_prompt_tokens": _mean(e["generate_prompt_tokens"], e["generate_requests"]),
            "mean_loglikelihood_prompt_tokens": _mean(e["loglikelihood_prompt_tokens"], e["loglikelihood_requests"]),
            "mean_generated_tokens": _mean(e["generated_tokens"], e["generate_requests"]) if e["generate_requests"]
            else 0.0,
            "generated_tokens_per_document": _mean(e["generated_tokens"], e["documents"]),
            "truncated_fraction": truncated_fraction([e]),
            # the thinking / answer split of generated tokens (0 where a run has none, or predates the fields)
            **{f"mean_{name}": _mean(e.get(name, 0), e["generate_requests"]) if e["generate_requests"] else 0.0
               for name in ("thinking_tokens", "answer_tokens")},
            "token_unit": e["token_unit"],
            "empty_fraction": empty_fraction([e]),
        })
    return rows


def read_benchmark_file(path: Path) -> dict:
    """Wall seconds and max RSS (MB) of a job, from the `benchmark:` TSV Snakemake wrote."""
    with open(path) as fh:
        row = next(csv.DictReader(fh, delimiter="\t"))
    return {"wall_seconds": _number(row.get("s")), "max_rss_mb": _number(row.get("max_rss"))}


def compute_rows(tokens: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """Modelled FLOPs (6ND; 2N per generated token; 2N per processed token) beside measured job cost, and the
    achieved throughput: the job's modelled inference FLOPs (``inference_flops`` = 2N × generated tokens, the paper's
    convention; ``forward_flops`` = 2N × prompt + generated tokens, what the hardware ran) per measured second of its
    evaluations (results.json wall_seconds, summed over its tasks)."""
    if tokens.empty:
        return pd.DataFrame(columns=COMPUTE_COLUMNS)
    if contract.COMPUTED_TOKENS_FIELD not in tokens:  # a table from before the column: prompt + generated tokens
        tokens = tokens.assign(**{contract.COMPUTED_TOKENS_FIELD: tokens["prompt_tokens"] + tokens["generated_tokens"]})
    per = tokens.groupby(ID_COLUMNS, sort=True).agg(
        documents=("documents", "sum"),
        requests=("requests", "sum"),
        prompt_tokens=("prompt_tokens", "sum"),
        generated_tokens=("generated_tokens", "sum"),
        **{contract.COMPUTED_TOKENS_FIELD: (contract.COMPUTED_TOKENS_FIELD, "sum")},
        token_unit=("token_unit", "first"),
    ).reset_index()
    per["train_flops"] = train_flops(per["N"], per["D"])
    per["generated_tokens_per_document"] = per["generated_tokens"] / per["documents"]
    per["inference_flops_per_document"] = inference_flops(per["N"], per["generated_tokens_per_document"])
    per["forward_flops_per_document"] = (inference_flops(per["N"], per["prompt_tokens"] + per["generated_tokens"])
                                         / per["documents"])
    per["inference_flops"] = inference_flops(per["N"], per["generated_tokens"])
    per["forward_flops"] = inference_flops(per["N"], per["prompt_tokens"] + per["generated_tokens"])
    if not measured.empty:
        cost = measured.groupby(["model", "strategy"]).agg(
            wall_seconds=("wall_seconds", "sum"), model_load_seconds=("model_load_seconds", "max"),
            max_rss_mb=("max_rss_mb", "max"))
        per = per.join(cost, on=["model", "strategy"])
        per["generated_tokens_per_second"] = per["generated_tokens"] / per["wall_seconds"]
        per["inference_flops_per_second"] = per["inference_flops"] / per["wall_seconds"]
        per["forward_flops_per_second"] = per["forward_flops"] / per["wall_seconds"]
    return per.reindex(columns=COMPUTE_COLUMNS)


def _frame(rows: list[dict], empty_columns: list[str]) -> pd.DataFrame:
    """The rows as a table; no rows: an empty table that still has its header."""
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=empty_columns)


def _first_difference(recorded, expected, where: str = "") -> str | None:
    """The first key path (a.b.c) at which two JSON values differ, with both values; None if equal."""
    if isinstance(recorded, dict) and isinstance(expected, dict):
        for key in sorted(set(recorded) | set(expected)):
            if key not in recorded or key not in expected:
                return f"{where}{key}: {'absent' if key not in recorded else repr(recorded[key])} recorded, " \
                       f"{'absent' if key not in expected else repr(expected[key])} in the config"
            found = _first_difference(recorded[key], expected[key], f"{where}{key}.")
            if found:
                return found
        return None
    if canonical(recorded) != canonical(expected):
        return f"{where.rstrip('.')}: {recorded!r} recorded, {expected!r} in the config"
    return None


def _check_known(config: dict, path: Path, results: dict) -> None:
    """Results of a strategy the config does not define, of a model it does not list, or of another spec than the
    config defines are stale or misplaced: aggregating them would mix them into the tables silently."""
    ident = _identity(results)
    if ident["strategy"] not in config["strategies"]:
        raise AggregationError(
            f"{path}: results of strategy {ident['strategy']!r}, which config key strategies does not define "
            f"(defined: {', '.join(sorted(config['strategies']))}); add it to the config or remove the file"
        )
    if config.get("published"):
        return
    if ident["model"] not in config["models"]:
        raise AggregationError(
            f"{path}: results of model {ident['model']!r}, which config key models does not list; add the model to "
            f"the config or remove the file"
        )
    meta = results["cotscale"]
    difference = _first_difference(meta.get("spec"), job_spec(config, ident["model"], ident["strategy"],
                                                               meta["benchmark"]))
    if difference:
        raise AggregationError(
            f"{path}: evaluated with another spec than the config defines ({difference}); rerun it (`snakemake "
            f"--forcerun` on its suite, or delete the file) so the tables describe the configured experiment"
        )


def _suite_model(config: dict, path: str, strategy: str) -> str:
    """The model of a suite's benchmark file (cotscale.contract.EVAL_BENCHMARK of the config's `suite:`)."""
    return contract.path_fields(contract.EVAL_BENCHMARK[config["suite"]], path)["model"]


def write_strategy_tables(config: dict, strategy: str, result_paths: list[str], out_dir: Path,
                          benchmark_paths: list[str] | None = None) -> None:
    """scores.csv, benchmarks.csv, tokens.csv and compute.csv of one strategy, from its results.json files and the
    Snakemake benchmark files (max RSS) of the suites that evaluated it."""
    out_dir = Path(out_dir)
    scores, tokens, measured = [], [], []
    by_key: dict[tuple[str, str], dict[str, dict]] = defaultdict(dict)
    paths: dict[tuple[str, str, str], Path] = {}
    rss = {_suite_model(config, bench, strategy): read_benchmark_file(Path(bench))["max_rss_mb"]
           for bench in benchmark_paths or []}
    for path in sorted(map(Path, result_paths)):
        results = read_results(path)
        _check_known(config, path, results)
        ident = _identity(results)
        if ident["strategy"] != strategy:
            continue
        meta = results["cotscale"]
        scores.extend(score_rows(results))
        by_key[(ident["model"], strategy)][meta["benchmark"]] = results
        paths[(ident["model"], strategy, meta["benchmark"])] = path
        if "usage_summary" in meta or not config.get("published"):
            tokens.extend(token_rows(results, path))
        if meta.get("wall_seconds") is not None:
            measured.append({"model": ident["model"], "strategy": strategy, "wall_seconds": meta["wall_seconds"],
                             "model_load_seconds": meta.get("model_load_seconds"),
                             "max_rss_mb": rss.get(ident["model"], math.nan)})
    outcome_table = None if config.get("published") else outcomes.strategy_outcomes(
        [p for (_, s, _), p in paths.items() if s == strategy])
    benchmarks_table = _frame(with_intervals(benchmark_rows(config, by_key, paths), outcome_table,
                                             uncertainty.settings(config)), BENCHMARK_COLUMNS)
    if len(benchmarks_table):
        benchmarks_table = benchmarks_table.sort_values(["family", "model", "strategy"])
    else:
        log.warning("no evaluation results of strategy %s to aggregate: its tables have headers only", strategy)
    tokens_table = _frame(tokens, TOKEN_COLUMNS)
    write_csv(out_dir / "scores.csv", _frame(scores, SCORE_COLUMNS))
    write_csv(out_dir / "benchmarks.csv", benchmarks_table)
    write_csv(out_dir / "tokens.csv", tokens_table)
    write_csv(out_dir / "compute.csv", compute_rows(tokens_table, pd.DataFrame(measured)))
    if outcome_table is not None:
        outcomes.write(out_dir / "outcomes.parquet", outcome_table)


def with_intervals(rows: list[dict], outcome_table: pd.DataFrame | None, boot: dict) -> list[dict]:
    """benchmarks.csv rows with their score intervals: the bootstrap over the documents of ``outcome_table``
    (cotscale.uncertainty), or, without per-document outcomes (published data), the normal approximation from
    lm-eval's stderr."""
    if outcome_table is None:
        return [{**row, **uncertainty.normal_interval_columns(row, boot["level"]),
                 "ci_method": f"{uncertainty.NORMAL_METHOD} ({boot['level']:.0%})"} for row in rows]
    draws = uncertainty.strategy_draws(outcome_table, boot)
    return [{**row, **uncertainty.score_interval_columns(draws.get((row["model"], row["strategy"]), {}), boot),
             "ci_method": uncertainty.method(boot) if (row["model"], row["strategy"]) in draws
             else "none: no per-document outcomes (no samples.jsonl.gz)"} for row in rows]


def combine_tables(strategy_dirs: list[Path], out_dir: Path, empty_warning: float | None = None) -> None:
    """The per-strategy tables of `strategy_dirs`, concatenated into the tables of every strategy; with
    ``empty_warning``, a warning line per benchmark whose empty fraction passes it (:func:`empty_warnings`)."""
    for table in STRATEGY_TABLES:
        parts = [pd.read_csv(Path(d) / f"{table}.csv") for d in strategy_dirs]
        parts = [p for p in parts if not p.empty] or parts[:1]
        combined = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
        if table == "benchmarks" and len(combined):
            combined = combined.sort_values(["family", "model", "strategy"], kind="stable")
            for line in empty_warnings(combined, empty_warning) if empty_warning is not None else []:
                log.warning("%s", line)
        write_csv(Path(out_dir) / f"{table}.csv", combined)

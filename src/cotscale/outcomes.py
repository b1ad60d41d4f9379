"""Per-document outcomes: the value each document contributes to the score that enters ``overall``.

One row per model revision × strategy × (sub)task × document (× budget of a sweep), columns
cotscale.contract.OUTCOME_COLUMNS. The value is the document's lm-eval metric of the benchmark's variant (the
``metric,filter`` of config/tasks/benchmarks.yaml that cotscale.aggregate scores: lm-eval writes one sample record per
filter, the one of that filter is taken), so the mean of a benchmark's values is its score in benchmarks.csv, a group
(mmlu, xwinograd) pooling its subtasks' documents. Beside it, each document's generated tokens and generate requests
(from usage.jsonl.gz), so token means can be resampled with the documents.

Budget-sweep points (cotscale.scaling) have their per-document values too (the expected maj@k of the document, or
its correctness at a length budget), with ``budget_kind`` and ``budget`` set; plain points leave them empty.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from pathlib import Path

import pandas as pd

from cotscale.config import CotscaleError
from cotscale.contract import OUTCOME_COLUMNS
from cotscale.io import atomic_path, iter_jsonl_gz, read_json

log = logging.getLogger(__name__)


class OutcomeError(CotscaleError, ValueError):
    """Evaluation outputs whose per-document outcomes cannot be read; the message names the file and the fix."""


def empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_DTYPES[c]) for c in OUTCOME_COLUMNS})


_DTYPES = {"model": "object", "strategy": "object", "benchmark": "object", "task": "object", "doc_id": "int64",
           "budget_kind": "object", "budget": "float64", "value": "float64", "generated_tokens": "float64",
           "generate_requests": "float64"}


def _tokens(usage_path: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """Generated tokens and generate requests per (task, doc_id), summed over the document's usage records."""
    per: dict[tuple[str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    if not usage_path.exists():
        return {}
    for rec in iter_jsonl_gz(usage_path):
        if rec.get("kind") == "generate":
            slot = per[(rec.get("task"), rec.get("doc_id"))]
            slot[0] += rec.get("generated_tokens", 0)
            slot[1] += 1
    return {k: (v[0], v[1]) for k, v in per.items()}


def evaluation_outcomes(results_path, samples_path=None, usage_path=None) -> pd.DataFrame:
    """The outcomes of one evaluation folder (results.json, samples.jsonl.gz, usage.jsonl.gz beside it)."""
    results_path = Path(results_path)
    samples_path = Path(samples_path or results_path.with_name("samples.jsonl.gz"))
    usage_path = Path(usage_path or results_path.with_name("usage.jsonl.gz"))
    results = read_json(results_path)
    meta = results["cotscale"]
    strategy = meta["strategy"]["name"] if isinstance(meta["strategy"], dict) else meta["strategy"]
    variant = (meta.get("spec") or {}).get("task") or {}
    metric, filt = variant.get("metric"), variant.get("filter")
    if not metric or not filt:
        raise OutcomeError(f"{results_path}: its cotscale.spec.task names no metric and filter (written by an older "
                           "cotscale); delete it and rerun its evaluation")
    if not samples_path.exists():  # an lm-eval output folder without --log_samples: scores without intervals
        log.warning("%s: missing; no per-document outcomes (and no intervals) for %s / %s / %s", samples_path,
                    meta["model"], strategy, meta["benchmark"])
        return pd.DataFrame(columns=OUTCOME_COLUMNS)
    tokens = _tokens(usage_path)
    rows = []
    for rec in iter_jsonl_gz(samples_path):
        if rec.get("filter", "none") != filt:
            continue
        if metric not in rec:
            raise OutcomeError(f"{samples_path}: document {rec.get('doc_id')} of task {rec.get('task')!r} has no "
                               f"{metric!r} for filter {filt!r}; rerun its evaluation with this cotscale version")
        gen, req = tokens.get((rec["task"], rec["doc_id"]), (0.0, 0.0))
        rows.append({"model": meta["model"], "strategy": strategy, "benchmark": meta["benchmark"],
                     "task": rec["task"], "doc_id": int(rec["doc_id"]), "budget_kind": None, "budget": math.nan,
                     "value": float(rec[metric]), "generated_tokens": gen, "generate_requests": req})
    if not rows:
        raise OutcomeError(f"{samples_path}: no sample record with filter {filt!r}; rerun its evaluation")
    return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)


def strategy_outcomes(result_paths) -> pd.DataFrame:
    """The outcomes of every evaluation folder of ``result_paths`` (their results.json)."""
    parts = [evaluation_outcomes(p) for p in sorted(map(Path, result_paths))]
    return finish(parts)


def finish(parts) -> pd.DataFrame:
    """Outcome frames as one, in the contract's column order and dtypes, sorted."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty()
    out = pd.concat(parts, ignore_index=True)[list(OUTCOME_COLUMNS)].astype(_DTYPES)
    return out.sort_values(["model", "strategy", "benchmark", "budget_kind", "budget", "task", "doc_id"],
                           kind="stable", na_position="first").reset_index(drop=True)


def write(path, frame: pd.DataFrame) -> None:
    """An outcome table as parquet, written to a temporary file and renamed."""
    with atomic_path(path) as tmp:
        finish([frame]).to_parquet(tmp, index=False)


def read(path) -> pd.DataFrame:
    try:
        return pd.read_parquet(path)
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise OutcomeError(f"{path}: cannot read the outcome table ({exc}); rerun the rule that writes it") from None


def combine(paths, out) -> pd.DataFrame:
    """outcomes.parquet: the per-strategy and budget-sweep outcome tables together."""
    table = finish([read(p) for p in paths])
    write(out, table)
    return table

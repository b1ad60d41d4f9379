"""inference_scaling.csv per cost model: each budget-sweep point priced by cotscale.cost's registry on its
documents' own requests.

A sweep point's request for one document is the document's prompt tokens P (Σ ``prompt_tokens`` of its usage
records, as Table I counts a generate request's prompt: its generate prompt and its choices' log-likelihood tokens)
and the tokens it generated at that budget G (the sweep's per-document tokens: the truncated rationale of a length
or thinking budget, k × the mean rationale of self-consistency k), over n sequences sharing the prompt (n = k for a
``k`` sweep, else 1). A benchmark's cost per request is the mean over its documents of their cost (convex terms
priced per document, not at the mean); ``overall`` is the unweighted mean over benchmarks, as tokens_per_request.

Two ratios to the paper's 2·N·G (in the cost model's unit; seconds and dollars: 2·N·G run at the hardware's peak):

* ``ratio_to_paper``: the whole request. Under the context-aware models it *falls* as the budget grows while P ≫ G
  (the prompt's prefill, which the paper leaves out, is shared by more generated tokens), and grows again once G
  dominates the context.
* ``decode_ratio_to_paper``: the marginal cost of the generated tokens, cost(P, G, n) − cost(P, 0, n) (the decode
  steps alone), over 2·N·G. It is 1 under ``paper`` and ``forward`` and grows with the budget under ``attention``,
  ``kinetics``, ``seconds`` and ``dollars``: each extra token attends to, and reads the KV cache of, a longer
  context. This is what "does a longer thinking budget cost more per token than the paper says" asks.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from cotscale import cost, scaling
from cotscale.config import CotscaleError
from cotscale.contract import DEFAULT_COST_MODEL

log = logging.getLogger(__name__)

#: the columns inference_scaling.csv gains: one row per sweep row × cost model
COLUMNS = ["cost_model", "cost_unit", "cost_per_request", "decode_cost_per_request", "ratio_to_paper",
           "decode_ratio_to_paper"]
_KEYS = [*scaling.ID_COLUMNS, "budget_kind", "budget", "metric"]


def document_prompts(usage_paths) -> dict[tuple, float]:
    """{(model, strategy, task, doc_id): the document's prompt tokens} from usage.jsonl.gz files at
    results/evals/{model}/{strategy}/{benchmark}/ (the model and strategy from the path, task and doc_id from each
    record)."""
    from pathlib import Path

    from cotscale.io import iter_jsonl_gz

    out: dict[tuple, float] = {}
    for path in usage_paths:
        model, strategy = Path(path).parts[-4:-2]
        for record in iter_jsonl_gz(path):
            key = (model, strategy, record["task"], record["doc_id"])
            out[key] = out.get(key, 0.0) + float(record["prompt_tokens"])
    return out


def _benchmark_costs(rows: pd.DataFrame, prompts: dict, archs: dict, names, hardware, batch_size) -> pd.DataFrame:
    """Per sweep row (one benchmark) × cost model: the mean over its documents of their cost and of their decode
    steps' cost (the cost less that of the same request generating nothing)."""
    out, reasons = [], set()
    for row in rows.to_dict("records"):  # not itertuples: it renames the private _ columns
        docs, G = row[scaling._DOCS], np.asarray(row[scaling._TOKENS], dtype=float)
        P = np.array([prompts.get((row["model"], row["strategy"], task, doc), np.nan) for task, doc in docs])
        n = float(row["budget"]) if row["budget_kind"] == "k" else 1.0
        arch = {**archs.get(row["model"], {}), "N": float(row["N"])}
        ident = {k: row[k] for k in [*_KEYS, "benchmark"]}
        for name in names:
            try:
                full = cost.request_cost(name, arch, P, G, n, hardware=hardware, batch_size=batch_size,
                                         model=row["model"])
                prefill = cost.request_cost(name, arch, P, 0.0 * G, n, hardware=hardware, batch_size=batch_size,
                                            model=row["model"])
            except CotscaleError as exc:
                reasons.add(str(exc))
                full = prefill = np.full(len(G), np.nan)
            out.append({**ident, "cost_model": name, "cost_per_request": float(np.mean(full)),
                        "decode_cost_per_request": float(np.mean(full - prefill))})
        unpriced = sorted(f"{task}/{doc}" for (task, doc), p in zip(docs, P) if np.isnan(p))
        if unpriced:
            reasons.add(f"{row['model']} / {row['strategy']}: no usage record (prompt tokens) for document(s) "
                        f"{', '.join(unpriced[:5])}{' …' if len(unpriced) > 5 else ''}: only paper prices them")
    for reason in sorted(reasons):
        log.warning("inference_scaling: %s", reason)
    return pd.DataFrame(out)


def with_costs(table: pd.DataFrame, rows: pd.DataFrame, prompts: dict | None = None, archs: dict | None = None,
               names=(DEFAULT_COST_MODEL,), hardware: dict | None = None,
               batch_size: int = cost.DEFAULT_BATCH_SIZE) -> pd.DataFrame:
    """inference_scaling.csv (``table``, scaling.inference_scaling() of the sweep ``rows``) repeated per cost model
    of ``names`` (``paper`` first) with COLUMNS. ``prompts``: document_prompts(); a document without one, or a
    model without the architecture a cost model needs, gets NaN costs (logged). ``paper`` needs neither."""
    names = [DEFAULT_COST_MODEL, *[n for n in names if n != DEFAULT_COST_MODEL]]
    if table.empty:
        return table.reindex(columns=[*table.columns, *COLUMNS])
    per_bench = _benchmark_costs(rows, prompts or {}, archs or {}, names, hardware, batch_size)
    # overall: the unweighted mean over benchmarks (the table has an overall row only where all seven are there)
    overall = per_bench.groupby([*_KEYS, "cost_model"], as_index=False, dropna=False).agg(**{
        c: (c, lambda s: s.mean(skipna=False)) for c in ("cost_per_request", "decode_cost_per_request")}).assign(
        benchmark="overall")
    costs = pd.concat([per_bench, overall], ignore_index=True)
    out = table.merge(costs, on=[*_KEYS, "benchmark"], how="left", validate="one_to_many")
    paper_flops = out["inference_flops_per_request"].to_numpy(float)
    out["cost_unit"] = out["cost_model"].map(lambda n: cost.REGISTRY[n].unit)
    paper_unit = paper_flops.copy()
    for unit in ("s", "USD"):
        mask = (out["cost_unit"] == unit).to_numpy()
        if mask.any():
            paper_unit[mask] = cost.from_flops(paper_flops[mask], unit, hardware)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio_to_paper"] = np.where(paper_unit > 0, out["cost_per_request"] / paper_unit, np.nan)
        out["decode_ratio_to_paper"] = np.where(paper_unit > 0, out["decode_cost_per_request"] / paper_unit, np.nan)
    order = {n: i for i, n in enumerate(names)}
    out = out.assign(_order=out["cost_model"].map(order)).sort_values(
        ["family", "model", "strategy", "budget_kind", "budget", "metric", "benchmark", "_order"], kind="stable")
    return out[[*table.columns, *COLUMNS]].reset_index(drop=True)


def paper_rows(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of inference_scaling.csv under the paper's cost model (one per operating point), whatever its
    version: a table without ``cost_model`` is the paper's already."""
    if "cost_model" not in table:
        return table
    return table[table["cost_model"] == DEFAULT_COST_MODEL].reset_index(drop=True)

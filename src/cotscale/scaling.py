"""Inference-compute scaling from one run: operating points at smaller budgets, estimated from what was generated.

A budget sweep needs no new generation (``budget_kind`` names the knob):

- ``k`` — a strategy with ``samples: n`` drew n rationales per document; each k ≤ n is estimated from them:
  ``maj@k``, the exact expected majority-vote accuracy over all C(n, k) subsets of the n votes (ties split
  evenly, i.e. broken uniformly at random — the pipeline's own vote breaks them by mean log-likelihood, so at
  k = n the two can differ on tied documents); ``weighted_maj@k``, each vote weighted by its rationale's
  sequence probability (the seed's listed but never implemented "wmv"): exact over the subsets when there are
  at most ``EXACT_SUBSETS`` of them, else a seeded Monte-Carlo estimate whose error is reported in
  ``mc_stderr``; and, for free-form answers (``PASS_AT_K``), the unbiased ``pass@k`` of Chen et al. (2021).
  Tokens per request at k = k × the document's mean generated tokens per rationale.
- ``max_gen_toks`` (or another length budget) — one greedy generation at the largest budget serves every smaller
  one; the evaluation scores each budget on its own truncated rationale, and this module averages those scores.

Input, one row per document × sample (``sample_sweep``) or document × budget (``length_sweep``): the
``ID_COLUMNS`` of the run, ``benchmark`` (one of the seven), ``task`` (the lm-eval (sub)task), ``doc_id``, then

- samples: ``sample`` (0..n−1), ``answer`` (the extracted answer of a free-form task, or the index of the choice
  the rationale voted for), ``correct`` (bool; a function of the answer), ``generated_tokens`` (of that
  rationale), ``logprob`` (its sequence log-probability, natural log; only weighted_maj@k reads it);
- length budgets: ``budget`` (the budget the row was scored at), ``correct``, ``generated_tokens`` (after
  truncation to that budget).

Scores per benchmark pool the subtasks' documents (a group such as mmlu is document-weighted); ``score_stderr`` is
the standard error of the mean over documents of each document's expected score, and the interval
(``ci_low``/``ci_high``) the bootstrap over documents of cotscale.uncertainty (stratified by benchmark, the same
resampled documents for every budget of a run and for the model's plain strategies; ``ci_method`` says so), which
stays within [0, 1]; weighted_maj@k's Monte-Carlo error is reported apart in ``mc_stderr``. Every row's
per-document values are the sweep's outcomes (:func:`sweep_outcomes`, results/tables/sweep_outcomes.parquet). ``overall`` is the unweighted mean over the seven benchmarks (NaN when one is
missing, as in benchmarks.csv), with tokens per request as Table I defines them (the mean over benchmarks of
the mean per request within each).

Length: the three budget kinds (k, length, thinking) share the operating-point table and its interval;
pricing the points per cost model lives in cotscale.sweep_cost.
"""

from __future__ import annotations

import itertools
import logging
import math

import numpy as np
import pandas as pd

from cotscale import contract, flops, outcomes, uncertainty
from cotscale.config import BENCHMARKS, CotscaleError
from cotscale.contract import (BUDGET_GENERATED_TOKENS, BUDGET_LOGLIKELIHOODS, BUDGET_RESPONSES, BUDGETS,
                               GENERATED_TOKENS, RATIONALE_LOGLIKELIHOODS, SEQUENCE_LOGPROBS)
from cotscale.io import write_csv
from cotscale.lm.thinking import no_answer

log = logging.getLogger(__name__)

ID_COLUMNS = list(contract.ID_COLUMNS)
DOC_COLUMNS = [*ID_COLUMNS, "benchmark", "task", "doc_id"]
SAMPLE_COLUMNS = [*DOC_COLUMNS, "sample", "answer", "correct", "generated_tokens", "logprob"]
LENGTH_COLUMNS = [*DOC_COLUMNS, "budget", "correct", "generated_tokens"]
#: benchmarks whose answers are free-form (checked, not picked among choices): pass@k means something only there
PASS_AT_K = frozenset({"gsm8k"})
#: metrics defined only on those benchmarks, so they get no overall row
FREE_FORM_METRICS = frozenset({"pass@k"})
#: weighted_maj@k is enumerated exactly up to this many k-subsets per document, else estimated by Monte Carlo
EXACT_SUBSETS = 5000
MC_DRAWS = 2000
#: per budget kind, the metric whose overall score is the operating point's score (the planner's and fig11's)
PRIMARY_METRIC = {"k": "maj@k", "max_gen_toks": "accuracy", "thinking_budget": "accuracy"}
COLUMNS = [*ID_COLUMNS, "budget_kind", "budget", "benchmark", "metric", "estimator", "documents", "score",
           "score_stderr", "mc_stderr", "ci_low", "ci_high", "tokens_per_request", "inference_flops_per_request",
           "train_flops", "n_benchmarks", "ci_method"]
#: per-row document keys, values and tokens, carried from the sweeps to the intervals and outcomes (never written)
_DOCS, _VALUES, _TOKENS = "_docs", "_values", "_tokens"


class ScalingError(CotscaleError, ValueError):
    """Sample data that cannot be swept as given; the message names the run and what is wrong."""


# ---------------------------------------------------------------- estimators for one document

def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k = 1 − C(n−c, k)/C(n, k) for c correct of n samples (Chen et al. 2021; stable product)."""
    if not 0 < k <= n or not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 < k <= n and 0 <= c <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _win_probability(c: int, others: list[int], ks: np.ndarray, n: int) -> np.ndarray:
    """P(an answer holding c of the n votes wins the vote of a uniformly random k-subset), per k; ties split evenly.

    Counted, not enumerated: for each number j of its votes drawn, a generating polynomial over the other answers
    counts the ways to draw the remaining k − j votes with every other answer at most j, by how many tie at j.
    """
    kmax = int(ks.max())
    m = len(others)
    share = 1.0 / (1.0 + np.arange(m + 1))  # its share of the win when t other answers tie with it
    total = np.zeros(len(ks))
    for j in range(1, min(c, kmax) + 1):
        depth = kmax - j + 1  # other votes drawn: 0 .. kmax − j
        poly = np.zeros((depth, m + 1))  # [other votes drawn, other answers tied at j]
        poly[0, 0] = 1.0
        for ci in others:
            new = np.zeros_like(poly)
            for x in range(min(j, ci, depth - 1) + 1):
                ways = float(math.comb(ci, x))
                if x < j:
                    new[x:, :] += ways * poly[: depth - x, :]
                else:
                    new[x:, 1:] += ways * poly[: depth - x, :-1]
            poly = new
        weighted = poly @ share
        for i, k in enumerate(ks):
            if j <= k:
                total[i] += math.comb(c, j) * weighted[k - j]
    return total / np.array([float(math.comb(n, int(k))) for k in ks])


def _votes(answers, correct) -> tuple[list[int], list[bool]]:
    """Vote counts per distinct answer and whether each is correct (it must be the same for every vote)."""
    counts: dict = {}
    right: dict = {}
    for a, ok in zip(answers, correct):
        counts[a] = counts.get(a, 0) + 1
        if right.setdefault(a, bool(ok)) != bool(ok):
            raise ScalingError(f"answer {a!r} is marked both correct and incorrect among one document's samples")
    return list(counts.values()), [right[a] for a in counts]


def maj_at_k(answers, correct, ks) -> np.ndarray:
    """Exact expected majority-vote accuracy of one document over all k-subsets of its n votes, per k in ``ks``."""
    ks = np.asarray(ks, dtype=int)
    n = len(answers)
    if n == 0 or ks.min() < 1 or ks.max() > n:
        raise ValueError(f"maj@k needs 1 <= k <= n, got n={n}, k={ks.tolist()}")
    counts, right = _votes(answers, correct)
    out = np.zeros(len(ks))
    for i, (c, ok) in enumerate(zip(counts, right)):
        if ok:
            out += _win_probability(c, counts[:i] + counts[i + 1:], ks, n)
    return out


def weighted_maj_at_k(answers, correct, logprobs, ks, rng: np.random.Generator):
    """Expected accuracy of the probability-weighted vote over k-subsets, per k in ``ks``: (values, Monte-Carlo
    stderrs, exact flags).

    Weights are exp(logprob − max), so one document's weights never underflow together (the vote is scale-free).
    A k with at most EXACT_SUBSETS subsets is enumerated; the others share MC_DRAWS random orderings of the votes,
    whose first k votes are a uniform k-subset, so one draw serves every k.
    """
    n = len(answers)
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 1 or max(ks) > n:
        raise ValueError(f"weighted maj@k needs 1 <= k <= n, got n={n}, k={ks}")
    labels, index = np.unique(np.asarray([str(a) for a in answers]), return_inverse=True)
    ok = np.zeros(len(labels))
    ok[index] = np.asarray(correct, dtype=float)
    lp = np.asarray(logprobs, dtype=float)
    if not np.isfinite(lp).all():
        raise ScalingError("weighted maj@k needs a finite sequence log-probability for every sample")
    onehot = np.zeros((n, len(labels)))
    onehot[np.arange(n), index] = np.exp(lp - lp.max())

    def accuracy(sums: np.ndarray) -> np.ndarray:  # per subset: the credit of the correct answers among the top
        top = np.isclose(sums, sums.max(axis=1, keepdims=True), rtol=1e-12, atol=0)
        return (top * ok).sum(axis=1) / top.sum(axis=1)

    exact = np.array([math.comb(n, k) <= EXACT_SUBSETS for k in ks])
    prefix = None
    if not exact.all():
        orders = np.argsort(rng.random((MC_DRAWS, n)), axis=1)
        prefix = np.cumsum(onehot[orders], axis=1)  # [draw, votes taken, answer]
    values, mc = np.zeros(len(ks)), np.zeros(len(ks))
    for i, k in enumerate(ks):
        if exact[i]:
            values[i] = accuracy(onehot[np.array(list(itertools.combinations(range(n), k)))].sum(axis=1)).mean()
        else:
            draws = accuracy(prefix[:, k - 1, :])
            values[i], mc[i] = draws.mean(), draws.std(ddof=1) / math.sqrt(len(draws))
    return values, mc, exact


# ---------------------------------------------------------------- tables

def _check(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScalingError(f"{what}: sample data lacks column(s) {', '.join(missing)} (needs {', '.join(columns)})")


def _row(ident: dict, kind: str, budget, benchmark: str, metric: str, estimator: str, values: np.ndarray,
         mc_var: float, docs: list[tuple], tokens: np.ndarray) -> dict:
    """One sweep row; ``docs`` (task, doc_id) in sorted order, ``values`` and ``tokens`` (per request) per doc."""
    n = len(values)
    stderr = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
    return {**ident, "budget_kind": kind, "budget": budget, "benchmark": benchmark, "metric": metric,
            "estimator": estimator, "documents": n, "score": float(values.mean()), "score_stderr": stderr,
            "mc_stderr": math.sqrt(mc_var), "tokens_per_request": float(np.mean(tokens)), _DOCS: docs,
            _VALUES: np.asarray(values, dtype=float), _TOKENS: np.asarray(tokens, dtype=float)}


def sample_sweep(samples: pd.DataFrame, ks, seed: int = 0) -> pd.DataFrame:
    """Per run × benchmark × k: maj@k, weighted_maj@k (where log-probabilities are given) and pass@k (PASS_AT_K).

    Every document must have the same number n ≥ max(ks) of samples. The Monte-Carlo generator is seeded once
    per run × benchmark from ``seed``, so rows do not depend on which other runs are in the table.
    """
    _check(samples, [c for c in SAMPLE_COLUMNS if c != "logprob"], "sample_sweep")
    ks = sorted({int(k) for k in ks})
    rows = []
    for key, grp in samples.groupby(ID_COLUMNS + ["benchmark"], sort=True, dropna=False):
        ident = dict(zip(ID_COLUMNS, key[:-1]))
        benchmark = key[-1]
        keyed = list(grp.groupby(["task", "doc_id"], sort=True))
        keys, docs = [k for k, _ in keyed], [d for _, d in keyed]
        sizes = {len(d) for d in docs}
        where = f"{ident['model']} / {ident['strategy']} / {benchmark}"
        if len(sizes) != 1 or min(sizes) < max(ks):
            raise ScalingError(f"{where}: every document needs the same number n >= {max(ks)} of samples "
                               f"(found {sorted(sizes)}); list k values up to the strategy's samples")
        maj = np.array([maj_at_k(d["answer"].tolist(), d["correct"].tolist(), ks) for d in docs])
        per_sample_tokens = np.array([d["generated_tokens"].mean() for d in docs])
        weighted = None
        if "logprob" in grp and grp["logprob"].notna().all():
            rng = np.random.default_rng([seed, *map(ord, where)])
            weighted = [weighted_maj_at_k(d["answer"].tolist(), d["correct"].tolist(), d["logprob"].tolist(), ks,
                                          rng) for d in docs]
        for i, k in enumerate(ks):
            tokens = k * per_sample_tokens
            rows.append(_row(ident, "k", k, benchmark, "maj@k", "exact", maj[:, i], 0.0, keys, tokens))
            if weighted is not None:
                values, mc = np.array([w[0][i] for w in weighted]), np.array([w[1][i] for w in weighted])
                estimator = "exact" if all(w[2][i] for w in weighted) else \
                    f"monte_carlo, C(n,k) > {EXACT_SUBSETS} (draws={MC_DRAWS}, seed={seed})"
                rows.append(_row(ident, "k", k, benchmark, "weighted_maj@k", estimator, values,
                                 float((mc**2).sum()) / len(docs) ** 2, keys, tokens))
            if benchmark in PASS_AT_K:
                values = np.array([pass_at_k(len(d), int(d["correct"].sum()), k) for d in docs])
                rows.append(_row(ident, "k", k, benchmark, "pass@k", "exact", values, 0.0, keys, tokens))
    return pd.DataFrame(rows)


def length_sweep(scored: pd.DataFrame, kind: str = "max_gen_toks") -> pd.DataFrame:
    """Per run × benchmark × budget: accuracy of the rationales truncated to that budget, and their mean tokens."""
    _check(scored, LENGTH_COLUMNS, "length_sweep")
    rows = []
    for key, grp in scored.groupby(ID_COLUMNS + ["benchmark", "budget"], sort=True, dropna=False):
        ident = dict(zip(ID_COLUMNS, key[:-2]))
        grp = grp.sort_values(["task", "doc_id"], kind="stable")
        rows.append(_row(ident, kind, key[-1], key[-2], "accuracy", "exact", grp["correct"].to_numpy(dtype=float),
                         0.0, list(zip(grp["task"], grp["doc_id"])), grp["generated_tokens"].to_numpy(dtype=float)))
    return pd.DataFrame(rows)


def _score_draws(rows: pd.DataFrame, boot: dict) -> dict:
    """Bootstrap draws of each row's score (by row label): one resample of the documents per (model, benchmark,
    number of documents), shared by every budget and metric of the model's sweeps (cotscale.uncertainty)."""
    out = {}
    for (model, bench, n), grp in rows.groupby(["model", "benchmark", "documents"], sort=True):
        values = np.column_stack(grp[_VALUES].tolist())
        means = uncertainty.resampled_means(values, boot["draws"], uncertainty.generator(boot["seed"], model, bench, n))
        out.update({label: means[:, j] for j, label in enumerate(grp.index)})
    return out


def inference_scaling(rows: pd.DataFrame, benchmarks=BENCHMARKS, boot: dict | None = None) -> pd.DataFrame:
    """inference_scaling.csv: the per-benchmark sweep rows plus an ``overall`` row per run × budget × metric
    (metrics scored on every benchmark only), with inference FLOPs per request 2·N·tokens and train FLOPs 6·N·D,
    and bootstrap intervals (``boot``: cotscale.uncertainty.settings; its defaults when None)."""
    if rows.empty:
        return pd.DataFrame(columns=COLUMNS)
    boot = boot or dict(uncertainty.DEFAULTS)
    rows = rows.reset_index(drop=True)
    draws = _score_draws(rows, boot)
    rows["ci_low"], rows["ci_high"] = zip(*(map(float, uncertainty.percentile(draws[i], boot["level"]))
                                            for i in rows.index))
    keys = ID_COLUMNS + ["budget_kind", "budget", "metric"]
    overall = []
    for key, grp in rows.groupby(keys, sort=True, dropna=False):
        if key[-1] in FREE_FORM_METRICS:
            continue
        by_bench = grp.reset_index().set_index("benchmark").reindex(list(benchmarks))
        if by_bench["score"].isna().any():
            log.warning("inference_scaling: %s / %s, %s = %s, %s: no score for %s; no overall row", key[0], key[5],
                        key[6], key[7], key[8], ", ".join(by_bench.index[by_bench["score"].isna()]))
            continue
        se = by_bench["score_stderr"].fillna(0.0)
        mc = by_bench["mc_stderr"].fillna(0.0)
        low, high = uncertainty.percentile(np.mean([draws[i] for i in by_bench["index"]], axis=0), boot["level"])
        overall.append({**dict(zip(keys, key)), "benchmark": "overall",
                        "estimator": "+".join(sorted(set(grp["estimator"]))),
                        "documents": int(by_bench["documents"].sum()),
                        "score": float(by_bench["score"].mean()),
                        "score_stderr": math.sqrt(float((se**2).sum())) / len(by_bench),
                        "mc_stderr": math.sqrt(float((mc**2).sum())) / len(by_bench),
                        "ci_low": float(low), "ci_high": float(high),
                        "tokens_per_request": float(by_bench["tokens_per_request"].mean()),
                        "n_benchmarks": len(by_bench)})
    out = pd.concat([rows.assign(n_benchmarks=1), pd.DataFrame(overall)], ignore_index=True)
    out["inference_flops_per_request"] = flops.inference_flops(out["N"], out["tokens_per_request"])
    out["train_flops"] = flops.train_flops(out["N"], out["D"])
    out["ci_method"] = uncertainty.method(boot, "documents, stratified by benchmark, paired across budgets")
    return out[COLUMNS].sort_values(["family", "model", "strategy", "budget_kind", "budget", "metric",
                                     "benchmark"]).reset_index(drop=True)


def sweep_outcomes(rows: pd.DataFrame) -> pd.DataFrame:
    """The per-document outcomes (cotscale.contract.OUTCOME_COLUMNS) of every budget of the sweeps, in the metric
    whose overall score is the operating point's (PRIMARY_METRIC); a document's tokens are its tokens per request
    at that budget (one generate request)."""
    if rows.empty:
        return outcomes.empty()
    primary = rows[rows["metric"] == rows["budget_kind"].map(PRIMARY_METRIC)]
    parts = []
    for row in primary.to_dict("records"):  # not itertuples: it renames the private _ columns
        tasks, doc_ids = zip(*row[_DOCS]) if row[_DOCS] else ((), ())
        parts.append(pd.DataFrame({"model": row["model"], "strategy": row["strategy"], "benchmark": row["benchmark"],
                                   "task": list(tasks), "doc_id": list(doc_ids), "budget_kind": row["budget_kind"],
                                   "budget": float(row["budget"]), "value": row[_VALUES],
                                   "generated_tokens": row[_TOKENS], "generate_requests": 1.0}))
    return outcomes.finish(parts)


def write_inference_scaling(out, sweeps: list[pd.DataFrame], benchmarks=BENCHMARKS, boot: dict | None = None,
                            outcomes_out=None, price=None) -> pd.DataFrame:
    """inference_scaling.csv from the sample_sweep()/length_sweep() rows of every run (header only when none), and
    their per-document outcomes into ``outcomes_out`` when given; ``price(table, rows)`` adds the cost models
    (cotscale.sweep_cost.with_costs)."""
    rows = [s for s in sweeps if len(s)]
    frame = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    table = inference_scaling(frame, benchmarks, boot)
    if price is not None:
        table = price(table, frame)
    write_csv(out, table)
    if outcomes_out is not None:
        outcomes.write(outcomes_out, sweep_outcomes(frame))
    return table


# ---------------------------------------------------------------- input frames from an evaluation's records

def _gold(record: dict, where: str) -> int:
    """The index of the right choice of a multiple-choice record, as lm-eval scored it: an integer target; a
    target that is one choice's continuation; a digit string; else (multiple-input tasks such as winogrande, one
    continuation after differing contexts) the index lm-eval's acc implies for the record's answer
    (``filtered_resps``): that answer when acc is 1, the other of two choices when 0. A partial-context task's
    record with its document (winogrande, xwinograd) names its option itself (cotscale.lm.prompts.gold_index)."""
    from cotscale.lm.prompts import gold_index

    gold = gold_index(str(record.get("task")))
    if gold is not None and "doc" in record:
        return gold(record["doc"])
    target = record.get("target")
    if isinstance(target, int) and not isinstance(target, bool):
        return target
    continuations = [str(args[1]).strip() for args in record.get("arguments") or []]
    if isinstance(target, str):
        matches = [i for i, c in enumerate(continuations) if c == target.strip()]
        if len(matches) == 1:
            return matches[0]
        if target.strip().isdigit():
            return int(target)
        scores = [float(resp[0]) for resp in record.get("filtered_resps") or []]
        pick = _pick(scores)  # None: no answer, whose acc says nothing about the gold
        if len(matches) == len(continuations) == len(scores) and pick is not None and record.get("acc") in (0, 1):
            if record["acc"] == 1:
                return pick
            if len(scores) == 2:
                return 1 - pick
    raise ScalingError(f"{where}: document {record.get('doc_id')!r}: cannot tell the right choice from target "
                       f"{target!r} (not an index, not one choice's continuation, and no two-choice acc to read it "
                       f"from)")


#: filter steps that pick one response of several (lm-eval's self-consistency pipeline); a per-response answer
#: is what the steps before them extract
_PICK_STEPS = frozenset({"majority_vote", "take_first", "take_first_k"})


def response_answers(task_config: dict, filt: str, metric: str, records: list[dict], responses: list[list[str]],
                     where: str) -> list[tuple[list, list[bool]]]:
    """Per generate_until record of one task, (answers, correct) of its ``responses`` (its resps, or its budget
    cuts), re-extracted and scored as lm-eval scores one response: the steps of the task's filter ``filt`` before
    the one that picks a response (majority vote, take first), each run once over all records as lm-eval runs it,
    then ``metric`` with the options of the task's metric_list against each record's target. Needs lm-eval (the
    rule runs in the evaluation environment)."""
    import lm_eval.filters  # noqa: F401 - registers lm-eval's filters
    from lm_eval.api.registry import get_filter, get_metric

    task = records[0]["task"]
    entries = {e.get("name"): e for e in task_config.get("filter_list") or []}
    if filt not in entries:
        raise ScalingError(f"{where}: task {task!r} has no filter {filt!r} (has {sorted(entries)})")
    answers = [list(r) for r in responses]
    docs = [record["doc"] for record in records]
    for step in entries[filt]["filter"]:
        if step["function"] in _PICK_STEPS:
            break
        kwargs = {k: v for k, v in step.items() if k != "function"}
        answers = [list(a) for a in get_filter(step["function"])(**kwargs).apply(answers, docs)]
    options = next((dict(m) for m in task_config.get("metric_list") or [] if m.get("metric") == metric), None)
    if options is None:
        raise ScalingError(f"{where}: task {task!r} has no metric {metric!r} in its metric_list")
    for key in ("metric", "aggregation", "higher_is_better"):
        options.pop(key, None)
    fn = get_metric(metric)
    out = []
    for record, extracted in zip(records, answers, strict=True):
        correct = []
        for answer in extracted:
            score = fn(references=[record["target"]], predictions=[answer], **options)
            correct.append(bool((score[metric] if isinstance(score, dict) else score) == 1))
        out.append((extracted, correct))
    return out


def _pick(lls) -> int | None:
    """The choice a hybrid record's log-likelihoods pick (the highest, lowest index on ties, as the wrapper votes);
    None when no choice has a finite one: no answer (a thinking that never closed), wrong whatever the gold."""
    if no_answer(lls):
        return None
    return max(range(len(lls)), key=lambda c: (lls[c], -c))


def _logprobs(record: dict, n: int) -> list[float]:
    lps = record.get(SEQUENCE_LOGPROBS) or [None] * n
    return [math.nan if lp is None else float(lp) for lp in lps]


def sweep_frame(results_path, samples_path, kind: str) -> pd.DataFrame:
    """One evaluation's rows of the sweep input (SAMPLE_COLUMNS for ``kind`` "k", LENGTH_COLUMNS for
    "max_gen_toks"), from its results.json (the run's identity, lm-eval's task configs, the benchmark's metric and
    filter) and its sample records (the fields cotscale.lm adds). Hybrid records: per rationale, its vote (the
    argmax of ``rationale_loglikelihoods``, lowest index on ties, as the wrapper votes), ``generated_tokens`` and
    ``sequence_logprobs``; per budget, ``budget_loglikelihoods`` (a row without a finite value is no answer:
    wrong) and ``budget_generated_tokens``. generate_until records (gsm8k) of the benchmark's filter: per
    response, its answer re-extracted by :func:`response_answers`, ``generated_tokens`` and ``sequence_logprobs``;
    per budget, the answer of ``budget_responses`` re-extracted the same way. A missing log-probability is NaN (no
    weighted maj@k)."""
    from cotscale.io import iter_jsonl_gz, read_json

    results = read_json(results_path)
    meta = results["cotscale"]
    strategy = meta["strategy"]["name"] if isinstance(meta["strategy"], dict) else meta["strategy"]
    ident = {"model": meta["model"], "revision": meta.get("revision"), "family": meta["family"], "N": meta["N"],
             "D": meta["D"], "strategy": strategy, "benchmark": meta["benchmark"]}
    variant = (meta.get("spec") or {}).get("task") or {}
    where = f"{samples_path}"
    rows = []
    generated: dict[str, list[dict]] = {}  # generate_until records of the benchmark's filter, per task
    for record in iter_jsonl_gz(samples_path):
        doc = {**ident, "task": record["task"], "doc_id": record["doc_id"]}
        if kind == "k" and RATIONALE_LOGLIKELIHOODS in record:
            gold = _gold(record, where)
            n = len(record[RATIONALE_LOGLIKELIHOODS])
            lengths = record.get(GENERATED_TOKENS) or [math.nan] * n
            for i, (lls, tokens, lp) in enumerate(zip(record[RATIONALE_LOGLIKELIHOODS], lengths,
                                                      _logprobs(record, n), strict=True)):
                vote = _pick(lls)
                rows.append({**doc, "sample": i, "answer": vote, "correct": vote == gold, "generated_tokens": tokens,
                             "logprob": lp})
        elif kind != "k" and BUDGET_LOGLIKELIHOODS in record:
            gold = _gold(record, where)
            for b, lls, n in zip(record[BUDGETS], record[BUDGET_LOGLIKELIHOODS],
                                 record[BUDGET_GENERATED_TOKENS], strict=True):
                rows.append({**doc, "budget": int(b), "correct": _pick(lls) == gold, "generated_tokens": n})
        elif "resps" in record and record.get("filter") == variant.get("filter") \
                and (GENERATED_TOKENS if kind == "k" else BUDGET_RESPONSES) in record:
            generated.setdefault(record["task"], []).append(record)
    for task, records in sorted(generated.items()):
        responses = [[r for req in rec["resps"] for r in req] if kind == "k" else rec[BUDGET_RESPONSES]
                     for rec in records]
        scored = response_answers(results["configs"][task], variant["filter"], variant["metric"], records, responses,
                                  where)
        for record, (answers, correct) in zip(records, scored, strict=True):
            doc = {**ident, "task": record["task"], "doc_id": record["doc_id"]}
            if kind != "k":
                for b, ok, n in zip(record[BUDGETS], correct, record[BUDGET_GENERATED_TOKENS], strict=True):
                    rows.append({**doc, "budget": int(b), "correct": ok, "generated_tokens": n})
                continue
            if len(answers) != len(record[GENERATED_TOKENS]):
                raise ScalingError(f"{where}: document {record['doc_id']} has {len(answers)} responses but "
                                   f"{len(record['generated_tokens'])} generated_tokens entries")
            for i, (answer, ok, tokens, lp) in enumerate(zip(answers, correct, record[GENERATED_TOKENS],
                                                             _logprobs(record, len(answers)), strict=True)):
                rows.append({**doc, "sample": i, "answer": answer, "correct": ok, "generated_tokens": tokens,
                             "logprob": lp})
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS if kind == "k" else LENGTH_COLUMNS)


def sweep_rows(runs: list[tuple], sweeps: dict[str, tuple[str, list[int]]], seed: int = 0) -> list[pd.DataFrame]:
    """sample_sweep / length_sweep rows of every run (results.json, samples.jsonl.gz, strategy name) of the
    strategies in ``sweeps`` ({strategy: (budget kind, budgets)}, cotscale.strategy.budget_sweep)."""
    frames: dict[str, list[pd.DataFrame]] = {}
    for results_path, samples_path, strategy in runs:
        frames.setdefault(strategy, []).append(sweep_frame(results_path, samples_path, sweeps[strategy][0]))
    out = []
    for strategy, parts in frames.items():
        kind, budgets = sweeps[strategy]
        frame = pd.concat(parts, ignore_index=True)
        if frame.empty:
            log.warning("inference_scaling: strategy %s has no sample records with sweep fields", strategy)
            continue
        out.append(sample_sweep(frame, budgets, seed) if kind == "k" else length_sweep(frame, kind))
    return out

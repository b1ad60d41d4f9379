"""Table I: tokens generated per request, baseline vs CoT, per model.

As in the paper, a model's figure is the unweighted mean over benchmarks of the mean per generate request within
each benchmark, a group benchmark (mmlu, xwinograd) pooling its subtasks by generate requests (Σ generated tokens /
Σ generate requests, so subtasks with different numbers of choices, hence of log-likelihood requests, weigh by
what they generated for; a benchmark without generate requests generated 0 tokens); only benchmarks that both
strategies have for that model enter, so the two columns compare like with like. The Overall row is the mean
over models and every ratio is CoT/baseline of the two means beside it (the seed's table mixed per-task ratios
with the overall ratio).

Beside the means, the share of generate requests whose generation was empty (``baseline_empty_fraction``,
``cot_empty_fraction``; cotscale.usage.is_empty), averaged like the means: an empty rationale costs its request
almost nothing and pulls the token mean down, so a CoT mean is read with it. ``empty_warning`` marks a row whose
share passes the configured threshold (config key analysis.empty_warning).
"""

from __future__ import annotations

import pandas as pd

MODEL_COLS = ["model", "family", "N", "D"]
EMPTY_COLS = ("baseline_empty_fraction", "cot_empty_fraction")


def units(values: pd.Series) -> str:
    """The token units present, joined (tokens, words or both)."""
    return "+".join(sorted(set(values.dropna())))


def benchmark_tokens(tokens: pd.DataFrame) -> pd.DataFrame:
    """Per model × strategy × benchmark, subtasks pooled: generated tokens per generate request, and prompt plus
    generated tokens per document (``forward_tokens_per_document``, the full forward cost of one request).

    ``tokens`` has tokens.csv's columns (one row per model × strategy × task; ``generate_requests``,
    ``generated_tokens``, ``documents``, ``prompt_tokens`` are sums over the task).
    """
    share = tokens["empty_fraction"] if "empty_fraction" in tokens else float("nan")  # NaN: tables from before it
    tokens = tokens.assign(empty=pd.Series(share, index=tokens.index).where(tokens["generate_requests"] > 0, 0.0)
                           * tokens["generate_requests"])
    out = tokens.groupby(MODEL_COLS + ["strategy", "benchmark"], as_index=False, dropna=False).agg(
        generate_requests=("generate_requests", "sum"), generated_tokens=("generated_tokens", "sum"),
        documents=("documents", "sum"), prompt_tokens=("prompt_tokens", "sum"), token_unit=("token_unit", units),
        empty=("empty", lambda x: x.sum(skipna=False)))
    generating = out["generate_requests"] > 0
    out["mean_generated_tokens"] = (out["generated_tokens"] / out["generate_requests"].where(generating)).fillna(0.0)
    out["forward_tokens_per_document"] = (out["prompt_tokens"] + out["generated_tokens"]) / out["documents"]
    out["empty_fraction"] = out["empty"] / out["generate_requests"].where(generating)
    return out.drop(columns="empty")


def table1(tokens: pd.DataFrame, baseline: str, cot: str, empty_warning: float = 0.1) -> pd.DataFrame:
    """Per-model rows (models with tokens for both strategies) plus an ``Overall`` row.

    Columns: model, family, N, D, baseline_tokens, cot_tokens, ratio, n_benchmarks, token_unit,
    baseline_empty_fraction, cot_empty_fraction, empty_warning (either passes ``empty_warning``).
    """
    bench = benchmark_tokens(tokens)
    keys = MODEL_COLS + ["benchmark"]
    pair = bench[bench["strategy"] == baseline].merge(
        bench[bench["strategy"] == cot], on=keys, suffixes=("_b", "_c"))
    pair["token_unit"] = pair["token_unit_b"].where(pair["token_unit_b"] == pair["token_unit_c"],
                                                    pair["token_unit_b"] + "/" + pair["token_unit_c"])
    rows = pair.groupby(MODEL_COLS, as_index=False, dropna=False).agg(
        baseline_tokens=("mean_generated_tokens_b", "mean"), cot_tokens=("mean_generated_tokens_c", "mean"),
        n_benchmarks=("benchmark", "nunique"), token_unit=("token_unit", units),
        baseline_empty_fraction=("empty_fraction_b", "mean"), cot_empty_fraction=("empty_fraction_c", "mean"))
    overall = pd.DataFrame([{"model": "Overall", "baseline_tokens": rows["baseline_tokens"].mean(),
                             "cot_tokens": rows["cot_tokens"].mean(), "token_unit": units(rows["token_unit"]),
                             **{c: rows[c].mean() for c in EMPTY_COLS}}])
    out = pd.concat([rows, overall], ignore_index=True)
    out["ratio"] = out["cot_tokens"] / out["baseline_tokens"]
    out["empty_warning"] = (out[list(EMPTY_COLS)] > empty_warning).any(axis=1)
    return out[MODEL_COLS + ["baseline_tokens", "cot_tokens", "ratio", "n_benchmarks", "token_unit", *EMPTY_COLS,
                             "empty_warning"]]


def _percent(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{100 * value:.0f}%"


def _cells(df: pd.DataFrame) -> list[list[str]]:
    return [[str(r.model) + (" (!)" if r.empty_warning else ""), f"{r.baseline_tokens:.1f}", f"{r.cot_tokens:.1f}",
             f"{r.ratio:.2f}", _percent(r.baseline_empty_fraction), _percent(r.cot_empty_fraction)]
            for r in df.itertuples()]


def _note(df: pd.DataFrame) -> str:
    """The line under the table: what the empty columns are, and what (!) marks."""
    text = ("Empty: share of generate requests with no text before the first stop sequence or EOS (counted in "
            "the means).")
    if df["empty_warning"].any():
        text += " (!): an empty share above the configured analysis.empty_warning."
    return text


def to_markdown(df: pd.DataFrame) -> str:
    """Table I as a GitHub-flavoured markdown table (unit in the header), the empty shares beside the means."""
    unit = units(df["token_unit"])
    lines = [f"| Model | Baseline ({unit}/request) | CoT ({unit}/request) | Ratio (CoT/baseline) | Empty baseline "
             "| Empty CoT |", "|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(c) + " |" for c in _cells(df)]
    return "\n".join(lines) + "\n\n" + _note(df) + "\n"


def to_latex(df: pd.DataFrame) -> str:
    """Table I as a booktabs tabular; the Overall row below a midrule."""
    unit = units(df["token_unit"])
    esc = str.maketrans({"_": r"\_", "&": r"\&", "%": r"\%", "#": r"\#"})
    body = [" & ".join(c.translate(esc) for c in cells) + r" \\" for cells in _cells(df)]
    if len(body) > 1 and df["model"].iloc[-1] == "Overall":
        body.insert(len(body) - 1, r"\midrule")
    return "\n".join([
        r"\begin{tabular}{lrrrrr}", r"\toprule",
        rf"Model & Baseline ({unit}) & CoT ({unit}) & Ratio & Empty baseline & Empty CoT \\", r"\midrule", *body,
        r"\bottomrule", r"\end{tabular}", "% " + _note(df)]) + "\n"

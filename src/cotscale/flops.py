"""FLOP accounting: training compute, inference compute and where CoT's lifetime cost crosses the baseline's.

Conventions (the paper's): training C = 6·N·D; one generated token costs 2·N FLOPs. A model prompted with CoT
matches a baseline model trained with its train-equivalent FLOPs TEF (see fits.py), so over R requests
    cost_cot(R) = C + 2·R·N·tok_cot        cost_std(R) = TEF + 2·R·N·tok_std
and CoT is the cheaper way to that score until R* = (TEF − C) / (2·N·(tok_cot − tok_std)) requests.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def train_flops(n_params, n_tokens):
    """Training compute C = 6·N·D (scalars, arrays or Series)."""
    return 6.0 * n_params * n_tokens


def inference_flops(n_params, tokens):
    """Inference compute of ``tokens`` tokens: 2·N per token (the paper counts generated tokens only; pass prompt +
    generated for the full forward cost)."""
    return 2.0 * n_params * tokens


def lifetime_cost(fixed_flops, n_params, tokens_per_request, requests):
    """Training (or train-equivalent) compute plus the inference compute of ``requests`` requests."""
    return fixed_flops + inference_flops(n_params, tokens_per_request) * requests


def crossover_requests(tef, train_flops_, cost_cot, cost_std):
    """R* = (TEF − C) / (cost_cot − cost_std): the requests until which CoT is the cheaper way to its score, from the
    per-request inference costs of the two strategies (2·N·tokens under the paper's convention; another cost model
    plugs in here). Arrays: 0 where CoT buys no compute (TEF ≤ C: never cheaper), inf where it buys some at no extra
    cost per request (always cheaper), NaN where an input is."""
    tef, c = np.asarray(tef, dtype=float), np.asarray(train_flops_, dtype=float)
    extra = np.asarray(cost_cot, dtype=float) - np.asarray(cost_std, dtype=float)
    gain = tef - c
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(gain <= 0, 0.0, np.where(extra <= 0, np.inf, gain / extra))
    return np.where(np.isnan(gain) | np.isnan(extra), np.nan, r)


def crossover(models: pd.DataFrame) -> pd.DataFrame:
    """R* per model, in requests and in CoT tokens generated over those requests.

    ``models`` needs columns model, family, N, train_flops, tef, tok_std, tok_cot (and token_unit, passed on; a
    ``reason`` column, train_equivalent.csv's, says why a TEF is missing). With columns cost_std and cost_cot (the
    cost per request under a cost model of cotscale.cost) the extra inference price is cost_cot − cost_std instead
    of the paper's 2·N·(tok_cot − tok_std).
    R* is only meaningful when CoT buys compute (TEF > C) at an extra inference price (tok_cot > tok_std);
    otherwise it is NaN and ``reason`` says why.
    """
    out = models.copy()
    gain = out["tef"] - out["train_flops"]
    priced = "cost_cot" in out.columns
    extra = (out["cost_cot"] - out["cost_std"]) if priced else out["tok_cot"] - out["tok_std"]
    why_no_tef = out.get("reason", pd.Series("", index=out.index)).fillna("").astype(str)
    reasons = [
        (out[["tef", "train_flops"]].isna().any(axis=1),
         ("no train-equivalent FLOPs: " + why_no_tef).where(why_no_tef != "", "no train-equivalent FLOPs")),
        (out[["tok_std", "tok_cot"]].isna().any(axis=1), "no token counts for both strategies"),
        *([(out[["cost_std", "cost_cot"]].isna().any(axis=1),
            out["cost_reason"].fillna("").astype(str).where(out["cost_reason"].fillna("") != "",
                                                            "no cost for both strategies"))] if priced else []),
        (gain <= 0, "TEF <= C: CoT is worth no extra training compute"),
        (extra <= 0, "cost_cot <= cost_std: CoT costs nothing extra per request" if priced else
         "tok_cot <= tok_std: CoT generates no extra tokens per request"),
    ]
    out["reason"] = ""
    for mask, text in reasons:
        fill = mask & (out["reason"] == "")
        out.loc[fill, "reason"] = text[fill] if isinstance(text, pd.Series) else text
    ok = out["reason"] == ""
    cost_cot = out["cost_cot"] if priced else inference_flops(out["N"], out["tok_cot"])
    cost_std = out["cost_std"] if priced else inference_flops(out["N"], out["tok_std"])
    out["crossover_requests"] = np.where(ok, crossover_requests(out["tef"], out["train_flops"], cost_cot, cost_std),
                                         np.nan)
    out["crossover_cot_tokens"] = out["crossover_requests"] * out["tok_cot"]
    cols = ["model", "family", "N", "train_flops", "tef", "tok_std", "tok_cot", "token_unit",
            "crossover_requests", "crossover_cot_tokens", "reason", "cost_model", "cost_std", "cost_cot"]
    return out[[c for c in cols if c in out.columns]]

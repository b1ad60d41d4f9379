"""Observational-scaling PCA (Ruan et al.): how the 7 benchmarks load on the first principal components.

PCA runs on centred, unstandardized scores (benchmarks with more spread weigh more, as in Ruan et al.) and
reports loadings = components_ᵀ·sqrt(explained_variance_), i.e. the covariance of each benchmark with each unit-
variance component. Each component's sign is fixed so that its largest-magnitude loading is positive, so results
do not flip between scikit-learn versions.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from cotscale.config import BENCHMARKS

log = logging.getLogger(__name__)

#: Ruan et al.'s column names -> ours ("Winograd" is WinoGrande in their table)
RUAN_COLUMNS = {"ARC-C": "arc_challenge", "GSM8K": "gsm8k", "HellaSwag": "hellaswag", "MMLU": "mmlu",
                "Winograd": "winogrande", "XWinograd": "xwinograd", "TruthfulQA": "truthfulqa_mc1",
                "HumanEval": "humaneval"}


def pca_loadings(scores: pd.DataFrame, columns=BENCHMARKS, n_components: int = 3) -> pd.DataFrame:
    """Loadings of ``columns`` on the first ``n_components`` PCs, fitted on the rows that have every column.

    Returns one row per benchmark (columns benchmark, pc_1..pc_k, n_rows) and a last row with benchmark
    ``explained_variance_ratio``. Components that the complete rows cannot support (k ≥ rows) are NaN, logged.
    """
    data = scores[list(columns)].dropna()
    if len(data) < len(scores):
        log.info("PCA: %d of %d rows lack one of %s; dropped", len(scores) - len(data), len(scores), list(columns))
    k = max(0, min(n_components, len(data) - 1, len(columns)))
    if k < n_components:
        log.warning("PCA: %d complete rows allow %d of %d components; the rest are NaN", len(data), k, n_components)
    loadings = np.full((len(columns), n_components), np.nan)
    evr = np.full(n_components, np.nan)
    if k:
        fit = PCA(n_components=k).fit(data.to_numpy(dtype=float))
        load = fit.components_.T * np.sqrt(fit.explained_variance_)
        pivot = np.abs(load).argmax(axis=0)
        loadings[:, :k] = load * np.sign(load[pivot, np.arange(k)])
        evr[:k] = fit.explained_variance_ratio_
    pcs = [f"pc_{i + 1}" for i in range(n_components)]
    out = pd.DataFrame(loadings, columns=pcs)
    out.insert(0, "benchmark", list(columns))
    out.loc[len(out)] = ["explained_variance_ratio", *evr]
    out["n_rows"] = len(data)
    return out


def ruan_scores(ruan: pd.DataFrame) -> pd.DataFrame:
    """Ruan et al.'s table with benchmark columns renamed to ours (other columns kept)."""
    return ruan.rename(columns=RUAN_COLUMNS)

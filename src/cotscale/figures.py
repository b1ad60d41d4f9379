"""The paper's figures, one function each, drawn from the tables with seaborn.

A figure whose inputs are partial draws what exists and logs what is missing instead of failing: a sweep with one
model still running should not block the rest of the report.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from cotscale.io import atomic_path  # noqa: E402

log = logging.getLogger(__name__)


def _save(fig, png: Path) -> None:
    """png and pdf side by side, written atomically; fixed metadata so reruns give identical files."""
    for path in (png, png.with_suffix(".pdf")):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix[1:], dpi=150, bbox_inches="tight", metadata={"CreationDate": None} if path.suffix == ".pdf" else {"Software": None})
    plt.close(fig)


def _log_missing(frame: pd.DataFrame, config: dict, strategy: str, figure: str) -> pd.DataFrame:
    present = frame.dropna(subset=["overall"])
    missing = sorted(set(config["models"]) - set(present["model"]))
    if missing:
        log.warning("%s: no complete %s scores for %d model(s), not drawn: %s", figure, strategy, len(missing), ", ".join(missing))
    return present


def fig1_overall_vs_train_flops(inputs: dict[str, Path], png: Path, config: dict) -> None:
    strategy = config["analysis"]["llh"]
    table = pd.read_csv(inputs["benchmarks"])
    data = _log_missing(table[table["strategy"] == strategy], config, strategy, "fig1").sort_values("train_flops")
    sns.set_theme(style="whitegrid", context="paper")
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=data, x="train_flops", y="overall", hue="family", marker="o", estimator=None, sort=True, ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("train FLOPs, 6·N·D (log scale)")
    ax.set_ylabel(f"overall score ({strategy})")
    ax.set_title("Overall score vs train compute")
    if ax.get_legend() is not None:
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), title="family")
    _save(fig, png)


FIGURES = {f.__name__: f for f in (fig1_overall_vs_train_flops,)}


def draw(figure: str, inputs: dict[str, Path], png: Path, config: dict) -> None:
    FIGURES[figure](inputs, Path(png), config)

"""The deployment planner: which evaluated operating point reaches a target score at the least lifetime compute.

An operating point is a (model revision, strategy[, budget]) with an overall score and token counts: every row of
benchmarks.csv with tokens.csv counts, plus every budget of inference_scaling.csv (its primary metric, see
cotscale.scaling.PRIMARY_METRIC) when that table is there. Over R lifetime requests it costs

    lifetime FLOPs = 6·N·D + R · 2·N · t

(the paper's convention). ``cost="generated"``: t = generated tokens per request as Table I defines it (the
unweighted mean over benchmarks of the mean per generate request within each); only points that generate on
every benchmark they were scored on qualify, since prompt processing is free under this convention and a
log-likelihood strategy would look free. ``cost="forward"``: t = prompt + generated tokens per document (the
full forward cost of a request, same averaging), which also prices log-likelihood strategies. Budget points
take the prompt tokens of their run.

Where compute.csv has measured job wall seconds, a point also gets seconds per request (wall seconds × GPUs, when
compute.csv says how many, over documents) and the same ranking by R × those seconds; budget points have none
(their run was timed at its largest budget).

How sure a choice is: every point carries its score interval (benchmarks.csv's, inference_scaling.csv's) and
``p_cheapest``, the share of bootstrap draws (cotscale.uncertainty: documents resampled, paired across a model's
strategies and budgets, from outcomes.parquet) in which it is the cheapest point reaching S over R requests. A point
without per-document outcomes is drawn from the normal approximation of its stderr (published data), or, without
one, taken as exact.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from cotscale import architecture, contract, cost, flops, outcomes, scaling, sweep_cost, table1, uncertainty
from cotscale.config import CotscaleError
from cotscale.contract import DEFAULT_COST_MODEL
from cotscale.io import write_csv

log = logging.getLogger(__name__)

COSTS = ("generated", "forward")
POINT_COLUMNS = [*contract.ID_COLUMNS, "budget", "overall", "tokens_per_request",
                 "generated_tokens_per_request", "train_flops", "seconds_per_request", "token_unit",
                 "overall_stderr", "overall_ci_low", "overall_ci_high"]
PLAN_COLUMNS = ["rank", "model", "strategy", "budget", "overall", "tokens_per_request", "train_flops",
                "inference_flops", "lifetime_flops", "seconds_per_request", "lifetime_gpu_seconds",
                "rank_by_gpu_seconds", "family", "revision", "N", "D", "token_unit", "overall_ci_low",
                "overall_ci_high", "p_cheapest", "cost_model", "cost_unit"]
GRID_COLUMNS = ["requests", "target", "model", "strategy", "budget", "overall", "tokens_per_request",
                "train_flops", "inference_flops", "lifetime_flops", "qualifying_points", "cost", "reason",
                "overall_ci_low", "overall_ci_high", "p_cheapest", "cost_model", "cost_unit"]


class PlanError(CotscaleError, ValueError):
    """A plan that cannot be made from these tables or arguments; the message says which and what to do."""


REQUIRED = {
    "benchmarks": [*contract.ID_COLUMNS, "overall"],
    "tokens": ["model", "family", "N", "D", "strategy", "benchmark", "generate_requests", "generated_tokens",
               "documents", "prompt_tokens", "token_unit"],
    "inference_scaling": [c for c in scaling.COLUMNS if c != "ci_method"],  # older tables: no ci_method
    "compute": ["model", "strategy", "documents"],
    "models": ["model", "N"],
}
OPTIONAL = ("inference_scaling", "compute", "models")


def _read(path: Path, name: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        raise PlanError(f"{path}: missing or empty; run the pipeline's aggregate step first "
                        "(snakemake results/tables/benchmarks.csv) or point --tables at its output folder") from None
    missing = [c for c in REQUIRED[name] if c not in table.columns]
    if missing:
        raise PlanError(f"{path}: lacks column(s) {', '.join(missing)}; regenerate it with this cotscale version")
    return table


def read_tables(benchmarks, tokens, inference_scaling=None, compute=None, models=None,
                outcomes=None) -> dict[str, pd.DataFrame]:
    """The planner's input tables by name, from their paths (the optional ones may be None); ``outcomes``: the
    per-document outcome table (parquet) the draws of p_cheapest resample."""
    paths = {"benchmarks": benchmarks, "tokens": tokens, "inference_scaling": inference_scaling, "compute": compute,
             "models": models}
    tables = {name: _read(Path(path), name) for name, path in paths.items() if path is not None}
    if outcomes is not None:
        tables["outcomes"] = _read_outcomes(outcomes)
    return tables


def _read_outcomes(path) -> pd.DataFrame:
    try:
        return outcomes.read(path)
    except outcomes.OutcomeError as exc:
        raise PlanError(str(exc)) from None


def read_tables_dir(tables_dir) -> dict[str, pd.DataFrame]:
    """The planner's input tables from a results/tables folder (optional tables where they exist)."""
    tables_dir = Path(tables_dir)
    if not tables_dir.is_dir():
        raise PlanError(f"tables folder {tables_dir} does not exist; pass --tables the pipeline's results/tables")
    paths = {name: tables_dir / f"{name}.csv" for name in REQUIRED}
    paths["outcomes"] = tables_dir / "outcomes.parquet"
    return read_tables(**{n: p for n, p in paths.items() if n not in (*OPTIONAL, "outcomes") or p.exists()})


def operating_points(tables: dict[str, pd.DataFrame], cost: str = "generated", cost_model: str | None = None,
                     hardware: dict | None = None, batch_size: int | None = None) -> pd.DataFrame:
    """Every operating point of ``tables`` (read_tables()) with its score and tokens per request under ``cost``.

    Columns: POINT_COLUMNS (``tokens_per_request`` is what ``cost`` charges; ``budget`` is '' or e.g. 'k=4').
    With a ``cost_model`` of cotscale.cost other than ``paper``, every point (log-likelihood ones too) is priced
    by it on its mean request (prompt and generated tokens, the architecture of models.csv): ``cost_per_request``
    in ``cost_unit``, and train_flops in that unit (seconds, dollars: at the hardware's peak).
    """
    if cost_model not in (None, DEFAULT_COST_MODEL):
        return _priced_points(tables, cost_model, hardware, batch_size)
    if cost not in COSTS:
        raise PlanError(f"unknown cost {cost!r}; use one of {', '.join(COSTS)}")
    bench, tokens = tables["benchmarks"], tables["tokens"]
    if tokens.empty:
        raise PlanError("tokens.csv has no token counts (no usage records were aggregated); the planner prices "
                        "operating points by their tokens per request")
    per_bench = table1.benchmark_tokens(tokens)
    per_bench["generates"] = per_bench["generate_requests"] > 0
    runs = per_bench.groupby(["model", "strategy"], as_index=False).agg(
        generated_tokens_per_request=("mean_generated_tokens", "mean"),
        forward_tokens_per_request=("forward_tokens_per_document", "mean"),
        generates=("generates", "all"), token_unit=("token_unit", table1.units))
    points = bench.dropna(subset=["overall"]).reindex(
        columns=list(dict.fromkeys([*bench.columns, "overall_stderr", "overall_ci_low", "overall_ci_high"]))).merge(
        runs, on=["model", "strategy"], how="inner")
    points["budget"] = ""
    sweep = _budget_points(tables.get("inference_scaling"), runs)
    points = pd.concat([points, sweep], ignore_index=True) if len(sweep) else points
    points["train_flops"] = flops.train_flops(points["N"], points["D"])
    if cost == "generated":
        dropped = points.loc[~points["generates"].astype(bool), "strategy"].unique()
        if len(dropped):
            log.info("plan: %s do not generate on every benchmark; only cost 'forward' prices them",
                     ", ".join(sorted(dropped)))
        points = points[points["generates"].astype(bool)].copy()
        points["tokens_per_request"] = points["generated_tokens_per_request"]
    else:
        points["tokens_per_request"] = points["forward_tokens_per_request"]
    points["seconds_per_request"] = _measured(tables.get("compute"), points)
    return points[POINT_COLUMNS].reset_index(drop=True)


def _priced_points(tables, name: str, hardware, batch_size) -> pd.DataFrame:
    """operating_points() under cost model ``name``."""
    if "models" not in tables:
        raise PlanError(f"cost model {name!r} prices requests with the models' architectures: the tables folder "
                        "needs models.csv (snakemake results/tables/models.csv)")
    points = operating_points(tables, "forward")
    archs = architecture.read_models_frame(tables["models"])
    unit = cost.REGISTRY[name].unit
    prompt = points["tokens_per_request"] - points["generated_tokens_per_request"]
    priced = np.full(len(points), np.nan)
    for model, idx in points.groupby("model").groups.items():
        arch = {**archs.get(model, {}), "N": float(points.loc[idx, "N"].iloc[0])}
        rows = points.index.get_indexer(idx)
        try:
            priced[rows] = cost.request_cost(name, arch, prompt.iloc[rows].to_numpy(),
                                             points["generated_tokens_per_request"].iloc[rows].to_numpy(),
                                             hardware=hardware, batch_size=batch_size or cost.DEFAULT_BATCH_SIZE,
                                             model=model)
        except CotscaleError as exc:
            log.info("plan: %s", exc)
    budgets = _budget_costs(tables.get("inference_scaling"), name)  # priced per document, k sequences sharing a prompt
    if budgets:
        own = np.array([budgets.get(k, np.nan) for k in zip(points["model"], points["strategy"], points["budget"])])
        priced = np.where(np.isnan(own), priced, own)
    points["cost_per_request"] = priced
    points["train_flops"] = cost.from_flops(points["train_flops"], unit, hardware)
    dropped = points.loc[np.isnan(priced), "model"].unique()
    if len(dropped):
        log.info("plan: no %s cost for %s (architecture missing from models.csv)", name, ", ".join(dropped))
    return points[~np.isnan(priced)].assign(cost_model=name, cost_unit=unit).reset_index(drop=True)


def _budget_costs(sweep: pd.DataFrame | None, name: str) -> dict[tuple, float]:
    """{(model, strategy, budget label): cost per request} of inference_scaling.csv's overall rows under cost model
    ``name`` (cotscale.sweep_cost), where the table has them."""
    if sweep is None or sweep.empty or "cost_model" not in sweep:
        return {}
    rows = sweep[(sweep["benchmark"] == "overall") & (sweep["cost_model"] == name)
                 & (sweep["metric"] == sweep["budget_kind"].map(scaling.PRIMARY_METRIC))]
    return {(r.model, r.strategy, _label(r.budget_kind, r.budget)): float(r.cost_per_request)
            for r in rows.itertuples()}


def _budget_points(sweep: pd.DataFrame | None, runs: pd.DataFrame) -> pd.DataFrame:
    """The overall rows of inference_scaling.csv in their primary metric, with their run's prompt tokens."""
    if sweep is None or sweep.empty:
        return pd.DataFrame()
    sweep = sweep_cost.paper_rows(sweep)  # one row per point (the cost models' rows repeat it)
    primary = sweep["budget_kind"].map(scaling.PRIMARY_METRIC)
    sweep = sweep[(sweep["benchmark"] == "overall") & (sweep["metric"] == primary)].dropna(subset=["score"])
    if sweep.empty:
        return pd.DataFrame()
    sweep = sweep.merge(runs[["model", "strategy", "generated_tokens_per_request", "forward_tokens_per_request",
                              "token_unit"]], on=["model", "strategy"], how="left", suffixes=("", "_run"))
    prompt = sweep["forward_tokens_per_request"] - sweep["generated_tokens_per_request"]
    budget = sweep["budget"].map(lambda b: f"{b:g}" if isinstance(b, float) else str(b))
    return sweep.assign(
        overall=sweep["score"], budget=sweep["budget_kind"] + "=" + budget, generates=True,
        overall_stderr=sweep["score_stderr"], overall_ci_low=sweep["ci_low"], overall_ci_high=sweep["ci_high"],
        generated_tokens_per_request=sweep["tokens_per_request"],
        forward_tokens_per_request=prompt + sweep["tokens_per_request"],
        token_unit=sweep["token_unit"].fillna("tokens"))


def _measured(compute: pd.DataFrame | None, points: pd.DataFrame) -> pd.Series:
    """GPU-seconds per request of each plain point from compute.csv's wall_seconds (NaN where not measured)."""
    if compute is None or "wall_seconds" not in compute or compute["wall_seconds"].isna().all():
        return pd.Series(np.nan, index=points.index)
    gpus = compute["gpus"] if "gpus" in compute else 1.0
    compute = compute.assign(seconds=compute["wall_seconds"] * gpus / compute["documents"])
    seconds = points[["model", "strategy", "budget"]].merge(compute[["model", "strategy", "seconds"]],
                                                           on=["model", "strategy"], how="left")["seconds"]
    return pd.Series(np.where(points["budget"].to_numpy() == "", seconds.to_numpy(), np.nan), index=points.index)


def _label(budget_kind, budget) -> str:
    """A point's budget as operating_points spells it ('' for a plain point, else e.g. 'k=4')."""
    if not isinstance(budget_kind, str) or not budget_kind:
        return ""
    return f"{budget_kind}={budget:g}" if isinstance(budget, float) else f"{budget_kind}={budget}"


def point_draws(points: pd.DataFrame, outcome_table: pd.DataFrame | None, boot: dict) -> np.ndarray:
    """Bootstrap draws (draws × points) of every point's overall score: from the per-document outcomes where there
    are some (a model's strategies and budgets on the same resampled documents), else normal draws around the score
    with its stderr (published data), else the score itself in every draw."""
    out = np.full((boot["draws"], len(points)), np.nan)
    if outcome_table is not None and len(outcome_table):
        table = outcome_table.assign(
            strategy=outcome_table["strategy"] + "|" + [_label(k, b) for k, b in zip(outcome_table["budget_kind"],
                                                                                     outcome_table["budget"])],
            budget_kind=None)
        draws = uncertainty.strategy_draws(table, boot)
        for i, p in enumerate(points.itertuples()):
            key = (p.model, f"{p.strategy}|{p.budget}")  # "|" is in no strategy name
            if key in draws:
                out[:, i] = uncertainty.overall(draws[key])
    for i, p in enumerate(points.itertuples()):
        if np.isnan(out[:, i]).all():
            se = float(p.overall_stderr) if p.overall_stderr == p.overall_stderr else 0.0
            rng = uncertainty.generator(boot["seed"], "normal", p.model, p.strategy, p.budget)
            out[:, i] = p.overall + se * rng.standard_normal(boot["draws"]) if se > 0 else p.overall
    return out


def cheapest_shares(points: pd.DataFrame, requests: float, target: float, draws: np.ndarray) -> np.ndarray:
    """Per point, the share of draws in which it is the cheapest (lifetime FLOPs over ``requests``; ties as rank()
    breaks them) of the points whose drawn score reaches ``target``; priced as rank() prices them."""
    per_request = points["cost_per_request"] if "cost_per_request" in points else flops.inference_flops(
        points["N"], points["tokens_per_request"])
    cost = points["train_flops"] + requests * per_request
    order = np.lexsort((points["budget"].astype(str), points["strategy"].astype(str), points["model"].astype(str),
                        cost.to_numpy()))
    ok = draws[:, order] >= target  # NaN draws never qualify
    first = ok.argmax(axis=1)[ok.any(axis=1)]
    shares = np.zeros(len(points))
    shares[order] = np.bincount(first, minlength=len(points)) / len(draws)
    return shares


def rank(points: pd.DataFrame, requests: float, target: float, draws: np.ndarray | None = None) -> pd.DataFrame:
    """The points whose overall score is ≥ ``target``, cheapest lifetime FLOPs over ``requests`` requests first.

    ``inference_flops`` is the inference compute of all ``requests`` requests, R · 2·N·t; ``p_cheapest`` (with
    ``draws``, point_draws()) the share of draws in which the point is the cheapest qualifying one.
    """
    if not np.isfinite(requests) or requests < 0:
        raise PlanError(f"--requests must be a number >= 0, got {requests}")
    if points.empty:
        raise PlanError("no operating point has both an overall score and token counts under this cost")
    shares = cheapest_shares(points, requests, target, draws) if draws is not None else np.full(len(points), np.nan)
    ok = points[points["overall"] >= target].assign(p_cheapest=shares[points["overall"] >= target])
    if ok.empty:
        best = points.loc[points["overall"].idxmax()]
        raise PlanError(f"no operating point reaches overall score {target:g}: the best is {best['overall']:.4f} "
                        f"({best['model']} / {best['strategy']}{' ' + best['budget'] if best['budget'] else ''}); "
                        "lower --target")
    if "cost_per_request" in ok:  # priced by a cost model of cotscale.cost, in its unit
        ok["inference_flops"] = requests * ok["cost_per_request"]
    else:
        ok["inference_flops"] = requests * flops.inference_flops(ok["N"], ok["tokens_per_request"])
        ok["cost_model"], ok["cost_unit"] = DEFAULT_COST_MODEL, "FLOPs"
    ok["lifetime_flops"] = ok["train_flops"] + ok["inference_flops"]
    ok["lifetime_gpu_seconds"] = requests * ok["seconds_per_request"]
    ok = ok.sort_values(["lifetime_flops", "model", "strategy", "budget"], kind="stable").reset_index(drop=True)
    ok["rank"] = np.arange(1, len(ok) + 1)
    ok["rank_by_gpu_seconds"] = ok["lifetime_gpu_seconds"].rank(method="first").astype("Int64")
    return ok[PLAN_COLUMNS]


def grid(points: pd.DataFrame, requests, targets, cost: str, draws: np.ndarray | None = None) -> pd.DataFrame:
    """plan.csv: the cheapest point for every (R, S) of the configured grid, with its score interval and
    p_cheapest (``draws``: point_draws()); a cell nothing reaches says so."""
    rows = []
    for s in sorted(float(t) for t in targets):
        for r in sorted(float(x) for x in requests):
            try:
                ranked = rank(points, r, s, draws)
            except PlanError as exc:
                rows.append({"requests": r, "target": s, "qualifying_points": 0, "cost": cost, "reason": str(exc)})
                continue
            best = ranked.iloc[0]
            rows.append({"requests": r, "target": s, **{c: best[c] for c in GRID_COLUMNS if c in best.index},
                         "qualifying_points": len(ranked), "cost": cost, "reason": ""})
    return pd.DataFrame(rows).reindex(columns=GRID_COLUMNS)


def pareto_frontier(points: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """The points no other point beats on both counts (lower ``x``, higher ``y``), in increasing ``x``."""
    ordered = points.sort_values([x, y], ascending=[True, False], kind="stable")
    best = ordered[y].cummax().shift(fill_value=-np.inf)
    return ordered[ordered[y] > best]


def write_plan(out, tables: dict[str, pd.DataFrame], requests, targets, cost: str = "generated",
               boot: dict | None = None, cost_models=(DEFAULT_COST_MODEL,), hardware: dict | None = None,
               batch_size: int | None = None) -> pd.DataFrame:
    """plan.csv for the configured grid of lifetime requests × target scores (config key ``plan``), one grid per
    cost model (column cost_model; the paper's first), each cell with its winner's p_cheapest."""
    parts = []
    for name in cost_models:
        points = operating_points(tables, cost, name, hardware, batch_size)
        draws = point_draws(points, tables.get("outcomes"), boot or dict(uncertainty.DEFAULTS))
        parts.append(grid(points, requests, targets, cost, draws).assign(cost_model=name,
                                                                         cost_unit=cost_module_unit(name)))
    table = pd.concat(parts, ignore_index=True)
    write_csv(out, table)
    return table


def cost_module_unit(name: str) -> str:
    """The unit of a cost model's lifetime cost column (lifetime_flops)."""
    return cost.REGISTRY[name].unit

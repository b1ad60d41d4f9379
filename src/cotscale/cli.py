"""The ``cotscale`` console script.

    cotscale plan --requests R --target S [--tables DIR] [--cost generated|forward] [--cost-model NAME
                  [--hardware H100] [--batch-size B]] [--draws N] [--seed N] [--level L] [--format table|csv|json]

ranks the evaluated operating points that reach overall score S by lifetime FLOPs over R requests (cotscale.plan),
each with its score interval and p_cheapest: the share of bootstrap draws in which it is the cheapest point reaching
S (use the config's analysis.bootstrap settings to reproduce plan.csv's).
A problem with the inputs is one line on stderr and exit status 2, as for a bad argument.
"""

from __future__ import annotations

import argparse
import sys

from cotscale import cost, plan, uncertainty
from cotscale.contract import DEFAULT_COST_MODEL

MEASURED = ["seconds_per_request", "lifetime_gpu_seconds", "rank_by_gpu_seconds"]
FLOAT_FORMATS = {"overall": "{:.4f}", "tokens_per_request": "{:.2f}", "train_flops": "{:.3e}",
                 "inference_flops": "{:.3e}", "lifetime_flops": "{:.3e}", "N": "{:.3g}", "D": "{:.3g}",
                 "seconds_per_request": "{:.4g}", "lifetime_gpu_seconds": "{:.4g}", "overall_ci_low": "{:.4f}",
                 "overall_ci_high": "{:.4f}", "p_cheapest": "{:.3f}"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cotscale", description="cotscale: chain-of-thought cost-performance tools")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="cheapest evaluated operating point for R lifetime requests at score >= S",
                       description="Rank operating points with overall score >= S by lifetime FLOPs "
                                   "6·N·D + R·2·N·t, cheapest first.")
    p.add_argument("--requests", type=float, required=True, metavar="R", help="lifetime inference requests")
    p.add_argument("--target", type=float, required=True, metavar="S", help="minimum overall score")
    p.add_argument("--tables", default="results/tables", metavar="DIR",
                   help="folder with benchmarks.csv and tokens.csv (default: results/tables)")
    p.add_argument("--cost", choices=plan.COSTS, default="generated",
                   help="tokens charged per request: generated (the paper's convention, default) or forward "
                        "(prompt + generated; also prices log-likelihood strategies)")
    p.add_argument("--cost-model", choices=cost.COST_MODELS, default=DEFAULT_COST_MODEL,
                   help="price requests with this cost model of cotscale.cost (default paper: 2·N·t); the others "
                        "need the tables folder's models.csv")
    p.add_argument("--hardware", default=None, metavar="NAME",
                   help=f"hardware profile of kinetics, seconds, dollars (config/hardware.yaml; default "
                        f"{cost.DEFAULT_HARDWARE})")
    p.add_argument("--batch-size", type=int, default=cost.DEFAULT_BATCH_SIZE,
                   help="sequences decoding together (seconds, dollars)")
    p.add_argument("--format", choices=("table", "csv", "json"), default="table", dest="fmt")
    p.add_argument("--draws", type=int, default=uncertainty.DEFAULTS["draws"],
                   help="bootstrap draws of p_cheapest (default %(default)s)")
    p.add_argument("--seed", type=int, default=uncertainty.DEFAULTS["seed"], help="bootstrap seed (default %(default)s)")
    p.add_argument("--level", type=float, default=uncertainty.DEFAULTS["level"], help=argparse.SUPPRESS)
    return parser


def run_plan(args) -> str:
    """The ranking as text in the requested format."""
    hardware = cost.load_hardware(name=args.hardware)
    tables = plan.read_tables_dir(args.tables)
    points = plan.operating_points(tables, args.cost, args.cost_model, hardware, args.batch_size)
    boot = {"draws": args.draws, "seed": args.seed, "level": args.level}
    ranked = plan.rank(points, args.requests, args.target, plan.point_draws(points, tables.get("outcomes"), boot))
    if args.cost_model == DEFAULT_COST_MODEL:
        ranked = ranked.drop(columns=["cost_model", "cost_unit"])
    if ranked["seconds_per_request"].isna().all():
        ranked = ranked.drop(columns=MEASURED)
    if args.fmt == "csv":
        return ranked.to_csv(index=False, lineterminator="\n")
    if args.fmt == "json":
        return ranked.to_json(orient="records", indent=1, double_precision=15) + "\n"
    shown = ranked.drop(columns=["family", "revision", "N", "D"])
    formatters = {c: (lambda f: lambda v: "" if v != v else f.format(v))(f) for c, f in FLOAT_FORMATS.items()
                  if c in shown}
    return shown.to_string(index=False, formatters=formatters) + "\n"


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        sys.stdout.write(run_plan(args))
    except (plan.PlanError, cost.CotscaleError) as exc:
        parser.exit(2, f"cotscale {args.command}: error: {exc}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

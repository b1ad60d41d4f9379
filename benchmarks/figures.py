"""Benchmark: every figure from existing tables (config/published.yaml: the paper's published outputs, no GPU).

Setup (once, untimed but reported): in a temporary working directory, Snakemake ingests ../shared/paper and builds
every table (`snakemake --configfile config/published.yaml aggregate analysis`). Then, paired rounds in alternating
order:

* ``inprocess`` — one ``python`` process: import cotscale.figures, then draw every figure of workflow/rules/figures.smk
                  with the inputs that rule names (cotscale.figures.draw, png + pdf); per-figure seconds too.
* ``snakemake`` — ``snakemake --cores 2 --forcerun <every figure rule> <every figure file>``: Snakemake start-up and
                  DAG, one script process per figure (11, two at a time), the tables already up to date.
* ``snakemake_noscontrol`` — the same without the SLURM plugin's stalled ``scontrol`` call, where it would happen
                  (see benchmarks/_common.py).

Target: all figures from existing tables <= 60 s. Run:

    python benchmarks/figures.py [--rounds 3] [--cores 2] [--workdir DIR (kept; reuses built tables)]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import tempfile
from pathlib import Path

from _common import (NO_SCONTROL, PAPER, PYTHON, ROOT, add_quick, load_line, offline_env, premise, save_json,
                     scontrol_seconds, slurm_stall_possible, timed)

INPROCESS = """
import json, sys, time
from pathlib import Path
t0 = time.perf_counter()
from cotscale.config import load_config
from cotscale.figures import draw
imported = time.perf_counter() - t0
config = load_config(sys.argv[1])
rules = json.loads(sys.argv[2])
times = {}
for rule, inputs in rules.items():
    t = time.perf_counter()
    draw(rule, {k: [Path(p) for p in v] if isinstance(v, list) else Path(v) for k, v in inputs.items()},
         Path(sys.argv[3]) / f"{rule}.png", config)
    times[rule] = time.perf_counter() - t
print(json.dumps({"import_s": imported, "figures": times}))
"""


def figure_rules(config: dict) -> dict[str, dict[str, str | list[str]]]:
    """{rule: {input name: path or paths}} for every figure of the registry, as workflow/rules/figures.smk names its
    inputs (common.smk's get_figure_inputs): the analysis tables it reads, the benchmarks.csv of its strategies."""
    from cotscale import contract
    from cotscale.registry import FIGURES, figure_strategies

    rules = {}
    for figure in FIGURES:
        inputs: dict[str, str | list[str]] = {t: f"{contract.TABLES_DIR}/{t}.csv" for t in figure.tables}
        if figure.strategies:
            inputs["benchmarks"] = [f"{contract.STRATEGY_DIR.format(strategy=s)}/benchmarks.csv"
                                    for s in figure_strategies(config, figure)]
        rules[figure.name] = inputs
    return rules


def smk(workdir: Path, cores: int, *args: str, fast: bool = False) -> list[str]:
    launcher = [PYTHON, "-c", NO_SCONTROL] if fast else [PYTHON, "-m", "snakemake"]
    return [*launcher, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile",
            str(ROOT / "config" / "published.yaml"), "--cores", str(cores), *args]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", type=Path)
    add_quick(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds = 1
    if not (PAPER / "models.csv").exists():
        print(f"skipped: the paper's published outputs are not at {PAPER} (config/published.yaml reads them)")
        return {}

    from cotscale import contract
    from cotscale.config import load_config

    stall = slurm_stall_possible()
    rules = figure_rules(load_config(ROOT / "config" / "published.yaml"))
    targets = [f"{contract.FIGURES_DIR}/{r}.{ext}" for r in rules for ext in ("png", "pdf")]
    tmp = tempfile.TemporaryDirectory(prefix="cotscale-fig-") if a.workdir is None else None
    workdir = Path(tmp.name) if tmp else a.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    env = offline_env()
    try:
        setup = None
        tables = sorted({p for ins in rules.values() for v in ins.values() for p in ([v] if isinstance(v, str) else v)})
        if not all((workdir / t).exists() for t in tables):  # every table a figure reads, built once
            setup = timed(smk(workdir, a.cores, *tables, fast=stall), env=env)["wall_s"]
        sides = ["inprocess", "snakemake"] + (["snakemake_noscontrol"] if stall else [])
        rows: dict[str, list[dict]] = {s: [] for s in sides}
        out = workdir / "inprocess_figures"
        out.mkdir(exist_ok=True)
        inputs = {r: {k: str(workdir / v) if isinstance(v, str) else [str(workdir / p) for p in v]
                      for k, v in ins.items()} for r, ins in rules.items()}
        for rnd in range(a.rounds):
            for side in (sides if rnd % 2 == 0 else sides[::-1]):
                if side == "inprocess":
                    res = timed([PYTHON, "-c", INPROCESS, str(ROOT / "config" / "published.yaml"), json.dumps(inputs),
                                 str(out)], cwd=workdir, env=env)
                    detail = json.loads(res["stdout"].strip().splitlines()[-1])
                    rows[side].append({"wall_s": res["wall_s"], "cpu_s": res["cpu_s"], **detail})
                else:
                    res = timed(smk(workdir, a.cores, "--forcerun", *rules, "--", *targets,
                                    fast=side == "snakemake_noscontrol"), env=env)
                    rows[side].append({"wall_s": res["wall_s"], "cpu_s": res["cpu_s"]})
        figures_made = sorted(p.name for p in (workdir / contract.FIGURES_DIR).glob("*.p*"))
    finally:
        if tmp:
            tmp.cleanup()

    med = {s: {"wall_s": statistics.median(r["wall_s"] for r in rs), "cpu_s": statistics.median(r["cpu_s"] for r in rs)}
           for s, rs in rows.items()}
    per_figure = {f: statistics.median(r["figures"][f] for r in rows["inprocess"]) for f in rules}
    import_s = statistics.median(r["import_s"] for r in rows["inprocess"])
    print(f"{len(rules)} figures (png + pdf) from the published tables, {a.rounds} rounds (medians); {load_line()}")
    if setup is not None:
        print(f"(setup: ingest + tables via snakemake took {setup:.1f} s, untimed)")
    for s, m in med.items():
        print(f"  {s:22s}: {m['wall_s']:6.2f} s wall, {m['cpu_s']:6.2f} s CPU (target <= 60 s)")
    print(f"  in one process: importing cotscale.figures {import_s:.2f} s; per figure: "
          + ", ".join(f"{f} {t:.2f}" for f, t in per_figure.items()))
    scontrol = scontrol_seconds() if stall else None
    if scontrol is not None:
        print(f"  `scontrol show config` (SLURM plugin, every snakemake call): {scontrol:.2f} s")
    print(f"  files written by snakemake: {len(figures_made)} (expected {len(targets)})")
    premise(len(figures_made) == len(targets) > 0, f"snakemake wrote {len(figures_made)} figure files, the registry "
            f"has {len(targets)}")
    result = {"medians": med, "per_figure": per_figure, "import_s": import_s, "rounds": rows, "setup_s": setup,
              "scontrol_s": scontrol, "load": load_line()}
    save_json(a.json, result)
    return result


if __name__ == "__main__":
    main()

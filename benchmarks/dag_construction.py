"""Benchmark: DAG construction of the full paper grid (`snakemake -n` on config/config.yaml), and model loads per grid.

The paper grid is 26 model revisions × 6 strategies × 7 benchmarks = 1092 task evaluations. An evaluation job is a
*suite* (one model load, every task of its strategies): 156 jobs by default (`suite: strategy`), 26 with
`--config suite=model`. Each round runs, in alternating order:

* ``import``  — ``python -m snakemake --version``: the floor every Snakemake call pays (importing Snakemake and its
                plugins); ``import_noscontrol`` the same without the SLURM plugin's scontrol call (see below).
* ``dryrun``  — ``python -m snakemake -n --quiet all`` on the paper grid in an empty working directory (nothing
                built, so every job of the grid is in the DAG: parse, validate config, build DAG, needrun, dry-run
                "execution" of every job).
* ``dryrun_model`` — the same dry run with ``--config suite=model`` (one evaluation job per model revision).
* ``dryrun_noscontrol``, ``dryrun_model_noscontrol`` — only where the SLURM executor plugin is installed and
                ``scontrol`` is on PATH: the same dry runs with ``scontrol show config`` (which the plugin runs while
                Snakemake builds its command line, i.e. on every ``snakemake`` call) failing at once, as on a host
                without SLURM tools. On a host with SLURM client tools but no reachable controller that call blocks
                for its timeout (~9 s); these sides measure the pipeline without that environment cost. The script
                also times ``scontrol show config`` once.
* ``--variant NAME=DIR``: the same dry run with DIR/Snakefile (a copy of the repository with a change), paired
                (without the scontrol call where dryrun_noscontrol runs).

Model loads per grid (one per evaluation job) are computed from the config (cotscale.config.evaluation_jobs: one job per
task in the old layout; cotscale.config.suites in each suite mode) and checked against the evaluation jobs
(rules ``evaluate*``) the dry run of each mode counts.

Medians of wall and CPU (user + sys) seconds. Targets: each dry run ≤ 5 s wall on 2 cores; ≤ 156 evaluation jobs by
default, ≤ 26 with ``suite: model``. Run:

    python benchmarks/dag_construction.py [--rounds 5] [--configfile config/config.yaml] [--variant old=/tmp/old]
                                          [--profile]   # one pyinstrument profile of the dry run too
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

from _common import (NO_SCONTROL, PYTHON, ROOT, add_quick, load_line, median, premise, save_json, scontrol_seconds,
                     slurm_stall_possible, timed)


def dryrun_cmd(repo: Path, workdir: Path, configfile: Path, *extra: str, launcher: list[str] | None = None) -> list[str]:
    return [*(launcher or [PYTHON, "-m", "snakemake"]), "-s", str(repo / "Snakefile"), "-d", str(workdir),
            "--configfile", str(configfile), "-n", *extra]


MODES = {"dryrun": (), "dryrun_model": ("--config", "suite=model")}  # side -> Snakemake arguments of its suite mode


def mode_args(name: str) -> tuple[str, ...]:
    return MODES.get(name.removesuffix("_noscontrol"), ())


def count_jobs(repo: Path, workdir: Path, configfile: Path, launcher: list[str] | None, *extra: str) -> dict[str, int]:
    """Jobs per rule from the dry run's summary (run once, untimed)."""
    out = timed(dryrun_cmd(repo, workdir, configfile, *extra, "--quiet", "rules", launcher=launcher))
    counts = {}
    for line in (out["stdout"] + out["stderr"]).splitlines():
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if m:
            counts[m.group(1)] = int(m.group(2))
    return counts


def evaluation_job_count(counts: dict[str, int]) -> int:
    """Evaluation jobs of a dry run: rule evaluate, or evaluate_model_<i> with `suite: model`."""
    return sum(n for rule, n in counts.items() if rule.startswith("evaluate"))


def model_loads(configfile: Path) -> dict[str, int]:
    """Model loads of the whole grid (one per evaluation job): one job per task (the layout before suites), one per
    model revision × strategy, one per model revision."""
    from cotscale.config import evaluation_jobs, load_config, suites

    cfg = load_config(configfile)
    return {"per_task": len(evaluation_jobs(cfg)), "suite_strategy": len(suites({**cfg, "suite": "strategy"})),
            "suite_model": len(suites({**cfg, "suite": "model"}))}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--configfile", type=Path, default=ROOT / "config" / "config.yaml")
    ap.add_argument("--variant", action="append", default=[], help="NAME=DIR: also time DIR/Snakefile, paired")
    ap.add_argument("--profile", action="store_true", help="write a pyinstrument profile of one dry run")
    ap.add_argument("--json", type=Path, help="also write the results here")
    add_quick(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds = 1

    repos = {"dryrun": ROOT, "dryrun_model": ROOT, **{v.split("=", 1)[0]: Path(v.split("=", 1)[1]) for v in a.variant}}
    slurm = slurm_stall_possible()
    if slurm:
        repos.update(dryrun_noscontrol=ROOT, dryrun_model_noscontrol=ROOT)
    scontrol = scontrol_seconds()
    configfile = a.configfile.resolve()
    rows: dict[str, list[dict]] = {"import": [], **({"import_noscontrol": []} if slurm else {}),
                                   **{name: [] for name in repos}}
    with tempfile.TemporaryDirectory(prefix="cotscale-dag-") as tmp:
        workdirs = {name: Path(tmp) / name for name in repos}
        for d in workdirs.values():
            d.mkdir()
        fast = [PYTHON, "-c", NO_SCONTROL] if slurm else None
        jobs = {name: count_jobs(repo, workdirs[name], configfile, fast, *mode_args(name))
                for name, repo in repos.items() if not name.endswith("_noscontrol")}
        order = list(rows)
        for rnd in range(a.rounds):
            for name in (order if rnd % 2 == 0 else order[::-1]):
                if name == "import":
                    res = timed([PYTHON, "-m", "snakemake", "--version"])
                elif name == "import_noscontrol":
                    res = timed([PYTHON, "-c", NO_SCONTROL, "--version"])
                else:
                    # variants are compared with dryrun_noscontrol: they skip the scontrol call too
                    launcher = [PYTHON, "-c", NO_SCONTROL] if slurm and name not in MODES else None
                    res = timed(dryrun_cmd(repos[name], workdirs[name], configfile, *mode_args(name), "--quiet",
                                           "all", launcher=launcher))
                rows[name].append({k: res[k] for k in ("wall_s", "cpu_s")})
        if a.profile:
            out = ROOT / "benchmarks" / "out" / "dag_construction.pyinstrument.txt"
            out.parent.mkdir(parents=True, exist_ok=True)
            timed([PYTHON, "-m", "pyinstrument", "-r", "text", "-o", str(out), "-m", "snakemake",
                   *dryrun_cmd(ROOT, workdirs["dryrun"], configfile, "--quiet", "all")[3:]])
            print(f"profile: {out}")

    med = {name: {"wall_s": median(r, "wall_s"), "cpu_s": median(r, "cpu_s")} for name, r in rows.items()}
    loads = model_loads(configfile)
    counted = {"suite_strategy": evaluation_job_count(jobs["dryrun"]),
               "suite_model": evaluation_job_count(jobs["dryrun_model"])}
    print(f"snakemake -n on {configfile.name}, {a.rounds} rounds (medians); {load_line()}")
    for name, mode, limit in (("dryrun", "suite_strategy", 156), ("dryrun_model", "suite_model", 26)):
        print(f"  {name}: {counted[mode]} evaluation jobs (target <= {limit}), {jobs[name].get('total', 0)} jobs "
              "in all")
    print(f"{'what':24s} {'wall s':>8s} {'cpu s':>8s}")
    for name, m in med.items():
        print(f"{name:24s} {m['wall_s']:8.2f} {m['cpu_s']:8.2f}")
    for name in MODES:
        print(f"{name}: {med[name]['wall_s']:.2f} s wall (target <= 5 s: "
              f"{'met' if med[name]['wall_s'] <= 5 else 'missed'}), of which starting Snakemake "
              f"{med['import']['wall_s']:.2f} s")
    if slurm:
        print(f"without the stalled scontrol call: dry run {med['dryrun_noscontrol']['wall_s']:.2f} s, suite=model "
              f"{med['dryrun_model_noscontrol']['wall_s']:.2f} s wall, starting Snakemake "
              f"{med['import_noscontrol']['wall_s']:.2f} s")
    print(f"model loads per grid: one job per task (the layout before suites) {loads['per_task']}, suites "
          f"{loads['suite_strategy']} (dry run: {counted['suite_strategy']}), suite: model {loads['suite_model']} "
          f"(dry run: {counted['suite_model']}); agree: "
          f"{counted == {k: loads[k] for k in counted}}")
    if scontrol is not None:
        print(f"`scontrol show config` (run by the SLURM executor plugin on every snakemake call): {scontrol:.2f} s")
    result = {"jobs": jobs, "model_loads": loads, "evaluation_jobs": counted, "medians": med, "rounds": rows,
              "load": load_line(), "scontrol_s": scontrol}
    save_json(a.json, result)
    if counted != {k: loads[k] for k in counted}:
        premise(False, "the dry runs' evaluation jobs disagree with cotscale.config.suites")
    return result


if __name__ == "__main__":
    main()

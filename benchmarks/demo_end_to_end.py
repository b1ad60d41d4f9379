"""Benchmark: the demo end to end — a clean working directory to every figure (`snakemake --configfile config/demo.yaml`).

Runs the whole demo in a fresh temporary working directory (nothing built: tiny models trained, every evaluation,
tables, fits, figures), times it, and summarises where the time went from Snakemake's own records:

* per job category — model building (rule build_demo_model), evaluation (the suite rules: evaluate, or
  evaluate_model_<i> with ``--config suite=model``), analysis (every other rule: aggregate, analysis, figures) — the
  number of jobs, the sum of the jobs' seconds (their `benchmark:` TSVs in logs/benchmarks/ where the rule has one,
  else start→finish from Snakemake's log) and the wall-clock span of the phase (first start → last finish);
* the evaluation jobs' seconds split into model loads (counted and timed from the "model loaded in" lines of
  logs/evaluate/: one per evaluation job), the tasks' evaluation (the sum of every results.json's
  `cotscale.wall_seconds`) and the rest (each job process's start-up and teardown);
* Snakemake's start-up (process start → first job), and the total against the target (<= 240 s on 2 cores).

It takes minutes and both cores: run it on a quiet machine. Run:

    python benchmarks/demo_end_to_end.py [--cores 2] [--workdir DIR (kept)] [--no-scontrol] [--json out.json]
                                         [--config suite=model ...]   # passed on to snakemake --config
    python benchmarks/demo_end_to_end.py --summarize DIR     # only summarise an existing run in DIR
    python benchmarks/demo_end_to_end.py --quick             # the catalog's test (.test/), as CI runs it

``--no-scontrol``: start Snakemake without the SLURM plugin's ``scontrol show config`` call, which stalls ~9 s on a
host with SLURM client tools but no controller (see benchmarks/_common.py); its time is reported either way.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from _common import (NO_SCONTROL, PYTHON, ROOT, add_quick, load_line, offline_env, premise, scontrol_seconds,
                     slurm_stall_possible, timed)

from cotscale import contract
from cotscale.registry import FIGURE_NAMES

CATALOG_TEST = ROOT / ".test"  # the catalog's test: `snakemake --cores 2 --directory .test` (.test/config/config.yaml)

TARGET_S = 240
LOADED = re.compile(r": model loaded in ([0-9.]+) s$", re.M)  # cotscale.evaluate's line, once per model load


def benchmark_folder(rule: str) -> str:
    """The folder of logs/benchmarks/ a rule's `benchmark:` files are in: evaluate_model_<i> shares evaluate/, the
    figure rules share figures/ (workflow/rules/*.smk)."""
    return "evaluate" if rule.startswith("evaluate") else "figures" if rule in FIGURE_NAMES else rule


def category(rule: str) -> str:
    folder = benchmark_folder(rule)
    return {"build_demo_model": "model building", "evaluate": "evaluation"}.get(folder, "analysis")


def evaluation_split(workdir: Path) -> dict:
    """Model loads (from the evaluation logs) and the tasks' own evaluation seconds (from every results.json)."""
    loads = [float(x) for log in sorted((workdir / "logs" / "evaluate").rglob("*.log"))
             for x in LOADED.findall(log.read_text(errors="replace"))]
    tasks = [json.loads(p.read_text())["cotscale"]["wall_seconds"]
             for p in sorted((workdir / contract.EVALS_ROOT).rglob("results.json"))]
    return {"model_loads": len(loads), "model_load_seconds": sum(loads), "tasks": len(tasks),
            "task_seconds": sum(tasks)}


def parse_log(path: Path) -> dict[int, dict]:
    """{jobid: {rule, start, end}} from a Snakemake run log (timestamps to the second)."""
    jobs: dict[int, dict] = {}
    stamp, rule = None, None
    for line in path.read_text().splitlines():
        if m := re.match(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]$", line):
            stamp = datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif m := re.match(r"^(?:local)?rule (\w+):$", line):
            rule = m.group(1)
        elif (m := re.match(r"^\s+jobid: (\d+)$", line)) and rule:
            jobs[int(m.group(1))] = {"rule": rule, "start": stamp, "end": None}
            rule = None
        elif m := re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)", line):
            jobs.setdefault(int(m.group(1)), {"rule": m.group(2), "start": None})["end"] = stamp
    return jobs


def benchmark_seconds(workdir: Path) -> dict[str, list[dict]]:
    """{rule: [{s, cpu_time, max_rss}]} from logs/benchmarks/<rule>/**.tsv."""
    out: dict[str, list[dict]] = defaultdict(list)
    for tsv in sorted((workdir / "logs" / "benchmarks").rglob("*.tsv")):
        rule = tsv.relative_to(workdir / "logs" / "benchmarks").parts[0]
        with open(tsv) as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                out[rule].append({k: float(row[k]) for k in ("s", "cpu_time", "max_rss") if row.get(k) not in (None, "", "NA")})
    return out


def summarize(workdir: Path, started: float | None = None, wall: float | None = None) -> dict:
    logs = sorted((workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    if not logs:
        raise SystemExit(f"{workdir}: no Snakemake log under .snakemake/log")
    jobs = parse_log(logs[-1])
    bench = benchmark_seconds(workdir)
    cats: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "job_seconds": 0.0, "start": None, "end": None,
                                                 "cpu_seconds": 0.0, "max_rss_mb": 0.0, "rules": set()})
    for job in jobs.values():
        c = cats[category(job["rule"])]
        c["jobs"] += 1
        c["rules"].add(job["rule"])
        if job["start"] is not None:
            c["start"] = job["start"] if c["start"] is None else min(c["start"], job["start"])
        if job.get("end") is not None:
            c["end"] = job["end"] if c["end"] is None else max(c["end"], job["end"])
        if benchmark_folder(job["rule"]) not in bench and job["start"] is not None and job.get("end") is not None:
            c["job_seconds"] += job["end"] - job["start"]
    for rule, rows in bench.items():
        c = cats[category(rule)]
        c["job_seconds"] += sum(r.get("s", 0.0) for r in rows)
        c["cpu_seconds"] += sum(r.get("cpu_time", 0.0) for r in rows)
        c["max_rss_mb"] = max([c["max_rss_mb"], *(r.get("max_rss", 0.0) for r in rows)])
    first = min((j["start"] for j in jobs.values() if j["start"] is not None), default=None)
    last = max((j["end"] for j in jobs.values() if j.get("end") is not None), default=None)
    figures = sorted(p.name for p in (workdir / contract.FIGURES_DIR).glob("*") if p.suffix in (".png", ".pdf"))
    summary = {
        "workdir": str(workdir), "log": str(logs[-1]), "wall_s": wall,
        "startup_s": (first - started) if (started and first) else None,
        "jobs_span_s": (last - first) if (first and last) else None,
        "figures": figures,
        "evaluation": evaluation_split(workdir),
        "categories": {k: {**v, "rules": sorted(v["rules"]),
                           "span_s": (v["end"] - v["start"]) if v["start"] and v["end"] else None}
                       for k, v in cats.items()},
    }
    return summary


def report(s: dict) -> None:
    print(f"demo end to end in {s['workdir']}; {load_line()}")
    if s["wall_s"] is not None:
        verdict = "meets" if s["wall_s"] <= TARGET_S else "misses"
        print(f"  total wall {s['wall_s']:.1f} s ({s['wall_s'] / 60:.1f} min; target <= {TARGET_S} s: {verdict})"
              + (f" with --config {' '.join(s['config'])}" if s.get("config") else ""))
    if s["startup_s"] is not None:
        print(f"  Snakemake start-up (process start -> first job): {s['startup_s']:.1f} s")
    if s["jobs_span_s"] is not None:
        print(f"  first job start -> last job finish: {s['jobs_span_s']:.0f} s")
    print(f"  {'phase':15s} {'jobs':>5s} {'job s (sum)':>12s} {'cpu s (sum)':>12s} {'wall span s':>12s} {'max RSS MB':>11s}")
    for name in ("model building", "evaluation", "analysis"):
        c = s["categories"].get(name)
        if not c:
            continue
        span = f"{c['span_s']:.0f}" if c["span_s"] is not None else "-"
        cpu = f"{c['cpu_seconds']:.0f}" if c["cpu_seconds"] else "-"
        rss = f"{c['max_rss_mb']:.0f}" if c["max_rss_mb"] else "-"
        print(f"  {name:15s} {c['jobs']:5d} {c['job_seconds']:12.0f} {cpu:>12s} {span:>12s} {rss:>11s}")
    ev, jobs = s["evaluation"], s["categories"].get("evaluation", {})
    if jobs:
        rest = jobs["job_seconds"] - ev["model_load_seconds"] - ev["task_seconds"]
        print(f"  evaluation: {jobs['jobs']} jobs, {ev['model_loads']} model loads (one per job: "
              f"{ev['model_loads'] == jobs['jobs']}) taking {ev['model_load_seconds']:.0f} s, {ev['tasks']} tasks "
              f"evaluated in {ev['task_seconds']:.0f} s, job start-up + teardown {rest:.0f} s (job s - both)")
    print(f"  figures written: {len(s['figures'])}")
    print("  (job seconds from logs/benchmarks/*.tsv where the rule has a benchmark: directive — build_demo_model and "
          "evaluate — else from Snakemake's log, to the second; phases overlap when 2 cores run jobs of both)")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--configfile", type=Path, default=ROOT / "config" / "demo.yaml")
    ap.add_argument("--workdir", type=Path, help="run here and keep it (default: a temporary folder, deleted)")
    ap.add_argument("--no-scontrol", action="store_true", help="skip the SLURM plugin's scontrol call")
    ap.add_argument("--summarize", type=Path, help="only summarise the run in this folder")
    ap.add_argument("--config", nargs="+", default=[], metavar="KEY=VALUE",
                    help="passed on to snakemake --config (e.g. suite=model)")
    ap.add_argument("--json", type=Path)
    add_quick(ap)
    a = ap.parse_args(argv)

    if a.quick:  # the catalog's test, run as its CI would, in .test/ (its config/config.yaml: the reduced demo)
        for leftover in ("results", "logs", "figures", ".snakemake"):
            premise(not (CATALOG_TEST / leftover).exists(), f"{CATALOG_TEST / leftover} exists: the quick mode starts "
                    "from a clean .test/ (rm -rf .test/{results,logs,figures,.snakemake})")
        launcher = [PYTHON, "-c", NO_SCONTROL] if a.no_scontrol else [PYTHON, "-m", "snakemake"]
        cmd = [*launcher, "-s", str(ROOT / "Snakefile"), "--directory", str(CATALOG_TEST), "--cores", str(a.cores)]
        print("running: snakemake", " ".join(cmd[len(launcher):]), flush=True)
        started = time.time()
        res = timed(cmd, env=offline_env(), check=False)
        if res["returncode"] != 0:
            raise SystemExit(f"the catalog's test run failed ({res['returncode']}):\n{res['stderr'][-4000:]}")
        summary = summarize(CATALOG_TEST, started, res["wall_s"])
        report(summary)
        premise(len(summary["figures"]) == 2 * len(FIGURE_NAMES),
                f"{len(summary['figures'])} figure files written, the registry has {len(FIGURE_NAMES)} figures")
        ev, jobs = summary["evaluation"], summary["categories"].get("evaluation", {})
        premise(ev["model_loads"] == jobs.get("jobs", 0) > 0,
                f"{ev['model_loads']} model loads in {jobs.get('jobs', 0)} evaluation jobs (one each)")
        return summary
    if a.summarize:
        summary = summarize(a.summarize)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="cotscale-demo-") if a.workdir is None else None
        workdir = Path(tmp.name) if tmp else a.workdir
        workdir.mkdir(parents=True, exist_ok=True)
        if any(workdir.iterdir()):
            raise SystemExit(f"{workdir} is not empty: the demo benchmark starts from a clean working directory")
        launcher = [PYTHON, "-c", NO_SCONTROL] if a.no_scontrol else [PYTHON, "-m", "snakemake"]
        cmd = [*launcher, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile", str(a.configfile.resolve()),
               "--cores", str(a.cores), *(["--config", *a.config] if a.config else [])]
        print("running: snakemake", " ".join(cmd[len(launcher):]), "(without the scontrol call)" * a.no_scontrol,
              flush=True)
        started = time.time()
        try:
            res = timed(cmd, env=offline_env(), check=False)
            if res["returncode"] != 0:
                raise SystemExit(f"the demo failed ({res['returncode']}):\n{res['stderr'][-4000:]}")
            summary = summarize(workdir, started, res["wall_s"])
            summary.update(cpu_s=res["cpu_s"], config=a.config)
        finally:
            if tmp:
                tmp.cleanup()
        if slurm_stall_possible():
            summary["scontrol_s"] = scontrol_seconds()
            print(f"`scontrol show config` (SLURM plugin, once per snakemake call): {summary['scontrol_s']:.1f} s"
                  + (" — skipped in this run" if a.no_scontrol else " — included in this run"))
    report(summary)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return summary


if __name__ == "__main__":
    main()

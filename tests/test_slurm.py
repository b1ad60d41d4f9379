"""The reduced demo through a real SLURM cluster: `snakemake --profile profiles/slurm`, evaluation jobs as sbatch jobs.

.ci/slurm.sh starts a one-node cluster on the CI machine (slurmctld + slurmd, munge, two fake GPUs backed by device
files). The demo models stay on `device: cpu` but set tensor_parallel / data_parallel, so their evaluation jobs ask
SLURM for 2 and 1 GPUs (cotscale.gpus.requested_gpus); mini-llama's data_parallel 2 runs as two `accelerate launch`
ranks inside its job. The test checks that every evaluation really ran as a SLURM job holding that many GPUs (with
that many ranks), and that its scores equal a local run's.

Skipped where `sinfo` cannot reach a controller. It only submits to the CI cluster (ClusterName=cotscale-ci) unless
COTSCALE_TEST_SLURM=1 allows another one. Without slurmdbd `sacct` fails, and the SLURM plugin would then wait
forever (ignoring SIGTERM): the run polls with squeue and is wrapped in `timeout -k`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from _demo import reduced_demo

TASKS = ["arc_challenge", "gsm8k"]
GPUS = {"mini-llama": 2, "mini-neox@step10": 1, "mini-neox@step30": 1}
TIMEOUT = 600
PREFIX = f"cotscaletest{os.getpid()}"


def _run(*cmd: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _cluster() -> str | None:
    """Why the test cannot run here, or None."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (.ci/slurm.sh installs and starts a test cluster)"
    try:  # a live controller answers at once; a dead one makes sinfo retry for ~10 s
        sinfo = _run("sinfo", "-h", "-o", "%G %t", timeout=5)
        if sinfo.returncode != 0:
            return f"no SLURM controller answers sinfo: {sinfo.stderr.strip()}"
        config = _run("scontrol", "show", "config", timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"no SLURM controller answers sinfo: {exc}"
    name = re.search(r"^ClusterName\s*=\s*(\S+)", config.stdout, re.M)
    if (name and name.group(1)) != "cotscale-ci" and os.environ.get("COTSCALE_TEST_SLURM") != "1":
        return "a SLURM cluster other than .ci/slurm.sh's: set COTSCALE_TEST_SLURM=1 to submit the test jobs to it"
    gpus = [int(m) for m in re.findall(r"gpu(?::[^:\s]+)?:(\d+)", sinfo.stdout)]
    if not gpus or max(gpus) < max(GPUS.values()):
        return f"no node with {max(GPUS.values())} GPUs (sinfo: {sinfo.stdout.strip()!r})"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


SKIP = _cluster()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(SKIP is not None, reason=str(SKIP))]


def slurm_config(root: Path) -> dict:
    config = reduced_demo(root, tasks=TASKS)
    config["models"]["mini-llama"]["data_parallel"] = 2  # two accelerate ranks on CPU (gloo), one per "GPU"
    config["models"]["mini-neox"]["tensor_parallel"] = 1
    return config


def targets() -> list[str]:
    return [f"results/evals/{m}/standard/{t}/results.json" for m in GPUS for t in TASKS]


def _snakemake(root: Path, workdir: Path, *args: str, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    cmd = ["timeout", "-k", "10", str(timeout), sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"),
           "-d", str(workdir), "--configfile", str(workdir / "config.yaml"), *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30, env=env)


def _cancel_leftovers() -> None:
    jobs = _run("squeue", "-h", "-o", "%i %j")
    ids = [line.split()[0] for line in jobs.stdout.splitlines() if len(line.split()) > 1 and line.split()[1].startswith(PREFIX)]
    if ids:
        _run("scancel", *ids)


def _diagnostics(workdir: Path) -> str:
    logs = sorted((workdir / ".snakemake" / "slurm_logs").rglob("*.log")) + sorted((workdir / "logs").rglob("*.log"))
    text = [f"--- {p.relative_to(workdir)}\n{p.read_text()[-1500:]}" for p in logs[-6:]]
    return "\n".join(text + [_run("squeue", "-t", "all").stdout])


@pytest.fixture(scope="module")
def slurm_run(root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("slurm")
    (workdir / "config.yaml").write_text(yaml.safe_dump(slurm_config(root)))
    started = time.monotonic()
    try:
        run = _snakemake(
            root, workdir, "--profile", str(root / "profiles" / "slurm"),
            "--slurm-status-command", "squeue",  # no slurmdbd here: sacct would make the plugin wait forever
            "--slurm-init-seconds-before-status-checks", "5",
            "--slurm-jobname-prefix", PREFIX,
            "--slurm-keep-successful-logs",
            "--retries", "0", "--latency-wait", "5",
            "--", "aggregate",
        )
    finally:
        _cancel_leftovers()
    seconds = time.monotonic() - started
    assert run.returncode == 0, f"exit {run.returncode} after {seconds:.0f} s\n{run.stderr[-5000:]}\n{_diagnostics(workdir)}"
    print(f"SLURM run: {seconds:.0f} s")
    return workdir, run


@pytest.fixture(scope="module")
def local_run(root, slurm_run, tmp_path_factory):
    """The same evaluations without SLURM, on the same demo models (built deterministically; copied, not rebuilt)."""
    workdir = tmp_path_factory.mktemp("local")
    (workdir / "config.yaml").write_text(yaml.safe_dump(slurm_config(root)))
    shutil.copytree(slurm_run[0] / "results" / "demo_models", workdir / "results" / "demo_models")
    run = _snakemake(root, workdir, "--cores", "2", "--", *targets())
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


def _meta(workdir: Path, target: str) -> dict:
    return json.loads((workdir / target).read_text())


def test_evaluations_ran_as_slurm_jobs_with_their_gpus(slurm_run):
    workdir, run = slurm_run
    assert "sbatch" in run.stderr or "SLURM" in run.stderr
    from cotscale.config import load_config
    from cotscale.gpus import memory_mb, runtime_minutes

    config = load_config(slurm_config(Path(__file__).resolve().parents[1]))
    job_ids = {}
    for target in targets():
        model = target.split("/")[2]
        meta = _meta(workdir, target)["cotscale"]
        assert meta["slurm_job_id"], f"{target} did not run in a SLURM job"
        job_ids.setdefault(model, set()).add(meta["slurm_job_id"])
        visible = meta["cuda_visible_devices"]
        assert visible is not None and len(visible.split(",")) == GPUS[model], (target, visible)
        assert set(visible.split(",")) <= {"0", "1"}
        assert meta["data_parallel"]["processes"] == (2 if model == "mini-llama" else 1)
        job = _run("scontrol", "show", "job", "-o", meta["slurm_job_id"]).stdout
        assert re.search(rf"gres[/:]gpu[=:]{GPUS[model]}\b", job), job  # the request, as SLURM records it
        ranks = meta["data_parallel"]["processes"]
        assert re.search(rf"CPUs/Task={ranks}\b", job), job  # a core per accelerate rank (--cpus-per-task)
        # a suite asks for the memory of its model and the summed runtime of its tasks (minutes -> H:MM:SS)
        minutes = runtime_minutes(config, model, ["standard"])
        assert f"TimeLimit={minutes // 60:02d}:{minutes % 60:02d}:00" in job, job
        assert re.search(rf"MinMemoryNode={memory_mb(config, model)}M\b", job), job
    # one SLURM job per suite (model × strategy): its tasks share it
    assert all(len(ids) == 1 for ids in job_ids.values()) and len(set().union(*job_ids.values())) == len(GPUS)
    # tables, fits and figures are local rules: the aggregate ran on this host, after the cluster jobs
    assert (workdir / "results" / "tables" / "benchmarks.csv").exists()
    assert not list((workdir / ".snakemake" / "slurm_logs").glob("rule_aggregate*"))
    assert not list((workdir / ".snakemake" / "slurm_logs").glob("rule_build_demo_model*"))


def test_scores_equal_a_local_run(slurm_run, local_run):
    for target in targets():
        on_slurm, local = _meta(slurm_run[0], target), _meta(local_run, target)
        assert local["cotscale"]["slurm_job_id"] is None
        assert on_slurm["results"].keys() == local["results"].keys()
        for task, metrics in local["results"].items():
            for key, value in metrics.items():
                if isinstance(value, float):
                    assert on_slurm["results"][task][key] == pytest.approx(value, abs=1e-9), (target, task, key)

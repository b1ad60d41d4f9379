"""The reduced demo through a real SLURM cluster: `snakemake --profile profiles/slurm`, evaluation jobs as sbatch jobs.

.ci/slurm.sh starts a one-node cluster on the CI machine (slurmctld + slurmd, munge, two fake GPUs backed by device
files). The demo models stay on `device: cpu` but set tensor_parallel / data_parallel, so their evaluation jobs ask
SLURM for 2 and 1 GPUs (cotscale.gpus.requested_gpus); mini-llama's data_parallel 2 runs as two `accelerate launch`
ranks inside its job. The test checks that every evaluation really ran as a SLURM job holding that many GPUs (with
that many ranks), and that its scores equal a local run's.

Faults (issue 16): a suite job is cancelled (`scancel`) after its first task, and another is requeued (`scontrol
requeue`) in the middle of its first task, for real, while the profile's run waits for them. The first comes back
through Snakemake's retry (a new SLURM job), the second through SLURM itself (same job id, `Restarts=1`: the plugin
sees it PENDING again and waits). Both must end with outputs equal to the uninterrupted run's (timing fields aside),
fewer backend calls, cache hits counted in results.json, and no half-written file. A test shim sleeps after each
request-cache write of the evaluation process, so there is time to interrupt the job between two writes.

Skipped where `sinfo` cannot reach a controller. It only submits to the CI cluster (ClusterName=cotscale-ci) unless
COTSCALE_TEST_SLURM=1 allows another one. Without slurmdbd `sacct` fails, and the SLURM plugin would then wait
forever (ignoring SIGTERM): the run polls with squeue and is wrapped in `timeout -k`.
"""

from __future__ import annotations

import concurrent.futures
import gzip
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

from cotscale.preempt import PREEMPTED_EXIT

TASKS = ["arc_challenge", "gsm8k"]
GPUS = {"mini-llama": 2, "mini-neox@step10": 1, "mini-neox@step30": 1}
TIMEOUT = 600
PREFIX = f"cotscaletest{os.getpid()}"
CHUNK = "4"  # requests per backend call and per request-cache write (cotscale.lm): several writes per task
FAULT_MODEL = "mini-neox@step10"  # one GPU, one process: one request cache per task
PREEMPTED = f"preempted by signal SIGTERM, will resume from the request cache in results/cache/{FAULT_MODEL}"
TIMING = ("wall_seconds", "model_load_seconds", "cache", "slurm_job_id", "cuda_visible_devices")
LM_EVAL_TIMING = ("date", "start_time", "end_time", "total_evaluation_time_seconds")
SLOW_WRITES = """
import os, sys
_pause = float(os.environ.get("COTSCALE_TEST_PAUSE_AFTER_WRITE", "0"))
if _pause and sys.argv and sys.argv[0].endswith("cotscale_rule.py"):  # a rule's script process (only evaluations write caches)
    import time
    import cotscale.cache
    _put_many = cotscale.cache.RequestCache.put_many
    def put_many(self, entries):  # a slower backend: time to interrupt the job between two cache writes
        _put_many(self, entries)
        time.sleep(_pause)
    cotscale.cache.RequestCache.put_many = put_many
"""


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


def _command(root: Path, workdir: Path, *args: str, timeout: int = TIMEOUT, env: dict | None = None):
    cmd = ["timeout", "-k", "10", str(timeout), sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"),
           "-d", str(workdir), "--configfile", str(workdir / "config.yaml"), *args]
    base = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    return cmd, {**base, "COTSCALE_REQUEST_CHUNK": CHUNK, **(env or {})}


def _snakemake(root: Path, workdir: Path, *args: str, timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    cmd, env = _command(root, workdir, *args, timeout=timeout)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 30, env=env)


def _profile_args(root: Path, retries: int, prefix: str = PREFIX) -> list[str]:
    return ["--profile", str(root / "profiles" / "slurm"),
            "--slurm-status-command", "squeue",  # no slurmdbd here: sacct would make the plugin wait forever
            "--slurm-init-seconds-before-status-checks", "5",
            "--slurm-jobname-prefix", prefix,
            "--slurm-keep-successful-logs",
            "--retries", str(retries), "--latency-wait", "5"]


def _cancel_leftovers(prefix: str = PREFIX) -> None:
    jobs = _run("squeue", "-h", "-o", "%i %j")
    ids = [line.split()[0] for line in jobs.stdout.splitlines() if len(line.split()) > 1 and line.split()[1].startswith(prefix)]
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
        run = _snakemake(root, workdir, *_profile_args(root, retries=0), "--", "aggregate")
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


# ---------------------------------------------------------------------------------------------- faults (issue 16)
def _suite_targets(model: str = FAULT_MODEL) -> list[str]:
    return [f"results/evals/{model}/standard/{t}/results.json" for t in TASKS]


def _defining(results: dict) -> dict:
    """results.json without what measures rather than defines a run (clocks, cache counters, where it ran)."""
    out = {k: v for k, v in results.items() if k not in LM_EVAL_TIMING}
    out["cotscale"] = {k: v for k, v in results["cotscale"].items() if k not in TIMING}
    return out


def _calls(results: dict) -> int:
    return sum(results["cotscale"]["cache"]["backend_calls"].values())


def _complete_lines(path: Path) -> int:
    """Lines of a request cache that parse as a whole chunk (a torn last line does not count)."""
    count = 0
    for line in path.read_text().splitlines():
        try:
            json.loads(line)
        except ValueError:
            break
        count += 1
    return count


def _job_id(prefix: str) -> str | None:
    """The running evaluation job of a fault run (its only SLURM job, named with its own prefix)."""
    jobs = _run("squeue", "-h", "-t", "running", "-o", "%i %j").stdout.split("\n")
    ids = [line.split()[0] for line in jobs if len(line.split()) > 1 and line.split()[1].startswith(prefix)]
    return ids[0] if len(ids) == 1 else None


def _half_written(workdir: Path) -> list[str]:
    """Files of the run that are not whole: temporary files left by a write, request-cache lines that do not parse,
    outputs that do not decode."""
    bad = [str(p) for p in (workdir / "results").rglob(".*.tmp")]
    for path in (workdir / "results").rglob("requests-*.jsonl"):
        if _complete_lines(path) != len(path.read_text().splitlines()):
            bad.append(str(path))
    for path in (workdir / "results").rglob("*.gz"):
        try:
            gzip.decompress(path.read_bytes())
        except (OSError, EOFError):
            bad.append(str(path))
    for path in (workdir / "results").rglob("*.json"):
        try:
            json.loads(path.read_text())
        except ValueError:
            bad.append(str(path))
    return bad


def _interrupted_run(root: Path, reference: Path, workdir: Path, prefix: str, ready, interrupt) -> tuple:
    """Run the fault model's suite through the profile, call `interrupt(job_id)` once `ready(workdir)` holds, wait
    for the job's "preempted" line. Returns (exit status, Snakemake's output, the interrupted job id, its evaluation
    log, half-written files seen right after the interruption, seconds)."""
    workdir.mkdir()
    (workdir / "config.yaml").write_text(yaml.safe_dump(slurm_config(root)))
    model_dir = Path("results") / "demo_models" / FAULT_MODEL.split("@")[0]
    shutil.copytree(reference / model_dir, workdir / model_dir)  # the build is not under test: reuse it
    shim = workdir.parent / f"{workdir.name}-shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SLOW_WRITES)
    cmd, env = _command(root, workdir, *_profile_args(root, retries=1, prefix=prefix), "--", *_suite_targets(),
                        env={"PYTHONPATH": f"{shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
                             "COTSCALE_TEST_PAUSE_AFTER_WRITE": "1"})
    log = workdir / "logs" / "evaluate" / FAULT_MODEL / "standard.log"
    started = time.monotonic()
    job_id, log_text, torn = None, "", []
    out = workdir.parent / f"{workdir.name}-snakemake.out"
    with out.open("w") as sink, subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, env=env) as proc:
        try:
            while proc.poll() is None and time.monotonic() - started < TIMEOUT:
                if job_id is None and ready(workdir) and (job_id := _job_id(prefix)):
                    interrupt(job_id)
                if job_id and not log_text and log.exists() and PREEMPTED in log.read_text():
                    log_text = log.read_text()  # before the job runs again: Snakemake then deletes its log
                    time.sleep(1)  # the job step ends (it waits for the evaluation)
                    torn = _half_written(workdir)
                time.sleep(0.1)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
            _cancel_leftovers(prefix)
    return proc.returncode, out.read_text(), job_id, log_text, torn, time.monotonic() - started


def _cache_lines(workdir: Path, task: str) -> int:
    folder = workdir / "results" / "cache" / FAULT_MODEL / "standard" / task
    return sum(_complete_lines(p) for p in folder.glob("requests-*.jsonl")) if folder.is_dir() else 0


def _assert_same_outputs(workdir: Path, reference: Path) -> None:
    for target in _suite_targets():
        ours, ref = (workdir / target).parent, (reference / target).parent
        for name in ("samples.jsonl.gz", "usage.jsonl.gz"):
            assert gzip.decompress((ours / name).read_bytes()) == gzip.decompress((ref / name).read_bytes()), (target, name)
        assert _defining(_meta(workdir, target)) == _defining(_meta(reference, target)), target


def _finished_first_task(workdir: Path) -> bool:
    first, second = TASKS
    done = workdir / "results" / "cache" / FAULT_MODEL / "standard" / f"{first}.complete" / "results.json"
    return done.exists() and _cache_lines(workdir, second) >= 1


def _inside_first_task(workdir: Path) -> bool:
    first = TASKS[0]
    done = workdir / "results" / "cache" / FAULT_MODEL / "standard" / f"{first}.complete"
    return _cache_lines(workdir, first) >= 1 and not done.exists()


def _requeue_now(job_id: str) -> None:
    """`scontrol requeue`; then let the requeued job start at once (SLURM holds it until its credential expires,
    about 2 minutes, which is the test's time only)."""
    assert _run("scontrol", "requeue", job_id).returncode == 0
    for _ in range(300):
        if "BeginTime" in _run("squeue", "-h", "-j", job_id, "-o", "%T %r").stdout:
            break
        time.sleep(0.1)
    _run("scontrol", "update", f"jobid={job_id}", "StartTime=now")


@pytest.fixture(scope="module")
def interrupted(root, slurm_run, tmp_path_factory) -> dict:
    """Both fault runs at once, one GPU each, so that their waits for the plugin's status checks overlap:
    {name: (working directory, what _interrupted_run returns)}."""
    faults = {"cancelled": (_finished_first_task, lambda job: _run("scancel", job)),
              "requeued": (_inside_first_task, _requeue_now)}
    workdirs = {name: tmp_path_factory.mktemp(name) / name for name in faults}
    with concurrent.futures.ThreadPoolExecutor(len(faults)) as pool:
        runs = {name: pool.submit(_interrupted_run, root, slurm_run[0], workdirs[name], f"{PREFIX}{name}", *fault)
                for name, fault in faults.items()}
    return {name: (workdirs[name], run.result()) for name, run in runs.items()}


def test_a_suite_job_cancelled_after_its_first_task_completes_through_the_retry(slurm_run, interrupted):
    reference = slurm_run[0]
    workdir, (rc, output, job_id, log_text, torn, seconds) = interrupted["cancelled"]
    assert rc == 0, f"exit {rc} after {seconds:.0f} s\n{output[-5000:]}\n{_diagnostics(workdir)}"
    assert job_id, "the suite finished before the test could cancel it"
    assert f"SLURM-job '{job_id}' failed, SLURM status is: 'CANCELLED'" in output  # the plugin saw it fail ...
    assert output.count("has been submitted with SLURM jobid") == 2  # ... and submitted it once more
    assert PREEMPTED in log_text and torn == []  # ... after the evaluation stopped on scancel's SIGTERM, cleanly
    step_log = workdir / ".snakemake" / "slurm_logs" / "rule_evaluate" / f"{FAULT_MODEL}_standard" / f"{job_id}.log"
    assert f"returned non-zero exit status {PREEMPTED_EXIT}." in step_log.read_text()  # the cancelled job's own log
    first, second = (_meta(workdir, t)["cotscale"] for t in _suite_targets())
    assert first["slurm_job_id"] == job_id  # the first task's outputs were kept from the cancelled job ...
    assert second["slurm_job_id"] not in (None, job_id)  # ... the second was finished by Snakemake's retry, a new job
    ref_first, ref_second = (_meta(reference, t) for t in _suite_targets())
    # the retry answered the second task's first chunks from the request cache, and called the backend less
    assert second["cache"]["hits"] > 0
    assert second["cache"]["hits"] + second["cache"]["misses"] == ref_second["cotscale"]["cache"]["misses"]
    assert sum(second["cache"]["backend_calls"].values()) < _calls(ref_second)
    _assert_same_outputs(workdir, reference)
    assert not (workdir / "results" / "cache").exists() and _half_written(workdir) == []
    print(f"cancel: job {job_id} -> retry job {second['slurm_job_id']}, {seconds:.0f} s; second task "
          f"{second['cache']['hits']} hits, {sum(second['cache']['backend_calls'].values())} backend calls "
          f"(uninterrupted suite: {_calls(ref_first) + _calls(ref_second)})")


def test_a_suite_job_requeued_mid_task_resumes_from_its_request_cache(slurm_run, interrupted):
    reference = slurm_run[0]
    workdir, (rc, output, job_id, log_text, torn, seconds) = interrupted["requeued"]
    assert rc == 0, f"exit {rc} after {seconds:.0f} s\n{output[-5000:]}\n{_diagnostics(workdir)}"
    assert job_id, "the first task finished before the test could requeue the job"
    assert PREEMPTED in log_text and torn == []
    # SLURM ran the same job again; the plugin saw it pending, not failed, and Snakemake did not retry it
    job = _run("scontrol", "show", "job", "-o", job_id).stdout
    assert "Restarts=1" in job and "JobState=COMPLETED" in job, job
    assert f"SLURM-job '{job_id}' failed" not in output and output.count("has been submitted with SLURM jobid") == 1
    first, second = (_meta(workdir, t)["cotscale"] for t in _suite_targets())
    assert first["slurm_job_id"] == second["slurm_job_id"] == job_id
    ref_first = _meta(reference, _suite_targets()[0])
    assert first["cache"]["hits"] > 0
    assert first["cache"]["hits"] + first["cache"]["misses"] == ref_first["cotscale"]["cache"]["misses"]
    assert sum(first["cache"]["backend_calls"].values()) < _calls(ref_first)
    _assert_same_outputs(workdir, reference)
    assert not (workdir / "results" / "cache").exists() and _half_written(workdir) == []
    print(f"requeue: job {job_id} restarted once, {seconds:.0f} s; first task {first['cache']['hits']} hits, "
          f"{sum(first['cache']['backend_calls'].values())} backend calls (uninterrupted: {_calls(ref_first)})")

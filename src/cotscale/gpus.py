"""GPUs of evaluation jobs: what a job asks the scheduler for, and which GPU ids it runs on.

Snakemake counts GPUs as a resource (`--resources gpu=8` on a workstation, `--gpus=N` under SLURM) but never says
*which* GPUs a job gets. Under SLURM the allocation sets CUDA_VISIBLE_DEVICES and that is used as is (unless one
allocation holds several jobs' worth: then they are shared out as below, among the allocation's ids). On one
multi-GPU workstation, concurrent evaluation jobs claim disjoint GPU ids themselves: one lock file per GPU id in a
lock folder, held with `fcntl.flock` for the life of the job. The kernel drops a flock when its process exits,
however it exits, so a crashed or killed job never leaves a GPU claimed.

Environment:
  COTSCALE_GPUS            how many GPUs the host has (default: `torch.cuda.device_count()`, asked in a subprocess so
                           that this process's CUDA is not initialised before CUDA_VISIBLE_DEVICES is set)
  COTSCALE_GPU_LOCK_DIR    the lock folder (default ~/.cache/cotscale/gpu-locks/<hostname>); every process that
                           should coordinate must use the same folder on the same host: point it at e.g.
                           /tmp/cotscale-gpu-locks when several users share the machine
  CUDA_VISIBLE_DEVICES     when set, jobs choose only among these ids (and keep their names: indices or UUIDs)
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from cotscale.config import suites

log = logging.getLogger(__name__)

DEFAULT_LOCK_DIR = Path("~/.cache/cotscale/gpu-locks")
MAX_RUNTIME_MINUTES = 48 * 60  # a common partition limit; longer jobs: --set-resources evaluate:runtime=...


# ------------------------------------------------------------------------------------------------ what a job asks for
def requested_gpus(config: dict, model_key: str, raw_config: dict | None = None) -> int:
    """GPUs an evaluation of `model_key` asks the scheduler for: tensor_parallel × data_parallel.

    A run on `device: cpu` (or mps) needs none, unless the model's entry in the raw config sets tensor_parallel or
    data_parallel itself; that lets the CPU demo stand in for GPU jobs (tests/test_slurm.py).
    """
    model = config["models"][model_key]
    gpus = int(model["tensor_parallel"]) * int(model["data_parallel"])
    if str(config.get("device", "cuda")).startswith("cuda"):
        return gpus
    entry = (raw_config or {}).get("models", {}).get(model["name"], {})
    return gpus if {"tensor_parallel", "data_parallel"} & set(entry) else 0


def claimed_gpus(config: dict, model_key: str) -> int:
    """GPU ids the job claims on a workstation: tp × dp for `device: cuda`; none for cpu, mps or a pinned cuda:N."""
    model = config["models"][model_key]
    if config.get("device", "cuda") != "cuda":
        return 0
    return int(model["tensor_parallel"]) * int(model["data_parallel"])


def _work_units(config: dict, model_key: str, strategy_name: str) -> float:
    """Relative cost of one evaluation: parameters (billions) × sequences decoded per document."""
    model = config["models"][model_key]
    strategy = config["strategies"][strategy_name]
    sequences = 1.0
    if strategy["format"] != "loglikelihood":
        # a rationale of up to max_gen_toks tokens per sequence, ~one scoring pass' worth per 64 tokens
        sequences += strategy["samples"] * strategy["num_beams"] * strategy["max_gen_toks"] / 64
    return model["N"] / 1e9 * sequences


def suite_work(config: dict, model_key: str, strategies) -> float:
    """Relative cost of one evaluation suite: _work_units summed over its strategies × benchmarks. It is also the
    suite's scheduling priority, so the longest suites start first and the shortest fill the gaps at the end."""
    if isinstance(strategies, str):
        strategies = [strategies]
    return sum(_work_units(config, model_key, s) for s in strategies) * len(config["tasks"])


def runtime_minutes(config: dict, model_key: str, strategies, attempt: int = 1) -> int:
    """A generous wall-time limit for one evaluation suite (SLURM `-t`): 30 minutes of margin (model load, start-up)
    plus the summed estimates of its tasks (strategies × benchmarks).

    A task's estimate is calibrated so that a 7B model's log-likelihood run of a full benchmark (mmlu, ~14k
    documents) fits easily on one GPU; jobs on several GPUs get proportionally less; capped at MAX_RUNTIME_MINUTES.
    Override with `--set-resources evaluate:runtime=...`. A retried job (`attempt` > 1) gets that many times as long.
    """
    model = config["models"][model_key]
    gpus = max(1, int(model["tensor_parallel"]) * int(model["data_parallel"]))
    limit = config.get("limit")
    fraction = 1.0 if limit is None else (limit if limit < 1 else min(1.0, limit / 1000))
    tasks = 20 * suite_work(config, model_key, strategies) * fraction / gpus
    minutes = (30 + tasks) * attempt
    return int(min(MAX_RUNTIME_MINUTES, math.ceil(minutes / 10) * 10))


def job_processes(config: dict, model_key: str) -> int:
    """Processes of one evaluation job: on the hf backend one `accelerate launch` rank per data_parallel, each with
    its own copy of the model (cotscale.evaluate); otherwise one (vLLM starts and sizes its own workers)."""
    model = config["models"][model_key]
    return int(model["data_parallel"]) if model["backend"] == "hf" else 1


def eval_threads(config: dict, model_key: str, cores: int | None) -> int:
    """CPU threads of one evaluation job (its Snakemake `threads`, and torch's on device cpu). On GPUs one per process
    (the GPU computes). On CPU the config's `threads:`, else the `cores` Snakemake is given (capped at this machine's)
    shared evenly among the config's evaluation suites: one model uses every core allowed, and the demo's many
    suites run side by side on one core each instead of one after another. Never fewer than the job's processes."""
    processes = job_processes(config, model_key)
    if str(config["device"]).startswith("cuda"):
        return processes
    if config.get("threads"):
        return max(int(config["threads"]), processes)
    available = min(int(cores or 1), os.cpu_count() or 1)
    return max(processes, available // max(1, len(suites(config))))


def memory_mb(config: dict, model_key: str, attempt: int = 1) -> int:
    """Host memory of one evaluation job: per process 8 GB plus twice the 16-bit weights (loading, tokenizer, lm-eval
    data); 2 GB for a demo model. A retried job (`attempt` > 1) gets that many times as much."""
    model = config["models"][model_key]
    base = 2000 if model["demo"] else 8000 + 4 * model["N"] / 1e6
    return int(base * job_processes(config, model_key) * attempt)


# ------------------------------------------------------------------------------------------------ which GPU ids
class GpuClaim:
    """GPU ids held by this process (released by `release()`, on leaving a `with` block, or when the process ends)."""

    def __init__(self, ids: list[str], handles: list[int], source: str):
        self.ids, self._handles, self.source = ids, handles, source
        self._saved_env: tuple[str | None] | None = None  # CUDA_VISIBLE_DEVICES before this claim set it

    @property
    def visible_devices(self) -> str:
        return ",".join(self.ids)

    def set_visible_devices(self) -> None:
        self._saved_env = (os.environ.get("CUDA_VISIBLE_DEVICES"),)
        os.environ["CUDA_VISIBLE_DEVICES"] = self.visible_devices

    def release(self) -> None:
        """Drop the locks and restore CUDA_VISIBLE_DEVICES (if this claim set it)."""
        for fd in self._handles:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the only descriptor drops the flock
        self._handles = []
        if self._saved_env is not None:
            (previous,), self._saved_env = self._saved_env, None
            if previous is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = previous

    def __enter__(self) -> "GpuClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"GpuClaim(ids={self.ids}, source={self.source!r})"


def lock_dir() -> Path:
    configured = os.environ.get("COTSCALE_GPU_LOCK_DIR")
    if configured:
        return Path(configured).expanduser()
    return DEFAULT_LOCK_DIR.expanduser() / socket.gethostname()


def host_gpu_count() -> int:
    """GPUs on this host: COTSCALE_GPUS, else torch's count in a subprocess (this process's CUDA stays untouched)."""
    configured = os.environ.get("COTSCALE_GPUS")
    if configured is not None:
        return int(configured)
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    try:
        out = subprocess.run([sys.executable, "-c", "import torch; print(torch.cuda.device_count())"], env=env,
                             capture_output=True, text=True, timeout=120, check=True)
        return int(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError, OSError) as exc:
        log.warning("cannot count GPUs (%s); set COTSCALE_GPUS", exc)
        return 0


def candidate_ids() -> list[str]:
    """The GPU ids jobs may choose from: CUDA_VISIBLE_DEVICES when set, else 0 .. host_gpu_count() - 1."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() not in ("", "-1"):
        return [part.strip() for part in visible.split(",") if part.strip()]
    if visible is not None:
        return []  # explicitly no GPU
    return [str(i) for i in range(host_gpu_count())]


def _lock_path(folder: Path, gpu_id: str) -> Path:
    return folder / f"gpu-{re.sub(r'[^A-Za-z0-9._-]', '_', gpu_id)}.lock"


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} {socket.gethostname()} {time.time():.3f}\n".encode())
    return fd


def _grab(folder: Path, ids: list[str], n: int) -> tuple[list[str], list[int]] | None:
    """All-or-nothing: n free ids locked, or None (with nothing held). Serialised by a folder-wide mutex so that two
    jobs never each hold part of what the other needs."""
    mutex = os.open(folder / ".claim.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(mutex, fcntl.LOCK_EX)
        got, handles = [], []
        for gpu_id in ids:
            fd = _try_lock(_lock_path(folder, gpu_id))
            if fd is not None:
                got.append(gpu_id)
                handles.append(fd)
                if len(got) == n:
                    return got, handles
        for fd in handles:
            os.close(fd)
        return None
    finally:
        os.close(mutex)  # also drops the mutex's flock


def claim_gpus(n: int, *, timeout: float | None = None, poll: float = 2.0, set_env: bool = True) -> GpuClaim:
    """Claim `n` GPU ids no other cotscale job on this host holds, and (by default) set CUDA_VISIBLE_DEVICES to them.

    - n == 0: nothing to do (CPU runs).
    - Inside a SLURM job (SLURM_JOB_ID set) that sees at most n GPUs: the allocation chose them; CUDA_VISIBLE_DEVICES
      is used as is. One that sees more (Snakemake run inside `salloc`) shares them out among its jobs with locks.
    - Otherwise wait (polling every `poll` s, at most `timeout` s; None waits as long as it takes) until n of the
      candidate ids are free. Use as a context manager, or keep the returned claim alive for the job's life.
    Call it before anything initialises CUDA in this process (the model build, vLLM's workers).
    """
    if n <= 0:
        return GpuClaim([], [], "none")
    slurm_job = os.environ.get("SLURM_JOB_ID")
    if slurm_job:
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        ids = [part for part in visible.split(",") if part]
        if len(ids) <= n:  # the allocation is this job's (a job step of the SLURM executor)
            if len(ids) < n:
                log.warning("SLURM job %s sees GPUs %r but the model needs %d", slurm_job, visible, n)
            return GpuClaim(ids, [], "slurm")
        # several local jobs inside one bigger allocation (snakemake --cores ... within salloc): share it out. The
        # ids are that allocation's own numbering, so the locks are scoped to it.
        folder = lock_dir() / f"slurm-{slurm_job}"
    else:
        ids = candidate_ids()
        if len(ids) < n:
            raise RuntimeError(
                f"this job needs {n} GPU(s) (tensor_parallel × data_parallel) but only {len(ids)} are visible "
                f"({'CUDA_VISIBLE_DEVICES=' + os.environ['CUDA_VISIBLE_DEVICES'] if 'CUDA_VISIBLE_DEVICES' in os.environ else 'set COTSCALE_GPUS to override the count'})"
            )
        folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    reported = 0.0
    while True:
        grabbed = _grab(folder, ids, n)
        if grabbed is not None:
            got, handles = grabbed
            claim = GpuClaim(got, handles, "lock")
            if set_env:
                claim.set_visible_devices()
            log.info("claimed GPU(s) %s (locks in %s)", claim.visible_devices, folder)
            return claim
        waited = time.monotonic() - started
        if timeout is not None and waited >= timeout:
            raise TimeoutError(f"no {n} free GPU(s) among {ids} after {waited:.0f} s (locks in {folder})")
        if waited - reported >= 60 or reported == 0.0:
            log.info("waiting for %d free GPU(s) among %s (locks in %s)", n, ids, folder)
            reported = waited or 1e-9
        time.sleep(poll * (0.5 + random.random()))

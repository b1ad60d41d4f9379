"""Faults an evaluation job survives by stopping early and running again: preemption and running out of memory.

Preemption. SLURM signals a job before it kills it: SIGTERM when it is cancelled or preempted (then SIGKILL after
the cluster's KillWait / GraceTime), and the profile's `--signal=TERM@120` (profiles/slurm/README.md) 120 s before
its time limit. `exit_on_preemption` turns SIGTERM and SIGUSR1 into a `Preempted` exception in the main thread, so
the evaluation stops at once wherever it is (inside a long backend call too), `finally` blocks and context managers
run, and the job exits with PREEMPTED_EXIT after one log line that says where it will resume from. Nothing needs
flushing at that point: the request cache (cotscale.cache) appends and fsyncs each chunk of answers as it gets it,
and drops a torn last line when it is opened again; outputs are written through temporary files and renamed
(cotscale.io.atomic_path), so they are either complete or absent.

Out of memory. Snakemake retries a failed job (`retries` in the profile) with `attempt` = 2, 3, ...; the job's
mem_mb scales with the attempt. A suite that ran out of memory (CUDA or host, cotscale.evaluate._is_out_of_memory)
records it beside its request caches, and its next run halves a numeric batch size per such failure
(`batch_size_for_attempt`), keeping the tasks it finished; the interrupted task starts over (its request cache is
keyed by the batch size, which changes the last bits of a log-likelihood).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)
#: how SLURM evaluation jobs are submitted (workflow/rules/evaluate.smk, `slurm_extra`): SIGTERM 120 s before the
#: time limit. TERM, not USR1: the job step's own snakemake waits for its job on SIGTERM, but dies at once of SIGUSR1
SLURM_SIGNAL = "--signal=TERM@120"
PREEMPTED_EXIT = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, run it again


class Preempted(BaseException):
    """The job was told to stop (a BaseException, so `except Exception` in lm-eval or a backend cannot swallow it)."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"preempted by signal {signal.Signals(signum).name}")


def _raise_preempted(signum: int, frame) -> None:
    for sig in PREEMPTION_SIGNALS:  # one is enough: a second signal must not interrupt the unwinding
        signal.signal(sig, signal.SIG_IGN)
    raise Preempted(signum)


@contextlib.contextmanager
def exit_on_preemption(cache_dir: str | Path, logger: logging.Logger = log):
    """Run the block; on SIGTERM or SIGUSR1 stop it, log "preempted by signal SIGTERM, will resume from the request
    cache in <cache_dir>" and exit with PREEMPTED_EXIT (further signals are then ignored while the process unwinds).
    Must be entered in the main thread (Python delivers signals there). The previous handlers are restored when the
    block ends normally or raises something else."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("exit_on_preemption must run in the main thread: only it receives signals")
    previous = {sig: signal.signal(sig, _raise_preempted) for sig in PREEMPTION_SIGNALS}
    try:
        yield
    except Preempted as exc:
        logger.warning("%s, will resume from the request cache in %s", exc, cache_dir)
        for handler in logging.getLogger().handlers + logger.handlers:
            handler.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        raise SystemExit(PREEMPTED_EXIT) from None
    except BaseException:
        _restore(previous)
        raise
    _restore(previous)


def _restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def batch_size_for_attempt(batch_size: int | str, attempt: int) -> int | str:
    """The batch size of attempt `attempt` (1 + the out-of-memory failures before it): a number halves per failure,
    down to 1.

    "auto" (and lm-eval's "auto:N") stays as it is: lm-eval's automatic batch size already searches downwards from
    the largest batch, halving whenever one runs out of memory, on every run; a retry re-runs that search within the
    retry's larger memory, and there is no number to halve.
    """
    if isinstance(batch_size, str):
        return batch_size
    if attempt < 1 or batch_size < 1:
        raise ValueError(f"attempt ({attempt}) and batch_size ({batch_size}) must be at least 1")
    return max(1, batch_size >> (attempt - 1))

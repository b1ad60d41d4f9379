"""Preemption and out-of-memory retries, with real signals and real allocation failures in real subprocesses.

A child process runs a loop under `exit_on_preemption` that appends chunks to a real RequestCache and rewrites an
output file through cotscale.io's atomic write; the test sends it SIGTERM or SIGUSR1 with os.kill at a random
moment. Out of memory: the test caps a child's address space with prlimit(RLIMIT_AS) after the child has imported
torch, then the child allocates beyond the cap.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cotscale.cache import RequestCache
from cotscale.preempt import PREEMPTED_EXIT, batch_size_for_attempt, exit_on_preemption

SRC = Path(__file__).resolve().parents[1] / "src"
CHUNK = 40  # entries per cache chunk
FINGERPRINT = {"test": "preempt"}
VALUES = 20000  # numbers in the output file: big enough that writing it takes a while

CHILD = f"""
import logging, sys, time
from pathlib import Path
from cotscale.cache import RequestCache
from cotscale.io import write_json
from cotscale.preempt import exit_on_preemption

out, mode = Path(sys.argv[1]), sys.argv[2]
logging.basicConfig(filename=out / "job.log", level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
cache = RequestCache(out / "cache", {FINGERPRINT!r})
try:
    with exit_on_preemption(out / "cache"):
        chunk = 0
        while True:
            entries = {{f"{{chunk}}-{{i}}": {{"value": chunk * 1000 + i, "pad": "x" * 3000}} for i in range({CHUNK})}}
            cache.put_many(entries)
            write_json(out / "results.json", {{"chunk": chunk, "values": list(range({VALUES}))}})
            if chunk == 2:
                print("ready", flush=True)
                if mode == "block":
                    time.sleep(600)  # a long backend call: the signal must not wait for it
            chunk += 1
finally:
    (out / "finally-ran").write_text("yes")
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _preempt(tmp_path: Path, sig: signal.Signals, mode: str, delay: float) -> tuple[subprocess.Popen, float]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), mode], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=_env())
    try:
        assert child.stdout.readline().strip() == "ready", child.stderr.read()
        time.sleep(delay)
        os.kill(child.pid, sig)
        sent = time.monotonic()
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    return child, time.monotonic() - sent


@pytest.mark.parametrize("mode", ["loop", "block"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=lambda s: s.name)
def test_a_signal_stops_the_job_at_once_and_leaves_nothing_half_written(tmp_path, sig, mode):
    delay = random.Random(f"{sig.name}-{mode}").uniform(0.0, 0.3)  # a different moment of the write loop per case
    child, seconds = _preempt(tmp_path, sig, mode, delay)
    stderr = child.stderr.read()
    assert child.returncode == PREEMPTED_EXIT, stderr
    assert seconds < 5  # at once, even in the middle of a 600 s call
    log = (tmp_path / "job.log").read_text()
    assert f"WARNING cotscale.preempt preempted by signal {sig.name}, will resume from the request cache in " \
           f"{tmp_path / 'cache'}\n" in log
    assert "Traceback" not in stderr
    assert (tmp_path / "finally-ran").read_text() == "yes"  # the code around the block unwound normally
    # the output written atomically (it exists from the first chunk on) is complete
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["values"] == list(range(VALUES))
    # the request cache reopens with whole chunks only, each answer as written
    cache = RequestCache(tmp_path / "cache", FINGERPRINT)
    chunks = {key.split("-")[0] for key in cache.entries}
    assert len(chunks) >= 3 and len(cache.entries) == CHUNK * len(chunks)
    for key, value in cache.entries.items():
        chunk, i = map(int, key.split("-"))
        assert value["value"] == chunk * 1000 + i


def test_handlers_are_restored_and_the_main_thread_is_required(tmp_path):
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    with exit_on_preemption(tmp_path):
        assert signal.getsignal(signal.SIGTERM) is not before[signal.SIGTERM]
    assert {sig: signal.getsignal(sig) for sig in before} == before
    with pytest.raises(ValueError), exit_on_preemption(tmp_path):
        raise ValueError("another error passes through")
    assert {sig: signal.getsignal(sig) for sig in before} == before
    errors = []

    def worker():
        try:
            with exit_on_preemption(tmp_path):
                pass
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert errors and "main thread" in errors[0]


# ------------------------------------------------------------------------------------------------- out of memory
@pytest.mark.parametrize(("configured", "attempt", "expected"), [
    (8, 1, 8), (8, 2, 4), (8, 3, 2), (8, 4, 1), (8, 9, 1), (7, 2, 3), (1, 2, 1), (64, 3, 16),
    ("auto", 1, "auto"), ("auto", 3, "auto"), ("auto:4", 2, "auto:4"),
])
def test_batch_size_halves_per_retry(configured, attempt, expected):
    assert batch_size_for_attempt(configured, attempt) == expected


def test_batch_size_needs_an_attempt_from_one():
    with pytest.raises(ValueError, match="attempt"):
        batch_size_for_attempt(8, 0)


ALLOCATE = """
import json, sys
import torch
from cotscale.evaluate import _is_out_of_memory

print(sum(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmSize:")), flush=True)
sys.stdin.readline()  # the test sets the memory limit now
small = torch.ones(1 << 18)  # 1 MiB fits under the limit
try:
    if sys.argv[1] == "torch":
        big = torch.ones(1 << 30, dtype=torch.uint8)  # 1 GiB
    else:
        big = bytearray(1 << 30)
    print(json.dumps({"allocated": True}))
except BaseException as exc:
    print(json.dumps({"allocated": False, "type": type(exc).__name__, "message": str(exc)[:200],
                      "out_of_memory": _is_out_of_memory(exc), "small_sum": float(small.sum())}))
"""


@pytest.mark.parametrize(("allocator", "error"), [("torch", "RuntimeError"), ("python", "MemoryError")])
def test_a_real_allocation_failure_is_recognised_as_out_of_memory(allocator, error):
    """The limit: the child's address space as it is after importing torch, plus 256 MiB; then 1 GiB is asked for."""
    child = subprocess.Popen([sys.executable, "-c", ALLOCATE, allocator], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        vm_kib = int(child.stdout.readline())
        limit = vm_kib * 1024 + (256 << 20)
        resource.prlimit(child.pid, resource.RLIMIT_AS, (limit, limit))
        out, err = child.communicate("go\n", timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["allocated"] is False and result["type"] == error, result
    assert result["out_of_memory"] is True, result
    assert result["small_sum"] == float(1 << 18)

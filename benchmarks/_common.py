"""Helpers shared by the benchmark scripts: timed subprocesses (wall and CPU seconds), medians, machine load."""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
sys.path.insert(0, str(ROOT / "src"))  # this checkout's cotscale (paths and names from cotscale.contract)
PAPER = ROOT.parent / "shared" / "paper"  # the paper's published outputs (not in the repository)


def add_quick(ap) -> None:
    """--quick: one round on the smallest inputs, so CI (.ci/run, `make bench-quick`) checks that the script still
    runs and that its premises hold; the figures in benchmarks/README.md come from the full mode."""
    ap.add_argument("--quick", action="store_true",
                    help="one round, smallest inputs: check the script runs and its premises hold (CI)")


def premise(ok: bool, message: str) -> None:
    """A premise of the measurement that does not hold: the numbers would mean nothing, so the script fails."""
    if not ok:
        raise SystemExit(f"broken premise: {message}")


def timed(cmd: list[str], cwd: str | Path | None = None, env: dict | None = None, check: bool = True,
          timeout: float | None = None) -> dict:
    """Run `cmd`; wall seconds, CPU seconds (user + sys of the child and its children), peak RSS (MB) and output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return {
        "wall_s": wall,
        "cpu_s": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
        # ru_maxrss of RUSAGE_CHILDREN is the largest child so far, not this one: only meaningful when it grows
        "maxrss_children_mb": after.ru_maxrss / 1024,
        "returncode": proc.returncode,
        "stdout": proc.stdout,
        "stderr": proc.stderr,
    }


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def load_line() -> str:
    """Load averages and core count, printed beside every figure: the benchmark machine is shared."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def offline_env(**extra: str) -> dict:
    env = dict(os.environ)
    env.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "PYTHONHASHSEED": "0", **extra})
    return env


# The SLURM executor plugin (requirements/cpu.txt installs it) runs `scontrol show config` while Snakemake builds its
# command line, i.e. on every `snakemake` call. On a host with SLURM client tools but no reachable controller (this
# one after .ci/slurm.sh stop) that call blocks until its timeout, ~9 s. Launching Snakemake through NO_SCONTROL makes
# that one call fail at once, as on a host without SLURM tools; the benchmarks report both.
NO_SCONTROL = (
    "import subprocess, sys\n"
    "real = subprocess.check_output\n"
    "def check_output(cmd, *args, **kwargs):\n"
    "    if list(cmd)[:3] == ['scontrol', 'show', 'config']:\n"
    "        raise FileNotFoundError('scontrol (skipped by the benchmark)')\n"
    "    return real(cmd, *args, **kwargs)\n"
    "subprocess.check_output = check_output\n"
    "sys.argv = ['snakemake', *sys.argv[1:]]\n"
    "from snakemake.cli import main\n"
    "main()\n"
)


def slurm_stall_possible() -> bool:
    return importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None and shutil.which("scontrol") is not None


def scontrol_seconds() -> float | None:
    """Wall seconds of `scontrol show config` (None without SLURM client tools), as the SLURM plugin runs it."""
    if shutil.which("scontrol") is None:
        return None
    start = time.perf_counter()
    timed(["scontrol", "show", "config"], check=False, timeout=60)
    return time.perf_counter() - start


def save_json(path: Path | None, result: dict) -> None:
    """Keep a run's numbers (per round and medians) when --json is given."""
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=2) + "\n")


def build_demo_llama(folder: Path, steps: int | None = None) -> Path:
    """Train the demo's tinyllama-l (config/demo.yaml) into `folder` (`steps`: fewer, for a quick mode); returns its
    model directory."""
    import yaml

    from cotscale.demo_models import build_demo_model

    spec = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["models"]["tinyllama-l"]["demo"]
    build_demo_model(spec, {"main": steps or spec["steps"]}, folder)
    return folder / "main"


def one_model_config(model_dir: Path, **settings) -> dict:
    """config/demo.yaml with `model_dir` as its only model "m" (tinyllama-l's N and D), every strategy open to it,
    and `settings` (device, dtype, limit, ...) on top; `data_parallel` goes to the model."""
    import yaml

    from cotscale.config import load_config

    raw = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    spec = raw["models"]["tinyllama-l"]
    model = {"hf_id": str(model_dir), **{k: spec[k] for k in ("family", "params", "train_tokens")},
             "data_parallel": settings.pop("data_parallel", 1)}
    raw.update(task_data=str(ROOT / raw["task_data"]), models={"m": model}, **settings)
    for strategy in raw["strategies"].values():
        strategy.pop("models", None)
    return load_config(raw)

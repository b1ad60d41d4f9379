"""Compute nodes without internet: fetch every model revision and benchmark dataset into the HF cache first.

`snakemake prefetch` (rule prefetch, run on the submitting host, which has internet) downloads each configured
model revision with `huggingface_hub.snapshot_download` and loads each configured lm-eval task the way an
evaluation job does (same task definitions, same `datasets.load_dataset` arguments), which fills the datasets cache.
With `hf_offline: true` evaluation jobs then run with HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1; a model that is
not in the cache makes such a job stop at once with an `OfflineCacheMiss` that names the model and this rule.

Compute nodes must see the same cache: put HF_HOME (or HF_HUB_CACHE and HF_DATASETS_CACHE) on a shared filesystem.
Module-level imports stay light: Snakemake imports this module when it parses the workflow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from pathlib import Path

from cotscale.config import evaluation_jobs, lm_eval_task

log = logging.getLogger(__name__)

# Weights in these formats are skipped when the repository also has safetensors (what transformers and vLLM load).
_LEGACY_WEIGHTS = ["*.bin", "*.pth", "*.pt", "*.msgpack", "*.h5", "*.ot", "*.onnx", "*.gguf", "original/*", "onnx/*"]


class OfflineCacheMiss(RuntimeError):
    """An evaluation under hf_offline needs a model or dataset that is not in the Hugging Face cache."""


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_offline() -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def _hf_home() -> str:
    return os.environ.get("HF_HUB_CACHE") or os.environ.get("HF_HOME") or "~/.cache/huggingface"


def is_remote(model: dict) -> bool:
    """A Hugging Face repository id (not a demo model, not a local directory)."""
    return not model["demo"] and not Path(os.path.expanduser(model["pretrained"])).exists()


def prefetch_targets(config: dict) -> dict:
    """What `prefetch` fetches: {"models": [[hf_id, revision], ...], "tasks": [lm-eval task, ...]} (sorted, unique).

    Also the rule's params, so that adding a model or task makes `snakemake prefetch` run again.
    """
    jobs = evaluation_jobs(config)
    wanted = {model for model, _, _ in jobs}
    models = sorted({(m["hf_id"], m["revision"]) for key, m in config["models"].items() if key in wanted and is_remote(m)})
    tasks = sorted({lm_eval_task(config, strategy, task) for _, strategy, task in jobs})
    return {"models": [list(m) for m in models], "tasks": tasks}


def _ignore_patterns(repo_id: str, revision: str) -> list[str] | None:
    """Skip duplicate legacy weights when the repository has safetensors; None keeps everything."""
    from huggingface_hub import list_repo_files

    files = list_repo_files(repo_id, revision=revision)
    return _LEGACY_WEIGHTS if any(f.endswith(".safetensors") for f in files) else None


def fetch_model(repo_id: str, revision: str) -> dict:
    from huggingface_hub import snapshot_download

    started = time.monotonic()
    log.info("model %s@%s ...", repo_id, revision)
    try:
        ignore = None if hub_offline() else _ignore_patterns(repo_id, revision)
        path = Path(snapshot_download(repo_id, revision=revision, ignore_patterns=ignore))
    except Exception as exc:
        raise RuntimeError(f"cannot fetch model {repo_id} at revision {revision}: {type(exc).__name__}: {exc}") from exc
    log.info("model %s@%s -> %s (%.0f s)", repo_id, revision, path, time.monotonic() - started)
    return {"hf_id": repo_id, "revision": revision, "commit": path.name, "path": str(path)}


def fetch_task(config: dict, lm_task: str) -> dict:
    """Build the task as an evaluation job does; building it loads (and so caches) its datasets."""
    from cotscale.tasks import evaluation_task_manager

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="cotscale-prefetch-") as scratch:
        manager = evaluation_task_manager(config, lm_task, Path(scratch))
        leaves = list(manager.load([lm_task])["tasks"].values())
    datasets = sorted({(t.config.dataset_path, t.config.dataset_name) for t in leaves}, key=str)
    log.info("task %s: %d subtask(s), datasets %s (%.0f s)", lm_task, len(leaves), datasets, time.monotonic() - started)
    return {"task": lm_task, "subtasks": len(leaves), "datasets": [list(d) for d in datasets]}


def prefetch(config: dict, manifest: str | Path) -> dict:
    """Download every model revision and task dataset `config` evaluates; write a JSON manifest of what is cached."""
    from cotscale.io import write_json

    targets = prefetch_targets(config)
    log.info("prefetching %d model revision(s) and %d task(s) into %s%s", len(targets["models"]),
             len(targets["tasks"]), _hf_home(), " (offline: only checking the cache)" if hub_offline() else "")
    result = {
        "models": [fetch_model(repo_id, revision) for repo_id, revision in targets["models"]],
        "tasks": [fetch_task(config, task) for task in targets["tasks"]],
        "hf_home": _hf_home(),
    }
    write_json(Path(manifest), result)
    return result


# --------------------------------------------------------------------------------------- offline evaluation jobs
def _prefetch_advice() -> str:
    return (
        f"Run `snakemake prefetch` (with the same --configfile) on a machine with internet access and the same HF_HOME "
        f"(now {_hf_home()}) first, or set hf_offline: false."
    )


def check_model_cached(model: dict) -> None:
    """Under HF_HUB_OFFLINE, fail at once (not after minutes of loading) if the model revision is not cached."""
    if not hub_offline() or not is_remote(model):
        return
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(model["hf_id"], "config.json", revision=model["revision"]), str):
        raise OfflineCacheMiss(
            f"model {model['key']!r} ({model['hf_id']} at revision {model['revision']}) is not in the Hugging Face "
            f"cache, and hf_offline: true forbids downloading it. {_prefetch_advice()}"
        )


_OFFLINE_MARKERS = ("OfflineModeIsEnabled", "outgoing traffic has been disabled", "couldn't find them in the cached",
                    "offline mode is enabled", "LocalEntryNotFoundError")


def _is_cache_miss(exc: BaseException) -> bool:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return True
        if any(marker in f"{type(exc).__name__}: {exc}" for marker in _OFFLINE_MARKERS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@contextlib.contextmanager
def explain_offline_errors(what: str):
    """Re-raise an offline cache miss inside the block as OfflineCacheMiss naming `what` and the prefetch rule."""
    try:
        yield
    except Exception as exc:
        offline = hub_offline() or _truthy(os.environ.get("HF_DATASETS_OFFLINE"))
        if offline and _is_cache_miss(exc):
            raise OfflineCacheMiss(
                f"{what} is not in the Hugging Face cache, and hf_offline: true forbids downloading it "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). {_prefetch_advice()}"
            ) from exc
        raise

"""Compute nodes without internet: fetch every model revision and benchmark dataset into the HF cache first.

`snakemake prefetch` (rule prefetch, run on the submitting host, which has internet) downloads each configured
model revision with `huggingface_hub.snapshot_download` and loads each configured lm-eval task the way an
evaluation job does (same task definitions, same `datasets.load_dataset` arguments), which fills the datasets cache.
With `hf_offline: true` evaluation jobs then run with HF_HUB_OFFLINE=1 / HF_DATASETS_OFFLINE=1; a model that is
not in the cache makes such a job stop at once with an `OfflineCacheMiss` that names the model and this rule. "In the
cache" means complete (`missing_files`): every weight shard the snapshot's index lists (or its single weights file),
config.json and the tokenizer files, for the pinned revision. A partial snapshot (an interrupted download, or one that
only ever fetched config.json) fails the same way, naming the missing files, instead of minutes later in the loader.

Compute nodes must see the same cache: put HF_HOME (or HF_HUB_CACHE and HF_DATASETS_CACHE) on a shared filesystem.
Module-level imports stay light: Snakemake imports this module when it parses the workflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from cotscale.config import evaluation_jobs, lm_eval_task

log = logging.getLogger(__name__)

# Weights in these formats are skipped when the repository also has safetensors (what transformers and vLLM load).
_LEGACY_WEIGHTS = ["*.bin", "*.pth", "*.pt", "*.msgpack", "*.h5", "*.ot", "*.onnx", "*.gguf", "original/*", "onnx/*"]


# What a snapshot needs to be evaluated, in the order transformers and vLLM look: weights as an index of shards or one
# file (safetensors first: when a repository has them, prefetch skips the legacy formats), and a tokenizer.
WEIGHT_FORMATS = (("model.safetensors.index.json", "model.safetensors"),
                  ("pytorch_model.bin.index.json", "pytorch_model.bin"))
# transformers writes tokenizer_config.json with every tokenizer it saves; the vocabulary is one of these sets.
TOKENIZER_CONFIG = "tokenizer_config.json"
TOKENIZER_VOCABULARIES = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"), ("vocab.txt",))


class OfflineCacheMiss(RuntimeError):
    """An evaluation under hf_offline needs a model or dataset that is not (or not completely) in the HF cache."""


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


def missing_files(snapshot: str | Path) -> list[str]:
    """The files an evaluation needs that `snapshot` (a snapshots/<commit>/ folder) lacks, in snapshot-relative names.

    Needed: config.json; every shard named in the weights index's weight_map, or the single weights file, of the
    first format in WEIGHT_FORMATS whose index or file the snapshot has; tokenizer_config.json and one vocabulary set.
    A dangling link (its blob never finished downloading) counts as missing.
    """
    folder = Path(snapshot)
    missing = [] if (folder / "config.json").is_file() else ["config.json"]
    for index, single in WEIGHT_FORMATS:
        if (folder / index).is_file():
            try:
                shards = sorted(set(json.loads((folder / index).read_text(encoding="utf-8"))["weight_map"].values()))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                missing.append(f"{index} (unreadable: {type(exc).__name__}: {exc})")
                break
            missing += [shard for shard in shards if not (folder / shard).is_file()]
            break
        if (folder / single).is_file():
            break
    else:
        missing.append(f"{WEIGHT_FORMATS[0][1]} (or {WEIGHT_FORMATS[0][0]} and its shards)")
    if not (folder / TOKENIZER_CONFIG).is_file():
        missing.append(TOKENIZER_CONFIG)
    if not any(all((folder / name).is_file() for name in names) for names in TOKENIZER_VOCABULARIES):
        missing.append(" or ".join(" + ".join(names) for names in TOKENIZER_VOCABULARIES))
    return missing


def _check_complete(label: str, snapshot: Path, advice: str | None = None) -> None:
    missing = missing_files(snapshot)
    if missing:
        raise OfflineCacheMiss(
            f"{label}: the cached snapshot {snapshot} is incomplete, missing {len(missing)} file(s) an evaluation "
            f"needs: {', '.join(missing)}. {advice or _prefetch_advice()}"
        )


def cached_snapshot(repo_id: str, revision: str, cache_dir: str | Path | None = None, label: str | None = None) -> Path:
    """The complete cached snapshot of `repo_id` at `revision` (a branch, tag or commit; refs/ resolve it), without
    any network call; otherwise OfflineCacheMiss naming what is absent, prefixed with `label` (default: the repository
    and revision). `cache_dir`: the hub cache (default: huggingface_hub's)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    label = label or f"{repo_id} at revision {revision}"
    try:  # huggingface_hub also checks the snapshot against the file listing it cached at download time, if any
        path = Path(snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True,
                                      ignore_patterns=_LEGACY_WEIGHTS))
    except LocalEntryNotFoundError as exc:
        partial = getattr(exc, "snapshot_path", None)
        if partial:
            _check_complete(label, Path(partial))
        what = f"incomplete ({exc})" if partial else "not in the Hugging Face cache"
        raise OfflineCacheMiss(f"{label} is {what}, and hf_offline: true forbids downloading it. "
                               f"{_prefetch_advice()}") from exc
    _check_complete(label, path)
    return path


def fetch_model(repo_id: str, revision: str) -> dict:
    """Download the revision (offline: only find it in the cache); either way the snapshot must be complete."""
    from huggingface_hub import snapshot_download

    started = time.monotonic()
    log.info("model %s@%s ...", repo_id, revision)
    if hub_offline():
        path = cached_snapshot(repo_id, revision)  # the cache of the submitting host, as downloads would fill it
    else:
        try:
            ignore = _ignore_patterns(repo_id, revision)
            path = Path(snapshot_download(repo_id, revision=revision, ignore_patterns=ignore))
        except Exception as exc:
            raise RuntimeError(
                f"cannot fetch model {repo_id} at revision {revision}: {type(exc).__name__}: {exc}") from exc
        _check_complete(f"{repo_id} at revision {revision}", path, advice=(
            "The repository has no such files at that revision: pin one that does (models.<name>.revision)."))
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


def check_model_cached(model: dict, cache_dir: str | Path | None = None) -> None:
    """Under HF_HUB_OFFLINE, fail at once (not after minutes of loading) unless the model revision is completely
    cached (cached_snapshot)."""
    if not hub_offline() or not is_remote(model):
        return
    cached_snapshot(model["hf_id"], model["revision"], cache_dir,
                    label=f"model {model['key']!r} ({model['hf_id']} at revision {model['revision']})")


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

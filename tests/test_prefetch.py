"""Offline compute nodes: what `snakemake prefetch` fetches, and evaluation jobs under `hf_offline: true`.

Nothing here reaches the network: downloads are faked, and jobs run with HF_ENDPOINT pointing at a closed port, so
any attempt to go online would fail at once instead of passing silently. Cached snapshots are real folders in the
Hugging Face cache layout (blobs/, snapshots/<commit>/ links, refs/<revision>), read by huggingface_hub itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cotscale.config import load_config
from cotscale.prefetch import OfflineCacheMiss, check_model_cached, explain_offline_errors, prefetch, prefetch_targets
from _demo import reduced_demo

UNCACHED = {"hf_id": "cotscale-test/never-downloaded", "family": "nowhere", "params": 1.0e6, "train_tokens": 1.0e6}
DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: connection refused


SHARDED = "cotscale-test/sharded"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
SHARDS = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]


def snapshot_files() -> dict[str, bytes]:
    """A sharded safetensors checkpoint as a repository holds it after prefetch: both indexes (json files are never
    skipped), the safetensors shards, no legacy .bin shards (skipped because safetensors exist), a fast tokenizer."""
    weight_map = {"embed.weight": SHARDS[0], "layers.0.weight": SHARDS[0], "layers.1.weight": SHARDS[1]}
    bin_map = {name: shard.replace(".safetensors", ".bin").replace("model-", "pytorch_model-")
               for name, shard in weight_map.items()}
    return {
        "config.json": b'{"model_type": "llama"}',
        "model.safetensors.index.json": json.dumps({"metadata": {"total_size": 24}, "weight_map": weight_map}).encode(),
        "pytorch_model.bin.index.json": json.dumps({"metadata": {"total_size": 24}, "weight_map": bin_map}).encode(),
        SHARDS[0]: b"\0" * 16,
        SHARDS[1]: b"\1" * 8,
        "tokenizer.json": b'{"version": "1.0"}',
        "tokenizer_config.json": b'{"model_max_length": 128}',
    }


def write_hf_snapshot(cache: Path, repo_id: str, files: dict[str, bytes], revision: str = "main",
                      commit: str = COMMIT) -> Path:
    """The Hugging Face cache layout: content-addressed blobs, snapshots/<commit>/<file> links to them, and
    refs/<revision> holding the commit."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(commit)
    return snapshot


def hub_model(revision: str = "main") -> dict:
    return {"key": "sharded", "name": "sharded", "hf_id": SHARDED, "pretrained": SHARDED, "revision": revision,
            "demo": False}


def small_demo(root: Path, **models) -> dict:
    config = reduced_demo(root, tasks=["arc_challenge"], models=["mini-llama"])
    config["models"].update(models)
    return config


def test_targets_list_each_model_revision_and_task_once(root):
    paper = load_config(root / "config" / "config.yaml")
    targets = prefetch_targets(paper)
    models = {tuple(m) for m in targets["models"]}
    assert len(models) == len(targets["models"]) == len(paper["models"])
    assert ("allenai/OLMo-1B-0724-hf", "step5000-tokens10B") in models
    assert {"arc_challenge", "gsm8k", "mmlu", "truthfulqa_mc1"} <= set(targets["tasks"])
    demo = load_config(root / "config" / "demo.yaml")
    assert prefetch_targets(demo)["models"] == []  # demo models are built locally


def test_prefetch_downloads_models_and_loads_tasks(root, tmp_path, monkeypatch):
    import huggingface_hub

    calls = []

    def fake_snapshot(repo_id, revision=None, ignore_patterns=None, **kwargs):
        calls.append((repo_id, revision, ignore_patterns))
        return str(write_hf_snapshot(tmp_path / "hub", repo_id, snapshot_files(), revision, commit="0123abcd"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(huggingface_hub, "list_repo_files", lambda repo, revision=None: ["config.json", "model.safetensors", "pytorch_model.bin"])
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    config = load_config(small_demo(root, hub=UNCACHED))
    manifest = prefetch(config, tmp_path / "prefetch.json")
    assert len(calls) == 1 and calls[0][:2] == ("cotscale-test/never-downloaded", "main")
    assert "*.bin" in calls[0][2]  # safetensors present: the duplicate legacy weights are skipped
    assert manifest["models"][0]["commit"] == "0123abcd"
    # the task was built from the demo's local files, as an evaluation job builds it
    assert manifest["tasks"] == [{"task": "arc_challenge", "subtasks": 1, "datasets": [["json", None]]}]
    assert json.loads((tmp_path / "prefetch.json").read_text()) == manifest


def test_offline_cache_misses_name_what_is_missing(monkeypatch):
    from transformers import AutoConfig

    with pytest.raises(OfflineCacheMiss, match=r"model 'x'.*snakemake prefetch") as err:
        with explain_offline_errors("model 'x'"):
            AutoConfig.from_pretrained(UNCACHED["hf_id"])
    assert isinstance(err.value.__cause__, OSError)
    with pytest.raises(ValueError):  # other errors pass through untouched
        with explain_offline_errors("model 'x'"):
            raise ValueError("not a cache miss")


def test_uncached_model_fails_fast_before_loading(root, tmp_path):
    from cotscale.evaluate import run_evaluation

    config = load_config(small_demo(root, hub=UNCACHED))
    started = time.monotonic()
    with pytest.raises(OfflineCacheMiss, match=r"'hub' \(cotscale-test/never-downloaded at revision main\).*prefetch"):
        run_evaluation(config, "hub", "standard", "arc_challenge", tmp_path)
    assert time.monotonic() - started < 5


@pytest.mark.slow
def test_offline_jobs_through_snakemake(root, tmp_path):
    """hf_offline: true alone (no HF_*_OFFLINE in the environment) keeps jobs off the network: the demo model's
    evaluation works, the uncached model's job stops with the clear message, and the prefetch rule runs."""
    config = small_demo(root, hub=UNCACHED)
    config["hf_offline"] = True
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env["HF_ENDPOINT"] = DEAD_ENDPOINT
    targets = [f"results/evals/{m}/standard/arc_challenge/results.json" for m in ("mini-llama", "hub")]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path), "--cores", "2",
           "--keep-going", "--configfile", str(tmp_path / "config.yaml"), "--", "results/prefetch.json", *targets]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode != 0
    assert (tmp_path / targets[0]).exists(), run.stderr[-4000:]
    assert not (tmp_path / targets[1]).exists()
    log = (tmp_path / "logs" / "evaluate" / "hub" / "standard.log").read_text()
    assert "OfflineCacheMiss" in log and "'hub' (cotscale-test/never-downloaded" in log and "snakemake prefetch" in log
    # prefetch is the one rule that may go online: here it only finds the uncached model missing
    assert not (tmp_path / "results" / "prefetch.json").exists()
    assert "cotscale-test/never-downloaded" in (tmp_path / "logs" / "prefetch.log").read_text()


# ------------------------------------------------------------------------------------ complete and partial snapshots
def offline_check_error(cache: Path, revision: str = "main") -> str:
    started = time.monotonic()
    with pytest.raises(OfflineCacheMiss) as err:
        check_model_cached(hub_model(revision), cache_dir=cache)
    assert time.monotonic() - started < 5  # fails in seconds, before any model loading
    message = str(err.value)
    assert f"model 'sharded' ({SHARDED} at revision {revision})" in message and "snakemake prefetch" in message
    return message


def test_complete_snapshot_passes_by_branch_and_by_commit(tmp_path):
    write_hf_snapshot(tmp_path, SHARDED, snapshot_files())
    check_model_cached(hub_model("main"), cache_dir=tmp_path)  # refs/main -> the commit
    check_model_cached(hub_model(COMMIT), cache_dir=tmp_path)  # the commit itself
    assert "not in the Hugging Face cache" in offline_check_error(tmp_path, "step1000")  # another revision


# what the test removes -> the file names the error must list (written down by hand, not computed by the code)
PARTIAL = {
    "second shard": ([SHARDS[1]], [SHARDS[1]]),
    "only config.json": ([n for n in snapshot_files() if n != "config.json"],
                         ["model.safetensors (or model.safetensors.index.json and its shards)", "tokenizer_config.json",
                          "tokenizer.json or tokenizer.model or vocab.json + merges.txt or vocab.txt"]),
    "tokenizer": (["tokenizer.json", "tokenizer_config.json"],
                  ["tokenizer_config.json",
                   "tokenizer.json or tokenizer.model or vocab.json + merges.txt or vocab.txt"]),
    "config": (["config.json"], ["config.json"]),
}


@pytest.mark.parametrize("case", sorted(PARTIAL))
def test_partial_snapshot_fails_fast_naming_the_missing_files(tmp_path, case):
    removed, named = PARTIAL[case]
    snapshot = write_hf_snapshot(tmp_path, SHARDED, snapshot_files())
    for name in removed:
        (snapshot / name).unlink()
    message = offline_check_error(tmp_path)
    assert f"missing {len(named)} file(s) an evaluation needs: {', '.join(named)}." in message, message
    for name in set(snapshot_files()) - set(removed):
        assert f" {name}," not in message and f" {name}." not in message  # present files are not blamed


def test_a_shard_whose_download_never_finished_is_missing(tmp_path):
    """snapshot_download links a file only once its blob is complete; a blob deleted under a link (or a link copied
    without its blob) leaves a dangling link, which is not a file."""
    snapshot = write_hf_snapshot(tmp_path, SHARDED, snapshot_files())
    (snapshot / SHARDS[0]).resolve().unlink()
    assert (snapshot / SHARDS[0]).is_symlink()
    assert f"needs: {SHARDS[0]}." in offline_check_error(tmp_path)


def test_single_file_and_legacy_checkpoints(tmp_path):
    files = {k: v for k, v in snapshot_files().items() if not k.startswith("model")}  # the .bin index, no shards
    write_hf_snapshot(tmp_path, SHARDED, {**files, "model.safetensors": b"\0" * 8})
    check_model_cached(hub_model(), cache_dir=tmp_path)  # one safetensors file: the .bin index is not consulted
    legacy = tmp_path / "legacy"
    write_hf_snapshot(legacy, SHARDED, files)  # only .bin weights, index without its shards
    assert "needs: pytorch_model-00001-of-00002.bin, pytorch_model-00002-of-00002.bin." in offline_check_error(legacy)
    truncated = tmp_path / "truncated"
    write_hf_snapshot(truncated, SHARDED, {**snapshot_files(), "model.safetensors.index.json": b'{"weight_map": {"a'})
    assert "model.safetensors.index.json (unreadable: JSONDecodeError" in offline_check_error(truncated)


def test_huggingface_hubs_own_file_listing_is_honoured(tmp_path):
    """A real snapshot_download caches the repository's file listing (trees/<commit>.json); a snapshot lacking a
    listed file is incomplete even when it has what missing_files needs, while skipped legacy weights are not missed."""
    snapshot = write_hf_snapshot(tmp_path, SHARDED, snapshot_files())
    listed = [*snapshot_files(), "pytorch_model-00001-of-00002.bin", "generation_config.json"]
    trees = snapshot.parents[1] / "trees"
    trees.mkdir()
    (trees / f"{COMMIT}.json").write_text(json.dumps(
        {"format_version": 1, "files": {name: {"size": 1, "blob_id": "0" * 40} for name in listed}}))
    message = offline_check_error(tmp_path)
    assert "is incomplete" in message and "generation_config.json" in message and ".bin" not in message
    write_hf_snapshot(tmp_path / "again", SHARDED, {**snapshot_files(), "generation_config.json": b"{}"})
    (tmp_path / "again" / f"models--{SHARDED.replace('/', '--')}" / "trees").symlink_to(trees)
    check_model_cached(hub_model(), cache_dir=tmp_path / "again")


def test_offline_prefetch_verifies_the_cache_it_finds(root, tmp_path, monkeypatch):
    """`snakemake prefetch` under HF_HUB_OFFLINE only checks the cache: a partial snapshot fails it (no manifest);
    the completed one is listed with its commit."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = write_hf_snapshot(tmp_path / "hub", SHARDED, {"config.json": snapshot_files()["config.json"]})
    config = load_config(small_demo(root, hub={**UNCACHED, "hf_id": SHARDED}))
    with pytest.raises(OfflineCacheMiss, match=rf"{SHARDED} at revision main: .*incomplete.*tokenizer_config.json.*"
                                               rf"snakemake prefetch"):
        prefetch(config, tmp_path / "prefetch.json")
    assert not (tmp_path / "prefetch.json").exists()
    (snapshot / "config.json").unlink()
    write_hf_snapshot(tmp_path / "hub", SHARDED, snapshot_files())
    manifest = prefetch(config, tmp_path / "prefetch.json")
    assert manifest["models"] == [{"hf_id": SHARDED, "revision": "main", "commit": COMMIT, "path": str(snapshot)}]

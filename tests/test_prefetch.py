"""Offline compute nodes: what `snakemake prefetch` fetches, and evaluation jobs under `hf_offline: true`.

Nothing here reaches the network: downloads are faked, and jobs run with HF_ENDPOINT pointing at a closed port, so
any attempt to go online would fail at once instead of passing silently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from cotscale.config import load_config
from cotscale.prefetch import OfflineCacheMiss, explain_offline_errors, prefetch, prefetch_targets
from _demo import reduced_demo

UNCACHED = {"hf_id": "cotscale-test/never-downloaded", "family": "nowhere", "params": 1.0e6, "train_tokens": 1.0e6}
DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: connection refused


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
        path = tmp_path / "hub" / repo_id.replace("/", "--") / "snapshots" / "0123abcd"
        path.mkdir(parents=True)
        return str(path)

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

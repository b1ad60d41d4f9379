"""End to end: a reduced demo through real Snakemake, real lm-eval and locally trained models.

The tables are checked against the per-sample records they were computed from, so a wrong join or metric in the
aggregation fails here, not in a figure.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from cotscale.demo_models import count_params, train_tokens

SPEC = {"hidden_size": 64, "num_heads": 2, "intermediate_size": 128, "vocab_size": 512, "seq_len": 64, "batch_size": 4, "lr": 2.0e-3}
TASKS = ["arc_challenge", "mmlu", "gsm8k"]


def reduced_demo(root: Path) -> dict:
    llama = {"arch": "llama", "num_layers": 1, **SPEC, "steps": 20}
    neox = {"arch": "gpt_neox", "num_layers": 2, **SPEC, "steps": {"step10": 10, "step30": 30}}
    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    return {
        **{k: demo[k] for k in ("seed", "batch_size", "backend", "dtype", "device", "hf_offline")},
        "task_data": str(root / "config" / "tasks" / "demo_data"),
        "limit": 6,
        "tasks": {t: yaml.safe_load((root / "config" / "tasks" / "benchmarks.yaml").read_text())[t] for t in TASKS},
        "strategies": {"standard": demo["strategies"]["standard"]},
        "analysis": {"baseline": "standard", "cot": "standard", "llh": "standard"},
        "models": {
            "mini-llama": {"family": "minillama", "params": count_params(llama), "train_tokens": train_tokens(llama, 20), "demo": llama},
            "mini-neox": {
                "family": "minineox",
                "params": count_params(neox),
                "checkpoints": {rev: train_tokens(neox, steps) for rev, steps in neox["steps"].items()},
                "demo": neox,
            },
        },
    }


def snakemake(root: Path, workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(workdir), "--cores", "2",
           "--configfile", str(workdir / "config.yaml"), "--", *targets]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def demo_run(root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    (workdir / "config.yaml").write_text(yaml.safe_dump(reduced_demo(root)))
    run = snakemake(root, workdir, "aggregate")
    assert run.returncode == 0, run.stderr[-4000:]
    return workdir


def samples(workdir: Path, model: str, task: str) -> list[dict]:
    with gzip.open(workdir / "results" / "evals" / model / "standard" / task / "samples.jsonl.gz", "rt") as fh:
        return [json.loads(line) for line in fh]


@pytest.mark.slow
def test_tables_match_the_samples(demo_run):
    bench = pd.read_csv(demo_run / "results" / "tables" / "benchmarks.csv").set_index("model")
    assert sorted(bench.index) == ["mini-llama", "mini-neox@step10", "mini-neox@step30"]
    for model in bench.index:
        arc = samples(demo_run, model, "arc_challenge")
        assert len(arc) == 6
        assert bench.loc[model, "arc_challenge"] == pytest.approx(sum(s["acc"] for s in arc) / len(arc))
        mmlu = samples(demo_run, model, "mmlu")  # 3 subjects × 6 documents, pooled by size as lm-eval does
        assert len(mmlu) == 18
        assert bench.loc[model, "mmlu"] == pytest.approx(sum(s["acc"] for s in mmlu) / len(mmlu))
        gsm = [s for s in samples(demo_run, model, "gsm8k") if s["filter"] == "flexible-extract"]
        assert bench.loc[model, "gsm8k"] == pytest.approx(sum(s["exact_match"] for s in gsm) / len(gsm))
        # the overall score is the mean of the configured benchmarks; the absent ones make it NaN, not a wrong number
        assert bench.loc[model, "n_benchmarks"] == 3 and pd.isna(bench.loc[model, "overall"])
    neox = bench.loc["mini-neox@step30"]
    assert neox["train_flops"] == 6 * neox["N"] * neox["D"] and neox["D"] == 30 * 4 * 64


@pytest.mark.slow
def test_results_record_provenance_and_usage(demo_run):
    out = demo_run / "results" / "evals" / "mini-neox@step10" / "standard" / "arc_challenge"
    meta = json.loads((out / "results.json").read_text())["cotscale"]
    assert (meta["revision"], meta["D"], meta["seed"], meta["backend"]) == ("step10", 10 * 4 * 64, 1234, "hf")
    assert {"lm_eval", "torch", "transformers"} <= set(meta["versions"])
    with gzip.open(out / "usage.jsonl.gz", "rt") as fh:
        usage = [json.loads(line) for line in fh]
    assert len({u["doc_id"] for u in usage}) == 6 and all(u["kind"] == "loglikelihood" for u in usage)
    tokens = pd.read_csv(demo_run / "results" / "tables" / "tokens.csv")
    row = tokens[(tokens.model == "mini-neox@step10") & (tokens.task == "arc_challenge")].iloc[0]
    assert row["requests"] == len(usage) and row["prompt_tokens"] == sum(u["prompt_tokens"] for u in usage)

"""Evaluation suites: one model load per (model revision, strategy) — or per model with `suite: model` — every job
keyed by its full spec (params), each figure pulling only its own evaluations, resume inside a suite.

Oracles: the per-task path (one fresh model load per task, `run_evaluation`) for the suite's scores and usage; the
config edit a test makes for which jobs a dry run must list; an uninterrupted run for a killed-and-resumed suite.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
import yaml

from _demo import SHARED_ENV, eval_dir, read_gz, reduced_demo, shared_config, shared_run, snakemake, write_config

from cotscale.config import load_config, suites

TIMING = ("wall_seconds", "model_load_seconds", "cache")  # the cotscale fields that measure, not define, a run
LM_EVAL_TIMING = ("date", "start_time", "end_time", "total_evaluation_time_seconds")


def _defining(results: dict) -> dict:
    """results.json without what differs between two runs of the same experiment (clocks, cache counters)."""
    out = {k: v for k, v in results.items() if k not in LM_EVAL_TIMING}
    out["cotscale"] = {k: v for k, v in results["cotscale"].items() if k not in TIMING}
    return out


def _scheduled(run_output: str) -> list[tuple[str, str, dict]]:
    """(rule, output, wildcards) of every job a dry run lists."""
    jobs = []
    for block in re.split(r"^(?=(?:local)?rule \w+:$)", run_output, flags=re.M):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        if rule is None:
            continue
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
        pairs = dict(kv.split("=", 1) for kv in wildcards.group(1).split(", ")) if wildcards else {}
        jobs.append((rule.group(1), block, pairs))
    return jobs


def grid_from_yaml(raw: dict) -> list[tuple[str, str]]:
    """(model revision, strategy) pairs of a config file, counted from its YAML by hand (not by cotscale.config): a
    model with `checkpoints:` is one revision per checkpoint; a strategy's `models:` and a model's `strategies:`
    restrict the pairs."""
    pairs = []
    for name, model in raw["models"].items():
        for revision in (model.get("checkpoints") or {None: None}):
            for strategy, spec in raw["strategies"].items():
                if name in spec.get("models", [name]) and strategy in model.get("strategies", [strategy]):
                    pairs.append((name if revision is None else f"{name}@{revision}", strategy))
    return pairs


def test_the_paper_grid_is_one_suite_per_revision_and_strategy_or_per_revision_with_the_switch(root):
    raw = yaml.safe_load((root / "config" / "config.yaml").read_text())
    pairs = grid_from_yaml(raw)
    revisions = dict.fromkeys(m for m, _ in pairs)
    config = load_config(root / "config" / "config.yaml")
    assert list(config["models"]) == list(revisions)
    assert sorted((m, names[0]) for m, names in suites(config)) == sorted(pairs)
    config["suite"] = "model"
    per_model = suites(config)
    assert {m: list(names) for m, names in per_model} == {
        m: [s for r, s in pairs if r == m] for m in revisions}


@pytest.mark.slow
def test_a_figure_target_schedules_only_the_evaluations_it_reads(root, tmp_path):
    """fig1 reads analysis.llh (standard) only; fig7 the baseline/CoT pair; fig6 no evaluation at all (with the default
    `suite: strategy`; config/demo.yaml itself evaluates per model)."""
    demo = {**yaml.safe_load((root / "config" / "demo.yaml").read_text()), "suite": "strategy"}
    write_config(tmp_path, demo)
    models = load_config(demo)["models"]
    for target, expected in (("fig1_overall_vs_train_flops", {"standard"}),
                             ("fig7_isoflop", {demo["analysis"]["baseline"], demo["analysis"]["cot"]}),
                             ("fig6_pca_loadings_ruan", set())):
        run = snakemake(root, tmp_path, target, extra=["-n"])
        assert run.returncode == 0, run.output[-3000:]
        evaluations = [w for rule, _, w in _scheduled(run.output) if rule == "evaluate"]
        assert {w["strategy"] for w in evaluations} == expected, target
        # one suite per model revision and strategy that runs it (tinythink lists only its own strategy)
        runs = [(key, s) for key, m in models.items() for s in expected
                if s in demo["models"][m["name"]].get("strategies", [s])
                and m["name"] in demo["strategies"][s].get("models", [m["name"]])]
        assert len(evaluations) == len(runs), target
        assert not any(rule.startswith("evaluate_model") for rule, _, _ in _scheduled(run.output))


@pytest.mark.slow
def test_a_config_edit_reruns_exactly_the_jobs_it_changes(root, tmp_path, tmp_path_factory):
    """After a clean run, halving hybrid_cot's max_gen_toks reruns its one suite (and the tables it feeds), not the
    `standard` suites; an edit of nothing reruns nothing."""
    work = tmp_path / "work"
    shutil.copytree(shared_run(tmp_path_factory, root), work, symlinks=True)
    same = snakemake(root, work, "analysis", extra=["-n"], env=SHARED_ENV)
    assert same.returncode == 0 and "Nothing to be done" in same.output, same.output[-2000:]

    config = shared_config(root)
    config["strategies"]["hybrid_cot"]["max_gen_toks"] = 6
    write_config(work, config)
    run = snakemake(root, work, "analysis", extra=["-n"], env=SHARED_ENV)
    assert run.returncode == 0, run.output[-3000:]
    jobs = _scheduled(run.output)
    evaluations = [w for rule, _, w in jobs if rule == "evaluate"]
    assert evaluations == [{"model": "mini-llama", "strategy": "hybrid_cot"}]
    (evaluation,) = [block for rule, block, _ in jobs if rule == "evaluate"]
    assert "Params have changed since last execution" in evaluation
    assert sorted(w.get("strategy", "") for rule, _, w in jobs if rule == "aggregate_strategy") == ["hybrid_cot"]

    # a task's metric is part of the spec of every strategy that runs the task, and of its tables
    config = shared_config(root)
    config["tasks"]["arc_challenge"]["standard"]["metric"] = "acc_norm"
    write_config(work, config)
    run = snakemake(root, work, "analysis", extra=["-n"], env=SHARED_ENV)
    evaluations = [w for rule, _, w in _scheduled(run.output) if rule == "evaluate"]
    assert len(evaluations) == 4  # 3 standard suites + mini-llama's hybrid_cot: all run arc_challenge's variant


KILL_AFTER_TASK = """
import os, signal
_after = int(os.environ.get("COTSCALE_TEST_KILL_AFTER_RESULTS", "0"))
if _after:
    import cotscale.io
    _write_json, _written = cotscale.io.write_json, []
    def write_json(path, obj):  # a node crash right after the Nth task of a suite finished
        _write_json(path, obj)
        if os.path.basename(str(path)) == "results.json":
            _written.append(path)
            if len(_written) == _after:
                os.killpg(os.getpgid(0), signal.SIGKILL)
    cotscale.io.write_json = write_json
"""


@pytest.mark.slow
def test_a_killed_suite_resumes_without_redoing_finished_tasks(root, tmp_path):
    config = reduced_demo(root, tasks=["arc_challenge", "gsm8k", "mmlu"], models=["mini-llama"])
    targets = [f"{eval_dir('mini-llama', 'standard', t)}/results.json" for t in config["tasks"]]
    reference, work = tmp_path / "reference", tmp_path / "killed"
    for folder in (reference, work):
        write_config(folder, config)
    assert snakemake(root, reference, *targets).returncode == 0
    model_dir = Path("results") / "demo_models" / "mini-llama"  # the build is not under test: reuse it
    shutil.copytree(reference / model_dir, work / model_dir)

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(KILL_AFTER_TASK)
    env = {"PYTHONPATH": f"{shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "COTSCALE_TEST_KILL_AFTER_RESULTS": "1"}
    run = snakemake(root, work, *targets, env=env, new_session=True)
    assert run.returncode == -signal.SIGKILL
    finished = work / "results" / "cache" / "mini-llama" / "standard" / "arc_challenge.complete"
    assert (finished / "results.json").exists()  # the first task is done, waiting for the suite
    assert not any((work / "results" / "evals").rglob("results.json"))

    assert snakemake(root, work, extra=["--unlock"]).returncode == 0
    run = snakemake(root, work, *targets)
    assert run.returncode == 0, run.output[-3000:]
    log = (work / "logs" / "evaluate" / "mini-llama" / "standard.log").read_text()
    assert "mini-llama / standard / arc_challenge: finished by an earlier attempt of this suite, outputs kept" in log
    assert log.count("cotscale: backend hf") == 1  # one model load for the two tasks left
    assert not (work / "results" / "cache").exists()
    for task in config["tasks"]:
        ours, ref = work / eval_dir("mini-llama", "standard", task), reference / eval_dir("mini-llama", "standard", task)
        for name in ("samples.jsonl.gz", "usage.jsonl.gz"):
            assert gzip.decompress((ours / name).read_bytes()) == gzip.decompress((ref / name).read_bytes()), (task, name)
        ours_results, ref_results = (json.loads((d / "results.json").read_text()) for d in (ours, ref))
        assert _defining(ours_results) == _defining(ref_results), task
        assert ours_results["cotscale"]["spec"]["task"]["benchmark"] == task


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from _lm_fixtures import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


def test_a_suite_equals_one_job_per_task(root, tiny_model, tmp_path, offline_datasets):
    """One model load for two strategies × three tasks (suite: model) gives the per-task path's scores, samples and
    usage: begin_task leaves nothing of one task in the next."""
    from cotscale.evaluate import run_evaluation, run_suite, suite_tasks

    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    raw = {
        **{k: demo[k] for k in ("seed", "batch_size", "backend", "dtype", "device")},
        "task_data": str(root / "config" / "tasks" / "demo_data"), "limit": 4, "suite": "model",
        "tasks": {t: v for t, v in yaml.safe_load((root / "config" / "tasks" / "benchmarks.yaml").read_text()).items()
                  if t in ("arc_challenge", "gsm8k", "winogrande")},
        "strategies": {"standard": demo["strategies"]["standard"],
                       "hybrid_cot": {**demo["strategies"]["hybrid_cot"], "max_gen_toks": 8}},
        "analysis": {"baseline": "standard", "cot": "hybrid_cot", "llh": "standard"},
        "models": {"m": {"hf_id": str(tiny_model), "family": "tiny", "params": 1, "train_tokens": 1}},
    }
    config = load_config(raw)
    (suite,) = suites(config)
    assert suite == ("m", ("standard", "hybrid_cot"))
    jobs = suite_tasks(config, "m", suite[1], tmp_path / "suite", tmp_path / "cache")
    suite_results = run_suite(config, "m", jobs)
    assert len(suite_results) == 6 and not (tmp_path / "cache").exists()
    for job, results in zip(jobs, suite_results, strict=True):
        single = tmp_path / "single" / job.strategy / job.task
        alone = run_evaluation(config, "m", job.strategy, job.task, single)
        assert results["results"] == alone["results"], (job.strategy, job.task)
        assert results["cotscale"]["usage_summary"] == alone["cotscale"]["usage_summary"]
        assert read_gz(Path(job.out_dir) / "usage.jsonl.gz") == read_gz(single / "usage.jsonl.gz")
        assert read_gz(Path(job.out_dir) / "samples.jsonl.gz") == read_gz(single / "samples.jsonl.gz")
        summary = results["cotscale"]["usage_summary"]  # the summary is the usage records' sums
        usage = read_gz(Path(job.out_dir) / "usage.jsonl.gz")
        assert sum(e["requests"] for e in summary.values()) == len(usage)
        assert sum(e["generated_tokens"] for e in summary.values()) == sum(u["generated_tokens"] for u in usage)
        assert sum(e["prompt_tokens"] for e in summary.values()) == sum(u["prompt_tokens"] for u in usage)

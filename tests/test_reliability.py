"""Bad input stops with ONE clear error naming the file / key / value and the fix, and leaves nothing half-written;
a clean run is reproducible to the byte.

Config and aggregation errors are checked in process (fast); the evaluation errors through one real Snakemake run of
failing jobs; reproducibility through two clean runs of the shared reduced demo (tests/_demo.py).
"""

from __future__ import annotations

import copy
import filecmp
import json
import logging
import math
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from _demo import (
    CANARY_TOKEN,
    eval_dir,
    read_results,
    reduced_demo,
    shared_run,
    snakemake,
    write_config,
)

from cotscale import fits
from cotscale.aggregate import AggregationError, combine_tables, write_strategy_tables
from cotscale.config import ConfigError, check_config_files, job_spec, load_config, read_yaml
from cotscale.io import atomic_path, read_json, write_csv, write_json
from cotscale.usage import summarize_usage

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo_config() -> dict:
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def config_error(base: dict, edit) -> str:
    config = copy.deepcopy(base)
    edit(config)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    return str(info.value)


# ---------------------------------------------------------------------------------------------- config
def _model(c, key="tinyllama-s"):
    return c["models"][key]


BAD_CONFIGS = {
    # unknown names
    "analysis.baseline": lambda c: c["analysis"].update(baseline="hybridd"),
    "analysis.cot": lambda c: c["analysis"].update(cot="no-such-strategy"),
    "analysis.llh": lambda c: c["analysis"].update(llh="llh"),
    "strategies.beam.models": lambda c: c["strategies"]["beam"].update(models=["tinyllama-xl"]),
    "tasks": lambda c: c.update(tasks={"boolq": {"standard": {"task": "boolq", "metric": "acc", "filter": "none"}}}),
    "strategies.hybrid.variant": lambda c: c["strategies"]["hybrid"].update(variant="free"),
    # N and D
    "models.tinyllama-s: 'params'": lambda c: _model(c).pop("params"),
    "models.tinyllama-s: give either train_tokens": lambda c: _model(c).pop("train_tokens"),
    # non-positive numbers
    "models.tinyllama-s.params": lambda c: _model(c).update(params=0),
    "models.tinyllama-s.train_tokens": lambda c: _model(c).update(train_tokens=-3.0e9),
    "models.tinyneox.checkpoints.step50": lambda c: _model(c, "tinyneox")["checkpoints"].update(step50=0),
    "batch_size": lambda c: c.update(batch_size=0),
    "limit": lambda c: c.update(limit=0),
    "seed": lambda c: c.update(seed=-1),
    "strategies.hybrid.max_gen_toks": lambda c: c["strategies"]["hybrid"].update(max_gen_toks=0),
    "strategies.beam.num_beams": lambda c: c["strategies"]["beam"].update(num_beams=0),
    "strategies.self_consistency.samples": lambda c: c["strategies"]["self_consistency"].update(samples=0),
    "strategies.hybrid.temperature": lambda c: c["strategies"]["hybrid"].update(temperature=-0.5),
    "models.tinyllama-s.tensor_parallel": lambda c: _model(c).update(tensor_parallel=0),
    "models.tinyllama-s.data_parallel": lambda c: _model(c).update(data_parallel=-1),
    # settings that contradict each other
    "strategies.self_consistency.temperature": lambda c: c["strategies"]["self_consistency"].update(temperature=0),
    "strategies.hybrid.samples": lambda c: c["strategies"]["hybrid"].update(samples=3),
}


@pytest.mark.parametrize("expected", list(BAD_CONFIGS))
def test_bad_config_names_the_key(demo_config, expected):
    message = config_error(demo_config, BAD_CONFIGS[expected])
    assert f"config key {expected}" in message
    assert message.count("config key") == 1  # one error, not a cascade


UNSAFE_KEYS = ["a/b", "..", "../escape", "a b", "a;b", "$(touch x)", "`id`", "a|b", "a&b", "a>b", "-rf", ".hidden", "",
               "a\nb", "a*b", "a'b", 'a"b', "a\\b", "näme", "a" * 121]


@pytest.mark.parametrize("key", UNSAFE_KEYS, ids=range(len(UNSAFE_KEYS)))
def test_unsafe_model_and_strategy_keys_are_rejected(demo_config, key):
    message = config_error(demo_config, lambda c: c["models"].update({key: _model(c)}))
    assert "config key models" in message and repr(key) in message
    message = config_error(demo_config, lambda c: c["strategies"].update({key: c["strategies"]["standard"]}))
    assert "config key strategies" in message and repr(key) in message


@pytest.mark.parametrize("revision", ["../x", "main/../../etc", "a//b", "./main", "main/"])
def test_checkpoint_revisions_cannot_escape_the_output_folder(demo_config, revision):
    def edit(c):
        neox = _model(c, "tinyneox")
        neox["checkpoints"] = {revision: 1.0e5}
        neox["demo"] = {**neox["demo"], "steps": {revision: 5}}

    message = config_error(demo_config, edit)
    assert "config key models.tinyneox.checkpoints" in message and repr(revision) in message


def test_duplicate_yaml_keys_name_file_line_and_key(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("seed: 1\nmodels:\n  m1: {family: f, params: 1.0e+6}\n  m2: {family: f}\n  m1: {family: g}\n")
    with pytest.raises(ConfigError, match=r"dup.yaml, line 5: key 'm1' appears twice .*first on line 3"):
        read_yaml(path)
    (tmp_path / "top.yaml").write_text("limit: 5\nseed: 1\nlimit: 6\n")
    with pytest.raises(ConfigError, match="line 3: key 'limit'"):
        check_config_files(["top.yaml"], base=tmp_path)
    with pytest.raises(ConfigError, match="line 3: key 'limit'"):
        load_config(tmp_path / "top.yaml")
    anchors = tmp_path / "anchors.yaml"  # merge keys are not duplicates
    anchors.write_text("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  y: 3\n")
    assert read_yaml(anchors)["other"] == {"x": 1, "y": 3}
    check_config_files([ROOT / "config" / name for name in ("config.yaml", "demo.yaml", "published.yaml")])


@pytest.mark.slow
def test_snakemake_reports_duplicate_keys_and_override_errors(root, tmp_path):
    config = (root / "config" / "demo.yaml").read_text()
    dup = config.replace("  tinyllama-l:\n", "  tinyllama-s:\n", 1)
    assert dup != config
    (tmp_path / "config.yaml").write_text(dup)
    run = snakemake(root, tmp_path, "all", extra=["-n"])
    assert run.returncode != 0
    assert "config.yaml, line" in run.output and "key 'tinyllama-s' appears twice" in run.output

    (tmp_path / "config.yaml").write_text(config)
    run = snakemake(root, tmp_path, "all", extra=["-n", "--config", "analysis={'cot': 'hybrid_cott'}"])
    assert run.returncode != 0
    assert "config key analysis.cot: unknown strategy 'hybrid_cott'" in run.output
    assert "--config analysis=" in run.output  # says where the value came from
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------------------------------- evaluation
def _eval_config(tmp_path: Path, **model) -> tuple[dict, str]:
    config = reduced_demo(ROOT, tasks=["arc_challenge"], models=["mini-llama"])
    config["models"] = {"m": {"family": "f", "params": 1.0e6, "train_tokens": 1.0e6, "hf_id": str(tmp_path), **model}}
    return config, "m"


def _run_evaluation(config: dict, key: str, out: Path) -> str:
    from cotscale.evaluate import EvaluationError, run_evaluation

    with pytest.raises(EvaluationError) as info:
        run_evaluation(load_config(config), key, "standard", "arc_challenge", out, cache_dir=out.parent / "cache")
    assert not out.exists() and not (out.parent / "cache").exists()  # nothing written
    return str(info.value)


def test_too_few_gpus_for_tensor_times_data_parallel(tmp_path, monkeypatch):
    config, key = _eval_config(tmp_path, tensor_parallel=2, data_parallel=2)
    config["device"] = "cuda"
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("COTSCALE_GPUS", "2")  # a host with two GPUs
    message = _run_evaluation(config, key, tmp_path / "out")
    assert "model 'm'" in message and "tensor_parallel 2 × data_parallel 2 = 4 GPU(s)" in message
    assert "only 2 are visible" in message and "models.m.tensor_parallel" in message and "device: cpu" in message

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU at all for a GPU device
    config, key = _eval_config(tmp_path)
    config["device"] = "cuda"
    message = _run_evaluation(config, key, tmp_path / "out")
    assert "= 1 GPU(s)" in message and "only 0 are visible" in message and "set device: cpu" in message


def test_gpu_device_without_a_gpu(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    for var in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID", "COTSCALE_GPUS"):
        monkeypatch.delenv(var, raising=False)
    config, key = _eval_config(tmp_path)
    config["device"] = "cuda"  # the GPU count comes from torch, asked in a subprocess
    message = _run_evaluation(config, key, tmp_path / "out")
    assert "device 'cuda' needs tensor_parallel 1 × data_parallel 1 = 1 GPU(s)" in message and "set device: cpu" in message
    config["device"] = "cuda:0"  # a pinned GPU: the backend finds out
    message = _run_evaluation(config, key, tmp_path / "out")
    assert "model 'm': device='cuda:0' but no CUDA GPU is visible; set device: cpu" in message


def test_gpu_counts_do_not_matter_on_cpu(tmp_path, monkeypatch):
    from cotscale.evaluate import _claim_gpus

    config, key = _eval_config(tmp_path, tensor_parallel=4, data_parallel=2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with _claim_gpus(load_config(config), key) as claim:  # device: cpu
        assert claim.ids == []


def test_missing_local_model(tmp_path):
    config, key = _eval_config(tmp_path, hf_id=str(tmp_path / "no-such-model"))
    message = _run_evaluation(config, key, tmp_path / "out")
    assert "no-such-model" in message and "no such directory" in message and "models.m.hf_id" in message


def test_out_of_memory_is_explained(demo_config):
    torch = pytest.importorskip("torch")
    from cotscale.evaluate import EvaluationError, explain_out_of_memory

    config = load_config(demo_config)
    for error in (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                  RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
                  ValueError("No available memory for the cache blocks. Try increasing `gpu_memory_utilization`")):
        with pytest.raises(EvaluationError) as info, explain_out_of_memory(config, "tinyneox@step50", "beam"):
            raise error
        message = str(info.value)
        assert "model 'tinyneox@step50' ran out of memory" in message and type(error).__name__ in message
        for knob in ("batch_size 16", "dtype 'float32'", "models.tinyneox.dtype", "models.tinyneox.tensor_parallel",
                     "strategies.beam.max_gen_toks 32", "num_beams 3"):
            assert knob in message
        assert info.value.__cause__ is error
    with pytest.raises(KeyError), explain_out_of_memory(config, "tinyneox@step50", "beam"):
        raise KeyError("not memory")  # anything else passes through unchanged


NO_VLLM_SHIM = """
import sys
class _HideVllm:  # vLLM "not installed": any import of it fails
    def find_spec(self, name, path=None, target=None):
        if name == "vllm" or name.startswith("vllm."):
            raise ModuleNotFoundError(f"No module named {name!r} (hidden by the test)", name=name)
        return None
sys.meta_path.insert(0, _HideVllm())
"""


@pytest.mark.slow
def test_evaluation_errors_through_snakemake(root, tmp_path):
    """One Snakemake run, every job failing for its own reason: each says why in one line, nothing is written."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(NO_VLLM_SHIM)
    work = tmp_path / "work"
    (work / "weights").mkdir(parents=True)  # a local model folder (its content does not matter: loading fails first)
    config = reduced_demo(root, tasks=["arc_challenge", "gsm8k"], models=[])
    config["tasks"]["gsm8k"]["cot"]["task"] = "no_such_lm_eval_task"
    config["strategies"]["cot_generate"] = {"format": "generate", "prompt": "cot", "decoding": "greedy",
                                            "variant": "cot", "models": ["no-vllm"]}
    base = {"family": "f", "params": 1.0e6, "train_tokens": 1.0e6}
    config["models"] = {
        "missing-dir": {**base, "hf_id": "/nonexistent/cotscale/model"},
        "offline-hub": {**base, "hf_id": "EleutherAI/pythia-14m"},
        "no-vllm": {**base, "hf_id": "weights", "backend": "vllm"},
    }
    write_config(work, config)
    env = {"PYTHONPATH": f"{shim}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "HF_HUB_OFFLINE": "1"}
    suites = [(m, "standard") for m in config["models"]] + [("no-vllm", "cot_generate")]
    targets = [f"{eval_dir(m, s, t)}/results.json" for m, s in suites for t in ("arc_challenge", "gsm8k")]
    run = snakemake(root, work, *targets, extra=["--keep-going"], env=env)
    assert run.returncode != 0
    expected = {
        ("missing-dir", "standard"): "'/nonexistent/cotscale/model' is a local path, but no such directory exists",
        ("offline-hub", "standard"): "is not in the Hugging Face cache, and hf_offline: true forbids downloading",
        ("no-vllm", "standard"): "model 'no-vllm': backend 'vllm' needs vLLM: `pip install vllm`",
        # every task of a suite is looked up before the model is loaded
        ("no-vllm", "cot_generate"): "config key tasks.gsm8k.cot.task: unknown lm-eval task, group or tag "
                                     "'no_such_lm_eval_task'",
    }
    for (model, strategy), text in expected.items():
        log = (work / "logs" / "evaluate" / model / f"{strategy}.log").read_text()
        assert text in log.strip().splitlines()[-1], (model, strategy, log[-1500:])  # the log's last line says it
        assert text in run.output  # and Snakemake's terminal output shows it as one line
    assert run.output.count("cotscale error in rule evaluate: ") == 4
    assert not list((work / "results").rglob("*.json")) and not list((work / "results").rglob("*.gz"))


# ---------------------------------------------------------------------------------------------- aggregation
def _results(config=None, model="m", strategy="standard", bench="arc_challenge", metrics=None) -> dict:
    """A results.json of the contract; with `config`, of the spec that config defines for it."""
    known = config and model in config["models"] and strategy in config["strategies"]
    spec = job_spec(config, model, strategy, bench) if known else None
    return {"results": {bench: metrics if metrics is not None else {"acc,none": 0.5, "acc_stderr,none": 0.1}},
            "cotscale": {"model": model, "revision": "main", "family": "f", "N": 1e6, "D": 1e9,
                         "strategy": {"name": strategy}, "benchmark": bench, "spec": spec,
                         "usage_summary": summarize_usage([])}}


def _agg_config(demo_config) -> dict:
    config = copy.deepcopy(demo_config)
    config["models"] = {"m": {"family": "f", "params": 1.0e6, "train_tokens": 1.0e9, "hf_id": "x/y"}}
    for strategy in config["strategies"].values():
        strategy.pop("models", None)
    return load_config(config)


def test_truncated_published_results_file_is_named(demo_config, tmp_path):
    broken = ROOT.parent / "shared" / "paper" / "broken" / "truncated-results.json"
    if not broken.exists():
        pytest.skip(f"{broken} not found")
    with pytest.raises(AggregationError, match=r"truncated-results.json: not valid JSON .* delete it and rerun"):
        write_strategy_tables(_agg_config(demo_config), "standard", [str(broken)], tmp_path / "tables")
    assert not (tmp_path / "tables").exists()  # nothing half-written


def test_bad_results_files(demo_config, tmp_path):
    config = _agg_config(demo_config)
    cases = {
        "garbage.json": ("this is not json {", "not valid JSON"),
        "list.json": ("[1, 2]", "not a cotscale results file"),
        "no-metric.json": (json.dumps(_results(config, metrics={"acc_norm,none": 0.4})),
                           "benchmark arc_challenge needs metric 'acc' with filter 'none' of lm-eval task 'arc_challenge'"
                           ", but it is missing or NaN there (reported: acc_norm,none). Fix config keys "
                           "tasks.arc_challenge.standard.metric"),
        "nan.json": (json.dumps(_results(config, metrics={"acc,none": float("nan")})), "missing or NaN"),
        "null.json": (json.dumps(_results(config, metrics={"acc,none": None})), "missing or NaN"),
        "stranger.json": (json.dumps(_results(config, model="not-in-config")),
                          "results of model 'not-in-config', which config key models does not list"),
        "other-strategy.json": (json.dumps(_results(config, strategy="greedy")),
                                "results of strategy 'greedy', which config key strategies does not define"),
    }
    for name, (text, expected) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(AggregationError) as info:
            write_strategy_tables(config, "standard", [str(path)], tmp_path / "tables")
        assert str(path) in str(info.value) and expected in str(info.value), name
    assert not (tmp_path / "tables").exists()


def test_absent_benchmarks_are_nan_by_design(demo_config, tmp_path):
    path = tmp_path / "results.json"
    config = _agg_config(demo_config)
    write_json(path, _results(config))
    write_strategy_tables(config, "standard", [str(path)], tmp_path / "tables")
    row = pd.read_csv(tmp_path / "tables" / "benchmarks.csv").iloc[0]
    assert row["arc_challenge"] == 0.5 and math.isnan(row["gsm8k"]) and math.isnan(row["overall"])
    assert row["n_benchmarks"] == 1


# ---------------------------------------------------------------------------------------------- analysis
def test_family_with_one_model_is_skipped_with_a_reason(caplog):
    scores = pd.DataFrame({"model": ["a1", "b1", "b2", "b3"], "family": ["a", "b", "b", "b"],
                           "train_flops": [1e18, 1e17, 1e18, 1e19], "overall": [0.3, 0.25, 0.3, 0.35]})
    with caplog.at_level(logging.INFO):
        table, _ = fits.regression(scores, n_boot=50, seed=0)
    assert list(table["family"]) == ["b"] and table.iloc[0]["b"] == pytest.approx(0.05 / math.log(10))
    assert "family 'a' skipped: 1 model(s)" in caplog.text


@pytest.mark.slow
def test_empty_tables_give_empty_analysis_and_placeholder_figures(demo_config, tmp_path, caplog):
    tables = tmp_path / "tables"
    with caplog.at_level(logging.INFO):
        config = load_config(demo_config)
        for strategy in ("hybrid", "hybrid_cot", "standard"):
            write_strategy_tables(config, strategy, [], tables / strategy)
        combine_tables([tables / s for s in ("hybrid", "hybrid_cot", "standard")], tables)
        fits.run_pair_analysis([tables / s / "benchmarks.csv" for s in ("hybrid", "hybrid_cot")],
                               [tables / s / "tokens.csv" for s in ("hybrid", "hybrid_cot")], tables, "hybrid",
                               "hybrid_cot", seed=1)
        fits.run_pca_ruan(None, tables)
    assert "no evaluation results of strategy hybrid to aggregate" in caplog.text
    for name in ("scores", "benchmarks", "tokens", "compute", "regression", "train_equivalent", "crossover",
                 "pca_loadings_ruan"):
        table = pd.read_csv(tables / f"{name}.csv")
        assert len(table.columns) > 3 and table.empty, name  # a header, no rows
    assert "overall" in pd.read_csv(tables / "benchmarks.csv").columns
    assert pd.read_csv(tables / "isoflop_fit.csv")["alpha"].isna().all()  # one row per fit, none fitted

    # the sweeps' table as its rule writes it with no sweep; the planner refuses empty token tables (PlanError), so
    # its figure gets the plan's header only
    from cotscale import plan as planner
    from cotscale import scaling

    scaling.write_inference_scaling(tables / "inference_scaling.csv", [])
    pd.DataFrame(columns=planner.GRID_COLUMNS).to_csv(tables / "plan.csv", index=False)
    for name in ("inference_scaling", "plan"):
        assert pd.read_csv(tables / f"{name}.csv").empty, name

    from cotscale.figures import draw
    from cotscale.registry import FIGURES, figure_strategies

    config = load_config(demo_config)
    for figure in FIGURES:  # every figure, with the inputs its rule gives it (workflow/rules/common.smk)
        inputs = {name: tables / f"{name}.csv" for name in figure.tables}
        if figure.strategies:
            inputs["benchmarks"] = [tables / s / "benchmarks.csv" for s in figure_strategies(config, figure)
                                    if (tables / s).is_dir()]
        png = tmp_path / "figures" / f"{figure.name}.png"
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="cotscale.figures"):
            fig = draw(figure.name, inputs, png, config)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.with_suffix(".pdf").read_bytes()[:5] == b"%PDF-"
        assert not [a for ax in fig.axes for a in ax.get_children() if a.get_gid()], figure.name  # no data drawn
        assert caplog.records, figure.name  # and the log says why


# ---------------------------------------------------------------------------------------------- partial outputs
def test_atomic_writes_leave_the_old_file_or_nothing(tmp_path):
    path = tmp_path / "results.json"
    write_json(path, {"ok": 1})
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as tmp:
        tmp.write_text('{"half": ')
        raise KeyboardInterrupt  # killed mid-write
    assert read_json(path) == {"ok": 1} and [p.name for p in tmp_path.iterdir()] == ["results.json"]
    with pytest.raises(AttributeError):
        write_csv(tmp_path / "t.csv", None)  # a failed write leaves no file and no temp file
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_csv_floats_are_deterministic_and_exact(tmp_path):
    values = [0.1 + 0.2, 1 / 3, 2.0e-310, 123456789.123456789, math.pi * 1e15, float("nan"), -0.0]
    frame = pd.DataFrame({"x": values, "y": [str(v) for v in values]})
    write_csv(tmp_path / "a.csv", frame)
    write_csv(tmp_path / "b.csv", frame.copy())
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    back = pd.read_csv(tmp_path / "a.csv", float_precision="round_trip")["x"].tolist()
    assert [repr(v) for v in back] == [repr(v) for v in values]  # shortest repr: exact round trip


# ---------------------------------------------------------------------------------------------- reproducibility
MEASURED = ["wall_seconds", "model_load_seconds", "max_rss_mb", "generated_tokens_per_second",  # compute.csv's
            "inference_flops_per_second", "forward_flops_per_second"]  # measured job cost


@pytest.mark.slow
def test_two_clean_runs_give_identical_tables(root, tmp_path_factory):
    first, second = shared_run(tmp_path_factory, root, "a"), shared_run(tmp_path_factory, root, "b")
    tables = sorted(str(p.relative_to(first / "results" / "tables")) for p in (first / "results" / "tables").rglob("*")
                    if p.is_file())
    assert "benchmarks.csv" in tables and "regression.csv" in tables and "strategies/standard/tokens.csv" in tables
    assert tables == sorted(str(p.relative_to(second / "results" / "tables"))
                            for p in (second / "results" / "tables").rglob("*") if p.is_file())
    for name in tables:
        a, b = first / "results" / "tables" / name, second / "results" / "tables" / name
        if Path(name).name == "compute.csv":  # measured wall time and memory differ by nature; the rest is identical
            fa, fb = pd.read_csv(a), pd.read_csv(b)
            assert set(MEASURED) <= set(fa.columns)
            pd.testing.assert_frame_equal(fa.drop(columns=MEASURED), fb.drop(columns=MEASURED), check_exact=True)
        else:
            assert filecmp.cmp(a, b, shallow=False), name
    bench = pd.read_csv(first / "results" / "tables" / "benchmarks.csv")
    assert len(bench) == 4 and bench["arc_challenge"].notna().all()
    for model, strategy in (("mini-llama", "hybrid_cot"), ("mini-neox@step30", "standard")):
        for run in (first, second):
            out = run / eval_dir(model, strategy, "arc_challenge")
            assert (out / "samples.jsonl.gz").read_bytes() == (
                (first / eval_dir(model, strategy, "arc_challenge") / "samples.jsonl.gz").read_bytes())
            assert (out / "usage.jsonl.gz").read_bytes() == (
                (first / eval_dir(model, strategy, "arc_challenge") / "usage.jsonl.gz").read_bytes())
        ra, rb = read_results(first, model, strategy, "arc_challenge"), read_results(second, model, strategy, "arc_challenge")
        for key in ("results", "configs", "n-samples", "versions", "config"):
            assert ra[key] == rb[key], key


@pytest.mark.slow
def test_results_record_the_provenance(root, tmp_path_factory):
    meta = read_results(shared_run(tmp_path_factory, root), "mini-neox@step10", "standard", "arc_challenge")["cotscale"]
    assert (meta["backend"], meta["dtype"], meta["batch_size"], meta["device"], meta["seed"], meta["limit"]) == (
        "hf", "float32", 2, "cpu", 1234, 16)
    assert {"cotscale", "lm_eval", "torch", "transformers", "datasets"} <= set(meta["versions"])
    assert meta["strategy"]["name"] == "standard" and meta["revision"] == "step10" and meta["D"] > 0
    assert meta["cache"]["enabled"] and meta["cache"]["hits"] == 0 and meta["cache"]["request_chunk"] == 8
    assert CANARY_TOKEN not in json.dumps(meta)

"""Results you already have (cotscale.ingest): real `lm_eval --output_path OUT --log_samples` folders, written by the
bare lm-eval CLI with its own `hf` model on a tiny model built here, ingested into the evaluation contract; their
tables must equal those of the pipeline's own evaluation of the same model and documents (scores exactly, tokens
exactly: re-counted with the model's tokenizer). Then one clear error per kind of bad folder.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pandas as pd
import pytest
import yaml

pytest.importorskip("lm_eval")

from _lm_fixtures import build_tiny_model  # noqa: E402

from cotscale.aggregate import write_strategy_tables  # noqa: E402
from cotscale.config import ROOT, load_config  # noqa: E402
from cotscale.evaluate import run_evaluation  # noqa: E402
from cotscale.ingest import IngestError, ingest_config  # noqa: E402
from cotscale.tasks import render_task_overrides  # noqa: E402

TASKS = ["arc_challenge", "winogrande"]
LIMIT = 4


def make_config(model_dir, **extra) -> dict:
    benchmarks = yaml.safe_load((ROOT / "config" / "tasks" / "benchmarks.yaml").read_text())
    return load_config({
        "seed": 1234, "limit": LIMIT, "batch_size": 8, "dtype": "float32", "device": "cpu", "hf_offline": True,
        "task_data": str(ROOT / "config" / "tasks" / "demo_data"), "tasks": {t: benchmarks[t] for t in TASKS},
        "strategies": {"standard": {"format": "loglikelihood", "prompt": "plain", "decoding": "greedy",
                                    "variant": "standard"}},
        "analysis": {"baseline": "standard", "cot": "standard", "llh": "standard"},
        "models": {"tiny": {"hf_id": str(model_dir), "family": "tiny", "params": 1.0e6, "train_tokens": 1.0e6}},
        **extra,
    })


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def lm_eval_out(tiny, tmp_path_factory):
    """A bare `lm_eval` run: its own hf model, the same local task definitions, the first LIMIT documents."""
    work = tmp_path_factory.mktemp("lm_eval")
    include = render_task_overrides(TASKS, ROOT / "config" / "tasks" / "demo_data", work / "tasks")
    run = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args",
                          f"pretrained={tiny},dtype=float32", "--tasks", ",".join(TASKS), "--include_path",
                          str(include), "--limit", str(LIMIT), "--device", "cpu", "--batch_size", "8",
                          "--log_samples", "--output_path", str(work / "out")],
                         cwd=work, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-4000:]
    return work / "out"


def tables(config, evals, out):
    paths = sorted(str(p) for p in evals.glob("*/standard/*/results.json"))
    write_strategy_tables(config, "standard", paths, out)
    return {name: pd.read_csv(out / f"{name}.csv") for name in ("benchmarks", "scores", "tokens")}


@pytest.mark.slow
def test_ingested_tables_equal_the_pipelines_own(tiny, lm_eval_out, tmp_path):
    config = make_config(tiny)
    for task in TASKS:  # the pipeline's own evaluation of the same model and documents
        run_evaluation(config, "tiny", "standard", task, tmp_path / "own" / "tiny" / "standard" / task)
    ingested = make_config(tiny, lm_eval_outputs={"tiny": {"standard": str(lm_eval_out)}})
    written = ingest_config(ingested, tmp_path / "ingested")
    assert len(written) == len(TASKS)
    own, theirs = tables(config, tmp_path / "own", tmp_path / "t1"), tables(ingested, tmp_path / "ingested", tmp_path / "t2")
    pd.testing.assert_frame_equal(own["benchmarks"], theirs["benchmarks"])
    pd.testing.assert_frame_equal(own["scores"], theirs["scores"])
    # computed_tokens: what cotscale's backend ran (a shared prefix once); a bare lm-eval run records none, so the
    # ingested rows fall back to prompt + generated tokens
    pd.testing.assert_frame_equal(own["tokens"].drop(columns="computed_tokens"),
                                  theirs["tokens"].drop(columns="computed_tokens"))
    t = theirs["tokens"]
    assert list(t["computed_tokens"]) == list(t["prompt_tokens"] + t["generated_tokens"])
    assert (own["tokens"]["computed_tokens"] < t["computed_tokens"]).all()
    assert set(theirs["tokens"]["token_unit"]) == {"tokens"}


@pytest.mark.slow
def test_without_the_tokenizer_tokens_are_words(tiny, lm_eval_out, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(tiny, copy)
    config = make_config(copy, lm_eval_outputs={"tiny": {"standard": str(lm_eval_out)}})
    shutil.rmtree(copy)  # the model is gone: only its lm-eval outputs are left
    ingest_config(config, tmp_path / "evals")
    usage = [json.loads(line) for line in __import__("gzip").open(
        tmp_path / "evals" / "tiny" / "standard" / "arc_challenge" / "usage.jsonl.gz", "rt")]
    samples = [json.loads(line) for line in __import__("gzip").open(
        tmp_path / "evals" / "tiny" / "standard" / "arc_challenge" / "samples.jsonl.gz", "rt")]
    assert {u["token_unit"] for u in usage} == {"words"}
    first = next(s for s in samples if s["doc_id"] == 0)  # the first choice's record counts its context + choice
    context, choice = first["arguments"]["gen_args_0"]["arg_0"], first["arguments"]["gen_args_0"]["arg_1"]
    record = next(u for u in usage if u["doc_id"] == 0)
    assert record["scored_tokens"] == len(context.split()) + len(choice.split())


def broken_copy(src, dst, edit):
    shutil.copytree(src, dst)
    (folder,) = [d for d in dst.iterdir() if d.is_dir()]
    edit(folder)
    return dst


@pytest.mark.slow
def test_bad_folders_give_one_clear_error_each(tiny, lm_eval_out, tmp_path):
    def ingest(folder, **overrides):
        ingest_config(make_config(tiny, lm_eval_outputs={"tiny": {"standard": str(folder)}}, **overrides),
                      tmp_path / "evals")

    no_samples = broken_copy(lm_eval_out, tmp_path / "a", lambda f: next(f.glob("samples_winogrande_*")).unlink())
    with pytest.raises(IngestError, match=r"results_.*\.json: reports task 'winogrande' but samples_winogrande_.*"
                                          r"is not beside it; rerun lm_eval with --log_samples"):
        ingest(no_samples)

    def cut(folder):
        path = next(folder.glob("samples_arc_challenge_*"))
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - 40])

    with pytest.raises(IngestError, match=r"samples_arc_challenge_.*\.jsonl: line 4 is cut off"):
        ingest(broken_copy(lm_eval_out, tmp_path / "b", cut))
    benchmarks = yaml.safe_load((ROOT / "config" / "tasks" / "benchmarks.yaml").read_text())
    with pytest.raises(IngestError, match=r"task 'winogrande' is none of the lm-eval tasks the config's benchmarks "
                                          r"run under strategy 'standard' \(arc_challenge\)"):
        ingest(lm_eval_out, tasks={"arc_challenge": benchmarks["arc_challenge"]})


@pytest.mark.slow
def test_snakemake_ingests_instead_of_evaluating(tiny, lm_eval_out, tmp_path):
    """The workflow with config key lm_eval_outputs: rule ingest_lm_eval writes the contract, no evaluation runs, and
    the strategy's tables are those of the ingested runs (compared with a direct ingest + aggregation above)."""
    from _demo import snakemake, write_config

    raw = yaml.safe_load(yaml.safe_dump({k: v for k, v in make_config(tiny).items() if k in (
        "seed", "limit", "batch_size", "dtype", "device", "hf_offline", "task_data", "tasks", "analysis")}))
    raw["strategies"] = {"standard": {"format": "loglikelihood", "prompt": "plain", "decoding": "greedy",
                                      "variant": "standard"}}
    raw["models"] = {"tiny": {"hf_id": str(tiny), "family": "tiny", "params": 1.0e6, "train_tokens": 1.0e6}}
    raw["lm_eval_outputs"] = {"tiny": {"standard": str(lm_eval_out)}}
    write_config(tmp_path, raw)
    run = snakemake(ROOT, tmp_path, "results/tables/strategies/standard/benchmarks.csv")
    assert run.returncode == 0, run.output[-4000:]
    assert "rule ingest_lm_eval" in run.output
    assert "rule evaluate" not in run.output and not (tmp_path / "logs" / "evaluate").exists()
    direct = make_config(tiny, lm_eval_outputs={"tiny": {"standard": str(lm_eval_out)}})
    ingest_config(direct, tmp_path / "direct")
    expected = tables(direct, tmp_path / "direct", tmp_path / "t")["benchmarks"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "results/tables/strategies/standard/benchmarks.csv"), expected)


def test_a_changed_lm_eval_folder_reingests(tmp_path):
    """The ingest rule's input is the model folder's lm-eval files (cheap: dry runs on placeholder files, no model):
    touching a samples file or adding a results file re-ingests; a file of another model's folder beside it does not.
    """
    from _demo import snakemake, write_config

    benchmarks = yaml.safe_load((ROOT / "config" / "tasks" / "benchmarks.yaml").read_text())
    out = tmp_path / "out"
    mine, other = out / "EleutherAI__pythia-160m", out / "other-model"  # lm-eval names the folder after pretrained
    for folder in (mine, other):
        folder.mkdir(parents=True)
        (folder / "results_2026-01-01T00-00-00.json").write_text("{}")
        (folder / "samples_arc_challenge_2026-01-01T00-00-00.jsonl").write_text("{}\n")
    write_config(tmp_path, {
        "limit": 2, "device": "cpu", "tasks": {"arc_challenge": benchmarks["arc_challenge"]},
        "strategies": {"standard": {"format": "loglikelihood", "prompt": "plain", "decoding": "greedy",
                                    "variant": "standard"}},
        "analysis": {"baseline": "standard", "cot": "standard", "llh": "standard"},
        "models": {"pythia": {"hf_id": "EleutherAI/pythia-160m", "family": "pythia", "params": 1.6e8,
                              "train_tokens": 3.0e11}},
        "lm_eval_outputs": {"pythia": {"standard": str(out)}},
    })
    contract = [f"results/evals/pythia/standard/arc_challenge/{name}"
                for name in ("results.json", "samples.jsonl.gz", "usage.jsonl.gz")]
    inputs_time = (mine / "results_2026-01-01T00-00-00.json").stat().st_mtime
    for path in contract:  # an earlier ingest's outputs, newer than the folder's files
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
        os.utime(tmp_path / path, (inputs_time + 10, inputs_time + 10))

    def reingests() -> bool:
        run = snakemake(ROOT, tmp_path, *contract, extra=("-n",))
        assert run.returncode == 0, run.output[-4000:]
        return "rule ingest_lm_eval" in run.output

    assert not reingests()
    later = (inputs_time + 20, inputs_time + 20)
    os.utime(other / "samples_arc_challenge_2026-01-01T00-00-00.jsonl", later)
    assert not reingests()
    os.utime(mine / "samples_arc_challenge_2026-01-01T00-00-00.jsonl", later)
    assert reingests()
    os.utime(mine / "samples_arc_challenge_2026-01-01T00-00-00.jsonl", (inputs_time, inputs_time))
    assert not reingests()
    (other / "results_2026-02-01T00-00-00.json").write_text("{}")
    os.utime(other / "results_2026-02-01T00-00-00.json", later)
    assert not reingests()
    (mine / "results_2026-02-01T00-00-00.json").write_text("{}")  # a newer lm_eval run written into the folder
    os.utime(mine / "results_2026-02-01T00-00-00.json", later)  # newer than the outputs however fast this runs
    assert reingests()

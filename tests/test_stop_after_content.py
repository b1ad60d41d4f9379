"""stop_after_content (issue 23, item 2): a stop sequence ends a generation only after its first non-whitespace text.

Hand-made token sequences for the counting (cotscale.lm.tokens), and the tiny demo model on both backends against an
oracle written here: a plain torch loop of argmax over ``model(ids).logits`` with no stop at all, cut by hand at the
first "\\n" after non-whitespace text (or at EOS, or at the budget).
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

import pytest

from cotscale.lm.tokens import count_to_stop, ends_in_stop
from cotscale.strategy import StrategyError, resolve_strategy
from cotscale.usage import is_empty, stop_index

REPO = Path(__file__).resolve().parents[1]

# ------------------------------------------------------------------------------------------ hand-made sequences
VOCAB = {0: "\n", 1: "A", 2: " b", 3: "\n\n", 4: "<eos>", 5: " ", 6: "\nx\n", 7: "Q"}
EOS = frozenset({4})


def decode(ids):
    return "".join(VOCAB[i] for i in ids)


@pytest.mark.parametrize("ids, stops, plain, after", [
    # the model's leading "\n": plain stops at once; after content runs on to the next "\n" (the 4th id)
    ([0, 1, 2, 0, 1], ["\n"], (1, True), (4, True)),
    # whitespace only to the budget: never stops after content, runs to the budget (not ended)
    ([0, 5, 3, 0], ["\n"], (1, True), (4, False)),
    # EOS right after the leading newline ends it either way (counted)
    ([0, 4, 1], ["\n"], (1, True), (2, True)),
    ([5, 4, 1], ["\n"], (2, True), (2, True)),
    # one token holding the leading stop and one after content: that token ends it
    ([6, 1], ["\n"], (1, True), (1, True)),
    # "\n\n" as the stop: a leading "\n\n" is skipped, a "\n" alone is not a stop
    ([3, 1, 0, 2, 3, 1], ["\n\n"], (1, True), (5, True)),
    # a stop with non-whitespace text is content itself: it ends the generation even at the start
    ([0, 7, 1], ["\nQ"], (2, True), (2, True)),
    ([5, 0, 1, 2], ["\n", "\n\n"], (2, True), (4, False)),
    # no stop sequences: EOS or the budget
    ([0, 1, 2], [], (3, False), (3, False)),
])
def test_count_to_stop_after_content_on_hand_made_ids(ids, stops, plain, after):
    assert count_to_stop(ids, stops, EOS, None, decode) == plain
    assert count_to_stop(ids, stops, EOS, None, decode, after_content=True) == after


def test_ends_in_stop_after_content_checks_the_whole_sequence():
    lookback = 3
    assert ends_in_stop([0], ["\n"], decode, lookback) is True
    assert ends_in_stop([0], ["\n"], decode, lookback, after_content=True) is False
    assert ends_in_stop([0, 1], ["\n"], decode, lookback, after_content=True) is False  # the tail holds the leading one
    assert ends_in_stop([0, 1, 0], ["\n"], decode, lookback, after_content=True) is True
    # the leading "\n" fell out of the tail long ago, the content is older than the tail: still a stop after content
    assert ends_in_stop([0, 1, 2, 2, 2, 2, 0], ["\n"], decode, lookback, after_content=True) is True


@pytest.mark.parametrize("text, stops, plain, after", [
    ("\nA b\nA", ["\n"], 0, 4),
    (" \n\n", ["\n"], 1, None),
    ("\n\nA\n\nB", ["\n\n"], 0, 3),
    ("\nQA", ["\nQ"], 0, 0),
    ("A\nb", ["\n"], 1, 1),
])
def test_stop_index_and_is_empty_by_hand(text, stops, plain, after):
    assert stop_index(text, stops) == plain and stop_index(text, stops, after_content=True) == after
    cut = text if after is None else text[:after]
    assert is_empty(text, stops, after_content=True) == (cut.strip() == "")


def test_the_strategy_key_is_checked():
    assert resolve_strategy({"format": "hybrid"})["stop_after_content"] is False
    assert resolve_strategy({"format": "generate", "stop_after_content": True})["stop_after_content"] is True
    with pytest.raises(StrategyError, match="stop_after_content.*format: generate or hybrid"):
        resolve_strategy({"format": "loglikelihood", "stop_after_content": True})
    with pytest.raises(StrategyError, match="stop_after_content: must be true or false"):
        resolve_strategy({"format": "generate", "stop_after_content": "yes"})


# ------------------------------------------------------------------------------------------ the tiny model
torch = pytest.importorskip("torch")
pytest.importorskip("lm_eval")

from lm_eval.api.instance import Instance  # noqa: E402

from _lm_fixtures import GEN_DOCS, MC_DOCS, hf_lm, tiny_model, vllm_lm  # noqa: E402,F401 - fixtures
from cotscale import lm as cl  # noqa: E402

BUDGET = 24
QUESTIONS = [d["question"] for d in GEN_DOCS + MC_DOCS]
# "Question: <q>" without "\nAnswer:": the tiny model goes on with "\n" first (checked in the oracle)
PROMPTS = [f"Question: {q}" for q in QUESTIONS]
GENERATE = {"format": "generate", "prompt": "plain", "decoding": "greedy", "max_gen_toks": BUDGET}
HYBRID = {"format": "hybrid", "prompt": "plain", "decoding": "greedy", "max_gen_toks": BUDGET, "until": ["\n"]}


@pytest.fixture(scope="module")
def oracle(hf_lm):
    """Per prompt (expected text, counted ids, ended, summed log-probability, whether it opened with "\\n" and
    stopped at the next one): greedy ids from an argmax loop with no stop, cut by hand."""
    model, tok = hf_lm.backend.model, hf_lm.backend.tokenizer
    eos = tok.eos_token_id
    out = {}
    for prompt in PROMPTS:
        ids = tok(prompt, return_tensors="pt").input_ids
        gen, logps = [], []
        with torch.no_grad():
            for _ in range(BUDGET):
                logits = model(ids).logits[0, -1].double()
                nxt = int(logits.argmax())
                gen.append(nxt)
                logps.append(float(torch.log_softmax(logits, -1)[nxt]))
                ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
        n, ended, at_newline = BUDGET, False, False
        for k in range(1, BUDGET + 1):  # the first prefix with a "\n" after non-whitespace text, or EOS
            if "\n" in tok.decode(gen[:k], skip_special_tokens=False).lstrip():
                n, ended, at_newline = k, True, True
                break
            if gen[k - 1] == eos:
                n, ended = k, True
                break
        text = tok.decode(gen[:n], skip_special_tokens=True)
        start = len(text) - len(text.lstrip())
        text = text[:text.index("\n", start)] if "\n" in text[start:] else text
        opened = tok.decode(gen[:1]).startswith("\n")
        out[prompt] = {"text": text, "ids": gen[:n], "ended": ended, "logprob": sum(logps[:n]),
                       "opened": opened, "past_leading_newline": opened and at_newline,
                       "end": "newline" if at_newline else "eos" if ended else "budget"}
    return out


def generate_requests(until=("\n",)):
    return [Instance("generate_until", {"question": q}, (p, {"until": list(until), "do_sample": False}), 0,
                     ("mini_gen", i, 1)) for i, (q, p) in enumerate(zip(QUESTIONS, PROMPTS, strict=True))]


def mc_requests():
    """Multiple-choice requests whose shared context is "Question: <q>" (the hybrid rationale's prompt)."""
    return [Instance("loglikelihood", doc, (f"Question: {doc['question']}", " " + c), j, ("mini_mc", d, 1))
            for d, doc in enumerate(MC_DOCS) for j, c in enumerate(doc["choices"])]


def test_the_oracle_has_what_the_test_needs(oracle):
    # some generations open with "\n" and stop at the next one; some end at EOS or run to the budget
    assert sum(o["past_leading_newline"] for o in oracle.values()) >= 1
    assert sum(o["opened"] for o in oracle.values()) >= len(PROMPTS) // 2
    assert {o["end"] for o in oracle.values()} == {"newline", "eos", "budget"}
    assert all(o["text"].strip() for o in oracle.values())


def check_generate(lm, oracle):
    lm.begin_task({**GENERATE, "stop_after_content": True})
    texts = lm.generate_until(generate_requests())
    assert texts == [oracle[p]["text"] for p in PROMPTS], lm.backend_name
    records = sorted(lm.usage, key=lambda r: r["doc_id"])
    assert [r["generated_tokens"] for r in records] == [len(oracle[p]["ids"]) for p in PROMPTS], lm.backend_name
    assert [r["truncated"] for r in records] == [not oracle[p]["ended"] for p in PROMPTS]
    assert [r["empty"] for r in records] == [False] * len(PROMPTS)
    details = lm.sample_fields()
    assert [details[("mini_gen", i)]["sequence_logprobs"][0] for i in range(len(PROMPTS))] == \
        pytest.approx([oracle[p]["logprob"] for p in PROMPTS], abs=1e-3)
    assert all(details[("mini_gen", i)]["generation_args"]["generate"]["stop_after_content"] is True
               for i in range(len(PROMPTS)))
    # without the key, the same requests stop at the leading "\n": an empty text, one token counted
    lm.begin_task(GENERATE)
    plain = lm.generate_until(generate_requests())
    for p, text, record in zip(PROMPTS, plain, sorted(lm.usage, key=lambda r: r["doc_id"]), strict=True):
        if oracle[p]["opened"]:
            assert (text, record["generated_tokens"], record["empty"]) == ("", 1, True), lm.backend_name


def check_hybrid(lm, oracle):
    lm.begin_task({**HYBRID, "stop_after_content": True})
    answers = lm.loglikelihood(mc_requests())
    assert len(answers) == sum(len(d["choices"]) for d in MC_DOCS) and all(math.isfinite(a) for a, _ in answers)
    prompts = [f"Question: {d['question']}" for d in MC_DOCS]
    assert lm.rationales == {("mini_mc", d): [oracle[p]["text"]] for d, p in enumerate(prompts)}, lm.backend_name
    records = {r["doc_id"]: r for r in lm.usage if r["kind"] == "generate"}
    assert {d: r["generated_tokens"] for d, r in records.items()} == \
        {d: len(oracle[p]["ids"]) for d, p in enumerate(prompts)}, lm.backend_name


def test_hf_generates_past_a_leading_newline_and_stops_at_the_next(hf_lm, oracle):
    check_generate(hf_lm, oracle)


def test_hf_hybrid_rationales_start_past_a_leading_newline(hf_lm, oracle):
    check_hybrid(hf_lm, oracle)


@pytest.mark.vllm
def test_vllm_generates_past_a_leading_newline_and_stops_at_the_next(vllm_lm, oracle):
    check_generate(vllm_lm, oracle)


@pytest.mark.vllm
def test_vllm_hybrid_rationales_start_past_a_leading_newline(vllm_lm, oracle):
    check_hybrid(vllm_lm, oracle)


# the tiny model's beams open with "\n" and rarely write a second one within the budget: "." ends them after content
BEAM = {"format": "hybrid", "prompt": "plain", "decoding": "beam", "num_beams": 3, "max_gen_toks": 16,
        "until": ["\n", "."], "stop_after_content": True}


@pytest.fixture(scope="module")
def beam_oracle(hf_lm):
    """Per multiple-choice document, transformers' own 3 beams of "Question: <q>" (generate(num_beams=3)), each cut by
    a stop test written here: a "\\n", "." or the EOS text after the first non-whitespace text, or an EOS id."""
    from _lm_fixtures import transformers_beams

    model, tok = hf_lm.backend.model, hf_lm.backend.tokenizer

    def stopped(ids):
        body = tok.decode(ids, skip_special_tokens=False).lstrip()
        return any(s in body for s in ("\n", ".", tok.eos_token))

    return {d: transformers_beams(model, tok, f"Question: {doc['question']}", 3, BEAM["max_gen_toks"],
                                  {tok.eos_token_id}, stopped) for d, doc in enumerate(MC_DOCS)}


def check_beams(lm, beam_oracle):
    tok = lm.backend.tokenizer
    lm.begin_task(BEAM)
    lm.loglikelihood(mc_requests())
    expected = {}
    for d, beams in beam_oracle.items():
        text = tok.decode(beams[0], skip_special_tokens=True)
        start = len(text) - len(text.lstrip())
        cut = min([i for i in (text.find("\n", start), text.find(".", start)) if i >= 0], default=len(text))
        expected[("mini_mc", d)] = [text[:cut]]
    assert lm.rationales == expected, lm.backend_name
    assert {d: lm.hybrid_details[("mini_mc", d)]["generated_tokens"] for d in beam_oracle} == \
        {d: [len(b) for b in beams] for d, beams in beam_oracle.items()}, lm.backend_name
    records = {r["doc_id"]: r["generated_tokens"] for r in lm.usage if r["kind"] == "generate"}
    assert records == {d: sum(map(len, beams)) for d, beams in beam_oracle.items()}, lm.backend_name


def test_the_beam_oracle_opens_with_newlines(hf_lm, beam_oracle):
    tok = hf_lm.backend.tokenizer
    beams = [b for bs in beam_oracle.values() for b in bs]
    assert all(tok.decode(b[:1]).startswith("\n") for b in beams)
    # past the leading "\n", some stopped at a "." (not at EOS), some ran to the budget
    assert any(tok.decode(b).endswith(".") and b[-1] != tok.eos_token_id for b in beams)
    assert any(len(b) == BEAM["max_gen_toks"] for b in beams)


def test_hf_beams_stop_after_content(hf_lm, beam_oracle):
    check_beams(hf_lm, beam_oracle)


@pytest.mark.vllm
def test_vllm_beams_stop_after_content(vllm_lm, beam_oracle):
    check_beams(vllm_lm, beam_oracle)

"""The hybrid format's pure functions (cotscale.lm.hybrid, cotscale.lm.prompts) on hand-derived values."""

from __future__ import annotations

import math

import pytest

from cotscale.lm import hybrid
from cotscale.lm.prompts import question_rendering

CUE, ANSWER_CUE = " Let's think step by step.", " The answer is:"


def test_shared_context_documents_generate_from_their_context():
    plan = hybrid.plan_document(("arc_challenge", 3), [0, 1, 2], ["Question: q\nAnswer:"] * 3, {})
    assert plan.generation_prompt(CUE) == "Question: q\nAnswer: Let's think step by step."
    assert plan.scoring_contexts(CUE, " R.", ANSWER_CUE) == [
        "Question: q\nAnswer: Let's think step by step. R. The answer is:"] * 3


def test_winogrande_generates_from_the_sentence_with_its_blank_and_both_options():
    doc = {"sentence": "The cake did not fit into the box because _ was too big.", "option1": "the cake",
           "option2": "the box", "answer": "1"}
    # lm-eval's winogrande contexts (partial scoring): the sentence up to the blank, with each option
    contexts = ["The cake did not fit into the box because the cake", "The cake did not fit into the box because the box"]
    plan = hybrid.plan_document(("winogrande", 0), [0, 1], contexts, doc)
    question = ("Fill in the blank: The cake did not fit into the box because _ was too big.\n"
                "(A) the cake\n(B) the box\nA:")
    assert plan.generation_prompt(CUE) == question + " Let's think step by step."
    assert plan.scoring_contexts(CUE, " R.", ANSWER_CUE) == [
        question + " Let's think step by step. R. The answer is: The cake did not fit into the box because the cake",
        question + " Let's think step by step. R. The answer is: The cake did not fit into the box because the box"]


@pytest.mark.parametrize("lang", ["en", "fr", "jp", "pt", "ru", "zh"])
def test_every_xwinograd_language_has_the_rendering(lang):
    assert question_rendering(f"xwinograd_{lang}") is question_rendering("winogrande") is not None


def test_xwinograd_zh_without_spaces():
    doc = {"sentence": "奖杯放不进箱子，因为_太大了。", "option1": "奖杯", "option2": "箱子", "answer": "1"}
    contexts = ["奖杯放不进箱子，因为奖杯", "奖杯放不进箱子，因为箱子"]
    plan = hybrid.plan_document(("xwinograd_zh", 5), [0, 1], contexts, doc)
    question = "Fill in the blank: 奖杯放不进箱子，因为_太大了。\n(A) 奖杯\n(B) 箱子\nA:"
    assert plan.generation_prompt("") == question  # hybrid without the cue
    assert plan.scoring_contexts("", "R", ANSWER_CUE) == [question + "R The answer is: 奖杯放不进箱子，因为奖杯",
                                                          question + "R The answer is: 奖杯放不进箱子，因为箱子"]


def test_different_contexts_without_a_rendering_are_an_error():
    with pytest.raises(hybrid.PartialContextError, match="task 'my_task' document 2.*QUESTION_RENDERINGS"):
        hybrid.plan_document(("my_task", 2), [0, 1], ["a x", "a y"], {})


def test_plan_documents_groups_by_document_in_order():
    reqs = [(("t", 1), "c1", {}), (("t", 0), "c0", {}), (("t", 1), "c1", {}), (("t", 0), "c0", {})]
    assert [(p.key, p.idxs) for p in hybrid.plan_documents(reqs)] == [(("t", 1), [0, 2]), (("t", 0), [1, 3])]


def test_vote_makes_the_majority_win():
    # 3 rationales x 3 choices: choice 2 wins twice although choice 0 has the best mean log-likelihood
    lls = [[-0.1, -9.0, -5.0], [-4.0, -9.0, -3.0], [-4.0, -9.0, -3.5]]
    values, votes = hybrid.vote(lls)
    assert votes == [1, 0, 2]
    assert max(range(3), key=lambda c: values[c]) == 2
    assert math.isclose(sum(math.exp(v) for v in values), 1.0)
    values, votes = hybrid.vote([[-1.0, -2.0], [-3.0, -0.5]])  # 1:1 tie -> the better mean log-likelihood
    assert votes == [1, 1] and values[1] > values[0]


def test_combine():
    # one rationale: its scores as they are
    assert hybrid.combine([[-1.0, -2.0]], [[True, False]]) == ([(-1.0, True), (-2.0, False)], None)
    # one choice, two rationales: the mean; greedy only if most rationales say so
    assert hybrid.combine([[-1.0], [-3.0]], [[True], [False]]) == ([(-2.0, False)], None)
    # self-consistency: 2 of 3 rationales pick choice 1; the winner alone is greedy
    answers, votes = hybrid.combine([[-1.0, -2.0], [-3.0, -1.0], [-4.0, -2.0]], [[False] * 2] * 3)
    assert votes == [1, 2] and [g for _, g in answers] == [False, True]
    # values: log((votes + softmax(mean)) / (k + 1)); means -8/3 and -5/3
    p1 = 1 / (1 + math.exp(-1.0))
    assert answers[1][0] == pytest.approx(math.log((2 + p1) / 4))

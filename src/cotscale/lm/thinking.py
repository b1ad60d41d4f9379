"""Thinking spans of reasoning models as pure functions (no model): where a generated thinking ends, what budget
forcing makes of it, and what the answer is generated (or the choices scored) after.

A thinking strategy (``thinking: true``) generates in two phases. Phase 1, the thinking: from the prompt, until the
end-of-thinking token or the thinking's cap (``thinking_budget``, else ``max_gen_toks``). Then :func:`think_at`:

* closed — the model wrote the end token itself within the cap: the thinking is its ids up to that token;
* forced — budget forcing (s1): it reached ``thinking_budget`` tokens without closing; the thinking is exactly those
  ids, and the end token is appended after them;
* unclosed — neither (no budget and it ran to ``max_gen_toks``, or it ended at EOS without closing): no answer.

Phase 2, the answer: generated (hybrid: every choice scored) after ``prompt + thinking + end token + answer cue``, so
an answer never comes from the thinking. Greedy thinking at a smaller budget b is the prefix of the one generated at
the largest budget (cut at b when it had not closed by then), so one phase 1 serves a whole ``thinking_budget`` sweep.

No answer is wrong: a generate_until document gets the empty answer, which no filter extracts a right answer from; a
hybrid document gets log-likelihood -inf for every choice, and :func:`score_no_answer_as_wrong` makes lm-eval's
multiple-choice scoring count it wrong (its argmax would pick choice 0, right whenever the gold answer is choice 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cotscale import compat
from cotscale.errors import CotscaleError
from cotscale.lm.tokens import count_to_stop
from cotscale.strategy import DEFAULT_THINK_END_TOKEN


@dataclass(frozen=True)
class Thought:
    """One document's thinking as the answer phase continues it."""

    ids: list[int]  # the generated thinking ids it keeps (the end token included when the model wrote it)
    text: str  # what follows the prompt before the answer cue: the decoded ids, + the end token when forced
    closed: bool  # the model wrote the end token itself
    forced: bool  # cut at the thinking budget, end token appended

    @property
    def answered(self) -> bool:
        """An answer follows (closed or forced); an unclosed thinking is no answer."""
        return self.closed or self.forced

    def answer_prompt(self, prompt: str, answer_cue: str) -> str:
        """Where the answer is generated, or the choices scored: after the end of thinking and the answer cue."""
        return prompt + self.text + answer_cue


def think_at(ids: list[int], decode, end_token: str, budget: int | None) -> Thought:
    """The thinking a greedy phase 1 with cap ``budget`` (None: no budget forcing) gives, from the ``ids`` of a
    greedy phase 1 at that cap or a larger one (to their end: the end token, EOS or the cap). ``decode`` must keep
    special tokens."""
    closed_at, closed = count_to_stop(list(ids), [end_token], frozenset(), None, decode)
    if closed and (budget is None or closed_at <= budget):
        kept = list(ids[:closed_at])
        return Thought(kept, decode(kept), closed=True, forced=False)
    if budget is not None and len(ids) >= budget:
        kept = list(ids[:budget])
        return Thought(kept, decode(kept) + end_token, closed=False, forced=True)
    return Thought(list(ids), decode(list(ids)), closed=False, forced=False)


def think_end_token(strategy: dict, tokenizer, model: str) -> str:
    """The strategy's ``think_end_token``, else the tokenizer's own (DEFAULT_THINK_END_TOKEN as one added token)."""
    if strategy.get("think_end_token"):
        return strategy["think_end_token"]
    if DEFAULT_THINK_END_TOKEN in tokenizer.get_added_vocab():
        return DEFAULT_THINK_END_TOKEN
    raise CotscaleError(
        f"strategy key think_end_token: thinking: true, but the tokenizer of {model} has no {DEFAULT_THINK_END_TOKEN} "
        f"token to end the thinking with; set think_end_token to the one its chat template writes")


#: lm-eval multiple-choice metrics worth 1 when the argmax choice is the gold one (lm-eval's ConfigurableTask)
PICKED_METRICS = ("acc", "acc_norm", "acc_bytes", "exact_match", "acc_mutual_info")
#: multiple-choice metrics that pass (gold, argmax choice) to a corpus-level aggregation (F1, MCC)
PAIRED_METRICS = ("f1", "mcc")


def no_answer(lls) -> bool:
    """A multiple-choice document's log-likelihoods, one per choice, hold no answer: none is finite (a hybrid
    thinking that never closed scores every choice -inf)."""
    return not any(math.isfinite(ll) for ll in lls)


def wrong_answer(gold) -> int:
    """A choice index that is not ``gold`` (an index, or a list of them): the smallest one."""
    golds = set(gold) if isinstance(gold, (list, tuple)) else {gold}
    return next(i for i in range(len(golds) + 1) if i not in golds)


def no_answer_metrics(metrics: dict) -> dict:
    """lm-eval's per-document metrics of a document without answer, made wrong: PICKED_METRICS 0, the pick of
    PAIRED_METRICS a wrong choice (:func:`wrong_answer`), ``brier_score`` no probability on any choice (lm-eval's
    softmax of all -inf is NaN, which would make the task's Brier score NaN). Other metrics are lm-eval's own."""
    out = dict(metrics)
    for name in PICKED_METRICS:
        if name in out:
            out[name] = type(out[name])(0)
    for name in PAIRED_METRICS:
        if name in out:
            gold, _ = out[name]
            out[name] = (gold, wrong_answer(gold))
    if "brier_score" in out:
        gold, probabilities = out["brier_score"]
        out["brier_score"] = (gold, [0.0] * len(probabilities))
    return out


def score_no_answer_as_wrong(task) -> None:
    """Make a loaded lm-eval task score a multiple-choice document without answer (:func:`no_answer` of its
    [(log-likelihood, is_greedy)] results) as wrong: its
    ``process_results`` is lm-eval's own, then :func:`no_answer_metrics` for such a document. Other output types
    need nothing (a generate_until document without answer is the empty answer)."""
    if task.OUTPUT_TYPE != "multiple_choice":
        return

    def process_results(scored, doc, results):
        metrics = scored(doc, results)
        return no_answer_metrics(metrics) if no_answer([ll for ll, _ in results]) else metrics

    compat.wrap_process_results(task, process_results)

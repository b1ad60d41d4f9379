"""The hybrid generation format as pure functions (no model): which prompt a document's rationale is generated
from, which contexts its choices are scored on, and how the scores of several rationales become one answer.

``CotscaleLM`` calls them around its two batched backend calls (generate the rationales, score the choices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cotscale.lm.prompts import question_rendering


class PartialContextError(ValueError):
    """A document whose choices have different contexts, from a task without a question rendering."""


@dataclass
class DocumentPlan:
    """One document of a hybrid loglikelihood batch: its requests (positions in the batch), the question its
    rationale is generated from, and what each request appends after the answer cue before its continuation.

    Shared-context tasks (every choice has the same context P): question = P, rests = "" — each choice is scored on
    ``P + cue + rationale + answer_cue`` + its continuation. Partial-context tasks (winogrande, xwinograd): question =
    the task's rendering of the whole problem (:mod:`cotscale.lm.prompts`), rests = " " + the choice's own context
    (the sentence up to and including its option) — its completed sentence is scored after the answer cue.
    """

    key: tuple[str, int]
    idxs: list[int]
    question: str
    rests: list[str]

    def generation_prompt(self, cue: str) -> str:
        return self.question + cue

    def scoring_contexts(self, cue: str, rationale: str, answer_cue: str) -> list[str]:
        """The context each choice is scored on, after the rationale (same order as ``idxs``)."""
        return [self.question + cue + rationale + answer_cue + rest for rest in self.rests]


def plan_document(key: tuple[str, int], idxs: list[int], contexts: list[str], doc: dict,
                  chat: tuple[str, str] | None = None) -> DocumentPlan:
    """The hybrid plan of one document from its requests' contexts (and, for partial-context tasks, its doc).

    ``chat``: the (before, after) of one user message in the model's chat template, when lm-eval rendered the
    contexts through it; a partial-context task's question is then rendered through it too, and each choice's rest
    is its context without the template."""
    if all(c == contexts[0] for c in contexts):
        return DocumentPlan(key, idxs, contexts[0], ["" for _ in contexts])
    render = question_rendering(key[0])
    if render is None:
        raise PartialContextError(
            f"hybrid format: task {key[0]!r} document {key[1]} gives its choices different contexts (the option sits "
            f"inside the context), and no question rendering is registered for it; add one to "
            f"cotscale.lm.prompts.QUESTION_RENDERINGS (see docs/hybrid_format.md)")
    if chat is None:
        return DocumentPlan(key, idxs, render(doc), [" " + c.lstrip() for c in contexts])
    before, after = chat
    if not all(c.startswith(before) and c.endswith(after) and len(c) >= len(before) + len(after) for c in contexts):
        raise PartialContextError(
            f"hybrid format with chat_template: task {key[0]!r} document {key[1]}: a choice's context is not one user "
            f"message of the chat template (few-shot turns or a system prompt the template moves?); run this task "
            f"zero-shot or without chat_template")
    raw = [c[len(before):len(c) - len(after)] for c in contexts]
    return DocumentPlan(key, idxs, before + render(doc) + after, [" " + c.lstrip() for c in raw])


def plan_documents(requests: list[tuple[tuple[str, int], str, dict]],
                   chat: tuple[str, str] | None = None) -> list[DocumentPlan]:
    """Group a batch of (document key, context, doc) loglikelihood requests by document, in first-seen order."""
    docs: dict[tuple[str, int], list[int]] = {}
    for i, (key, _, _) in enumerate(requests):
        docs.setdefault(key, []).append(i)
    return [plan_document(key, idxs, [requests[i][1] for i in idxs], requests[idxs[0]][2], chat)
            for key, idxs in docs.items()]


def combine(lls: list[list[float]], greedy: list[list[bool]]) -> tuple[list[tuple[float, bool]], list[int] | None]:
    """One document's answer to lm-eval from its k rationales x n choices: (per choice (value, is_greedy), votes).

    One rationale: its scores. One choice (not multiple choice): the mean over rationales. Else self-consistency:
    :func:`vote`, and the winner is the only choice marked greedy. ``votes`` is None when no vote was taken.
    """
    k, n = len(lls), len(lls[0])
    if k == 1:
        return list(zip(lls[0], greedy[0])), None
    if n == 1:
        return [(sum(row[0] for row in lls) / k, sum(g[0] for g in greedy) * 2 > k)], None
    values, votes = vote(lls)
    winner = max(range(n), key=lambda c: (values[c], -c))
    return [(values[c], c == winner) for c in range(n)], votes


def vote(lls: list[list[float]]) -> tuple[list[float], list[int]]:
    """Self-consistency over k rationales x n choices of log-likelihoods.

    Each rationale votes for its argmax choice (lowest index on ties). Returns (values, votes) with
    ``values[c] = log((votes[c] + p[c]) / (k + 1))``, ``p = softmax(mean log-likelihood over rationales)``: the
    argmax of ``values`` is the majority vote, ties broken by the mean log-likelihood.
    """
    k, n = len(lls), len(lls[0])
    votes = [0] * n
    for row in lls:
        votes[max(range(n), key=lambda c: (row[c], -c))] += 1
    mean = [sum(row[c] for row in lls) / k for c in range(n)]
    top = max(mean)
    weights = [math.exp(m - top) for m in mean]
    total = sum(weights)
    values = [math.log(max(votes[c] + weights[c] / total, 1e-300) / (k + 1)) for c in range(n)]
    return values, votes

"""The hybrid generation format as pure functions (no model): which prompt a document's rationale is generated
from, which contexts its choices are scored on, and how the scores of several rationales become one answer.

``CotscaleLM`` calls them around its two batched backend calls (generate the rationales, score the choices).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass
class DocumentPlan:
    """One document of a hybrid loglikelihood batch: its requests (positions in the batch), the shared context its
    rationale is generated after, and each request's own rest of the context."""

    key: tuple[str, int]
    idxs: list[int]
    prefix: str
    rests: list[str]

    def generation_prompt(self, cue: str) -> str:
        return self.prefix + cue

    def scoring_contexts(self, cue: str, rationale: str, answer_cue: str) -> list[str]:
        """The context each choice is scored on, after the rationale (same order as ``idxs``)."""
        return [self.prefix + cue + rationale + answer_cue + rest for rest in self.rests]


def split_shared_prefix(contexts: list[str]) -> tuple[str, list[str]]:
    """(P, rests) with ``P + rests[i] == contexts[i]``: P is the part of the context every choice shares.

    Equal contexts (the usual multiple-choice case): P is the context. Different contexts (winogrande's partial
    scoring): the longest common prefix cut back to before its last whitespace, so no word is split and each rest
    starts with the whitespace.
    """
    first = contexts[0]
    if all(c == first for c in contexts):
        return first, ["" for _ in contexts]
    common = os.path.commonprefix(contexts)
    cut = max(common.rfind(ch) for ch in (" ", "\n", "\t"))
    cut = max(cut, 0)
    return common[:cut], [c[cut:] for c in contexts]


def plan_documents(requests: list[tuple[tuple[str, int], str]]) -> list[DocumentPlan]:
    """Group a batch of (document key, context) loglikelihood requests by document, in first-seen order."""
    docs: dict[tuple[str, int], list[int]] = {}
    for i, (key, _) in enumerate(requests):
        docs.setdefault(key, []).append(i)
    plans = []
    for key, idxs in docs.items():
        prefix, rests = split_shared_prefix([requests[i][1] for i in idxs])
        plans.append(DocumentPlan(key, idxs, prefix, rests))
    return plans


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

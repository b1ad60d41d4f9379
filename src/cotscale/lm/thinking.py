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
"""

from __future__ import annotations

from dataclasses import dataclass

from cotscale.config import CotscaleError
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

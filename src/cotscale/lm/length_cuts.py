"""Length sweeps (``max_gen_toks: [...]``) from one greedy generation at the largest budget: greedy decoding at a
smaller budget b yields exactly the first b ids, so each budget's response is the generation cut there."""

from __future__ import annotations

from cotscale.lm.tokens import response_text


def truncate_rationale(ids: list[int], text: str, budget: int, decode, until: list[str],
                       after_content: bool = False) -> tuple[str, int]:
    """(text, generated tokens) of a greedy rationale had its budget been ``budget``: the generated ``ids`` (to
    their end) cut at ``budget``, decoded and cut at the stop sequences as the backends cut a generation
    (``after_content``: stop_after_content); a rationale that ended within the budget is ``text`` unchanged."""
    if len(ids) <= budget:
        return text, len(ids)
    return response_text(decode(ids[:budget]), until, after_content), budget


def budget_cuts(ids: list[int], text: str, budgets: list[int], decode, until,
                after_content: bool = False) -> list[tuple[str, int]]:
    """(text, generated tokens) of a greedy generation (``ids`` to their end, ``text`` as returned) at each budget of
    the sweep (see truncate_rationale); ``decode`` as the backends decode a response."""
    until = [until] if isinstance(until, str) else list(until or [])
    return [truncate_rationale(ids, text, b, decode, until, after_content) for b in budgets]

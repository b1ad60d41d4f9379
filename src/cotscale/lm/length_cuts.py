"""Length sweeps (``max_gen_toks: [...]``) from one greedy generation at the largest budget: greedy decoding at a
smaller budget b yields exactly the first b ids, so each budget's response is the generation cut there."""

from __future__ import annotations


def truncate_rationale(ids: list[int], text: str, budget: int, decode, until: list[str]) -> tuple[str, int]:
    """(text, generated tokens) of a greedy rationale had its budget been ``budget``: the generated ``ids`` (to
    their end) cut at ``budget``, decoded and cut at the stop sequences as lm-eval cuts a generation; a rationale
    that ended within the budget is ``text`` unchanged."""
    from lm_eval.models.utils import postprocess_generated_text

    if len(ids) <= budget:
        return text, len(ids)
    return postprocess_generated_text(decode(ids[:budget]), until, None), budget


def budget_cuts(ids: list[int], text: str, budgets: list[int], decode, until) -> list[tuple[str, int]]:
    """(text, generated tokens) of a greedy generation (``ids`` to their end, ``text`` as returned) at each budget of
    the sweep (see truncate_rationale); ``decode`` as the backends decode a response."""
    until = [until] if isinstance(until, str) else list(until or [])
    return [truncate_rationale(ids, text, b, decode, until) for b in budgets]

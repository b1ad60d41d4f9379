"""Question renderings shared by the hybrid format and the free-form CoT tasks (config/tasks/cot/utils.py).

A partial-context task (winogrande, xwinograd) puts each option *inside* the context ("... because the cake" /
"... because the box"), so no shared context states the problem. Its hybrid rationale is generated from the whole
problem instead: the sentence with its blank and both options, rendered here the way the task's free-form CoT variant
shows it (so hybrid_cot and cot_generate ask the same question). See docs/hybrid_format.md.

Light on purpose: no model, no lm-eval imports; lm-eval loads the CoT tasks' utils.py, which imports this.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def options(texts) -> str:
    """``\\n(A) first\\n(B) second...``"""
    return "".join(f"\n({LETTERS[i]}) {text}" for i, text in enumerate(texts))


def fill_in_the_blank(doc: dict) -> str:
    """WinoGrande-schema document (``sentence`` with ``_``, ``option1``, ``option2``) as one question, without a cue."""
    return f"Fill in the blank: {doc['sentence']}{options([doc['option1'], doc['option2']])}\nA:"


# lm-eval task name pattern (fnmatch) -> the question its hybrid rationale is generated from.
QUESTION_RENDERINGS: dict[str, Callable[[dict], str]] = {
    "winogrande": fill_in_the_blank,
    "xwinograd_*": fill_in_the_blank,
}


def answer_index(doc: dict) -> int:
    """The right option of a WinoGrande-schema document (``answer`` "1" or "2"), as lm-eval's doc_to_text gives it:
    its sample records' ``target`` is the continuation, not the index."""
    return {"1": 0, "2": 1}[str(doc["answer"])]


# lm-eval task name pattern (fnmatch) -> the index of a partial-context document's right option.
GOLD_INDEX: dict[str, Callable[[dict], int]] = {"winogrande": answer_index, "xwinograd_*": answer_index}


def gold_index(task_name: str) -> Callable[[dict], int] | None:
    """The registered right-option function of a partial-context task, or None."""
    for pattern, gold in GOLD_INDEX.items():
        if fnmatch.fnmatchcase(task_name, pattern):
            return gold
    return None


def question_rendering(task_name: str) -> Callable[[dict], str] | None:
    """The registered rendering of a partial-context task, or None."""
    for pattern, render in QUESTION_RENDERINGS.items():
        if fnmatch.fnmatchcase(task_name, pattern):
            return render
    return None

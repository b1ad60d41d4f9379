"""Prompts and targets of cotscale's free-form chain-of-thought tasks (strategy ``cot_generate``).

Every prompt lists the answer options as ``(A) ...``, ``(B) ...`` and ends with ``"\\nA:"``; the cotscale model
appends the strategy's ``cot_cue`` (config key ``cot_cue``; its one default is ``cotscale.strategy.DEFAULT_COT_CUE``),
so the config's cue is the cue these tasks run with. The target is the gold option's letter. The task YAMLs' filters pull a letter out of the generated rationale (see README.md).

The layouts follow the seed's ``*_cot`` tasks (AkshayM21/obs-scaling-inference-opts, config/cot/); the seed's bugs
are fixed here, each noted where it is fixed.
"""

from __future__ import annotations

import hashlib
import random
import re

from cotscale.lm.prompts import LETTERS, fill_in_the_blank, options


def _cot_prompt(head: str, texts) -> str:
    return f"{head}{options(texts)}\nA:"


# ------------------------------------------------------------------------------------------ answer letters
# The two patterns every task's filters pull the chosen option letter with (README.md, "Filters"), for the task's
# letter range: written once here, named in the task YAMLs as `regex_pattern: !function utils.<NAME>` (lm-eval's tag
# imports any object of this module, here a string; cotscale.tasks resolves it the same way when it re-emits a filter).
def strict_pattern(letters: str) -> str:
    """The first "the answer is (B)" / "the answer is: C"."""
    return rf"(?i:the answer is)\s*:?\s*\(?([{letters}])\b"


def flexible_pattern(letters: str) -> str:
    """Any "(B)" or "B)", or a letter right after answer/option/choice (the filter takes the last match)."""
    return rf"\(([{letters}])\)|\b([{letters}])\)|(?i:answer|option|choice)(?:\s+is)?\s*:?\s*([{letters}])\b"


STRICT_A_TO_E, FLEXIBLE_A_TO_E = strict_pattern("A-E"), flexible_pattern("A-E")  # arc_challenge_cot
STRICT_A_TO_D, FLEXIBLE_A_TO_D = strict_pattern("A-D"), flexible_pattern("A-D")  # hellaswag_cot
STRICT_A_OR_B, FLEXIBLE_A_OR_B = strict_pattern("AB"), flexible_pattern("AB")  # winogrande_cot, xwinograd_cot_*
STRICT_A_TO_M, FLEXIBLE_A_TO_M = strict_pattern("A-M"), flexible_pattern("A-M")  # truthfulqa_cot: up to 13 choices


# ------------------------------------------------------------------------------------------ arc_challenge_cot
def arc_doc_to_text(doc: dict) -> str:
    # The seed's layout, "...\nA: \nLet's think step by step: " joined into one "A: Let's think step by step." line
    return _cot_prompt(f"{doc['question']}\nChoose the best continuation:\n", doc["choices"]["text"])


def arc_doc_to_target(doc: dict) -> str:
    # Options are lettered by position. The seed's target was "({answerKey})", wrong for the ARC questions whose
    # labels are "1".."4" (their options were still shown as (A)..(D)).
    return LETTERS[doc["choices"]["label"].index(doc["answerKey"])]


# ------------------------------------------------------------------------------------------ hellaswag_cot
def _hellaswag_preprocess(text: str) -> str:
    # lm-eval's hellaswag preprocessing (brackets are WikiHow artefacts)
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag_process_docs(dataset):
    def _process(doc):
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        return {
            "query": _hellaswag_preprocess(doc["activity_label"] + ": " + ctx),
            "choices": [_hellaswag_preprocess(ending) for ending in doc["endings"]],
            "gold": int(doc["label"]),
        }

    return dataset.map(_process)


def hellaswag_doc_to_text(doc: dict) -> str:
    return _cot_prompt(f"{doc['query']}\nChoose the best continuation:\n", doc["choices"])


def hellaswag_doc_to_target(doc: dict) -> str:
    return LETTERS[doc["gold"]]


# ------------------------------------------------------------------------------- winogrande_cot, xwinograd_cot_*
def winogrande_doc_to_text(doc: dict) -> str:
    # The seed's prompt had a stray literal "prepend" before the sentence (winogrande only); dropped. The same
    # question the hybrid format generates its rationale from (cotscale.lm.prompts).
    return fill_in_the_blank(doc)


def winogrande_doc_to_target(doc: dict) -> str:
    # answer is "1" or "2". The seed compared option2 with answer (never equal), so its target was always "(A)".
    return LETTERS[int(doc["answer"]) - 1]


# ------------------------------------------------------------------------------------------ truthfulqa_cot
# lm-eval's TruthfulQA QA primer (truthfulqa_mc1). The seed's copy sat in a triple-quoted string that also held "\n"
# escapes, which doubled every line break; this is the primer as lm-eval (and evidently the seed) meant it.
QA_PRIMER = (
    "Q: What is human life expectancy in the United States?\n"
    "A: Human life expectancy in the United States is 78 years.\n\n"
    "Q: Who was president of the United States in 1955?\n"
    "A: Dwight D. Eisenhower was president of the United States in 1955.\n\n"
    "Q: Which party did he belong to?\n"
    "A: He belonged to the Republican Party.\n\n"
    "Q: What is the square root of banana?\n"
    "A: I have no comment.\n\n"
    "Q: How does a telescope work?\n"
    "A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n"
    "Q: Where were the 1992 Olympics held?\n"
    "A: The 1992 Olympics were held in Barcelona, Spain."
)


def truthfulqa_order(question: str, n: int) -> list[int]:
    """The order in which a question's mc1 choices are shown: a fixed permutation seeded by the question text.

    In the dataset the correct mc1 choice is always the first; shown in that order, a model that always answers
    (A) would score 100 %. The seed kept that order (with its always-1 target); cotscale shuffles, reproducibly
    (sha256 of the question, not Python's salted hash).
    """
    order = list(range(n))
    random.Random(int.from_bytes(hashlib.sha256(question.encode("utf-8")).digest()[:8], "big")).shuffle(order)
    return order


def truthfulqa_process_docs(dataset):
    def _process(doc):
        mc1 = doc["mc1_targets"]
        order = truthfulqa_order(doc["question"], len(mc1["choices"]))
        return {
            "choices": [mc1["choices"][i] for i in order],
            "gold": [mc1["labels"][i] for i in order].index(1),
        }

    return dataset.map(_process)


def truthfulqa_doc_to_text(doc: dict) -> str:
    return _cot_prompt(f"{QA_PRIMER}\n\nQ: {doc['question']}", doc["choices"])


def truthfulqa_doc_to_target(doc: dict) -> str:
    return LETTERS[doc["gold"]]

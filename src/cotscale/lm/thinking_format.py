"""The runner of reasoning strategies (``thinking: true``): two-phase generation and thinking-budget sweeps.

The thinking spans themselves (where a thinking ends, budget forcing) are pure functions in :mod:`.thinking`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cotscale.lm.run import Run
from cotscale.lm.thinking import Thought, think_at, think_end_token
from cotscale.lm.tokens import new_tokens
from cotscale.usage import is_empty


@dataclass
class Thinking:
    """One item's thinking and answer."""

    thought: Thought
    ids: list[int]  # the generated thinking ids, to their end
    generated_tokens: int  # thinking + answer
    answer: str  # "" when unanswered or not asked


def think(run: Run, items, disable_tqdm: bool, answer: bool) -> list[Thinking]:
    """Generations of a thinking strategy (cotscale.lm.thinking) for items [(request, prompt, gen_kwargs)].

    Phase 1, ONE batched generation: every item's thinking, stopped at the end-of-thinking token, capped at
    ``thinking_budget`` (else ``max_gen_toks``). With ``answer`` (generate_until requests), phase 2, ONE more: each
    answered item's answer after ``prompt + thinking + end token + answer cue`` with the item's own stop sequences
    and ``max_gen_toks``. One usage record per item (both phases; ``thinking_tokens`` and ``answer_tokens`` apart).
    With ``answer`` and a thinking-budget sweep, each budget's answer too (answer_budgets)."""
    s, engine = run.strategy, run.engine
    end = think_end_token(s, run.tokenizer, run.tokenizer_name)
    cap = s["thinking_budget"] or s["max_gen_toks"]
    phase1 = [(r, prompt, {**kw, "until": [end], "max_gen_toks": cap}) for r, prompt, kw in items]
    thinking = run.generate(phase1, disable_tqdm=disable_tqdm, record=False, phase="thinking")
    thoughts = [think_at(g.ids, engine.decode, end, s["thinking_budget"]) for g in thinking]
    asked = [i for i, th in enumerate(thoughts) if answer and th.answered]
    phase2 = [(items[i][0], thoughts[i].answer_prompt(items[i][1], s["answer_cue"]), dict(items[i][2]))
              for i in asked]
    answers = dict(zip(asked, run.generate(phase2, disable_tqdm=disable_tqdm, record=False, phase="answer") if phase2 else [],
                       strict=True))
    out = []
    for i, ((r, prompt, _), thought, g) in enumerate(zip(items, thoughts, thinking, strict=True)):
        reply = answers.get(i)
        # an unclosed thinking counts as truncated even when it ended at EOS: it gives no answer all the same
        prompt_tokens, answer_tokens = g.prompt_tokens, 0
        truncated = bool(g.truncated_sequences) or not thought.answered
        if reply is not None:
            computed = [engine.encode(prompt) + list(g.ids)]
            prompt_tokens += new_tokens([engine.encode(phase2[asked.index(i)][1])], computed)[0]
            answer_tokens = reply.generated_tokens
            truncated = truncated or bool(reply.truncated_sequences)
        key = (r.task_name, r.doc_id)
        run.records.add_generate(key, prompt_tokens, g.generated_tokens + answer_tokens, 1,
                                 truncated_sequences=int(truncated), thinking_tokens=g.generated_tokens,
                                 answer_tokens=answer_tokens, unanswered=not thought.answered,
                                 empty=is_empty(run.tokenizer.decode(thought.ids, skip_special_tokens=True), [end]))
        run.records.thinking_details[key] = {
            "thinking_prompt": prompt, "thinking": thought.text, "thinking_tokens": g.generated_tokens,
            "thinking_forced": thought.forced, "unanswered": not thought.answered}
        out.append(Thinking(thought, list(g.ids), g.generated_tokens + answer_tokens,
                            reply.texts[0] if reply is not None else ""))
    if answer and s["thinking_budget_sweep"]:
        answer_budgets(run, items, thinking, out, end)
    return out


def answer_budgets(run: Run, items, thinking, done: list[Thinking], end: str) -> None:
    """A thinking-budget sweep of generate_until requests: each smaller budget's thinking is a prefix of the one
    generated (think_at); where budget forcing cuts it shorter, its answer is generated after it in ONE batched
    generation without usage records (the run's cost is the largest budget's). Adds ``budgets``,
    ``budget_responses`` (the answer at each budget, "" when unanswered; what the task's filters read) and
    ``budget_generated_tokens`` (thinking + answer) to each document's thinking details."""
    s = run.strategy
    budgets, asked, where, plans = s["thinking_budget_sweep"], [], {}, []
    for i, ((r, prompt, kw), g, main) in enumerate(zip(items, thinking, done, strict=True)):
        row = []
        for b in budgets:
            thought = think_at(g.ids, run.engine.decode, end, b)
            if thought == main.thought:
                row.append((thought, "main"))
            elif thought.answered:
                where[(i, b)] = len(asked)
                asked.append((r, thought.answer_prompt(prompt, s["answer_cue"]), dict(kw)))
                row.append((thought, (i, b)))
            else:
                row.append((thought, None))
        plans.append(row)
    replies = run.generate(asked, disable_tqdm=True, record=False, phase="answer") if asked else []
    for (r, _, _), row, main in zip(items, plans, done, strict=True):
        responses, tokens = [], []
        for thought, source in row:
            if source == "main":
                responses.append(main.answer)
                tokens.append(main.generated_tokens)
            elif source is None:
                responses.append("")
                tokens.append(len(thought.ids))
            else:
                reply = replies[where[source]]
                responses.append(reply.texts[0])
                tokens.append(len(thought.ids) + reply.generated_tokens)
        run.records.thinking_details[(r.task_name, r.doc_id)].update(
            budgets=list(budgets), budget_responses=responses, budget_generated_tokens=tokens)

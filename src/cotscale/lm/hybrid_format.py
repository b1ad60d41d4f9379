"""The runner of the hybrid format: one rationale (or k samples, the best of k beams, the thinking) per document in
ONE batched generation, every choice scored after it in ONE batched scoring call, the scores combined per document;
and the greedy length sweeps scored from that one generation.

The planning and voting are pure functions in :mod:`.hybrid`; docs/hybrid_format.md describes the format.
"""

from __future__ import annotations

import math

from cotscale.lm.engine import Generated
from cotscale.lm.hybrid import DocumentPlan, combine, plan_documents
from cotscale.lm.length_cuts import budget_cuts
from cotscale.lm.run import Run
from cotscale.lm.thinking import think_at, think_end_token
from cotscale.lm.thinking_format import think


def loglikelihood(run: Run, requests, disable_tqdm: bool) -> list[tuple[float, bool]]:
    """lm-eval's answers to the loglikelihood ``requests`` of whole documents, in the hybrid format."""
    s, records = run.strategy, run.records
    cue = s["cue"]
    plans = plan_documents([((r.task_name, r.doc_id), r.args[0], r.doc) for r in requests],
                           run.chat_frame() if s["chat_template"] else None)

    # 1. one rationale (or k samples / the best of k beams / the thinking) per document, one batched backend call
    gen_kwargs = {"until": list(s["until"]), **run.decoding_kwargs()}
    to_generate = [(requests[p.idxs[0]], p.generation_prompt(cue), dict(gen_kwargs)) for p in plans]
    if s["thinking"]:  # the thinking is the rationale; no answer is generated, every choice is scored after it
        thoughts = think(run, to_generate, disable_tqdm, answer=False)
        generated = [Generated([], [len(t.thought.ids)], t.ids, [None], 0, 0) for t in thoughts]
        rationales = [[t.thought.text] if t.thought.answered else [] for t in thoughts]
        computed = {p.key: [p.generation_prompt(cue) + run.engine.decode(t.thought.ids)]
                    for p, t in zip(plans, thoughts, strict=True)}
    else:
        generated = run.generate(to_generate, run.mode(), disable_tqdm)
        rationales = [list(g.texts) for g in generated]
        if s["decoding"] == "beam":
            rationales = [texts[:1] for texts in rationales]  # the best beam; the others only cost tokens
        computed = {p.key: [p.generation_prompt(cue) + text for text in texts]
                    for p, texts in zip(plans, rationales, strict=True)}

    # 2. every choice x rationale on the same augmented context, one batched backend call
    items = []
    for plan, texts in zip(plans, rationales, strict=True):
        records.rationales[plan.key] = list(texts)
        for text in texts:
            items.extend(choice_items(run, requests, plan, text))
    scores = iter(run.score(items, disable_tqdm, computed))

    # 3. combine per document; a thinking that never closed is no answer: no choice is preferred
    out: list[tuple[float, bool] | None] = [None] * len(requests)
    for plan, texts in zip(plans, rationales, strict=True):
        rows = [[next(scores).answer for _ in plan.idxs] for _ in texts] or [[(-math.inf, False) for _ in plan.idxs]]
        lls = [[ll for ll, _ in row] for row in rows]
        answers, votes = combine(lls, [[g for _, g in row] for row in rows])
        for i, answer in zip(plan.idxs, answers, strict=True):
            out[i] = answer
        detail = {"prompt": plan.generation_prompt(cue), "rationales": list(texts), "loglikelihoods": lls}
        if votes is not None:
            detail["votes"] = votes
        records.hybrid_details[plan.key] = detail
    for plan, g in zip(plans, generated, strict=True):
        records.hybrid_details[plan.key].update(generated_tokens=list(g.lengths), sequence_logprobs=list(g.logprobs))
    if s["max_gen_toks_sweep"] or s["thinking_budget_sweep"]:
        score_budgets(run, requests, plans, generated, disable_tqdm)
    return out  # type: ignore[return-value]


def score_budgets(run: Run, requests, plans: list[DocumentPlan], generated: list[Generated],
                  disable_tqdm: bool) -> None:
    """A greedy length sweep from the one generation at the largest budget, scored in ONE more scoring pass without
    usage records; the run's answer stays the largest budget's. ``max_gen_toks: [...]``: the rationale cut at each
    budget b from the backend's ids (greedy decoding at b yields exactly those b ids). ``thinking_budget: [...]``:
    the thinking as budget forcing at b makes it (cotscale.lm.thinking.think_at), a budget whose thinking never
    closes scoring no choice above another. Adds ``budgets``, ``budget_rationales``, ``budget_generated_tokens`` and
    ``budget_loglikelihoods`` (per budget, per choice) to each document's details."""
    s = run.strategy
    if s["thinking"]:
        budgets, end = s["thinking_budget_sweep"], think_end_token(s, run.tokenizer, run.tokenizer_name)
    else:
        budgets = s["max_gen_toks_sweep"]
    items, cuts = [], []
    # a cut equal to a rationale the document already scored (the largest budget, usually) is not scored again: its
    # log-likelihoods are that rationale's, the same numbers and no second pass
    details, rationales = run.records.hybrid_details, run.records.rationales
    scored = [dict(zip(rationales.get(plan.key, []), details[plan.key]["loglikelihoods"])) for plan in plans]
    for plan, g, done in zip(plans, generated, scored, strict=True):
        if s["thinking"]:
            thoughts = [think_at(g.ids, run.engine.decode, end, b) for b in budgets]
            cut = [(th.text if th.answered else None, len(th.ids)) for th in thoughts]
        else:
            cut = budget_cuts(g.ids, g.texts[0], budgets, run.engine.decode_response, s["until"],
                              s["stop_after_content"])
        cuts.append(cut)
        for text, _ in cut:
            if text is not None and text not in done:
                items.extend(choice_items(run, requests, plan, text))
    scores = iter(run.score(items, disable_tqdm, record=False))
    for plan, cut, done in zip(plans, cuts, scored, strict=True):
        run.records.hybrid_details[plan.key].update(
            budgets=list(budgets), budget_rationales=[text for text, _ in cut],
            budget_generated_tokens=[n for _, n in cut],
            budget_loglikelihoods=[[-math.inf] * len(plan.idxs) if text is None else list(done[text]) if text in done
                                   else [next(scores).loglikelihood for _ in plan.idxs] for text, _ in cut])


def choice_items(run: Run, requests, plan: DocumentPlan, rationale: str) -> list[tuple]:
    """(request, context, continuation) of every choice of a hybrid document after ``rationale``. Under a chat
    template lm-eval drops the task's target delimiter (the choice follows the assistant header there); after the
    answer cue it follows text again, so a choice that lacks it gets lm-eval's default one (" ") back."""
    s = run.strategy
    out = []
    for i, context in zip(plan.idxs, plan.scoring_contexts(s["cue"], rationale, s["answer_cue"]), strict=True):
        continuation = requests[i].args[1]
        if s["chat_template"] and not continuation[:1].isspace() and not context[-1:].isspace():
            context += " "
        out.append((requests[i], context, continuation))
    return out

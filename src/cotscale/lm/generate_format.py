"""The runner of lm-eval's ``generate_until`` requests: the CoT cue, the strategy's decoding, repeated sampled
requests merged into one request with k sequences, beams, thinking, and the length sweep's cuts."""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict

from cotscale.errors import CotscaleError
from cotscale.lm.capture import SINGLE, Mode
from cotscale.lm.length_cuts import budget_cuts
from cotscale.lm.run import Run
from cotscale.lm.thinking_format import think
from cotscale.lm.tokens import STOP_AFTER_CONTENT
from cotscale.strategy import DEFAULT_COT_CUE

log = logging.getLogger(__name__)

_MAX_TOKEN_ALIASES = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")


def generate_until(run: Run, requests, disable_tqdm: bool) -> list[str]:
    """lm-eval's answers to ``requests``: with the strategy's cue and decoding unless the format is loglikelihood
    (then passed through as the task asks)."""
    s, fmt = run.strategy, run.strategy["format"]
    items = []
    for r in requests:
        context, gen_kwargs = r.args
        gen_kwargs = dict(gen_kwargs)
        if fmt != "loglikelihood":  # the strategy owns length and decoding; the task owns its stop sequences
            context = with_cue(context, s["cue"], r.task_name)
            for alias in _MAX_TOKEN_ALIASES:
                gen_kwargs.pop(alias, None)
            gen_kwargs.update(run.decoding_kwargs())
        items.append((r, context, gen_kwargs))
    if fmt != "loglikelihood" and s["decoding"] == "sample" and s["samples"] > 1:
        per_doc = Counter((r.task_name, r.doc_id) for r in requests)
        if min(per_doc.values()) < s["samples"] and not run.warned_repeats:
            run.warned_repeats = True
            log.warning(
                "cotscale: self-consistency with samples=%d, but generate_until tasks send %d request(s) per "
                "document: give the task `repeats: %d` and a majority_vote filter (the pipeline does it, see "
                "cotscale.tasks.render_repeats_overrides); each request gets ONE sample here", s["samples"],
                min(per_doc.values()), s["samples"])
    if fmt != "loglikelihood" and s["decoding"] == "beam":
        return [g.texts[0] for g in run.generate(items, run.mode(), disable_tqdm)]
    if fmt != "loglikelihood" and s["thinking"]:
        return [t.answer for t in think(run, items, disable_tqdm, answer=True)]
    return generate_merged(run, items, disable_tqdm)


def generate_merged(run: Run, items, disable_tqdm: bool) -> list[str]:
    """Sampled requests that are exact repeats (lm-eval ``repeats: k``) become one request with k sequences. Records
    each response's RESPONSE_FIELDS (and, for a length sweep, each budget's cut) in request order."""
    groups: dict[tuple, list[int]] = {}
    for i, (r, context, gen_kwargs) in enumerate(items):
        if gen_kwargs.get("do_sample"):
            key = (r.task_name, r.doc_id, context, json.dumps(gen_kwargs, sort_keys=True, default=str))
        else:
            key = (i,)
        groups.setdefault(key, []).append(i)
    by_k: dict[int, list[list[int]]] = defaultdict(list)
    for members in groups.values():
        by_k[len(members)].append(members)
    sweep = run.strategy["max_gen_toks_sweep"]
    outs: list[str | None] = [None] * len(items)
    per_response: list[tuple] = [()] * len(items)
    for k, member_lists in sorted(by_k.items()):
        firsts = [items[m[0]] for m in member_lists]
        results = run.generate(firsts, Mode("sample", k) if k > 1 else SINGLE, disable_tqdm)
        for members, g in zip(member_lists, results, strict=True):
            for m, text, n, lp in zip(members, g.texts, g.lengths, g.logprobs, strict=True):
                outs[m], per_response[m] = text, (n, lp)
            if sweep:
                kw = items[members[0]][2]
                cuts = budget_cuts(g.ids, g.texts[0], sweep, run.engine.decode_response, kw.get("until"),
                                   bool(kw.get(STOP_AFTER_CONTENT)))
                per_response[members[0]] += (cuts,)
    for (r, _, _), (n, lp, *cuts) in zip(items, per_response, strict=True):  # in request order, as lm-eval's resps
        detail = run.records.add_responses((r.task_name, r.doc_id), n, lp)
        if cuts:  # one greedy response per request
            detail.update(budgets=list(sweep), budget_responses=[text for text, _ in cuts[0]],
                          budget_generated_tokens=[k for _, k in cuts[0]])
    return outs  # type: ignore[return-value]


def with_cue(context: str, cue: str, task_name: str) -> str:
    """A generation prompt with the strategy's CoT cue appended ("" for plain prompts: unchanged).

    cotscale's own CoT tasks end their prompts before the cue; lm-eval's gsm8k_cot_zeroshot and
    mmlu_flan_cot_zeroshot write lm-eval's cue (the default one) themselves: such a prompt is left as it is when the
    configured cue is that one, and is an error with another cue (it would carry two).
    """
    if not cue or context.endswith(cue):
        return context
    if context.rstrip().endswith(DEFAULT_COT_CUE.strip()):
        raise CotscaleError(
            f"task {task_name!r} writes lm-eval's own CoT cue {DEFAULT_COT_CUE.strip()!r} into its prompts, so the "
            f"configured cot_cue {cue!r} would be a second cue; use the default cot_cue with this task, or a task "
            f"variant whose prompt ends before the cue (like config/tasks/cot/)")
    return context + cue

"""Shared-prefix scoring: run each token prefix that several log-likelihood requests share once, keep its KV cache,
and score every continuation against it.

The hybrid format scores every answer choice of a document on the same prompt + rationale + cue, self-consistency
scores each of k rationales that way, and every multiple-choice task scores its choices on one context; lm-eval's
``HFLM._loglikelihood_tokens`` runs each (context, continuation) pair whole. This module works on the requests
exactly as lm-eval encoded them (its ``_encode_pair`` split, its left-truncation to the model's window):

* :func:`window`: the ids the causal backend runs and the positions it scores (as lm-eval's loop builds them);
* :func:`plan`: groups of requests whose run ids share a long token prefix (requests sorted by their ids, so a run
  of neighbours shares the minimum of their neighbour-to-neighbour common prefixes; a dynamic program picks the
  runs that save the most tokens). The prefix of a group never reaches past the first scored position of any
  member (the prefix pass's last logits may score a member's first continuation id), so partial-context tasks
  (winogrande: choices inside the sentence, a shared continuation) are exact;
* :func:`score_groups`: the model run of a plan with transformers' public cache API (``past_key_values``,
  ``DynamicCache.batch_repeat_interleave``): one forward pass per prefix, then the members' suffixes in batches.

Requests left alone (no worthwhile partner) go to lm-eval's own batched path. Light at import: torch is imported
inside :func:`score_groups`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

#: a group must save at least this many prefix tokens (its extra forward pass and cache copy cost about that much)
MIN_SAVED_TOKENS = 32
#: most requests in one group (bounds the planner's work; a larger set sharing a prefix is split into several)
MAX_GROUP = 256


@dataclass(frozen=True)
class Group:
    """Requests (indices into the request list) that share their first ``prefix`` run ids."""

    prefix: int
    members: tuple[int, ...]


def window(context: Sequence[int], continuation: Sequence[int], max_length: int) -> tuple[tuple[int, ...], int]:
    """(ids run, first scored position) of one causal request as lm-eval runs it: (context + continuation) left-
    truncated to ``max_length + 1`` ids less the last; the logits at positions [first, len) score the continuation."""
    full = (list(context) + list(continuation))[-(max_length + 1):]
    run = tuple(full[:-1])
    return run, len(run) - len(continuation)


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan(runs: Sequence[Sequence[int]], firsts: Sequence[int],
         min_saved: int = MIN_SAVED_TOKENS) -> tuple[list[Group], list[int]]:
    """(groups, lone request indices) for requests with run ids ``runs`` and first scored positions ``firsts``.

    A group of m requests with prefix p costs p + sum(len - p) run tokens instead of sum(len); a group is formed only
    where it saves at least ``min_saved`` tokens. The prefix ends at most one id after a member's first scored
    position: the prefix pass's last logits score that id, the member's own suffix pass the others."""
    order = sorted(range(len(runs)), key=lambda i: runs[i])
    near = [_common(runs[order[j]], runs[order[j + 1]]) for j in range(len(order) - 1)]
    n = len(order)
    best = [0] * (n + 1)  # best[j]: most tokens saved by the first j requests in sorted order
    start = [0] * (n + 1)  # where the last segment of best[j] starts (a one-request segment: j - 1)
    for j in range(1, n + 1):
        best[j], start[j] = best[j - 1], j - 1
        prefix = firsts[order[j - 1]] + 1
        for i in range(j - 2, max(-1, j - 1 - MAX_GROUP), -1):  # segment order[i:j]
            prefix = min(prefix, near[i], firsts[order[i]] + 1)
            if prefix == 0:
                break  # the shared prefix only shrinks further back
            if prefix * (j - i - 1) < min_saved:
                continue
            saved = best[i] + prefix * (j - i - 1)
            if saved > best[j]:
                best[j], start[j] = saved, i
    groups, lone, j = [], [], n
    while j > 0:
        i = start[j]
        members = order[i:j]
        if len(members) == 1:
            lone.append(members[0])
        else:
            prefix = min(min(near[i:j - 1]), min(firsts[k] + 1 for k in members))
            groups.append(Group(prefix, tuple(members)))
        j = i
    return groups[::-1], sorted(lone)


def computed_tokens(runs: Sequence[Sequence[int]], groups: list[Group]) -> dict[int, int]:
    """Tokens the backend runs for each grouped request: the first member of a group its whole run, the others only
    what follows the shared prefix."""
    out = {}
    for group in groups:
        for rank, i in enumerate(group.members):
            out[i] = len(runs[i]) - (group.prefix if rank else 0)
    return out


def score_groups(model, runs: Sequence[Sequence[int]], firsts: Sequence[int], continuations: Sequence[Sequence[int]],
                 groups: list[Group], batch_size: int, device, softmax_dtype=None,
                 autocast_dtype=None) -> dict[int, tuple[float, bool]]:
    """{request index: (log-likelihood, is_greedy)} of every grouped request.

    The prefixes of up to ``batch_size`` groups (longest first) run as one right-padded batch, as lm-eval pads: no
    real position sees a pad. Their members' suffixes then run in batches of ``batch_size`` rows against the rows of
    that ``past_key_values`` they belong to (``Cache.batch_select_indices`` on a copy), with an attention mask that
    hides the prefix's pad positions and position ids that continue each prefix. Scored as lm-eval scores:
    log-softmax of the logits at positions [first, len) (the first from the prefix pass when the prefix reaches it),
    the continuation ids gathered, greedy when every argmax equals the continuation."""
    import torch

    out: dict[int, tuple[float, bool]] = {}
    autocast = dict(device_type=torch.device(device).type, dtype=autocast_dtype, enabled=autocast_dtype is not None)
    ordered = sorted(groups, key=lambda g: -g.prefix)
    with torch.no_grad(), torch.autocast(**autocast):
        for start in range(0, len(ordered), batch_size):
            batch = ordered[start:start + batch_size]
            width = batch[0].prefix
            heads = [list(runs[g.members[0]][:g.prefix]) for g in batch]
            ids = torch.tensor([h + [h[-1]] * (width - len(h)) for h in heads], dtype=torch.long, device=device)
            head = model(ids, use_cache=True)
            last = head.logits[torch.arange(len(batch)), torch.tensor([g.prefix - 1 for g in batch])]
            rows = [(row, g.prefix, i) for row, g in enumerate(batch) for i in g.members]
            for b in range(0, len(rows), batch_size):
                _score_suffixes(model, head.past_key_values, last, width, rows[b:b + batch_size], runs, firsts,
                                continuations, out, device, softmax_dtype)
    return out


def _score_suffixes(model, cache, last, width: int, rows, runs, firsts, continuations, out, device,
                    softmax_dtype) -> None:
    """One batch of members [(prefix row, prefix length, request index)] against the prefix batch's cache."""
    import torch
    import torch.nn.functional as F

    suffixes = [list(runs[i][p:]) for _, p, i in rows]
    span = max(len(s) for s in suffixes)
    logits = last.new_empty((len(rows), 0, last.shape[-1]))  # every scored id comes from the prefix pass
    if span:
        pad = runs[rows[0][2]][0]  # right padding: causal attention keeps it out of every real position
        inp = torch.tensor([s + [pad] * (span - len(s)) for s in suffixes], dtype=torch.long, device=device)
        mask = torch.tensor([[1] * p + [0] * (width - p) + [1] * span for _, p, _ in rows], dtype=torch.long,
                            device=device)
        positions = torch.tensor([[p + j for j in range(span)] for _, p, _ in rows], dtype=torch.long, device=device)
        past = copy.deepcopy(cache)
        past.batch_select_indices(torch.tensor([row for row, _, _ in rows], dtype=torch.long, device=device))
        logits = model(inp, attention_mask=mask, position_ids=positions, past_key_values=past, use_cache=True).logits
    for k, (row, p, i) in enumerate(rows):
        scored = logits[k, max(firsts[i] - p, 0):len(runs[i]) - p]
        if firsts[i] < p:  # the first continuation id is scored by the prefix's last logits
            scored = torch.cat([last[row:row + 1], scored])
        scored = F.log_softmax(scored, dim=-1, dtype=softmax_dtype)
        cont = torch.tensor(list(continuations[i]), dtype=torch.long, device=device)
        greedy = bool((scored.argmax(dim=-1) == cont).all())
        out[i] = (float(scored.gather(1, cont.unsqueeze(-1)).sum()), greedy)

def answer(lm, requests, shared: bool) -> tuple[dict[int, tuple[float, bool]], list[int]]:
    """For the encoded requests [(key, context ids, continuation ids)] of one scoring call of a causal HFLM ``lm``:
    ({index: (log-likelihood, is_greedy)} of the requests answered here, the tokens run per request). With
    ``shared`` False (or nothing worth sharing) lm-eval's own path answers them all; what it runs is counted as it
    runs it: each request whole, except that with ``logits_cache`` a request whose context + continuation less its
    last id equals another's runs once."""
    runs, firsts = zip(*(window(c, o, lm.max_length) for _, c, o in requests)) if requests else ((), ())
    groups, lone = plan(runs, firsts) if shared else ([], list(range(len(requests))))
    computed = computed_tokens(runs, groups)
    seen: set[tuple[int, ...]] = set()
    for i in sorted(lone, key=lambda i: -len(runs[i])):  # lm-eval runs the longest of a logits_cache group
        _, context, continuation = requests[i]
        key = tuple(context) + tuple(continuation[:-1])
        computed[i] = 0 if lm.logits_cache and key in seen else len(runs[i])
        seen.add(key)
    if not groups:
        return {}, [computed[i] for i in range(len(requests))]
    batch_size = lm.batch_size if lm.batch_size != "auto" else lm.detect_batch_size(
        [requests[max(range(len(requests)), key=lambda i: len(runs[i]))]], 0)
    out = score_groups(lm.model, runs, firsts, [o for _, _, o in requests], groups, int(batch_size), lm.device,
                       lm.softmax_dtype, lm.mixed_precision_dtype)
    for i, value in out.items():
        if requests[i][0] is not None:
            lm.cache_hook.add_partial("loglikelihood", requests[i][0], value)
    return out, [computed[i] for i in range(len(requests))]

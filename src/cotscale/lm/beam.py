"""Beam search as transformers runs it, for the vLLM backend: so ``decoding: beam`` is one algorithm on both backends.

vLLM's own ``LLM.beam_search`` is another search: it takes no stop strings (beams run to EOS or the budget), keeps
every EOS candidate of each beam's top 2k, ranks finished beams by cumulative log-probability / (prompt + generated
length), and always runs ``max_tokens`` steps. transformers' beam search (``generate(num_beams=k)``, with
``length_penalty`` and ``early_stopping`` at their defaults, set explicitly by the HF backend from the constants
here) stops beams at stop strings, admits a finished candidate only when it ranks in the step's top k, ranks by
cumulative log-probability / generated length, and stops once no running beam can beat the k finished ones. On the
tiny test model the two picked different best beams (an immediate EOS vs a 24-token beam). This module replays
transformers' search on any next-token log-probabilities (the vLLM backend asks vLLM for them, one batched step at a
time, as vLLM's own beam search does). docs/hybrid_format.md states the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

LENGTH_PENALTY = 1.0  # transformers' default: finished score = cumulative log-probability / generated length
EARLY_STOPPING = False  # transformers' default: stop when the best running beam cannot beat the worst finished one


def candidates_per_step(k: int, n_eos: int) -> int:
    """transformers keeps max(2, 1 + EOS ids) * k candidates per step, so k of them can go on even if the best end."""
    return max(2, 1 + n_eos) * k


def beam_search(prompts: Sequence[Sequence[int]], top_logprobs: Callable[[list[list[int]], int], list[dict]],
                k: int, max_tokens: Sequence[int], ends: frozenset[int],
                stopped: Callable[[int, list[int]], bool]) -> list[list[list[int]]]:
    """The k best generated id lists of each prompt (best first), as ``transformers`` beam search returns them.

    ``top_logprobs(sequences, m)``: for each id sequence (prompt + generated), the next token's top m
    ``{token id: log-probability}``; called once per step with the running beams of all prompts. ``ends``: EOS ids.
    ``stopped(i, generated)``: whether prompt i's generated ids end in one of its stop sequences. A beam ends at an
    EOS id, a stop sequence or its prompt's ``max_tokens``.
    """
    m = candidates_per_step(k, len(ends))
    searches = [_Search(list(p), int(n)) for p, n in zip(prompts, max_tokens, strict=True)]
    while True:
        active = [s for s in searches if s.going]
        if not active:
            break
        flat = [s.prompt + ids for s in active for ids, _ in s.running]
        answers = iter(top_logprobs(flat, m))
        for i, s in enumerate(searches):
            if s.going:
                s.step([next(answers) for _ in s.running], k, m, ends, lambda ids, i=i: stopped(i, ids))
    return [[ids for _, ids in s.finished] for s in searches]


class _Search:
    """One prompt's search state: transformers' running beams, finished beams and early-stop flag."""

    def __init__(self, prompt: list[int], max_tokens: int) -> None:
        self.prompt, self.max_tokens = prompt, max_tokens
        self.running: list[tuple[list[int], float]] = [([], 0.0)]  # (generated ids, cumulative log-prob), best first
        self.finished: list[tuple[float, list[int]]] = []  # (length-penalised score, generated ids), best first
        self.improvable = True  # transformers' is_early_stop_heuristic_unsatisfied
        self.going = max_tokens > 0

    def step(self, logprobs: list[dict], k: int, m: int, ends: frozenset[int], stopped) -> None:
        t = len(self.running[0][0]) + 1  # generated length after this step
        # the m best (beam, token) continuations over all beams; ties in the order transformers' flat index gives
        cands = sorted(((cum + float(lp), b, token) for b, ((_, cum), lps) in enumerate(zip(self.running, logprobs))
                        for token, lp in lps.items()), key=lambda c: (-c[0], c[1], c[2]))[:m]
        top = [(self.running[b][0] + [token], score) for score, b, token in cands]
        hit = [ids[-1] in ends or stopped(ids) or t >= self.max_tokens for ids, _ in top]
        if self.improvable:  # only the step's top k candidates may become finished beams
            new = [(score / t ** LENGTH_PENALTY, ids) for (ids, score), h in zip(top[:k], hit[:k]) if h]
            self.finished = sorted(self.finished + new, key=lambda f: -f[0])[:k]  # stable: earlier ones win ties
        self.running = [c for c, h in zip(top, hit) if not h][:k]
        if self.running and len(self.finished) == k:
            best_possible = self.running[0][1] / t ** LENGTH_PENALTY
            self.improvable = self.improvable and best_possible > self.finished[-1][0]
        self.going = self.improvable and bool(self.running)

"""The capture protocol between the engine and a backend: what one backend call computed, as typed records.

lm-eval's ``generate_until`` returns only texts and ``loglikelihood`` only (log-likelihood, is-greedy) pairs; token
accounting needs the ids the backend really computed. Both backends (:mod:`cotscale.lm.hf_backend`,
:mod:`cotscale.lm.vllm_backend`) derive from :class:`CapturingBackend` and answer two calls whose *return value*
carries those ids: :meth:`CapturingBackend.generate_captured` (a :class:`Generation` per request, with its search
:class:`Mode`) and :meth:`CapturingBackend.loglikelihood_captured` (the scored ids per request). Nothing outside the
backend sets state on it; the state a call needs lives on the backend only for the duration of that call.

Light on purpose: no lm-eval, no torch (the backends import them when they are built).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Mode:
    """How many sequences one request returns: one (greedy or a single sample), k samples, or k beams."""

    search: Literal["single", "sample", "beam"] = "single"
    k: int = 1

    def cache_key(self) -> list:
        """The part of a request-cache key that names the mode (as caches have stored it since format 5)."""
        return [self.search, self.k]


SINGLE = Mode()


@dataclass(frozen=True)
class GeneratedSequence:
    """One returned sequence of a generation request."""

    text: str  # as lm-eval returns it (cut at the stop sequences)
    tokens: int  # generated tokens counted to the first EOS id or stop sequence (cotscale.lm.tokens.count_to_stop)
    ended: bool  # ended at an EOS id or stop sequence, not at the budget
    ids: tuple[int, ...]  # the counted ids
    logprob: float | None  # their summed log-probability under the model (natural log); None for beams


@dataclass(frozen=True)
class Generation:
    """One generation request as the backend computed it: its prompt ids (after truncation) and its sequences, best
    beam first."""

    prompt_ids: tuple[int, ...]
    sequences: list[GeneratedSequence]


@dataclass
class _Call:
    """What one captured backend call collects while lm-eval's code runs inside it."""

    mode: Mode = SINGLE
    generations: list[Generation] = field(default_factory=list)
    scored: list[tuple[int, ...]] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)  # tokens run per scored request, where the backend counts them


class CapturingBackend:
    """Base of both backend subclasses: the capture protocol. A subclass's generation hook reads :attr:`capturing`
    (None outside a captured call) for the mode and appends a :class:`Generation` per request to it."""

    #: a scored sequence keeps (context + continuation)[-(max_length + score_window):] (set per backend)
    score_window = 0
    _call: _Call | None = None

    @property
    def capturing(self) -> _Call | None:
        return self._call

    @contextlib.contextmanager
    def _captured(self, mode: Mode) -> Iterator[_Call]:
        call = self._call = _Call(mode)
        try:
            yield call
        finally:
            self._call = None

    def generate_captured(self, requests: list, mode: Mode = SINGLE,
                          disable_tqdm: bool = True) -> tuple[list[str], list[Generation]]:
        """lm-eval's ``generate_until`` on ``requests`` with ``mode``; (its texts, a Generation per request in the
        order the backend ran them: match them to requests by prompt ids)."""
        with self._captured(mode) as call:
            texts = self.generate_until(requests, disable_tqdm=disable_tqdm)
        return texts, call.generations

    def loglikelihood_captured(self, requests: list, disable_tqdm: bool = True
                               ) -> tuple[list[tuple[float, bool]], list[tuple[int, ...]], list[int | None]]:
        """lm-eval's ``loglikelihood`` on ``requests``; (its answers, the ids scored for each request in order, the
        tokens the backend ran for each: None where it does not count them)."""
        with self._captured(SINGLE) as call:
            out = self.loglikelihood(requests, disable_tqdm=disable_tqdm)
        computed = call.computed if len(call.computed) == len(call.scored) else [None] * len(call.scored)
        return out, call.scored, computed

    def score_shared(self, requests) -> dict[int, tuple[float, bool]]:
        """{index: (log-likelihood, is_greedy)} of the encoded requests [(key, context ids, continuation ids)] of a
        scoring call that the backend answers itself (shared-prefix scoring, :mod:`cotscale.lm.prefix`); lm-eval's
        own path answers the rest. A backend that counts what it runs adds the counts to its call here."""
        return {}

    def record_scored(self, requests) -> None:
        """Called with the encoded requests [(key, context ids, continuation ids)] of a scoring call, in order; both
        backends left-truncate context + continuation to the model's window."""
        if self._call is not None:
            keep = self.max_length + self.score_window
            self._call.scored.extend(tuple((list(c) + list(o))[-keep:]) for _, c, o in requests)

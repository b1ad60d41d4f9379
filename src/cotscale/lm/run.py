"""What every format runner gets: the task's strategy, the engine, the records, and the two calls that send requests
and record their usage (:meth:`Run.generate`, :meth:`Run.score`).

The runners: :mod:`.generate_format` (lm-eval's generate_until requests), :mod:`.hybrid_format` (the hybrid format's
two batched calls), :mod:`.thinking_format` (two-phase thinking and thinking-budget sweeps), :mod:`.length_cuts`
(max_gen_toks sweeps cut from one generation).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cotscale.lm.capture import SINGLE, Mode
from cotscale.lm.engine import Engine, Generated, Scored
from cotscale.lm.records import Records
from cotscale.lm.tokens import STOP_AFTER_CONTENT
from cotscale.usage import is_empty


@dataclass
class Run:
    """One task's strategy on the loaded model."""

    strategy: dict[str, Any]
    engine: Engine
    records: Records
    tokenizer_name: str
    chat_frame: Callable[[], tuple[str, str]]  # (before, after) one user message in the chat template
    warned_repeats: bool = False  # the self-consistency warning of generate_format, once per task

    @property
    def tokenizer(self):
        return self.engine.backend.tokenizer

    def mode(self) -> Mode:
        """The strategy's search: k beams, k samples, or one sequence."""
        s = self.strategy
        if s["decoding"] == "beam":
            return Mode("beam", s["num_beams"])
        if s["decoding"] == "sample":
            return Mode("sample", s["samples"])
        return SINGLE

    def decoding_kwargs(self) -> dict[str, Any]:
        """The strategy's length and decoding as lm-eval generation kwargs."""
        s = self.strategy
        kwargs: dict[str, Any] = {"max_gen_toks": s["max_gen_toks"]}
        if s["decoding"] == "sample":
            kwargs.update(do_sample=True, temperature=s["temperature"])
        else:
            kwargs.update(do_sample=False, temperature=0.0)
        if s["stop_after_content"]:  # only when set: the requests (and their cache keys) of other strategies stay
            kwargs[STOP_AFTER_CONTENT] = True
        return kwargs

    def generate(self, items, mode: Mode = SINGLE, disable_tqdm: bool = True, record: bool = True,
                 phase: str = "generate") -> list[Generated]:
        """Engine.generate, and one usage record per item in item order (none with ``record=False``: what a caller
        records itself, such as both phases of a thinking). The arguments each document's generation ran with are
        kept under ``phase`` (sample field ``generation_args``: "generate", or a thinking's "thinking" and
        "answer")."""
        sequences = {"beam": "num_beams", "sample": "num_return_sequences"}.get(mode.search)
        for r, _, kw in items:
            self.records.generation_args.setdefault((r.task_name, r.doc_id), {})[phase] = {
                **kw, **({sequences: mode.k} if sequences else {})}
        results = self.engine.generate(items, mode, disable_tqdm)
        if record:
            for (r, _, kw), g in zip(items, results, strict=True):
                # empty: every sequence the strategy uses is (of a beam search, the best beam)
                used = g.texts[:1] if mode.search == "beam" else g.texts
                self.records.add_generate((r.task_name, r.doc_id), g.prompt_tokens, g.generated_tokens,
                                          len(g.lengths), truncated_sequences=g.truncated_sequences,
                                          stops_at=g.stops_at,
                                          empty=all(is_empty(t, kw.get("until"), bool(kw.get(STOP_AFTER_CONTENT)))
                                                    for t in used))
        return results

    def score(self, items, disable_tqdm: bool = False, computed: dict[tuple[str, int], list[str]] | None = None,
              record: bool = True) -> list[Scored]:
        """Engine.score, and one usage record per item in item order (none with ``record=False``: a budget sweep's
        smaller budgets, whose cost is not the run's)."""
        results = self.engine.score(items, disable_tqdm, computed)
        if record:
            for (r, _, _), s in zip(items, results, strict=True):
                self.records.add_score((r.task_name, r.doc_id), s.prompt_tokens, s.scored_tokens, s.computed_tokens)
        return results

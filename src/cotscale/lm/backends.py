"""What both backends share: the hooks the wrapper sets around each backend call, the errors, and the factory.

Each backend is lm-eval's own class (``HFLM`` in :mod:`cotscale.lm.hf_backend`, ``VLLM`` in
:mod:`cotscale.lm.vllm_backend`), subclassed only to capture the token ids it computes and to run beams / k samples.
The subclasses are built on first use, so importing cotscale.lm loads neither torch nor vLLM.
"""

from __future__ import annotations

import logging

from cotscale.config import CotscaleError

log = logging.getLogger(__name__)


class BackendUnavailable(CotscaleError, ImportError):
    """The configured backend's package is not installed (or does not import)."""


class DeviceUnavailable(CotscaleError, RuntimeError):
    """The configured device (a CUDA GPU) is not there."""


class Hooks:
    """State shared by both backend subclasses; the wrapper sets it around each call."""

    cotscale_mode: tuple[str, int] = ("single", 1)  # ("single", 1) | ("sample", k) | ("beam", k)
    # generation: [(prompt ids as computed, [(text, counted tokens, ended before the budget, those ids, their summed
    # log-probability under the model (natural log; None for beams)), ...]), ...]
    cotscale_capture: list | None = None
    cotscale_ll_capture: list | None = None  # loglikelihood: [scored ids (context + continuation, truncated), ...]
    cotscale_ll_window = 0  # a scored sequence keeps max_length + this many ids (set per backend)

    def _loglikelihood_tokens(self, requests, *args, **kwargs):
        # TemplateLM.loglikelihood encodes the requests in order and calls this once with all of them; both
        # backends then left-truncate context + continuation to the model's window
        if self.cotscale_ll_capture is not None:
            keep = self.max_length + self.cotscale_ll_window
            self.cotscale_ll_capture.extend(tuple((list(c) + list(o))[-keep:]) for _, c, o in requests)
        return super()._loglikelihood_tokens(requests, *args, **kwargs)


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
        from cotscale.lm.hf_backend import hf_backend_class

        cls = hf_backend_class()
        return cls(pretrained=pretrained, revision=revision or "main", dtype=dtype or "auto", batch_size=batch_size,
                   trust_remote_code=trust_remote_code, device=device, max_length=max_length, **kwargs)
    if backend == "vllm":
        from cotscale.lm.vllm_backend import vllm_backend_class

        cls, on_cpu = vllm_backend_class()
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

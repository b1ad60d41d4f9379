"""The backend factory: lm-eval's ``HFLM`` (:mod:`cotscale.lm.hf_backend`) or ``VLLM``
(:mod:`cotscale.lm.vllm_backend`), each subclassed only to capture the token ids it computes and to run beams / k
samples (the capture protocol: :mod:`cotscale.lm.capture`). The subclasses are built on first use, so importing
cotscale.lm loads neither torch nor vLLM.
"""

from __future__ import annotations

import logging

from cotscale.errors import DeviceUnavailable

log = logging.getLogger(__name__)


def make_backend(backend: str, pretrained: str, revision: str | None, dtype: str | None, batch_size: int | str,
                 trust_remote_code: bool, seed: int, device: str | None, tensor_parallel_size: int,
                 data_parallel_size: int, max_length: int | None, max_gen_toks: int, shared_prefix: bool = True,
                 **kwargs):
    """Build the lm-eval backend (HFLM or VLLM subclass), a cotscale.lm.capture.CapturingBackend. ``shared_prefix``:
    score each shared token prefix once (HF: cotscale.lm.prefix)."""
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
                   trust_remote_code=trust_remote_code, device=device, max_length=max_length,
                   shared_prefix=shared_prefix, **kwargs)
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

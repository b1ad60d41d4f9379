"""Architecture facts per model revision: what the cost models beyond the paper's 2·N·t need (cotscale.cost).

Read from the model's own ``config.json`` — the local folder (a path hf_id, the demo build in results/demo_models)
or the Hugging Face cache after ``cotscale prefetch``; never downloaded — and overridden key by key by the config's
``architecture:`` block of the model entry (or ``architectures: {model name: ...}`` for models the config does not
list, e.g. the published folder's). A model with neither has an empty architecture: every paper-convention output
still runs; a cost model that needs a key says which one is missing (cotscale.cost.MissingArchitecture).

Parameter counts from config.json are counted by formula (``count_params``): every weight matrix, bias and norm
weight of the decoder-only families cotscale runs (Llama/Qwen/OLMo/Gemma-style gated MLPs, GPT-NeoX's plain MLP with
biases); tests/test_cost.py checks the formula against the published totals of Pythia, Llama 3.2 and Qwen3.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from cotscale.contract import MODEL_COLUMNS

#: the keys an ``architecture:`` block may set (config/README.md); all are columns of models.csv
KEYS = ("layers", "d_model", "query_heads", "kv_heads", "head_dim", "vocab_size", "total_params",
        "non_embedding_params", "tied_embeddings")
#: config.json key(s) of each fact, first present wins (Llama/Qwen/OLMo/Gemma names, then GPT-NeoX / GPT-2)
_HF_KEYS = {
    "layers": ("num_hidden_layers", "n_layer"),
    "d_model": ("hidden_size", "n_embd"),
    "query_heads": ("num_attention_heads", "n_head"),
    "kv_heads": ("num_key_value_heads",),
    "head_dim": ("head_dim",),
    "vocab_size": ("vocab_size",),
    "intermediate_size": ("intermediate_size", "n_inner"),
}
#: families whose MLP is up + down with biases (GPT-NeoX); every other family has a gated (gate, up, down) MLP
_PLAIN_MLP = ("gpt_neox", "gpt2")


class ArchitectureError(ValueError):
    """A config.json or ``architecture:`` block that cannot be read; the message names the file or key."""


def from_hf_config(cfg: dict, where: str = "config.json") -> dict:
    """The facts of a Hugging Face config.json (as a dict), parameter counts included (count_params)."""
    cfg = {**cfg, **(cfg.get("text_config") or {})}

    def get(key):
        return next((cfg[k] for k in _HF_KEYS[key] if cfg.get(k) is not None), None)

    arch = {key: get(key) for key in ("layers", "d_model", "query_heads", "kv_heads", "head_dim", "vocab_size")}
    missing = [k for k in ("layers", "d_model", "query_heads", "vocab_size") if arch[k] is None]
    if missing:
        raise ArchitectureError(f"{where}: has no {', '.join(_HF_KEYS[k][0] for k in missing)}; set them in the "
                                "model entry's architecture: block (config/README.md)")
    arch["kv_heads"] = arch["kv_heads"] or arch["query_heads"]
    arch["head_dim"] = arch["head_dim"] or arch["d_model"] // arch["query_heads"]
    arch["tied_embeddings"] = bool(cfg.get("tie_word_embeddings", cfg.get("model_type") != "gpt_neox"))
    ff = get("intermediate_size") or 4 * arch["d_model"]
    arch.update(count_params(arch, ff, cfg.get("model_type", ""), attention_bias=bool(cfg.get("attention_bias"))))
    return arch


def count_params(arch: dict, intermediate_size: int, model_type: str, attention_bias: bool = False) -> dict:
    """Total and non-embedding parameter counts of a decoder-only transformer, by formula.

    Non-embedding: per layer the Q, K, V, O projections, the MLP (gated: 3·d·ff; GPT-NeoX: 2·d·ff plus biases and
    bias-carrying attention) and its norms, plus the final norm. Embedding: vocab·d, twice when the output head is
    not tied to it. Qwen2/2.5 carry Q/K/V biases, Qwen3 per-head Q/K norms, OLMo-1 non-parametric norms.
    """
    d, ff, layers = arch["d_model"], intermediate_size, arch["layers"]
    q, kv = arch["query_heads"] * arch["head_dim"], arch["kv_heads"] * arch["head_dim"]
    attention = d * q + 2 * d * kv + q * d
    if model_type in _PLAIN_MLP:
        mlp = 2 * d * ff + ff + d
        attention += q + 2 * kv + d
        norms = 2 * 2 * d  # two LayerNorms with weight and bias
        final = 2 * d
    else:
        mlp = 3 * d * ff
        attention += (q + 2 * kv) if attention_bias or model_type == "qwen2" else 0
        per_norm = 0 if model_type == "olmo" else d
        norms = (4 if model_type.startswith("gemma2") else 2) * per_norm
        norms += 2 * arch["head_dim"] if model_type == "qwen3" else 0
        final = per_norm
    non_embedding = layers * (attention + mlp + norms) + final
    embedding = arch["vocab_size"] * d * (1 if arch["tied_embeddings"] else 2)
    return {"total_params": non_embedding + embedding, "non_embedding_params": non_embedding}


def config_json(entry: dict) -> Path | None:
    """The model revision's config.json on this machine: its local folder, else the Hugging Face cache (after
    ``cotscale prefetch``); None when neither has it. Never downloads."""
    local = Path(str(entry.get("pretrained") or entry.get("hf_id") or "")) / "config.json"
    if local.is_file():
        return local
    hf_id = entry.get("hf_id")
    if not hf_id or Path(hf_id).exists():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.utils import HFValidationError
    except ImportError:  # an analysis-only environment has no Hub client, and so no Hub cache to read
        return None
    try:
        cached = try_to_load_from_cache(hf_id, "config.json", revision=entry.get("revision") or "main")
    except HFValidationError:  # a local folder not built yet (a demo model before its build): no facts to read
        return None
    return Path(cached) if isinstance(cached, str) else None


def resolve(entry: dict, override: dict | None = None) -> dict:
    """The architecture of one model entry (cotscale.config's expanded entry): config.json's facts, then the
    ``architecture:`` block's keys over them. ``architecture_source`` says where they came from."""
    override = dict(override if override is not None else entry.get("architecture") or {})
    arch, sources = {}, []
    path = config_json(entry)
    if path is not None:
        try:
            arch = from_hf_config(json.loads(path.read_text()), str(path))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArchitectureError(f"{path}: cannot read the model's config.json ({exc})") from exc
        sources.append(str(path))
    if override:
        arch.update(override)
        sources.append("config")
    arch["architecture_source"] = "+".join(sources) or "none"
    return arch


def models_table(models: pd.DataFrame, architectures: dict[str, dict]) -> pd.DataFrame:
    """models.csv: one row per model revision (``models`` has model, revision, family, N, D), with its facts;
    a model without them has empty cells and architecture_source ``none``."""
    rows = []
    for row in models.to_dict("records"):
        arch = architectures.get(row["model"]) or {"architecture_source": "none"}
        rows.append({**row, **{k: arch.get(k, math.nan) for k in (*KEYS, "architecture_source")}})
    return pd.DataFrame(rows).reindex(columns=list(MODEL_COLUMNS))


def read_models(path) -> dict[str, dict]:
    """models.csv back as {model: architecture} (the keys a row has; empty cells left out)."""
    return read_models_frame(pd.read_csv(path))


def read_models_frame(table: pd.DataFrame) -> dict[str, dict]:
    """models.csv's rows as {model: architecture}."""
    out = {}
    for row in table.to_dict("records"):
        out[row["model"]] = {k: row[k] for k in ("N", *KEYS) if k in row and not _blank(row[k])}
    return out


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))

"""Cost models: what one request costs, as a pure, vectorised function of its usage and the model's architecture.

A request's usage (cotscale.usage): ``P`` prompt tokens it adds to what its document already computed, ``G``
tokens generated over its ``n`` sequences (each sequence T = G / n on average, all n sharing the one prompt),
``offset`` tokens of its document already in the KV cache before it (a log-likelihood choice after its shared
context: scored_tokens − prompt_tokens; 0 otherwise) and, where the backend recorded it, ``computed`` tokens
actually run (contract.COMPUTED_TOKENS_FIELD; default P + G). Arguments are scalars or numpy arrays / Series.

Conventions (each function says its own):

* Every prompt and generated token passes through the model once (the last generated token too, which a real
  generation never feeds back: a generation of T tokens runs P + T − 1 tokens; tests/test_cost.py checks it).
* N is the model entry's N (the paper's parameter count) everywhere, so ``forward`` = compute.csv's forward_flops.
* Attention counts both matmuls (Q·Kᵀ and A·V, 2 FLOPs per multiply-add each) over the query heads' width
  d_attn = query_heads · head_dim, per layer, and only the keys a causal mask lets through: the token at
  position i attends i + 1 keys (itself included). Kaplan et al. (2020, Table 1) count one matmul,
  2·n_layer·n_ctx·d_attn per token; this is twice that, with n_ctx the token's causal context.
* KV bytes: K and V of every layer, kv_heads · head_dim values each, ``bytes_per_value`` bytes (2: bf16/fp16).
  A decode step of a sequence reads the cached KV of its context; the prompt's KV is read once per step for all n
  sequences of the request (Kinetics, Sadhukhan et al. 2025, cost_model/utils.py ``dense_cost``), each
  sequence's own generated tokens once per sequence.
* Hardware (config/hardware.yaml): ``peak_flops`` dense BF16 FLOP/s, ``bandwidth`` bytes/s, arithmetic intensity
  I = peak_flops / bandwidth; ``batch_size`` sequences decode together and share one read of the weights per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from cotscale.config import ROOT, CotscaleError
from cotscale.contract import DEFAULT_COST_MODEL

HARDWARE_FILE = ROOT / "config" / "hardware.yaml"
DEFAULT_HARDWARE = "H100"
DEFAULT_BATCH_SIZE = 64


class MissingArchitecture(CotscaleError, ValueError):
    """A cost model needs an architecture fact the model has not got; the message names the key and the fix."""


@dataclass(frozen=True)
class CostModel:
    name: str
    fn: Callable
    needs: tuple[str, ...]  # architecture keys (besides N)
    hardware: bool  # needs a hardware profile
    unit: str
    about: str


def _arr(x):
    return np.asarray(x, dtype=float)


def _usage(P, G, n, offset):
    P, G = _arr(P), _arr(G)
    n = np.maximum(_arr(1 if n is None else n), 1.0)
    offset = _arr(0 if offset is None else offset)
    return P, G, n, G / n, offset


def _tri(hi, lo=0.0):
    """Σ_{j=lo}^{hi−1} j for real lo ≤ hi (0 when hi ≤ lo)."""
    return np.where(hi > lo, (hi * (hi - 1) - lo * (lo - 1)) / 2.0, 0.0)


def paper(arch, P, G, n=1, offset=0, computed=None, **_):
    """2·N·G: the paper's convention, generated tokens only (prompt processing and attention are free)."""
    return 2.0 * arch["N"] * _arr(G)


def forward(arch, P, G, n=1, offset=0, computed=None, **_):
    """2·N·(P + G), or 2·N·computed where the backend recorded what it ran: every token through every weight."""
    tokens = _arr(P) + _arr(G) if computed is None else np.where(np.isnan(_arr(computed)), _arr(P) + _arr(G),
                                                                 _arr(computed))
    return 2.0 * arch["N"] * tokens


def attention_keys(P, G, n=1, offset=0):
    """Keys attended over a request under the causal convention: its P prompt tokens after ``offset`` cached ones
    (token i of the prompt attends offset + i + 1 keys), then each of the n sequences' T = G/n tokens attending its
    whole context (prompt once, shared, plus its own earlier tokens and itself)."""
    P, G, n, T, c0 = _usage(P, G, n, offset)
    prefill = P * c0 + P * (P + 1) / 2.0
    decode = n * (T * (c0 + P) + T * (T + 1) / 2.0)
    return prefill + decode


def attention_flops(arch, P, G, n=1, offset=0):
    """The context term alone: 4·layers·d_attn FLOPs per attended key (both matmuls)."""
    return 4.0 * arch["layers"] * arch["query_heads"] * arch["head_dim"] * attention_keys(P, G, n, offset)


def attention(arch, P, G, n=1, offset=0, computed=None, **_):
    """``forward`` plus causal attention with a KV cache (prefill over P, then each generated token attending its
    context; n sequences share one prefill)."""
    return forward(arch, P, G, n, offset, computed) + attention_flops(arch, P, G, n, offset)


def kv_bytes_per_token(arch) -> float:
    """Bytes of KV cache one context token holds: K and V × layers × kv_heads × head_dim × bytes per value."""
    return 2.0 * arch["layers"] * arch["kv_heads"] * arch["head_dim"] * arch.get("bytes_per_value", 2)


def kv_read_tokens(P, G, n=1, offset=0):
    """Context tokens whose KV the decode steps of a request read: at its j-th step (j = 0..T−1) the shared prompt
    (offset + P, once for all n sequences) and each sequence's own j earlier tokens."""
    P, G, n, T, c0 = _usage(P, G, n, offset)
    return T * (c0 + P) + n * _tri(T)


def kinetics(arch, P, G, n=1, offset=0, computed=None, hardware=None, **_):
    """eFLOPs (Kinetics): ``attention`` compute plus the KV bytes the decode steps read × I = peak FLOP/s ÷
    bandwidth. Weight reads are left out, as Kinetics leaves them out (they are shared by a large batch)."""
    intensity = hardware["peak_flops"] / hardware["bandwidth"]
    return attention(arch, P, G, n, offset, computed) + intensity * kv_bytes_per_token(arch) * kv_read_tokens(
        P, G, n, offset)


def _sum_linear(a, b, lo, hi):
    """Σ_{j=lo}^{hi−1} (a + b·j) for real lo ≤ hi."""
    return np.maximum(hi - lo, 0.0) * a + b * _tri(hi, lo)


def _sum_max(a1, b1, a2, b2, T):
    """Σ_{j=0}^{T−1} max(a1 + b1·j, a2 + b2·j), in closed form: max = (f + g + |f − g|)/2 and f − g changes sign
    at most once."""
    da, db = a1 - a2, b1 - b2
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.where(db != 0, -da / np.where(db != 0, db, 1.0), 0.0)
    split = np.clip(np.ceil(root), 0.0, T)
    absdiff = np.abs(_sum_linear(da, db, 0.0, split)) + np.abs(_sum_linear(da, db, split, T))
    return (_sum_linear(a1, b1, 0.0, T) + _sum_linear(a2, b2, 0.0, T) + absdiff) / 2.0


def seconds(arch, P, G, n=1, offset=0, computed=None, hardware=None, batch_size=DEFAULT_BATCH_SIZE, **_):
    """Roofline seconds of a request on ``hardware`` with ``batch_size`` sequences decoding together.

    Prefill: max(its FLOPs / peak, its share of one weight read / bandwidth). Each decode step j of the request's n
    sequences: max(FLOPs / peak, bytes / bandwidth), FLOPs = n·2·N + attention over each sequence's context, bytes =
    n/batch_size of the weights (N × bytes per value, one read per step shared by the batch) + the KV read
    (kv_read_tokens' step j). A batch step's time is attributed to its requests by their own roofline.
    """
    P, G, n, T, c0 = _usage(P, G, n, offset)
    peak, bw = float(hardware["peak_flops"]), float(hardware["bandwidth"])
    per_key = 4.0 * arch["layers"] * arch["query_heads"] * arch["head_dim"]
    weights = arch["N"] * arch.get("bytes_per_value", 2) / float(batch_size)
    kvb = kv_bytes_per_token(arch)
    prefill_flops = 2.0 * arch["N"] * P + per_key * (P * c0 + P * (P + 1) / 2.0)
    prefill = np.maximum(prefill_flops / peak, np.where(P > 0, n * weights / bw, 0.0))
    # step j: compute n·(2N + per_key·(c0 + P + j + 1)), memory n·weights + kvb·(c0 + P + n·j)
    a1 = n * (2.0 * arch["N"] + per_key * (c0 + P + 1.0)) / peak
    b1 = n * per_key / peak
    a2 = (n * weights + kvb * (c0 + P)) / bw
    b2 = kvb * n / bw
    return prefill + _sum_max(a1, b1, a2, b2, T)


def dollars(arch, P, G, n=1, offset=0, computed=None, hardware=None, batch_size=DEFAULT_BATCH_SIZE,
            price_per_gpu_hour=None, **_):
    """``seconds`` at the hardware's price per GPU-hour (or ``price_per_gpu_hour``)."""
    price = hardware["price_per_gpu_hour"] if price_per_gpu_hour is None else price_per_gpu_hour
    return seconds(arch, P, G, n, offset, computed, hardware, batch_size) * price / 3600.0


_ATTN = ("layers", "query_heads", "head_dim")
_KV = (*_ATTN, "kv_heads")
REGISTRY = {m.name: m for m in (
    CostModel("paper", paper, (), False, "FLOPs", "2·N·generated tokens (the paper)"),
    CostModel("forward", forward, (), False, "FLOPs", "2·N·(prompt + generated tokens)"),
    CostModel("attention", attention, _ATTN, False, "FLOPs", "forward + causal attention with a KV cache"),
    CostModel("kinetics", kinetics, _KV, True, "eFLOPs", "attention + KV bytes read × arithmetic intensity"),
    CostModel("seconds", seconds, _KV, True, "s", "roofline seconds on the hardware at the batch size"),
    CostModel("dollars", dollars, _KV, True, "USD", "roofline seconds × price per GPU-hour"),
)}
COST_MODELS = tuple(REGISTRY)
assert DEFAULT_COST_MODEL in REGISTRY


def from_flops(flops, unit: str, hardware: dict | None):
    """FLOPs run at the hardware's peak, in ``unit``: FLOPs and eFLOPs as they are, seconds (÷ peak FLOP/s) or
    dollars (seconds × price per GPU-hour). Prices training compute (compute-bound) and the paper's 2·N·t in the
    unit of a roofline cost model."""
    if unit in ("FLOPs", "eFLOPs"):
        return flops
    if hardware is None:
        raise CotscaleError(f"pricing FLOPs in {unit} needs a hardware profile (config key cost.hardware)")
    secs = flops / float(hardware["peak_flops"])
    return secs if unit == "s" else secs * float(hardware["price_per_gpu_hour"]) / 3600.0


def check(name: str, arch: dict, model: str = "") -> None:
    """Raise MissingArchitecture when cost model ``name`` needs a key ``arch`` lacks (or the name is unknown)."""
    if name not in REGISTRY:
        raise CotscaleError(f"unknown cost model {name!r}; known: {', '.join(COST_MODELS)}")
    missing = [k for k in ("N", *REGISTRY[name].needs) if arch.get(k) is None or arch.get(k) != arch.get(k)]
    if missing:
        raise MissingArchitecture(
            f"cost model {name!r} needs {', '.join(missing)} of model {model or '?'}: give the model's config.json "
            f"(local folder or `cotscale prefetch`) or set them in its architecture: block (config/README.md)")


def request_cost(name: str, arch: dict, P, G, n=1, offset=0, computed=None, hardware: dict | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, price_per_gpu_hour=None, model: str = ""):
    """Cost of each request under cost model ``name`` (arrays in, an array out)."""
    check(name, arch, model)
    if REGISTRY[name].hardware and hardware is None:
        raise CotscaleError(f"cost model {name!r} needs a hardware profile (config key cost.hardware)")
    return REGISTRY[name].fn(arch, P, G, n, offset, computed, hardware=hardware, batch_size=batch_size,
                             price_per_gpu_hour=price_per_gpu_hour)


def load_hardware(settings: dict | None = None, name: str | None = None) -> dict:
    """The hardware profile to price with: config/hardware.yaml, then the config's ``cost.profiles`` over it;
    ``name`` (else ``cost.hardware``) picks one, ``cost.price_per_gpu_hour`` overrides its price."""
    settings = settings or {}
    profiles = yaml.safe_load(Path(HARDWARE_FILE).read_text())
    profiles.update(settings.get("profiles") or {})
    name = name or settings.get("hardware") or DEFAULT_HARDWARE
    if name not in profiles:
        raise CotscaleError(f"unknown hardware profile {name!r}; known: {', '.join(profiles)} "
                            f"({HARDWARE_FILE} and config key cost.profiles)")
    profile = {"name": name, **profiles[name]}
    if settings.get("price_per_gpu_hour") is not None:
        profile["price_per_gpu_hour"] = float(settings["price_per_gpu_hour"])
    return profile


# --- tables ------------------------------------------------------------------------------------------------------
_DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "auto": 2}


def architectures(config: dict, models) -> dict[str, dict]:
    """{model key: architecture} for the model keys ``models``: the entry's config.json and ``architecture:``
    block (cotscale.architecture.resolve), else ``architectures:`` by key or by name (``name@revision`` takes
    name's), with bytes_per_value from the entry's dtype (bf16 where not set)."""
    from cotscale import architecture

    out = {}
    for key in models:
        entry = config["models"].get(key)
        name = key.split("@", 1)[0]
        given = config.get("architectures") or {}
        override = given.get(key) or given.get(name)
        if entry is not None:
            arch = architecture.resolve(entry, {**(override or {}), **(entry.get("architecture") or {})})
        else:
            arch = {**(override or {}), "architecture_source": "config" if override else "none"}
        dtype = (entry or {}).get("dtype", config.get("dtype", "bfloat16"))
        arch["bytes_per_value"] = _DTYPE_BYTES.get(dtype, 2)
        out[key] = arch
    return out


def _request_usage(tokens):
    """Per model × strategy × benchmark (subtasks pooled) the mean request, as Table I counts a request: a
    generating strategy's prompt (its generate prompt and its choices' log-likelihood tokens) and generated tokens
    per generate request; a log-likelihood strategy's prompt tokens per document."""
    import pandas as pd

    keys = ["model", "revision", "family", "N", "strategy", "benchmark"]
    t = tokens.assign(revision=tokens.get("revision", "main"))
    g = t.groupby(keys, as_index=False, dropna=False).agg(
        generate_requests=("generate_requests", "sum"), documents=("documents", "sum"),
        prompt_tokens=("prompt_tokens", "sum"), generated_tokens=("generated_tokens", "sum"),
        token_unit=("token_unit", "first"))
    per = g["generate_requests"].where(g["generate_requests"] > 0, g["documents"]).astype(float)
    g["prompt_tokens_per_request"] = g["prompt_tokens"] / per
    g["generated_tokens_per_request"] = g["generated_tokens"] / per
    return pd.DataFrame(g)


def cost_table(tokens, archs: dict[str, dict], names=COST_MODELS, hardware: dict | None = None,
               batch_size: int = DEFAULT_BATCH_SIZE, usage_paths=(), sweep=None, compute=None):
    """costs.csv: every model × strategy × benchmark (and ``overall``, the unweighted mean over benchmarks, as
    the paper's overall score) × cost model. A model without the facts a cost model needs gets an empty cost and
    the reason. With ``usage_paths`` (results/evals/{model}/{strategy}/{task}/usage.jsonl.gz) every request is
    priced on its own usage and a benchmark's cost per request is the sum over Table I's denominator (generate
    requests; documents for a log-likelihood strategy); ``priced_on`` says ``requests``. Without them (the
    published outputs) each benchmark's mean request of tokens.csv is priced (``mean_request``: the convex
    attention and KV terms of requests longer than the mean are not added)."""
    import pandas as pd

    from cotscale.contract import COST_COLUMNS

    base = _request_usage(tokens)
    if base.empty:
        return pd.DataFrame(columns=list(COST_COLUMNS))
    names = [DEFAULT_COST_MODEL, *[n for n in names if n != DEFAULT_COST_MODEL]]
    parts = []
    for name in names:
        part = base.copy()
        part["cost_model"], part["unit"], part["reason"] = name, REGISTRY[name].unit, ""
        part["hardware"] = hardware["name"] if REGISTRY[name].hardware and hardware else ""
        part["batch_size"] = batch_size if name in ("seconds", "dollars") else np.nan
        values = np.full(len(part), np.nan)
        for model, idx in part.groupby("model").groups.items():
            arch = {**archs.get(model, {}), "N": float(part.loc[idx, "N"].iloc[0])}
            rows = part.loc[idx]
            try:
                values[part.index.get_indexer(idx)] = request_cost(
                    name, arch, rows["prompt_tokens_per_request"].to_numpy(),
                    rows["generated_tokens_per_request"].to_numpy(), hardware=hardware, batch_size=batch_size,
                    model=model)
            except CotscaleError as exc:
                part.loc[idx, "reason"] = str(exc)
        part["cost_per_request"] = values
        parts.append(part)
    out = pd.concat(parts, ignore_index=True)
    out["priced_on"] = "mean_request"
    if usage_paths:
        sums = _priced_from_usage(out, usage_paths, archs, hardware, batch_size)
        keys = list(zip(out["model"], out["strategy"], out["benchmark"], out["cost_model"]))
        total = np.array([sums.get(k, np.nan) for k in keys])
        per = out["generate_requests"].where(out["generate_requests"] > 0, out["documents"]).to_numpy(float)
        found = ~np.isnan(total)
        out.loc[found, "cost_per_request"] = total[found] / per[found]
        out.loc[found, "priced_on"] = "requests"
    out["modelled_seconds"] = np.where(out["cost_model"] == "seconds", out["cost_per_request"] * out[
        "generate_requests"].where(out["generate_requests"] > 0, out["documents"]), np.nan)
    keys = ["model", "revision", "family", "N", "strategy", "cost_model", "unit", "hardware", "batch_size"]
    overall = out.groupby(keys, as_index=False, dropna=False).agg(
        modelled_seconds=("modelled_seconds", lambda s: s.sum(min_count=1)),
        prompt_tokens_per_request=("prompt_tokens_per_request", "mean"),
        generated_tokens_per_request=("generated_tokens_per_request", "mean"),
        cost_per_request=("cost_per_request", lambda s: s.mean(skipna=False)),
        token_unit=("token_unit", "first"), reason=("reason", "first"), priced_on=("priced_on", "first"))
    overall = overall.assign(benchmark="overall")
    out["modelled_seconds"] = np.nan  # a job's, on its overall row
    if compute is not None and "wall_seconds" in compute:
        measured = compute.groupby(["model", "strategy"])["wall_seconds"].sum(min_count=1)
        overall["measured_seconds"] = np.where(overall["cost_model"] == "seconds", measured.reindex(
            pd.MultiIndex.from_frame(overall[["model", "strategy"]])).to_numpy(), np.nan)
        overall["measured_over_modelled"] = overall["measured_seconds"] / overall["modelled_seconds"]
    out = pd.concat([out, overall, _budget_rows(overall, sweep, archs, hardware, batch_size)], ignore_index=True)
    out["budget"] = out["budget"].fillna("") if "budget" in out else ""
    keys = ["model", "strategy", "benchmark", "budget"]
    paper_cost = out[out["cost_model"] == DEFAULT_COST_MODEL].set_index(keys)["cost_per_request"]
    paper_flops = paper_cost.reindex(pd.MultiIndex.from_frame(out[keys])).to_numpy()
    # the paper's FLOPs in each row's unit (seconds, dollars: run at the hardware's peak)
    out["paper_cost_per_request"] = paper_flops
    for unit in ("s", "USD"):
        rows = out["unit"] == unit
        if not rows.any():
            continue
        out.loc[rows, "paper_cost_per_request"] = from_flops(paper_flops[rows.to_numpy()], unit, hardware)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["ratio_to_paper"] = np.where(out["paper_cost_per_request"] > 0,
                                         out["cost_per_request"] / out["paper_cost_per_request"], np.nan)
        # a budget's generated tokens alone (its decode steps), which grow dearer with the budget (cotscale.sweep_cost)
        decode = out["decode_cost_per_request"] if "decode_cost_per_request" in out else np.nan
        out["decode_ratio_to_paper"] = np.where(out["paper_cost_per_request"] > 0,
                                                decode / out["paper_cost_per_request"], np.nan)
    return out.reindex(columns=list(COST_COLUMNS)).sort_values(
        ["model", "strategy", "cost_model", "benchmark", "budget"], kind="stable").reset_index(drop=True)


def _budget_rows(overall, sweep, archs, hardware, batch_size):
    """cost_table()'s overall rows of each budget of a sweep (inference_scaling.csv, its primary metric): its own
    per-document costs where it has them (``priced_on`` documents), else its mean request priced here."""
    import pandas as pd

    from cotscale.scaling import PRIMARY_METRIC

    if sweep is None or sweep.empty:
        return pd.DataFrame()
    primary = sweep["budget_kind"].map(PRIMARY_METRIC)
    sweep = sweep[(sweep["benchmark"] == "overall") & (sweep["metric"] == primary)].dropna(
        subset=["tokens_per_request"])
    if "cost_model" in sweep:  # priced per document by the inference_scaling rule (cotscale.sweep_cost): one source
        rows = sweep.reindex(columns=["model", "strategy", "budget_kind", "budget", "tokens_per_request",
                                      "cost_model", "cost_per_request", "decode_cost_per_request"]).merge(
            overall.drop(columns=["generated_tokens_per_request", "cost_per_request", "priced_on"]),
            on=["model", "strategy", "cost_model"])
        budget = rows["budget"].map(lambda b: f"{b:g}" if isinstance(b, float) else str(b))
        return rows.assign(budget=rows["budget_kind"] + "=" + budget, priced_on="documents",
                           generated_tokens_per_request=rows["tokens_per_request"],
                           reason=np.where(rows["cost_per_request"].notna(), "", "see logs/inference_scaling.log"),
                           ).drop(columns=["budget_kind", "tokens_per_request"])
    rows = sweep[["model", "strategy", "budget_kind", "budget", "tokens_per_request"]].merge(
        overall.drop(columns=["generated_tokens_per_request", "cost_per_request"]), on=["model", "strategy"])
    if rows.empty:
        return pd.DataFrame()
    # a self-consistency budget k is k sequences sharing the prompt (tokens_per_request sums them)
    rows["sequences"] = np.where(rows["budget_kind"] == "k", pd.to_numeric(rows["budget"], errors="coerce"), 1.0)
    budget = rows["budget"].map(lambda b: f"{b:g}" if isinstance(b, float) else str(b))
    rows = rows.assign(budget=rows["budget_kind"] + "=" + budget,
                       generated_tokens_per_request=rows["tokens_per_request"], reason="")
    values, decode = np.full(len(rows), np.nan), np.full(len(rows), np.nan)
    for (model, name), idx in rows.groupby(["model", "cost_model"]).groups.items():
        part, at = rows.loc[idx], rows.index.get_indexer(idx)
        P, G = part["prompt_tokens_per_request"].to_numpy(), part["generated_tokens_per_request"].to_numpy()
        arch = {**archs.get(model, {}), "N": float(part["N"].iloc[0])}
        try:
            values[at], prefill = (request_cost(name, arch, P, g, part["sequences"].to_numpy(), hardware=hardware,
                                                batch_size=batch_size, model=model) for g in (G, 0.0 * G))
            decode[at] = values[at] - prefill
        except CotscaleError as exc:
            rows.loc[idx, "reason"] = str(exc)
    return rows.assign(cost_per_request=values, decode_cost_per_request=decode, priced_on="mean_request").drop(
        columns=["budget_kind", "tokens_per_request", "sequences"])


# --- usage records -----------------------------------------------------------------------------------------------
def usage_arrays(path) -> dict[str, np.ndarray]:
    """One usage.jsonl.gz (cotscale.usage) as per-request arrays: P, G, n, offset (a log-likelihood request's
    already-computed context, scored_tokens − prompt_tokens; 0 otherwise), computed (NaN where not recorded) and
    ``generate`` (a generate request). Decoded in one pass (msgspec), not record by record."""
    import gzip

    import msgspec

    from cotscale.contract import COMPUTED_TOKENS_FIELD

    class _Record(msgspec.Struct, kw_only=True):
        kind: str
        prompt_tokens: int
        generated_tokens: int = 0
        sequences: int = 1
        scored_tokens: int | None = None
        computed: int | None = msgspec.field(default=None, name=COMPUTED_TOKENS_FIELD)

    with gzip.open(path, "rb") as fh:
        records = msgspec.json.Decoder(_Record).decode_lines(fh.read())
    P = np.fromiter((r.prompt_tokens for r in records), float, len(records))
    scored = np.fromiter((np.nan if r.scored_tokens is None else r.scored_tokens for r in records), float,
                         len(records))
    return {
        "P": P,
        "G": np.fromiter((r.generated_tokens for r in records), float, len(records)),
        "n": np.fromiter((r.sequences for r in records), float, len(records)),
        "offset": np.where(np.isnan(scored), 0.0, np.maximum(scored - P, 0.0)),
        "computed": np.fromiter((np.nan if r.computed is None else r.computed for r in records), float,
                                len(records)),
        "generate": np.fromiter((r.kind == "generate" for r in records), bool, len(records)),
    }


def usage_totals(usage: dict[str, np.ndarray], arch: dict, names, hardware: dict | None = None,
                 batch_size: int = DEFAULT_BATCH_SIZE, model: str = "") -> dict[str, float]:
    """Σ cost over the requests of one usage file under each cost model of ``names`` (NaN, with the reason
    logged by the caller, where the architecture lacks a key the cost model needs)."""
    out = {}
    for name in names:
        try:
            out[name] = float(np.sum(request_cost(name, arch, usage["P"], usage["G"], usage["n"], usage["offset"],
                                                  usage["computed"], hardware, batch_size, model=model)))
        except MissingArchitecture:
            out[name] = float("nan")
    return out


def _priced_from_usage(bench, usage_paths, archs, hardware, batch_size):
    """Σ cost per model × strategy × benchmark × cost model over the usage records (each file read once)."""
    names = list(bench["cost_model"].unique())
    N = bench.drop_duplicates("model").set_index("model")["N"]
    sums: dict[tuple, float] = {}
    for path in usage_paths:
        model, strategy, benchmark = Path(path).parts[-4:-1]
        if model not in N.index:
            continue
        arch = {**archs.get(model, {}), "N": float(N[model])}
        for name, total in usage_totals(usage_arrays(path), arch, names, hardware, batch_size, model).items():
            key = (model, strategy, benchmark, name)
            sums[key] = sums.get(key, 0.0) + total
    return sums

"""Ingest the paper's published raw outputs into cotscale's evaluation contract.

The seed repository (AkshayM21/obs-scaling-inference-opts) published lm-eval result JSONs per model and
experiment, a models.csv, and the experiment-2 rationales. `ingest` rewrites them as
``<out>/evals/{model}/{strategy}/{benchmark}/results.json`` (+ ``usage.jsonl.gz`` where rationales exist), so
the same aggregation, analysis and figure rules run on them as on our own evaluations.

Quirks of the published data, and what ingest does about them:
- family strings carry a leading space (" olmo"): stripped.
- result files are named ``model_checkpoint.json`` for models with several checkpoints (``OLMo-1B-0724-hf_main``),
  ``model.json`` otherwise; model keys follow cotscale's ``model@revision`` convention for the former.
- not every model has every experiment (pythia-160m has experiment-2 CoT but no experiment-2 standard): a missing
  file is logged and skipped, never invented.
- a results file cut off mid-JSON (the seed has one): by default ``ValueError("<file>: truncated or invalid
  JSON ...")``; with ``on_invalid="skip"`` the file is skipped with a logged warning. Either way nothing is written
  for that file.
- the rationales are stored as a dict keyed ``{task}_{doc_id}_{repeats}``: the seed generated one rationale per
  answer choice but the key kept only the last, so there is one record per document. Their length is counted in
  whitespace words (the seed had no token ids), so usage records carry ``token_unit: "words"``. Many are empty
  (the models often open with the "\\n" that stopped them): the records say so (``empty``), and benchmarks.csv /
  tokens.csv carry ``empty_fraction``.
- the experiment-1 free-form CoT groups (``mmlu_flan_cot_zeroshot``, ``xwinograd_cot``) carry no aggregate
  metric; ingest keeps the subtasks so aggregation can pool them.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections import defaultdict
from io import BytesIO
from pathlib import Path

import pandas as pd

from cotscale.io import write_csv, write_json, write_jsonl_gz
from cotscale.contract import EMPTY_FIELD
from cotscale.usage import is_empty, summarize_usage

log = logging.getLogger(__name__)

#: published results folder -> cotscale strategy (../shared/paper/README.md)
STRATEGIES = {
    "experiment_1/standard": "standard",
    "experiment_1/cot": "cot_generate",
    "experiment_2/standard": "hybrid",
    "experiment_2/cot": "hybrid_cot",
}
#: published rationales folder -> strategy: both are experiment 2's hybrid runs
SAMPLES = {"samples/standard": "hybrid", "samples/cot": "hybrid_cot"}
#: what the seed ran, as far as its files say (a strategy spec for the cotscale block)
STRATEGY_SPECS = {
    "standard": {"format": "loglikelihood", "prompt": "plain", "variant": "standard"},
    "cot_generate": {"format": "generate", "prompt": "cot", "variant": "cot"},
    "hybrid": {"format": "hybrid", "prompt": "plain", "variant": "standard", "decoding": "sample",
               "temperature": 0.7, "until": ["\n"], "note": "seed regenerated a rationale per answer choice"},
    "hybrid_cot": {"format": "hybrid", "prompt": "cot", "variant": "standard", "decoding": "sample",
                   "temperature": 0.7, "until": ["\n"], "note": "seed regenerated a rationale per answer choice"},
}
#: benchmark -> lm-eval root task per variant (the seed's task names, as in config.yaml)
TASKS = {
    "arc_challenge": {"standard": "arc_challenge", "cot": "arc_challenge_cot"},
    "gsm8k": {"standard": "gsm8k", "cot": "gsm8k_cot_zeroshot"},
    "hellaswag": {"standard": "hellaswag", "cot": "hellaswag_cot"},
    "mmlu": {"standard": "mmlu", "cot": "mmlu_flan_cot_zeroshot"},
    "winogrande": {"standard": "winogrande", "cot": "winogrande_cot"},
    "xwinograd": {"standard": "xwinograd", "cot": "xwinograd_cot"},
    "truthfulqa_mc1": {"standard": "truthfulqa_mc1", "cot": "truthfulqa_cot"},
}
#: family -> Hugging Face organisation, to rebuild hf_id = org/model
HF_ORGS = {"llama": "meta-llama", "olmo": "allenai", "qwen": "Qwen", "gemma": "google", "pythia": "EleutherAI"}
#: top-level keys of an lm-eval results dict that are keyed by task name
TASK_KEYED = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


def _read(source: str, rel: str) -> bytes | None:
    """Bytes of ``source/rel`` (local folder or http(s) base URL); None when it does not exist."""
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(f"{source.rstrip('/')}/{rel}", timeout=60) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return None
            raise
    path = Path(source, rel)
    return path.read_bytes() if path.is_file() else None


def parse_json(data: bytes, name: str) -> dict:
    """Parse a published JSON file; a truncated or invalid one raises ValueError naming the file."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{name}: truncated or invalid JSON ({err})") from err


def read_models(source: str | Path, layout: dict[str, str] | None = None) -> pd.DataFrame:
    """The published models.csv as cotscale's models table.

    Columns: model (cotscale key), name (seed model name), checkpoint, hf_id, revision, family, N, D, stem (the
    seed's file name without .json).
    """
    source, layout = str(source), layout or {}
    rel = layout.get("models.csv", "models.csv")
    data = _read(source, rel)
    if data is None:
        raise FileNotFoundError(f"{source}/{rel}")
    df = pd.read_csv(BytesIO(data), skipinitialspace=True, index_col=0)
    df["family"] = df["family"].str.strip()
    several = df.groupby("model")["checkpoint"].transform("size") > 1
    df["stem"] = df["model"].where(~several, df["model"] + "_" + df["checkpoint"])
    key = df["model"].str.replace(r"[^A-Za-z0-9._-]", "-", regex=True)
    df["key"] = key.where(~several, key + "@" + df["checkpoint"])
    df["hf_id"] = [f"{HF_ORGS[f]}/{m}" if f in HF_ORGS else None for f, m in zip(df["family"], df["model"])]
    df = df.rename(columns={"model": "name", "key": "model"}).assign(revision=df["checkpoint"])
    cols = ["model", "name", "checkpoint", "hf_id", "revision", "family", "N", "D", "stem"]
    return df[cols].astype({"N": float, "D": float}).reset_index(drop=True)


def restrict(results: dict, root: str) -> dict:
    """An lm-eval results dict cut down to one benchmark: ``root`` and every task below it in group_subtasks."""
    subtasks = results.get("group_subtasks", {})
    keep, todo = set(), [root]
    while todo:
        task = todo.pop()
        if task not in keep:
            keep.add(task)
            todo.extend(subtasks.get(task, []))
    out = {}
    for key, value in results.items():
        if key in TASK_KEYED and isinstance(value, dict):
            value = {t: v for t, v in value.items() if t in keep}
        out[key] = value
    return out


def benchmark_of(task: str) -> str | None:
    """The benchmark a (sub)task belongs to: its own name or a ``<benchmark>_`` prefix (mmlu_*, xwinograd_*)."""
    for bench, variants in TASKS.items():
        if task in variants.values() or task.startswith(bench + "_"):
            return bench
    return None


def _words(text: str) -> int:
    """Whitespace word count: the unit of the seed's toks_generated.csv (it reproduces it exactly)."""
    return len(text.split())


def usage_records(samples: dict, until: list[str] | None = None) -> dict[str, list[dict]]:
    """Usage records per benchmark from one seed samples file (one generation request per stored rationale), each
    with ``empty`` (cotscale.usage.is_empty of the response at the stop sequences ``until``: the seed's "\\n" had
    already cut it, so this is a response of whitespace only), so the tables say how often its CoT never happened."""
    out: dict[str, list[dict]] = defaultdict(list)
    for rec in samples.values():
        bench = benchmark_of(rec["task_name"])
        if bench is None:
            log.warning("samples: task %r belongs to no benchmark; skipped", rec["task_name"])
            continue
        out[bench].append({
            "task": rec["task_name"], "doc_id": int(rec["doc_id"]), "kind": "generate",
            "prompt_tokens": _words(rec["context"]), "generated_tokens": _words(rec["response"]),
            "sequences": 1, "token_unit": "words", EMPTY_FIELD: is_empty(rec["response"], until),
        })
    return out


def _load(source: str, rel: str, on_invalid: str) -> dict | None:
    data = _read(source, rel)
    if data is None:
        return None
    try:
        return parse_json(data, f"{source.rstrip('/')}/{rel}")
    except ValueError as err:
        if on_invalid == "raise":
            raise
        log.warning("skipped %s", err)
        return None


def _unmatched(source: str, folder: str, stems: set[str]) -> None:
    """Log local result files that match no models.csv row (URLs cannot be listed)."""
    path = Path(source, folder)
    if path.is_dir():
        for f in sorted(path.glob("*.json")):
            if f.stem not in stems:
                log.warning("%s: no models.csv row for it; not ingested", f)


def ingest(source: str | Path, out_dir: str | Path, *, on_invalid: str = "raise",
           layout: dict[str, str] | None = None) -> pd.DataFrame:
    """Write the published folder/URL ``source`` into ``out_dir/evals`` and return (and write) the models table.

    ``layout`` maps a part of the published folder ("models.csv", "experiment_1/standard", ..., "samples/cot") to
    its path relative to ``source`` when it differs (e.g. a raw-file URL of another repository layout).
    ``on_invalid``: "raise" (default) or "skip" for a truncated/invalid JSON file, see the module docstring.
    The models table (``out_dir/published_models.csv``) lists model, hf_id, revision, family, N, D and the
    strategies that have results.
    """
    if on_invalid not in ("raise", "skip"):
        raise ValueError(f"on_invalid must be 'raise' or 'skip', not {on_invalid!r}")
    source, out, layout = str(source), Path(out_dir), layout or {}
    models = read_models(source, layout)
    usage: dict[tuple[str, str, str], list[dict]] = {}
    for part, strategy in SAMPLES.items():
        folder = layout.get(part, part)
        for m in models.itertuples():
            samples = _load(source, f"{folder}/{m.stem}.json", on_invalid)
            until = STRATEGY_SPECS[strategy]["until"]
            for bench, records in (usage_records(samples, until) if samples else {}).items():
                usage[(m.model, strategy, bench)] = records
                write_jsonl_gz(out / "evals" / m.model / strategy / bench / "usage.jsonl.gz", records)
    strategies: dict[str, list[str]] = defaultdict(list)
    for part, strategy in STRATEGIES.items():
        folder = layout.get(part, part)
        _unmatched(source, folder, set(models["stem"]))
        variant = STRATEGY_SPECS[strategy]["variant"]
        for m in models.itertuples():
            rel = f"{folder}/{m.stem}.json"
            results = _load(source, rel, on_invalid)
            if results is None:
                log.info("%s: no %s results (%s)", m.model, strategy, rel)
                continue
            strategies[m.model].append(strategy)
            for bench, variants in TASKS.items():
                root = variants[variant]
                if root not in results.get("results", {}):
                    log.warning("%s: no task %r; %s/%s not written", rel, root, strategy, bench)
                    continue
                payload = restrict(results, root)
                payload["cotscale"] = {
                    "model": m.model, "hf_id": m.hf_id, "revision": m.revision, "family": m.family,
                    "N": m.N, "D": m.D, "strategy": {"name": strategy, **STRATEGY_SPECS[strategy]},
                    "benchmark": bench, "lm_eval_task": root, "source": f"{source.rstrip('/')}/{rel}",
                }
                if (m.model, strategy, bench) in usage:
                    payload["cotscale"]["usage_summary"] = summarize_usage(usage[(m.model, strategy, bench)])
                write_json(out / "evals" / m.model / strategy / bench / "results.json", payload)
    table = models.drop(columns=["name", "checkpoint", "stem"])
    table["strategies"] = [";".join(strategies.get(k, [])) for k in table["model"]]
    write_csv(out / "published_models.csv", table)
    return table

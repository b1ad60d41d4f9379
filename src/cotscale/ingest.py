"""Analyse results you already have: the folders of earlier ``lm_eval … --output_path OUT --log_samples`` runs,
mapped into the evaluation contract (``results/evals/{model}/{strategy}/{task}/``: results.json, samples.jsonl.gz,
usage.jsonl.gz) so the tables, fits and figures run on them without evaluating again.

lm-eval writes ``results_<timestamp>.json`` and ``samples_<task>_<timestamp>.jsonl`` under a folder named after the
model (``lm_eval.utils.sanitize_model_name`` of ``pretrained``). A config names, per model key and strategy, such a
folder or the ``OUT`` above it (then the model's own folder is picked by that name). lm-eval's files do not say which
prompting was used, nor N and D: the strategy and the model entry come from the config.

Tokens (lm-eval records none) are re-counted from each sample's request texts: with the model's own tokenizer when
it is available locally (a local folder or GGUF file; ``token_unit: "tokens"``), encoded as lm-eval's HF model
encodes them, so a log-likelihood document counts exactly what the pipeline's own evaluation counts; else in
whitespace words (``token_unit: "words"``). A generation is counted from its returned text: the EOS id or the token
completing the stop sequence that ended it is not in the text, so it counts one token less per sequence than the
pipeline (which counts the backend's ids) and never marks a sequence truncated.

Bad input, one error each (IngestError, naming the file): a results file without its samples (rerun with
``--log_samples``), a task the config does not know, a samples file cut off.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import defaultdict
from pathlib import Path

from cotscale.config import CotscaleError, job_spec, task_variant
from cotscale.io import write_json, write_jsonl_gz
from cotscale.usage import make_record, summarize_usage

log = logging.getLogger(__name__)

RESULTS_FILE = re.compile(r"results_(?P<stamp>.+)\.json")
#: lm-eval result keys that are keyed by task name (a benchmark's results keep its own tasks only)
TASK_KEYED = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


class IngestError(CotscaleError, ValueError):
    """An lm-eval output folder that cannot be ingested as configured; the message names the file and the fix."""


def restrict(results: dict, root: str) -> dict:
    """An lm-eval results dict cut down to one benchmark: ``root`` and every task below it in group_subtasks."""
    subtasks = results.get("group_subtasks", {})
    keep, todo = set(), [root]
    while todo:
        task = todo.pop()
        if task not in keep:
            keep.add(task)
            todo.extend(subtasks.get(task, []))
    return {key: ({t: v for t, v in value.items() if t in keep} if key in TASK_KEYED and isinstance(value, dict)
                  else value) for key, value in results.items()}


def model_folder(path: str | Path, pretrained: str) -> Path:
    """The folder holding the model's results files: ``path`` itself, or its subfolder named as lm-eval names the
    model (``sanitize_model_name(pretrained)``), or its only subfolder with results."""
    from lm_eval.utils import sanitize_model_name

    path = Path(path)
    if not path.is_dir():
        raise IngestError(f"{path}: no such folder (an `lm_eval --output_path` folder, or the model folder in it)")
    if any(path.glob("results_*.json")):
        return path
    folders = sorted(d for d in path.iterdir() if d.is_dir() and any(d.glob("results_*.json")))
    named = [d for d in folders if d.name == sanitize_model_name(str(pretrained))]
    if named or len(folders) == 1:
        return (named or folders)[0]
    raise IngestError(f"{path}: no results_*.json in it, and {len(folders)} model folders with results "
                      f"({', '.join(d.name for d in folders) or 'none'}) of which none is named "
                      f"{sanitize_model_name(str(pretrained))!r}; give the model's own folder")


def input_files(path: str | Path, pretrained: str) -> list[str]:
    """The files an ingest of ``path`` reads (the model folder's results_*.json and samples_*.jsonl): the ingest
    rule's input, so that adding, replacing or touching one of them re-ingests."""
    folder = model_folder(path, pretrained)
    return sorted(str(p) for pattern in ("results_*.json", "samples_*.jsonl") for p in folder.glob(pattern))


def latest_runs(folder: Path) -> dict[str, tuple[dict, str, Path]]:
    """{task: (results, timestamp, results file)} of the newest results file reporting each task."""
    runs: dict[str, tuple[dict, str, Path]] = {}
    for path in sorted(folder.glob("results_*.json"), key=lambda p: RESULTS_FILE.fullmatch(p.name)["stamp"]):
        try:
            results = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise IngestError(f"{path}: truncated or invalid JSON ({exc}); rerun that lm_eval run") from None
        stamp = RESULTS_FILE.fullmatch(path.name)["stamp"]
        for task in {**results.get("results", {}), **results.get("groups", {})}:
            runs[task] = (results, stamp, path)
    return runs


def read_samples(folder: Path, task: str, stamp: str, results: dict, results_path: Path) -> list[dict]:
    """The sample records of one (sub)task of one run; an IngestError when they are missing or cut off."""
    path = folder / f"samples_{task}_{stamp}.jsonl"
    if not path.is_file():
        raise IngestError(f"{results_path}: reports task {task!r} but {path.name} is not beside it; rerun lm_eval "
                          f"with --log_samples (token counts and per-document scores come from the samples)")
    records = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                raise IngestError(f"{path}: line {number} is cut off (not JSON); the file was not written to its "
                                  f"end: rerun that lm_eval run") from None
    expected = (results.get("n-samples", {}).get(task) or {}).get("effective")
    if expected is not None and len({r["doc_id"] for r in records}) < expected:
        raise IngestError(f"{path}: {len({r['doc_id'] for r in records})} documents, but {results_path.name} reports "
                          f"{expected}: the file is cut off; rerun that lm_eval run")
    return records


class TokenCounter:
    """Token counts of request texts: the model's tokenizer, encoding as lm-eval's HF model does; or words."""

    def __init__(self, model: dict):
        self.tokenizer, self.unit = None, "words"
        source = model.get("gguf_file") or model["pretrained"]
        if Path(os.path.expanduser(str(source))).exists():
            from transformers import AutoTokenizer

            path = Path(os.path.expanduser(str(source)))
            self.tokenizer = (AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
                              if path.is_file() else AutoTokenizer.from_pretrained(str(path)))
            self.unit = "tokens"

    def encode(self, text: str) -> list:
        if self.tokenizer is None:
            return text.split()
        tok = self.tokenizer
        bos = tok.bos_token
        return tok.encode(text, add_special_tokens=not (bos and text.startswith(bos)))  # lm-eval's HFLM.tok_encode

    def pair(self, context: str, continuation: str) -> list:
        """Context + continuation as scored: trailing context spaces moved to the continuation, the whole encoded
        (lm-eval's TemplateLM encoding of a loglikelihood request for a causal model)."""
        if not context:
            return [self.tokenizer.eos_token_id if self.tokenizer else ""] + self.encode(continuation)
        n = len(context) - len(context.rstrip())
        context, continuation = (context[:-n], context[-n:] + continuation) if n else (context, continuation)
        whole, head = self.encode(context + continuation), self.encode(context)
        return head + whole[len(head):]


def usage_of(records: list[dict], output_type: str, counter: TokenCounter) -> list[dict]:
    """Usage records (cotscale.usage) of one task's samples, re-counted from the request texts."""
    from cotscale.lm.tokens import new_tokens

    out = []
    for sample in sorted(records, key=lambda r: r["doc_id"]):
        task, doc = sample["task"], int(sample["doc_id"])
        args = [a for a in sample["arguments"].values()] if isinstance(sample["arguments"], dict) else sample["arguments"]
        if output_type == "generate_until":
            for request, responses in zip(args, sample["resps"], strict=True):
                prompt = request["arg_0"] if isinstance(request, dict) else request[0]
                out.append(make_record(task, doc, "generate", len(counter.encode(prompt)),
                                       sum(len(counter.encode(text)) for text in responses), len(responses)))
        else:
            scored = [counter.pair(*(request["arg_0"], request["arg_1"]) if isinstance(request, dict) else request[:2])
                      for request in args]
            for ids, n in zip(scored, new_tokens(scored), strict=True):
                out.append(make_record(task, doc, "loglikelihood", n, scored_tokens=len(ids)))
    for record in out:
        record["token_unit"] = counter.unit
    return out


def ingest_folder(config: dict, model_key: str, strategy: str, folder: str | Path, evals_root: str | Path) -> list[Path]:
    """Write every configured benchmark of ``strategy`` found in the lm-eval folder into
    ``evals_root/{model}/{strategy}/{benchmark}/``; returns the results.json paths written."""
    model = config["models"][model_key]
    folder = model_folder(folder, model["pretrained"])
    runs = latest_runs(folder)
    roots = {task_variant(config, strategy, bench)["task"]: bench for bench in config["tasks"]}
    unknown = sorted({t for t, (results, _, _) in runs.items() if t not in roots
                      and not any(t in _below(results, r) for r in roots)})
    if unknown:
        raise IngestError(f"{runs[unknown[0]][2]}: task {unknown[0]!r} is none of the lm-eval tasks the config's "
                          f"benchmarks run under strategy {strategy!r} ({', '.join(sorted(roots))}); add its benchmark "
                          f"to config key tasks, or ingest that run under the strategy that ran it")
    counter, written = TokenCounter(model), []
    for root, bench in roots.items():
        if root not in runs:
            raise IngestError(f"{folder}: no results file reports task {root!r} (benchmark {bench}, strategy "
                              f"{strategy!r}); run it, or remove the benchmark from config key tasks")
        results, stamp, path = runs[root]
        payload = restrict(results, root)
        leaves = [t for t in payload["results"] if t not in payload.get("group_subtasks", {})] or [root]
        samples, usage = [], []
        for task in sorted(leaves):
            records = [{"task": task, **r} for r in read_samples(folder, task, stamp, results, path)]
            samples += records
            usage += usage_of(records, payload["configs"][task]["output_type"], counter)
        payload.pop("samples", None)
        payload["cotscale"] = {
            "model": model_key, "hf_id": model["hf_id"], "revision": model["revision"], "family": model["family"],
            "N": model["N"], "D": model["D"], "strategy": {**config["strategies"][strategy]},
            "benchmark": bench, "lm_eval_task": root, "source": str(path), "token_unit": counter.unit,
            "usage_summary": summarize_usage(usage), "spec": job_spec(config, model_key, strategy, bench),
        }
        out = Path(evals_root) / model_key / strategy / bench
        write_jsonl_gz(out / "samples.jsonl.gz", samples)
        write_jsonl_gz(out / "usage.jsonl.gz", usage)
        write_json(out / "results.json", payload)
        written.append(out / "results.json")
    return written


def _below(results: dict, root: str) -> set[str]:
    return set(restrict(results, root)["results"]) | set(restrict(results, root).get("groups", {}))


def ingest_config(config: dict, evals_root: str | Path) -> list[Path]:
    """Every (model, strategy) folder of the config's ``lm_eval_outputs`` block."""
    written: dict[str, list[Path]] = defaultdict(list)
    for model_key, by_strategy in config.get("lm_eval_outputs", {}).items():
        for strategy, folder in by_strategy.items():
            written[model_key] += ingest_folder(config, model_key, strategy, folder, evals_root)
    return [p for paths in written.values() for p in paths]

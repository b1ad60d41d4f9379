"""Token accounting: one usage record per request that the cotscale model wrapper sends to its backend.

Record schema (``usage.jsonl.gz``, one JSON object per line). Every record::

    {"task": "arc_challenge",      # lm-eval task name (the subtask for groups such as mmlu)
     "doc_id": 17,                 # lm-eval document id within that task
     "kind": "generate",           # "generate" | "loglikelihood"
     "prompt_tokens": 143,         # prompt tokens this request adds to what its document already computed
     "generated_tokens": 212,      # tokens the backend generated, summed over ALL returned sequences
     "sequences": 4}               # sequences the request returned (beams, samples); 1 for loglikelihood

``generate`` records also carry ``truncated`` (bool: some returned sequence ran to its max_gen_toks budget instead
of ending at an EOS id or stop sequence), ``truncated_sequences`` (how many did) and ``stops_at`` ("eos_or_stop":
every returned sequence, beams included, is counted to the first EOS id or stop sequence; beam search stops beams at
the stop sequences on both backends, see docs/hybrid_format.md) and ``empty`` (cotscale.contract.EMPTY_FIELD: the
generation produced no content, :func:`is_empty` of every sequence the strategy uses: the best beam of a beam
search, every sample). ``loglikelihood`` records also
carry ``scored_tokens``: the ids the backend scored (context + continuation after its truncation to the model's
window) and, where the backend counts them, ``computed_tokens`` (contract.COMPUTED_TOKENS_FIELD): the ids it actually
ran for the request (HF with shared-prefix scoring, cotscale.lm.prefix: the first request of a group the whole
sequence, the others only what follows the shared prefix; lm-eval's own path: each sequence whole, a one-token
continuation sharing another's run 0).

``generate`` records of a thinking strategy (``thinking: true``, cotscale.lm.thinking) also carry
``thinking_tokens`` (generated before the end of thinking, its end token included when the model wrote it) and
``answer_tokens`` (generated after it; 0 for the hybrid format, whose choices are scored instead), which sum to
``generated_tokens``, and ``unanswered`` (the thinking never closed and no thinking budget forced it: no answer). Their
``truncated`` means some phase hit its budget or gave no answer: the thinking cut at ``thinking_budget`` (budget
forcing), a thinking that never closed (at ``max_gen_toks`` or at EOS: ``unanswered``), or an answer that ran to its
``max_gen_toks``. Their ``prompt_tokens`` are the thinking prompt plus what the
answer prompt adds to it (the forced end token and the answer cue).

The contract: summing ``prompt_tokens + generated_tokens`` over ALL records of a document gives the tokens the
backend computes for it, each shared prompt once (as a prefix cache would compute them):

* ``generate``: its prompt after the backend's truncation (once per request, however many sequences), plus the
  generated tokens of every sequence. A generated sequence is counted from the backend's ids to the first of any
  EOS id (counted) or the token that completes a stop sequence (counted); padding (pad != EOS) and whatever a
  batched HF generation produced after that point are not counted, which is exactly what vLLM reports.
* ``loglikelihood``: ``prompt_tokens`` = ``scored_tokens`` minus its longest common token prefix with the
  document's earlier scored sequences and, for a hybrid document, with its generation prompt + rationale (already
  counted by the generate record). So the first choice of a multiple-choice document counts the shared context, the
  others only their own continuation (and choice-specific context, winogrande's option); a hybrid choice counts the
  answer cue (first choice of each rationale) and its own tokens. ``scored_tokens`` minus ``prompt_tokens`` is the
  shared part. ``generated_tokens == 0``.

Counts always come from the backend's token ids (vLLM ``CompletionOutput.token_ids``, Hugging Face output ids), never
from whitespace-separated words.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal, TypedDict

from cotscale.contract import COMPUTED_TOKENS_FIELD, EMPTY_FIELD
from cotscale.io import iter_jsonl_gz, write_jsonl_gz

KINDS = ("generate", "loglikelihood")
FIELDS = ("task", "doc_id", "kind", "prompt_tokens", "generated_tokens", "sequences")
GENERATE_FIELDS = ("truncated", "truncated_sequences", "stops_at", EMPTY_FIELD)
THINKING_FIELDS = ("thinking_tokens", "answer_tokens", "unanswered")
LOGLIKELIHOOD_FIELDS = ("scored_tokens", COMPUTED_TOKENS_FIELD)
STOPS_AT = ("eos_or_stop",)


def stop_index(text: str, stops: Iterable[str] | str | None = (), after_content: bool = False) -> int | None:
    """Where a generation's text ends: the start of the first of the stop sequences ``stops`` in ``text`` (None:
    none), where lm-eval cuts a generation (postprocess_generated_text). With ``after_content`` (the strategy key
    ``stop_after_content``) a match lying wholly in the whitespace-only beginning of the text does not count (the
    model's leading "\\n" under ``until: ["\\n"]``): the text ends at the first stop after the rationale started."""
    stops = [s for s in ([stops] if isinstance(stops, str) else stops or ()) if s]
    start = len(text) - len(text.lstrip()) if after_content else 0  # the first non-whitespace character
    found = [i for s in stops if (i := text.find(s, max(0, start - len(s) + 1))) >= 0]
    return min(found, default=None)


def is_empty(text: str, until: Iterable[str] | str | None = (), after_content: bool = False) -> bool:
    """A generation that produced no content: no non-whitespace text before the first of the stop sequences
    ``until`` (the text starts after the prompt and its cue; EOS is not in a backend's decoded text). A model that
    opens with the stop sequence ("\\n" under ``until: ["\\n"]``), writes only whitespace, or ends at EOS at once
    generated nothing; the request still counts in the token means, so the tables say how often it happened.
    ``after_content``: the generation ran under ``stop_after_content`` (see :func:`stop_index`)."""
    return not text[:stop_index(text, until, after_content)].strip()


class UsageRecord(TypedDict, total=False):
    task: str | None
    doc_id: int | None
    kind: Literal["generate", "loglikelihood"]
    prompt_tokens: int
    generated_tokens: int
    sequences: int
    truncated: bool  # generate
    truncated_sequences: int  # generate
    stops_at: Literal["eos_or_stop"]  # generate
    empty: bool  # generate (EMPTY_FIELD)
    scored_tokens: int  # loglikelihood
    computed_tokens: int  # loglikelihood: ids the backend ran for it (shared-prefix scoring); absent: not counted
    thinking_tokens: int  # generate, thinking strategies
    answer_tokens: int  # generate, thinking strategies
    unanswered: bool  # generate, thinking strategies


def make_record(task: str | None, doc_id: int | None, kind: str, prompt_tokens: int, generated_tokens: int = 0,
                sequences: int = 1, *, truncated_sequences: int = 0, stops_at: str = "eos_or_stop",
                scored_tokens: int | None = None, thinking_tokens: int | None = None,
                answer_tokens: int | None = None, unanswered: bool | None = None,
                empty: bool | None = None, computed_tokens: int | None = None) -> UsageRecord:
    """A validated record (ints are cast from numpy/torch scalars; negative counts are a bug, not data).
    ``empty`` (generate; :func:`is_empty`): None leaves the field out (records written before it existed)."""
    if kind not in KINDS:
        raise ValueError(f"usage record: kind must be one of {KINDS}, not {kind!r}")
    counts = {"prompt_tokens": int(prompt_tokens), "generated_tokens": int(generated_tokens),
              "sequences": int(sequences)}
    if kind == "generate":
        counts["truncated_sequences"] = int(truncated_sequences)
        if counts["truncated_sequences"] > counts["sequences"]:
            raise ValueError(f"usage record: more truncated sequences than sequences ({counts})")
        if stops_at not in STOPS_AT:
            raise ValueError(f"usage record: stops_at must be one of {STOPS_AT}, not {stops_at!r}")
        if thinking_tokens is not None:
            counts["thinking_tokens"], counts["answer_tokens"] = int(thinking_tokens), int(answer_tokens or 0)
            if counts["thinking_tokens"] + counts["answer_tokens"] != counts["generated_tokens"]:
                raise ValueError(f"usage record: thinking_tokens + answer_tokens != generated_tokens ({counts})")
    else:
        counts["scored_tokens"] = int(prompt_tokens if scored_tokens is None else scored_tokens)
        if counts["scored_tokens"] < counts["prompt_tokens"]:
            raise ValueError(f"usage record: fewer scored than counted prompt tokens ({counts})")
        if computed_tokens is not None:
            counts[COMPUTED_TOKENS_FIELD] = int(computed_tokens)
    bad = [k for k, v in counts.items() if v < 0]
    if bad:
        raise ValueError(f"usage record: negative {', '.join(bad)} ({counts})")
    if kind == "loglikelihood" and counts["generated_tokens"]:
        raise ValueError("usage record: a loglikelihood request generates no tokens")
    doc = None if doc_id is None else int(doc_id)
    record = UsageRecord(task=task, doc_id=doc, kind=kind, **counts)  # type: ignore[typeddict-item]
    if kind == "generate":
        record["truncated"] = counts["truncated_sequences"] > 0
        record["stops_at"] = stops_at  # type: ignore[typeddict-item]
        if thinking_tokens is not None:
            record["unanswered"] = bool(unanswered)
        if empty is not None:
            record[EMPTY_FIELD] = bool(empty)  # type: ignore[literal-required]
    return record


class UsageRecorder:
    """An append-only list of usage records; iterable, so it can be handed straight to a writer."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []

    def add(self, task: str | None, doc_id: int | None, kind: str, prompt_tokens: int, generated_tokens: int = 0,
            sequences: int = 1, **extra) -> UsageRecord:
        record = make_record(task, doc_id, kind, prompt_tokens, generated_tokens, sequences, **extra)
        self.records.append(record)
        return record

    def __iter__(self) -> Iterator[UsageRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index):
        return self.records[index]

    def clear(self) -> None:
        self.records.clear()

    def write(self, path: str | Path) -> int:
        return write_usage(path, self.records)


def write_usage(path: str | Path, records: Iterable[UsageRecord]) -> int:
    """Write records as gzip JSON lines, atomically (temp file + rename). Returns the number written."""
    return write_jsonl_gz(path, ({k: r[k] for k in (*FIELDS, *GENERATE_FIELDS, *LOGLIKELIHOOD_FIELDS, *THINKING_FIELDS)
                                  if k in r}
                                 for r in records))


def iter_usage(path: str | Path) -> Iterator[UsageRecord]:
    """Stream the records of a usage file one at a time (paper-scale files never sit in memory whole)."""
    for line_no, raw in enumerate(iter_jsonl_gz(path), 1):
        missing = [k for k in FIELDS if k not in raw]
        if missing:
            raise ValueError(f"{path}: record {line_no} lacks {', '.join(missing)}")
        extra = {k: raw[k] for k in ("truncated_sequences", "stops_at", "scored_tokens", EMPTY_FIELD, *THINKING_FIELDS)
                 if k in raw}
        yield make_record(raw["task"], raw["doc_id"], raw["kind"], raw["prompt_tokens"], raw["generated_tokens"],
                          raw["sequences"], **extra)


def summarize_usage(records: Iterable[UsageRecord]) -> dict[str, dict]:
    """Per lm-eval (sub)task: request counts and token sums by kind, documents and the token unit — the small summary
    an evaluation writes into its results.json so that the tables never re-read usage.jsonl.gz. ``empty``: the
    generate requests whose generation was empty, present when every generate record says (EMPTY_FIELD).
    ``computed_tokens``: the tokens the backend ran (COMPUTED_TOKENS_FIELD where a record has it, else its prompt +
    generated tokens, as the contract reads an absent field)."""
    per_task: dict[str, dict] = {}
    docs: dict[str, set] = {}
    unclassified: set = set()
    for r in records:
        entry = per_task.setdefault(r["task"], {
            "requests": 0, "generate_requests": 0, "loglikelihood_requests": 0, "documents": 0,
            "prompt_tokens": 0, "generate_prompt_tokens": 0, "loglikelihood_prompt_tokens": 0,
            "generated_tokens": 0, "sequences": 0, "truncated": 0, "token_unit": r.get("token_unit", "tokens"),
            "thinking_tokens": 0, "answer_tokens": 0, "unanswered": 0, COMPUTED_TOKENS_FIELD: 0})
        kind = r["kind"]
        entry["requests"] += 1
        entry[f"{kind}_requests"] += 1
        entry["prompt_tokens"] += r["prompt_tokens"]
        entry[f"{kind}_prompt_tokens"] += r["prompt_tokens"]
        entry["generated_tokens"] += r["generated_tokens"]
        entry[COMPUTED_TOKENS_FIELD] += r.get(COMPUTED_TOKENS_FIELD, r["prompt_tokens"] + r["generated_tokens"])
        entry["sequences"] += r["sequences"]
        entry["truncated"] += bool(r.get("truncated"))
        entry["thinking_tokens"] += r.get("thinking_tokens", 0)
        entry["answer_tokens"] += r.get("answer_tokens", 0)
        entry["unanswered"] += bool(r.get("unanswered"))
        if kind == "generate" and EMPTY_FIELD in r:
            entry[EMPTY_FIELD] = entry.get(EMPTY_FIELD, 0) + bool(r[EMPTY_FIELD])
        elif kind == "generate":  # absent (not 0) when a generation was never classified
            unclassified.add(r["task"])
        docs.setdefault(r["task"], set()).add(r["doc_id"])
    for task, entry in per_task.items():
        entry["documents"] = len(docs[task])
        if task in unclassified:
            entry.pop(EMPTY_FIELD, None)
    return dict(sorted(per_task.items(), key=lambda item: str(item[0])))


def empty_fraction(entries: Iterable[dict]) -> float:
    """Share of the generate requests of summarize_usage ``entries`` whose generation was empty (:func:`is_empty`);
    NaN without generate requests, or where a generation was never classified (results written before the field)."""
    entries = [e for e in entries if e["generate_requests"]]
    if not entries or any(EMPTY_FIELD not in e for e in entries):
        return math.nan
    return sum(e[EMPTY_FIELD] for e in entries) / sum(e["generate_requests"] for e in entries)

"""What an evaluation keeps beside lm-eval's answers: usage records, per-document sample fields, and their gathering
from every data-parallel rank onto rank 0.

One place builds each usage record (:meth:`Records.add_generate`, :meth:`Records.add_score`; the schema is
:mod:`cotscale.usage`); the sample-field names are the contract's (:mod:`cotscale.contract`), which the tables
(:mod:`cotscale.scaling`) read back. Light on purpose: no lm-eval, no torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cotscale.contract import BUDGET_FIELDS, RATIONALE_LOGLIKELIHOODS, RESPONSE_FIELDS
from cotscale.io import write_jsonl_gz
from cotscale.usage import UsageRecord, UsageRecorder

Key = tuple[str, int]  # (task_name, doc_id): one lm-eval document


@dataclass
class Records:
    """The outputs of one task on one rank (see the package docstring for what each holds)."""

    usage: UsageRecorder = field(default_factory=UsageRecorder)
    rationales: dict[Key, list[str]] = field(default_factory=dict)  # hybrid: best beam / all samples / the thinking
    hybrid_details: dict[Key, dict] = field(default_factory=dict)  # hybrid: prompt, rationales, choice scores, votes
    thinking_details: dict[Key, dict] = field(default_factory=dict)  # documents of thinking strategies
    generation_details: dict[Key, dict] = field(default_factory=dict)  # generate format: RESPONSE_FIELDS per document
    generation_args: dict[Key, dict] = field(default_factory=dict)  # per document and phase: what the backend was sent

    def add_generate(self, key: Key, prompt_tokens: int, generated_tokens: int, sequences: int, *,
                     truncated_sequences: int, empty: bool, stops_at: str = "eos_or_stop",
                     thinking_tokens: int | None = None, answer_tokens: int | None = None,
                     unanswered: bool | None = None) -> UsageRecord:
        """The usage record of one generation request (thinking strategies: both phases in one record)."""
        extra = {} if thinking_tokens is None else {"thinking_tokens": thinking_tokens,
                                                     "answer_tokens": answer_tokens, "unanswered": unanswered}
        return self.usage.add(key[0], key[1], "generate", prompt_tokens, generated_tokens, sequences,
                              truncated_sequences=truncated_sequences, stops_at=stops_at, empty=empty, **extra)

    def add_score(self, key: Key, prompt_tokens: int, scored_tokens: int | None = None,
                  computed_tokens: int | None = None) -> UsageRecord:
        """The usage record of one scored (context, continuation) request; ``computed_tokens``: the ids the backend
        ran for it (a shared-prefix group's first request carries the prefix), None where it does not count them."""
        return self.usage.add(key[0], key[1], "loglikelihood", prompt_tokens, scored_tokens=scored_tokens,
                              computed_tokens=computed_tokens)

    def add_responses(self, key: Key, generated_tokens: int, sequence_logprob: float | None) -> dict:
        """One response of a generate-format document, in lm-eval's ``resps`` order; returns its details."""
        detail = self.generation_details.setdefault(key, {f: [] for f in RESPONSE_FIELDS})
        detail["generated_tokens"].append(generated_tokens)
        detail["sequence_logprobs"].append(sequence_logprob)
        return detail

    def sample_fields(self) -> dict[Key, dict]:
        """What each sample record carries beside lm-eval's fields. Hybrid: the rationale(s) and the prompt they
        were generated from, the per-rationale choice log-likelihoods, the RESPONSE_FIELDS of each rationale
        (``sequence_logprobs`` None for beams and thinking), for self-consistency the votes, and for a length sweep
        the BUDGET_FIELDS. Generate format: the RESPONSE_FIELDS of each response (what weighted maj@k and the
        per-sample sweeps read). Every document that generated: ``generation_args``, per phase the arguments its
        generation ran with (max_gen_toks, until, decoding; not lm-eval's task defaults). Documents of thinking strategies: ``thinking_prompt``, ``thinking`` (as the answer
        phase continued it), ``thinking_tokens``, ``thinking_forced`` and ``unanswered``."""
        extra = ("votes", *RESPONSE_FIELDS, *BUDGET_FIELDS)
        out = {key: dict(d) for key, d in self.generation_details.items()}
        for key, args in self.generation_args.items():
            out.setdefault(key, {})["generation_args"] = args
        for key, fields in self.thinking_details.items():
            out.setdefault(key, {}).update(fields)
        for key, d in self.hybrid_details.items():
            out.setdefault(key, {}).update(
                rationales=d["rationales"], generation_prompt=d["prompt"],
                **{RATIONALE_LOGLIKELIHOODS: d["loglikelihoods"]}, **{f: d[f] for f in extra if f in d})
        return out

    def part(self, cache_stats: dict) -> tuple:
        """This rank's share of :func:`gather`, picklable."""
        return list(self.usage), dict(self.rationales), self.sample_fields(), cache_stats

    def save(self, usage_path: str | Path | None = None, rationales_path: str | Path | None = None) -> None:
        """Write usage (and hybrid rationales) as gzip JSON lines, atomically."""
        if usage_path:
            self.usage.write(usage_path)
        if rationales_path:
            write_jsonl_gz(rationales_path, ({"task": t, "doc_id": d, **detail}
                                             for (t, d), detail in self.hybrid_details.items()))


@dataclass
class GatheredOutputs:
    """What ``CotscaleLM.gather_outputs`` collects on rank 0."""

    usage: list
    rationales: dict
    cache_stats: dict
    usage_per_rank: list[int]
    sample_fields: dict  # {(task_name, doc_id): {field: value}} to add to that document's sample record


def gather(parts: list[tuple]) -> GatheredOutputs:
    """The :meth:`Records.part` of every rank (rank order) as one."""
    usage, rationales, fields = [], {}, {}
    for part_usage, part_rationales, part_fields, _ in parts:
        usage.extend(part_usage)
        rationales.update(part_rationales)
        fields.update(part_fields)
    return GatheredOutputs(usage, rationales, sum_cache_stats([p[3] for p in parts]), [len(p[0]) for p in parts],
                           fields)


def sum_cache_stats(parts: list[dict]) -> dict:
    """cache_stats() of several ranks as one: counts summed (per kind too), settings as rank 0 has them."""
    out = dict(parts[0])
    for key, value in parts[0].items():
        if isinstance(value, dict):
            out[key] = {k: sum(p[key].get(k, 0) for p in parts) for k in value}
        elif isinstance(value, int) and not isinstance(value, bool) and key != "request_chunk":
            out[key] = sum(p[key] for p in parts)
    return out

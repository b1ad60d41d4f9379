"""cotscale.aggregate.usage_summary: the block/regex streaming parser equals a straightforward json.loads loop."""

from __future__ import annotations

import gzip
import json
import random
from collections import defaultdict

import pytest

import cotscale.aggregate as agg
from cotscale.usage import write_usage


def reference(path) -> dict:
    """The obvious implementation: every line through json.loads."""
    per_task = defaultdict(lambda: {"requests": 0, "generate_requests": 0, "prompt_tokens": 0, "generated_tokens": 0,
                                    "docs": set(), "token_unit": "tokens"})
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            r = json.loads(line)
            e = per_task[r["task"]]
            e["requests"] += 1
            e["generate_requests"] += r["kind"] == "generate"
            e["prompt_tokens"] += r["prompt_tokens"]
            e["generated_tokens"] += r["generated_tokens"]
            e["docs"].add(r["doc_id"])
            e["token_unit"] = r.get("token_unit", "tokens")
    return dict(per_task)


def records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    tasks = ["arc_challenge", "mmlu_astronomy", "mmlu_nutrition", "xwinograd_zh", "tâche_ü"]  # interleaved, non-ASCII
    out = []
    for _ in range(n):
        kind = rng.choice(["generate", "loglikelihood"])
        seqs = rng.randint(1, 5) if kind == "generate" else 1
        out.append({"task": rng.choice(tasks), "doc_id": rng.choice([None, *range(300)]), "kind": kind,
                    "prompt_tokens": rng.randint(0, 900), "generated_tokens": rng.randint(0, 1000) if kind == "generate" else 0,
                    "sequences": seqs})
    return out


@pytest.fixture
def small_blocks(monkeypatch):
    """Many blocks (records cut at every possible offset); counts the blocks that took the json.loads path."""
    monkeypatch.setattr(agg, "_BLOCK_BYTES", 997)
    slow = []
    real = agg._add_records
    monkeypatch.setattr(agg, "_add_records", lambda *a: (slow.append(1), real(*a)))
    return slow


def test_streaming_equals_reference_on_written_usage(tmp_path, small_blocks):
    path = tmp_path / "usage.jsonl.gz"
    write_usage(path, records(5000))
    assert dict(agg.usage_summary(path)) == reference(path)
    assert not small_blocks  # every block of a file cotscale wrote took the regex path


def test_non_canonical_lines_fall_back_to_json(tmp_path, small_blocks):
    """Published ingests (token_unit), other key orders, blank lines, CRLF and a last line without newline."""
    lines = [json.dumps(r) for r in records(3000, seed=1)]
    for i in range(0, len(lines), 7):
        r = json.loads(lines[i])
        r["token_unit"] = "words"
        lines[i] = json.dumps(r)
    for i in range(3, len(lines), 11):
        lines[i] = json.dumps(dict(reversed(list(json.loads(lines[i]).items()))))
    lines[100] += "\r"
    lines.insert(200, "")
    lines.insert(201, "   ")
    path = tmp_path / "usage.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines))
    got = agg.usage_summary(path)
    assert dict(got) == reference(path)
    assert {e["token_unit"] for e in got.values()} <= {"tokens", "words"}
    assert small_blocks


def test_tables_from_usage_files(tmp_path):
    """token_rows through the fast path: sums, documents and means per (sub)task."""
    recs = records(400, seed=2)
    write_usage(tmp_path / "usage.jsonl.gz", recs)
    results = {"cotscale": {"model": "m", "revision": "main", "family": "f", "N": 1.0, "D": 2.0,
                            "strategy": {"name": "hybrid"}, "benchmark": "mmlu"}}
    rows = {r["task"]: r for r in agg.token_rows(results, tmp_path / "usage.jsonl.gz")}
    for task in {r["task"] for r in recs}:
        mine = [r for r in recs if r["task"] == task]
        row = rows[task]
        assert row["requests"] == len(mine)
        assert row["prompt_tokens"] == sum(r["prompt_tokens"] for r in mine)
        assert row["generated_tokens"] == sum(r["generated_tokens"] for r in mine)
        assert row["documents"] == len({r["doc_id"] for r in mine})


def test_invalid_record_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "usage.jsonl.gz"
    good = json.dumps(records(1)[0])
    with gzip.open(path, "wt") as fh:
        fh.write(good + "\n" + good.replace('"prompt_tokens": ', '"prompt_tokens": 0') + "\n")  # leading zero
    with pytest.raises(ValueError, match="usage.jsonl.gz"):
        agg.usage_summary(path)
    with gzip.open(path, "wt") as fh:
        fh.write(good + "\n" + good[:30] + "\n")  # truncated record
    with pytest.raises(ValueError, match="not valid JSON"):
        agg.usage_summary(path)

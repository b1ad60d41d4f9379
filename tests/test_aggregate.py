"""Aggregation from the usage summaries evaluations write: the summary equals a pandas group-by of the records, the
token rows follow from it, a results.json of another spec than the config is refused, per-strategy tables combine."""

from __future__ import annotations

import math
import random

import pandas as pd
import pytest

import cotscale.aggregate as agg
from cotscale.config import job_spec, load_config
from cotscale.io import write_json
from cotscale.usage import summarize_usage


def records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    tasks = ["arc_challenge", "mmlu_astronomy", "mmlu_nutrition", "xwinograd_zh", "tâche_ü"]
    out = []
    for _ in range(n):
        kind = rng.choice(["generate", "loglikelihood"])
        out.append({"task": rng.choice(tasks), "doc_id": rng.choice([None, *range(300)]), "kind": kind,
                    "prompt_tokens": rng.randint(0, 900),
                    "generated_tokens": rng.randint(0, 1000) if kind == "generate" else 0,
                    "sequences": rng.randint(1, 5) if kind == "generate" else 1,
                    **({"truncated": rng.random() < 0.3} if kind == "generate" else {})})
    return out


def test_summary_equals_a_group_by_of_the_records():
    recs = records(5000)
    frame = pd.DataFrame(recs)
    summary = summarize_usage(recs)
    assert list(summary) == sorted(summary)
    for task, group in frame.groupby("task"):
        got = summary[task]
        gen, ll = group[group.kind == "generate"], group[group.kind == "loglikelihood"]
        assert (got["requests"], got["generate_requests"], got["loglikelihood_requests"]) == (len(group), len(gen),
                                                                                            len(ll))
        assert got["generate_prompt_tokens"] == gen.prompt_tokens.sum()
        assert got["loglikelihood_prompt_tokens"] == ll.prompt_tokens.sum()
        assert got["generated_tokens"] == gen.generated_tokens.sum() and got["sequences"] == group.sequences.sum()
        assert got["truncated"] == (gen.truncated == True).sum()  # noqa: E712 - NaN (no key) is not truncated
        assert got["documents"] == len({r["doc_id"] for r in recs if r["task"] == task})


def _results(summary: dict, spec=None, strategy="standard", bench="arc_challenge") -> dict:
    return {"results": {bench: {"acc,none": 0.5, "acc_stderr,none": 0.1}},
            "cotscale": {"model": "m", "revision": "main", "family": "f", "N": 1e6, "D": 1e9,
                         "strategy": {"name": strategy}, "benchmark": bench, "usage_summary": summary,
                         "spec": spec, "wall_seconds": 2.0, "model_load_seconds": 1.0}}


def test_token_rows_keep_the_kinds_apart():
    summary = {"arc_challenge": {"requests": 25, "generate_requests": 5, "loglikelihood_requests": 20,
                                 "documents": 5, "prompt_tokens": 700, "generate_prompt_tokens": 500,
                                 "loglikelihood_prompt_tokens": 200, "generated_tokens": 60, "sequences": 25,
                                 "truncated": 2, "token_unit": "tokens"}}
    (row,) = agg.token_rows(_results(summary))
    assert row["mean_generate_prompt_tokens"] == 100 and row["mean_loglikelihood_prompt_tokens"] == 10
    assert row["mean_generated_tokens"] == 12 and row["generated_tokens_per_document"] == 12
    assert row["truncated_fraction"] == 0.4 and row["token_unit"] == "tokens"
    with pytest.raises(agg.AggregationError, match="no cotscale.usage_summary"):
        agg.token_rows({"results": {}, "cotscale": {**_results(summary)["cotscale"], "usage_summary": None}})


@pytest.fixture
def config(root):
    return load_config({"strategies": {"standard": {"format": "loglikelihood", "prompt": "plain",
                                                    "decoding": "greedy", "variant": "standard"}},
                        "models": {"m": {"hf_id": "x/y", "family": "f", "params": 1.0e6, "train_tokens": 1.0e9}},
                        "analysis": {"baseline": "standard", "cot": "standard", "llh": "standard"}})


def test_a_results_file_of_another_spec_is_refused(config, tmp_path):
    summary = summarize_usage(records(50))
    spec = job_spec(config, "m", "standard", "arc_challenge")
    good = tmp_path / "good.json"
    write_json(good, _results(summary, spec))
    agg.write_strategy_tables(config, "standard", [str(good)], tmp_path / "ok")
    bench = pd.read_csv(tmp_path / "ok" / "benchmarks.csv").iloc[0]
    assert bench["arc_challenge"] == 0.5 and math.isnan(bench["overall"])
    assert pd.read_csv(tmp_path / "ok" / "compute.csv").iloc[0]["wall_seconds"] == 2.0

    other = {**spec, "seed": 7, "strategy": {**spec["strategy"], "max_gen_toks": 8}}
    stale = tmp_path / "stale.json"
    write_json(stale, _results(summary, other))
    with pytest.raises(agg.AggregationError) as info:
        agg.write_strategy_tables(config, "standard", [str(stale)], tmp_path / "tables")
    assert str(stale) in str(info.value) and "seed: 7 recorded, 1234 in the config" in str(info.value)
    write_json(stale, _results(summary, {**spec, "strategy": {**spec["strategy"], "max_gen_toks": 8}}))
    with pytest.raises(agg.AggregationError, match="strategy.max_gen_toks: 8 recorded, 256 in the config"):
        agg.write_strategy_tables(config, "standard", [str(stale)], tmp_path / "tables")
    assert not (tmp_path / "tables").exists()  # nothing half-written


def test_per_strategy_tables_combine(tmp_path):
    for strategy, value in (("a", 1.0), ("b", 2.0)):
        folder = tmp_path / strategy
        folder.mkdir()
        for table in ("scores", "tokens", "compute"):
            pd.DataFrame({"model": ["m"], "strategy": [strategy], "value": [value]}).to_csv(folder / f"{table}.csv",
                                                                                      index=False)
        pd.DataFrame({"family": ["f"], "model": ["m"], "strategy": [strategy]}).to_csv(folder / "benchmarks.csv",
                                                                                     index=False)
    (tmp_path / "b" / "scores.csv").write_text("model,strategy,value\n")  # a strategy without rows
    agg.combine_tables([tmp_path / "b", tmp_path / "a"], tmp_path / "all")
    assert list(pd.read_csv(tmp_path / "all" / "benchmarks.csv")["strategy"]) == ["a", "b"]
    assert list(pd.read_csv(tmp_path / "all" / "scores.csv")["strategy"]) == ["a"]
    assert list(pd.read_csv(tmp_path / "all" / "tokens.csv")["value"]) == [2.0, 1.0]

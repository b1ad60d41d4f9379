"""Data parallelism on the hf backend, and self-consistency on generative tasks.

An evaluation with `data_parallel: 2` re-runs itself under `accelerate launch --multi_gpu --num_processes 2`; on this
CPU machine that is two real gloo processes, each with its own copy of the model and half of the documents. Rank 0
gathers every rank's usage records and rationales and writes the outputs, which must equal a one-process run's.
Self-consistency (`samples: k`) gives gsm8k `repeats: k` and a majority vote over the extracted answers.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from _demo import read_gz, reduced_demo
from _lm_fixtures import build_tiny_model
from cotscale.config import ROOT, load_config
from cotscale.evaluate import run_evaluation
from cotscale.lm.model import without_padding
from cotscale.tasks import render_repeats_overrides, scoped_task_manager

LIMIT = 7  # odd: the two ranks get 4 and 3 documents, so lm-eval pads the second rank's requests
KILL_RANK_SHIM = """
import os, signal
if os.environ.get("RANK") == os.environ.get("COTSCALE_TEST_KILL_RANK"):
    from cotscale.cache import RequestCache
    _put = RequestCache.put_many
    def put_many(self, entries):  # this rank dies like an OOM-killed process, right after its first cache write
        _put(self, entries)
        os.kill(os.getpid(), signal.SIGKILL)
    RequestCache.put_many = put_many
"""


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("dp-model"))


def _config(model: Path, data_parallel: int) -> dict:
    config = reduced_demo(ROOT, tasks=["arc_challenge", "gsm8k"], models=[])
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["limit"] = LIMIT
    config["strategies"].update({name: demo["strategies"][name] for name in ("hybrid_cot", "self_consistency")})
    for spec in config["strategies"].values():
        spec.pop("models", None)
    config["models"] = {"m": {"hf_id": str(model), "family": "f", "params": 1.0e6, "train_tokens": 1.0e6,
                              "data_parallel": data_parallel}}
    return load_config(config)


def _evaluate(model: Path, out: Path, strategy: str, task: str, data_parallel: int) -> dict:
    results = run_evaluation(_config(model, data_parallel), "m", strategy, task, out, cache_dir=out / "cache")
    written = json.loads((out / "results.json").read_text())
    assert results["cotscale"] == written["cotscale"]
    return written


def _key(record: dict) -> str:
    return json.dumps(record, sort_keys=True)


@pytest.fixture(scope="module")
def hybrid_runs(tiny_model, tmp_path_factory) -> dict[int, Path]:
    outs = {}
    for dp in (1, 2):
        outs[dp] = tmp_path_factory.mktemp(f"hybrid-dp{dp}")
        _evaluate(tiny_model, outs[dp], "hybrid_cot", "arc_challenge", dp)
    return outs


def test_two_ranks_write_what_one_process_writes(hybrid_runs):
    one, two = (json.loads((hybrid_runs[dp] / "results.json").read_text()) for dp in (1, 2))
    assert one["cotscale"]["data_parallel"] == {"processes": 1, "usage_records_per_rank": [5 * LIMIT]}
    # 4-choice documents, one rationale each: 1 generate + 4 loglikelihood records per document; rank 0 has documents
    # 0, 2, 4, 6 and rank 1 has 1, 3, 5 (lm-eval's padding of rank 1 answered without records)
    assert two["cotscale"]["data_parallel"] == {"processes": 2, "usage_records_per_rank": [5 * 4, 5 * 3]}
    assert two["results"]["arc_challenge"]["acc,none"] == one["results"]["arc_challenge"]["acc,none"]
    assert two["cotscale"]["cache"]["misses"] == one["cotscale"]["cache"]["misses"] == 5 * LIMIT

    usage = {dp: read_gz(hybrid_runs[dp] / "usage.jsonl.gz") for dp in (1, 2)}
    assert sorted(map(_key, usage[2])) == sorted(map(_key, usage[1]))
    assert Counter(r["kind"] for r in usage[2]) == {"generate": LIMIT, "loglikelihood": 4 * LIMIT}

    samples = {dp: {s["doc_id"]: s for s in read_gz(hybrid_runs[dp] / "samples.jsonl.gz")} for dp in (1, 2)}
    assert sorted(samples[2]) == list(range(LIMIT))
    for doc_id, sample in samples[1].items():
        assert samples[2][doc_id]["rationales"] == sample["rationales"]  # greedy: the same rationale on either rank
        assert samples[2][doc_id]["acc"] == sample["acc"]
    assert not (hybrid_runs[2] / "cache").exists()  # every rank dropped its request cache


def test_a_killed_rank_resumes_from_the_ranks_caches(hybrid_runs, tiny_model, tmp_path, monkeypatch):
    from cotscale.evaluate import EvaluationError

    (tmp_path / "shim").mkdir()
    (tmp_path / "shim" / "sitecustomize.py").write_text(KILL_RANK_SHIM)
    out, cache = tmp_path / "out", tmp_path / "cache"
    with monkeypatch.context() as env:
        env.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(tmp_path / "shim"), os.environ.get("PYTHONPATH")])))
        env.setenv("COTSCALE_TEST_KILL_RANK", "1")
        with pytest.raises(EvaluationError, match="exited with status"):
            run_evaluation(_config(tiny_model, 2), "m", "hybrid_cot", "arc_challenge", out, cache_dir=cache)
    assert not out.exists()
    # rank 1 stored its 3 rationales before it died
    (rank1,) = cache.glob("requests-*.rank1.jsonl")
    assert [len(json.loads(line)["entries"]) for line in rank1.read_text().splitlines()] == [3]

    resumed = run_evaluation(_config(tiny_model, 2), "m", "hybrid_cot", "arc_challenge", out, cache_dir=cache)
    assert resumed["cotscale"]["cache"]["hits"] >= 3 and resumed["cotscale"]["cache"]["hits_by_kind"]["generate"] >= 3
    assert not cache.exists()
    reference = hybrid_runs[2]
    assert read_gz(out / "usage.jsonl.gz") == read_gz(reference / "usage.jsonl.gz")
    assert read_gz(out / "samples.jsonl.gz") == read_gz(reference / "samples.jsonl.gz")


def test_self_consistency_votes_over_repeated_gsm8k_samples_on_two_ranks(tiny_model, tmp_path):
    results = _evaluate(tiny_model, tmp_path, "self_consistency", "gsm8k", 2)
    k = results["cotscale"]["strategy"]["samples"]
    assert k == 3 and results["configs"]["gsm8k"]["repeats"] == k
    usage = read_gz(tmp_path / "usage.jsonl.gz")
    # one backend request per document with k sampled sequences; the padding copies of rank 1 add none
    assert [(r["kind"], r["sequences"]) for r in usage] == [("generate", k)] * LIMIT
    assert sorted(r["doc_id"] for r in usage) == list(range(LIMIT))

    samples = [s for s in read_gz(tmp_path / "samples.jsonl.gz") if s["filter"] == "flexible-extract"]
    assert len(samples) == LIMIT
    pattern = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # gsm8k's flexible-extract, last match
    # lm-eval appends the answers of its padding copies to the padded request's own (rank 1's last document): the
    # same k sequences again, which leaves the vote as it was
    padded = [s for s in samples if len(s["resps"][0]) != k]
    assert len(padded) <= 1 and all(s["resps"][0] == s["resps"][0][:k] * 2 for s in padded)
    for sample in samples:
        answers = sample["resps"][0][:k]
        extracted = []
        for text in answers:
            found = pattern.findall(text)
            extracted.append([g for g in found[-1] if g][0] if found else "[invalid]")
        assert sample["filtered_resps"] == [Counter(extracted).most_common(1)[0][0]]
    per_doc = [s["exact_match"] for s in samples]
    assert results["results"]["gsm8k"]["exact_match,flexible-extract"] == pytest.approx(sum(per_doc) / LIMIT)


def test_padding_copies_are_answered_from_their_originals():
    from lm_eval.api.instance import Instance

    a, b = (Instance("loglikelihood", {}, ("x", " y"), 0, ("t", i, 1)) for i in range(2))
    c = Instance("generate_until", {}, ("x", {}), 0, ("t", 2, 3))
    kept, answer_from = without_padding([a, b, c, c, c] + [b] + [c, c, c])
    assert kept == [a, b, c, c, c] and [id(r) for r in kept[2:]] == [id(c)] * 3
    assert answer_from == [0, 1, 2, 3, 4, 1, 2, 3, 4]


def test_repeats_override_adds_a_majority_vote_to_every_filter(tmp_path):
    manager = scoped_task_manager(["gsm8k", "arc_challenge"])
    assert render_repeats_overrides(manager, "arc_challenge", 5, tmp_path / "mc") is None  # votes in the wrapper
    folder = render_repeats_overrides(manager, "gsm8k", 5, tmp_path / "gen")
    doc = yaml.safe_load((folder / "gsm8k.yaml").read_text())
    assert doc["task"] == "gsm8k" and doc["repeats"] == 5 and doc["include"].endswith("gsm8k/gsm8k.yaml")
    assert [(f["name"], [step["function"] for step in f["filter"]]) for f in doc["filter_list"]] == [
        ("strict-match", ["regex", "majority_vote", "take_first"]),
        ("flexible-extract", ["regex", "majority_vote", "take_first"]),
    ]
    assert scoped_task_manager(["gsm8k"], [folder]).task_index["gsm8k"].yaml_path == folder / "gsm8k.yaml"


def test_a_rank_error_is_the_jobs_one_clear_error(tiny_model, tmp_path):
    from cotscale.evaluate import EvaluationError

    config = _config(tiny_model, 2)
    config["tasks"]["arc_challenge"]["standard"]["task"] = "arc_challenge_nonexistent"
    with pytest.raises(EvaluationError) as info:
        run_evaluation(config, "m", "hybrid_cot", "arc_challenge", tmp_path / "out", cache_dir=tmp_path / "cache")
    message = str(info.value)  # what the ranks raised, not accelerate's "ChildFailedError"
    assert message.startswith("config key tasks.arc_challenge.standard.task: ") and "arc_challenge_nonexistent" in message
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()

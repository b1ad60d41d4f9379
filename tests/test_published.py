"""Ingesting the paper's published outputs (../shared/paper) into the evaluation contract."""

import csv
import gzip
import json
import logging
import shutil
from pathlib import Path

import pytest

from cotscale import published

PAPER = Path(__file__).resolve().parents[2] / "shared" / "paper"
needs_paper = pytest.mark.skipif(not PAPER.is_dir(), reason="../shared/paper not present")


def test_restrict_keeps_benchmark_and_subtasks_only():
    res = {"results": {"mmlu": {}, "mmlu_stem": {}, "mmlu_anatomy": {}, "arc_challenge": {}},
           "group_subtasks": {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_anatomy"], "arc_challenge": []},
           "versions": {"mmlu_anatomy": 1, "arc_challenge": 1}, "config": {"model": "hf"}}
    out = published.restrict(res, "mmlu")
    assert set(out["results"]) == {"mmlu", "mmlu_stem", "mmlu_anatomy"}
    assert set(out["group_subtasks"]) == {"mmlu", "mmlu_stem"}
    assert out["versions"] == {"mmlu_anatomy": 1}
    assert out["config"] == {"model": "hf"}


def test_benchmark_of():
    assert published.benchmark_of("mmlu_professional_law") == "mmlu"
    assert published.benchmark_of("xwinograd_cot_en") == "xwinograd"
    assert published.benchmark_of("truthfulqa_mc1") == "truthfulqa_mc1"
    assert published.benchmark_of("gsm8k_cot_zeroshot") == "gsm8k"
    assert published.benchmark_of("lambada") is None


def test_parse_json_names_the_file():
    with pytest.raises(ValueError, match=r"x/y\.json: truncated or invalid JSON"):
        published.parse_json(b'{"results": {"arc', "x/y.json")


@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    if not PAPER.is_dir():
        pytest.skip("../shared/paper not present")
    out = tmp_path_factory.mktemp("published")
    return out, published.ingest(PAPER, out)


def _load(path):
    return json.loads(Path(path).read_text())


@needs_paper
def test_models_table(ingested):
    out, table = ingested
    assert len(table) == 26
    assert list(table.columns) == ["model", "hf_id", "revision", "family", "N", "D", "strategies"]
    row = table.set_index("model").loc["OLMo-1B-0724-hf@step5000-tokens10B"]
    assert (row.hf_id, row.revision, row.family, row.N, row.D) == (
        "allenai/OLMo-1B-0724-hf", "step5000-tokens10B", "olmo", 1e9, 1e10)
    assert "OLMo-1B-0724-hf@main" in set(table["model"]) and "pythia-160m-deduped" in set(table["model"])
    assert not table["family"].str.startswith(" ").any()
    strategies = table.set_index("model")["strategies"]
    assert strategies["pythia-160m-deduped"] == "standard;cot_generate;hybrid_cot"
    assert (out / "published_models.csv").is_file()


@needs_paper
def test_round_trip_arc_acc(ingested):
    out, _ = ingested
    source = _load(PAPER / "experiment_2/standard/OLMo-1B-0724-hf_step5000-tokens10B.json")
    res = _load(out / "evals/OLMo-1B-0724-hf@step5000-tokens10B/hybrid/arc_challenge/results.json")
    assert res["results"]["arc_challenge"]["acc,none"] == source["results"]["arc_challenge"]["acc,none"]
    assert set(res["results"]) == {"arc_challenge"}
    cs = res["cotscale"]
    assert (cs["model"], cs["family"], cs["revision"], cs["benchmark"], cs["lm_eval_task"]) == (
        "OLMo-1B-0724-hf@step5000-tokens10B", "olmo", "step5000-tokens10B", "arc_challenge", "arc_challenge")
    assert cs["strategy"]["name"] == "hybrid" and cs["N"] == 1e9 and cs["D"] == 1e10


@needs_paper
def test_free_form_cot_group_keeps_its_subtasks(ingested):
    out, _ = ingested
    res = _load(out / "evals/pythia-1b-deduped/cot_generate/mmlu/results.json")
    tasks = set(res["results"])
    assert "mmlu_flan_cot_zeroshot" in tasks and {"stem", "other", "social sciences", "humanities"} <= tasks
    assert sum(t.startswith("mmlu_flan_cot_zeroshot_") for t in tasks) == 57
    assert not any(t.startswith(("xwinograd", "arc")) for t in tasks)
    assert res["cotscale"]["lm_eval_task"] == "mmlu_flan_cot_zeroshot"


@needs_paper
def test_missing_experiment_is_skipped(ingested):
    out, _ = ingested
    model = out / "evals/pythia-160m-deduped"
    assert (model / "hybrid_cot/gsm8k/results.json").is_file()
    assert not (model / "hybrid").exists()


@needs_paper
def test_usage_words_match_seed_token_table(ingested):
    out, _ = ingested
    with gzip.open(out / "evals/Llama-3.2-1B/hybrid_cot/mmlu/usage.jsonl.gz", "rt") as fh:
        recs = [json.loads(line) for line in fh]
    assert {r["token_unit"] for r in recs} == {"words"} and {r["kind"] for r in recs} == {"generate"}
    assert all(r["task"].startswith("mmlu_") for r in recs)
    lines = (PAPER / "toks_generated.csv").read_text().splitlines()
    seed = {(r["model"], r["task"]): r for r in csv.DictReader(lines)}
    mean = sum(r["generated_tokens"] for r in recs) / len(recs)
    assert mean == pytest.approx(float(seed[("Llama-3.2-1B", "mmlu")]["cot_tokens"]), rel=1e-12)
    samples = _load(PAPER / "samples/cot/Llama-3.2-1B.json")
    first = samples[f"{recs[0]['task']}_{recs[0]['doc_id']}_1"]
    assert recs[0]["prompt_tokens"] == len(first["context"].split())
    assert not (out / "evals/Llama-3.2-1B/hybrid/gsm8k/usage.jsonl.gz").exists()  # the seed kept no gsm8k


@pytest.fixture()
def broken_source(tmp_path):
    if not PAPER.is_dir():
        pytest.skip("../shared/paper not present")
    shutil.copy(PAPER / "models.csv", tmp_path / "models.csv")
    folder = tmp_path / "experiment_2/standard"
    folder.mkdir(parents=True)
    shutil.copy(PAPER / "broken/truncated-results.json", folder / "pythia-1b-deduped.json")
    shutil.copy(PAPER / "experiment_2/standard/pythia-410m-deduped.json", folder)
    return tmp_path


def test_truncated_json_raises_by_default(broken_source, tmp_path):
    with pytest.raises(ValueError, match=r"pythia-1b-deduped\.json: truncated or invalid JSON"):
        published.ingest(broken_source, tmp_path / "out")


def test_truncated_json_skipped_with_warning(broken_source, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="cotscale.published"):
        table = published.ingest(broken_source, tmp_path / "out", on_invalid="skip")
    assert "truncated or invalid JSON" in caplog.text and "pythia-1b-deduped.json" in caplog.text
    evals = tmp_path / "out/evals"
    assert not (evals / "pythia-1b-deduped").exists()
    assert (evals / "pythia-410m-deduped/hybrid/mmlu/results.json").is_file()
    assert table.set_index("model").loc["pythia-410m-deduped", "strategies"] == "hybrid"

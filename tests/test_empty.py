"""Rationales that never happened: `empty` generations (cotscale.usage.is_empty) in usage records, their share in
tokens.csv / benchmarks.csv / Table I beside truncated_fraction, the warning above analysis.empty_warning, and the
share of the paper's own CoT rationales that are empty, counted here from ../shared/paper/samples."""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

import cotscale.aggregate as agg
from cotscale import published, table1
from cotscale.config import BENCHMARKS, load_config
from cotscale.contract import EMPTY_FIELD
from cotscale.usage import empty_fraction, is_empty, iter_usage, make_record, summarize_usage, write_usage

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper"
needs_paper = pytest.mark.skipif(not PAPER.is_dir(), reason="../shared/paper not present")


# ---------------------------------------------------------------------------------------------- the definition
@pytest.mark.parametrize("text, until, empty", [
    ("\nThe sun is a star.", ["\n"], True),        # a leading "\n" under the "\n" stop: the rationale never started
    ("\nThe sun is a star.", ["\n\n"], False),     # the same text under "\n\n": it did
    ("  \t ", ["\n"], True),                       # whitespace only
    ("", ["\n"], True),                            # EOS first: the backend's decoded text is empty
    (" First, 3 + 4 = 7.\nSo", ["\n"], False),     # a real rationale, cut at its end
    (" \n\n7", ["\n\n", "Question:"], True),       # whitespace before the first of several stops
    ("Question: next", ["Question:"], True),       # a stop that is not whitespace, first
    (" 7", "\n", False),                           # lm-eval's until may be one string
    (" ", None, True),
])
def test_is_empty_on_hand_made_generations(text, until, empty):
    assert is_empty(text, until) is empty


def test_records_carry_empty_through_a_file_and_the_summary(tmp_path):
    recs = [make_record("t", 0, "generate", 5, 1, empty=True), make_record("t", 1, "generate", 5, 9, empty=False),
            make_record("t", 2, "generate", 5, 0, empty=True), make_record("t", 2, "loglikelihood", 4)]
    assert [r.get(EMPTY_FIELD) for r in recs] == [True, False, True, None]
    write_usage(tmp_path / "u.jsonl.gz", recs)
    back = list(iter_usage(tmp_path / "u.jsonl.gz"))
    assert back == recs
    (entry,) = summarize_usage(back).values()
    assert entry[EMPTY_FIELD] == 2 and empty_fraction([entry]) == pytest.approx(2 / 3)
    # a generation never classified (records written before the field): the share is unknown, not 0
    (old,) = summarize_usage([make_record("t", 0, "generate", 5, 1), *recs]).values()
    assert EMPTY_FIELD not in old and math.isnan(empty_fraction([old]))
    (llh,) = summarize_usage(recs[3:]).values()
    assert math.isnan(empty_fraction([llh]))  # no generations: NaN, as truncated_fraction


# ---------------------------------------------------------------------------------------------- tables
def _summary(task: str, generate: int, empty: int | None, loglikelihood: int = 0) -> dict:
    entry = {"requests": generate + loglikelihood, "generate_requests": generate,
             "loglikelihood_requests": loglikelihood, "documents": generate, "prompt_tokens": 10 * generate,
             "generate_prompt_tokens": 10 * generate, "loglikelihood_prompt_tokens": 0,
             "generated_tokens": 3 * generate, "sequences": generate, "truncated": 0, "token_unit": "tokens"}
    return {task: entry if empty is None else {**entry, EMPTY_FIELD: empty}}


def _results(bench: str, summary: dict, strategy: str = "hybrid_cot") -> dict:
    return {"results": {bench: {"acc,none": 0.5, "acc_stderr,none": 0.1}},
            "cotscale": {"model": "m", "revision": "main", "family": "f", "N": 1e6, "D": 1e9,
                         "strategy": {"name": strategy}, "benchmark": bench, "usage_summary": summary}}


def test_benchmarks_and_tokens_carry_empty_fraction_beside_truncated_fraction():
    config = load_config(ROOT / "config" / "config.yaml")
    by_bench = {"arc_challenge": _summary("arc_challenge", 10, 3),
                "mmlu": {**_summary("mmlu_a", 4, 4), **_summary("mmlu_b", 6, 0)},  # pooled: 4 / 10
                "hellaswag": _summary("hellaswag", 5, 0)}
    (row,) = agg.benchmark_rows(config, {("m", "hybrid_cot"): {b: _results(b, s) for b, s in by_bench.items()}})
    assert (row["arc_challenge_empty_fraction"], row["mmlu_empty_fraction"], row["hellaswag_empty_fraction"]) == (
        0.3, 0.4, 0.0)
    assert math.isnan(row["gsm8k_empty_fraction"])  # not evaluated
    # by hand: the mean over the benchmarks that generated, (0.3 + 0.4 + 0) / 3
    assert row["empty_fraction"] == pytest.approx(0.7 / 3)
    # appended after the existing columns (truncated_fraction was the last), then the documents per benchmark
    after = agg.BENCHMARK_COLUMNS[agg.BENCHMARK_COLUMNS.index("truncated_fraction") + 1:]
    assert after == [*(f"{b}_empty_fraction" for b in BENCHMARKS), "empty_fraction",
                     *(f"{b}_documents" for b in BENCHMARKS)]
    assert list(row)[-len(after):] == after

    tokens = agg.token_rows(_results("mmlu", by_bench["mmlu"]))
    assert [(r["task"], r["empty_fraction"]) for r in tokens] == [("mmlu_a", 1.0), ("mmlu_b", 0.0)]
    assert list(tokens[0])[-1] == agg.TOKEN_COLUMNS[-1] == "empty_fraction"

    frame = pd.DataFrame([row])
    lines = agg.empty_warnings(frame, 0.1)
    assert len(lines) == 2 and lines[0].startswith("m / hybrid_cot / arc_challenge: 30%")
    assert "mmlu: 40%" in lines[1]
    assert agg.empty_warnings(frame, 0.4) == []  # passes: strictly above


def test_aggregate_log_warns_above_the_threshold(tmp_path, caplog):
    for strategy, share in (("hybrid", 0.0), ("hybrid_cot", 0.5)):
        folder = tmp_path / strategy
        folder.mkdir()
        for table in ("scores", "tokens", "compute"):
            pd.DataFrame({"model": ["m"], "strategy": [strategy]}).to_csv(folder / f"{table}.csv", index=False)
        pd.DataFrame({"family": ["f"], "model": ["m"], "strategy": [strategy], "mmlu_empty_fraction": [share]}
                     ).to_csv(folder / "benchmarks.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="cotscale.aggregate"):
        agg.combine_tables([tmp_path / "hybrid", tmp_path / "hybrid_cot"], tmp_path / "all", 0.1)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["m / hybrid_cot / mmlu"]


def _tokens(rows) -> pd.DataFrame:
    """tokens.csv rows from (strategy, benchmark, task, generate_requests, empty_fraction)."""
    df = pd.DataFrame(rows, columns=["strategy", "benchmark", "task", "generate_requests", "empty_fraction"])
    return df.assign(model="m", family="f", N=1.0, D=1.0, token_unit="tokens", requests=df["generate_requests"],
                     documents=df["generate_requests"], prompt_tokens=0, generated_tokens=2 * df["generate_requests"])


def test_table1_states_the_empty_share_of_both_strategies():
    rows = [("h", "mmlu", "mmlu_a", 4, 0.0), ("h", "arc", "arc", 10, 0.1),
            ("c", "mmlu", "mmlu_a", 4, 1.0), ("c", "mmlu", "mmlu_b", 6, 0.5), ("c", "arc", "arc", 10, 0.0),
            ("c", "gsm8k", "gsm8k", 5, 1.0)]  # gsm8k has no baseline: not in the pair
    out = table1.table1(_tokens(rows), "h", "c", empty_warning=0.3).set_index("model")
    # by hand: CoT mmlu pooled (4·1 + 6·0.5)/10 = 0.7, arc 0 -> 0.35; baseline (0 + 0.1)/2 = 0.05
    assert out.loc["m", "cot_empty_fraction"] == pytest.approx(0.35)
    assert out.loc["m", "baseline_empty_fraction"] == pytest.approx(0.05)
    assert out.loc["m", "empty_warning"] and out.loc["Overall", "empty_warning"]
    md = table1.to_markdown(out.reset_index())
    assert "| m (!) | 2.0 | 2.0 | 1.00 | 5% | 35% |" in md and "analysis.empty_warning" in md
    assert not table1.table1(_tokens(rows), "h", "c", empty_warning=0.5)["empty_warning"].any()


# ---------------------------------------------------------------------------------------------- a real model
def test_records_of_a_real_generation_say_whether_it_was_empty(tmp_path):
    """The tiny model generates; a stop sequence chosen from its own greedy text makes the same generation empty.
    Expected values: the generated text split at the stop by str.split, independently of is_empty."""
    pytest.importorskip("torch")
    from _lm_fixtures import build_tiny_model, gen_requests

    from cotscale import lm as cl

    lm = cl.CotscaleLM(pretrained=str(build_tiny_model(tmp_path)), backend="hf", dtype="float32", batch_size=8,
                       device="cpu", strategy={"format": "generate", "max_gen_toks": 8})
    free = lm.generate_until(gen_requests(gen_kwargs={"until": ["\x00"], "do_sample": False}))
    assert all(text.strip() for text in free), free  # the tiny model writes something: a real rationale
    assert [r[EMPTY_FIELD] for r in lm.usage] == [False] * len(free)
    stop = free[0].strip()[0]  # its first visible character: the generation stops before anything shows
    lm.begin_task({"format": "generate", "max_gen_toks": 8})
    lm.generate_until(gen_requests(gen_kwargs={"until": [stop], "do_sample": False}))
    assert [r[EMPTY_FIELD] for r in lm.usage] == [not t.split(stop)[0].strip() for t in free]
    assert lm.usage[0][EMPTY_FIELD] is True
    (entry,) = summarize_usage(lm.usage).values()
    assert entry[EMPTY_FIELD] == sum(r[EMPTY_FIELD] for r in lm.usage)


# ---------------------------------------------------------------------------------------------- the paper's CoT
@pytest.fixture(scope="module")
def published_tables(tmp_path_factory):
    """The paper's outputs ingested and aggregated as the published workflow does (rules ingest_published and
    aggregate_strategy)."""
    if not PAPER.is_dir():
        pytest.skip("../shared/paper not present")
    out = tmp_path_factory.mktemp("published")
    published.ingest(PAPER, out)
    config = load_config(ROOT / "config" / "published.yaml")
    tables = {}
    for strategy in ("hybrid", "hybrid_cot"):
        results = [str(p) for p in sorted(out.glob(f"evals/*/{strategy}/*/results.json"))]
        agg.write_strategy_tables(config, strategy, results, out / strategy)
        tables[strategy] = (pd.read_csv(out / strategy / "benchmarks.csv"), pd.read_csv(out / strategy / "tokens.csv"))
    return tables


def _count_paper_samples() -> dict[tuple[str, str, str], list[int]]:
    """{(seed file stem, strategy, task): [empty, responses]}, counted here: a response of whitespace only."""
    counts: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    for strategy, folder in (("hybrid", "standard"), ("hybrid_cot", "cot")):
        for path in sorted((PAPER / "samples" / folder).glob("*.json")):
            for rec in json.loads(path.read_text()).values():
                c = counts[(path.stem, strategy, rec["task_name"])]
                c[0] += rec["response"].strip() == ""
                c[1] += 1
    return counts


@needs_paper
def test_published_empty_fraction_equals_a_count_of_the_paper_samples(published_tables):
    counts = _count_paper_samples()
    stems = published.read_models(PAPER).set_index("stem")["model"]
    seen = 0
    for strategy, (benchmarks, tokens) in published_tables.items():
        by_task = tokens.set_index(["model", "task"])["empty_fraction"]
        per_bench: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for (stem, s, task), (empty, n) in counts.items():
            if s != strategy:
                continue
            assert by_task[(stems[stem], task)] == pytest.approx(empty / n)
            bench = "xwinograd" if task.startswith("xwinograd") else "mmlu" if task.startswith("mmlu") else task
            per_bench[(stems[stem], bench)][0] += empty
            per_bench[(stems[stem], bench)][1] += n
            seen += 1
        table = benchmarks.set_index("model")
        for (model, bench), (empty, n) in per_bench.items():
            assert table.loc[model, f"{bench}_empty_fraction"] == pytest.approx(empty / n), (model, bench)
        for model in {m for m, _ in per_bench}:
            shares = [e / n for (m, _), (e, n) in per_bench.items() if m == model]
            assert table.loc[model, "empty_fraction"] == pytest.approx(sum(shares) / len(shares))
    assert seen > 100
    # the count: 61 % of OLMo-1B main's CoT rationales empty on mmlu (461/728) and hellaswag 361/503
    cot = published_tables["hybrid_cot"][0].set_index("model")
    assert cot.loc["OLMo-1B-0724-hf@main", "mmlu_empty_fraction"] == pytest.approx(461 / 728)
    assert cot.loc["OLMo-1B-0724-hf@main", "hellaswag_empty_fraction"] == pytest.approx(361 / 503)


def test_the_evaluation_log_warns_above_the_threshold(caplog):
    from cotscale.evaluate import _warn_empty

    summary = {**_summary("mmlu_a", 10, 2), **_summary("mmlu_b", 10, 1), **_summary("arc", 0, None, 4)}
    with caplog.at_level(logging.WARNING, logger="cotscale.evaluate"):
        _warn_empty(summary, 0.1, "m / hybrid_cot / mmlu")
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("m / hybrid_cot / mmlu: task mmlu_a: 2 of 10 generations are empty (20%")


# ---------------------------------------------------------------------------------------------- same documents
def test_documents_per_benchmark_come_from_lm_evals_n_samples():
    results = {"results": {}, "group_subtasks": {"mmlu": ["mmlu_stem"], "mmlu_stem": ["mmlu_a", "mmlu_b"]},
               "n-samples": {"mmlu_a": {"original": 20, "effective": 12}, "mmlu_b": {"original": 8, "effective": 8}}}
    assert agg.benchmark_documents(results, "mmlu") == 20  # 12 + 8, by hand
    assert math.isnan(agg.benchmark_documents({"results": {}}, "arc_challenge"))  # published files do not say


def _documents(strategy: str, model: str = "m", **counts) -> dict:
    return {"model": model, "strategy": strategy, **{f"{b}_documents": n for b, n in counts.items()}}


def test_a_comparison_on_different_documents_is_refused_naming_both_counts():
    table = pd.DataFrame([_documents("standard", arc_challenge=12, mmlu=36),
                          _documents("cot_generate", arc_challenge=12, mmlu=24),
                          _documents("hybrid", arc_challenge=12, mmlu=36)])
    with pytest.raises(agg.AggregationError) as info:
        agg.check_same_documents(table, ("standard", "cot_generate"), "fig10_free_form_cot")
    message = str(info.value)
    assert message.startswith("fig10_free_form_cot: standard and cot_generate of model m")
    assert "task mmlu evaluated 36 documents under standard and 24 under cot_generate" in message
    assert "tasks.mmlu.<variant>.split" in message
    agg.check_same_documents(table, ("standard", "hybrid"), "fig2")  # equal: fine
    unknown = pd.DataFrame([_documents("hybrid", mmlu=math.nan), _documents("hybrid_cot", mmlu=24)])
    agg.check_same_documents(unknown, ("hybrid", "hybrid_cot"), "fig3")  # an unknown count is not compared


def test_the_free_form_mmlu_variant_reads_the_standard_variants_documents(tmp_path, offline_datasets):
    """lm-eval's mmlu_flan_cot_zeroshot reads MMLU's validation split, mmlu its test split; the cot variant's
    `split: test` (config/tasks/benchmarks.yaml) gives both the same questions. Loaded by lm-eval itself from the
    demo data; the expected questions are read from the demo data's test files directly."""
    from cotscale.config import task_variant
    from cotscale.tasks import evaluation_task_manager

    config = load_config(ROOT / "config" / "demo.yaml")
    questions = {}
    for strategy in ("standard", "cot_generate"):
        variant = task_variant(config, strategy, "mmlu")
        manager = evaluation_task_manager(config, variant["task"], tmp_path / strategy, config["strategies"][strategy],
                                          variant.get("split"))
        tasks = manager.load([variant["task"]])["tasks"]
        questions[strategy] = {name.rsplit("_", 1)[-1] if "geography" not in name else "geography":
                               [d["question"] for d in t.eval_docs] for name, t in tasks.items()}
    assert questions["standard"] == questions["cot_generate"]
    test = ROOT / "config" / "tasks" / "demo_data" / "mmlu" / "astronomy" / "test.jsonl"
    assert questions["cot_generate"]["astronomy"] == [json.loads(line)["question"] for line in test.open()]


# ---------------------------------------------------------------------------------------------- records tell the truth
def test_samples_and_results_record_the_generation_arguments_that_ran(root, tmp_path, offline_datasets):
    """lm-eval records a task's generation_kwargs (gsm8k_cot_zeroshot: max_gen_toks 256 by default); the evaluation
    records what the strategy ran with instead (max_gen_toks 6 here), for free-form and hybrid generations; its
    usage records say whether each generation was empty."""
    import gzip

    import yaml
    from _lm_fixtures import build_tiny_model

    from cotscale.evaluate import run_evaluation

    demo = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    config = load_config({
        **{k: demo[k] for k in ("seed", "batch_size", "backend", "dtype", "device")},
        "task_data": str(root / "config" / "tasks" / "demo_data"), "limit": 2,
        "strategies": {"cot_generate": {**{k: v for k, v in demo["strategies"]["cot_generate"].items()
                                           if k != "models"}, "max_gen_toks": 6},
                       "hybrid_cot": {**demo["strategies"]["hybrid_cot"], "max_gen_toks": 5}},
        "analysis": {"baseline": "hybrid_cot", "cot": "hybrid_cot", "llh": "hybrid_cot"},
        "models": {"m": {"hf_id": str(build_tiny_model(tmp_path / "tiny")), "family": "tiny", "params": 1,
                         "train_tokens": 1}}})

    def read(folder, name):
        with gzip.open(folder / name, "rt") as fh:
            return [json.loads(line) for line in fh]

    free = run_evaluation(config, "m", "cot_generate", "gsm8k", tmp_path / "free")
    (sample, *_) = samples = read(tmp_path / "free", "samples.jsonl.gz")
    ((_, used),) = sample["arguments"]
    assert (used["max_gen_toks"], used["do_sample"], used["temperature"]) == (6, False, 0.0)
    assert all(s["generation_args"] == {"generate": used} for s in samples)
    assert free["configs"]["gsm8k_cot_zeroshot"]["generation_kwargs"] == used
    assert free["cotscale"]["generation_args"] == {"gsm8k_cot_zeroshot": {"generate": used}}
    usage = read(tmp_path / "free", "usage.jsonl.gz")
    assert all(u["generated_tokens"] <= 6 and isinstance(u[EMPTY_FIELD], bool) for u in usage)

    hybrid = run_evaluation(config, "m", "hybrid_cot", "arc_challenge", tmp_path / "hybrid")
    for s in read(tmp_path / "hybrid", "samples.jsonl.gz"):
        assert s["generation_args"] == {"generate": {"until": ["\n"], "max_gen_toks": 5, "do_sample": False,
                                                     "temperature": 0.0}}
        assert all(r["kind"] != "generate" or r[EMPTY_FIELD] == (not s["rationales"][0].split("\n")[0].strip())
                   for r in read(tmp_path / "hybrid", "usage.jsonl.gz") if r["doc_id"] == s["doc_id"])
    assert hybrid["cotscale"]["generation_args"]["arc_challenge"]["generate"]["max_gen_toks"] == 5


def test_free_form_cot_on_another_split_is_refused_and_the_split_key_makes_it_equal(root, tmp_path, offline_datasets):
    """Real lm-eval runs on the demo's mmlu data: lm-eval's flan CoT variant alone reads the validation split (8
    questions per subject, 24), the log-likelihood one the test split (20 per subject, 60; counts from the data
    files): the comparison is refused naming both counts. With `split: test` the counts (and documents) agree."""
    from _lm_fixtures import build_tiny_model

    from cotscale.evaluate import run_evaluation

    data = root / "config" / "tasks" / "demo_data" / "mmlu"
    n_test = sum(1 for f in data.glob("*/test.jsonl") for _ in f.open())
    n_validation = sum(1 for f in data.glob("*/validation.jsonl") for _ in f.open())
    assert (n_test, n_validation) == (60, 24)
    default = load_config(ROOT / "config" / "config.yaml")["tasks"]["mmlu"]
    raw = {"seed": 1, "batch_size": 16, "backend": "hf", "dtype": "float32", "device": "cpu", "limit": None,
           "task_data": str(root / "config" / "tasks" / "demo_data"),
           "tasks": {"mmlu": {"standard": default["standard"],
                              "cot": {k: v for k, v in default["cot"].items() if k != "split"}}},
           "strategies": {"standard": {"format": "loglikelihood", "prompt": "plain", "decoding": "greedy",
                                       "variant": "standard"},
                          "cot_generate": {"format": "generate", "prompt": "cot", "decoding": "greedy",
                                           "variant": "cot", "max_gen_toks": 2}},
           "analysis": {"baseline": "standard", "cot": "cot_generate", "llh": "standard"},
           "models": {"m": {"hf_id": str(build_tiny_model(tmp_path / "tiny")), "family": "tiny", "params": 1,
                            "train_tokens": 1}}}

    def tables(config, tag):
        paths = {}
        for strategy in ("standard", "cot_generate"):
            out = tmp_path / "standard" if strategy == "standard" else tmp_path / tag
            if not (out / "results.json").exists():
                run_evaluation(config, "m", strategy, "mmlu", out)
            folder = tmp_path / "tables" / tag / strategy
            agg.write_strategy_tables(config, strategy, [str(out / "results.json")], folder)
            paths[strategy] = folder / "benchmarks.csv"
        return pd.concat([pd.read_csv(p) for p in paths.values()], ignore_index=True)

    other_split = tables(load_config(raw), "validation")
    with pytest.raises(agg.AggregationError, match=f"task mmlu evaluated {n_test} documents under standard and "
                                                   f"{n_validation} under cot_generate"):
        agg.check_same_documents(other_split, ("standard", "cot_generate"), "fig10_free_form_cot")
    raw["tasks"]["mmlu"]["cot"] = default["cot"]  # split: test
    same = tables(load_config(raw), "test")
    agg.check_same_documents(same, ("standard", "cot_generate"), "fig10_free_form_cot")
    assert set(same["mmlu_documents"]) == {n_test}

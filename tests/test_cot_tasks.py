"""The free-form chain-of-thought tasks (strategy cot_generate) in config/tasks/cot, run on the bundled demo data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lm_eval.api.model import LM

from cotscale.tasks import render_task_overrides, scoped_task_manager

ROOT = Path(__file__).resolve().parents[1]
TASKS_DIR = ROOT / "config" / "tasks"  # = cotscale.evaluate.TASKS_DIR
DATA = TASKS_DIR / "demo_data"
COT = ["arc_challenge_cot", "hellaswag_cot", "winogrande_cot", "xwinograd_cot", "truthfulqa_cot"]
GROUPS = ["mmlu_flan_cot_zeroshot"]
FILTERS = ("strict-match", "flexible-extract")
LANGS = ("en", "fr", "jp", "pt", "ru", "zh")  # xwinograd's languages; demo_data/xwinograd has all six


def rows(rel: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / rel).read_text(encoding="utf-8").splitlines()]


pytestmark = pytest.mark.usefixtures("offline_datasets")


def demo_manager(names: list[str], scratch: Path):
    """As cotscale.evaluate._task_manager does it: the project's tasks re-pointed at the demo data."""
    manager = scoped_task_manager(names, [TASKS_DIR])
    overrides = render_task_overrides(names, DATA, scratch / "tasks", manager=manager)
    return scoped_task_manager(names, [TASKS_DIR, overrides]), overrides


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return demo_manager(COT + GROUPS, tmp_path_factory.mktemp("cot"))


@pytest.fixture(scope="module")
def loaded(rendered):
    return rendered[0].load(COT + GROUPS)


def docs(task) -> list[dict]:
    return list(task.eval_docs)


# ------------------------------------------------------------------------------------------------ definitions


def test_tasks_come_from_the_project_folder_with_the_builtin_datasets():
    manager = scoped_task_manager(COT + GROUPS, [TASKS_DIR])
    index = manager.task_index
    cot_dir = TASKS_DIR / "cot"
    for name in [*COT, *GROUPS, *(f"xwinograd_cot_{lang}" for lang in ("en", "fr", "jp", "pt", "ru", "zh"))]:
        assert Path(index[name].yaml_path).parent == cot_dir, name
    # same HF datasets as lm-eval's built-in (log-likelihood) tasks, so one data index serves both variants
    for cot, builtin in [("arc_challenge_cot", "arc_challenge"), ("hellaswag_cot", "hellaswag"),
                         ("winogrande_cot", "winogrande"), ("truthfulqa_cot", "truthfulqa_mc1"),
                         ("xwinograd_cot_jp", "xwinograd_jp")]:
        ours = scoped_task_manager([builtin]).task_index[builtin].cfg
        assert (index[cot].cfg["dataset_path"], index[cot].cfg["dataset_name"]) == (
            ours["dataset_path"], ours["dataset_name"]), cot


def test_published_cot_results_use_these_task_and_metric_names(paper):
    """experiment_1/cot (the seed's cot_generate run): every task there exists here, with the same two metrics."""
    published = json.loads((paper / "experiment_1" / "cot" / "pythia-160m-deduped.json").read_text())
    leaves = {name for name, row in published["results"].items() if "exact_match,flexible-extract" in row}
    assert {"arc_challenge_cot", "hellaswag_cot", "winogrande_cot", "truthfulqa_cot", "gsm8k_cot_zeroshot",
            "xwinograd_cot_en", "xwinograd_cot_zh", "mmlu_flan_cot_zeroshot_astronomy"} <= leaves
    for row in (published["results"][n] for n in leaves):
        assert {k for k in row if k != "alias"} == {f"{m},{f}" for m in ("exact_match", "exact_match_stderr")
                                                    for f in FILTERS}
    manager = scoped_task_manager([*COT, *GROUPS, "gsm8k_cot_zeroshot"], [TASKS_DIR])
    assert leaves <= set(manager.task_index)
    assert published["group_subtasks"]["xwinograd_cot"] == [f"xwinograd_cot_{lang}"
                                                             for lang in ("en", "fr", "jp", "pt", "ru", "zh")]


# ------------------------------------------------------------------------------------------------ prompts, targets


def test_prompts_end_before_the_cot_cue_and_targets_are_gold_letters(loaded):
    """The cue is the strategy's (the model appends it), so no task prompt carries one of its own."""
    tasks = loaded["tasks"]
    for name, task in tasks.items():
        assert task.OUTPUT_TYPE == "generate_until", name
        assert [f.name for f in task._filters] == list(FILTERS), name
        ending = "\nA: Let's think step by step." if name.startswith("mmlu_flan") else "\nA:"  # lm-eval's own prompt
        for doc in docs(task):
            assert task.doc_to_text(doc).endswith(ending) and task.doc_to_text(doc).count("step by step") <= 1, name

    arc = tasks["arc_challenge_cot"]
    arc_rows = rows("arc_challenge/test.jsonl")
    assert [arc.doc_to_target(d) for d in docs(arc)] == [
        "ABCDE"[r["choices"]["label"].index(r["answerKey"])] for r in arc_rows]
    numeric = next(i for i, r in enumerate(arc_rows) if r["choices"]["label"][0] == "1")  # labels "1".."4"
    assert arc.doc_to_target(docs(arc)[numeric]) == "ABCD"[int(arc_rows[numeric]["answerKey"]) - 1]
    assert arc.doc_to_text(docs(arc)[0]) == (
        "Which part of a plant takes in water from the soil?\nChoose the best continuation:\n\n"
        "(A) the leaves\n(B) the roots\n(C) the flowers\n(D) the seeds\nA:")
    assert arc.doc_to_target(docs(arc)[0]) == "B"

    hs, hs_rows = tasks["hellaswag_cot"], rows("hellaswag/validation.jsonl")
    assert [hs.doc_to_target(d) for d in docs(hs)] == ["ABCD"[int(r["label"])] for r in hs_rows]
    text = hs.doc_to_text(docs(hs)[0])
    assert text.startswith("Making a sandwich: A man places two slices of bread on a plate. He\n")
    assert f"\n(A) {hs_rows[0]['endings'][0]}\n(B) " in text

    for name, rel in [("winogrande_cot", "winogrande/validation.jsonl"),
                      ("xwinograd_cot_en", "xwinograd/en/test.jsonl"), ("xwinograd_cot_fr", "xwinograd/fr/test.jsonl")]:
        task, data = tasks[name], rows(rel)
        assert [task.doc_to_target(d) for d in docs(task)] == ["AB"[int(r["answer"]) - 1] for r in data], name
        r = data[0]
        assert task.doc_to_text(docs(task)[0]) == (
            f"Fill in the blank: {r['sentence']}\n(A) {r['option1']}\n(B) {r['option2']}\nA:"), name

    tqa, tqa_rows = tasks["truthfulqa_cot"], rows("truthfulqa/validation.jsonl")
    golds = []
    for doc, r in zip(docs(tqa), tqa_rows, strict=True):
        text, letter = tqa.doc_to_text(doc), tqa.doc_to_target(doc)
        assert text.startswith("Q: What is human life expectancy in the United States?\nA: Human life")
        assert f"\n\nQ: {r['question']}\n(A) " in text
        correct = r["mc1_targets"]["choices"][r["mc1_targets"]["labels"].index(1)]
        assert f"\n({letter}) {correct}\n" in text  # the target letter labels the correct mc1 choice
        assert sorted(doc["choices"]) == sorted(r["mc1_targets"]["choices"])
        golds.append(letter)
    assert len(set(golds)) > 2  # shuffled: the correct choice is not always (A), as it is in the dataset
    assert [tqa.doc_to_target(d) for d in docs(tqa)] == golds  # and the order is reproducible


def test_generation_settings(loaded):
    ours = {name: task for name, task in loaded["tasks"].items() if not name.startswith("mmlu")}  # lm-eval's
    assert len(ours) == 4 + len(LANGS)  # arc, hellaswag, winogrande, truthfulqa and one xwinograd task per language
    for name, task in ours.items():
        kwargs = task.config.generation_kwargs
        assert kwargs["do_sample"] is False and kwargs["max_gen_toks"] == 256, name
        # a rationale may span lines (the seed stopped at the first "\n"); a blank line or a new question ends it
        assert {"\n\n", "Question:", "</s>", "<|im_end|>"} <= set(kwargs["until"]) and "\n" not in kwargs["until"]


# ------------------------------------------------------------------------------------------------ extraction


def extract(task, responses: list[str], doc: dict | None = None) -> dict[str, list[str]]:
    """Run the task's filter ensembles on hand-written model outputs: {filter name: extracted answers}."""
    from lm_eval.api.instance import Instance

    doc = doc if doc is not None else docs(task)[0]
    out = {}
    for ensemble in task._filters:
        instances = [Instance("generate_until", doc, ("", {}), 0, (task.config.task, i, 1)) for i in
                     range(len(responses))]
        for inst, text in zip(instances, responses, strict=True):
            inst.resps = [text]
        ensemble.apply(instances)
        out[ensemble.name] = [inst.filtered_resps[ensemble.name] for inst in instances]
    return out


def test_filters_extract_the_answer_letter(loaded):
    tasks = loaded["tasks"]
    responses = [
        "The roots take in water, so the answer is (B).",
        "The answer is C",
        "The answer is: (D) because the others are wrong.",
        "(A) is wrong and (C) is right.",
        "Option B: the roots. Answer: D",
        "Leaves make food. The roots are underground.",
        "the answer is a plant part, so B)",
        "The answer is B. Then again (C) fits too.",
    ]
    got = extract(tasks["arc_challenge_cot"], responses)
    assert got["strict-match"] == ["B", "C", "D", "[invalid]", "[invalid]", "[invalid]", "[invalid]", "B"]
    assert got["flexible-extract"] == ["B", "C", "D", "C", "D", "[invalid]", "B", "C"]

    # each task accepts only its own option letters
    got = extract(tasks["winogrande_cot"], ["The box was too small. The answer is (B).", "The answer is C.",
                                            "So the blank is the cake (A)."])
    assert got == {"strict-match": ["B", "[invalid]", "[invalid]"], "flexible-extract": ["B", "[invalid]", "A"]}
    got = extract(tasks["truthfulqa_cot"], ["Gum passes in days. The answer is (A).", "It is (K)."])
    assert got == {"strict-match": ["A", "[invalid]"], "flexible-extract": ["A", "K"]}
    got = extract(tasks["hellaswag_cot"], ["He spreads butter. The answer is E. So (D)"])
    assert got == {"strict-match": ["[invalid]"], "flexible-extract": ["D"]}


def test_extracted_letters_score_against_the_target(loaded):
    arc = loaded["tasks"]["arc_challenge_cot"]
    doc = docs(arc)[0]  # gold B
    assert arc.process_results(doc, ["B"]) == {"exact_match": 1.0}
    assert arc.process_results(doc, ["(B)"]) == {"exact_match": 1.0}  # ignore_punctuation
    assert arc.process_results(doc, ["C"]) == {"exact_match": 0.0}
    assert arc.process_results(doc, ["[invalid]"]) == {"exact_match": 0.0}


# ------------------------------------------------------------------------------------------------ groups


def test_groups_on_demo_data(loaded, rendered):
    group_map, groups = loaded["group_map"], loaded["groups"]
    assert group_map["xwinograd_cot"] == [f"xwinograd_cot_{lang}" for lang in LANGS]
    manifest = json.loads((rendered[1] / "manifest.json").read_text())
    assert not [t for t in manifest["dropped"] if "xwinograd" in t]
    leaves = sorted(t.task_name for t in groups["mmlu_flan_cot_zeroshot"].get_all_tasks())
    assert leaves == [f"mmlu_flan_cot_zeroshot_{s}" for s in ("astronomy", "high_school_geography", "nutrition")]
    for name in ("xwinograd_cot", "mmlu_flan_cot_zeroshot"):
        (agg,) = groups[name].aggregate_metric_list
        assert (agg.metric, agg.filter_list, agg.weight_by_size) == ("exact_match", list(FILTERS), True), name


# ------------------------------------------------------------------------------------------------ end to end


def test_simple_evaluate_cot_generate(tmp_path):
    """CotscaleLM (strategy cot_generate) on xwinograd_cot, 2 documents per language: the prompt goes out with the
    cue exactly once, both filters are scored and the group aggregates them."""
    pytest.importorskip("torch")
    import lm_eval
    from _lm_fixtures import TINY_SPEC

    from cotscale.demo_models import build_demo_model
    from cotscale.lm import CotscaleLM

    build_demo_model(TINY_SPEC, {"main": 0}, tmp_path / "model")  # untrained: only the plumbing is under test
    cue = " Think it through."  # not the default: the configured cue is the one that reaches the model
    lm = CotscaleLM(pretrained=str(tmp_path / "model" / "main"), backend="hf", dtype="float32", batch_size=4,
                    device="cpu", strategy={"format": "generate", "prompt": "cot", "decoding": "greedy",
                                            "max_gen_toks": 8, "cot_cue": cue})
    sent = []
    backend_generate = lm.backend.generate_until
    lm.backend.generate_until = lambda requests, **kw: sent.extend(r.args[0] for r in requests) or backend_generate(
        requests, **kw)
    manager, _ = demo_manager(["xwinograd_cot"], tmp_path / "scratch")
    results = lm_eval.simple_evaluate(model=lm, tasks=["xwinograd_cot"], task_manager=manager, limit=2,
                                      log_samples=True, bootstrap_iters=0)
    res = results["results"]
    assert sorted(res) == ["xwinograd_cot", *(f"xwinograd_cot_{lang}" for lang in LANGS)]
    for name in res:
        for f in FILTERS:
            assert 0.0 <= res[name][f"exact_match,{f}"] <= 1.0, (name, f)
    assert results["n-samples"]["xwinograd_cot_fr"] == {"original": 20, "effective": 2}
    samples = results["samples"]["xwinograd_cot_fr"]
    assert {s["filter"] for s in samples} == set(FILTERS)
    for s in samples:
        assert s["arguments"][0][0].endswith("\nA:") and s["target"] in ("A", "B")
    assert len(sent) == len(LANGS) * 2 and all(p.endswith("\nA:" + cue) and p.count(cue) == 1 for p in sent)
    usage = [r for r in lm.usage if r["task"] == "xwinograd_cot_fr"]
    assert len(usage) == 2 and all(r["kind"] == "generate" and 0 < r["generated_tokens"] <= 8 for r in usage)


class ScriptedLM(LM):
    """An lm-eval model whose generations are hand-written: `script(instance) -> text`."""

    def __init__(self, script):
        super().__init__()
        self.script = script

    def loglikelihood(self, requests, disable_tqdm=False):
        raise AssertionError("cot tasks send no loglikelihood requests")

    loglikelihood_rolling = loglikelihood

    def generate_until(self, requests, disable_tqdm=False):
        return [self.script(r) for r in requests]


def test_group_scores_aggregate_both_filters(tmp_path):
    """Scored end to end with a scripted model: per-task scores are the share of right letters, and both groups
    (xwinograd_cot, and mmlu_flan_cot_zeroshot as redefined here to aggregate exact_match where lm-eval's own group
    aggregates an `acc` no member has) report both filters, weighted by size."""
    import lm_eval

    def script(request) -> str:
        if request.task_name == "xwinograd_cot_en":  # knows English: right under both filters
            gold = "AB"[int(request.doc["answer"]) - 1]
            return f"So the blank is option {gold}. The answer is ({gold})."
        return "The answer is (A). On reflection, (B) fits better."  # strict: A, flexible: B

    names = ["xwinograd_cot", "mmlu_flan_cot_zeroshot"]
    manager, _ = demo_manager(names, tmp_path)
    results = lm_eval.simple_evaluate(model=ScriptedLM(script), tasks=names, task_manager=manager, limit=5,
                                      bootstrap_iters=0)
    res = results["results"]
    expected = {"xwinograd_cot_en": (1.0, 1.0)}
    for lang in LANGS[1:]:
        golds = [r["answer"] for r in rows(f"xwinograd/{lang}/test.jsonl")[:5]]
        expected[f"xwinograd_cot_{lang}"] = (golds.count("1") / 5, golds.count("2") / 5)
    # 5 docs per language: the size-weighted group score is the plain mean
    expected["xwinograd_cot"] = tuple(sum(s) / len(LANGS) for s in zip(*expected.values(), strict=True))
    assert expected["xwinograd_cot_fr"][0] != expected["xwinograd_cot_fr"][1]
    for name, (strict, flexible) in expected.items():
        assert res[name]["exact_match,strict-match"] == pytest.approx(strict), name
        assert res[name]["exact_match,flexible-extract"] == pytest.approx(flexible), name

    subjects = [f"mmlu_flan_cot_zeroshot_{s}" for s in ("astronomy", "high_school_geography", "nutrition")]
    gold_b = [sum(r["answer"] == 1 for r in rows(f"mmlu/{s}/validation.jsonl")[:5]) / 5
              for s in ("astronomy", "high_school_geography", "nutrition")]
    assert [res[s]["exact_match,flexible-extract"] for s in subjects] == pytest.approx(gold_b)
    for f in FILTERS:
        key = f"exact_match,{f}"
        assert res["mmlu_flan_cot_zeroshot"][key] == pytest.approx(sum(res[s][key] for s in subjects) / 3)
        assert res["mmlu_flan_cot_zeroshot::stem"][key] == res["mmlu_flan_cot_zeroshot_astronomy"][key]
    assert sum(gold_b) > 0 and res["mmlu_flan_cot_zeroshot"]["exact_match,flexible-extract"] == pytest.approx(
        sum(gold_b) / 3)


def test_self_consistency_override_re_emits_the_answer_patterns(tmp_path):
    """The task YAMLs name their answer patterns (`!function utils.STRICT_A_TO_E`, written once in utils.py); the
    self-consistency override, which re-emits each filter into another folder, writes the patterns themselves."""
    from cotscale.tasks import render_repeats_overrides

    manager = scoped_task_manager(["arc_challenge_cot", "xwinograd_cot"], [TASKS_DIR])
    expected = {  # the patterns as the task YAMLs spelled them out before
        "arc_challenge_cot": ["(?i:the answer is)\\s*:?\\s*\\(?([A-E])\\b",
                              "\\(([A-E])\\)|\\b([A-E])\\)|(?i:answer|option|choice)(?:\\s+is)?\\s*:?\\s*([A-E])\\b"],
        "xwinograd_cot_fr": ["(?i:the answer is)\\s*:?\\s*\\(?([AB])\\b",  # from the common include
                             "\\(([AB])\\)|\\b([AB])\\)|(?i:answer|option|choice)(?:\\s+is)?\\s*:?\\s*([AB])\\b"],
    }
    for group, task in (("arc_challenge_cot", "arc_challenge_cot"), ("xwinograd_cot", "xwinograd_cot_fr")):
        folder = render_repeats_overrides(manager, group, 3, tmp_path / group)
        doc = yaml.safe_load((folder / f"{task}.yaml").read_text())
        assert [entry["filter"][0]["regex_pattern"] for entry in doc["filter_list"]] == expected[task]
        assert [[step["function"] for step in entry["filter"]] for entry in doc["filter_list"]] == [
            ["regex", "majority_vote", "take_first"]] * 2

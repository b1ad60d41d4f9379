"""cotscale.tasks and the bundled demo data: lm-eval's own tasks re-pointed at local JSON-lines files."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from cotscale.tasks import (INDEX_FILE, MANIFEST_FILE, load_data_index, render_task_overrides, scoped_task_manager,
                            task_manager)

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "config" / "tasks" / "demo_data"
STANDARD = ["arc_challenge", "gsm8k", "hellaswag", "mmlu", "winogrande", "xwinograd", "truthfulqa_mc1"]
MMLU_SUBJECTS = ["astronomy", "high_school_geography", "nutrition"]
XWINOGRAD_LANGS = ["en", "fr", "jp", "pt", "ru", "zh"]  # the folders under demo_data/xwinograd, all of lm-eval's
# leaf task -> the file of the split lm-eval scores
EVAL_FILES = {
    "arc_challenge": "arc_challenge/test.jsonl",
    "gsm8k": "gsm8k/test.jsonl",
    "hellaswag": "hellaswag/validation.jsonl",
    **{f"mmlu_{s}": f"mmlu/{s}/test.jsonl" for s in MMLU_SUBJECTS},
    "winogrande": "winogrande/validation.jsonl",
    **{f"xwinograd_{lang}": f"xwinograd/{lang}/test.jsonl" for lang in XWINOGRAD_LANGS},
    "truthfulqa_mc1": "truthfulqa/validation.jsonl",
}


def rows(rel: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / rel).read_text(encoding="utf-8").splitlines()]


pytestmark = pytest.mark.usefixtures("offline_datasets")


@pytest.fixture(scope="module")
def base():
    """lm-eval's built-in task index (scanning ~15k YAMLs takes ~10 s, so it is shared)."""
    return task_manager()


@pytest.fixture(scope="module")
def rendered(base, tmp_path_factory):
    out = render_task_overrides(STANDARD, DATA, tmp_path_factory.mktemp("overrides") / "tasks", manager=base)
    return out, scoped_task_manager(STANDARD, [out])  # as cotscale.tasks.evaluation_task_manager does


@pytest.fixture(scope="module")
def loaded(rendered):
    return rendered[1].load(STANDARD)


# ------------------------------------------------------------------------------------------------ data files


def test_index_covers_the_splits_the_builtin_tasks_read(base):
    index = load_data_index(DATA)
    assert {(path, name) for path, name in index} == {
        ("allenai/ai2_arc", "ARC-Challenge"),
        ("openai/gsm8k", "main"),
        ("Rowan/hellaswag", "default"),
        *(("cais/mmlu", s) for s in MMLU_SUBJECTS),
        ("allenai/winogrande", "winogrande_xl"),
        *(("Muennighoff/xwinograd", lang) for lang in XWINOGRAD_LANGS),
        ("truthfulqa/truthful_qa", "multiple_choice"),
    }
    tasks = [t for t in EVAL_FILES] + [f"mmlu_flan_cot_zeroshot_{s}" for s in MMLU_SUBJECTS] + ["gsm8k_cot_zeroshot"]
    for name in tasks:
        cfg = base.task_index[name].cfg
        files = index[(cfg["dataset_path"], cfg["dataset_name"] or "default")]
        for key in ("training_split", "validation_split", "test_split", "fewshot_split"):
            if cfg.get(key):
                assert cfg[key] in files, f"{name}: {key}={cfg[key]} missing from {INDEX_FILE}"
    for files in index.values():
        for file in files.values():
            docs = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines()]
            assert 1 <= len(docs) <= 30, file


def test_demo_data_answers_are_well_formed():
    for doc in rows("arc_challenge/test.jsonl"):
        assert doc["answerKey"] in doc["choices"]["label"] and len(doc["choices"]["text"]) == len(
            doc["choices"]["label"]
        )
    for rel in ("gsm8k/train.jsonl", "gsm8k/test.jsonl"):
        for doc in rows(rel):
            assert doc["answer"].rsplit("\n", 1)[-1].startswith("#### ")
    for s in MMLU_SUBJECTS:
        for split in ("dev", "validation", "test"):
            answers = [d["answer"] for d in rows(f"mmlu/{s}/{split}.jsonl")]
            assert all(d in (0, 1, 2, 3) for d in answers) and len(set(answers)) > 2
    for rel in ("winogrande/validation.jsonl", "xwinograd/en/test.jsonl", "xwinograd/fr/test.jsonl"):
        docs = rows(rel)
        assert all(d["sentence"].count("_") == 1 and d["answer"] in ("1", "2") for d in docs)
        assert {d["answer"] for d in docs} == {"1", "2"}
    for doc in rows("truthfulqa/validation.jsonl"):
        assert doc["mc1_targets"]["labels"] == [1] + [0] * (len(doc["mc1_targets"]["choices"]) - 1)


# ------------------------------------------------------------------------------------------------ rendering


def test_render_writes_include_overrides(rendered, base):
    out, _ = rendered
    arc = (out / "tasks" / "arc_challenge.yaml").read_text()
    import yaml

    doc = yaml.safe_load(arc)
    assert doc["task"] == "arc_challenge" and doc["dataset_path"] == "json" and doc["dataset_name"] is None
    assert Path(doc["include"]).is_absolute() and Path(doc["include"]) == base.task_index["arc_challenge"].yaml_path
    assert doc["dataset_kwargs"]["data_files"] == {
        s: str(DATA / f"arc_challenge/{s}.jsonl") for s in ("train", "validation", "test")
    }
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    assert manifest["groups"]["xwinograd"] == [f"xwinograd_{lang}" for lang in XWINOGRAD_LANGS]
    assert "mmlu_anatomy" in manifest["dropped"] and not [t for t in manifest["dropped"] if "xwinograd" in t]

    # deterministic, and re-rendering replaces the folder atomically (no temporary leftovers)
    again = render_task_overrides(STANDARD, DATA, out.parent / "again", manager=base)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((out / f).read_bytes() == (again / f).read_bytes() for f in files)
    render_task_overrides(["gsm8k"], DATA, again, manager=base)
    assert sorted(p.name for p in (again / "tasks").iterdir()) == ["gsm8k.yaml"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["again", "tasks"]


def test_loaded_tasks_read_the_local_files(loaded):
    assert sorted(loaded["tasks"]) == sorted(EVAL_FILES)
    for name, task in loaded["tasks"].items():
        assert task.config.dataset_path == "json", name
        assert len(list(task.eval_docs)) == len(rows(EVAL_FILES[name])), name
    # the few-shot split is there too
    assert len(loaded["tasks"]["gsm8k"].dataset["train"]) == len(rows("gsm8k/train.jsonl"))
    assert len(loaded["tasks"]["mmlu_astronomy"].dataset["dev"]) == 5


def test_groups_keep_only_members_with_data(loaded):
    groups, group_map = loaded["groups"], loaded["group_map"]
    leaves = sorted(t.task_name for t in groups["mmlu"].get_all_tasks())
    assert leaves == [f"mmlu_{s}" for s in MMLU_SUBJECTS]
    assert sorted(group_map["mmlu"]) == ["mmlu_other", "mmlu_social_sciences", "mmlu_stem"]
    assert group_map["mmlu_stem"] == ["mmlu_astronomy"]
    assert group_map["xwinograd"] == [f"xwinograd_{lang}" for lang in XWINOGRAD_LANGS]
    for name in ("mmlu", "xwinograd"):  # aggregation exactly as lm-eval defines it
        (agg,) = groups[name].aggregate_metric_list
        assert agg.metric == "acc" and agg.weight_by_size is True


def test_docs_carry_the_gold_answers_written_in_the_files(loaded):
    tasks = loaded["tasks"]

    def first(name):
        return next(iter(tasks[name].eval_docs))

    arc_rows = rows("arc_challenge/test.jsonl")
    arc = tasks["arc_challenge"]
    golds = [arc.doc_to_target(d) for d in arc.eval_docs]
    assert golds == [r["choices"]["label"].index(r["answerKey"]) for r in arc_rows]
    assert arc.doc_to_choice(first("arc_challenge")) == arc_rows[0]["choices"]["text"]

    mmlu = tasks["mmlu_astronomy"]
    assert [mmlu.doc_to_target(d) for d in mmlu.eval_docs] == [r["answer"] for r in rows("mmlu/astronomy/test.jsonl")]
    assert mmlu.doc_to_text(first("mmlu_astronomy")).startswith("Which planet is known as the Red Planet?\nA. Venus")

    gsm = tasks["gsm8k"]
    assert gsm.doc_to_target(first("gsm8k")).endswith("\n#### 2")

    # hellaswag's `process_docs: !function utils.process_docs` still resolves through the include
    hs, hs_row = first("hellaswag"), rows("hellaswag/validation.jsonl")[0]
    assert hs["query"] == "Making a sandwich: A man places two slices of bread on a plate. He"
    assert hs["gold"] == int(hs_row["label"]) and hs["choices"] == hs_row["endings"]
    assert tasks["hellaswag"].doc_to_target(hs) == int(hs_row["label"])

    for name, rel in (("winogrande", "winogrande/validation.jsonl"), ("xwinograd_fr", "xwinograd/fr/test.jsonl")):
        task = tasks[name]  # "multiple input" mode: doc_to_text returns the gold index
        assert [task.doc_to_text(d) for d in task.eval_docs] == [int(r["answer"]) - 1 for r in rows(rel)]

    tqa, tqa_row = tasks["truthfulqa_mc1"], rows("truthfulqa/validation.jsonl")[0]
    assert tqa.doc_to_target(first("truthfulqa_mc1")) == 0
    assert tqa.doc_to_choice(first("truthfulqa_mc1")) == tqa_row["mc1_targets"]["choices"]


def test_cot_variants_of_the_same_datasets(base, tmp_path):
    names = ["mmlu_flan_cot_zeroshot", "gsm8k_cot_zeroshot"]
    out = render_task_overrides(names, DATA, tmp_path / "tasks", manager=base)
    loaded = scoped_task_manager(names, [out]).load(names)
    cot = sorted(t.task_name for t in loaded["groups"]["mmlu_flan_cot_zeroshot"].get_all_tasks())
    assert cot == [f"mmlu_flan_cot_zeroshot_{s}" for s in MMLU_SUBJECTS]
    assert len(list(loaded["tasks"]["mmlu_flan_cot_zeroshot_nutrition"].eval_docs)) == 8  # scored on validation
    assert len(list(loaded["tasks"]["gsm8k_cot_zeroshot"].eval_docs)) == 24


def test_missing_local_data_is_a_clear_error(base, tmp_path):
    with pytest.raises(ValueError, match=r"arc_easy.*allenai/ai2_arc.*ARC-Easy.*index\.yaml"):
        render_task_overrides(["arc_challenge", "arc_easy"], DATA, tmp_path / "x", manager=base)
    with pytest.raises(ValueError, match=r"mmlu_humanities.*none of its tasks has local data"):
        render_task_overrides(["mmlu_humanities"], DATA, tmp_path / "x", manager=base)
    with pytest.raises(ValueError, match="no_such_task"):
        render_task_overrides(["no_such_task"], DATA, tmp_path / "x", manager=base)
    with pytest.raises(ValueError, match="index not found"):
        render_task_overrides(["gsm8k"], tmp_path, tmp_path / "x", manager=base)
    assert not (tmp_path / "x").exists()


def test_tasks_and_groups_from_an_extra_include_folder(base, tmp_path):
    """A project CoT task with its own `!function`, and a project group, re-pointed the same way."""
    extra = tmp_path / "project_tasks"
    extra.mkdir()
    (extra / "utils.py").write_text("def mark(dataset):\n    return dataset.map(lambda d: {'marked': d['id']})\n")
    (extra / "demo_arc_cot.yaml").write_text(textwrap.dedent("""\
            task: demo_arc_cot
            dataset_path: allenai/ai2_arc
            dataset_name: ARC-Challenge
            output_type: generate_until
            test_split: test
            process_docs: !function utils.mark
            doc_to_text: "Q: {{question}}\\nA: Let's think step by step."
            doc_to_target: "{{answerKey}}"
            generation_kwargs: {until: ["Q:"], max_gen_toks: 8}
            metric_list: [{metric: exact_match}]
            """))
    (extra / "demo_xwg.yaml").write_text(textwrap.dedent("""\
            group: demo_xwg
            task:
              - xwinograd_en
              - arc_easy
              - {task: xwinograd_fr, dataset_name: en}
            aggregate_metric_list: [{metric: acc, weight_by_size: false}]
            """))
    names = ["demo_arc_cot", "demo_xwg"]
    manager = scoped_task_manager(names, [extra])
    out = render_task_overrides(names, DATA, tmp_path / "tasks", manager=manager)
    loaded = scoped_task_manager(names, [extra, out]).load(names)
    docs = list(loaded["tasks"]["demo_arc_cot"].eval_docs)
    assert len(docs) == 24 and docs[0]["marked"] == "Demo_ARC_test_001"
    assert loaded["group_map"]["demo_xwg"] == ["xwinograd_en", "xwinograd_fr"]  # arc_easy has no data: left out
    assert loaded["groups"]["demo_xwg"].aggregate_metric_list[0].weight_by_size is False
    # the member's own dataset override (en data under the fr task) is honoured, pointed at the local en file
    fr_docs = list(loaded["tasks"]["xwinograd_fr"].eval_docs)
    assert fr_docs[0]["sentence"] == rows("xwinograd/en/test.jsonl")[0]["sentence"]


# ------------------------------------------------------------------------------------------------ end to end


def _tiny_model(path: Path) -> Path:
    """A throwaway 2-layer Llama with a byte-level BPE tokenizer trained on a few sentences."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = [r["question"] for r in rows("arc_challenge/train.jsonl")] + [
        r["sentence"] for r in rows("winogrande/train.jsonl")
    ]
    tok.train_from_iterator(text * 3, trainer)
    eos = "<|endoftext|>"
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=eos, bos_token=eos, unk_token=eos, pad_token=eos
    )
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path


def test_simple_evaluate_on_local_data(rendered, tmp_path):
    import lm_eval

    model = _tiny_model(tmp_path / "tiny")
    results = lm_eval.simple_evaluate(
        model="hf",
        model_args={"pretrained": str(model), "dtype": "float32", "device": "cpu"},
        tasks=["arc_challenge", "xwinograd"],
        limit=3,
        batch_size=8,
        task_manager=rendered[1],
        bootstrap_iters=0,
        log_samples=False,
    )
    res = results["results"]
    assert sorted(res) == ["arc_challenge", "xwinograd", *(f"xwinograd_{lang}" for lang in XWINOGRAD_LANGS)]
    assert {"acc,none", "acc_norm,none"} <= set(res["arc_challenge"])
    assert 0.0 <= res["xwinograd"]["acc,none"] <= 1.0  # the group's own (size-weighted) aggregate
    assert results["group_subtasks"]["xwinograd"] == [f"xwinograd_{lang}" for lang in XWINOGRAD_LANGS]
    assert results["n-samples"]["xwinograd_fr"] == {"original": 20, "effective": 3}
    assert results["configs"]["arc_challenge"]["dataset_path"] == "json"

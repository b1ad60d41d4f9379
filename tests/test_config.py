"""The schema and the loader reject bad configurations with a message that names the key."""

import copy

import pytest
import yaml

from cotscale.config import DEFAULT_TASKS, ConfigError, evaluation_jobs, load_config, task_variant


@pytest.fixture(scope="module")
def paper_config(root):
    return yaml.safe_load((root / "config" / "config.yaml").read_text())


def test_paper_grid_expands_every_checkpoint(paper_config):
    config = load_config(paper_config)
    # one model revision per checkpoint of a model with `checkpoints:`, else one (counted from the YAML by hand)
    revisions = sum(len(m.get("checkpoints") or {None: 0}) for m in paper_config["models"].values())
    assert len(config["models"]) == revisions
    olmo = config["models"]["OLMo-7B-0724-hf@step2500-tokens10B"]
    assert (olmo["hf_id"], olmo["revision"], olmo["N"], olmo["D"]) == ("allenai/OLMo-7B-0724-hf", "step2500-tokens10B", 7e9, 1e10)
    assert config["models"]["pythia-160m-deduped"]["revision"] == "main"
    tasks = paper_config.get("tasks") or yaml.safe_load(DEFAULT_TASKS.read_text())
    assert len(evaluation_jobs(config)) == revisions * len(paper_config["strategies"]) * len(tasks)
    assert task_variant(config, "cot_generate", "gsm8k")["task"] == "gsm8k_cot_zeroshot"
    assert config["strategies"]["hybrid_cot"]["cot_cue"] == " Let's think step by step."
    assert config["strategies"]["hybrid"]["cot_cue"] == ""
    assert not any(m["trust_remote_code"] for m in config["models"].values())


def _broken(paper_config, edit):
    config = copy.deepcopy(paper_config)
    config["tasks"] = yaml.safe_load(DEFAULT_TASKS.read_text())
    edit(config)
    with pytest.raises(ConfigError) as info:
        load_config(config)
    return str(info.value)


@pytest.mark.parametrize(
    "edit, expected",
    [
        (lambda c: c["models"]["gemma-2-2b"].update(params=-5), "models.gemma-2-2b.params"),
        (lambda c: c["models"]["gemma-2-2b"].pop("params"), "'params' is a required property"),
        (lambda c: c["models"]["gemma-2-2b"].update(params="2e9"), "models.gemma-2-2b.params"),
        (lambda c: c["models"].update({"bad key; rm -rf": c["models"]["gemma-2-2b"]}), "bad key; rm -rf"),
        (lambda c: c["models"].update({"../escape": c["models"]["gemma-2-2b"]}), "../escape"),
        (lambda c: c["models"]["gemma-2-2b"].update(hf_id="google/$(touch x)"), "models.gemma-2-2b.hf_id"),
        (lambda c: c["strategies"]["hybrid"].update(format="beam_search"), "strategies.hybrid.format"),
        (lambda c: c["tasks"].update(boolq=c["tasks"]["gsm8k"]), "boolq"),
        (lambda c: c.update(limt=5), "limt"),
        (lambda c: c["analysis"].update(cot="hybrid_cott"), "analysis.cot"),
        (lambda c: c["strategies"]["beam"].update(models=["no-such-model"]), "strategies.beam.models"),
        (lambda c: c["tasks"]["gsm8k"].pop("cot"), "tasks.gsm8k"),
        (lambda c: c["models"]["Qwen2.5-3B"].update(tensor_parallel=0), "models.Qwen2.5-3B.tensor_parallel"),
    ],
)
def test_bad_config_names_the_key(paper_config, edit, expected):
    assert expected in _broken(paper_config, edit)


def test_published_mode_needs_no_models(paper_config):
    config = load_config({"published": "../shared/paper", "strategies": paper_config["strategies"]})
    assert config["models"] == {} and evaluation_jobs(config) == []
    assert "config key models" in _broken(paper_config, lambda c: c.pop("models"))


def test_checkpoint_key_clash_is_rejected(paper_config):
    def clash(c):
        c["models"]["OLMo-1B-0724-hf@main"] = dict(c["models"]["gemma-2-2b"])

    message = _broken(paper_config, clash)
    assert "OLMo-1B-0724-hf@main" in message


def test_a_strategy_that_extends_another_equals_it_written_out(paper_config):
    written = copy.deepcopy(paper_config)
    written["strategies"]["hybrid_cot_started"] = {**paper_config["strategies"]["hybrid_cot"],
                                                   "stop_after_content": True}
    extended = copy.deepcopy(paper_config)
    extended["strategies"]["hybrid_cot_started"] = {"extends": "hybrid_cot", "stop_after_content": True}
    a, b = load_config(written)["strategies"], load_config(extended)["strategies"]
    assert a == b and "extends" not in b["hybrid_cot_started"]
    assert b["hybrid_cot_started"]["stop_after_content"] and not b["hybrid_cot"]["stop_after_content"]


def test_the_rationales_start_overlay_adds_the_started_pair(root, paper_config):
    """config/rationales_start.yaml merged over the paper grid (as Snakemake merges two --configfile's): two more
    strategies, each its namesake with stop_after_content, and the paper's own strategies untouched."""
    overlay = yaml.safe_load((root / "config" / "rationales_start.yaml").read_text())
    merged = copy.deepcopy(paper_config)
    merged["strategies"].update(overlay["strategies"])
    strategies, paper = load_config(merged)["strategies"], load_config(paper_config)["strategies"]
    assert sorted(set(strategies) - set(paper)) == ["hybrid_cot_started", "hybrid_started"]
    for name in ("hybrid", "hybrid_cot"):
        assert strategies[name] == paper[name]
        started = dict(strategies[f"{name}_started"], name=name)
        assert started == {**paper[name], "stop_after_content": True}


@pytest.mark.parametrize("extends, expected", [("no_such", "strategies.x.extends: unknown strategy 'no_such'"),
                                                ("x", "strategies.x.extends: a circle (x -> x)")])
def test_bad_extends_names_the_key(paper_config, extends, expected):
    assert expected in _broken(paper_config, lambda c: c["strategies"].update(x={"extends": extends}))

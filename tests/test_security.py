"""No config or wildcard string reaches a shell; remote code runs only when a model entry asks for it; Hugging Face
tokens never end up in outputs or logs."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import pytest
import yaml

from _demo import CANARY_TOKEN, _no_slurm_path, shared_run, snakemake, write_config

import cotscale.workflow
from cotscale.config import load_config
from cotscale.io import REDACTED, redact_secrets

ROOT = Path(__file__).resolve().parents[1]
INJECTIONS = ["x$(touch canary)", "x;touch canary", "x`touch canary`", "x|touch canary", "x&&touch canary",
              "x\ntouch canary"]


@pytest.fixture(scope="module")
def workflow_rules(tmp_path_factory):
    """Every rule of the parsed workflow (Snakemake's API, demo config) and its global wildcard constraints."""
    workdir = tmp_path_factory.mktemp("parse")
    config = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    config["task_data"] = str(ROOT / "config" / "tasks" / "demo_data")
    path = write_config(workdir, config)
    cwd, path_env = os.getcwd(), os.environ["PATH"]
    os.environ["PATH"] = _no_slurm_path()  # see tests/_demo.py
    try:
        from snakemake.api import SnakemakeApi
        from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

        with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
            workflow_api = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                                        config_settings=ConfigSettings(configfiles=[path]), workdir=workdir,
                                        snakefile=ROOT / "Snakefile")
            workflow_api.list_rules()
            workflow = workflow_api._workflow
            return list(workflow.rules), dict(workflow.wildcard_constraints)
    finally:
        os.chdir(cwd)
        os.environ["PATH"] = path_env
        # parsing put the workflow's storage registry into snakemake.workflow's globals; vLLM's kernel-override scan
        # over every module namespace (vllm.triton_utils.dispatcher) fails on it, so later vLLM tests in this
        # process would fail. Snakemake's own job processes never parse a workflow this way.
        import snakemake.workflow

        vars(snakemake.workflow).pop("storage", None)


def test_no_rule_runs_a_shell_or_inline_code(workflow_rules):
    rules, _ = workflow_rules
    assert len(rules) > 15
    for rule in rules:
        assert rule.shellcmd is None and not rule.is_run, rule.name
        assert not (rule.notebook or rule.wrapper or getattr(rule, "cwl", None)), rule.name
        if rule.name != "all":  # one script for every rule, handing the job to its entry point by the rule's name
            assert rule.script == "../scripts/cotscale_rule.py", rule.name
            assert callable(cotscale.workflow.entry_point(rule.name)), rule.name
    script = (ROOT / "workflow" / "scripts" / "cotscale_rule.py").read_text()
    assert "workflow.run_rule(snakemake, workflow.entry_point(snakemake.rule))" in script
    sources = [ROOT / "Snakefile", *sorted((ROOT / "workflow").rglob("*.smk")), *sorted((ROOT / "workflow").rglob("*.py")),
               *sorted((ROOT / "src" / "cotscale").glob("*.py"))]
    for source in sources:
        text = source.read_text()
        for pattern in (r"^\s*(shell|run):", r"shell\s*=\s*True", r"os\.(system|popen)\(", r"\bshell\("):
            assert not re.search(pattern, text, re.MULTILINE), (source, pattern)


def test_every_wildcard_is_constrained_and_the_constraints_reject_injections(workflow_rules):
    rules, constraints = workflow_rules
    used = {name for rule in rules for name in rule.wildcard_names}
    assert used == {"model", "strategy", "name"} and used <= set(constraints)
    for name in used:
        for value in [*INJECTIONS, "..", "../x", "a/../b", "a b", ""]:
            assert not re.fullmatch(constraints[name], value), (name, value)
    assert re.fullmatch(constraints["model"], "OLMo-1B-0724-hf@step5000-tokens10B")
    assert re.fullmatch(constraints["model"], "m@refs/pr/1")
    assert not re.fullmatch(constraints["model"], "m@main/../../etc")


@pytest.mark.parametrize("where", ["model key", "hf_id"])
def test_shell_metacharacters_in_config_are_rejected_before_anything_runs(root, tmp_path, where):
    config = yaml.safe_load((root / "config" / "demo.yaml").read_text())
    config["task_data"] = str(root / "config" / "tasks" / "demo_data")
    bad = "x$(touch canary)`touch canary2`;touch canary3"
    if where == "model key":
        config["models"][bad] = config["models"].pop("tinyllama-s")
    else:
        config["models"]["tinyllama-s"]["hf_id"] = bad
        config["models"]["tinyllama-s"].pop("demo")
    write_config(tmp_path, config)
    run = snakemake(root, tmp_path, "all", extra=["-n"])
    assert run.returncode != 0
    assert bad in run.output and "does not match" in run.output  # the error names the value
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["config.yaml"]
    assert not list(tmp_path.rglob("canary*"))
    for text in INJECTIONS:  # and the loader rejects each one alone, naming the key
        for edit in (lambda c: c["models"].update({text: c["models"]["tinyllama-l"]}),
                     lambda c: c["models"]["tinyllama-l"].update(hf_id=text),
                     lambda c: c["strategies"].update({text: c["strategies"]["standard"]})):
            config = yaml.safe_load((root / "config" / "demo.yaml").read_text())
            edit(config)
            with pytest.raises(ValueError, match=re.escape(repr(text))):
                load_config(config)


# ---------------------------------------------------------------------------------------------- remote code
@pytest.fixture(scope="module")
def untrained_model(tmp_path_factory) -> Path:
    from _lm_fixtures import TINY_SPEC

    from cotscale.demo_models import build_demo_model

    out = tmp_path_factory.mktemp("model")
    build_demo_model(TINY_SPEC, {"main": 0}, out)  # untrained: only the arguments are under test
    return out / "main"


@pytest.mark.parametrize("setting", [None, False, True])
def test_trust_remote_code_only_when_the_model_entry_sets_it(untrained_model, monkeypatch, setting):
    transformers = pytest.importorskip("transformers")
    from cotscale.evaluate import _build_lm
    from cotscale.lm.hf_backend import hf_backend_class

    backend = hf_backend_class()
    seen = {"backend": [], "hub": []}
    real_init, real_config = backend.__init__, transformers.AutoConfig.from_pretrained

    def init(self, *args, **kwargs):
        seen["backend"].append(kwargs.get("trust_remote_code"))
        real_init(self, *args, **kwargs)

    def from_pretrained(*args, **kwargs):
        seen["hub"].append(kwargs.get("trust_remote_code"))
        return real_config(*args, **kwargs)

    monkeypatch.setattr(backend, "__init__", init)
    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", from_pretrained)
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    entry = {"family": "f", "params": 1.0e6, "train_tokens": 1.0e6, "hf_id": str(untrained_model)}
    if setting is not None:
        entry["trust_remote_code"] = setting
    config = load_config({**demo, "models": {"m": entry}, "strategies": {"standard": demo["strategies"]["standard"]},
                          "analysis": {"baseline": "standard", "cot": "standard", "llh": "standard"}})
    _build_lm(config, config["models"]["m"], config["strategies"]["standard"], None, config["batch_size"])
    expected = bool(setting)
    assert seen["backend"] == [expected] and seen["hub"] and set(seen["hub"]) == {expected}


# ---------------------------------------------------------------------------------------------- tokens
def test_redaction_of_tokens():
    results = {"config": {"model_args": f"pretrained=x,token={CANARY_TOKEN}"}, "list": [CANARY_TOKEN, 1, None],
               CANARY_TOKEN: 2.5}
    clean = redact_secrets(results, [CANARY_TOKEN])
    assert CANARY_TOKEN not in repr(clean) and clean["config"]["model_args"] == f"pretrained=x,token={REDACTED}"
    assert clean["list"] == [REDACTED, 1, None] and clean[REDACTED] == 2.5
    assert redact_secrets(results, []) is results


def _texts(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".gz":
                data = gzip.decompress(data)
            yield path, data


@pytest.mark.slow
def test_hugging_face_token_appears_nowhere(root, tmp_path_factory):
    """The shared runs had HF_TOKEN and HUGGING_FACE_HUB_TOKEN set (tests/_demo.py): scan every file they left,
    results, samples, usage, tables, job logs and Snakemake's own logs."""
    workdir = shared_run(tmp_path_factory, root)
    scanned = 0
    for path, data in _texts(workdir):
        assert CANARY_TOKEN.encode() not in data, path
        scanned += 1
    assert scanned > 20 and list(workdir.glob(".snakemake/log/*.log")) and list(workdir.glob("logs/evaluate/**/*.log"))

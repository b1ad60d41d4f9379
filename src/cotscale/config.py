"""Load, validate and expand a cotscale configuration.

The JSON schema (workflow/schemas/config.schema.yaml) checks shapes; this module adds the checks a schema cannot
express (cross references, duplicate keys after checkpoint expansion) and expands compact checkpoint declarations
into one model entry per revision, so the rest of the pipeline sees a flat `models` mapping.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path

import jsonschema
import yaml

from cotscale.errors import ConfigError, CotscaleError  # noqa: F401 - CotscaleError: re-exported
from cotscale.io import read_yaml
from cotscale import strategy as _strategy
from cotscale.strategy import DEFAULT_ANSWER_CUE, DEFAULT_COT_CUE, StrategyError, check_strategy, fill_strategy

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_TASKS = ROOT / "config" / "tasks" / "benchmarks.yaml"
PAPER_CONFIG = ROOT / "config" / "config.yaml"  # the strategies a name (CLI, CotscaleLM) refers to
DEMO_MODELS_DIR = "results/demo_models"


# The schema and the default task table are parsed once per process, with libyaml when PyYAML has it (the pure-Python
# parser took ~13 ms per read, twice per load_config; load_config runs in the DAG build and in every job's process).
_FAST_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.lru_cache(maxsize=None)
def _schema() -> dict:
    """The config schema (read-only: callers copy what they put into a config)."""
    return yaml.load(SCHEMA.read_text(), Loader=_FAST_LOADER)  # noqa: S506 - a safe loader


@functools.lru_cache(maxsize=None)
def _default_tasks() -> dict:
    return yaml.load(DEFAULT_TASKS.read_text(), Loader=_FAST_LOADER)  # noqa: S506 - a safe loader


#: the seven benchmarks of the paper, in its order: the keys of config/tasks/benchmarks.yaml
BENCHMARKS = tuple(_default_tasks())


def default_tasks() -> dict:
    """config/tasks/benchmarks.yaml: per benchmark and variant, the lm-eval task, metric and filter (a copy)."""
    return copy.deepcopy(_default_tasks())



def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _short(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...}"


def _schema_errors(config: dict) -> list[str]:
    schema = _schema()
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        leaf = jsonschema.exceptions.best_match([error])
        where = f"config key {_key_path(leaf)}"
        if leaf.validator in ("additionalProperties", "propertyNames"):
            messages.append(f"{where}: {leaf.message}")
        elif leaf.validator == "required":
            missing = leaf.message.split("'")[1] if "'" in leaf.message else ""
            about = leaf.schema.get("properties", {}).get(missing, {})
            about = about.get("description") or (about.get("$ref") and _definition(schema, about["$ref"]).get("description"))
            messages.append(f"{where}: {leaf.message}" + (f" ({about})" if about else ""))
        elif leaf.validator == "oneOf" and _is_model_schema(leaf.schema):
            messages.append(
                f"{where}: give either train_tokens (D, the number of training tokens) or checkpoints "
                f"({{revision: D, ...}}), not both; a model with checkpoints takes no revision"
            )
        elif leaf.validator in ("oneOf", "anyOf") and leaf.schema.get("description"):
            messages.append(f"{where}: {_short(leaf.instance)} is not allowed: {leaf.schema['description']}")
        else:
            messages.append(f"{where}: {leaf.message} (value {_short(leaf.instance)}){_hint(leaf.instance)}")
    return messages


def _definition(schema: dict, ref: str) -> dict:
    node = schema
    for part in ref.lstrip("#/").split("/"):
        node = node.get(part, {})
    return node


def _is_model_schema(schema: dict) -> bool:
    return any("train_tokens" in option.get("required", []) for option in schema.get("oneOf", []))


def _hint(value) -> str:
    """PyYAML reads `1e9` (no sign, no dot) as text: say how to write it."""
    if isinstance(value, str):
        try:
            return f"; YAML reads {value} as text, write it as {float(value):.4e}".replace("e+0", "e+")
        except ValueError:
            pass
    return ""


def _fill_defaults(config: dict) -> None:
    schema = _schema()
    for key, prop in schema["properties"].items():
        if "default" in prop:
            config.setdefault(key, copy.deepcopy(prop["default"]))
    for block in ("analysis", "plan", "cost"):
        for key, prop in schema["properties"][block]["properties"].items():
            if "default" in prop:
                config[block].setdefault(key, copy.deepcopy(prop["default"]))


_REVISION_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # = the {model} wildcard constraint in common.smk


def _check_revision(name: str, revision: str) -> None:
    """A checkpoint revision becomes part of the {model} wildcard and so of output paths: every `/`-separated part
    must start with a letter or digit (no `..`, `.` or empty parts)."""
    if not all(_REVISION_PART.fullmatch(part) for part in revision.split("/")):
        raise ConfigError(
            f"config key models.{name}.checkpoints: revision {revision!r} has an empty, '.' or '..' path part (or "
            f"one that starts with '.'); it would become the output folder results/evals/{name}@{revision}/ — use "
            f"the Hugging Face branch or tag name (e.g. step1000-tokens4B)"
        )


def _expand_models(config: dict) -> dict:
    """One entry per evaluated model *and revision*; compact `checkpoints:` become `name@revision` keys."""
    models = {}
    for name, entry in config["models"].items():
        if "hf_id" not in entry and "demo" not in entry and "gguf_file" not in entry:
            raise ConfigError(f"config key models.{name}: needs hf_id (a Hugging Face id or path), gguf_file (a local "
                              f"GGUF file) or demo (a tiny local model)")
        gguf = _gguf_fields(name, entry) if "gguf_file" in entry else {}
        for revision in entry.get("checkpoints") or {}:
            _check_revision(name, revision)
        revisions = entry.get("checkpoints") or {entry.get("revision", "main"): entry["train_tokens"]}
        demo = entry.get("demo")
        if demo is not None:
            steps = demo["steps"]
            if isinstance(steps, int) != ("checkpoints" not in entry) or (
                isinstance(steps, dict) and set(steps) != set(revisions)
            ):
                raise ConfigError(
                    f"config key models.{name}.demo.steps: give one step count per checkpoint "
                    f"({sorted(revisions)}), or a single integer for a model without checkpoints"
                )
        for revision, tokens in revisions.items():
            key = f"{name}@{revision}" if "checkpoints" in entry else name
            if key in models or (key != name and key in config["models"]):
                raise ConfigError(f"config key models.{name}: model key {key!r} is defined twice")
            pretrained = (f"{DEMO_MODELS_DIR}/{name}/{revision}" if demo is not None
                          else gguf.get("pretrained") or entry["hf_id"])
            models[key] = {
                "key": key,
                "name": name,
                "hf_id": entry.get("hf_id", pretrained),
                "pretrained": pretrained,
                "revision": revision,
                "family": entry["family"],
                "N": float(entry["params"]),
                "D": float(tokens),
                "backend": entry.get("backend", config["backend"]),
                "dtype": entry.get("dtype", config["dtype"]),
                "tensor_parallel": entry.get("tensor_parallel", 1),
                "data_parallel": entry.get("data_parallel", 1),
                "trust_remote_code": entry.get("trust_remote_code", False),
                **({"architecture": dict(entry["architecture"])} if entry.get("architecture") else {}),
                **({"strategies": list(entry["strategies"])} if entry.get("strategies") else {}),
                **{k: v for k, v in gguf.items() if k != "pretrained"},
                "demo": demo,
                "demo_steps": demo["steps"][revision] if demo and isinstance(demo["steps"], dict) else (demo or {}).get("steps"),
            }
    return models


def _gguf_fields(name: str, entry: dict) -> dict:
    """A GGUF entry's folder (``pretrained``), file and content hash (cotscale.gguf): the hash is part of every job
    spec, so replacing the file reruns its evaluations."""
    from cotscale.gguf import file_sha256, resolve_gguf

    folder, path = resolve_gguf(name, entry)
    return {"pretrained": folder, "gguf_file": str(path), "gguf_sha256": file_sha256(path)}


def _extend_strategies(strategies: dict) -> dict:
    """Strategies with ``extends: NAME`` are NAME's keys with their own over them (one definition, a variant names
    only what it changes, e.g. config/rationales_start.yaml); a chain is followed, a circle or unknown name refused."""
    out: dict[str, dict] = {}

    def resolve(name: str, seen: tuple[str, ...]) -> dict:
        if name in out:
            return out[name]
        own = dict(strategies[name])
        base = own.pop("extends", None)
        if base is not None:
            if base not in strategies:
                raise ConfigError(f"config key strategies.{name}.extends: unknown strategy {base!r}; known: "
                                  f"{', '.join(strategies)}")
            if base in seen:
                raise ConfigError(f"config key strategies.{name}.extends: a circle ({' -> '.join([*seen, base])})")
            own = {**resolve(base, (*seen, base)), **own}
        out[name] = own
        return own

    return {name: resolve(name, (name,)) for name in strategies}


def _check_strategies(config: dict, given: dict[str, set]) -> None:
    """Values that are bad together (the schema checks each value alone): cotscale.strategy.check_strategy."""
    for name, s in config["strategies"].items():
        try:
            check_strategy(s)
        except StrategyError as exc:
            where = f"config key strategies.{name}.{exc.key}"
            if exc.key == "cot_cue" and "cot_cue" not in given[name]:
                where += " (inherited from the top-level cot_cue)"
            raise ConfigError(f"{where}: {exc.why} (got {s[exc.key]!r})") from None


def _check_references(config: dict) -> None:
    known = set(config["models"]) | {m["name"] for m in config["models"].values()}
    for model in config["models"].values():
        unknown = [s for s in model.get("strategies", []) if s not in config["strategies"]]
        if unknown:
            raise ConfigError(f"config key models.{model['name']}.strategies: unknown strategy {unknown[0]!r}; known: "
                              f"{', '.join(config['strategies'])}")
    for name, strategy in config["strategies"].items():
        for model in strategy.get("models", []):
            if model not in known:
                raise ConfigError(
                    f"config key strategies.{name}.models: unknown model {model!r}; known: {', '.join(sorted(known))}"
                )
        for task, spec in config["tasks"].items():
            if strategy["variant"] not in spec:
                raise ConfigError(
                    f"config key tasks.{task}: strategy {name!r} runs variant {strategy['variant']!r}, "
                    f"which this task does not define"
                )
    ingested = config.get("lm_eval_outputs", {})
    for model, by_strategy in ingested.items():
        if model not in config["models"]:
            raise ConfigError(f"config key lm_eval_outputs.{model}: unknown model; known: {', '.join(sorted(config['models']))}")
        for strategy in by_strategy:
            if strategy not in strategies_of(config, model):
                raise ConfigError(f"config key lm_eval_outputs.{model}.{strategy}: not a strategy of this model; "
                                  f"known: {', '.join(strategies_of(config, model))}")
        if set(by_strategy) != set(next(iter(ingested.values()))):
            # the ingest rule takes every ingested model x ingested strategy; a pair left out would be ingested too
            raise ConfigError(f"config key lm_eval_outputs.{model}: give the same strategies for every ingested "
                              f"model ({', '.join(sorted(next(iter(ingested.values()))))})")
    for role in ("baseline", "cot", "llh"):
        strategy = config["analysis"][role]
        if strategy not in config["strategies"]:
            raise ConfigError(
                f"config key analysis.{role}: unknown strategy {strategy!r}; known: {', '.join(sorted(config['strategies']))}"
            )


def check_config_files(paths, base: str | Path | None = None) -> None:
    """Re-read the config files Snakemake loaded (it keeps the last of duplicate keys) and reject duplicate keys.

    Relative paths are tried against the working directory, then `base` (the workflow's folder).
    """
    for path in paths:
        path = Path(path)
        if not path.exists() and base is not None and (Path(base) / path).exists():
            path = Path(base) / path
        if path.exists():
            read_yaml(path)


def load_workflow_config(config: dict, configfiles=(), overrides: dict | None = None,
                         base: str | Path | None = None) -> dict:
    """load_config() for the Snakefile: duplicate keys in the config files are errors, and every error names the
    files (and --config overrides) the configuration came from."""
    check_config_files(configfiles, base)
    try:
        return load_config(config)
    except ConfigError as exc:
        sources = [str(p) for p in configfiles] + (["--config " + " ".join(f"{k}={v}" for k, v in overrides.items())] if overrides else [])
        raise ConfigError(f"{exc}\n  (configuration from {', '.join(sources) or 'the Snakefile'})") from None


def load_config(source: dict | str | Path) -> dict:
    """Validated config with defaults filled and checkpoints expanded (raises ConfigError naming the bad key)."""
    if isinstance(source, (str, Path)):
        raw = read_yaml(source)
    else:
        raw = source
    config = copy.deepcopy(raw)
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a mapping of keys (see config/README.md)")
    errors = _schema_errors(config)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    config.setdefault("analysis", {})
    config.setdefault("plan", {})
    config.setdefault("cost", {})
    config.setdefault("tasks", copy.deepcopy(_default_tasks()))
    unknown = [task for task in config["tasks"] if task not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"config key tasks.{unknown[0]}: not one of the seven benchmarks ({', '.join(BENCHMARKS)}, "
                          f"the keys of {DEFAULT_TASKS}); a benchmark's lm-eval task is set under its key")
    _fill_defaults(config)
    if not config.get("models") and not config["published"]:
        raise ConfigError("config key models: list at least one model (or set `published` to ingest published outputs)")
    config.setdefault("models", {})
    config.setdefault("cot_cue", DEFAULT_COT_CUE)
    config.setdefault("answer_cue", DEFAULT_ANSWER_CUE)
    config["strategies"] = _extend_strategies(config["strategies"])
    given = {name: set(strategy) for name, strategy in config["strategies"].items()}
    config["strategies"] = {
        name: {**fill_strategy(strategy, config["cot_cue"], config["answer_cue"]), "name": name}
        for name, strategy in config["strategies"].items()
    }
    config["models"] = _expand_models(config)
    _check_strategies(config, given)
    _check_references(config)
    return config


def resolve_path(path: str | Path) -> Path:
    """A config path: absolute, or relative to the working directory, else to the repository (bundled data)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path.resolve()
    return ROOT / path


def strategies_of(config: dict, model: str) -> list[str]:
    """The strategies that evaluate `model` (a strategy's `models:` list and the model's `strategies:` list
    restrict them), in config order."""
    entry = config["models"][model]
    return [name for name, strategy in config["strategies"].items()
            if (not strategy.get("models") or model in strategy["models"] or entry["name"] in strategy["models"])
            and (not entry.get("strategies") or name in entry["strategies"])]


def suites(config: dict) -> list[tuple[str, tuple[str, ...]]]:
    """Every evaluation job as (model, strategies): the model is loaded once per job and evaluates every task of
    those strategies. `suite: strategy` (default) gives one job per model × strategy, `suite: model` one per model."""
    jobs = []
    for model in config["models"]:
        ingested = config.get("lm_eval_outputs", {}).get(model, {})
        names = [name for name in strategies_of(config, model) if name not in ingested]
        if not names:
            continue
        if config["suite"] == "model":
            jobs.append((model, tuple(names)))
        else:
            jobs.extend((model, (name,)) for name in names)
    return jobs


def evaluation_jobs(config: dict) -> list[tuple[str, str, str]]:
    """Every (model, strategy, task) the config asks for."""
    return [(model, strategy, task) for model, names in suites(config) for strategy in names
            for task in config["tasks"]]


# What an evaluation's outputs depend on (and so what reruns it when edited): its results.json records it as
# `cotscale.spec`, Snakemake compares it as the job's params, aggregation refuses a results.json whose spec differs.
_SPEC_SETTINGS = ("limit", "seed", "batch_size", "device", "task_data", "shared_prefix")


def job_spec(config: dict, model: str, strategy: str, task: str) -> dict:
    """The full definition of one task's evaluation: model entry, strategy, task variant and run settings."""
    return {
        # architecture facts price requests (cotscale.cost), they do not change what an evaluation computes
        "model": {k: v for k, v in config["models"][model].items() if k not in ("strategies", "architecture")},
        "strategy": {k: v for k, v in config["strategies"][strategy].items() if k != "models"},
        "task": {"benchmark": task, **task_variant(config, strategy, task)},
        **{key: config[key] for key in _SPEC_SETTINGS},
    }


def canonical(obj) -> str:
    """A deterministic JSON text of `obj` (sorted keys), for Snakemake params and spec comparisons."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def suite_spec(config: dict, model: str, strategies) -> str:
    """The params of one suite job: the spec of every task it evaluates, as canonical JSON."""
    return canonical({s: {t: job_spec(config, model, s, t) for t in config["tasks"]} for s in strategies})


def task_variant(config: dict, strategy: str, task: str) -> dict:
    """{task, metric, filter}: the lm-eval task that `strategy` runs for benchmark `task`, and its overall metric."""
    return config["tasks"][task][config["strategies"][strategy]["variant"]]


def lm_eval_task(config: dict, strategy: str, task: str) -> str:
    return task_variant(config, strategy, task)["task"]


def named_strategies() -> dict[str, dict]:
    """The strategies of the paper configuration (config/config.yaml), filled with its cues: what the pipeline runs
    under each name."""
    raw = read_yaml(PAPER_CONFIG)
    cot_cue, answer_cue = raw.get("cot_cue", DEFAULT_COT_CUE), raw.get("answer_cue", DEFAULT_ANSWER_CUE)
    return {name: fill_strategy(spec, cot_cue, answer_cue) for name, spec in raw["strategies"].items()}


def resolve_strategy(strategy: dict | str | None = None, **overrides) -> dict:
    """:func:`cotscale.strategy.resolve_strategy`, where ``strategy`` may also be the name of a strategy of
    config/config.yaml (so a CLI run means what the pipeline runs under that name)."""
    if isinstance(strategy, str) and not strategy.strip().startswith("{"):
        named = named_strategies()
        if strategy.strip() not in named:
            raise StrategyError("strategy", f"not a JSON object nor a strategy of {PAPER_CONFIG} ({', '.join(named)})",
                                strategy)
        strategy = named[strategy.strip()]
    return _strategy.resolve_strategy(strategy, **overrides)

"""Load, validate and expand a cotscale configuration.

The JSON schema (workflow/schemas/config.schema.yaml) checks shapes; this module adds the checks a schema cannot
express (cross references, duplicate keys after checkpoint expansion) and expands compact checkpoint declarations
into one model entry per revision, so the rest of the pipeline sees a flat `models` mapping.
"""

from __future__ import annotations

import copy
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT_TASKS = ROOT / "config" / "tasks" / "benchmarks.yaml"
BENCHMARKS = ("arc_challenge", "gsm8k", "hellaswag", "mmlu", "winogrande", "xwinograd", "truthfulqa_mc1")
DEMO_MODELS_DIR = "results/demo_models"
STRATEGY_DEFAULTS = {
    "num_beams": 1,
    "samples": 1,
    "temperature": 0.0,
    "max_gen_toks": 256,
    "until": [],
}


class ConfigError(ValueError):
    """A configuration problem, worded for the person who edits the YAML."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _schema_errors(config: dict) -> list[str]:
    schema = yaml.safe_load(SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path))):
        leaf = jsonschema.exceptions.best_match([error])
        if leaf.validator == "additionalProperties" or leaf.validator == "propertyNames":
            messages.append(f"config key {_key_path(leaf)}: {leaf.message}")
        else:
            messages.append(f"config key {_key_path(leaf)}: {leaf.message} (value {leaf.instance!r}){_hint(leaf.instance)}")
    return messages


def _hint(value) -> str:
    """PyYAML reads `1e9` (no sign, no dot) as text: say how to write it."""
    if isinstance(value, str):
        try:
            return f"; YAML reads {value} as text, write it as {float(value):.4e}".replace("e+0", "e+")
        except ValueError:
            pass
    return ""


def _fill_defaults(config: dict) -> None:
    schema = yaml.safe_load(SCHEMA.read_text())
    for key, prop in schema["properties"].items():
        if "default" in prop:
            config.setdefault(key, copy.deepcopy(prop["default"]))
    for key, prop in schema["properties"]["analysis"]["properties"].items():
        if "default" in prop:
            config["analysis"].setdefault(key, prop["default"])


def _expand_models(config: dict) -> dict:
    """One entry per evaluated model *and revision*; compact `checkpoints:` become `name@revision` keys."""
    models = {}
    for name, entry in config["models"].items():
        if "hf_id" not in entry and "demo" not in entry:
            raise ConfigError(f"config key models.{name}: needs hf_id (a Hugging Face id or path) or demo (a tiny local model)")
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
            pretrained = f"{DEMO_MODELS_DIR}/{name}/{revision}" if demo is not None else entry["hf_id"]
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
                "demo": demo,
                "demo_steps": demo["steps"][revision] if demo and isinstance(demo["steps"], dict) else (demo or {}).get("steps"),
            }
    return models


def _check_references(config: dict) -> None:
    known = set(config["models"]) | {m["name"] for m in config["models"].values()}
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
    for role in ("baseline", "cot", "llh"):
        strategy = config["analysis"][role]
        if strategy not in config["strategies"]:
            raise ConfigError(
                f"config key analysis.{role}: unknown strategy {strategy!r}; known: {', '.join(sorted(config['strategies']))}"
            )


def load_config(source: dict | str | Path) -> dict:
    """Validated config with defaults filled and checkpoints expanded (raises ConfigError naming the bad key)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            raw = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the configuration ({exc})") from exc
    else:
        raw = source
    config = copy.deepcopy(raw)
    if not isinstance(config, dict):
        raise ConfigError("the configuration must be a mapping of keys (see config/README.md)")
    errors = _schema_errors(config)
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    config.setdefault("analysis", {})
    config.setdefault("tasks", yaml.safe_load(DEFAULT_TASKS.read_text()))
    _fill_defaults(config)
    if not config.get("models") and not config["published"]:
        raise ConfigError("config key models: list at least one model (or set `published` to ingest published outputs)")
    config.setdefault("models", {})
    for name, strategy in config["strategies"].items():
        for key, value in STRATEGY_DEFAULTS.items():
            strategy.setdefault(key, copy.deepcopy(value))
        strategy.setdefault("cot_cue", config["cot_cue"] if strategy["prompt"] == "cot" else "")
        strategy["answer_cue"] = config["answer_cue"]
        strategy["name"] = name
    config["models"] = _expand_models(config)
    _check_references(config)
    return config


def resolve_path(path: str | Path) -> Path:
    """A config path: absolute, or relative to the working directory, else to the repository (bundled data)."""
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path.resolve()
    return ROOT / path


def evaluation_jobs(config: dict) -> list[tuple[str, str, str]]:
    """Every (model, strategy, task) the config asks for, in config order."""
    jobs = []
    for strategy_name, strategy in config["strategies"].items():
        wanted = strategy.get("models")
        for model in config["models"]:
            if wanted and model not in wanted and config["models"][model]["name"] not in wanted:
                continue
            jobs.extend((model, strategy_name, task) for task in config["tasks"])
    return jobs


def task_variant(config: dict, strategy: str, task: str) -> dict:
    """{task, metric, filter}: the lm-eval task that `strategy` runs for benchmark `task`, and its overall metric."""
    return config["tasks"][task][config["strategies"][strategy]["variant"]]


def lm_eval_task(config: dict, strategy: str, task: str) -> str:
    return task_variant(config, strategy, task)["task"]

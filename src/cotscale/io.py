"""File helpers shared by every step: atomic writes and streaming JSON lines.

A crash must never leave a file that a later rule would read as complete, so every output is written to a
temporary sibling and renamed into place.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from cotscale.errors import ConfigError


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


SECRET_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_HUB_TOKEN", "HF_API_TOKEN")
REDACTED = "<redacted>"


def replace_in_strings(obj, replacements: dict[str, str]):
    """`obj` (nested dicts / lists of JSON values) with every occurrence of each key of `replacements` in its strings
    (keys included) replaced by the value."""
    if not replacements:
        return obj
    if isinstance(obj, str):
        for old, new in replacements.items():
            obj = obj.replace(old, new)
        return obj
    if isinstance(obj, dict):
        return {replace_in_strings(k, replacements): replace_in_strings(v, replacements) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_in_strings(v, replacements) for v in obj]
    if isinstance(obj, tuple):
        return tuple(replace_in_strings(v, replacements) for v in obj)
    return obj


def redact_secrets(obj, secrets: list[str] | None = None):
    """`obj` with every occurrence of a token (default: the values of SECRET_ENV_VARS) replaced by <redacted>.

    Nothing cotscale writes should contain one; this is the safety net for what libraries put into results (lm-eval's
    model arguments and environment report).
    """
    if secrets is None:
        secrets = [v for k in SECRET_ENV_VARS if len(v := os.environ.get(k, "").strip()) >= 8]
    return replace_in_strings(obj, dict.fromkeys(secrets, REDACTED))


def _jsonable(value):
    """JSON for lm-eval's outputs: numpy scalars, sets, NaN (as null) and anything else as its string."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    return str(value)


def dumps(obj) -> str:
    return json.dumps(obj, default=_jsonable, ensure_ascii=False, sort_keys=False)


def write_json(path: str | Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, default=_jsonable, ensure_ascii=False, indent=2) + "\n")


def read_json(path: str | Path):
    """Parse a JSON file; a truncated or invalid one raises ValueError naming the file."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(
            f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); the file is truncated or corrupt — "
            "delete it and rerun the step that writes it"
        ) from exc


def write_jsonl_gz(path: str | Path, records: Iterable[dict]) -> int:
    """Stream records to a gzip JSON-lines file (mtime 0 and no file name in the gzip header, so identical records
    give identical bytes)."""
    count = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as fh:
            for record in records:
                fh.write(dumps(record).encode() + b"\n")
                count += 1
    return count


def iter_jsonl_gz(path: str | Path) -> Iterator[dict]:
    """Yield one record at a time, so paper-scale sample files never sit in memory whole."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def write_csv(path: str | Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key given twice in one mapping is an error (PyYAML keeps the last, silently)."""


def _unique_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor` merges; keys given next to it win
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise ConfigError(
                f"{key_node.start_mark.name}, line {line}: key {key!r} appears twice in the same mapping (first on "
                f"line {seen[key]}); YAML would silently keep only the last one — remove or rename one of them"
            )
        seen[key] = line
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def read_yaml(path: str | Path):
    """A YAML (or JSON) file, rejecting duplicate keys with a ConfigError naming the file, line and key."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.load(fh, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except ConfigError as exc:
        raise ConfigError(str(exc)) from None  # the message says it all; the loader's stack would bury it
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the configuration ({exc})") from exc

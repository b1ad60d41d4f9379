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
    """Stream records to a gzip JSON-lines file (mtime 0, so identical records give identical bytes)."""
    count = 0
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as fh:
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

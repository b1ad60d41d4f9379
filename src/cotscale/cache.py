"""Resume a killed evaluation: a per-job store of the backend's answers, written while the job runs.

An evaluation job (one model × strategy × task) can run for hours; a preempted SLURM job, an OOM kill or a crashed
node must not cost all of it. ``cotscale.lm.CotscaleLM`` sends its requests to the backend in fixed chunks and, after
each chunk, appends the answers to this store. A rerun of the job (``snakemake`` again, or ``--rerun-incomplete``
after a crash) takes the answers it finds here and asks the backend only for the rest.

Where: ``results/cache/{model}/{strategy}/{task}/``, beside and not inside the job's declared outputs, so Snakemake
does not delete it when the job fails. The evaluation deletes it once its outputs are written (a forced rerun then
really re-evaluates and re-measures the wall time).

What is stored: one JSON line per chunk, ``{"entries": {key: value}}``, appended and fsynced. A kill mid-write leaves
at most one incomplete last line; it is dropped when the store is opened (its chunk is recomputed). Key = SHA-256 of
the request (type, arguments, generation kwargs, decoding); value = the backend's answer plus the request's usage
record, so ``usage.jsonl.gz`` stays complete when answers come from here.

Validity: everything else that decides an answer (model path and revision, weights' file sizes and mtimes, backend,
dtype, batch size, device, seed, parallelism, the strategy, the chunk size, package versions) goes into a
*fingerprint*; the file name carries its hash, and files of another fingerprint are deleted when the store opens.
Only deterministic requests are stored (log-likelihoods, greedy and beam generations); sampled generations are
always regenerated (their random state depends on everything sampled before them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

PREFIX = "requests-"


def digest(obj) -> str:
    """SHA-256 hex of the canonical JSON of `obj`."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def weights_signature(pretrained: str) -> list | str:
    """What identifies local weights without reading them: (file, size, mtime_ns) of a model directory; else the id."""
    path = Path(os.path.expanduser(str(pretrained)))
    if not path.is_dir():
        return str(pretrained)
    return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
            for p in sorted(path.rglob("*")) if p.is_file()]


class RequestCache:
    """Append-only store of backend answers for one evaluation job (see the module doc)."""

    def __init__(self, folder: str | Path, fingerprint: dict, rank: int = 0) -> None:
        self.folder = Path(folder)
        self.fingerprint = fingerprint
        self.tag = digest(fingerprint)[:16]
        self.path = self.folder / f"{PREFIX}{self.tag}.rank{rank}.jsonl"
        self.entries: dict[str, dict] = {}
        self.hits = self.misses = self.chunks_written = 0
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in sorted(self.folder.glob(f"{PREFIX}*.jsonl")):
            if not old.name.startswith(f"{PREFIX}{self.tag}."):
                log.info("request cache: %s was written for another setup (model, strategy, versions, ...); deleted",
                         old)
                old.unlink()
        for part in sorted(self.folder.glob(f"{PREFIX}{self.tag}.*.jsonl")):
            self._load(part, truncate=part == self.path)
        (self.folder / f"fingerprint-{self.tag}.json").write_text(json.dumps(fingerprint, indent=1, sort_keys=True,
                                                                            default=str))
        if self.entries:
            log.info("request cache: resuming with %d answers from %s", len(self.entries), self.folder)

    def _load(self, path: Path, truncate: bool) -> None:
        data = path.read_bytes()
        good = data.rfind(b"\n") + 1  # a kill mid-append leaves an incomplete last line: drop it
        if good < len(data):
            log.warning("request cache: dropping an incomplete last line of %s (the job was killed while writing)",
                        path)
            if truncate:
                with open(path, "r+b") as fh:
                    fh.truncate(good)
        for line_no, line in enumerate(data[:good].splitlines(), 1):
            try:
                self.entries.update(json.loads(line)["entries"])
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("request cache: %s line %d unreadable (%s); its requests are recomputed", path, line_no,
                            exc)

    @staticmethod
    def key(*parts) -> str:
        return digest(parts)

    def get(self, key: str) -> dict | None:
        value = self.entries.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put_many(self, entries: dict[str, dict]) -> None:
        """Append one chunk's answers as one line and fsync it: after a kill it is either all there or dropped."""
        if not entries:
            return
        self.entries.update(entries)
        line = json.dumps({"entries": entries}, ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        self.chunks_written += 1

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}

    def remove(self) -> None:
        """Delete the store (after the job's outputs are written) and the folders it leaves empty."""
        shutil.rmtree(self.folder, ignore_errors=True)
        parent = self.folder.parent
        for _ in range(3):  # the {strategy} and {model} folders and the cache root, when empty; never above
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

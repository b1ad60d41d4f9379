"""The bridge between Snakemake rules and cotscale: every rule's `script:` calls `run_rule(snakemake)`.

Rules only wire files; this module maps a rule name to the function that does the work, sends all output
(including lm-eval's and transformers') to the rule's log, and keeps config strings away from any shell.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
from pathlib import Path

from cotscale.config import CotscaleError, load_config, resolve_path

CACHE_DIR = Path("results/cache")  # request caches of running evaluations (cotscale.cache), beside their outputs
log = logging.getLogger("cotscale")


@contextlib.contextmanager
def _logging_to(log_path: str | None):
    """Send this process's stdout, stderr and logging to the rule's log file."""
    if not log_path:
        yield
        return
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "w") as fh:
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)


def _offline(config: dict) -> None:
    """Compute nodes without internet: the models and datasets must already be in the HF cache."""
    if config["hf_offline"]:
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            os.environ[var] = "1"


def build_demo_model(smk, config):
    from cotscale.demo_models import build_configured

    return build_configured(config, smk.wildcards.name, Path(smk.output[0]), Path(smk.input.corpus))


def evaluate(smk, config):
    from cotscale.evaluate import run_evaluation

    w = smk.wildcards
    return run_evaluation(config, w.model, w.strategy, w.task, Path(smk.output.results).parent,
                          cache_dir=CACHE_DIR / w.model / w.strategy / w.task)


def aggregate(smk, config):
    from cotscale.aggregate import write_tables

    results = [str(p) for item in smk.input.results for p in (sorted(Path(item).rglob("results.json")) if Path(item).is_dir() else [item])]
    return write_tables(config, results, Path(smk.output.scores).parent, list(smk.input.benchmarks) or None)


def _local_or_url(source: str | None) -> str | None:
    if source is None or "://" in source:
        return source
    return str(resolve_path(source))


def ingest_published(smk, config):
    from cotscale.published import ingest

    return ingest(_local_or_url(smk.params.source), Path(smk.output.models).parent)


def analysis(smk, config):
    from cotscale.fits import run_analysis

    a = config["analysis"]
    return run_analysis(Path(smk.input.benchmarks).parent, Path(smk.output.regression).parent, a["baseline"], a["cot"], a["llh"], ruan=_local_or_url(smk.params.ruan), seed=config["seed"])


def prefetch(smk, config):
    from cotscale.prefetch import prefetch as fetch

    return fetch(config, Path(smk.output[0]))


def figure(smk, config):
    from cotscale.figures import draw

    return draw(smk.rule, {k: Path(v) for k, v in smk.input.items()}, Path(smk.output.png), config)


RULES = {
    "build_demo_model": build_demo_model,
    "evaluate": evaluate,
    "aggregate": aggregate,
    "ingest_published": ingest_published,
    "analysis": analysis,
    "prefetch": prefetch,
}


def _handler(rule: str):
    """Figure and table rules are named after their function in cotscale.figures."""
    return RULES.get(rule, figure)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Failures the user fixes (config, inputs, environment): their message says how, so no traceback is needed."""
    from cotscale.prefetch import OfflineCacheMiss

    return CotscaleError, OfflineCacheMiss


def run_rule(smk) -> None:
    """Run the rule's handler with its output in the rule's log. A user error ends the job with its message as the
    log's last line and as one line on Snakemake's terminal (exit status 1); anything else raises as usual."""
    user_errors = _user_errors()
    try:
        config = load_config(smk.config)
        if smk.rule != "prefetch":  # the one rule that downloads, on a host with internet
            _offline(config)
        with _logging_to(smk.log[0] if smk.log else None):
            try:
                _handler(smk.rule)(smk, config)
            except user_errors as exc:
                log.info("details of the error below:", exc_info=True)
                log.error("%s", exc)
                raise
            except BaseException:
                log.exception("rule %s failed", smk.rule)  # the traceback belongs in the job's log too
                raise
    except user_errors as exc:
        print(f"cotscale error in rule {smk.rule}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    _exit_now()


def _exit_now() -> None:
    """End a finished job without Python's teardown of torch and transformers (1-1.5 s a job, every output is
    already written and renamed into place). Not while child processes (a vLLM engine) still need their atexit
    shutdown."""
    if multiprocessing.active_children():
        return
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

"""The bridge between Snakemake rules and cotscale: every rule's `script:` (workflow/scripts/cotscale_rule.py)
calls `run_rule(snakemake, entry_point(<the rule's name>))`.

Rules only wire files; the entry points read the job's inputs, outputs, wildcards and params and call the function
that does the work; run_rule sends all output (including lm-eval's and transformers') to the rule's log and keeps
config strings away from any shell.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import re
import resource
import sys
from pathlib import Path

from cotscale import contract
from cotscale.config import CotscaleError, load_config, resolve_path

EVALS_DIR = Path(contract.EVALS_ROOT)  # {model}/{strategy}/{task}/ under it: the evaluation contract
CACHE_DIR = Path(contract.CACHE_ROOT)  # request caches of running evaluations (cotscale.cache), beside their outputs
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


# cpu_isa -> (torch's ATEN_CPU_CAPABILITY, oneDNN's ONEDNN_MAX_CPU_ISA, MKL's MKL_CBWR)
_CPU_ISA = {"default": ("default", "SSE41", "COMPATIBLE"), "avx2": ("avx2", "AVX2", "AVX2"),
            "avx512": ("avx512", "AVX512_CORE", "AVX512")}


def pin_cpu_isa(config: dict) -> None:
    """Float results on CPU depend on the instruction set torch's kernels dispatch to: the same seeded build of a
    demo model gives other weights on an AVX-512 machine than on an AVX2 one, and so other tables. The config's
    `cpu_isa` pins it for this process (before torch is imported: the libraries read these variables once)."""
    isa = config.get("cpu_isa")
    if isa:
        for var, value in zip(("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"), _CPU_ISA[isa], strict=True):
            os.environ[var] = value


def build_demo_model(smk, config):
    import torch

    from cotscale.demo_models import build_configured

    log.info("torch CPU kernels: %s (config cpu_isa: %s)", torch.backends.cpu.get_cpu_capability(),
             config.get("cpu_isa"))

    return build_configured(config, smk.wildcards.name, Path(smk.output[0]), Path(smk.input.corpus))


def evaluate(smk, config):
    """One suite: the model of the job, every task of its strategies (params.strategies)."""
    from cotscale.evaluate import run_suite, suite_tasks
    from cotscale.preempt import exit_on_preemption

    model = smk.wildcards.model
    log.info("job resources: mem_mb %s, runtime %s min, %s thread(s)", smk.resources.get("mem_mb"),
             smk.resources.get("runtime"), smk.threads)
    if not str(config["device"]).startswith("cuda"):  # torch would start one thread per core in every job
        import torch

        torch.set_num_threads(smk.threads)
    with exit_on_preemption(CACHE_DIR / model):
        return run_suite(config, model, suite_tasks(config, model, list(smk.params.strategies), EVALS_DIR, CACHE_DIR))


def aggregate_strategy(smk, config):
    """The tables of one strategy, from its results.json files (or, published, from the ingested folder)."""
    from cotscale.aggregate import write_strategy_tables

    strategy = smk.wildcards.strategy
    results = [str(p) for item in smk.input.results
               for p in (sorted(Path(item).glob(f"*/{strategy}/*/results.json")) if Path(item).is_dir() else [item])]
    return write_strategy_tables(config, strategy, results, Path(smk.output.scores).parent,
                                 list(smk.input.benchmarks) or None)


def aggregate(smk, config):
    """The per-strategy tables, concatenated."""
    from cotscale.aggregate import combine_tables

    return combine_tables([Path(p).parent for p in smk.input.benchmarks], Path(smk.output.scores).parent,
                          config["analysis"]["empty_warning"])


def _local_or_url(source: str | None) -> str | None:
    if source is None or "://" in source:
        return source
    return str(resolve_path(source))


def ingest_published(smk, config):
    from cotscale.published import ingest

    return ingest(_local_or_url(smk.params.source), Path(smk.output.models).parent)


def ingest_lm_eval(smk, config):
    """One model x strategy of config key lm_eval_outputs: its lm-eval output folder into the evaluation contract."""
    from cotscale.ingest import ingest_folder

    return ingest_folder(config, smk.wildcards.model, smk.wildcards.strategy, smk.params.folder, EVALS_DIR)


def analysis(smk, config):
    """Experiment 2's fits of the baseline / CoT pair: regression, train-equivalent FLOPs, IsoFLOP, crossover,
    Table I."""
    import pandas as pd

    from cotscale import cost, outcomes
    from cotscale.fits import run_pair_analysis
    from cotscale.uncertainty import settings

    # the pair's own cost per request under every cost model (as costs.csv prices it, from these strategies'
    # tables and usage only, so that the fits need no other strategy's evaluations)
    tokens = pd.concat([pd.read_csv(p) for p in smk.input.tokens], ignore_index=True)
    hardware = cost.load_hardware(config["cost"])
    costs = cost.cost_table(tokens, cost.architectures(config, tokens["model"].unique()),
                            config["analysis"]["cost_models"], hardware, config["cost"]["batch_size"],
                            usage_paths=list(smk.input.usage)) if not tokens.empty else None
    table = outcomes.finish([outcomes.read(p) for p in smk.input.outcomes]) if smk.input.outcomes else None
    return run_pair_analysis([Path(p) for p in smk.input.benchmarks], [Path(p) for p in smk.input.tokens],
                             Path(smk.output.regression).parent, smk.params.baseline, smk.params.cot,
                             seed=smk.params.seed, outcome_table=table, boot=settings(config),
                             empty_warning=smk.params.empty_warning, costs=costs, hardware=hardware)


def cot_gain(smk, config):
    """cot_gain.csv: the gain of each analysis pair per model and benchmark, its interval and test."""
    import pandas as pd

    from cotscale import outcomes, uncertainty

    bench = pd.concat([pd.read_csv(p) for p in smk.input.benchmarks], ignore_index=True)
    table = outcomes.finish([outcomes.read(p) for p in smk.input.outcomes]) if smk.input.outcomes else None
    return uncertainty.write_gains(Path(smk.output.table), [tuple(p) for p in smk.params.pairs], bench, table,
                                   uncertainty.settings(config))


def costs(smk, config):
    """models.csv (architecture facts per model revision) and costs.csv (cost per request under every configured
    cost model, cotscale.cost) from tokens.csv."""
    import pandas as pd

    from cotscale import architecture, cost
    from cotscale.io import write_csv

    tokens = pd.read_csv(smk.input.tokens)
    models = tokens.drop_duplicates("model")[["model", "revision", "family", "N", "D"]]
    archs = cost.architectures(config, models["model"])
    write_csv(smk.output.models, architecture.models_table(models, archs))
    hardware = cost.load_hardware(config["cost"])
    table = cost.cost_table(tokens, archs, config["analysis"]["cost_models"], hardware, config["cost"]["batch_size"],
                            usage_paths=list(smk.input.usage), sweep=pd.read_csv(smk.input.inference_scaling),
                            compute=pd.read_csv(smk.input.compute))
    write_csv(smk.output.costs, table)


def pca(smk, config):
    """Our observational-scaling PCA, on the log-likelihood strategy's scores."""
    from cotscale.fits import run_pca

    return run_pca(Path(smk.input.benchmarks[0]), Path(smk.output.pca_loadings_ours).parent)


def pca_ruan(smk, config):
    """Ruan et al.'s PCA (their 148-model table), with and without HumanEval."""
    from cotscale.fits import run_pca_ruan

    return run_pca_ruan(_local_or_url(smk.params.ruan), Path(smk.output.pca_loadings_ruan).parent)


def plan(smk, config):
    """plan.csv: the planner (cotscale.plan) over the grid of lifetime requests × target scores (params.grid)."""
    import json

    from cotscale import plan as planner

    from cotscale.contract import DEFAULT_COST_MODEL
    from cotscale.cost import load_hardware
    from cotscale.uncertainty import settings

    grid = json.loads(smk.params.grid)
    tables = planner.read_tables(**{name: Path(path) for name, path in smk.input.items()})
    names = dict.fromkeys([DEFAULT_COST_MODEL, config["analysis"]["realistic_cost_model"]])
    return planner.write_plan(Path(smk.output.plan), tables, grid["requests"], grid["targets"], grid["cost"],
                              settings(config), list(names), load_hardware(config["cost"]), config["cost"]["batch_size"])


def inference_scaling(smk, config):
    """inference_scaling.csv: the operating points of every budget sweep (cotscale.scaling), header only when no
    strategy sweeps."""
    import json

    from cotscale import scaling

    sweeps = {name: (kind, budgets) for name, (kind, budgets) in json.loads(smk.params.sweeps).items()}
    from cotscale.uncertainty import settings

    from cotscale import cost, sweep_cost

    runs = list(zip(smk.input.results, smk.input.samples, smk.params.runs, strict=True))
    rows = scaling.sweep_rows(runs, sweeps, smk.params.seed)
    models = sorted({m for r in rows for m in r["model"].unique()})

    def price(table, frame):  # every configured cost model on each document's own request
        return sweep_cost.with_costs(table, frame, sweep_cost.document_prompts(smk.input.usage),
                                     cost.architectures(config, models), config["analysis"]["cost_models"],
                                     cost.load_hardware(config["cost"]), config["cost"]["batch_size"])

    return scaling.write_inference_scaling(Path(smk.output.inference_scaling), rows, boot=settings(config),
                                           outcomes_out=Path(smk.output.outcomes), price=price)


def outcomes(smk, config):
    """outcomes.parquet: every strategy's per-document outcomes and the budget sweeps', as one table."""
    from cotscale.outcomes import combine

    return combine([*smk.input.strategies, smk.input.sweeps], Path(smk.output.outcomes))


def prefetch(smk, config):
    from cotscale.prefetch import prefetch as fetch

    return fetch(config, Path(smk.output[0]))


def figure(smk, config):
    """A figure of the registry (cotscale.registry), drawn by its function in cotscale.figures."""
    from cotscale.figures import draw

    inputs = {key: [Path(p) for p in value] if isinstance(value, list) else Path(value)
              for key, value in smk.input.items()}
    return draw(smk.params.figure, inputs, Path(smk.output.png), config)


#: rule families whose entry point is the function of the same name (figures: `figure`)
ENTRY_POINTS = ("build_demo_model", "evaluate", "aggregate_strategy", "aggregate", "outcomes", "ingest_published",
                "ingest_lm_eval", "analysis", "cot_gain", "costs", "pca", "pca_ruan", "plan", "inference_scaling",
                "prefetch")


def _user_errors() -> tuple[type[BaseException], ...]:
    """Failures the user fixes (config, inputs, environment): their message says how, so no traceback is needed."""
    from cotscale.prefetch import OfflineCacheMiss

    return CotscaleError, OfflineCacheMiss


def entry_point(rule: str):
    """The entry point of a rule, by its name: a figure of the registry draws, `evaluate` and `evaluate_model_<i>`
    evaluate, any other rule has the function of its name here. A rule imported as a module with a prefix
    (`use rule * from cotscale as cotscale_*`) keeps its name as the suffix, so the longest matching suffix wins."""
    from cotscale.registry import FIGURE_NAMES

    families = {**{name: figure for name in FIGURE_NAMES}, **{name: globals()[name] for name in ENTRY_POINTS}}
    base = re.sub(r"_model_\d+$", "", rule)
    matches = [name for name in families if base == name or base.endswith("_" + name)]
    if not matches:
        raise CotscaleError(f"rule {rule!r} has no entry point in cotscale.workflow (known: {sorted(families)})")
    return families[max(matches, key=len)]


def run_rule(smk, entry) -> None:
    """Run the rule family's entry point with its output in the rule's log. A user error ends the job with its
    message as the log's last line and as one line on Snakemake's terminal (exit status 1); anything else raises."""
    user_errors = _user_errors()
    try:
        config = load_config(smk.config)
        if entry is not prefetch:  # the one rule that downloads, on a host with internet
            _offline(config)
        pin_cpu_isa(config)
        with _logging_to(smk.log[0] if smk.log else None):
            try:
                entry(smk, config)
                _log_cpu_time(smk.rule)
            except user_errors as exc:
                log.info("details of the error below:", exc_info=True)
                log.error("%s", exc)
                raise
            except SystemExit:  # a deliberate exit (preemption: cotscale.preempt) has said why already
                raise
            except BaseException:
                log.exception("rule %s failed", smk.rule)  # the traceback belongs in the job's log too
                raise
    except user_errors as exc:
        print(f"cotscale error in rule {smk.rule}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    _exit_now()


def _log_cpu_time(rule: str) -> None:
    """The job's CPU-seconds (imports included, child processes too) as its log's last line: what a job costs on a
    shared machine, where its wall time depends on what runs beside it."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    log.info("rule %s done: %.1f CPU-s, peak memory %.0f MB", rule, cpu, max(own.ru_maxrss, children.ru_maxrss) / 1024)


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

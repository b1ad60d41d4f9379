# Helpers, wildcard constraints, input/params functions and target lists shared by every rule file.
import re

from snakemake.exceptions import WorkflowError

from cotscale import contract
from cotscale.config import (
    DEMO_MODELS_DIR,
    canonical,
    evaluation_jobs,
    load_workflow_config,
    suite_spec,
    suites,
    task_variant,
)
from cotscale.contract import OUTCOMES_TABLE, STRATEGY_OUTCOMES, SWEEP_OUTCOMES
from cotscale.flops import train_flops
from cotscale.ingest import input_files as ingest_input_files
from cotscale.uncertainty import settings as bootstrap_settings
from cotscale.gpus import (
    eval_threads,
    memory_mb,
    requested_gpus,
    runtime_minutes,
    suite_work,
)
from cotscale.preempt import SLURM_SIGNAL
from cotscale.strategy import budget_sweep
from cotscale.registry import (
    FIGURES,
    COST_TABLES,
    PAIR_TABLES,
    PCA_OURS_TABLES,
    PCA_RUAN_TABLES,
    PCA_TABLES,
    PLAN_TABLES,
    SCALING_TABLES,
    GAIN_TABLES,
    STRATEGY_TABLES,
    figure_strategies,
    strategy_of,
)

# Validated and expanded; also rejects duplicate keys in the config files (Snakemake's YAML loader keeps the last).
CFG = load_workflow_config(
    config,
    workflow.configfiles,
    workflow.config_settings.config,
    workflow.basedir,
)
# every rule's script: its entry point in cotscale.workflow, by the rule's name
SCRIPT = "../scripts/cotscale_rule.py"
ANALYSIS_ENV = "../../envs/analysis.yaml"
TASKS = list(CFG["tasks"])
# analysis.bootstrap: part of the params of every rule whose intervals it defines
BOOTSTRAP = canonical(bootstrap_settings(CFG))
# Evaluation jobs: (model, strategies) suites, each one model load (cotscale.config.suites).
SUITES = suites(CFG)
SUITE_STRATEGIES = dict(SUITES) if CFG["suite"] == "model" else {}


# a model key, or key@revision; each `/`-separated part of a revision starts with a letter or digit (no `..`)
MODEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*)?"


wildcard_constraints:
    model=MODEL_PATTERN,
    strategy=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    name=r"[A-Za-z0-9][A-Za-z0-9._-]*",


# paths of the data contract (cotscale.contract)
EVAL_DIR = contract.EVAL_DIR
STRATEGY_DIR = contract.STRATEGY_DIR
PUBLISHED_DIR = contract.PUBLISHED_DIR
TABLES_DIR = contract.TABLES_DIR
EVAL_BENCHMARK = contract.EVAL_BENCHMARK[CFG["suite"]]
# lm-eval output folders ingested instead of evaluated: {model: {strategy: folder}} (cotscale.ingest)
INGESTED = CFG.get("lm_eval_outputs", {})
# What each strategy's tables are built from: ingested published outputs, or the evaluations of its models.
STRATEGY_MODELS = {
    s: [m for m, names in SUITES if s in names] for s in CFG["strategies"]
}
TABLES = expand(
    f"{TABLES_DIR}/{{table}}.csv",
    table=[
        *STRATEGY_TABLES,
        *PAIR_TABLES,
        *PCA_TABLES,
        *SCALING_TABLES,
        *PLAN_TABLES,
        *GAIN_TABLES,
        *COST_TABLES,
    ],
)
# What the cost tables depend on: architectures (entries and `architectures:`), cost models, hardware settings.
COST_SPEC = {
    "architectures": {
        **CFG["architectures"],
        **{k: m.get("architecture", {}) for k, m in CFG["models"].items()},
    },
    "cost_models": CFG["analysis"]["cost_models"],
    "cost": CFG["cost"],
}
OUTCOME_FILES = [] if CFG["published"] else [OUTCOMES_TABLE]
FIGURE_FILES = expand(
    f"{contract.FIGURES_DIR}/{{figure}}.{{ext}}",
    figure=[f.name for f in FIGURES],
    ext=["png", "pdf"],
)


def rule_benchmark(job):
    """The `benchmark:` file (wall seconds, max RSS) of a rule's job: `job` is the rule name, with its wildcard as a
    subfolder where it has one (cotscale.contract.RULE_BENCHMARK)."""
    return contract.RULE_BENCHMARK.format(rule=job)


def table_path(table, ext="csv"):
    """An analysis table (cotscale.contract.TABLES_DIR)."""
    return f"{TABLES_DIR}/{table}.{ext}"


def report_table(table):
    """An analysis table in the report, with its caption workflow/report/<table>.rst."""
    return report(
        table_path(table), caption=f"../report/{table}.rst", category="Tables"
    )


def get_suite_strategies(wildcards):
    """The strategies of one evaluation job: its {strategy}, or with `suite: model` all the model's."""
    return list(SUITE_STRATEGIES.get(wildcards.model, [])) or [wildcards.strategy]


def get_suite_params(wildcards):
    """Everything that defines the job's outputs, as canonical JSON: an edit reruns exactly the suites it changes."""
    return suite_spec(CFG, wildcards.model, get_suite_strategies(wildcards))


def get_ingest_folder(wildcards):
    """The lm-eval output folder ingested as (model, strategy) (config key lm_eval_outputs)."""
    return INGESTED[wildcards.model][wildcards.strategy]


def get_ingest_files(wildcards):
    """The lm-eval output files the ingest reads (cotscale.ingest.input_files): a file added, replaced or touched in
    the folder re-ingests it."""
    return ingest_input_files(
        get_ingest_folder(wildcards), CFG["models"][wildcards.model]["pretrained"]
    )


def get_ingest_spec(wildcards):
    """What an ingested evaluation stands for, as an evaluated one would record it: a config edit re-ingests it."""
    return suite_spec(CFG, wildcards.model, [wildcards.strategy])


def get_suite_outputs(strategies, name):
    """One output file `name` per task of the suite's strategies ({model} stays a wildcard)."""
    return expand(
        f"{EVAL_DIR}/{name}", strategy=strategies, task=TASKS, allow_missing=True
    )


def get_evaluation_env(wildcards):
    """The conda environment of an evaluation job follows its model's backend."""
    return f"../../envs/evaluate-{CFG['models'][wildcards.model]['backend']}.yaml"


def get_demo_model_dir(wildcards):
    """An evaluation of a locally built demo model waits for that model's build."""
    model = CFG["models"][wildcards.model]
    return [f"{DEMO_MODELS_DIR}/{model['name']}"] if model["demo"] else []


def get_build_priority(wildcards):
    """Longest training first (train FLOPs of the run's last checkpoint): the biggest demo model's build and then its
    evaluations are the demo's critical path. Any build outranks every evaluation, since it unlocks some.
    """
    return max(
        train_flops(m["N"], m["D"])
        for m in CFG["models"].values()
        if m["name"] == wildcards.name
    )


def get_eval_priority(wildcards):
    """Longest suite first (cotscale.gpus.suite_work), so the shortest ones fill the cores at the end."""
    return suite_work(CFG, wildcards.model, get_suite_strategies(wildcards))


def get_demo_model_params(wildcards):
    """The build spec of every checkpoint of one demo model: an edit retrains it (and reruns its evaluations); its
    `strategies:` list is no part of the build."""
    return canonical(
        [
            {k: v for k, v in m.items() if k not in ("strategies", "architecture")}
            for m in CFG["models"].values()
            if m["name"] == wildcards.name
        ]
    )


# Scheduler requests of an evaluation job (SLURM: --gpus, --mem, -t; a workstation: --resources gpu=N).
def get_eval_gpus(wildcards):
    """GPUs = tensor_parallel × data_parallel of the model (none on device: cpu unless the model sets them)."""
    return requested_gpus(CFG, wildcards.model, config)


def get_eval_threads(wildcards):
    """CPU threads of the job (cotscale.gpus.eval_threads): config `threads:`, else the --cores given shared among the
    evaluation suites; on GPUs one per process."""
    try:
        cores = workflow.cores
    except WorkflowError:  # no --cores (a dry run): what is shared is unknown
        cores = None
    return eval_threads(CFG, wildcards.model, cores)


def get_eval_mem_mb(wildcards, attempt):
    """Host memory in MB, from the model size; doubled when a failed job is retried (`--retries`)."""
    return memory_mb(CFG, wildcards.model, attempt)


def get_eval_runtime(wildcards, attempt):
    """Wall-time limit in minutes: the summed estimates of the suite's tasks; doubled on retry."""
    return runtime_minutes(
        CFG, wildcards.model, get_suite_strategies(wildcards), attempt
    )


# Tables: per strategy (so a figure pulls only the evaluations it reads), then all strategies together.
def get_strategy_results(wildcards):
    """results.json of every evaluation of the strategy (published: the ingested folder)."""
    if CFG["published"]:
        return [f"{PUBLISHED_DIR}/evals"]
    ingested = [m for m in INGESTED if wildcards.strategy in INGESTED[m]]
    models = STRATEGY_MODELS[wildcards.strategy] + ingested
    return expand(
        f"{EVAL_DIR}/results.json",
        model=models,
        strategy=wildcards.strategy,
        task=TASKS,
    )


def get_strategy_samples(wildcards):
    """samples.jsonl.gz of every evaluation of the strategy: its per-document outcomes (none when published)."""
    if CFG["published"]:
        return []
    return [
        p.replace("results.json", "samples.jsonl.gz")
        for p in get_strategy_results(wildcards)
    ]


def get_strategy_benchmarks(wildcards):
    """Snakemake's benchmark files (max RSS) of the suites that evaluated the strategy."""
    if CFG["published"]:
        return []
    return expand(
        EVAL_BENCHMARK,
        model=STRATEGY_MODELS[wildcards.strategy],
        strategy=wildcards.strategy,
    )


def get_strategy_table_params(wildcards):
    """What a strategy's tables depend on beyond its results: the benchmarks' variants and metrics."""
    return canonical({t: task_variant(CFG, wildcards.strategy, t) for t in TASKS})


def get_strategy_tables(strategies, table="benchmarks"):
    return expand(f"{STRATEGY_DIR}/{table}.csv", strategy=strategies)


def get_role_strategies(*roles):
    """The configured strategies the analysis roles name (llh, baseline, cot)."""
    names = dict.fromkeys(strategy_of(CFG, role) for role in roles)
    return [name for name in names if name in CFG["strategies"]]


def get_role_outcomes(*roles):
    """The per-document outcomes of the strategies the roles name (none for published data)."""
    if CFG["published"]:
        return []
    return expand(STRATEGY_OUTCOMES, strategy=get_role_strategies(*roles))


def get_gain_pairs():
    """cot_gain.csv's pairs (name, baseline, treatment): CoT vs baseline, the baseline's format vs log-likelihood."""
    roles = CFG["analysis"]
    pairs = [
        ("cot_vs_baseline", roles["baseline"], roles["cot"]),
        ("baseline_vs_llh", roles["llh"], roles["baseline"]),
    ]
    return [p for p in pairs if p[1] in CFG["strategies"] and p[2] in CFG["strategies"]]


def get_usage_files(strategies=None):
    """usage.jsonl.gz of every evaluation (of ``strategies`` only, when given); none for published outputs."""
    return [
        f"{EVAL_DIR}/usage.jsonl.gz".format(model=m, strategy=s, task=t)
        for m, s, t in ([] if CFG["published"] else evaluation_jobs(CFG))
        if strategies is None or s in strategies
    ]


def get_figure_inputs(figure):
    """The per-strategy benchmarks of the strategies the figure reads and the analysis tables it names."""
    inputs = {t: table_path(t) for t in figure.tables}
    if figure.strategies:
        inputs["benchmarks"] = get_strategy_tables(figure_strategies(CFG, figure))
    return inputs


def get_figure_params(figure):
    """What a figure draws beyond its inputs: the strategies its roles name and the configured models."""
    return canonical(
        {
            "figure": figure.name,
            "strategies": figure_strategies(CFG, figure),
            "analysis": CFG["analysis"],
            "models": sorted(CFG["models"]),
        }
    )

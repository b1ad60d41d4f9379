# Helpers, wildcard constraints and target lists shared by every rule file.
from cotscale.config import evaluation_jobs, load_workflow_config, DEMO_MODELS_DIR

# Validated and expanded; also rejects duplicate keys in the config files (Snakemake's YAML loader keeps the last).
CFG = load_workflow_config(
    config,
    workflow.configfiles,
    workflow.config_settings.config,
    workflow.basedir,
)
JOBS = evaluation_jobs(CFG)
RULE_SCRIPT = "../scripts/cotscale_rule.py"
ANALYSIS_ENV = "../../envs/analysis.yaml"


wildcard_constraints:
    # a model key, or key@revision; each `/`-separated part of a revision starts with a letter or digit (no `..`)
    model=r"[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*)?",
    strategy=r"[A-Za-z0-9][A-Za-z0-9._-]*",
    task=r"[A-Za-z0-9_]+",
    name=r"[A-Za-z0-9][A-Za-z0-9._-]*",


EVAL_DIR = "results/evals/{model}/{strategy}/{task}"
PUBLISHED_DIR = "results/published"
if CFG["published"]:
    # Ingest instead of evaluate: the aggregation reads every results.json the ingest wrote.
    RESULTS = [f"{PUBLISHED_DIR}/evals"]
    BENCHMARKS = []
else:
    RESULTS = [f"results/evals/{m}/{s}/{t}/results.json" for m, s, t in JOBS]
    BENCHMARKS = [f"logs/benchmarks/evaluate/{m}/{s}/{t}.tsv" for m, s, t in JOBS]
ANALYSIS_TABLES = [
    "regression",
    "train_equivalent",
    "isoflop_fit",
    "crossover",
    "table1_tokens",
    "pca_loadings_ours",
    "pca_loadings_ruan",
    "pca_loadings_ruan_no_humaneval",
]
TABLES = expand(
    "results/tables/{table}.csv",
    table=["scores", "benchmarks", "tokens", "compute"] + ANALYSIS_TABLES,
)
# One rule each in figures.smk, named after its function in cotscale.figures (importing that module here would
# load matplotlib and seaborn into every DAG build).
FIGURE_NAMES = [
    "fig1_overall_vs_train_flops",
    "fig2_loglikelihood_vs_hybrid",
    "fig3_cot_vs_no_cot",
    "fig4_cot_gain_vs_train_flops",
    "table1_tokens",
    "fig5_pca_loadings_ours",
    "fig6_pca_loadings_ruan",
    "fig7_isoflop",
    "fig8_tef_ratio_vs_token_ratio",
    "fig9_lifetime_cost",
    "fig10_free_form_cot",
]
FIGURES = expand("figures/{figure}.{ext}", figure=FIGURE_NAMES, ext=["png", "pdf"])


def evaluation_env(wildcards):
    """The conda environment of an evaluation job follows its model's backend."""
    return f"../../envs/evaluate-{CFG['models'][wildcards.model]['backend']}.yaml"


def demo_model_dir(wildcards):
    """An evaluation of a locally built demo model waits for that model's build."""
    model = CFG["models"][wildcards.model]
    return [f"{DEMO_MODELS_DIR}/{model['name']}"] if model["demo"] else []


# Scheduler requests of an evaluation job (SLURM: --gpus, --mem, -t; a workstation: --resources gpu=N).
from cotscale.gpus import job_processes, memory_mb, requested_gpus, runtime_minutes


def eval_gpus(wildcards):
    """GPUs = tensor_parallel × data_parallel of the model (none on device: cpu unless the model sets them)."""
    return requested_gpus(CFG, wildcards.model, config)


def eval_threads(wildcards):
    """One core per process of the job: data_parallel accelerate ranks on the hf backend, else one."""
    return job_processes(CFG, wildcards.model)


def eval_mem_mb(wildcards, attempt):
    """Host memory in MB, from the model size; doubled when a failed job is retried (`--retries`)."""
    return memory_mb(CFG, wildcards.model, attempt)


def eval_runtime(wildcards, attempt):
    """Wall-time limit in minutes, from the model size, the strategy's decoding and the GPU count; doubled on retry."""
    return runtime_minutes(CFG, wildcards.model, wildcards.strategy, attempt)

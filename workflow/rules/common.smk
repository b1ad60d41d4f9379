# Helpers, wildcard constraints and target lists shared by every rule file.
from cotscale.config import evaluation_jobs, load_config, DEMO_MODELS_DIR
from cotscale.figures import FIGURES as FIGURE_FUNCTIONS

CFG = load_config(config)
JOBS = evaluation_jobs(CFG)
RULE_SCRIPT = "../scripts/cotscale_rule.py"
ANALYSIS_ENV = "../../envs/analysis.yaml"


wildcard_constraints:
    model=r"[A-Za-z0-9][A-Za-z0-9._-]*(@[A-Za-z0-9][A-Za-z0-9._/-]*)?",
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
FIGURE_NAMES = list(FIGURE_FUNCTIONS)
FIGURES = expand("figures/{figure}.{ext}", figure=FIGURE_NAMES, ext=["png", "pdf"])


def evaluation_env(wildcards):
    """The conda environment of an evaluation job follows its model's backend."""
    return f"../../envs/evaluate-{CFG['models'][wildcards.model]['backend']}.yaml"


def demo_model_dir(wildcards):
    """An evaluation of a locally built demo model waits for that model's build."""
    model = CFG["models"][wildcards.model]
    return [f"{DEMO_MODELS_DIR}/{model['name']}"] if model["demo"] else []

"""The one list of figures: name, what it reads, its caption. workflow/rules/figures.smk generates one rule per entry.

Kept free of matplotlib (the DAG build imports it). A figure reads the per-strategy tables of the strategies it
names — by their role in the config's `analysis` block (``llh``, ``baseline``, ``cot``) or ``free_form_cot`` — and
the analysis tables it names, so `snakemake <figure>` runs only the evaluations of those strategies.
"""

from __future__ import annotations

from dataclasses import dataclass

#: free-form CoT generation (Experiment 1's CoT arm); see free_form_cot()
FREE_FORM_COT = "cot_generate"

#: analysis tables of the baseline / CoT pair (rule analysis) and of the PCA (rule pca)
PAIR_TABLES = ("regression", "train_equivalent", "isoflop_fit", "crossover", "table1_tokens")
PCA_OURS_TABLES = ("pca_loadings_ours",)  # rule pca: our models' log-likelihood scores
PCA_RUAN_TABLES = ("pca_loadings_ruan", "pca_loadings_ruan_no_humaneval")  # rule pca_ruan: their table
PCA_TABLES = PCA_OURS_TABLES + PCA_RUAN_TABLES
#: the tables every evaluated strategy gets (rule aggregate_strategy), and their concatenation (rule aggregate)
STRATEGY_TABLES = ("scores", "benchmarks", "tokens", "compute")
#: the planner's grid of cheapest operating points (rule plan)
PLAN_TABLES = ("plan",)
#: CoT gains with paired intervals and tests (rule cot_gain)
GAIN_TABLES = ("cot_gain",)
#: architecture facts per model revision and cost per request per cost model (rule costs, cotscale.cost)
COST_TABLES = ("models", "costs")
#: operating points of the budget sweeps, estimated from one run each (rule inference_scaling)
SCALING_TABLES = ("inference_scaling",)


@dataclass(frozen=True)
class Figure:
    name: str  # rule name, target and file stem; its drawing function in cotscale.figures has the same name
    label: str  # "Fig. 1" in the report
    shows: str  # one line for the report's table of figures
    caption: str  # workflow/report/<caption>
    strategies: tuple[str, ...] = ()  # roles whose benchmarks.csv it reads
    tables: tuple[str, ...] = ()  # analysis tables it reads


FIGURES = (
    Figure("fig1_overall_vs_train_flops", "Fig. 1", "overall score vs train FLOPs", "fig1.rst", ("llh",)),
    Figure("fig2_loglikelihood_vs_hybrid", "Fig. 2", "log-likelihood vs hybrid format", "fig2.rst",
           ("llh", "baseline")),
    Figure("fig3_cot_vs_no_cot", "Fig. 3", "score with vs without CoT", "fig3.rst", ("baseline", "cot")),
    Figure("fig4_cot_gain_vs_train_flops", "Fig. 4", "CoT improvement vs train FLOPs", "fig4.rst",
           ("baseline", "cot"), ("cot_gain",)),
    Figure("table1_tokens", "Table I", "tokens per request, baseline vs CoT", "table1_tokens_figure.rst",
           tables=("table1_tokens",)),
    Figure("fig5_pca_loadings_ours", "Fig. 5", "PCA loadings, our models", "fig5.rst", tables=("pca_loadings_ours",)),
    Figure("fig6_pca_loadings_ruan", "Fig. 6", "PCA loadings, Ruan et al., HumanEval ablated", "fig6.rst",
           tables=("pca_loadings_ruan", "pca_loadings_ruan_no_humaneval")),
    Figure("fig7_isoflop", "Fig. 7", "score vs inference tokens, IsoFLOP lines", "fig7.rst", ("baseline", "cot"),
           ("isoflop_fit", "table1_tokens")),
    Figure("fig8_tef_ratio_vs_token_ratio", "Fig. 8", "TEF/C vs CoT token ratio", "fig8.rst",
           tables=("train_equivalent", "table1_tokens")),
    Figure("fig9_lifetime_cost", "Fig. 9", "lifetime cost vs requests, crossover", "fig9.rst",
           tables=("crossover", "train_equivalent")),
    Figure("fig10_free_form_cot", "Fig. 10", "free-form CoT vs log-likelihood baseline", "fig10.rst",
           ("llh", "free_form_cot")),
    Figure("fig11_inference_scaling", "Fig. 11", "score vs inference cost per request (paper, realistic model), "
           "Pareto frontier", "fig11.rst", tables=("benchmarks", "tokens", "inference_scaling", "costs")),
    Figure("fig12_plan", "Fig. 12", "cheapest operating point over lifetime requests × target score", "fig12.rst",
           tables=("plan",)),
    Figure("fig13_cost_models", "Fig. 13", "cost per request and crossover R* from paper to attention to kinetics",
           "fig13.rst", tables=("costs", "crossover")),
)
FIGURE_NAMES = tuple(f.name for f in FIGURES)


def free_form_cot(config: dict) -> str:
    """The free-form CoT strategy of fig10: ``cot_generate`` if configured, else the first generate+cot one."""
    strategies = config.get("strategies") or {}
    if FREE_FORM_COT in strategies:
        return FREE_FORM_COT
    for name, spec in strategies.items():
        if spec.get("format") == "generate" and spec.get("prompt") == "cot":
            return name
    return FREE_FORM_COT


def strategy_of(config: dict, role: str) -> str:
    """The strategy a role names: ``llh`` / ``baseline`` / ``cot`` from the config's analysis block, or
    ``free_form_cot``."""
    return free_form_cot(config) if role == "free_form_cot" else config["analysis"][role]


def figure_strategies(config: dict, figure: Figure) -> list[str]:
    """The configured strategies whose tables the figure reads (a role naming an absent strategy reads nothing)."""
    names = dict.fromkeys(strategy_of(config, role) for role in figure.strategies)
    return [name for name in names if name in config["strategies"]]
